r"""The native engine: the channel-wise convolution as one fused C loop per edge.

For a channel-wise kernel (:class:`~e3nn_pyg.tensor_product.fused.FusedTensorProduct`
with ``channelwise=True``) the whole convolution, gather of the source features, sparse
Clebsch-Gordan coupling with the spherical harmonics, radial weights and sum at the
targets, is one loop over the rows of an
:class:`~e3nn_pyg.tensor_product.fused.EdgePairing` (``_native_channelwise.c``):

.. math::
    \text{out}_{t, o, k, v} \mathrel{+}= \sum_{(i, j, k, c)} c\, Y_j(\pm r)\,
        x_{s, b, i, v}\, w_{p, v}

for every path :math:`p` (input block :math:`b` to output block :math:`o` through filter
:math:`l_f`), over the non-zero Clebsch-Gordan entries only, with the channels :math:`v`
innermost so that the loops vectorise. No per-edge message is ever stored: the memory is
that of the node features, the radial weights and the harmonics. The backward computes the
three gradients (weights, harmonics, features) in one pass of the same loop, and
:func:`~e3nn_pyg.tensor_product.trilinear.trilinear` makes every order of differentiation
run on these two kernels.

The C source is compiled on first use with the C compiler of the machine (``cc``, or
``$CC``; about a second) into a cache folder (``$E3NN_PYG_CACHE``, default
``~/.cache/e3nn_pyg``) and loaded with :mod:`ctypes`; :func:`available` says whether that
worked (it is tried once per process). Node sums are accumulated per thread and added in
a fixed order, so results do not depend on thread scheduling.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from ..o3 import wigner_3j
from .fused import EdgePairing, FusedTensorProduct
from .trilinear import trilinear

__all__ = ["NativeChannelwise", "available", "build_error"]

_SOURCE = Path(__file__).with_name("_native_channelwise.c")
_FLAGS = [
    ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"],
    ["-O3", "-fopenmp", "-fPIC", "-shared"],
    ["-O3", "-fPIC", "-shared"],
]
_PATH_COLUMNS = 10  # V, x/out/w offsets, out stride, odd l_f, entries, 2l_i+1, 2l_o+1
_lock = threading.Lock()
_library: list = []  # [ctypes.CDLL] once built, [None] when building failed
_error: list[str] = []


def _cache_dir() -> Path:
    root = os.environ.get("E3NN_PYG_CACHE")
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "e3nn_pyg"


def _compile() -> ctypes.CDLL:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC)")
    source = _SOURCE.read_bytes()
    failures = []
    for flags in _FLAGS:
        key = hashlib.sha256(source + " ".join([compiler, *flags]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"channelwise-{key}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                built = Path(tmp) / target.name
                result = subprocess.run(
                    [compiler, *flags, "-o", str(built), str(_SOURCE)],
                    capture_output=True,
                    text=True,
                )
                if result.returncode != 0:
                    failures.append(f"{' '.join(flags)}: {result.stderr.strip()[-300:]}")
                    continue
                os.replace(built, target)  # atomic: concurrent builders agree
        try:
            return ctypes.CDLL(str(target))
        except OSError as error:
            failures.append(f"{' '.join(flags)}: {error}")
    raise RuntimeError("; ".join(failures))


def _load() -> ctypes.CDLL | None:
    with _lock:
        if not _library:
            try:
                library = _compile()
                for name in ("cw_forward_f32", "cw_forward_f64", "cw_backward_f32",
                             "cw_backward_f64"):  # fmt: skip
                    getattr(library, name).restype = ctypes.c_int
                _library.append(library)
            except Exception as error:  # no compiler, read-only cache, ...: no native engine
                _error.append(f"{type(error).__name__}: {error}")
                _library.append(None)
        return _library[0]


def available() -> bool:
    """Whether the native kernels are built and loaded (builds them on the first call)."""
    return _load() is not None


def build_error() -> str | None:
    """Why the native kernels are not available, or ``None``."""
    _load()
    return _error[0] if _error else None


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _pointer(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


class NativeChannelwise:
    r"""The native kernels for one channel-wise engine (its tables of paths).

    Args:
        engine (FusedTensorProduct): a channel-wise engine; its radial weight layout
            (:attr:`~FusedTensorProduct.weight_permutation`) and message parts
            (:attr:`~FusedTensorProduct.part_widths`, :meth:`~FusedTensorProduct.assemble`)
            are shared.
    """

    def __init__(self, engine: FusedTensorProduct) -> None:
        if not engine.channelwise:
            raise ValueError("the native engine implements channel-wise kernels only")
        plan = engine.plan
        self.engine = engine
        by_pair = {(pair.index_in, pair.index_out): pair for pair in plan.pairs}
        y_offset, offset = {}, 0
        for l_f in plan.filter_orders:
            y_offset[l_f] = offset
            offset += 2 * l_f + 1
        part_offset = [0]
        for width in engine.part_widths:
            part_offset.append(part_offset[-1] + width)
        self.out_width = part_offset[-1]
        x_offset = [block.start for block in plan.rs_in.slices()]
        paths, ijk, coefficients, scratch = [], [], [], 1
        for piece in engine.pieces:
            pair = by_pair[piece.index_in, piece.index_out]
            mul, di = piece.mul_in, 2 * pair.l_in + 1
            for t, (l_f, norm) in enumerate(zip(pair.filters, pair.norms)):
                cg = norm * wigner_3j(pair.l_in, l_f, pair.l_out, dtype=torch.float64)
                nonzero = (cg.abs() > 1e-14).nonzero().tolist()
                start = len(coefficients)
                for i, j, k in nonzero:
                    ijk.append([i, y_offset[l_f] + j, k])
                    coefficients.append(float(cg[i, j, k]))
                j_column = piece.j_offset + t * mul
                paths.append([
                    mul,
                    x_offset[piece.index_in],
                    part_offset[piece.index_out] + j_column,
                    engine.path_channels[piece.index_out],
                    engine.weight_offset[piece.index_out] + j_column,
                    l_f % 2,
                    start,
                    len(coefficients),
                    di,
                    2 * pair.l_out + 1,
                ])  # fmt: skip
                # forward: [2l_i+1, V]; backward: two [2l_o+1, V]
                scratch = max(scratch, di * mul, 2 * (2 * pair.l_out + 1) * mul)
        self.num_paths = len(paths)
        self.scratch = scratch
        self.paths = torch.tensor(paths, dtype=torch.long).reshape(-1, _PATH_COLUMNS)
        self.ijk = torch.tensor(ijk, dtype=torch.int32).reshape(-1, 3)
        self.coefficients = {
            torch.float64: torch.tensor(coefficients, dtype=torch.float64),
            torch.float32: torch.tensor(coefficients, dtype=torch.float32),
        }
        # node features in "ir_mul" layout: per input block [2l+1, mul]
        self.rs_in = plan.rs_in

    def supports(self, *tensors: Tensor) -> bool:
        """Whether the kernels run on these tensors (CPU, float32 or float64, built)."""
        on_cpu = all(t.device.type == "cpu" and t.dtype in _SUFFIX for t in tensors)
        return on_cpu and available()

    def to_ir_mul(self, x: Tensor) -> Tensor:
        """Node features ``[N, dim_in]`` (e3nn's ``mul_ir``) to the kernels' ``ir_mul``."""
        rows = x.shape[0]
        blocks = [
            x[:, block]
            .reshape(rows, mul, 2 * l + 1)
            .transpose(1, 2)
            .reshape(rows, block.stop - block.start)
            for (mul, l, _), block in zip(self.rs_in, self.rs_in.slices())
            if mul > 0
        ]
        if not blocks:
            return x
        return torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]  # [N, dim_in]

    def convolve(
        self, weights: Tensor, sh: Tensor, x: Tensor, pairing: EdgePairing, num_dst: int
    ) -> list[Tensor]:
        r"""The summed message parts ``[N_t, width]`` of every output block.

        Args:
            weights (Tensor): radial weights of the rows ``[R, n_w]`` (engine layout).
            sh (Tensor): spherical harmonics of the rows' vectors ``[R, n_Y]``.
            x (Tensor): source node features ``[N_s, dim_in]`` (``mul_ir``).
            pairing (EdgePairing): the rows.
            num_dst (int): the number of targets.
        """
        op = _GraphOp(self, pairing, x.shape[0], num_dst)
        (out,) = trilinear(op, weights, sh, self.to_ir_mul(x))  # [N_t, sum of widths]
        return list(out.split(self.engine.part_widths, dim=1))


class _GraphOp:
    """The native forward and backward on one graph (a :class:`~.trilinear.TrilinearOp`)."""

    def __init__(
        self, native: NativeChannelwise, pairing: EdgePairing, num_src: int, num_dst: int
    ) -> None:
        self.native = native
        paired = pairing.num_paired
        src, dst = pairing.src, pairing.dst
        # (directions, first row, sources [rows, D], targets [rows, D]) of both groups
        self.groups = [
            (2, 0, torch.stack([src[:paired], dst[:paired]], 1).contiguous(),
             torch.stack([dst[:paired], src[:paired]], 1).contiguous()),
            (1, paired, src[paired:].contiguous(), dst[paired:].contiguous()),
        ]  # fmt: skip
        self.groups = [g for g in self.groups if g[2].numel()]
        for _, _, group_src, group_dst in self.groups:  # the C loop reads raw memory
            if type(group_src) is not Tensor or type(group_dst) is not Tensor:
                raise TypeError(
                    "the native engine needs plain index tensors, got "
                    f"{type(group_src).__name__} (convert an EdgeIndex with as_tensor())"
                )
        self.num_src, self.num_dst = num_src, num_dst

    def _common(self, weights: Tensor, sh: Tensor, x: Tensor):
        native = self.native
        library = _load()
        suffix = _SUFFIX[x.dtype]
        return (
            library,
            suffix,
            weights.contiguous(),
            sh.contiguous(),
            x.contiguous(),
            native.coefficients[x.dtype],
        )

    def forward(self, weights: Tensor, sh: Tensor, x: Tensor) -> tuple[Tensor]:
        native = self.native
        library, suffix, weights, sh, x, coefficients = self._common(weights, sh, x)
        out = x.new_zeros(self.num_dst, native.out_width)
        for directions, first, src, dst in self.groups:
            rows = src.shape[0]
            failed = getattr(library, "cw_forward_" + suffix)(
                ctypes.c_int64(rows), ctypes.c_int64(directions), _pointer(src), _pointer(dst),
                _pointer(weights[first:]), ctypes.c_int64(weights.shape[1]),
                _pointer(sh[first:]), ctypes.c_int64(sh.shape[1]),
                _pointer(x), ctypes.c_int64(x.shape[1]),
                _pointer(out), ctypes.c_int64(native.out_width), ctypes.c_int64(self.num_dst),
                _pointer(native.paths), ctypes.c_int64(native.num_paths),
                _pointer(native.ijk), _pointer(coefficients),
                ctypes.c_int64(native.scratch), ctypes.c_int(torch.get_num_threads()),
            )  # fmt: skip
            if failed:
                raise MemoryError("the native convolution could not allocate its buffers")
        return (out,)

    def backward(
        self,
        weights: Tensor,
        sh: Tensor,
        x: Tensor,
        grads: tuple[Tensor, ...],
        needs: tuple[bool, bool, bool],
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        native = self.native
        library, suffix, weights, sh, x, coefficients = self._common(weights, sh, x)
        grad = grads[0].contiguous()  # [N_t, width]
        grad_w = torch.zeros_like(weights) if needs[0] else None
        grad_sh = torch.zeros_like(sh) if needs[1] else None
        grad_x = torch.zeros_like(x) if needs[2] else None
        for directions, first, src, dst in self.groups:
            rows = src.shape[0]
            failed = getattr(library, "cw_backward_" + suffix)(
                ctypes.c_int64(rows), ctypes.c_int64(directions), _pointer(src), _pointer(dst),
                _pointer(weights[first:]), ctypes.c_int64(weights.shape[1]),
                _pointer(sh[first:]), ctypes.c_int64(sh.shape[1]),
                _pointer(x), ctypes.c_int64(x.shape[1]), ctypes.c_int64(self.num_src),
                _pointer(grad), ctypes.c_int64(native.out_width),
                _pointer(native.paths), ctypes.c_int64(native.num_paths),
                _pointer(native.ijk), _pointer(coefficients),
                _pointer(None if grad_w is None else grad_w[first:]),
                _pointer(None if grad_sh is None else grad_sh[first:]),
                _pointer(grad_x),
                ctypes.c_int64(native.scratch), ctypes.c_int(torch.get_num_threads()),
            )  # fmt: skip
            if failed:
                raise MemoryError("the native convolution could not allocate its buffers")
        return grad_w, grad_sh, grad_x

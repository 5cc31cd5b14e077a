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
``$CC``; once per new source) into a cache folder (``$E3NN_PYG_CACHE``, default
``~/.cache/e3nn_pyg``) and loaded with :mod:`ctypes`; :func:`available` says whether that
worked (it is tried once per process). Node sums are accumulated per thread and added in
a fixed order, so results do not depend on thread scheduling.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
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

__all__ = ["NativeKernels", "available", "build_error"]

_SOURCE = Path(__file__).with_name("_native_channelwise.c")
_FLAGS = [
    ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"],
    ["-O3", "-fopenmp", "-fPIC", "-shared"],
    ["-O3", "-fPIC", "-shared"],
]
_PATH_COLUMNS = 11  # V, x/out/w offsets, out stride, odd l_f, entries, 2l_i+1, 2l_o+1, U
_lock = threading.Lock()
_library: list = []  # [ctypes.CDLL] once built, [None] when building failed
_error: list[str] = []


def _cache_dir() -> Path:
    root = os.environ.get("E3NN_PYG_CACHE")
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "e3nn_pyg"


@functools.cache
def _processor() -> str:
    """What ``-march=native`` compiles for: a cache shared by machines must not mix them."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = [line for line in cpuinfo if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _compile(source: str, name: str) -> ctypes.CDLL:
    """The shared library of a C source, built once into the cache folder.

    The file name hashes the source, the compiler, the flags and the processor.
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC)")
    failures = []
    for flags in _FLAGS:
        identity = " ".join([source, compiler, *flags, _processor()])
        key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        target = _cache_dir() / f"{name}-{key}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                code, built = Path(tmp) / f"{name}.c", Path(tmp) / target.name
                code.write_text(source)
                result = subprocess.run(
                    [compiler, *flags, "-o", str(built), str(code)],
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
                _library.append(_compile(_SOURCE.read_text(), "channelwise"))
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


def _row_arguments(
    directions: int, first: int, src: Tensor, dst: Tensor, weights: Tensor, sh: Tensor, x: Tensor
) -> tuple:
    """The leading C arguments of the forward and backward loops: a group's rows (from row
    ``first``: their count, directions, sources, targets) and the inputs, each matrix with
    its row length."""
    return (
        ctypes.c_int64(src.shape[0]),
        ctypes.c_int64(directions),
        _pointer(src),
        _pointer(dst),
        _pointer(weights[first:]),
        ctypes.c_int64(weights.shape[1]),
        _pointer(sh[first:]),
        ctypes.c_int64(sh.shape[1]),
        _pointer(x),
        ctypes.c_int64(x.shape[1]),
    )


class NativeKernels:
    r"""The native kernels for one engine's table of paths.

    Args:
        engine (FusedTensorProduct): the engine whose radial weight layout
            (:attr:`~FusedTensorProduct.weight_permutation`) and message parts
            (:attr:`~FusedTensorProduct.part_widths`, :meth:`~FusedTensorProduct.assemble`)
            the kernels share. Channel-wise kernels have table-driven generic loops as
            well; fully connected ones exist only specialised (see :meth:`library`).
    """

    def __init__(self, engine: FusedTensorProduct) -> None:
        plan = engine.plan
        self.engine = engine
        self.channelwise = engine.channelwise
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
                u = 0 if self.channelwise else pair.mul_out  # 0: one weight per channel v
                paths.append([
                    mul,
                    x_offset[piece.index_in],
                    part_offset[piece.index_out] + (j_column if self.channelwise else 0),
                    engine.path_channels[piece.index_out] if self.channelwise else u,
                    engine.weight_offset[piece.index_out] + j_column * max(u, 1),
                    l_f % 2,
                    start,
                    len(coefficients),
                    di,
                    2 * pair.l_out + 1,
                    u,
                ])  # fmt: skip
                # forward: [2l_i+1, V]; backward: two [2l_o+1, V], or [U, V] transposed weights
                scratch = max(scratch, di * mul, 2 * (2 * pair.l_out + 1) * mul, u * mul)
        self.num_paths = len(paths)
        self.scratch = scratch
        self.weight_width = engine.num_weights
        self.sh_width = engine.num_sh
        self.paths = torch.tensor(paths, dtype=torch.long).reshape(-1, _PATH_COLUMNS)
        self.ijk = torch.tensor(ijk, dtype=torch.int32).reshape(-1, 3)
        self.coefficients = {
            torch.float64: torch.tensor(coefficients, dtype=torch.float64),
            torch.float32: torch.tensor(coefficients, dtype=torch.float32),
        }
        # node features in "ir_mul" layout: per input block [2l+1, mul]
        self.rs_in = plan.rs_in
        self._specialized: list = []  # [CDLL] once built, [None] when building failed

    def __getstate__(self) -> dict:  # copies and pickles load the library again on first use
        return {**self.__dict__, "_specialized": []}

    def library(self) -> ctypes.CDLL | None:
        """The kernels specialised to this table (built on first use), else the generic ones
        (channel-wise only; ``None`` for a fully connected table that could not be built).

        Specialised kernels have the table's constants, offsets and loop bounds compiled in
        (no per-entry table reads, loops of known length), at the price of one compilation
        per new table (cached on disk).
        """
        if not self._specialized:
            try:
                self._specialized.append(_compile(specialized_source(self), "channelwise-plan"))
            except Exception:  # the generic kernels (or the fused engine) are correct too
                self._specialized.append(None)
        if self._specialized[0] is not None or not self.channelwise:
            return self._specialized[0]
        return _load()

    def supports(self, *tensors: Tensor) -> bool:
        """Whether the kernels run on these tensors (CPU, float32 or float64, built)."""
        on_cpu = all(t.device.type == "cpu" and t.dtype in _SUFFIX for t in tensors)
        return on_cpu and available() and self.library() is not None

    def to_ir_mul(self, x: Tensor) -> Tensor:
        """Node features ``[N, dim_in]`` (e3nn's ``mul_ir``) to the kernels' ``ir_mul``."""
        blocks = [
            chunk.transpose(1, 2).flatten(1)  # [N, (2l+1) mul]
            for (mul, _, _), chunk in zip(self.rs_in, self.rs_in.chunks(x))
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
        self, native: NativeKernels, pairing: EdgePairing, num_src: int, num_dst: int
    ) -> None:
        self.native = native
        self.groups = pairing.groups()  # (directions, first row, sources, targets)
        # (the indices are in range: Kernel.convolve and prepare_graph check them)
        self.num_src, self.num_dst, self.rows = num_src, num_dst, pairing.num_rows

    def _common(self, weights: Tensor, sh: Tensor, x: Tensor):
        native = self.native
        expected = (
            (self.rows, native.weight_width),
            (self.rows, native.sh_width),
            (self.num_src, native.rs_in.dim),
        )
        for name, t, shape in zip(("weights", "harmonics", "features"), (weights, sh, x), expected):
            if tuple(t.shape) != shape or t.dtype != x.dtype or t.device.type != "cpu":
                raise ValueError(
                    f"native kernels: {name} are {t.dtype} {tuple(t.shape)} on {t.device}, "
                    f"expected {x.dtype} {shape} on cpu"
                )
        library = native.library()
        suffix = _SUFFIX[x.dtype]
        return (
            library,
            suffix,
            weights.contiguous(),
            sh.contiguous(),
            x.contiguous(),
            native.coefficients[x.dtype],
        )

    def _table_arguments(self, coefficients: Tensor) -> tuple:
        """The C arguments of the table of paths: paths, their count, ``ijk``, coefficients."""
        native = self.native
        return (
            _pointer(native.paths),
            ctypes.c_int64(native.num_paths),
            _pointer(native.ijk),
            _pointer(coefficients),
        )

    def _run(self, function, arguments) -> None:
        """Call the C entry point ``function`` on every group of rows, with the arguments
        ``arguments(directions, first row, sources, targets)``."""
        for directions, first, src, dst in self.groups:
            if function(*arguments(directions, first, src, dst)):
                raise MemoryError("the native convolution could not allocate its buffers")

    def _output_gradient(self, grads: tuple[Tensor, ...], x: Tensor) -> Tensor:
        grad = grads[0].contiguous()  # [N_t, width]
        if tuple(grad.shape) != (self.num_dst, self.native.out_width) or grad.dtype != x.dtype:
            raise ValueError(f"native kernels: gradient {tuple(grad.shape)} {grad.dtype}")
        return grad

    @staticmethod
    def _zeros(needs: tuple[bool, ...], *like: Tensor) -> list[Tensor | None]:
        """Zero gradients shaped like ``like``, where ``needs`` asks for them."""
        return [torch.zeros_like(t) if need else None for need, t in zip(needs, like)]

    def forward(self, weights: Tensor, sh: Tensor, x: Tensor) -> tuple[Tensor]:
        native = self.native
        library, suffix, weights, sh, x, coefficients = self._common(weights, sh, x)
        out = x.new_zeros(self.num_dst, native.out_width)
        self._run(
            getattr(library, "cw_forward_" + suffix),
            lambda directions, first, src, dst: (
                *_row_arguments(directions, first, src, dst, weights, sh, x),
                _pointer(out), ctypes.c_int64(native.out_width), ctypes.c_int64(self.num_dst),
                *self._table_arguments(coefficients),
                ctypes.c_int64(native.scratch), ctypes.c_int(torch.get_num_threads()),
            ),
        )  # fmt: skip
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
        grad = self._output_gradient(grads, x)
        grad_w, grad_sh, grad_x = self._zeros(needs, weights, sh, x)
        self._run(
            getattr(library, "cw_backward_" + suffix),
            lambda directions, first, src, dst: (
                *_row_arguments(directions, first, src, dst, weights, sh, x),
                ctypes.c_int64(self.num_src), _pointer(grad), ctypes.c_int64(native.out_width),
                *self._table_arguments(coefficients),
                _pointer(None if grad_w is None else grad_w[first:]),
                _pointer(None if grad_sh is None else grad_sh[first:]),
                _pointer(grad_x),
                ctypes.c_int64(native.scratch), ctypes.c_int(torch.get_num_threads()),
            ),
        )  # fmt: skip
        return grad_w, grad_sh, grad_x

    def double_backward(
        self,
        weights: Tensor,
        sh: Tensor,
        x: Tensor,
        grads: tuple[Tensor, ...],
        cotangents: tuple[Tensor | None, Tensor | None, Tensor | None],
        needs: tuple[bool, bool, bool],
        need_grads: bool,
    ) -> tuple[Tensor | None, ...] | None:
        """The double backward in one pass (see :mod:`.trilinear`), or ``None`` where only
        the composed one exists (no specialised channel-wise kernels)."""
        library, suffix, weights, sh, x, _ = self._common(weights, sh, x)
        function = getattr(library, f"cw_double_backward_{suffix}", None)
        if function is None:
            return None
        grad = self._output_gradient(grads, x)
        a_w, a_sh, a_x = (
            torch.zeros_like(t) if a is None else a.contiguous()
            for a, t in zip(cotangents, (weights, sh, x))
        )
        grad_w, grad_sh, grad_x, grad_grad = self._zeros((*needs, need_grads), weights, sh, x, grad)
        self._run(
            function,
            lambda directions, first, src, dst: (
                ctypes.c_int64(src.shape[0]), ctypes.c_int64(directions), _pointer(src),
                _pointer(dst), _pointer(weights[first:]), _pointer(sh[first:]), _pointer(x),
                _pointer(grad), _pointer(a_w[first:]), _pointer(a_sh[first:]), _pointer(a_x),
                _pointer(grad_grad), _pointer(None if grad_w is None else grad_w[first:]),
                _pointer(None if grad_sh is None else grad_sh[first:]), _pointer(grad_x),
                ctypes.c_int64(grad.numel()), ctypes.c_int64(x.numel()),
                ctypes.c_int(torch.get_num_threads()),
            ),
        )  # fmt: skip
        return grad_w, grad_sh, grad_x, grad_grad


# -- kernels specialised to one table of paths -------------------------------------------------
def _literal(value: float) -> str:
    return f"({value!r})"


def _y_vector(x_off: int, j: int) -> str:
    """The vector (over the channels of the input block at ``x_off``) that sums dL/dY_j."""
    return f"ya{x_off}_{j}"


def _y_vectors(t: str, sums: dict[tuple[int, int], int]) -> tuple[list[str], list[str]]:
    """Declaring and zeroing the vectors ``sums`` ((block offset, j) -> channels), and adding
    each one's total to ``gyr[j]``: the gradient of Y reduced once per row."""
    start = [f"{t} {_y_vector(*key)}[{v}];" for key, v in sums.items()]
    start += [f"for (int64_t v = 0; v < {v}; ++v) {_y_vector(*key)}[v] = 0;"
              for key, v in sums.items()]  # fmt: skip
    finish = [
        f'{{ {t} total = 0; _Pragma("omp simd reduction(+ : total)") '
        f"for (int64_t v = 0; v < {v}; ++v) total += {_y_vector(*key)}[v]; "
        f"gyr[{key[1]}] += total; }}"
        for key, v in sums.items()
    ]
    return start, finish


def _rows_source(native: NativeKernels, c_type: str, suffix: str) -> str:
    """The row loops of ``_native_channelwise.c`` with this table's constants baked in."""
    n_w, n_y = native.weight_width, native.sh_width
    x_width, out_width = native.rs_in.dim, native.out_width
    paths = native.paths.tolist()
    ijk, coefficients = native.ijk.tolist(), native.coefficients[torch.float64].tolist()
    t = c_type
    head, table, unused, row_start, direction_start = _row_preamble(native, t)
    forward = [f"static void forward_rows_{suffix}({head}, {t} *out, int64_t out_stride, "
               f"{table}, {t} *scratch) {{", unused + " (void)out_stride;", *row_start,
               *direction_start, f"{t} *ot = out + e * {out_width};"]  # fmt: skip
    # the backward in two versions, with and without the gradient of Y (decided per call);
    # a channel-wise path adds its gradient of Y_j into a vector over the channels of its
    # input block, ya<block>_<j>, reduced once per row (not once per path and direction)
    sums: dict[tuple[int, int], int] = {}  # (input block offset, j) -> channels
    path_code: dict[bool, list[str]] = {False: [], True: []}
    for path in paths:
        start, stop = path[6], path[7]
        entries = [(n - start, *ijk[n], coefficients[n]) for n in range(start, stop)]
        generate = _channelwise_path if path[10] == 0 else _full_path
        for with_y in (False, True):
            path_forward, path_backward = generate(t, path, entries, with_y)
            path_code[with_y] += path_backward
        forward += path_forward
        sums.update({(path[1], e[2]): path[0] for e in entries})
    y_start, y_finish = _y_vectors(t, sums)
    arguments = (f"{head}, const {t} *g, int64_t g_stride, {table}, {t} *grad_w, "
                 f"{t} *grad_y, {t} *grad_x, {t} *scratch")  # fmt: skip
    backward = []
    for with_y in (False, True):
        name = f"backward_rows_{'y' if with_y else 'no_y'}_{suffix}"
        backward += [f"static void {name}({arguments}) {{", unused + " (void)g_stride;",
                     *row_start, f"{t} *gwr = grad_w ? grad_w + r * {n_w} : 0;",
                     f"{t} *gyr = grad_y + r * {n_y};" if with_y else "(void)grad_y;"]  # fmt: skip
        backward += y_start if with_y else []
        backward += [*direction_start, f"const {t} *gt = g + e * {out_width};",
                     f"{t} *gxs = grad_x ? grad_x + s * {x_width} : 0;", *path_code[with_y],
                     "}"]  # fmt: skip
        backward += y_finish if with_y else []
        backward += ["}", "}"]
    call = ("r0, r1, directions, src, dst, w, w_stride, y, y_stride, x, x_stride, g, g_stride, "
            "paths, n_paths, nnz_ijk, nnz_c, grad_w, grad_y, grad_x, scratch")  # fmt: skip
    backward += [
        f"static void backward_rows_{suffix}({arguments}) {{",
        f"if (grad_y) backward_rows_y_{suffix}({call});",
        f"else backward_rows_no_y_{suffix}({call});",
        "}",
    ]
    forward += ["}", "}", "}"]
    return "\n".join(forward + backward)


def _row_preamble(native: NativeKernels, t: str) -> tuple[str, str, str, list[str], list[str]]:
    """The row loops' shared code: the arguments, the table's arguments, the casts of
    unused arguments, and the starts of the loops over rows and directions."""
    n_w, n_y = native.weight_width, native.sh_width
    x_width = native.rs_in.dim
    head = (
        f"int64_t r0, int64_t r1, int64_t directions, const int64_t *src, const int64_t *dst, "
        f"const {t} *w, int64_t w_stride, const {t} *y, int64_t y_stride, const {t} *x, "
        f"int64_t x_stride"
    )
    table = f"const int64_t *paths, int64_t n_paths, const int32_t *nnz_ijk, const {t} *nnz_c"
    unused = (
        "(void)w_stride; (void)y_stride; (void)x_stride; (void)paths; (void)n_paths; "
        "(void)nnz_ijk; (void)nnz_c; (void)scratch;"
    )
    row_start = [
        "for (int64_t r = r0; r < r1; ++r) {",
        f"const {t} *wr = w + r * {n_w}; const {t} *yr = y + r * {n_y};",
        *[f"const {t} y{j} = yr[{j}];" for j in range(n_y)],
    ]
    direction_start = [
        "for (int64_t d = 0; d < directions; ++d) {",
        f"const {t} sgn = d ? ({t})-1 : ({t})1;",
        "const int64_t s = src[r * directions + d], e = dst[r * directions + d];",
        f"const {t} *xs = x + s * {x_width};",
    ]
    return head, table, unused, row_start, direction_start


class _Path:
    """One row of the table of paths, with the expressions its generated code shares."""

    def __init__(self, c_type: str, path: list[int], entries: list[tuple]) -> None:
        t = c_type
        (self.v, self.x_off, self.o_off, self.o_stride, self.w_off, odd, _, _, self.di,
         self.do, self.u) = path  # fmt: skip
        self.entries = entries  # (m, i, j, k, c)
        self.sign = "sgn * " if odd else ""
        self.q = [
            f"const {t} q{m} = {self.sign}({t}){_literal(c)} * y{j};" for m, i, j, k, c in entries
        ]  # the coefficients times Y_j(+-r) of this row and direction
        self.by_k = {k: [e for e in entries if e[3] == k] for k in range(self.do)}
        self.by_i = {i: [e for e in entries if e[1] == i] for i in range(self.di)}
        self.by_j = {j: [e for e in entries if e[2] == j] for j in sorted({e[2] for e in entries})}
        self.x = [f"const {t} x{i} = xs[{self.x_off + i * self.v} + v];" for i in range(self.di)]

    def z(self, k: int) -> str:
        """The unweighted coupled feature of output component k: sum of q x."""
        return " + ".join(f"q{m} * x{i}" for m, i, _, _, _ in self.by_k[k])

    def y_terms(self, j: int, t: str, factor: str, index: str = "") -> str:
        """sum over the entries of Y_j of sign c x_i <factor>_k (for the gradient of Y_j)."""
        return " + ".join(
            f"{self.sign}({t}){_literal(c)} * x{i} * {factor}{k}{index}"
            for _, i, _, k, c in self.by_j[j]
        )


def _channelwise_path(
    t: str, path: list[int], entries: list[tuple], with_y: bool
) -> tuple[list, list]:
    """out[k, v] += w[v] z_k[v] and its three gradients, vectorised over the channels v."""
    p = _Path(t, path, entries)
    gs = [f"const {t} g{k} = gt[{p.o_off + k * p.o_stride} + v];" for k in range(p.do)]
    w_load = f"const {t} wv = wr[{p.w_off} + v];"
    simd = f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{'
    forward = ["{", *p.q, simd, *p.x, w_load]
    forward += [
        f"ot[{p.o_off + k * p.o_stride} + v] += wv * ({p.z(k)});" for k in p.by_k if p.by_k[k]
    ]
    forward += ["}", "}"]
    backward = ["{", *p.q, "if (gxs) {", simd, *gs, w_load]
    for i, terms in p.by_i.items():
        if terms:
            total = " + ".join(f"q{m} * g{k}" for m, _, _, k, _ in terms)
            backward.append(f"gxs[{p.x_off + i * p.v} + v] += wv * ({total});")
    backward += ["}", "}", "if (gwr) {", simd, *p.x, *gs]
    total = " + ".join(f"g{k} * ({p.z(k)})" for k in p.by_k if p.by_k[k])
    backward += [f"gwr[{p.w_off} + v] += {total};", "}", "}"]
    if with_y:  # into the block's vectors
        backward += [simd, *p.x, *gs, w_load]
        backward += [
            f"{_y_vector(p.x_off, j)}[v] += wv * ({p.y_terms(j, t, 'g')});" for j in p.by_j
        ]
        backward.append("}")
    backward.append("}")
    return forward, backward


def _full_path(t: str, path: list[int], entries: list[tuple], with_y: bool) -> tuple[list, list]:
    """out[k, u] += sum_v w[v, u] z_k[v] and its three gradients, vectorised over u."""
    p = _Path(t, path, entries)
    ks = [k for k in p.by_k if p.by_k[k]]
    u_loop = f"for (int64_t u = 0; u < {p.u}; ++u) {{"
    forward = ["{", *p.q, *[f"{t} a{k}[{p.u}] = {{0}};" for k in ks]]
    forward += [f"for (int64_t v = 0; v < {p.v}; ++v) {{", *p.x]
    forward += [f"const {t} z{k} = {p.z(k)};" for k in ks]
    forward += [f"const {t} *wv = wr + {p.w_off} + v * {p.u};", '_Pragma("omp simd") ' + u_loop]
    forward += [f"a{k}[u] += z{k} * wv[u];" for k in ks]
    forward += ["}", "}", '_Pragma("omp simd") ' + u_loop]
    forward += [f"ot[{p.o_off + k * p.u} + u] += a{k}[u];" for k in ks]
    forward += ["}", "}"]
    # backward: W^T g through a transposed copy of the row's weights in the scratch buffer,
    # so that every loop is a vectorised update (no reduction per channel)
    backward = ["{", *p.q, *[f"const {t} *gk{k} = gt + {p.o_off + k * p.u};" for k in ks]]
    backward += [
        f"for (int64_t v = 0; v < {p.v}; ++v) {{",
        f"const {t} *wv = wr + {p.w_off} + v * {p.u};",
        f"for (int64_t u = 0; u < {p.u}; ++u) scratch[u * {p.v} + v] = wv[u];",
        "}",
    ]
    backward += [f"{t} gz{k}[{p.v}] = {{0}};" for k in ks]
    backward += [u_loop, f"const {t} *wt = scratch + u * {p.v};"]
    backward += [f"const {t} gu{k} = gk{k}[u];" for k in ks]
    backward += [f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{']
    backward += [f"gz{k}[v] += wt[v] * gu{k};" for k in ks]
    backward += ["}", "}"]
    simd = f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{'
    backward += ["if (gxs) {", simd]
    for i, terms in p.by_i.items():
        if terms:
            total = " + ".join(f"q{m} * gz{k}[v]" for m, _, _, k, _ in terms)
            backward.append(f"gxs[{p.x_off + i * p.v} + v] += {total};")
    backward += ["}", "}"]
    if with_y:  # into the block's vectors, reduced once per row
        backward += [simd, *p.x]
        backward += [
            f"{_y_vector(p.x_off, j)}[v] += {p.y_terms(j, t, 'gz', '[v]')};" for j in p.by_j
        ]
        backward.append("}")
    backward += ["if (gwr) {", f"for (int64_t v = 0; v < {p.v}; ++v) {{", *p.x]
    backward += [f"const {t} z{k} = {p.z(k)};" for k in ks]
    backward += [f"{t} *gwv = gwr + {p.w_off} + v * {p.u};", '_Pragma("omp simd") ' + u_loop]
    backward += ["gwv[u] += " + " + ".join(f"z{k} * gk{k}[u]" for k in ks) + ";"]
    backward += ["}", "}", "}", "}"]
    return forward, backward


def _double_source(native: NativeKernels, c_type: str, suffix: str) -> str:
    """The double backward's row loop of a channel-wise table (see the C file)."""
    t = c_type
    n_w, n_y = native.weight_width, native.sh_width
    x_width, out_width = native.rs_in.dim, native.out_width
    ijk, coefficients = native.ijk.tolist(), native.coefficients[torch.float64].tolist()
    code = [
        f"static void double_rows_{suffix}(int64_t r0, int64_t r1, int64_t directions, "
        f"const int64_t *src, const int64_t *dst, const {t} *w, const {t} *y, const {t} *x, "
        f"const {t} *g, const {t} *aw, const {t} *ay, const {t} *ax, {t} *grad_g, "
        f"{t} *grad_w, {t} *grad_y, {t} *grad_x) {{",
        "for (int64_t r = r0; r < r1; ++r) {",
        f"const {t} *wr = w + r * {n_w}, *awr = aw + r * {n_w};",
        f"const {t} *yr = y + r * {n_y}, *ayr = ay + r * {n_y};",
        *[f"const {t} y{j} = yr[{j}], ay{j} = ayr[{j}];" for j in range(n_y)],
        f"{t} *gwr = grad_w ? grad_w + r * {n_w} : 0;",
        f"{t} *gyr = grad_y ? grad_y + r * {n_y} : 0;",
    ]
    sums: dict[tuple[int, int], int] = {}  # (input block offset, j) -> channels
    paths = []
    for path in native.paths.tolist():
        start, stop = path[6], path[7]
        entries = [(n - start, *ijk[n], coefficients[n]) for n in range(start, stop)]
        paths.append(_Path(t, path, entries))
        sums.update({(path[1], e[2]): path[0] for e in entries})
    y_start, y_finish = _y_vectors(t, sums)
    code += [*y_start[: len(sums)], "if (gyr) {", *y_start[len(sums) :], "}"]
    code += [
        "for (int64_t d = 0; d < directions; ++d) {",
        f"const {t} sgn = d ? ({t})-1 : ({t})1;",
        "const int64_t s = src[r * directions + d], e = dst[r * directions + d];",
        f"const {t} *xs = x + s * {x_width}, *axs = ax + s * {x_width};",
        f"const {t} *gt = g + e * {out_width};",
        f"{t} *ggt = grad_g ? grad_g + e * {out_width} : 0;",
        f"{t} *gxs = grad_x ? grad_x + s * {x_width} : 0;",
    ]
    for p in paths:
        code += _double_path(t, p)
    code.append("}")  # directions
    code += ["if (gyr) {", *y_finish, "}", "}", "}"]
    return "\n".join(code)


def _double_path(t: str, p: _Path) -> list[str]:
    """The double backward's code of one path, for one direction of a row."""
    code: list[str] = []
    simd = f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{'
    qa = [f"const {t} qa{m} = {p.sign}({t}){_literal(c)} * ay{j};" for m, i, j, k, c in p.entries]
    axs = [f"const {t} ax{i} = axs[{p.x_off + i * p.v} + v];" for i in range(p.di)]
    gs = [f"const {t} g{k} = gt[{p.o_off + k * p.o_stride} + v];" for k in range(p.do)]
    ws = [f"const {t} wv = wr[{p.w_off} + v];", f"const {t} awv = awr[{p.w_off} + v];"]
    ks = [k for k in p.by_k if p.by_k[k]]
    # the message's derivative along (ay, ax): sum of qa x + q ax
    za = {k: " + ".join(f"qa{m} * x{i} + q{m} * ax{i}" for m, i, _, _, _ in p.by_k[k]) for k in ks}
    code += ["{", *p.q, *qa, "if (ggt) {", simd, *p.x, *axs, *ws]
    code += [
        f"ggt[{p.o_off + k * p.o_stride} + v] += awv * ({p.z(k)}) + wv * ({za[k]});" for k in ks
    ]
    code += ["}", "}", "if (gwr) {", simd, *p.x, *axs, *gs]
    code += [f"gwr[{p.w_off} + v] += " + " + ".join(f"g{k} * ({za[k]})" for k in ks) + ";"]
    code += ["}", "}", "if (gyr) {", simd, *p.x, *axs, *gs, *ws]
    for j, terms in p.by_j.items():
        total = " + ".join(
            f"{p.sign}({t}){_literal(c)} * g{k} * (awv * x{i} + wv * ax{i})"
            for _, i, _, k, c in terms
        )
        code.append(f"{_y_vector(p.x_off, j)}[v] += {total};")
    code += ["}", "}", "if (gxs) {", simd, *gs, *ws]
    for i, terms in p.by_i.items():
        if terms:
            total = " + ".join(f"(q{m} * awv + qa{m} * wv) * g{k}" for m, _, _, k, _ in terms)
            code.append(f"gxs[{p.x_off + i * p.v} + v] += {total};")
    code += ["}", "}", "}"]
    return code


def specialized_source(native: NativeKernels) -> str:
    """A C source of the native kernels specialised to ``native``'s table of paths."""
    types = (("float", "f32"), ("double", "f64"))
    rows = [_rows_source(native, t, s) for t, s in types]
    if native.channelwise:  # the one-pass double backward
        rows += [_double_source(native, t, s) for t, s in types] + ["#define DOUBLE_ROWS 1"]
    return "\n".join(["#include <stdint.h>", *rows, "#define SPECIALIZED 1", _SOURCE.read_text()])

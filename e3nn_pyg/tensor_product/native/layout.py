r"""The layout of the native kernels: one table of paths, planned once from an engine.

A :class:`NativeLayout` says everything the C loops read: for every path (input block
:math:`b` to output block :math:`o` through filter :math:`l_f`) a :class:`NativePath`, the
path's non-zero Clebsch-Gordan entries ``(i, j, k)`` and coefficients (normalization
included), and the widths of the four matrices (radial weights, harmonics, node features,
output). It travels to the operators (:mod:`.ops`) as three tensors, ``table``,
``ijk`` and ``coefficients``, from which :meth:`NativeLayout.from_tensors` gives
it back: an exported program carries its layouts as constants and builds its kernels in
the process that loads it.

Example:
    >>> from e3nn_pyg.tensor_product.fused import FusedTensorProduct
    >>> from e3nn_pyg.tensor_product.paths import plan_kernel
    >>> engine = FusedTensorProduct(plan_kernel("2x0e + 2x1o", "2x0e + 2x1o"), channelwise=True)
    >>> layout = NativeLayout.plan(engine)
    >>> layout == NativeLayout.from_tensors(layout.table, layout.ijk, layout.coefficients)
    True
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import torch
from torch import Tensor

from ...o3 import wigner_3j
from ..fused import FusedTensorProduct

__all__ = ["HEADER_SIZE", "NativeLayout", "NativePath"]


class NativePath(NamedTuple):
    """One path of the table (a row of ``paths`` in ``channelwise.c``, columns in order)."""

    channels: int  # V: the input block's multiplicity
    x_offset: int  # first column of the input block in the node features (ir_mul)
    out_offset: int  # first output column of the path
    out_stride: int  # output columns between two components m_o
    w_offset: int  # first radial weight of the path
    odd: int  # l_f odd: Y(-r) = -Y(r) for the reverse direction of a pair
    entry_start: int  # first of the path's Clebsch-Gordan entries
    entry_stop: int
    dim_in: int  # 2 l_i + 1
    dim_out: int  # 2 l_o + 1
    mixed: int  # U, the outputs mixed by a full kernel's weights; 0: channel-wise


_HEADER = ("key", "weight_width", "sh_width", "x_width", "out_width", "channelwise", "scratch")
#: The entries of ``NativeLayout.table`` before the paths.
HEADER_SIZE = len(_HEADER)


class NativeLayout:
    """The table of paths of one engine (see the module docstring); build it with
    :meth:`plan` or :meth:`from_tensors`."""

    def __init__(
        self, paths: list[NativePath], ijk: Tensor, coefficients: Tensor, widths: dict[str, int]
    ) -> None:
        self.paths = paths
        self.ijk = ijk  # [entries, 3] int32
        self.coefficients = coefficients  # [entries] float64
        self.weight_width = widths["weight_width"]
        self.sh_width = widths["sh_width"]
        self.x_width = widths["x_width"]
        self.out_width = widths["out_width"]
        self.channelwise = bool(widths["channelwise"])
        self.scratch = widths["scratch"]  # elements of a thread's scratch buffer
        self.key = widths.get("key") or self._content_key()
        header = [self.key, *(int(widths[name]) for name in _HEADER[1:])]
        self.table = torch.tensor(header + [c for path in paths for c in path], dtype=torch.long)

    def _content_key(self) -> int:
        """A 62-bit digest of the table (the operators' cache of built kernels)."""
        digest = hashlib.sha256(
            repr((self.paths, self.ijk.tolist(), self.coefficients.tolist(), self.widths)).encode()
        )
        return int.from_bytes(digest.digest()[:8], "little") >> 2

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.weight_width, self.sh_width, self.x_width, self.out_width,
                int(self.channelwise), self.scratch)  # fmt: skip

    @classmethod
    def from_tensors(cls, table: Tensor, ijk: Tensor, coefficients: Tensor) -> NativeLayout:
        """The layout of the operators' tensors ``table``, ``ijk``, ``coefficients``."""
        columns = len(NativePath._fields)
        if (
            table.dtype != torch.long or table.dim() != 1 or table.numel() < HEADER_SIZE
            or (table.numel() - HEADER_SIZE) % columns
            or ijk.dtype != torch.int32 or ijk.dim() != 2 or ijk.shape[1] != 3
            or coefficients.shape != (ijk.shape[0],)
        ):  # fmt: skip
            raise ValueError("native kernels: these are not the tensors of a NativeLayout")
        values = table.tolist()
        widths = dict(zip(_HEADER, values))
        rows = values[HEADER_SIZE:]
        paths = [NativePath(*rows[n : n + columns]) for n in range(0, len(rows), columns)]
        layout = cls(paths, ijk, coefficients.to(torch.float64), widths)
        layout._require_in_bounds()
        return layout

    def _require_in_bounds(self) -> None:
        """Raise ``ValueError`` unless every path reads and writes inside the four matrices
        and the scratch buffer (the C loops index raw memory)."""
        entries = self.ijk.tolist()
        for n, p in enumerate(self.paths):
            mixed = max(p.mixed, 1)
            last_out = p.out_offset + (p.dim_out - 1) * p.out_stride + (p.mixed or p.channels)
            inside = (
                min(p) >= 0 and p.channels > 0 and p.entry_stop <= len(entries)
                and p.entry_start <= p.entry_stop
                and p.x_offset + p.dim_in * p.channels <= self.x_width
                and p.w_offset + p.channels * mixed <= self.weight_width
                and last_out <= self.out_width
                and max(p.dim_in, 2 * p.dim_out) * p.channels <= self.scratch
                and p.mixed * p.channels <= self.scratch
                and all(0 <= i < p.dim_in and 0 <= j < self.sh_width and 0 <= k < p.dim_out
                        for i, j, k in entries[p.entry_start : p.entry_stop])
            )  # fmt: skip
            if not inside:
                raise ValueError(f"native kernels: path {n} of the layout is out of bounds: {p}")

    @classmethod
    def plan(cls, engine: FusedTensorProduct) -> NativeLayout:
        """The layout of ``engine``'s paths, radial weight layout
        (:attr:`~FusedTensorProduct.weight_permutation`) and message parts
        (:attr:`~FusedTensorProduct.part_widths`)."""
        plan, channelwise = engine.plan, engine.channelwise
        by_pair = {(pair.index_in, pair.index_out): pair for pair in plan.pairs}
        y_offset = dict(zip(plan.filter_orders, _starts(2 * l + 1 for l in plan.filter_orders)))
        part_offset = _starts(engine.part_widths)
        x_offset = [block.start for block in plan.rs_in.slices()]
        paths, ijk, coefficients, scratch = [], [], [], 1
        for piece in engine.pieces:
            pair = by_pair[piece.index_in, piece.index_out]
            mul, di, do = piece.mul_in, 2 * pair.l_in + 1, 2 * pair.l_out + 1
            u = 0 if channelwise else pair.mul_out  # 0: one weight per channel v
            for t, (l_f, norm) in enumerate(zip(pair.filters, pair.norms)):
                cg = norm * wigner_3j(pair.l_in, l_f, pair.l_out, dtype=torch.float64)
                nonzero = (cg.abs() > 1e-14).nonzero().tolist()
                start = len(coefficients)
                ijk += [[i, y_offset[l_f] + j, k] for i, j, k in nonzero]
                coefficients += [float(cg[i, j, k]) for i, j, k in nonzero]
                j_column = piece.j_offset + t * mul
                paths.append(NativePath(
                    mul, x_offset[piece.index_in],
                    part_offset[piece.index_out] + (j_column if channelwise else 0),
                    engine.path_channels[piece.index_out] if channelwise else u,
                    engine.weight_offset[piece.index_out] + j_column * max(u, 1),
                    l_f % 2, start, len(coefficients), di, do, u,
                ))  # fmt: skip
                # forward: [2l_i+1, V]; backward: two [2l_o+1, V], or [U, V] transposed weights
                scratch = max(scratch, di * mul, 2 * do * mul, u * mul)
        widths = dict(weight_width=engine.num_weights, sh_width=engine.num_sh,
                      x_width=plan.rs_in.dim, out_width=part_offset[-1],
                      channelwise=int(channelwise), scratch=scratch)  # fmt: skip
        return cls(
            paths,
            torch.tensor(ijk, dtype=torch.int32).reshape(-1, 3),
            torch.tensor(coefficients, dtype=torch.float64),
            widths,
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NativeLayout)
            and self.paths == other.paths
            and self.widths == other.widths
            and torch.equal(self.ijk, other.ijk)
            and torch.equal(self.coefficients, other.coefficients)
        )

    __hash__ = None  # mutable tensors inside

    def __repr__(self) -> str:
        return (
            f"NativeLayout(paths={len(self.paths)}, entries={self.ijk.shape[0]}, "
            f"weights={self.weight_width}, harmonics={self.sh_width}, x={self.x_width}, "
            f"out={self.out_width}, channelwise={self.channelwise})"
        )


def _starts(widths) -> list[int]:
    """The offsets of consecutive blocks of ``widths`` (and the total, last)."""
    offsets = [0]
    for width in widths:
        offsets.append(offsets[-1] + width)
    return offsets

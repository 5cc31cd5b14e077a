r"""The fused engine: every path of a kernel in a few batched matrix products per chunk.

For a row (an edge, or an undirected pair of edges) with radial weights :math:`R` and
spherical harmonics :math:`Y` of its vector :math:`r`, the engine computes the messages

.. math::
    m_{u m_o} = \sum_{v, f} R_{uvf}
        \underbrace{\sum_{m_i} x_{v m_i} \underbrace{\sum_{m_f} c_f\,
        C^{(l_i, l_f, l_o)}_{m_i m_f m_o} Y^{l_f}_{m_f}(\hat r)}_{M_{f m_o m_i}}}_{
        \text{coupled}_{f m_o v}}

exactly as :func:`~e3nn_pyg.tensor_product.reference.apply_kernel` does, in another order
and with every operand laid out so that no step needs a layout copy but one:

1. :math:`M` of every input block ``b``, for all its paths at once: one matrix product
   ``Y @ G`` (``[rows, n_Y] @ [n_Y, sum_b F_b (2l_i+1)]``, the Clebsch-Gordan
   coefficients and the normalization constants :math:`c_f` folded into ``G``, the
   columns of a block ordered (output block, :math:`m_o`, filter, :math:`m_i`));
2. ``coupled_b = M_b @ x_b^T`` (one batched product per input block, ``[F_b, v]`` per
   row and direction, a broadcast product for scalars);
3. per output block ``o`` the coupled features of all its paths side by side,
   ``C_o`` ``[rows, D, 2l_o+1, J_o]`` with ``J_o`` = (input block, filter, :math:`v`):
   the only copy (one ``cat``);
4. ``m_o = C_o @ R_o`` with the radial weights of the block as ``[rows, J_o, u]``: one
   batched product per output block (``[D (2l_o+1), J_o] @ [J_o, u]`` per row), giving
   the messages as ``[rows, D, (2l_o+1) u]`` (:math:`m_o`-major;
   :meth:`FusedTensorProduct.assemble` transposes the node sums back). A channel-wise
   kernel multiplies ``C_o`` by its weights ``[rows, J_o]`` element-wise instead.

The engine's radial weight layout (per output block ``[J_o, u]``, or ``[J_o]``) differs
from the docs/conventions.md layout: :attr:`FusedTensorProduct.weight_permutation` maps one to
the other, so that a radial model's last layer can produce it directly.

**Undirected pairs.** On a symmetric graph the edges :math:`j \to i` and :math:`i \to j`
have opposite vectors, the same length and so the same radial weights, and
:math:`Y^l(-r) = (-1)^l Y^l(r)`. A row can therefore carry both directions (``D = 2``):
the radial model runs once per pair and every weight is read once for two messages (the
second direction uses ``G`` with the columns of odd filters negated).
:func:`pair_edges` finds the pairs.

**Gradients.** :class:`FusedTensorProduct` runs as a trilinear operation
(:func:`~e3nn_pyg.tensor_product.trilinear.trilinear`) that keeps only its inputs and
recomputes the intermediates in its backward, a hand-derived chain of batched products:
the memory of training is that of the inputs, and gradients of every order (force
training needs the double backward) run on the same two kernels and equal the
reference's up to rounding.

**Compiled mode** (``compile_rows`` set). The forward and the first-order backward run
through :func:`torch.compile` (Inductor), on pieces of exactly ``compile_rows`` rows (the
last piece zero-padded; zero rows give zero messages and gradients), so that one
compilation per number of directions serves every graph size. It is used only where no
autograd graph has to be recorded through it: the two kernels of the trilinear
operation, at every order of differentiation. The first call compiles (on CPU Inductor
needs a C++ compiler at run time); if compilation fails the engine warns once and stays
eager, which gives the same values.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import require_int
from ..constants import ExactConstants
from ..o3 import wigner_3j
from .paths import KernelPlan
from .trilinear import trilinear

__all__ = ["EdgePairing", "FusedTensorProduct", "pair_edges", "pair_edges_traced", "row_groups"]


@dataclass(frozen=True)
class EdgePairing:
    r"""Rows of the fused engine: edges grouped into undirected pairs where possible.

    Row ``k`` stands for the edge ``edge[k]`` from ``src[k]`` to ``dst[k]`` and, for
    ``k < num_paired``, also for its reverse edge ``dst[k] -> src[k]``, whose vector is
    exactly the opposite. Rows are sorted by ``dst`` within each of the two groups.
    """

    edge: Tensor  # [rows] the edge whose vector the row uses
    src: Tensor  # [rows]
    dst: Tensor  # [rows]
    num_paired: int | Tensor  # a 0-dim tensor from pair_edges_traced

    @property
    def num_rows(self) -> int:
        return self.edge.shape[0]

    def groups(self) -> list[tuple[int, int, Tensor, Tensor]]:
        """``(directions, first row, sources [R, D], targets [R, D])`` of the paired rows
        (``D = 2``: the edge, then its reverse) and of the single ones (``D = 1``), the
        non-empty ones only, indices contiguous."""
        return row_groups(self.src, self.dst, int(self.num_paired))


def row_groups(src: Tensor, dst: Tensor, num_paired: int) -> list[tuple[int, int, Tensor, Tensor]]:
    """:meth:`EdgePairing.groups` of the rows ``src``, ``dst`` ``[R]`` whose first
    ``num_paired`` are pairs."""
    groups = [
        (2, 0, torch.stack([src[:num_paired], dst[:num_paired]], dim=1),
         torch.stack([dst[:num_paired], src[:num_paired]], dim=1)),
        (1, num_paired, src[num_paired:, None].contiguous(), dst[num_paired:, None].contiguous()),
    ]  # fmt: skip
    return [group for group in groups if group[2].numel()]


def pair_edges(
    edge_index: Tensor, edge_vec: Tensor | None = None, symmetric: bool = True
) -> EdgePairing:
    r"""Group the edges of a graph into undirected pairs.

    An edge :math:`j \to i` is paired with :math:`i \to j` when that edge exists, the graph
    has no duplicate edges and (if ``edge_vec`` is given) the two vectors are exactly
    opposite. All other edges (self-loops, edges without their reverse) get a row of their
    own. Pairing is only valid when both ends index the same node set and the vectors
    derive from positions (not for bipartite graphs).

    Args:
        edge_index (Tensor): ``[2, E]`` (source, target) indices.
        edge_vec (Tensor, optional): ``[E, 3]`` edge vectors to check. (default: ``None``)
        symmetric (bool, optional): look for pairs; ``False`` gives one row per edge,
            sorted by target. (default: ``True``)

    Example:
        >>> pairing = pair_edges(torch.tensor([[0, 1, 2], [1, 0, 0]]))
        >>> pairing.num_paired, pairing.edge.tolist()
        (1, [1, 2])
    """
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError("edge_index must be a tensor of shape [2, num_edges]")
    src, dst = edge_index[0].long(), edge_index[1].long()  # [E]
    num_edges = src.shape[0]
    if edge_vec is not None and tuple(edge_vec.shape) != (num_edges, 3):
        raise ValueError(f"edge_vec must have shape [{num_edges}, 3], got {tuple(edge_vec.shape)}")
    empty = src.new_zeros(0)
    if num_edges == 0:
        return EdgePairing(empty, empty, empty, 0)
    num_nodes = int(torch.maximum(src.max(), dst.max())) + 1
    key = dst * num_nodes + src  # [E] (target, source)
    sorted_key, order = torch.sort(key)  # [E]
    if not symmetric or bool((sorted_key[1:] == sorted_key[:-1]).any()):  # or a multigraph
        return EdgePairing(order, src[order], dst[order], 0)
    reverse_key = src * num_nodes + dst  # [E]
    sorted_reverse, reverse_order = torch.sort(reverse_key, stable=True)  # [E] (radix: faster)
    if torch.equal(sorted_reverse, sorted_key):  # every edge has its reverse: match the sorts
        reverse = torch.empty_like(order)
        reverse[reverse_order] = order  # [E] (a sort is faster than a search here)
        paired = src != dst  # [E]
    else:
        position = torch.searchsorted(sorted_key, reverse_key).clamp(max=num_edges - 1)  # [E]
        reverse = order[position]  # [E] candidate reverse edge
        paired = (sorted_key[position] == reverse_key) & (src != dst)  # [E]
    if edge_vec is not None:
        opposite = (edge_vec.detach()[reverse] == -edge_vec.detach()).all(dim=1)  # [E]
        paired &= opposite & opposite[reverse]
    # rows of pairs: the edge with the smaller target; `order` keeps everything target-sorted
    first = order[(paired & (dst < src))[order]]  # [P]
    single = order[~paired[order]]  # [S]
    rows = torch.cat([first, single])  # [P + S]
    return EdgePairing(rows, src[rows], dst[rows], first.shape[0])


def pair_edges_traced(edge_index: Tensor, edge_vec: Tensor, num_nodes: int) -> EdgePairing:
    r""":func:`pair_edges` of a graph on ``num_nodes`` nodes without data-dependent branches,
    for :func:`torch.compile` and :func:`torch.export` (the number of pairs is a size the
    compiler does not know).

    An edge is paired with its reverse when that edge exists, their vectors are exactly
    opposite and each is the other's first reverse (of duplicate edges, one pairs and the
    others get rows of their own). Rows: the pairs' edges of smaller target, then the
    single edges, each group sorted by target.

    Example:
        >>> pairing = pair_edges_traced(torch.tensor([[0, 1, 2], [1, 0, 0]]), torch.tensor(
        ...     [[1.0, 0, 0], [-1.0, 0, 0], [2.0, 0, 0]]), num_nodes=3)
        >>> int(pairing.num_paired), pairing.edge.tolist()
        (1, [1, 2])
    """
    src, dst = edge_index[0].long(), edge_index[1].long()  # [E]
    key = dst * num_nodes + src  # [E] (target, source)
    sorted_key, order = torch.sort(key)  # [E]
    reverse_key = src * num_nodes + dst  # [E]
    position = torch.searchsorted(sorted_key, reverse_key).clamp(max=src.shape[0] - 1)  # [E]
    reverse = order[position]  # [E] the first edge of the reverse key (if it exists)
    edges = torch.arange(src.shape[0], device=src.device)  # [E]
    vectors = edge_vec.detach()
    opposite = (vectors[reverse] == -vectors).all(dim=1)  # [E]
    paired = (sorted_key[position] == reverse_key) & (src != dst) & (reverse[reverse] == edges)
    paired &= opposite & opposite[reverse]
    # 0: a pair's row (its edge of smaller target), 1: a single edge, 2: no row of its own;
    # one selection, so that the compiler has a single unknown size (the rows)
    group = torch.where(paired, torch.where(dst < src, 0, 2), 1)  # [E]
    by_group = torch.sort(group * num_nodes + dst, stable=True)[1]  # [E]
    rows = by_group[group[by_group] < 2]  # [P + S]
    return EdgePairing(rows, src[rows], dst[rows], (group == 0).sum())


@dataclass(frozen=True)
class _Piece:
    """The coupled features of the paths from one input block into one output block."""

    index_in: int
    index_out: int
    mul_in: int  # v
    n_filters: int  # f
    dim_out: int  # 2 l_o + 1
    column: int  # first row of the piece in the input block's F_b (ordered m_o, f)
    j_offset: int  # first column of the piece in the output block's J_o (ordered f, v)


class _Kernels:
    """The engine's forward and backward as a :class:`~.trilinear.TrilinearOp`."""

    def __init__(self, engine: FusedTensorProduct) -> None:
        self.engine = engine

    def forward(self, weights: Tensor, sh: Tensor, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.engine._run("_messages", weights, sh, x))

    def backward(
        self, weights: Tensor, sh: Tensor, x: Tensor, grads: tuple[Tensor, ...], needs: tuple
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        return self.engine._run("_backward", weights, sh, x, grads, needs)


class FusedTensorProduct(ExactConstants):
    r"""Applies the paths of a :class:`~e3nn_pyg.tensor_product.paths.KernelPlan` to rows.

    Args:
        plan (KernelPlan): the paths (normalization constants included).
        channelwise (bool, optional): radial weights (one per input channel and filter of
            every block pair) multiply the coupled features element-wise, and the result
            keeps one channel per input channel and filter (mixed by :meth:`assemble`);
            otherwise one weight per path contracts them to ``Rs_out``.
            (default: ``False``)
        recompute (bool, optional): run as a custom autograd function that recomputes
            its intermediates in the backward (memory of the inputs only); ``False``
            lets autograd record every operation. (default: ``True``)
        compile_rows (int, optional): run through :func:`torch.compile` on pieces of this
            many rows (see the module's *Compiled mode*); ``None`` runs eagerly. Settable
            as the attribute of the same name. (default: ``None``)

    Shapes:
        - **input:** radial weights :math:`(R, n_w)` in the engine's layout (see
          :attr:`weight_permutation`), spherical harmonics
          :math:`(R, \sum_{l_f} 2l_f+1)` in ``plan.filter_orders`` order, source features
          :math:`(R, D, \dim_\text{in})` (``D = 2``: the second direction uses
          :math:`Y(-r)`)
        - **output:** one message part per output block :math:`(R, D, \text{width})`
          (see :attr:`part_widths` and :meth:`assemble`)

    Attributes:
        weight_permutation (Tensor): ``[n_w]``, for each column of the engine's weight
            layout, the column of the docs/conventions.md layout it holds (a buffer).
    """

    def __init__(
        self,
        plan: KernelPlan,
        channelwise: bool = False,
        recompute: bool = True,
        compile_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.channelwise = channelwise
        self.recompute = recompute
        self.compile_rows = compile_rows
        orders = plan.filter_orders
        y_offset, offset = {}, 0
        for l_f in orders:
            y_offset[l_f] = offset
            offset += 2 * l_f + 1
        self.num_sh = offset

        by_pair = {(pair.index_in, pair.index_out): pair for pair in plan.pairs}
        self._lay_out_pieces(by_pair)
        self._register_coupling(by_pair, y_offset)
        self._register_weight_layout(by_pair)
        self.mix_permutation = self._mix_permutation()

    def _lay_out_pieces(self, by_pair: dict) -> None:
        """The pieces (one per block pair) and the widths ``F_b`` and ``J_o``."""
        rs_in, rs_out = self.plan.rs_in, self.plan.rs_out
        # F_b: rows of the input block's coupled features, ordered (output block, m_o, f)
        self.pieces: list[_Piece] = []
        widths_in = [0] * len(rs_in)
        widths_out = [0] * len(rs_out)  # J_o
        for index_out in range(len(rs_out)):
            for index_in in range(len(rs_in)):
                pair = by_pair.get((index_in, index_out))
                if pair is None:
                    continue
                nf, k = len(pair.filters), 2 * pair.l_out + 1
                self.pieces.append(
                    _Piece(index_in, index_out, pair.mul_in, nf, k, widths_in[index_in],
                           widths_out[index_out])
                )  # fmt: skip
                widths_in[index_in] += k * nf
                widths_out[index_out] += nf * pair.mul_in
        self.coupled_rows = widths_in  # F_b
        self.path_channels = widths_out  # J_o

    def _register_coupling(self, by_pair: dict, y_offset: dict[int, int]) -> None:
        """The Clebsch-Gordan matrix ``G`` of the coupling, and its signs for :math:`Y(-r)`."""
        widths_in = self.coupled_rows
        # G [n_Y, sum_b F_b (2l_i+1)]: column (b, (o, m_o, f), m_i)
        m_offset, total = [], 0
        for (_, l_in, _), width in zip(self.plan.rs_in, widths_in):
            m_offset.append(total)
            total += width * (2 * l_in + 1)
        self.m_offset = m_offset
        cg = torch.zeros(self.num_sh, total, dtype=torch.float64)
        odd = torch.zeros(total, dtype=torch.bool)
        for piece in self.pieces:
            pair = by_pair[piece.index_in, piece.index_out]
            di = 2 * pair.l_in + 1
            block = cg[:, m_offset[piece.index_in] :][:, : widths_in[piece.index_in] * di]
            block = block.view(self.num_sh, -1, di)  # [n_Y, F_b, m_i]
            for t, (l_f, norm) in enumerate(zip(pair.filters, pair.norms)):
                c = wigner_3j(pair.l_in, l_f, pair.l_out, dtype=torch.float64)  # [i, j, k]
                rows = slice(y_offset[l_f], y_offset[l_f] + 2 * l_f + 1)
                for k in range(piece.dim_out):
                    column = piece.column + k * piece.n_filters + t
                    block[rows, column, :] = norm * c[:, :, k].t()
                    if l_f % 2:
                        start = m_offset[piece.index_in] + column * di
                        odd[start : start + di] = True
        signed = torch.where(odd, -cg, cg)
        self.register_constant("cg", cg)  # [n_Y, M]
        self.register_constant("cg_both", torch.cat([cg, signed], dim=1))  # [n_Y, 2 M]: Y(±r)

    def _register_weight_layout(self, by_pair: dict) -> None:
        """The engine's radial weight layout and :attr:`weight_permutation`."""
        plan, channelwise, widths_out = self.plan, self.channelwise, self.path_channels
        # the engine's weight layout and where each weight sits in docs/conventions.md's layout
        self.weight_offset, permutation, offset = [], [], 0
        for index_out, (mul_out, _, _) in enumerate(plan.rs_out):
            self.weight_offset.append(offset)
            u_range = range(1) if channelwise else range(mul_out)
            for piece in (p for p in self.pieces if p.index_out == index_out):
                pair = by_pair[piece.index_in, piece.index_out]
                for t in range(piece.n_filters):
                    for v in range(piece.mul_in):
                        permutation.append([
                            pair.weight_offset + (u * piece.mul_in + v) * piece.n_filters + t
                            for u in u_range
                        ])  # fmt: skip
            offset += widths_out[index_out] * len(u_range)
        conventional = _conventional_offsets(plan, channelwise)
        self.num_weights = offset
        self.register_buffer(
            "weight_permutation",
            conventional[torch.tensor([c for row in permutation for c in row], dtype=torch.long)],
            persistent=False,
        )  # [n_w]: engine column -> conventions column

    def _mix_permutation(self) -> list[Tensor]:
        """Channel-wise: the mixing maps' columns (i, v, f) in the engine's order (i, f, v)."""
        mix_permutation = []
        for index_out in range(len(self.plan.rs_out)):
            order, column = [], 0
            for piece in (p for p in self.pieces if p.index_out == index_out):
                width = piece.mul_in * piece.n_filters
                order += [
                    column + v * piece.n_filters + t
                    for t in range(piece.n_filters)
                    for v in range(piece.mul_in)
                ]
                column += width
            mix_permutation.append(torch.tensor(order, dtype=torch.long))
        return mix_permutation

    @property
    def compile_rows(self) -> int | None:
        """Rows per compiled piece, or ``None`` (eager); see the module's *Compiled mode*."""
        return self._compile_rows

    @compile_rows.setter
    def compile_rows(self, rows: int | None) -> None:
        self._compile_rows = None if rows is None else require_int(rows, "compile_rows", minimum=1)

    @property
    def mid_channels(self) -> list[int]:
        """Channels :math:`(i, v, f)` of every output block before a channel-wise mixing."""
        return list(self.path_channels)

    @property
    def part_widths(self) -> list[int]:
        """Widths of the message parts: :math:`(2l_o+1) u`, or :math:`(2l_o+1) J_o`."""
        return [
            (2 * l + 1) * (width if self.channelwise else mul)
            for (mul, l, _), width in zip(self.plan.rs_out, self.path_channels)
        ]

    def forward(self, weights: Tensor, sh: Tensor, x: Tensor) -> list[Tensor]:
        """The message parts ``[R, D, width]`` (see :attr:`part_widths` and :meth:`assemble`)."""
        rows = weights.shape[0]
        if weights.shape[1:] != (self.num_weights,) or sh.shape != (rows, self.num_sh):
            raise ValueError(
                f"expected weights [rows, {self.num_weights}] and spherical harmonics "
                f"[rows, {self.num_sh}], got {tuple(weights.shape)} and {tuple(sh.shape)}"
            )
        if x.dim() != 3 or x.shape[0] != rows or x.shape[1] not in (1, 2) or (
            x.shape[2] != self.plan.rs_in.dim
        ):  # fmt: skip
            raise ValueError(
                f"expected source features [{rows}, 1 or 2, {self.plan.rs_in.dim}], "
                f"got {tuple(x.shape)}"
            )
        if self.recompute and torch.is_grad_enabled() and (
            weights.requires_grad or sh.requires_grad or x.requires_grad
        ):  # fmt: skip
            return list(trilinear(_Kernels(self), weights, sh, x))
        if torch.is_grad_enabled() and (
            weights.requires_grad or sh.requires_grad or x.requires_grad
        ):  # fmt: skip
            return self._messages(weights, sh, x)  # recorded by autograd: eager
        return self._run("_messages", weights, sh, x)

    # -- compiled pieces ---------------------------------------------------------------
    def _compiled_function(self, name: str) -> Callable | None:
        """``FusedTensorProduct.<name>`` through :func:`torch.compile` for this engine.

        TorchDynamo keeps its compilations per code object, up to a small limit
        (``recompile_limit``, 8): every engine therefore compiles its own copy of the
        function's code, so that the engines of a network do not evict each other. The
        function is unbound (``self`` is an argument): copies of the module may share it.
        """
        if _COMPILE_ERROR:
            return None
        compiled = self.__dict__.setdefault("_compiled", {})
        if name not in compiled:
            function = getattr(FusedTensorProduct, name)
            copy = types.FunctionType(
                function.__code__.replace(), function.__globals__, function.__name__
            )
            compiled[name] = torch.compile(copy, dynamic=False)
        return compiled[name]

    def __getstate__(self) -> dict:  # copies and pickles compile again on first use
        return {key: value for key, value in self.__dict__.items() if key != "_compiled"}

    def _run(self, name: str, weights: Tensor, sh: Tensor, x: Tensor, *extra) -> list | tuple:
        """``self.<name>(weights, sh, x, *extra)``, compiled on static pieces if enabled.

        Only called where nothing is recorded by autograd. ``extra`` holds the backward's
        gradients (row-wise, or ``None``) and its ``needs`` flags.
        """
        rows, size = x.shape[0], self._compile_rows
        compiled = self._compiled_function(name) if size is not None and rows > 0 else None
        if compiled is None:
            return getattr(self, name)(weights, sh, x, *extra)
        grads = extra[0] if extra else None
        results = []
        with torch.no_grad():
            for start in range(0, rows, size):
                stop = min(start + size, rows)

                def piece(t: Tensor | None, start=start, stop=stop) -> Tensor | None:
                    if t is None:
                        return None
                    t = t.detach()[start:stop]
                    if stop - start == size:
                        return t
                    return torch.cat([t, t.new_zeros(size - (stop - start), *t.shape[1:])])

                args = [piece(weights), piece(sh), piece(x)]
                if grads is not None:
                    args += [tuple(piece(g) for g in grads), *extra[1:]]
                try:
                    out = compiled(self, *args)
                except Exception as error:  # any compiler failure: stay eager
                    _compile_failed(error)
                    return getattr(self, name)(weights, sh, x, *extra)
                results.append([None if t is None else t[: stop - start] for t in out])
        joined = [
            parts[0] if len(results) == 1 or parts[0] is None else torch.cat(parts)
            for parts in zip(*results)
        ]
        return joined if name == "_messages" else tuple(joined)

    # -- the computation ---------------------------------------------------------------
    def _coefficients(self, sh: Tensor, directions: int) -> Tensor:
        cg = self.cg if directions == 1 else self.cg_both
        return (sh @ cg).view(sh.shape[0], directions, self.cg.shape[1])  # [R, D, M]

    def _coupled(self, m: Tensor, x: Tensor) -> list[Tensor | None]:
        """``coupled_b = M_b x_b^T`` ``[R, D, F_b, v]`` of every input block."""
        rows, directions = x.shape[:2]
        coupled: list[Tensor | None] = []
        x_blocks = self.plan.rs_in.chunks(x)  # [R, D, v, m_i] per input block
        for b, ((_, l_in, _), x_b) in enumerate(zip(self.plan.rs_in, x_blocks)):
            width = self.coupled_rows[b]
            if width == 0:
                coupled.append(None)
                continue
            di = 2 * l_in + 1
            m_b = m[..., self.m_offset[b] : self.m_offset[b] + width * di]  # [R, D, F_b m_i]
            if di == 1:
                c = m_b.unsqueeze(3) * x_b.transpose(2, 3)  # [R, D, F_b, v]
            elif torch.compiler.is_compiling():  # unrolled over m_i: one fused loop
                m_b = m_b.view(rows, directions, width, di)
                c = sum(m_b[..., i, None] * x_b[..., None, :, i] for i in range(di))
            else:
                c = torch.matmul(
                    m_b.view(rows, directions, width, di), x_b.transpose(2, 3)
                )  # [R, D, F_b, v]
            coupled.append(c)
        return coupled

    def _gathered(self, coupled: list[Tensor | None]) -> list[Tensor]:
        """``C_o`` ``[R, D, 2l_o+1, J_o]`` of every output block (the one copy)."""
        pieces: list[list[Tensor]] = [[] for _ in self.plan.rs_out]
        for piece in self.pieces:
            c = coupled[piece.index_in]
            rows_f = slice(piece.column, piece.column + piece.dim_out * piece.n_filters)
            pieces[piece.index_out].append(
                c[:, :, rows_f].reshape(*c.shape[:2], piece.dim_out, piece.n_filters * piece.mul_in)
            )  # [R, D, k, f v]
        like = next(c for c in coupled if c is not None)  # [R, D, F_b, v]
        return [
            torch.cat(p, dim=3) if len(p) > 1 else p[0] if p  # [R, D, k, J_o]
            else like.new_zeros(*like.shape[:2], 2 * l + 1, 0)  # a block of multiplicity 0
            for p, (_, l, _) in zip(pieces, self.plan.rs_out)
        ]  # fmt: skip

    def _block_weights(self, weights: Tensor, o: int) -> Tensor:
        width = self.path_channels[o]
        start = self.weight_offset[o]
        if self.channelwise:
            return weights[:, start : start + width]  # [R, J_o]
        mul = self.plan.rs_out[o].mul
        return weights[:, start : start + width * mul].view(weights.shape[0], width, mul)

    def _messages(self, weights: Tensor, sh: Tensor, x: Tensor) -> list[Tensor]:
        rows, directions = x.shape[:2]
        gathered = self._gathered(self._coupled(self._coefficients(sh, directions), x))
        parts = []
        for o, c in enumerate(gathered):
            w = self._block_weights(weights, o)
            if self.channelwise:
                message = c * w[:, None, None, :]  # [R, D, k, J_o]
            else:
                message = torch.matmul(c.flatten(1, 2), w)  # [R, D k, u]
            parts.append(message.reshape(rows, directions, self.part_widths[o]))  # [R, D, k u|J]
        return parts

    def _backward(
        self,
        weights: Tensor,
        sh: Tensor,
        x: Tensor,
        grads: tuple[Tensor, ...],
        needs: tuple[bool, ...],
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """Gradients to (weights, sh, x) from those of the message parts."""
        rows, directions = x.shape[:2]
        m = self._coefficients(sh, directions)  # [R, D, M]
        coupled = self._coupled(m, x)
        gathered = self._gathered(coupled)
        grad_w, grad_c = [], []
        for o, (c, g) in enumerate(zip(gathered, grads)):
            k, width = c.shape[2], c.shape[3]
            w = self._block_weights(weights, o)
            if self.channelwise:
                g = g.view(rows, directions, k, width)  # [R, D, k, J_o]
                if needs[0]:
                    grad_w.append((g * c).sum(dim=(1, 2)))  # [R, J_o]
                grad_c.append(g * w[:, None, None, :])  # [R, D, k, J_o]
                continue
            g = g.view(rows, directions * k, self.plan.rs_out[o].mul)  # [R, D k, u]
            if needs[0]:
                c_flat = c.reshape(rows, directions * k, width)
                grad_w.append(torch.matmul(c_flat.transpose(1, 2), g).flatten(1))  # [R, J_o u]
            grad_c.append(
                torch.matmul(g, w.transpose(1, 2)).view(rows, directions, k, width)
            )  # [R, D, k, J_o]
        grad_weights = torch.cat(grad_w, dim=1) if needs[0] else None
        if not (needs[1] or needs[2]):
            return grad_weights, None, None
        return (grad_weights, *self._input_gradients(m, x, grad_c, needs))

    def _input_gradients(
        self, m: Tensor, x: Tensor, grad_c: list[Tensor], needs: tuple[bool, ...]
    ) -> tuple[Tensor | None, Tensor | None]:
        """Gradients to (sh, x) from those of the gathered coupled features ``grad_c``."""
        rows, directions = x.shape[:2]
        # back to the input blocks: grad of coupled_b [R, D, F_b, v]
        by_block: list[list[Tensor]] = [[] for _ in self.plan.rs_in]
        for piece in self.pieces:
            g = grad_c[piece.index_out][..., piece.j_offset :][
                ..., : piece.n_filters * piece.mul_in
            ]  # [R, D, k, f v]
            by_block[piece.index_in].append(g.reshape(rows, directions, -1, piece.mul_in))
        grad_m, grad_x = [], []  # grad_x: [R, D, v, m_i] per input block
        x_blocks = self.plan.rs_in.chunks(x)  # [R, D, v, m_i] per input block
        for b, ((_, l_in, _), parts, x_b) in enumerate(zip(self.plan.rs_in, by_block, x_blocks)):
            di = 2 * l_in + 1
            if not parts:
                grad_x.append(torch.zeros_like(x_b))
                continue
            g = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)  # [R, D, F_b, v]
            width = self.coupled_rows[b]
            m_b = m[..., self.m_offset[b] : self.m_offset[b] + width * di].reshape(
                rows, directions, width, di
            )  # [R, D, F_b, m_i]
            if torch.compiler.is_compiling():  # products with 2l+1 <= 7 outputs: reductions
                if needs[2]:
                    grad_x.append((g.unsqueeze(4) * m_b.unsqueeze(3)).sum(2))
                if needs[1]:
                    grad_m.append((g.unsqueeze(4) * x_b.unsqueeze(2)).sum(3).flatten(2))
                continue
            if needs[2]:
                grad_x.append(torch.matmul(g.transpose(2, 3), m_b))  # [R, D, v, m_i]
            if needs[1]:
                grad_m.append(torch.matmul(g, x_b).flatten(2))  # [R, D, F_b m_i]
        grad_sh = None
        if needs[1]:
            cg = self.cg if directions == 1 else self.cg_both
            grad_m_all = torch.cat(grad_m, dim=2).reshape(rows, cg.shape[1])  # [R, D M]
            grad_sh = grad_m_all @ cg.t()  # [R, n_Y]
        grad_x_all = self.plan.rs_in.from_chunks(grad_x) if needs[2] else None  # [R, D, dim_in]
        return grad_sh, grad_x_all

    def assemble(self, parts: list[Tensor], mix: list[Tensor] | None = None) -> Tensor:
        r"""Features ``[N, dim(Rs_out)]`` from (sums of) message parts ``[N, width]``.

        ``mix`` (channel-wise only): the maps :math:`L^{(o)}` ``[mul_o, N_o]`` of every
        output block, columns :math:`(i, v, f)` as documented by the Kernel.
        """
        if self.channelwise and (mix is None or len(mix) != len(self.plan.rs_out)):
            raise ValueError("a channel-wise engine needs one mixing map per output block")
        blocks = []
        for o, (part, width, (mul, l, _)) in enumerate(
            zip(parts, self.path_channels, self.plan.rs_out)
        ):
            channels = width if self.channelwise else mul
            part = part.reshape(part.shape[0], 2 * l + 1, channels)  # [N, k, u] or [N, k, J_o]
            if self.channelwise:
                part = part @ mix[o][:, self.mix_permutation[o]].t()  # [N, k, u]
            blocks.append(part.transpose(1, 2))  # [N, u, k]
        return self.plan.rs_out.from_chunks(blocks)  # [N, dim_out]


_COMPILE_ERROR: list[str] = []  # the first compiler failure: every engine then stays eager


def _compile_failed(error: Exception) -> None:
    _COMPILE_ERROR.append(f"{type(error).__name__}: {error}")
    warnings.warn(
        f"torch.compile failed, the fused engine runs eagerly from now on "
        f"({_COMPILE_ERROR[0].splitlines()[0]})",
        RuntimeWarning,
        stacklevel=3,
    )


def _conventional_offsets(plan: KernelPlan, channelwise: bool) -> Tensor:
    """The conventions-layout column of every full-kernel weight index (identity if full)."""
    if not channelwise:
        return torch.arange(plan.n_path)
    columns, offset = [], 0
    for pair in plan.pairs:
        nf = len(pair.filters)
        for _ in range(pair.mul_out):
            columns += range(offset, offset + pair.mul_in * nf)
        offset += pair.mul_in * nf
    return torch.tensor(columns, dtype=torch.long)

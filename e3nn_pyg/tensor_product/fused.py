r"""The fused engine: every path of a kernel in a few batched matrix products.

For a row (an edge, or an undirected pair of edges) with radial weights :math:`R` and
spherical harmonics :math:`Y` of its vector :math:`r`, the engine computes the messages

.. math::
    m_{u m_o} = \sum_{v, f} R_{uvf}
        \underbrace{\sum_{m_i} x_{v m_i} \sum_{m_f} c_f\, C^{(l_i, l_f, l_o)}_{m_i m_f m_o}
        Y^{l_f}_{m_f}(\hat r)}_{\text{coupled}_{v f m_o}}

exactly as :func:`~e3nn_pyg.tensor_product.reference.apply_kernel` does, in another order:

1. for every input block :math:`b`, the products :math:`x_{v m_i} Y_{m_f}` of its
   features with all the spherical harmonics (``[rows mul_i, (2l_i+1) n_Y]``), times the
   Clebsch-Gordan coefficients of all the paths leaving the block, normalization constants
   :math:`c_f` folded in (``[(2l_i+1) n_Y, F_b]``): one matrix product with ``rows mul_i``
   rows gives ``coupled`` ``[rows, mul_i, F_b]``;
2. per block pair, ``m_o += R_pair @ coupled_pair`` (one batched product,
   ``[rows, mul_o, mul_i n_f] @ [rows, mul_i n_f, 2l_o+1]``), or, for a channel-wise kernel,
   the element-wise product :math:`R_{vf}\, \text{coupled}_{v f m_o}`.

**Undirected pairs.** On a symmetric graph the edges :math:`j \to i` and :math:`i \to j`
have opposite vectors, the same length and so the same radial weights, and
:math:`Y^l(-r) = (-1)^l Y^l(r)`. A row can therefore carry both directions: the radial
model runs once per pair and every weight is read once for two messages (the second
direction's coupled features use :math:`(-1)^{l_f} Y`). :func:`pair_edges` finds the pairs.

Every step is a plain differentiable torch operation, so gradients of every order (force
training needs the double backward) come from autograd and equal the reference's up to
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..o3 import wigner_3j
from .paths import KernelPlan

__all__ = ["EdgePairing", "FusedTensorProduct", "pair_edges"]


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
    num_paired: int

    @property
    def num_rows(self) -> int:
        return self.edge.shape[0]


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


@dataclass(frozen=True)
class _Path:
    """Where one block pair reads and writes inside the fused engine."""

    index_out: int
    index_in: int
    mul_out: int
    mul_in: int
    dim_out: int  # 2 l_o + 1
    n_filters: int
    column: int  # first column of its coupled features in the input block's F_b
    weight_offset: int  # first radial weight


class FusedTensorProduct(nn.Module):
    r"""Applies the paths of a :class:`~e3nn_pyg.tensor_product.paths.KernelPlan` to rows.

    Args:
        plan (KernelPlan): the paths (normalization constants included).
        channelwise (bool, optional): radial weights ``[rows, mul_i n_f]`` per block pair
            (one per input channel and filter) multiply the coupled features element-wise,
            and the result keeps one channel per input channel and filter
            (:attr:`Rs_mid`); otherwise weights ``[rows, mul_o mul_i n_f]`` contract them
            to ``Rs_out``. (default: ``False``)

    Shapes:
        - **input:** radial weights :math:`(R, n_w)`, spherical harmonics
          :math:`(R, \sum_{l_f} 2l_f+1)` in ``plan.filter_orders`` order, source features
          :math:`(D R, \dim_\text{in})` with the ``D`` directions stacked (the second one
          uses :math:`Y(-r)`)
        - **output:** messages :math:`(D R, \dim_\text{out})` (or :math:`\dim_\text{mid}`)
    """

    def __init__(self, plan: KernelPlan, channelwise: bool = False) -> None:
        super().__init__()
        self.plan = plan
        self.channelwise = channelwise
        orders = plan.filter_orders
        y_offset, offset = {}, 0
        for l_f in orders:
            y_offset[l_f] = offset
            offset += 2 * l_f + 1
        self.num_sh = offset
        self.register_buffer(
            "y_sign",
            torch.tensor([(-1.0) ** l for l in orders for _ in range(2 * l + 1)]),
            persistent=False,
        )  # [num_sh]

        self.paths: list[_Path] = []
        columns = [0] * len(plan.rs_in)
        weight_offset = 0
        blocks: dict[int, list[tuple[int, Tensor]]] = {}
        for pair in plan.pairs:
            dim_out = 2 * pair.l_out + 1
            b = pair.index_in
            for t, (l_f, norm) in enumerate(zip(pair.filters, pair.norms)):
                cg = wigner_3j(pair.l_in, l_f, pair.l_out, dtype=torch.float64)  # [i, j, k]
                block = torch.zeros(self.num_sh, 2 * pair.l_in + 1, dim_out, dtype=torch.float64)
                block[y_offset[l_f] : y_offset[l_f] + 2 * l_f + 1] = norm * cg.transpose(0, 1)
                blocks.setdefault(b, []).append((columns[b] + t * dim_out, block))
            n_filters = len(pair.filters)
            mul_w = pair.mul_in * n_filters * (1 if channelwise else pair.mul_out)
            self.paths.append(
                _Path(
                    pair.index_out, b, pair.mul_out, pair.mul_in, dim_out, n_filters,
                    columns[b], weight_offset,
                )
            )  # fmt: skip
            columns[b] += n_filters * dim_out
            weight_offset += mul_w
        self.num_weights = weight_offset
        self.block_width = columns  # F_b of every input block
        for b, width in enumerate(columns):
            if width == 0:
                continue
            l_in = plan.rs_in[b].l
            cg = torch.zeros(2 * l_in + 1, self.num_sh, width, dtype=torch.float64)
            for column, block in blocks[b]:
                cg[:, :, column : column + block.shape[2]] = block.transpose(0, 1)
            self.register_buffer(
                f"cg_{b}", cg.reshape(-1, width).to(torch.get_default_dtype()), persistent=False
            )  # [(2l_i+1) num_sh, F_b]
        # channel-wise: one intermediate channel per (input channel, filter) of every path
        self.mid_channels = [0] * len(plan.rs_out)
        for path in self.paths:
            self.mid_channels[path.index_out] += path.mul_in * path.n_filters

    @property
    def part_widths(self) -> list[int]:
        """Widths of the message parts: one per output block, or one per path if channel-wise."""
        if self.channelwise:
            return [p.mul_in * p.n_filters * p.dim_out for p in self.paths]
        return [mul * (2 * l + 1) for mul, l, _ in self.plan.rs_out]

    def forward(self, weights: Tensor, sh: Tensor, x: Tensor, directions: int = 1) -> list[Tensor]:
        """The message parts ``[D R, width]`` (see :attr:`part_widths` and :meth:`assemble`)."""
        rows = weights.shape[0]
        if weights.shape[1] != self.num_weights or sh.shape != (rows, self.num_sh):
            raise ValueError(
                f"expected weights [rows, {self.num_weights}] and spherical harmonics "
                f"[rows, {self.num_sh}], got {tuple(weights.shape)} and {tuple(sh.shape)}"
            )
        if directions not in (1, 2) or x.shape != (directions * rows, self.plan.rs_in.dim):
            raise ValueError(
                f"expected source features [{directions} * {rows}, {self.plan.rs_in.dim}], "
                f"got {tuple(x.shape)}"
            )
        if directions == 2:
            sh = torch.cat([sh, sh * self.y_sign])  # [2R, num_sh]: Y(r), Y(-r)
        coupled = []
        for b, ((mul, l_in, _), block) in enumerate(zip(self.plan.rs_in, self.plan.rs_in.slices())):
            if self.block_width[b] == 0:
                coupled.append(None)
                continue
            cg = getattr(self, f"cg_{b}")  # [(2l_i+1) num_sh, F_b]
            x_b = x[:, block].view(-1, mul, 2 * l_in + 1, 1)  # [DR, v, i, 1]
            products = (x_b * sh.view(-1, 1, 1, self.num_sh)).view(-1, cg.shape[0])  # [DR v, i Y]
            coupled.append(
                (products @ cg).view(directions, rows, mul, self.block_width[b])
            )  # [D, R, v, F]
        parts: list[Tensor | None] = [None] * len(self.plan.rs_out)
        if not self.channelwise:  # directions innermost: [R, v, F, D]
            coupled = [
                c if c is None else c.permute(1, 2, 3, 0).reshape(rows, c.shape[2], -1)
                for c in coupled
            ]  # [R, v, F D]
        for path in self.paths:
            k, nf, u, v = path.dim_out, path.n_filters, path.mul_out, path.mul_in
            if self.channelwise:
                c = coupled[path.index_in][
                    ..., path.column : path.column + nf * k
                ]  # [D, R, v, f k]
                w = weights[:, path.weight_offset : path.weight_offset + v * nf]  # [R, v f]
                message = c.view(directions, rows, v, nf, k) * w.view(1, rows, v, nf, 1)
                parts.append(message.view(directions * rows, v * nf * k))  # [DR, v f k]
                continue
            columns = slice(path.column * directions, (path.column + nf * k) * directions)
            c = coupled[path.index_in][:, :, columns]  # [R, v, f k D] (strided)
            if nf > 1:
                c = c.reshape(rows, v * nf, k * directions)  # [R, v f, k D]
            w = weights[:, path.weight_offset : path.weight_offset + u * v * nf]
            message = torch.matmul(w.view(rows, u, v * nf), c)  # [R, u, k D]
            o = path.index_out
            parts[o] = message if parts[o] is None else parts[o] + message
        if self.channelwise:
            return parts[len(self.plan.rs_out) :]
        return [
            part.view(rows, mul, 2 * l + 1, directions)
            .permute(3, 0, 1, 2)
            .reshape(-1, mul * (2 * l + 1))
            for part, (mul, l, _) in zip(parts, self.plan.rs_out)
        ]  # [DR, u k] each, direction-major

    def assemble(self, parts: list[Tensor], mix: list[Tensor] | None = None) -> Tensor:
        r"""Features ``[N, dim(Rs_out)]`` from (sums of) message parts ``[N, width]``.

        ``mix`` (channel-wise only): the maps :math:`L^{(o)}` ``[mul_o, N_o]`` of every
        output block, applied to the channels :math:`(i, v, f)` of its paths.
        """
        if not self.channelwise:
            return torch.cat(parts, dim=1)  # [N, dim_out]
        if mix is None or len(mix) != len(self.plan.rs_out):
            raise ValueError("a channel-wise engine needs one mixing map per output block")
        blocks: list[Tensor | None] = [None] * len(self.plan.rs_out)
        columns = [0] * len(self.plan.rs_out)
        for path, part in zip(self.paths, parts):
            o, width = path.index_out, path.mul_in * path.n_filters
            block = part.view(-1, width, path.dim_out)  # [N, v f, k]
            mixed = torch.matmul(mix[o][:, columns[o] : columns[o] + width], block)  # [N, u, k]
            blocks[o] = mixed if blocks[o] is None else blocks[o] + mixed
            columns[o] += width
        return torch.cat([b.flatten(1) for b in blocks], dim=1)  # [N, dim_out]

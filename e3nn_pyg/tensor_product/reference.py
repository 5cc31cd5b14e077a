r"""The straightforward engine: kernel matrices (the oracle) and their blockwise action.

For a path from input block :math:`(v, m_i)` to output block :math:`(u, m_o)` through
filter :math:`l_f`, with per-edge radial weights :math:`R_{uvf}`,

.. math::
    K(r)_{u m_o, v m_i} = \sum_f c_f R_{uvf}(|r|)
        \sum_{m_f} C^{(l_i, l_f, l_o)}_{m_i m_f m_o} Y^{l_f}_{m_f}(\hat r)
        \;=\; \sum_f R_{uvf}\, M^{f}_{m_i m_o}(\hat r),

:math:`c_f` the path's normalization constant. :func:`kernel_matrix` builds :math:`K`
(``[E, dim_out, dim_in]``: for inspection and as the oracle of the fast engines);
:func:`apply_kernel` computes :math:`K(r_e) x_e` one block pair at a time with memory
:math:`O(E (\dim_\text{in} + \dim_\text{out} + n_\text{path}))`, never building
:math:`K`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ..o3 import wigner_3j
from .paths import BlockPair, KernelPlan

__all__ = ["apply_kernel", "cg_lookup", "filter_matrices", "full_weights", "kernel_matrix"]

CGLookup = Callable[[int, int, int], Tensor]


def cg_lookup(like: Tensor) -> CGLookup:
    """``(l_i, l_f, l_o) -> wigner_3j`` in the dtype and on the device of ``like``."""
    return lambda l1, l2, l3: wigner_3j(l1, l2, l3, dtype=like.dtype, device=like.device)


def full_weights(plan: KernelPlan, weights: Tensor, mix: list[Tensor]) -> Tensor:
    r"""The radial weights of every path in docs/conventions.md's layout ``[E, plan.n_path]``.

    ``weights`` are those layout's weights already when ``mix`` is empty (a full kernel);
    a channel-wise kernel's ``[E, n_w]`` (per block pair ``[v, f]``) are mixed by its maps
    ``mix[o]`` ``[u, N_o]``: :math:`R_{uvf} = L^{(o)}_{u,(ivf)} R_{vf}`.
    """
    if not mix:
        return weights
    blocks, columns, offset = [], [0] * len(plan.rs_out), 0
    for pair in plan.pairs:
        width = pair.mul_in * len(pair.filters)
        o = pair.index_out
        block_mix = mix[o][:, columns[o] : columns[o] + width]  # [u, v f]
        radial = weights[:, offset : offset + width]  # [E, v f]
        blocks.append((block_mix * radial.unsqueeze(1)).flatten(1))  # [E, u v f]
        columns[o] += width
        offset += width
    return torch.cat(blocks, dim=1)  # [E, plan.n_path]


def filter_matrices(pair: BlockPair, sh: Mapping[int, Tensor], cg: CGLookup) -> Tensor:
    r""":math:`M^f_{m_i m_o} = c_f \sum_{m_f} C_{m_i m_f m_o} Y^{l_f}_{m_f}` for every edge.

    Args:
        pair (BlockPair): the block pair.
        sh (mapping): ``l -> Y^l`` of the edges, ``[E, 2l+1]``.
        cg (callable): ``(l_i, l_f, l_o) -> wigner_3j`` on the right dtype and device.

    Returns:
        Tensor ``[E, n_filters, 2l_i+1, 2l_o+1]``.
    """
    return torch.stack(
        [
            norm * torch.einsum("ijk,ej->eik", cg(pair.l_in, l_f, pair.l_out), sh[l_f])
            for l_f, norm in zip(pair.filters, pair.norms)
        ],
        dim=1,
    )  # [E, n_filters, 2l_i+1, 2l_o+1]


def _pair_weights(pair: BlockPair, weights: Tensor) -> Tensor:
    block = weights[:, pair.weight_offset : pair.weight_offset + pair.num_weights]
    return block.reshape(-1, pair.mul_out, pair.mul_in, len(pair.filters))  # [E, u, v, f]


def kernel_matrix(
    plan: KernelPlan, weights: Tensor, sh: Mapping[int, Tensor], cg: CGLookup
) -> Tensor:
    """The kernel matrices ``[E, dim_out, dim_in]`` (see the module docstring)."""
    num_edges = weights.shape[0]
    out = weights.new_zeros(num_edges, plan.rs_out.dim, plan.rs_in.dim)
    slices_out, slices_in = plan.rs_out.slices(), plan.rs_in.slices()
    for pair in plan.pairs:
        w = _pair_weights(pair, weights)  # [E, u, v, f]
        m = filter_matrices(pair, sh, cg)  # [E, f, i, k]
        block = torch.einsum("euvf,efik->eukvi", w, m)  # [E, u, 2l_o+1, v, 2l_i+1]
        rows, cols = slices_out[pair.index_out], slices_in[pair.index_in]
        out[:, rows, cols] += block.flatten(3).flatten(1, 2)
    return out


def apply_kernel(
    plan: KernelPlan, weights: Tensor, sh: Mapping[int, Tensor], cg: CGLookup, x: Tensor
) -> Tensor:
    """``K(r_e) x_e`` for every edge, ``[E, dim_out]``, without building ``K``.

    Args:
        plan (KernelPlan): the paths.
        weights (Tensor): radial weights ``[E, n_path]``.
        sh (mapping): ``l -> [E, 2l+1]`` spherical harmonics of the edges.
        cg (callable): ``(l_i, l_f, l_o) -> wigner_3j``.
        x (Tensor): the source features of every edge ``[E, dim_in]``.
    """
    num_edges = x.shape[0]
    x_blocks = plan.rs_in.chunks(x)  # [E, v, 2l_i+1] per input block
    outputs = [x.new_zeros(num_edges, mul, 2 * l + 1) for mul, l, _ in plan.rs_out]
    for pair in plan.pairs:
        x_block = x_blocks[pair.index_in]  # [E, v, i]
        m = filter_matrices(pair, sh, cg)  # [E, f, i, k]
        coupled = torch.einsum("evi,efik->evfk", x_block, m)  # [E, v, f, 2l_o+1]
        w = _pair_weights(pair, weights)  # [E, u, v, f]
        outputs[pair.index_out] += torch.einsum("euvf,evfk->euk", w, coupled)
    return plan.rs_out.from_chunks(outputs, (num_edges,), dtype=x.dtype, device=x.device)

r"""The self-interaction: an equivariant linear map acting on each node's own features."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..checks import require_features
from ..o3 import Rs, RsLike

__all__ = ["SelfInteraction", "SpeciesSelfInteraction"]


class SelfInteraction(nn.Module):
    r"""Per-irrep linear mixing of the copies of each irrep type (the "self-interaction" of
    Tensor Field Networks).

    For every output block :math:`(m_o, l, p)` the copies :math:`u` are linear
    combinations of the copies :math:`v` of all input blocks of the same type
    :math:`(l, p)`, the same matrix for every component :math:`m`,

    .. math::
        \mathbf{y}_{u m} = \frac{1}{\sqrt{n_{l p}}} \sum_{v} W_{u v}\, \mathbf{x}_{v m}
        \; + \; b_u \, [l = 0,\ p \ne -1],

    where :math:`n_{l p}` is the number of input copies of type :math:`(l, p)` (so that
    unit-variance inputs give unit-variance outputs with :math:`W \sim \mathcal{N}(0, 1)`).
    A matrix that mixes only equal irreps commutes with every :math:`D^{l}_p(R)`, so the map
    is equivariant; the bias only enters true scalars (``0e``, or ``0`` without parity).
    Output blocks with no input of their type are zero.

    Args:
        Rs_in (Rs-like): input representation.
        Rs_out (Rs-like): output representation.
        bias (bool, optional): learn a bias for the scalar outputs. (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(*, \dim(\mathrm{Rs\_in}))`
        - **output:** :math:`(*, \dim(\mathrm{Rs\_out}))`

    Example:
        >>> lin = SelfInteraction("4x0e + 2x1o", "3x0e + 5x1o + 1x2e")
        >>> lin(torch.randn(10, 10)).shape
        torch.Size([10, 23])
        >>> sum(p.numel() for p in lin.parameters())  # 3*4 + 5*2 weights, 3 biases
        25
    """

    #: the leading shape of every weight and bias (one matrix for all nodes)
    _rows: tuple[int, ...] = ()

    def __init__(self, Rs_in: RsLike, Rs_out: RsLike, bias: bool = True) -> None:
        super().__init__()
        self.Rs_in, self.Rs_out = Rs(Rs_in), Rs(Rs_out)
        # For each output block: the indices of the input blocks of its type.
        self._sources: list[list[int]] = []
        weights, biases = [], []
        for mul_o, l, p in self.Rs_out:
            sources = [
                i
                for i, (mul_i, l_i, p_i) in enumerate(self.Rs_in)
                if (l_i, p_i) == (l, p) and mul_i > 0
            ]
            self._sources.append(sources)
            fan_in = sum(self.Rs_in[i].mul for i in sources)
            weight = torch.empty(*self._rows, mul_o, fan_in)
            weights.append(nn.Parameter(weight) if fan_in and mul_o else None)
            scalar = l == 0 and p != -1 and mul_o > 0
            bias_row = torch.empty(*self._rows, mul_o)
            biases.append(nn.Parameter(bias_row) if bias and scalar else None)
        self.weights = nn.ParameterList([w for w in weights if w is not None])
        self.biases = nn.ParameterList([b for b in biases if b is not None])
        self._weight_index = _positions(weights)
        self._bias_index = _positions(biases)
        self.bias = bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Weights :math:`\mathcal{N}(0, 1)` (the :math:`1/\sqrt{n}` lives in the forward),
        biases zero."""
        for weight in self.weights:
            nn.init.normal_(weight)
        for bias in self.biases:
            nn.init.zeros_(bias)

    def forward(self, x: Tensor) -> Tensor:
        require_features(x, self.Rs_in, "SelfInteraction input", batch_axes=True)
        return self._mix(
            x, "uv,...vm->...um", lambda w: self.weights[w], lambda b: self.biases[b][:, None]
        )

    def _mix(
        self,
        x: Tensor,
        equation: str,
        weight_of: Callable[[int], Tensor],
        bias_of: Callable[[int], Tensor],
    ) -> Tensor:
        """The map with the weight matrices ``weight_of(i)`` of block ``i`` (``[mul_o,
        n_lp]``, or one per node ``[N, mul_o, n_lp]``), applied by ``equation``, and its
        biases ``bias_of(i)`` (broadcast over ``2l+1``)."""
        batch_shape = x.shape[:-1]
        chunks = self.Rs_in.chunks(x)  # [..., mul, 2l+1] per block of Rs_in
        out = []
        for (mul_o, l, _), sources, w, b in zip(
            self.Rs_out, self._sources, self._weight_index, self._bias_index
        ):
            if w < 0:
                out.append(x.new_zeros(*batch_shape, mul_o, 2 * l + 1))
                continue
            blocks = [chunks[i] for i in sources]
            v = torch.cat(blocks, dim=-2) if len(blocks) > 1 else blocks[0]  # [..., n_lp, 2l+1]
            weight = weight_of(w)  # [mul_o, n_lp] or [N, mul_o, n_lp]
            y = torch.einsum(equation, weight, v) / math.sqrt(weight.shape[-1])  # [..., mul_o, m]
            if b >= 0:
                y = y + bias_of(b)  # [..., mul_o, 1]
            out.append(y)  # [..., mul_o, 2l+1]
        return self.Rs_out.from_chunks(out, batch_shape, dtype=x.dtype, device=x.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.Rs_in}' -> '{self.Rs_out}', bias={self.bias})"


class SpeciesSelfInteraction(SelfInteraction):
    r"""A :class:`SelfInteraction` with its own matrices and biases for every element row:
    node :math:`i` of row :math:`s_i` (its element's slot) is mapped by

    .. math::
        \mathbf{y}_{i u m} = \frac{1}{\sqrt{n_{l p}}} \sum_{v} W^{(s_i)}_{u v}\,
        \mathbf{x}_{i v m} \; + \; b^{(s_i)}_u \, [l = 0,\ p \ne -1],

    equivariant for the same reason (the element is an invariant). MACE's element-dependent
    skip connection is this map.

    Args:
        Rs_in (Rs-like): input representation.
        Rs_out (Rs-like): output representation.
        num_species (int): the number of element rows.
        bias (bool, optional): learn a bias for the scalar outputs. (default: :obj:`True`)

    Shapes:
        - **input:** features :math:`(N, \dim(\mathrm{Rs\_in}))`, rows :math:`(N)` long in
          ``[0, num_species)``
        - **output:** :math:`(N, \dim(\mathrm{Rs\_out}))`

    Example:
        >>> lin = SpeciesSelfInteraction("4x0e + 2x1o", "3x0e + 1x1o", num_species=2)
        >>> x, rows = torch.randn(5, 10), torch.tensor([0, 1, 1, 0, 1])
        >>> lin(x, rows).shape
        torch.Size([5, 6])
        >>> torch.allclose(lin(x, rows)[1], lin(x[1:2], rows[1:2])[0])
        True
    """

    def __init__(self, Rs_in: RsLike, Rs_out: RsLike, num_species: int, bias: bool = True) -> None:
        if num_species < 1:
            raise ValueError(f"num_species = {num_species} must be at least 1")
        self.num_species = num_species
        self._rows = (num_species,)
        super().__init__(Rs_in, Rs_out, bias)

    def forward(self, x: Tensor, rows: Tensor) -> Tensor:  # type: ignore[override]
        require_features(x, self.Rs_in, "SpeciesSelfInteraction input")
        if rows.shape != x.shape[:1]:
            raise ValueError(
                f"rows of shape {tuple(rows.shape)} must give one element row per node "
                f"({x.shape[0]})"
            )
        return self._mix(
            x,
            "nuv,nvm->num",
            lambda w: self.weights[w][rows],  # [N, mul_o, n_lp]
            lambda b: self.biases[b][rows][:, :, None],  # [N, mul_o, 1]
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}('{self.Rs_in}' -> '{self.Rs_out}', "
            f"num_species={self.num_species}, bias={self.bias})"
        )


def _positions(items: list) -> list[int]:
    """Index of every non-``None`` item among the non-``None`` items, ``-1`` for ``None``."""
    out, count = [], 0
    for item in items:
        out.append(count if item is not None else -1)
        count += item is not None
    return out

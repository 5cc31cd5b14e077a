r"""Gated non-linearities: scalars go through an activation, every other irrep is
multiplied by an activated scalar *gate* of its own.

Both layers compute, for each scalar :math:`s` and each copy :math:`v` of a gated irrep
with its gate :math:`g_v`,

.. math::
    s \mapsto \sigma_s(s), \qquad v \mapsto \sigma_g(g_v)\, v,

which is equivariant because :math:`\sigma_g(g_v)` is a scalar. :class:`GatedBlock`
keeps the tutorial's layout (the gates appended after ``Rs_out``, no parity bookkeeping
beyond checking it); :class:`GatedBlockParity` takes scalars, gates and gated irreps as
three lists and works out the parity of every output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..checks import require_features
from ..o3 import Rs, RsLike
from ._common import Activation, activated_parity, as_module

__all__ = ["GatedBlock", "GatedBlockParity"]

Activations = Activation | None | Sequence[Activation | None]


class _Block(NamedTuple):
    """One output block: the block ``index`` of ``Rs_in``.

    ``gate < 0``: a scalar block through ``scalar_acts[act]``; otherwise its ``mul`` copies
    are multiplied by the activated gates ``gate .. gate + mul - 1``.
    """

    index: int
    act: int
    gate: int


class _Gate(torch.nn.Module):
    """The forward pass shared by the gated blocks; subclasses lay out the blocks."""

    def __init__(
        self,
        Rs_in: Rs,
        Rs_out: Rs,
        scalar_acts: list[torch.nn.Module],
        gate_acts: list[torch.nn.Module],
        gate_slices: list[slice],
        blocks: list[_Block],
        layout: Rs,
    ) -> None:
        super().__init__()
        self.Rs_in = Rs_in
        self.Rs_out = Rs_out
        self._layout = layout  # the output blocks as the forward makes them, one per _Block
        self.scalar_acts = torch.nn.ModuleList(scalar_acts)
        self.gate_acts = torch.nn.ModuleList(gate_acts)
        self._gate_slices = gate_slices
        self._blocks = blocks

    def reset_parameters(self) -> None:
        """Reset the activations that have parameters (the gate itself has none)."""
        for act in [*self.scalar_acts, *self.gate_acts]:
            if hasattr(act, "reset_parameters"):
                act.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[..., Rs_in.dim]`` -> ``[..., Rs_out.dim]``."""
        require_features(x, self.Rs_in, f"{type(self).__name__} input", batch_axes=True)
        gates = [act(x[..., s]) for act, s in zip(self.gate_acts, self._gate_slices)]
        gates = torch.cat(gates, dim=-1) if gates else x[..., :0]  # [..., num_gates]
        chunks = self.Rs_in.chunks(x)  # [..., mul, 2l+1] per block of Rs_in
        out = []
        for block in self._blocks:
            v = chunks[block.index]  # [..., mul, 2l+1]
            if block.gate < 0:  # the activation sees the scalars as [..., mul]
                out.append(self.scalar_acts[block.act](v.flatten(-2)).unsqueeze(-1))
            else:
                g = gates[..., block.gate : block.gate + v.shape[-2], None]  # [..., mul, 1]
                out.append(v * g)  # [..., mul, 2l+1]
        return self._layout.from_chunks(out, x.shape[:-1], dtype=x.dtype, device=x.device)


class GatedBlock(_Gate):
    r"""The gated non-linearity of the e3nn tutorial: the gates are appended to the
    features, and the output has the representation ``Rs_out``.

    The input is ``Rs_out`` followed by one scalar gate per copy of every ``l > 0`` irrep
    of ``Rs_out``, in the order of those irreps (docs/conventions.md "Gated block"). For each
    scalar :math:`s` of ``Rs_out`` and each copy :math:`v^{(i)}` of an ``l > 0`` irrep,
    with gate :math:`g_i`,

    .. math::
        s' = \sigma_s(s), \qquad v'^{(i)} = \sigma_g(g_i)\, v^{(i)}.

    With parities: the gates are even scalars (``0e``; ``0`` for irreps without parity),
    so the ``l > 0`` irreps keep theirs; odd scalars need an odd ``scalar_activation``
    (:class:`GatedBlockParity` allows the others).

    Args:
        Rs_out (Rs-like): the output representation, e.g. ``[(4, 0), (4, 1), (4, 2)]``.
        scalar_activation (callable, optional): :math:`\sigma_s`, applied to the scalars
            (``None``: identity).
        gate_activation (callable): :math:`\sigma_g`, applied to the gates.

    Shapes:
        - **input:** :math:`(*, \dim(\mathrm{Rs\_in}))`, features on the last axis
        - **output:** :math:`(*, \dim(\mathrm{Rs\_out}))`

    Example:
        >>> import torch
        >>> from e3nn_pyg.non_linearities import rescaled_act
        >>> gate = GatedBlock([(4, 0), (4, 1), (4, 2)], rescaled_act.Softplus(beta=5),
        ...                   rescaled_act.sigmoid)
        >>> gate.Rs_in, gate.Rs_in.dim, gate.Rs_out.dim
        (Rs('4x0+4x1+4x2+8x0'), 44, 36)
        >>> gate(torch.randn(10, 44)).shape
        torch.Size([10, 36])
    """

    def __init__(
        self,
        Rs_out: RsLike,
        scalar_activation: Activation | None,
        gate_activation: Activation,
    ) -> None:
        Rs_out = Rs(Rs_out)
        if gate_activation is None:
            raise TypeError("GatedBlock needs a gate_activation (e.g. rescaled_act.sigmoid)")
        scalar_act = as_module(scalar_activation, "scalar_activation")
        gate_act = as_module(gate_activation, "gate_activation")
        Rs_gates = Rs([(mul, 0, 0 if p == 0 else 1) for mul, l, p in Rs_out if l > 0])
        Rs_gates = Rs_gates.simplify()
        gate_start = Rs_out.dim
        blocks, gate = [], 0
        for i, (mul, l, p) in enumerate(Rs_out):  # block i of Rs_out is block i of Rs_in
            if l == 0:
                if mul and activated_parity(p, scalar_act, "GatedBlock") != p:
                    raise ValueError(
                        f"GatedBlock keeps Rs_out = '{Rs_out}', but scalar_activation "
                        f"{scalar_act!r} is even and would make its odd scalars even: use an "
                        "odd activation, or GatedBlockParity"
                    )
                blocks.append(_Block(i, 0, -1))
            else:
                blocks.append(_Block(i, 0, gate))
                gate += mul
        super().__init__(
            Rs_in=Rs_out + Rs_gates,
            Rs_out=Rs_out,
            scalar_acts=[scalar_act],
            gate_acts=[gate_act],
            gate_slices=[slice(gate_start, gate_start + gate)],
            blocks=blocks,
            layout=Rs_out,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(Rs_out='{self.Rs_out}', "
            f"scalar_activation={self.scalar_acts[0]!r}, "
            f"gate_activation={self.gate_acts[0]!r})"
        )


def _per_entry(acts: Activations, rs: Rs, what: str, allow_none: bool) -> list[torch.nn.Module]:
    """One activation module per entry of ``rs``, from one activation or a list."""
    single = not isinstance(acts, (list, tuple, torch.nn.ModuleList))
    if single:
        acts, names = [acts], [what]
    elif len(acts) != len(rs):
        raise ValueError(
            f"{what} has {len(acts)} activations for the {len(rs)} entries of '{rs}'; give "
            "one activation per entry, or a single one for all"
        )
    else:
        names = [f"{what}[{i}]" for i in range(len(acts))]
    if not allow_none and any(act is None for act in acts):
        raise TypeError(f"{what} cannot be None: give e.g. rescaled_act.sigmoid")
    modules = [as_module(act, name) for act, name in zip(acts, names)]
    return modules * len(rs) if single else modules


def _check_scalars(rs: Rs, what: str) -> None:
    if not rs.is_scalar():
        raise ValueError(f"{what} = '{rs}' must contain scalars only (l = 0)")


class GatedBlockParity(_Gate):
    r"""Gated non-linearity for irreps with parity: scalars, gates and gated irreps are
    given separately, and the output parities follow from the activations.

    The input is ``Rs_scalars + Rs_gates + Rs_nonscalars``; the output is the activated
    scalars followed by the gated irreps. Gate :math:`i` (counting copies through
    ``Rs_gates``) multiplies copy :math:`i` of ``Rs_nonscalars``, so both must count the
    same number of irreps:

    .. math::
        s' = \sigma_s(s), \qquad v'^{(i)} = \sigma_g(g_i)\, v^{(i)}.

    Parity rules, for a scalar :math:`s` of parity :math:`p` through an activation
    :math:`\sigma` (the same rule for gates):

    - :math:`p = +1` or :math:`p = 0`: the parity is kept, whatever :math:`\sigma`;
    - :math:`p = -1`: an odd :math:`\sigma` keeps it odd, an even :math:`\sigma`
      (e.g. :func:`~e3nn_pyg.non_linearities.rescaled_act.absolute`) makes it even,
      any other :math:`\sigma` (sigmoid, ReLU, ...) is a ``ValueError``;
    - a gated irrep gets parity :math:`p_{\sigma_g(g)}\, p_v`; a gate and its irrep must
      both have parity or both have none (``p = 0``), else ``ValueError``.

    Whether an activation is odd or even is decided numerically at construction.
    ``Rs_out`` keeps the entries of ``Rs_scalars``; the gated part is simplified entry by
    entry (copies of one entry with equal output parity are merged), the layout is
    unchanged.

    Args:
        Rs_scalars (Rs-like): scalars (``l = 0``) that go through ``act_scalars``.
        act_scalars (callable or list, optional): one activation for all scalars, or one
            per entry of ``Rs_scalars``; ``None`` is the identity.
        Rs_gates (Rs-like): the gates, scalars only, one per copy of ``Rs_nonscalars``.
        act_gates (callable or list): one activation for all gates, or one per entry of
            ``Rs_gates``.
        Rs_nonscalars (Rs-like): the gated irreps (usually ``l > 0``).

    Shapes:
        - **input:** :math:`(*, \dim(\mathrm{Rs\_in}))`, features on the last axis
        - **output:** :math:`(*, \dim(\mathrm{Rs\_out}))`

    Example:
        >>> import torch
        >>> from e3nn_pyg.non_linearities import rescaled_act
        >>> gate = GatedBlockParity("4x0e + 2x0o", [rescaled_act.relu, rescaled_act.absolute],
        ...                         "2x0e + 1x0o", [rescaled_act.sigmoid, rescaled_act.tanh],
        ...                         "2x1o + 1x2e")
        >>> gate.Rs_in
        Rs('4x0e+2x0o+2x0e+1x0o+2x1o+1x2e')
        >>> gate.Rs_out  # |odd| is even; tanh(odd gate) flips the parity of the 2e
        Rs('4x0e+2x0e+2x1o+1x2o')
        >>> gate(torch.randn(5, gate.Rs_in.dim)).shape
        torch.Size([5, 17])
    """

    def __init__(
        self,
        Rs_scalars: RsLike,
        act_scalars: Activations,
        Rs_gates: RsLike,
        act_gates: Activations,
        Rs_nonscalars: RsLike,
    ) -> None:
        Rs_scalars, Rs_gates, Rs_nonscalars = Rs(Rs_scalars), Rs(Rs_gates), Rs(Rs_nonscalars)
        _check_scalars(Rs_scalars, "Rs_scalars")
        _check_scalars(Rs_gates, "Rs_gates")
        if Rs_gates.num_irreps != Rs_nonscalars.num_irreps:
            raise ValueError(
                f"one gate per gated irrep: Rs_gates = '{Rs_gates}' has {Rs_gates.num_irreps} "
                f"gates but Rs_nonscalars = '{Rs_nonscalars}' has "
                f"{Rs_nonscalars.num_irreps} irreps"
            )
        scalar_acts = _per_entry(act_scalars, Rs_scalars, "act_scalars", allow_none=True)
        gate_acts = _per_entry(act_gates, Rs_gates, "act_gates", allow_none=False)
        Rs_in = Rs_scalars + Rs_gates + Rs_nonscalars
        slices = Rs_in.slices()
        n_scalars, n_gates = len(Rs_scalars), len(Rs_gates)

        blocks, scalars_out = [], []
        for i, (mul, _, p) in enumerate(Rs_scalars):
            scalars_out.append((mul, 0, activated_parity(p, scalar_acts[i], "act_scalars")))
            blocks.append(_Block(i, i, -1))

        gate_parities = [  # output parity of every gate, copy by copy
            activated_parity(p, act, "act_gates")
            for (mul, _, p), act in zip(Rs_gates, gate_acts)
            for _ in range(mul)
        ]
        nonscalars_out, gate = Rs(), 0
        for i, (mul, l, p) in enumerate(Rs_nonscalars, start=n_scalars + n_gates):
            copies = []
            for p_gate in gate_parities[gate : gate + mul]:
                if (p_gate == 0) != (p == 0):
                    raise ValueError(
                        f"gate of parity {p_gate} (after its activation) for the irrep "
                        f"{Rs([(1, l, p)])} of Rs_nonscalars: a gate and its irrep "
                        "must both have a parity (±1) or both have none (0)"
                    )
                copies.append((1, l, p_gate * p))
            nonscalars_out += Rs(copies).simplify()
            blocks.append(_Block(i, -1, gate))
            gate += mul

        super().__init__(
            Rs_in=Rs_in,
            Rs_out=Rs(scalars_out) + nonscalars_out,
            scalar_acts=scalar_acts,
            gate_acts=gate_acts,
            gate_slices=slices[n_scalars : n_scalars + n_gates],
            blocks=blocks,
            layout=Rs_scalars + Rs_nonscalars,
        )
        self.Rs_scalars, self.Rs_gates, self.Rs_nonscalars = Rs_scalars, Rs_gates, Rs_nonscalars

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(Rs_scalars='{self.Rs_scalars}', "
            f"act_scalars={list(self.scalar_acts)}, Rs_gates='{self.Rs_gates}', "
            f"act_gates={list(self.gate_acts)}, Rs_nonscalars='{self.Rs_nonscalars}')"
        )

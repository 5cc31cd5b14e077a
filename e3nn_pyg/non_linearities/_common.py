"""Helpers shared by the equivariant non-linearities: activation wrapping, activation
parity and output parity of activated scalars (their inputs are checked with
:func:`~e3nn_pyg.checks.require_features`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Activation = Callable[[Tensor], Tensor]


class FunctionModule(torch.nn.Module):
    """Wraps a plain callable (``torch.tanh``, a function) as a module; reprs as its name."""

    def __init__(self, function: Activation) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: Tensor) -> Tensor:
        return self.function(x)

    def __repr__(self) -> str:
        return getattr(self.function, "__name__", None) or repr(self.function)


def as_module(act: Activation | None, what: str) -> torch.nn.Module:
    """``act`` as a module: modules as they are, callables wrapped, ``None`` the identity."""
    if act is None:
        return torch.nn.Identity()
    if isinstance(act, torch.nn.Module):
        return act
    if not callable(act):
        raise TypeError(f"{what} must be callable or None, got {type(act).__name__}")
    return FunctionModule(act)


def activation_parity(act: torch.nn.Module) -> int:
    r"""``-1`` if ``act`` is odd, ``+1`` if even, ``0`` if neither.

    Decided numerically: :math:`f(-x) = \mp f(x)` on 101 points of ``[0, 10]``, to
    ``1e-9`` (float64) of the largest value; evaluated in the dtype of the activation's
    parameters when it has some (so ``1e-4`` for a float32 learnable activation).
    """
    if isinstance(act, torch.nn.Identity):
        return -1
    parameter = next(act.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float64
    device = parameter.device if parameter is not None else None
    x = torch.linspace(0.0, 10.0, 101, dtype=dtype, device=device)  # [101]
    with torch.no_grad():
        plus, minus = act(x), act(-x)  # [101]
    tol = (1e-9 if dtype == torch.float64 else 1e-4) * max(1.0, plus.abs().max().item())
    if (plus + minus).abs().max().item() <= tol:
        return -1
    if (plus - minus).abs().max().item() <= tol:
        return 1
    return 0


def activated_parity(p: int, act: torch.nn.Module, what: str) -> int:
    r"""Parity of ``act(s)`` for a scalar ``s`` of parity ``p``.

    Even (``p = +1``) and parity-free (``p = 0``) scalars keep their parity whatever the
    activation. An odd scalar (``p = -1``) stays odd through an odd activation and becomes
    even through an even one, :math:`f(-s) = \pm f(s)`; any other activation would make
    the output neither, which is a ``ValueError``.
    """
    if p != -1:
        return p
    act_p = activation_parity(act)
    if act_p == 0:
        raise ValueError(
            f"{what}: odd scalars (parity -1) need an odd or an even activation, but "
            f"{act!r} is neither (f(-x) is not ±f(x)); use e.g. tanh (odd) or absolute (even)"
        )
    return act_p

r"""Constant buffers that follow a module's dtype exactly.

Clebsch-Gordan tables, radial centres and frequencies are computed once, in float64. A module
keeps that exact value next to the buffer it uses: the buffer starts in the default dtype,
and every conversion (``.double()``, ``.to(dtype)``, ``.half()``) rounds the exact value
once into the new dtype. A module built in float32 and converted with ``.double()``
therefore has the very constants of a module built in float64. Converting the float32
buffer instead would keep its float32 rounding, about 1e-8 off, and cost float64 its
equivariance. Loading a ``state_dict`` keeps the exact constants too (a saved copy may have
been rounded in another dtype).

Example:
    >>> class Scale(ExactConstants, torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.register_constant("third", torch.tensor(1.0, dtype=torch.float64) / 3)
    >>> Scale().double().third.item() == 1 / 3
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["ExactConstants"]


class ExactConstants(nn.Module):
    """Mixin of :class:`torch.nn.Module` for buffers made from exact (float64) values."""

    def register_constant(self, name: str, exact: Tensor, persistent: bool = False) -> None:
        """Register the buffer ``name`` from the float64 tensor ``exact``, rounded once into
        the default dtype (and again from ``exact`` on every conversion); ``persistent``
        as for :meth:`~torch.nn.Module.register_buffer`."""
        if exact.dtype != torch.float64:
            raise TypeError(f"constant {name} must be given in float64, got {exact.dtype}")
        if "_exact_constants" not in self.__dict__:
            self._exact_constants: dict[str, Tensor] = {}
        self._exact_constants[name] = exact.detach().cpu()
        # (copies: in-place writes to the buffer, e.g. by load_state_dict, must not reach it)
        buffer = exact.to(torch.get_default_dtype(), copy=True)
        self.register_buffer(name, buffer, persistent=persistent)

    def _restore_constants(self) -> None:
        for name, exact in self.__dict__.get("_exact_constants", {}).items():
            current = getattr(self, name)
            if current.is_floating_point():
                setattr(self, name, exact.to(current.device, current.dtype, copy=True))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> ExactConstants:
        super()._apply(fn, recurse)
        self._restore_constants()
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        # a persistent constant saved in another dtype would bring its rounding along
        super()._load_from_state_dict(*args, **kwargs)
        self._restore_constants()

r"""Autograd for trilinear operations: gradients of every order from two kernels.

A tensor-product engine computes :math:`T(w, Y, x)`, linear in each of the radial weights
:math:`w`, the spherical harmonics :math:`Y` and the features :math:`x`. Its gradients

.. math::
    \bar w = \partial_w \langle g, T \rangle, \quad \bar Y = \partial_Y \langle g, T \rangle,
    \quad \bar x = \partial_x \langle g, T \rangle

are again linear in each of their three arguments (the two other inputs and the output
gradient :math:`g`). So the derivative of a gradient is a gradient or a forward with one
argument substituted: with cotangents :math:`(a_w, a_Y, a_x)` of the three gradients,

.. math::
    \bar g &= T(a_w, Y, x) + T(w, a_Y, x) + T(w, Y, a_x), \\
    \bar{\bar w} &= \partial_w \langle g, T(w, a_Y, x) + T(w, Y, a_x) \rangle, \quad
    \text{and likewise for } Y, x.

An engine therefore provides two kernels, a forward and a backward that computes any
subset of the three gradients (:class:`TrilinearOp`), and :func:`trilinear` records them
so that every order of differentiation (force training's double backward, and beyond)
runs on those kernels and never through a generic autograd graph of small operations.
Both kernels run without recording; only these two functions appear in the graph. (The
native engine's operators, :mod:`~e3nn_pyg.tensor_product.native.ops`, register the same
algebra with :mod:`torch.library`, plus a one-pass double backward.)
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

__all__ = ["TrilinearOp", "trilinear"]

Needs = tuple[bool, bool, bool]


class TrilinearOp(Protocol):
    """The two kernels of a trilinear operation (see the module docstring)."""

    def forward(self, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        """The outputs :math:`T(a, b, c)`."""

    def backward(
        self, a: Tensor, b: Tensor, c: Tensor, grads: tuple[Tensor, ...], needs: Needs
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The gradients to ``(a, b, c)`` flagged in ``needs`` (``None`` for the others)."""


def trilinear(op: TrilinearOp, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, ...]:
    """``op.forward(a, b, c)``, differentiable to every order through ``op``'s kernels.

    Under :func:`torch.compile` the forward's own operations are recorded instead: the
    compiler derives and fuses their gradients.
    """
    if torch.compiler.is_compiling():
        return tuple(op.forward(a, b, c))
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or c.requires_grad):
        return _Trilinear.apply(op, a, b, c)
    return tuple(op.forward(a, b, c))


class _Trilinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, op: TrilinearOp, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        ctx.op = op
        ctx.save_for_backward(a, b, c)
        with torch.no_grad():
            return tuple(op.forward(a, b, c))

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple:
        a, b, c = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[1:4])
        if not any(needs):
            return (None, None, None, None)
        return (None, *_TrilinearBackward.apply(ctx.op, needs, a, b, c, *grads))


class _TrilinearBackward(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, op: TrilinearOp, needs: Needs, a: Tensor, b: Tensor, c: Tensor, *grads: Tensor
    ) -> tuple[Tensor | None, ...]:
        ctx.op = op
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(a, b, c, *grads)
        with torch.no_grad():
            return tuple(op.backward(a, b, c, tuple(grads), needs))

    @staticmethod
    def backward(ctx, *cotangents: Tensor | None) -> tuple:
        op = ctx.op
        a, b, c, *grads = ctx.saved_tensors
        inputs = (a, b, c)
        need_inputs = ctx.needs_input_grad[2:5]
        need_grads = any(ctx.needs_input_grad[5:])
        input_grads: list[Tensor | None] = [None, None, None]
        grad_grads: list[Tensor] | None = None
        for slot, cotangent in enumerate(cotangents):
            if cotangent is None:
                continue
            substituted = list(inputs)
            substituted[slot] = cotangent  # every gradient is linear in each argument
            needs = tuple(need and other != slot for other, need in enumerate(need_inputs))
            if any(needs):
                partial = _TrilinearBackward.apply(op, needs, *substituted, *grads)
                for other, value in enumerate(partial):
                    if needs[other] and value is not None:
                        total = input_grads[other]
                        input_grads[other] = value if total is None else total + value
            if need_grads:
                outputs = _Trilinear.apply(op, *substituted)
                grad_grads = (
                    list(outputs)
                    if grad_grads is None
                    else [total + value for total, value in zip(grad_grads, outputs)]
                )
        if grad_grads is None:
            grad_grads = [None] * len(grads)
        return (None, None, *input_grads, *grad_grads)

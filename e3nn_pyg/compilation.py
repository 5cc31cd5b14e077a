r""":func:`torch.compile` of the package's layers and models, whole-graph.

Every layer and model traces as one graph (``fullgraph=True``, no graph break) under three
compiler settings, which :func:`compile_settings` applies and :func:`compile_model` applies
on every call:

- ``torch._dynamo.config.capture_dynamic_output_shape_ops``: the radius graph has a
  data-dependent number of edges (one opaque custom op, ``e3nn_pyg::radius_search``);
- ``torch._dynamo.config.trace_autograd_ops``: force models call
  :func:`torch.autograd.grad` inside their forward;
- ``torch._inductor.config.cpp.enable_loop_tail_vec`` off: with it, the C++ code that
  Inductor (torch 2.13) generates for the backward of an embedding whose output feeds both
  a gather and a dense layer adds wrong values in the vectorized loop tails (the training
  gradients of :class:`~e3nn_pyg.models.EquivariantNet`'s embedding came out as large as
  the gradients themselves; ``tests/test_compilation.py`` compares them with eager ones).

Inside a compiled graph the checks of tensor values become graph assertions
(:mod:`~e3nn_pyg.checks`), the convolutions run their per-edge path (:meth:`Convolution.message
<e3nn_pyg.conv.Convolution.message>`, fused by the compiler), and a force model in training
mode needs ``pos.requires_grad_()`` from the caller.

Example:
    >>> from e3nn_pyg.models import EquivariantNet
    >>> model = EquivariantNet(num_layers=2)
    >>> compiled = compile_model(model)  # compiles on the first call
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledModel", "compile_model", "compile_settings"]

DYNAMO_SETTINGS = {"capture_dynamic_output_shape_ops": True, "trace_autograd_ops": True}
INDUCTOR_SETTINGS = {"cpp.enable_loop_tail_vec": False}


@contextlib.contextmanager
def compile_settings() -> Iterator[None]:
    """Apply the compiler settings above while the block runs (compilation happens on
    the first call of a compiled function, and again on every recompilation)."""
    with (
        torch._dynamo.config.patch(**DYNAMO_SETTINGS),
        torch._inductor.config.patch(INDUCTOR_SETTINGS),
    ):
        yield


class CompiledModel(nn.Module):
    """A module and its :func:`torch.compile` form, called under :func:`compile_settings`.

    Its parameters, buffers and ``state_dict`` are the module's (no ``_orig_mod`` prefix).

    Args:
        module (nn.Module): the module.
        **compile_kwargs: arguments of :func:`torch.compile`.
    """

    def __init__(self, module: nn.Module, **compile_kwargs: Any) -> None:
        super().__init__()
        self.module = module
        # kept out of the module tree: it wraps the same parameters
        object.__setattr__(self, "_compiled", torch.compile(module, **compile_kwargs))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with compile_settings():
            return self._compiled(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.module!r})"


def compile_model(
    module: nn.Module, fullgraph: bool = True, **compile_kwargs: Any
) -> CompiledModel:
    """:func:`torch.compile` of ``module`` as one graph, with the settings it needs.

    Args:
        module (nn.Module): a layer or model of the package (or a module built of them).
        fullgraph (bool, optional): fail instead of breaking the graph. (default: ``True``)
        **compile_kwargs: further arguments of :func:`torch.compile` (``mode``,
            ``backend``, ``dynamic``, ...).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"compile_model takes an nn.Module, got {type(module).__name__}")
    return CompiledModel(module, fullgraph=fullgraph, **compile_kwargs)

r""":func:`torch.compile` of the package's layers and models, whole-graph.

Every layer and model traces as one graph (``fullgraph=True``, no graph break) under three
compiler settings, which :func:`compile_settings` applies and :func:`compile_model` applies
on every call:

- ``torch._dynamo.config.capture_dynamic_output_shape_ops``: the radius graph has a
  data-dependent number of edges (one opaque custom op, ``e3nn_pyg::radius_search``), and
  so do the rows of the native engine (edges paired with their reverse);
- ``torch._dynamo.config.trace_autograd_ops``: force models call
  :func:`torch.autograd.grad` inside their forward;
- ``torch._inductor.config.cpp.enable_loop_tail_vec`` off: with it, the C++ code that
  Inductor (torch 2.13) generates for the backward of an embedding whose output feeds both
  a gather and a dense layer adds wrong values in the vectorized loop tails (the training
  gradients of :class:`~e3nn_pyg.models.EquivariantNet`'s embedding came out as large as
  the gradients themselves when its convolutions ran their per-edge path;
  ``tests/test_compilation.py`` compares them with eager ones).

A plain :func:`torch.compile` of a module that builds a radius graph, without these
settings, stops with an error that says so (the radius search checks them while the
compiler traces it), rather than failing later or giving wrong gradients: in torch 2.13,
without ``trace_autograd_ops`` the forward of a force model breaks the graph at
:func:`torch.autograd.grad` and the compiled backward then fails (an in-place write to a
leaf that requires grad), and without ``capture_dynamic_output_shape_ops`` every
data-dependent size breaks the graph (a two-layer force model without either setting
traced as 27 graphs).

Inside a compiled graph the checks of tensor values become graph assertions
(:mod:`~e3nn_pyg.checks`), the convolutions of the native engine are the operators of
:mod:`~e3nn_pyg.tensor_product.native.ops` (opaque to the compiler, which fuses the radial
networks, gates and readouts around them; other engines run their per-edge path, fused by
the compiler), and a force model in training mode needs ``pos.requires_grad_()`` from the
caller.

Example:
    >>> from e3nn_pyg.models import EquivariantNet
    >>> model = EquivariantNet(num_layers=2)
    >>> compiled = compile_model(model)  # compiles on the first call
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "CompiledModel",
    "compile_model",
    "compile_settings",
    "require_graph_settings",
    "settings_applied",
]

GRAPH_SETTINGS = {"capture_dynamic_output_shape_ops": True}  # the radius graph's edge count
DYNAMO_SETTINGS = {**GRAPH_SETTINGS, "trace_autograd_ops": True}  # forces' autograd.grad
INDUCTOR_SETTINGS = {"cpp.enable_loop_tail_vec": False}  # CPU code: see the module docstring


def settings_applied(dynamo: Mapping[str, Any], inductor: Mapping[str, Any]) -> bool:
    """Whether the compiler's current configuration holds these settings (dotted names
    reach nested options, e.g. ``"cpp.enable_loop_tail_vec"``)."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    return all(
        functools.reduce(getattr, name.split("."), config) == value
        for config, settings in ((dynamo_config, dynamo), (inductor_config, inductor))
        for name, value in settings.items()
    )


def require_graph_settings(pos: torch.Tensor) -> None:
    """Refuse a :func:`torch.compile` without the settings that a radius graph needs.

    Called by the radius searches while the compiler traces them (traced code cannot read
    the settings); the Inductor settings concern its C++ code, on CPU.
    """
    inductor = INDUCTOR_SETTINGS if pos.device.type == "cpu" else {}
    if not settings_applied(GRAPH_SETTINGS, inductor):
        raise RuntimeError(
            "torch.compile of a radius graph needs the settings of e3nn_pyg.compilation "
            "(a data-dependent number of edges; on CPU, no vectorised loop tails, which "
            "miscompute gradients in torch 2.13): compile with "
            "e3nn_pyg.compile_model(module), or call the compiled module inside "
            "e3nn_pyg.compilation.compile_settings()"
        )


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

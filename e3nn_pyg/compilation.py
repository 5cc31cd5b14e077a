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

A plain :func:`torch.compile` of a module that builds a radius graph, without these
settings, stops with an error that says so (the radius search checks them while the
compiler traces it), rather than failing later or giving wrong gradients.

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
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .checks import require_bool

__all__ = [
    "CompiledModel",
    "compile_model",
    "compile_settings",
    "export_model",
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


class _Energy(nn.Module):
    """The ``energy`` method of a force model as a module (what :func:`export_model`
    exports of it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        batch: torch.Tensor,
        cell: torch.Tensor | None = None,
        pbc: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model.energy(z, pos, batch, cell, pbc)


def export_model(model: nn.Module, periodic: bool = False) -> torch.export.ExportedProgram:
    """:func:`torch.export.export` of a zoo model's inference, ``module(z, pos, batch)``,
    or ``module(z, pos, batch, cell, pbc)`` with ``periodic``, for any number of atoms and
    structures (the model is put in eval mode).

    Load the saved program with ``import torch, e3nn_pyg`` (which registers the package's
    operators): ``torch.export.load(path).module()`` gives a module called as the model is
    (``batch`` required; a periodic program takes ``cell`` ``[num_graphs, 3, 3]`` and a
    bool ``pbc`` ``[num_graphs, 3]``; values in the model's dtype). Of a force model
    (``derivative=True``) the energy is exported, and the forces are its gradient, taken on
    the loaded program (torch 2.13 cannot export a :func:`torch.autograd.grad` inside it)::

        energy = module(z, pos.requires_grad_(), batch)  # [num_graphs, 1]
        forces = -torch.autograd.grad(energy.sum(), pos)[0]  # [N, 3]

    Args:
        model (nn.Module): the model.
        periodic (bool, optional): export the call with cells and periodic axes, which a
            potential of crystals needs (without, the program computes molecules; with, a
            molecule goes in with ``pbc`` all false). (default: :obj:`False`)

    Example:
        >>> from e3nn_pyg.models import EquivariantNet
        >>> program = export_model(EquivariantNet("8x0e + 4x1o", num_layers=2))
        >>> z, pos = torch.tensor([6, 1, 1]), torch.randn(3, 3)
        >>> tuple(program.module()(z, pos, torch.zeros(3, dtype=torch.long)).shape)
        (1, 1)
    """
    require_bool(periodic, "periodic")
    model.eval()
    exported = _Energy(model) if getattr(model, "derivative", False) else model
    inputs, dynamic_shapes = _example_inputs(model, periodic)
    return torch.export.export(exported, inputs, dynamic_shapes=dynamic_shapes)


def _example_inputs(model: nn.Module, periodic: bool) -> tuple[tuple, tuple]:
    """Inputs to trace ``model`` on (two structures of 3 and 2 atoms of its species, in
    cubic cells when ``periodic``) and their dynamic shapes."""
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    species = getattr(model, "species", None) or [6, 1, 1, 8, 1]
    z = torch.tensor([species[i % len(species)] for i in range(5)], device=device)  # [5]
    pos = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)
    batch = torch.tensor([0, 0, 0, 1, 1], device=device)  # [5]
    num_atoms = torch.export.Dim("num_atoms", min=2)
    inputs = (z, pos.to(device), batch)
    dynamic_shapes = ({0: num_atoms},) * 3
    if periodic:
        cell = 4.0 * torch.eye(3, dtype=dtype, device=device).expand(2, 3, 3)  # [2, 3, 3]
        pbc = torch.ones(2, 3, dtype=torch.bool, device=device)  # [2, 3]
        num_graphs = torch.export.Dim("num_graphs", min=1)
        inputs += (cell.contiguous(), pbc)
        dynamic_shapes += ({0: num_graphs},) * 2
    return inputs, dynamic_shapes

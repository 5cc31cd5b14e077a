r"""Deployable artifacts of a model: :func:`torch.export` programs and AOTInductor packages.

:func:`export_model` exports a potential or property model of the zoo
(:class:`~e3nn_pyg.models.EquivariantNet`, :class:`~e3nn_pyg.models.ManyBodyNet`) as it is
called, for any number of atoms and structures: ``module(z, pos, batch)``, or
``module(z, pos, batch, cell, pbc)`` for a periodic program, returning what the model
returns in eval mode: ``[num_graphs, out_channels]`` for a property model, ``(energy,
forces)`` for a force model (``derivative=True``), and ``(energy, forces, stress)`` for a
periodic force model. The forces and the stress are computed inside the program: the
model's backward pass is traced into it as ordinary operations
(:func:`~torch.fx.experimental.proxy_tensor.make_fx`, as ``functorch`` does), since
:func:`torch.export.export` cannot trace a :func:`torch.autograd.grad` itself and an
AOTInductor package cannot run autograd at all.

:func:`save_model` writes the program as a ``.pt2`` file (:func:`torch.export.save`), or as
an AOTInductor package of compiled C++ (``aoti=True``,
:func:`torch._inductor.aoti_compile_and_package`), with the model's metadata inside
(:func:`model_metadata`: cutoff, species, dtype, units, inputs and outputs, model kind and
configuration, versions). :func:`read_metadata` reads it back without loading the program.
After ``import torch, e3nn_pyg`` (which registers the package's operators, e.g.
``e3nn_pyg::radius_search``, that the programs call):

- ``torch.export.load(path).module()(z, pos, batch)``;
- ``torch._inductor.aoti_load_package(path)(z, pos, batch)`` (the same outputs; the
  package's operators run through AOTInductor's proxy executor, which calls the Python
  operators). A C++ process without Python loads the package with
  ``torch::inductor::AOTIModelPackageLoader`` after loading the package's C++ operator
  library (:func:`e3nn_pyg.libtorch.build_operator_library`; ``examples/cpp``).

The program checks its inputs as the model does, as graph assertions (NaN positions,
atomic numbers out of range or unseen in training raise ``RuntimeError``); it takes
positional arguments only, tensors in the model's dtype (``z`` and ``batch`` int64,
``pbc`` bool). A periodic force program computes the stress, so each call needs a
periodic structure and cells of non-zero volume, as ``model(..., stress=True)`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from . import __version__
from .checks import require_bool
from .compilation import INDUCTOR_SETTINGS, compile_settings

if TYPE_CHECKING:
    from .models import AtomisticModel

__all__ = [
    "METADATA_FILE",
    "export_model",
    "export_traced",
    "model_metadata",
    "read_metadata",
    "require_pt2_path",
    "save_model",
    "write_program",
]

#: The name of the metadata (JSON) among the extra files of a ``.pt2`` file, and its key in
#: an AOTInductor package's metadata (``aot_inductor.metadata``).
METADATA_FILE = "e3nn_pyg.json"
_METADATA_KEY = "e3nn_pyg"
#: The shapes (and dtypes) of the inputs and outputs in a program's signature
_SHAPES = {"z": "[N] int64", "pos": "[N, 3] {dtype}", "batch": "[N] int64",
           "cell": "[num_graphs, 3, 3] {dtype}", "pbc": "[num_graphs, 3] bool",
           "energy": "[num_graphs, 1]", "forces": "[N, 3]",
           "stress": "[num_graphs, 3, 3]"}  # fmt: skip


class _ModelCall(nn.Module):
    """The model's call with its cell arguments in place, and the stress when ``stress``
    (what :func:`export_model` traces)."""

    def __init__(self, model: AtomisticModel, stress: bool) -> None:
        super().__init__()
        self.model, self.stress = model, stress

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self.model(*inputs, stress=True) if self.stress else self.model(*inputs)


@contextlib.contextmanager
def _traced_as_exported() -> Iterator[None]:
    """Trace the model as :func:`torch.export` does (:func:`torch.compiler.is_compiling`
    true: input checks become graph assertions, which symbolic tracing needs since it
    cannot read values), with the settings of a radius graph's data-dependent size."""
    previous = torch.compiler._is_compiling_flag
    torch.compiler._is_compiling_flag = True
    try:
        with compile_settings():
            yield
    finally:
        torch.compiler._is_compiling_flag = previous


def export_model(model: AtomisticModel, periodic: bool = False) -> torch.export.ExportedProgram:
    """:func:`torch.export.export` of a zoo model's call (see the module docstring), for any
    number of atoms and structures; the model is put in eval mode.

    Args:
        model (e3nn_pyg.models.AtomisticModel): the model
            (:class:`~e3nn_pyg.models.EquivariantNet`,
            :class:`~e3nn_pyg.models.ManyBodyNet`).
        periodic (bool, optional): export the call with cells and periodic axes, which a
            potential of crystals needs; a periodic force program also returns the stress.
            (default: :obj:`False`)

    Example:
        >>> from e3nn_pyg.models import EquivariantNet
        >>> model = EquivariantNet("8x0e + 4x1o", num_layers=2, derivative=True)
        >>> program = export_model(model)
        >>> z, pos = torch.tensor([6, 1, 1]), torch.randn(3, 3)
        >>> energy, forces = program.module()(z, pos, torch.zeros(3, dtype=torch.long))
        >>> tuple(energy.shape), tuple(forces.shape)
        ((1, 1), (3, 3))
    """
    _require_model(model, periodic)
    model.eval()
    inputs, dynamic_shapes = _example_inputs(model, periodic)
    return export_traced(_ModelCall(model, periodic and model.derivative), inputs, dynamic_shapes)


def export_traced(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], dynamic_shapes: tuple
) -> torch.export.ExportedProgram:
    """:func:`torch.export.export` of a module whose forward may call
    :func:`torch.autograd.grad`: traced first by
    :func:`~torch.fx.experimental.proxy_tensor.make_fx` (the backward pass becomes ordinary
    operations of the graph, the checks of the package graph assertions), then exported.
    The outputs of the program are not differentiable again (the flattened backward holds
    in-place operations).

    Args:
        module (nn.Module): the module, in eval mode.
        inputs (tuple of torch.Tensor): example positional inputs.
        dynamic_shapes (tuple): their dynamic shapes (see :func:`torch.export.export`).
    """
    with _traced_as_exported():
        graph = make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    return torch.export.export(graph, inputs, dynamic_shapes=dynamic_shapes, strict=False)


def _require_model(model: AtomisticModel, periodic: bool) -> None:
    """Refuse what is not a zoo model, or a ``periodic`` flag that is not a bool."""
    from .models import AtomisticModel  # (the models import nothing of this module)

    if not isinstance(model, AtomisticModel):
        raise TypeError(
            "export takes a model of the zoo (EquivariantNet, ManyBodyNet), got "
            f"{type(model).__name__}"
        )
    require_bool(periodic, "periodic")


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


def model_metadata(
    model: AtomisticModel, periodic: bool, target: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What :func:`save_model` writes into the file: plain values (JSON).

    Args:
        model (e3nn_pyg.models.AtomisticModel): the model.
        periodic (bool): whether the program takes cells.
        target (dict, optional): ``{"name": ..., "unit": ...}`` of a property
            model's prediction (e.g. ``{"name": "U0", "unit": "eV"}``). (default:
            :obj:`None`: ``energy`` in eV for a force model, the package's convention with
            positions in Å, and the units of its forces and stress follow; unnamed
            otherwise)
    """
    _require_model(model, periodic)
    if target is not None and not (
        isinstance(target, Mapping)
        and set(target) == {"name", "unit"}
        and all(isinstance(value, str) for value in target.values())
    ):
        raise TypeError(f"target must be {{'name': str, 'unit': str}}, got {target!r}")
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    shapes = {name: shape.format(dtype=dtype) for name, shape in _SHAPES.items()}
    inputs = ["z", "pos", "batch"] + (["cell", "pbc"] if periodic else [])
    units = {"length": "Å"}
    if model.derivative:
        target = target or {"name": "energy", "unit": "eV"}
        energy = target["unit"]
        outputs = ["energy", "forces"] + (["stress"] if periodic else [])
        derived = {"energy": energy, "forces": f"{energy}/Å", "stress": f"{energy}/Å^3"}
        units.update((name, derived[name]) for name in outputs)
    else:
        target = target or {"name": None, "unit": None}
        outputs = [target["name"] or "prediction"]
        shapes[outputs[0]] = f"[num_graphs, {model.out_channels}]"
        units[outputs[0]] = target["unit"]
    returned = ", ".join(f"{name} {shapes[name]}" for name in outputs)
    signature = "module({}) -> {}".format(
        ", ".join(f"{name} {shapes[name]}" for name in inputs),
        f"({returned})" if len(outputs) > 1 else returned,
    )
    return {
        "model": type(model).__name__,
        "config": json.loads(json.dumps(model.config(), default=str)),
        "cutoff": model.cutoff,
        "species": None if model.species is None else [int(z) for z in model.species],
        "allow_unseen_elements": bool(model.allow_unseen_elements),
        # whether the program refuses bad inputs itself (NaN positions, unseen elements...)
        "checks_inputs": True,
        "dtype": dtype,
        "periodic": periodic,
        "target": dict(target),
        "units": units,
        "inputs": inputs,
        "outputs": outputs,
        "signature": signature,
        "e3nn_pyg": __version__,
        "torch": torch.__version__,
    }


def require_pt2_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`, after checking that it names a ``.pt2`` file in
    an existing folder (``TypeError``, ``ValueError`` otherwise)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"path {path} must end in .pt2 (PT2 archives; AOTInductor requires it)")
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"path {path} must be a file path in an existing folder")
    return path


def save_model(
    model: AtomisticModel,
    path: str | os.PathLike,
    periodic: bool = False,
    aoti: bool = False,
    target: Mapping[str, str] | None = None,
) -> Path:
    """Export ``model`` (:func:`export_model`) and write it to ``path`` with its metadata
    (:func:`model_metadata`, read back by :func:`read_metadata`).

    Args:
        model (e3nn_pyg.models.AtomisticModel): the model.
        path (str or os.PathLike): the ``.pt2`` file to write, in an existing folder.
        periodic (bool, optional): export the periodic call. (default: :obj:`False`)
        aoti (bool, optional): write an AOTInductor package (compiled C++; needs a C++
            compiler, and takes minutes), loaded with
            :func:`torch._inductor.aoti_load_package`, instead of a program loaded with
            :func:`torch.export.load`. (default: :obj:`False`)
        target (dict, optional): name and unit of a property model's
            prediction, as in :func:`model_metadata`. (default: :obj:`None`)

    Returns:
        the path written.
    """
    path = require_pt2_path(path)
    require_bool(aoti, "aoti")
    metadata = model_metadata(model, periodic, target)  # checks the arguments first
    return write_program(export_model(model, periodic), path, metadata, aoti)


def write_program(
    program: torch.export.ExportedProgram, path: Path, metadata: dict[str, Any], aoti: bool
) -> Path:
    """Write ``program`` to ``path`` with ``metadata`` and its ``format`` (``"aoti"`` or
    ``"torch.export"``), where :func:`read_metadata` finds them: a :func:`torch.export.save`
    program with the metadata among its extra files, or with ``aoti`` an AOTInductor
    package with it in the package's own metadata (what :func:`save_model` and
    :func:`~e3nn_pyg.models.graph_input.save_graph_potential` write).

    Args:
        program (torch.export.ExportedProgram): the program.
        path (pathlib.Path): a checked ``.pt2`` path (:func:`require_pt2_path`).
        metadata (dict): plain values (JSON), e.g. :func:`model_metadata`.
        aoti (bool): compile an AOTInductor package (see :func:`save_model`).

    Returns:
        the path written.
    """
    metadata = {**metadata, "format": "aoti" if aoti else "torch.export"}
    text = json.dumps(metadata, ensure_ascii=False)
    if aoti:
        configs = {**INDUCTOR_SETTINGS, "aot_inductor.metadata": {_METADATA_KEY: text}}
        torch._inductor.aoti_compile_and_package(
            program, package_path=os.fspath(path), inductor_configs=configs
        )
    else:
        torch.export.save(program, path, extra_files={METADATA_FILE: text})
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata that :func:`save_model` (or
    :func:`~e3nn_pyg.models.graph_input.save_graph_potential`) wrote into a ``.pt2`` file or
    an AOTInductor package, read without loading the program.

    Example:
        >>> read_metadata("model.pt2")["cutoff"]  # doctest: +SKIP
        5.0
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no file {os.fspath(path)}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{os.fspath(path)} is not a .pt2 archive (a zip file)")
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(f"/extra/{METADATA_FILE}"):  # torch.export.save's extra files
                return json.loads(archive.read(name))
            if "/aotinductor/" in name and name.endswith(".wrapper_metadata.json"):
                recorded = json.loads(archive.read(name))  # aot_inductor.metadata
                if _METADATA_KEY in recorded:
                    return json.loads(recorded[_METADATA_KEY])
    raise ValueError(
        f"{os.fspath(path)} holds no e3nn_pyg metadata (files written by "
        "e3nn_pyg.export.save_model or e3nn-pyg export have it)"
    )

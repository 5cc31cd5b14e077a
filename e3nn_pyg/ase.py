r"""Molecular dynamics with ASE: an ASE calculator for the potentials of e3nn_pyg.

:class:`Calculator` gives the Atomic Simulation Environment (``pip install ase``) the
energy, forces and, for periodic systems, the stress of a trained potential, so that every
ASE driver (molecular dynamics, geometry optimisation, phonons, nudged elastic bands) runs
on it:

.. code-block:: python

    from ase.io import read
    from ase.md.verlet import VelocityVerlet
    from ase import units
    from e3nn_pyg.ase import Calculator

    atoms = read("ethanol.xyz")
    atoms.calc = Calculator("runs/ethanol/equivariant_net/best.pt", dtype="float64")
    VelocityVerlet(atoms, timestep=0.5 * units.fs).run(1000)

A program written by ``e3nn-pyg export`` (:func:`e3nn_pyg.export.save_model`, a ``.pt2``
file with its metadata) runs the same way, without the package's model code in the loop:
``Calculator("model.pt2")``; so does a graph program
(:func:`~e3nn_pyg.models.graph_input.save_graph_potential`), on the calculator's Verlet
list.

Units are ASE's: positions in Å, energies in eV, forces in eV/Å, stress in eV/Å³, which
are the units of the data a potential is trained on by ``e3nn-pyg train --data``.

This module imports ASE at its top: import it only where ASE is installed
(``import e3nn_pyg`` never imports it).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as ASECalculator
from ase.calculators.calculator import PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from torch import Tensor, nn

from .checks import require_bool
from .graph import cartesian_shifts
from .models import (
    AtomisticModel,
    EnergyForces,
    RadiusInteractionGraph,
    VerletInteractionGraph,
)
from .models.graph_input import edge_vectors
from .models.interaction_graph import check_skin
from .models.species import check_atomic_numbers, species_table

__all__ = ["Calculator"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Calculator(ASECalculator):
    r"""An ASE calculator for an energy model of e3nn_pyg: a trained checkpoint or a
    module.

    .. math::
        E = f_\theta(Z, \mathbf{R}), \qquad
        \mathbf{F}_i = -\frac{\partial E}{\partial \mathbf{r}_i}, \qquad
        \sigma = \frac{1}{V} \frac{\partial E}{\partial \varepsilon}\Big|_{\varepsilon = 0}

    with :math:`\varepsilon` a homogeneous strain of the positions and the cell (ASE's
    convention: positive under tension, eV/Å³; returned in Voigt order
    :math:`xx, yy, zz, yz, xz, xy` by ``atoms.get_stress()``).

    The model is one of:

    - a checkpoint (``best.pt`` or ``last.pt``) written by ``e3nn-pyg train --data``: a
      potential trained on energies and forces (its ``target`` record has
      ``forces: True``). Checkpoints of a QM9 property (a HOMO energy, a dipole moment, even
      :math:`U_0`, which is not a potential energy surface: equilibrium geometries only)
      are refused;
    - an :class:`~e3nn_pyg.models.EquivariantNet` or :class:`~e3nn_pyg.models.ManyBodyNet`
      (any :class:`~e3nn_pyg.models.AtomisticModel`) with ``out_channels=1``, with
      ``derivative=True`` or not (the calculator then uses a copy with ``derivative=True``:
      the forces are the gradient of the same energy);
    - a program exported from such a potential by ``e3nn-pyg export`` or
      :func:`e3nn_pyg.export.save_model` (the path of its ``.pt2`` file, not an
      AOTInductor package): the program computes the energy, forces and, when exported
      with ``periodic=True``, the stress itself; it runs in the dtype and on the device it
      was exported in. A periodic program computes periodic structures only (its stress
      needs a periodic axis and a cell of non-zero volume), and a molecular program
      molecules only. A graph program
      (:func:`~e3nn_pyg.models.graph_input.save_graph_potential`) computes both, on the
      calculator's Verlet list, and its stress is that of its pair forces;
    - any other module ``model(z, pos, batch)`` returning the energy ``[1, 1]``, or the
      tuple ``(energy [1, 1], forces [N, 3])``, e.g.
      :class:`~e3nn_pyg.models.EnergyForces` around PyG's ``SchNet``. Such models take no
      cell: they compute molecules only (``atoms.pbc`` all false).

    The calculator works on its own copy of a module (the module passed in stays as it
    is), in evaluation mode, on ``device`` in ``dtype``; numbers come back as float64
    NumPy arrays. Structures with ``atoms.pbc`` all false are molecules (their cell, if
    any, is ignored); others are periodic along the axes of ``atoms.pbc`` and need a model
    of the zoo (:class:`~e3nn_pyg.models.AtomisticModel`). The stress is computed for every periodic
    structure whose cell has a volume (with the forces, in the same backward pass), and
    asking a molecule for it raises ASE's ``PropertyNotImplementedError``.

    **Reuse between steps.** ASE asks again only when the atoms changed (its
    ``check_state``: positions, numbers, cell, pbc); the atomic numbers are kept on the
    device until they change. The calculator's copy of an
    :class:`~e3nn_pyg.models.EquivariantNet` with the default interaction graph (no
    ``max_num_neighbors``) gets a :class:`~e3nn_pyg.models.VerletInteractionGraph` of
    ``skin`` instead: the pairs within ``cutoff + skin`` are searched once and, at every
    step, filtered to those within the cutoff, which gives bit for bit the graph of a new
    search (tested along a trajectory). The candidates cost one filter per step, not
    convolution work: edges beyond the cutoff would contribute exactly 0 (the radial
    functions are exactly 0 there), but they would be computed. A model that already has
    a Verlet graph keeps it.

    **Elements.** A model trained on some elements (its ``species``, recorded by
    ``e3nn-pyg train``) refuses structures with other elements with a ``ValueError`` naming
    them, unless ``allow_unseen_elements=True``.

    Args:
        model_or_checkpoint_path (torch.nn.Module or str or os.PathLike): the model, the
            path of a checkpoint written by ``e3nn-pyg train``, or the path of a ``.pt2``
            program written by ``e3nn-pyg export``.
        device (torch.device or str, optional): where the model runs (``"cpu"``,
            ``"cuda"``, ``"cuda:1"``). (default: :obj:`None`: the device of the module's
            parameters; the CPU for a checkpoint)
        dtype (torch.dtype or str, optional): ``torch.float32`` or ``torch.float64`` (or
            their names): the precision of the model and of its inputs. float32 rounds a
            total energy :math:`E` to about :math:`6 \cdot 10^{-8} |E|` (2.5e-4 eV for
            ethanol's -4209 eV), which limits how well dynamics can conserve it.
            (default: :obj:`None`: the dtype of the module, or the one the checkpoint was
            trained in)
        skin (float, optional): the Verlet skin in Å; ``0`` searches the graph at every
            step (a program of the model's call searches its own graph at every step; a
            graph program runs on the Verlet list). (default: :obj:`0.5`)
        allow_unseen_elements (bool, optional): predict elements outside the model's
            ``species`` all the same (not with a program of the model's call: its check
            is inside it). (default: :obj:`False`)

    Raises:
        TypeError: when ``model_or_checkpoint_path`` is neither a module nor a path.
        ValueError: for an unknown ``device`` or ``dtype``, a negative ``skin``, an
            :class:`~e3nn_pyg.models.EquivariantNet` with several outputs, or a
            checkpoint that is missing, unreadable or not a potential
            (:class:`~e3nn_pyg.training.ConfigError`, a ``ValueError``), or a program that
            is not a potential's or asked for in another dtype or on another device.
        FileNotFoundError: for a ``.pt2`` path that names no file.

    Example:
        >>> from ase.build import molecule
        >>> from e3nn_pyg.models import EquivariantNet
        >>> model = EquivariantNet("4x0e + 2x1o", num_layers=2, cutoff=4.0, derivative=True)
        >>> atoms = molecule("CH3CH2OH")
        >>> atoms.calc = Calculator(model, dtype=torch.float64)
        >>> atoms.get_forces().shape, atoms.get_forces().dtype
        ((9, 3), dtype('float64'))
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        model_or_checkpoint_path: nn.Module | str | os.PathLike,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        skin: float = 0.5,
        allow_unseen_elements: bool = False,
    ) -> None:
        device = _check_device(device)
        dtype = _check_dtype(dtype)
        skin = check_skin(skin)
        require_bool(allow_unseen_elements, "allow_unseen_elements")
        model = _load_model(model_or_checkpoint_path)
        if isinstance(model, _ExportedPotential):
            device, dtype = model.load(device, dtype, allow_unseen_elements, skin)
        else:
            parameter = _first_tensor(model)
            device = parameter.device if device is None else device
            dtype = parameter.dtype if dtype is None else dtype
            if dtype not in DTYPES.values():
                raise ValueError(
                    f"the model is {dtype}: pass dtype=torch.float32 or torch.float64 to convert it"
                )
            model = model.to(device=device, dtype=dtype).eval()
        self.model = model
        self.device, self.dtype, self.skin = device, dtype, skin
        if isinstance(model, (AtomisticModel, EnergyForces)):
            model.allow_unseen_elements = allow_unseen_elements
        self._neighbors = _verlet_graph(model, self.skin)
        self._numbers: np.ndarray | None = None
        self._z: Tensor | None = None  # [N] long, on the device
        super().__init__()
        # what ASE records of the calculator (e.g. in trajectory files)
        self.parameters.update(
            device=str(device), dtype=str(dtype).replace("torch.", ""), skin=self.skin,
            allow_unseen_elements=allow_unseen_elements,
        )  # fmt: skip

    @property
    def neighbor_list_builds(self) -> int:
        """How many times the Verlet list was searched (0 when the model has none)."""
        return 0 if self._neighbors is None else self._neighbors.builds

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Compute the energy, forces (and stress) of ``atoms`` into ``self.results``;
        ASE calls it through ``atoms.get_potential_energy()`` and the like."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if len(atoms) == 0:
            raise ValueError("the calculator needs at least one atom, got an empty Atoms")
        periodic = bool(atoms.pbc.any())
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                "the stress is defined for periodic systems only: atoms.pbc is all False"
            )
        if isinstance(self.model, _ExportedPotential):
            self.model.check_structure(atoms)
        elif periodic and not isinstance(self.model, AtomisticModel):
            raise ValueError(
                f"periodic systems (atoms.pbc = {atoms.pbc.tolist()}) need a model of the "
                f"zoo (EquivariantNet, ManyBodyNet); {type(self.model).__name__} takes no "
                "cell: set atoms.pbc = False for a molecule"
            )
        if self._numbers is None or not np.array_equal(self._numbers, atoms.numbers):
            self._numbers = atoms.numbers.copy()
            self._z = torch.as_tensor(self._numbers, dtype=torch.long, device=self.device)
        pos = torch.tensor(atoms.positions, dtype=self.dtype, device=self.device)  # [N, 3]
        if periodic:
            cell = torch.as_tensor(atoms.cell.array, dtype=self.dtype, device=self.device)
            pbc = torch.as_tensor(atoms.pbc, device=self.device)  # [3] bool
            # with the forces whenever it is defined (one backward pass), else on request
            stress = "stress" in properties or bool(abs(atoms.cell.volume) > 0)
            energy, forces, virial = self._evaluate(pos, cell, pbc, stress)
        else:
            energy, forces, virial = self._evaluate(pos, None, None, False)
        energy = float(energy.detach().to("cpu", torch.float64).reshape(()))
        forces = forces.detach().to("cpu", torch.float64).numpy()  # [N, 3]
        if not (math.isfinite(energy) and np.isfinite(forces).all()):
            raise RuntimeError(
                f"the model gave a non-finite energy ({energy}) or forces for these positions "
                "(atoms on top of each other, or far outside the training data?)"
            )
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if virial is not None:
            stress = virial.detach().to("cpu", torch.float64).reshape(3, 3).numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)  # [6]

    def _evaluate(
        self, pos: Tensor, cell: Tensor | None, pbc: Tensor | None, stress: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Energy ``[1, 1]``, forces ``[N, 3]`` and stress ``[1, 3, 3]`` (or ``None``)."""
        z, model = self._z, self.model
        if isinstance(model, _ExportedPotential):
            return model(z, pos, cell, pbc, stress)
        if isinstance(model, AtomisticModel):  # derivative=True (see _load_model)
            with torch.no_grad():  # (the forces are computed all the same)
                outputs = model(z, pos, None, cell, pbc, stress=stress)
            return outputs[0], outputs[1], outputs[2] if stress else None
        with torch.enable_grad():
            pos.requires_grad_(True)
            outputs = model(z, pos, torch.zeros_like(z))
            if isinstance(outputs, tuple):  # (energy, forces)
                energy, forces = outputs[0], outputs[1] if len(outputs) > 1 else None
                _check_energy(energy)
            else:
                energy = outputs
                _check_energy(energy)
                (gradient,) = torch.autograd.grad(energy.sum(), pos, allow_unused=True)  # [N, 3]
                forces = torch.zeros_like(pos) if gradient is None else -gradient
        if not isinstance(forces, Tensor) or forces.shape != pos.shape:
            what = list(forces.shape) if isinstance(forces, Tensor) else type(forces).__name__
            raise ValueError(f"the model must return forces [{len(z)}, 3], got {what}")
        return energy, forces, None

    def __repr__(self) -> str:
        model = self.model
        what = f"'{model.path}'" if isinstance(model, _ExportedPotential) else type(model).__name__
        return (
            f"{type(self).__name__}({what}, device={self.device}, "
            f"dtype={self.dtype}, skin={self.skin})"
        )


def _verlet_graph(
    model: nn.Module | _ExportedPotential, skin: float
) -> VerletInteractionGraph | None:
    """The Verlet graph of the calculator's copy of the model, set on it where the model
    has the default graph (exact, no neighbour cap), or the Verlet list of a graph program;
    ``None`` for other models."""
    if isinstance(model, _ExportedPotential):
        return model.neighbors
    if not isinstance(model, AtomisticModel):
        return None
    graph = model.interaction_graph
    if type(graph) is VerletInteractionGraph:  # one the user set: kept
        return graph
    exact = type(graph) is RadiusInteractionGraph and graph.max_num_neighbors is None
    if skin == 0 or not exact:
        return None
    model.interaction_graph = VerletInteractionGraph(graph.cutoff, skin)
    return model.interaction_graph


def _check_energy(energy: Any) -> None:
    if not isinstance(energy, Tensor) or energy.shape != (1, 1):
        what = list(energy.shape) if isinstance(energy, Tensor) else type(energy).__name__
        raise ValueError(
            "the model must return the energy of one structure as [1, 1] (or the tuple "
            f"(energy, forces)), got {what}"
        )


def _check_device(device: torch.device | str | None) -> torch.device | None:
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be a torch.device or a name such as 'cpu' or 'cuda', got {device!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but CUDA is not available")
    return device


def _check_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _first_tensor(model: nn.Module) -> Tensor:
    """A floating-point parameter (or buffer) of the model: its device and dtype."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor
    raise ValueError(f"{type(model).__name__} has no floating-point parameter: not an energy model")


def _load_model(source: nn.Module | str | os.PathLike) -> nn.Module | _ExportedPotential:
    """The calculator's own copy of the model (a model of the zoo with
    ``derivative=True``), or the program of a ``.pt2`` file."""
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source).endswith(".pt2"):
            return _ExportedPotential(source)
        return _potential_from_checkpoint(source)
    if not isinstance(source, nn.Module):
        raise TypeError(
            "model_or_checkpoint_path must be a torch.nn.Module or the path of a checkpoint "
            f"or of a .pt2 program, got {type(source).__name__}"
        )
    if not isinstance(source, AtomisticModel):
        return copy.deepcopy(source)
    if source.out_channels != 1:
        raise ValueError(
            f"the {type(source).__name__} has out_channels={source.out_channels}: a potential "
            "predicts one energy per structure (out_channels=1)"
        )
    if source.derivative:
        return copy.deepcopy(source)
    # the same network with forces: rebuilt from its config, as a checkpoint is
    graph = copy.deepcopy(source.interaction_graph)
    parameter = _first_tensor(source)
    model = type(source)(**{**source.config(), "derivative": True}, interaction_graph=graph)
    model = model.to(device=parameter.device, dtype=parameter.dtype)
    model.load_state_dict(source.state_dict())
    return model


def _potential_from_checkpoint(path: str | os.PathLike) -> nn.Module:
    """The model of a checkpoint of a potential; refuse checkpoints of other targets."""
    # (imported here: the training package is only needed for checkpoints)
    from .training import ConfigError, load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(path)  # ConfigError when missing or not a checkpoint
    target = payload["target"]
    if not (isinstance(target, dict) and target.get("forces") is True):
        name = target.get("name", "?") if isinstance(target, dict) else target
        raise ConfigError(
            f"checkpoint {path} predicts {name} of QM9 molecules, not a potential energy "
            "surface: the calculator needs a potential trained on energies and forces "
            "(`e3nn-pyg train --data train.xyz`)"
        )
    return model_from_checkpoint(payload, path)


class _ExportedPotential:
    """A potential's program in a ``.pt2`` file with its metadata, called as the calculator
    calls a model of the zoo: ``(z, pos, cell, pbc, stress) -> (energy [1, 1], forces
    [N, 3], stress [1, 3, 3] or None)``. Either the model's call, written by
    :func:`e3nn_pyg.export.save_model` (its graph, forces and stress inside), or a graph
    program written by :func:`~e3nn_pyg.models.graph_input.save_graph_potential`, run on
    the calculator's Verlet list (the stress from its pair forces).

    Not a module: an exported program runs where and in the dtype it was exported, and
    has no training mode.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from .export import read_metadata  # (torch.export is needed for programs only)

        metadata = read_metadata(path)  # FileNotFoundError, ValueError
        name = os.fspath(path)
        if metadata.get("format") != "torch.export":
            raise ValueError(
                f"{name} is an AOTInductor package: the calculator runs torch.export programs "
                "(e3nn-pyg export without --aoti)"
            )
        self.graph_input = metadata.get("interface") == "graph"
        if not self.graph_input and metadata["outputs"][:2] != ["energy", "forces"]:
            raise ValueError(
                f"{name} is the program of a model of {metadata['outputs']}, not a potential: "
                "the calculator needs a force model's program (derivative=True)"
            )
        self.path, self.metadata = name, metadata
        self.periodic, self.dtype = metadata["periodic"], DTYPES[metadata["dtype"]]
        self.max_z, self.species = metadata["config"]["max_z"], metadata["species"]
        self.known_species = species_table(self.species, self.max_z)  # (None: any)
        # whether the program refuses unseen elements itself (then they cannot be allowed)
        self.checks_species = not (
            self.graph_input or self.species is None or metadata.get("allow_unseen_elements")
        )
        self.program: torch.fx.GraphModule | None = None  # (see load)
        self.neighbors: VerletInteractionGraph | None = None  # (a graph program's)

    def load(
        self,
        device: torch.device | None,
        dtype: torch.dtype | None,
        allow_unseen_elements: bool,
        skin: float,
    ) -> tuple[torch.device, torch.dtype]:
        """Load the program, after refusing another dtype and unseen elements (read from
        the metadata: loading takes seconds), then another device; return its device and
        dtype. A graph program gets a Verlet list of ``skin``."""
        if dtype not in (None, self.dtype):
            raise ValueError(
                f"the program {self.path} was exported in {self.dtype}, not {dtype}: export the "
                "model in the dtype to run (or leave dtype unset)"
            )
        if allow_unseen_elements and self.checks_species:
            raise ValueError(
                f"allow_unseen_elements=True cannot apply to the program {self.path}: it "
                f"checks its species {self.species} inside; use the model or its checkpoint, "
                "or export it with allow_unseen_elements"
            )
        if allow_unseen_elements:
            self.known_species = None
        if self.graph_input:
            self.neighbors = VerletInteractionGraph(self.metadata["cutoff"], skin)
        exported = torch.export.load(self.path)
        self.program, self.device = exported.module(), _input_device(exported)
        if device not in (None, self.device):
            raise ValueError(
                f"the program {self.path} was exported on {self.device}, not {device}: export "
                "the model on the device to run (or leave device unset)"
            )
        return self.device, self.dtype

    def check_structure(self, atoms: Atoms) -> None:
        """Refuse structures the program cannot compute, with a clear message."""
        if self.graph_input:  # (any structure)
            return
        if self.periodic and not atoms.pbc.any():
            raise ValueError(
                f"the program {self.path} was exported for periodic structures (it computes "
                "the stress): atoms.pbc is all False; run molecules with a program exported "
                "without periodic"
            )
        if not self.periodic and atoms.pbc.any():
            raise ValueError(
                f"the program {self.path} was exported for molecules (it takes no cell): "
                f"atoms.pbc = {atoms.pbc.tolist()}; export the model with periodic=True"
            )
        if self.periodic and not abs(atoms.cell.volume) > 0:
            raise ValueError(
                f"the periodic program {self.path} computes the stress, which needs a cell of "
                "non-zero volume (for a slab, give the cell its vacuum vector)"
            )

    def __call__(
        self, z: Tensor, pos: Tensor, cell: Tensor | None, pbc: Tensor | None, stress: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        check_atomic_numbers(z, self.max_z, self.known_species)
        if self.graph_input:
            return self._on_neighbor_list(z, pos, cell, pbc, stress)
        batch = torch.zeros_like(z)  # [N]
        if not self.periodic:
            energy, forces = self.program(z, pos, batch)
            return energy, forces, None
        return tuple(self.program(z, pos, batch, cell[None], pbc[None]))  # (always the stress)

    def _on_neighbor_list(
        self, z: Tensor, pos: Tensor, cell: Tensor | None, pbc: Tensor | None, stress: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """A graph program on the Verlet list; the stress from the pair forces, the virial
        :math:`\\sum_e \\mathbf{r}_e^\\top \\mathbf{g}_e` over the volume."""
        edge_index, shifts = self.neighbors(pos, None, cell, pbc)  # [2, E], [E, 3] or None
        edge_shift = None if cell is None else cartesian_shifts(shifts, cell, edge_index)
        edge_vec = edge_vectors(pos, edge_index, edge_shift)  # [E, 3]
        _, energy, forces, pair_forces = self.program(z, edge_vec, edge_index)
        if not stress:
            return energy.reshape(1, 1), forces, None
        volume = torch.linalg.det(cell).abs()
        if not volume > 0:
            raise ValueError(
                "the stress needs a cell of non-zero volume (for a slab, give the cell its "
                "vacuum vector along the non-periodic axis)"
            )
        return energy.reshape(1, 1), forces, (edge_vec.T @ pair_forces / volume)[None]


def _input_device(program: torch.export.ExportedProgram) -> torch.device:
    """The device of a program's first tensor input: where it was exported to run."""
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if node.op == "placeholder" and isinstance(value, Tensor):
            return value.device
    raise ValueError("the program takes no tensor input: not a potential's program")

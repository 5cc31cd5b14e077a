r"""What every potential of the zoo shares: inputs checked once, the interaction graph always
called, periodic cells and strain, forces and stress by one backward pass, per-atom offsets,
and the configuration saved in the ``state_dict``.

:class:`AtomisticModel` is the base of :class:`~e3nn_pyg.models.EquivariantNet` and
:class:`~e3nn_pyg.models.ManyBodyNet`. A model is the base plus two methods: ``_build_layers()``
(called by ``AtomisticModel._setup``) and ``_atom_outputs(z, pos, graph)``, the per-atom
outputs ``[N, out_channels]`` before the offsets; everything else (validation, the graph,
periodic images, strain, forces, stress, readout, config, loading) is written here once.

.. math::
    y_G = \bigoplus_{i \in G} \big(\sigma_y\, \phi_i + \mu_y + \mathrm{atomref}(z_i)\big),
    \qquad \mathbf{F}_i = -\frac{\partial y_G}{\partial \mathbf{p}_i}, \qquad
    \sigma_G = \frac{1}{V_G}\frac{\partial y_G}{\partial \varepsilon}

with :math:`\phi_i` the model's atom outputs and :math:`\bigoplus` the sum or mean over the
atoms of structure :math:`G` (``readout``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from ..checks import is_int, is_real, require, require_bool
from ..graph import Graph, cartesian_shifts, prepare_graph, validate_batch, validate_pos
from ..kernel import Kernel
from ..o3 import Rs
from ..radial import BesselRadialModel
from ..tensor_product.paths import selection_rule
from .forces import _SettingsOptionalOnLoad, energy_gradients
from .interaction_graph import (
    TRUSTED_GRAPHS,
    InteractionGraph,
    RadiusInteractionGraph,
    check_interaction_graph,
    checked_graph_output,
    periodic_inputs,
)
from .species import check_model_atomic_numbers, register_species

__all__ = ["READOUTS", "AtomisticModel", "check_settings"]

READOUTS = ("add", "mean")

#: Constructor arguments that are not architecture settings (see AtomisticModel.config)
_NOT_CONFIG = ("mean", "std", "atomref", "interaction_graph")
#: The integer settings every model has, with their lowest values (``max_num_neighbors``
#: may also be None: no cap)
COMMON_INT_MINIMUMS = {"out_channels": 1, "max_z": 1, "max_num_neighbors": 1}


def check_settings(minimums: Mapping[str, int], choices: Mapping[str, Sequence[Any]],
                   **settings: Any) -> None:  # fmt: skip
    """Refuse constructor arguments outside their limits: the integers of ``minimums``
    (``max_num_neighbors`` may be None), the positive ``cutoff`` and ``avg_num_neighbors``,
    the values of ``choices``, and forces of several outputs."""
    for name, low in minimums.items():
        value, nullable = settings[name], name == "max_num_neighbors"  # (None: no cap)
        if not (nullable and value is None) and (not is_int(value) or value < low):
            allowed = f"{'None or ' if nullable else ''}an int >= {low}"
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
    for name in ("cutoff", "avg_num_neighbors"):
        value = settings[name]
        if not is_real(value) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    for name, allowed in {**choices, "readout": READOUTS}.items():
        if settings[name] not in allowed:
            raise ValueError(f"{name} must be one of {tuple(allowed)}, got {settings[name]!r}")
    if settings["derivative"] and settings["out_channels"] != 1:
        raise ValueError("derivative=True needs out_channels=1 (forces of one energy)")


def _float_vector(
    name: str, value: float | Sequence[float] | Tensor | None, default: float, size: int
) -> Tensor:
    if value is None:
        return torch.full((size,), default)
    out = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().flatten().clone()
    if out.numel() == 1:
        out = out.expand(size).clone()
    if out.numel() != size or not torch.isfinite(out).all():
        raise ValueError(f"{name} must be a finite number or {size} numbers, got {value!r}")
    return out  # [size]


class AtomisticModel(_SettingsOptionalOnLoad):
    r"""The base of the zoo's potentials (see the module docstring): ``forward(z, pos,
    batch, cell=None, pbc=None, stress=False)`` as documented by its subclasses.

    A subclass calls :meth:`_setup` in its constructor, after checking its settings, and
    defines ``_build_layers()``, ``_atom_outputs(z, pos, graph)`` and
    ``reset_parameters()``; every constructor argument is kept as an attribute of the same
    name (that is how :meth:`config` reads them).
    """

    def _setup(
        self,
        *,
        cutoff: float,
        max_num_neighbors: int | None,
        avg_num_neighbors: float,
        readout: str,
        mean: float | Sequence[float] | None,
        std: float | Sequence[float] | None,
        atomref: Tensor | None,
        out_channels: int,
        max_z: int,
        species: Sequence[int] | None,
        interaction_graph: InteractionGraph | None,
        derivative: bool,
    ) -> None:
        """Keep the settings every model shares, build the layers and the offsets, and
        initialize the parameters."""
        if interaction_graph is not None:
            check_interaction_graph(interaction_graph)
        self.cutoff, self.max_num_neighbors = float(cutoff), max_num_neighbors
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.readout, self.out_channels, self.max_z = readout, out_channels, max_z
        register_species(self, species, max_z)  # species, allow_unseen_elements
        self.derivative = derivative
        if interaction_graph is None:
            interaction_graph = RadiusInteractionGraph(self.cutoff, max_num_neighbors)
        self.interaction_graph = interaction_graph
        self._build_layers()
        self._register_offsets(mean, std, atomref)
        self.reset_parameters()

    def _kernel(self, mode: str) -> partial:
        """``kernel(Rs_in, Rs_out)`` of the model's convolutions: a Bessel radial model of
        its ``cutoff``, ``num_basis``, ``radial_hidden`` and ``radial_layers``, filters up to
        its ``lmax``, in kernel ``mode``."""
        radial = partial(
            BesselRadialModel,
            max_radius=self.cutoff,
            number_of_basis=self.num_basis,
            h=self.radial_hidden,
            L=self.radial_layers,
        )
        selection = partial(selection_rule, lmax=self.lmax)
        return partial(Kernel, RadialModel=radial, selection_rule=selection, mode=mode)

    def _build_layers(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _build_layers()")

    def _atom_outputs(self, z: Tensor, pos: Tensor, graph: Graph) -> Tensor:
        """The per-atom outputs ``[N, out_channels]`` before the offsets."""
        raise NotImplementedError(f"{type(self).__name__} must define _atom_outputs()")

    def _atom_predictions(self, z: Tensor, pos: Tensor, graph: Graph) -> Tensor:
        """The per-atom predictions ``[N, out_channels]`` that the readout reduces: the atom
        outputs with the offsets (e.g. the atom energies of a potential)."""
        h = self._atom_outputs(z, pos, graph)  # [N, out_channels]
        return h * self.std + self.mean + self.atomref[z]  # [N, out_channels]

    def _register_offsets(
        self, mean: float | Sequence[float] | None, std: float | Sequence[float] | None,
        atomref: Tensor | None,
    ) -> None:  # fmt: skip
        """The buffers ``mean``, ``std`` ``[out_channels]`` and ``atomref``
        ``[max_z, out_channels]``."""
        max_z, out_channels = self.max_z, self.out_channels
        self.register_buffer("mean", _float_vector("mean", mean, 0.0, out_channels))
        self.register_buffer("std", _float_vector("std", std, 1.0, out_channels))
        if atomref is None:
            atomref = torch.zeros(max_z, out_channels)
        atomref = torch.as_tensor(atomref, dtype=torch.get_default_dtype()).detach().clone()
        if atomref.dim() == 1:
            atomref = atomref[:, None]
        if atomref.shape != (max_z, out_channels):
            raise ValueError(
                f"atomref must have shape [max_z, out_channels] = [{max_z}, {out_channels}], "
                f"got {list(atomref.shape)}"
            )
        self.register_buffer("atomref", atomref)  # [max_z, out_channels]

    #: Settings added after the model's first release, with the value that a config saved
    #: without them implies (the architecture of the time).
    SETTINGS_ADDED_LATER: ClassVar[Mapping[str, Any]] = {}

    def config(self) -> dict[str, Any]:
        """The constructor arguments that define the architecture (plain Python values),
        read from the constructor's signature: the model records every argument as an
        attribute of the same name.

        ``mean``, ``std`` and ``atomref`` live in the buffers of the ``state_dict``;
        a custom ``interaction_graph`` is code, not part of the config.
        """
        keys = [key for key in inspect.signature(type(self)).parameters if key not in _NOT_CONFIG]
        values = {key: getattr(self, key) for key in keys}
        # (representation lists as their strings: plain values)
        return {
            key: str(value) if isinstance(value, Rs) else value for key, value in values.items()
        }

    def get_extra_state(self) -> dict[str, Any]:
        """The :meth:`config`, saved in the ``state_dict`` (key ``_extra_state``)."""
        return {"config": self.config()}

    def set_extra_state(self, state: Any) -> None:
        """Refuse a ``state_dict`` saved from a model of another architecture (a silent
        hybrid otherwise: e.g. weights trained at one cutoff evaluated at another).
        ``derivative`` may differ: the forces of an energy model are its gradient."""
        saved = state.get("config") if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            raise ValueError(
                f"the state_dict's _extra_state holds no {type(self).__name__} config: {state!r}"
            )
        mine = self.config()
        saved = {**self.SETTINGS_ADDED_LATER, **saved}
        differences = [
            f"{key}={saved.get(key)!r} (this model: {mine[key]!r})"
            for key in mine
            if key != "derivative" and saved.get(key) != mine[key]
        ]
        if differences:
            raise ValueError(
                f"the state_dict was saved from a {type(self).__name__} with "
                + ", ".join(differences)
                + ": build the model with the saved settings (state_dict()['_extra_state']"
                "['config'] holds them)"
            )

    def _check_inputs(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        cell: Tensor | None = None,
        pbc: Tensor | Sequence[bool] | bool | None = None,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Validate the inputs of a call, once for the whole network; return the cells and
        periodic axes per structure (``None`` for molecules)."""
        check_model_atomic_numbers(self, z)
        validate_pos(pos)
        if pos.shape[0] != z.shape[0]:
            raise ValueError(f"z has {z.shape[0]} atoms but pos has {pos.shape[0]} rows")
        if batch is not None:
            validate_batch(batch, z.shape[0], pos.device)
        if pos.dtype != self.std.dtype:
            raise TypeError(
                f"pos is {pos.dtype} but the model is {self.std.dtype}: convert one of them "
                "(model.double() or pos.float())"
            )
        return periodic_inputs(cell, pbc, pos, batch)

    def _edges(
        self, pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """The interaction graph of validated inputs ``[2, E]``, and the integer cell shift
        of every edge ``[E, 3]`` for periodic structures (``None`` otherwise)."""
        graph = self.interaction_graph
        if type(graph) in TRUSTED_GRAPHS:  # built from the validated inputs: no second check
            return graph.edges(pos, batch, cell, pbc)
        return checked_graph_output(graph(pos, batch, cell, pbc), pos, batch, pbc)

    def _energy(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        cell: Tensor | None,
        pbc: Tensor | None,
        displacement: Tensor | None = None,
    ) -> Tensor:
        r"""The prediction ``[G, out_channels]`` of validated inputs; ``displacement``
        ``[G, 3, 3]`` strains positions and cells, :math:`x \to x (I + \varepsilon)`
        with :math:`\varepsilon` its symmetric part (zero: a handle for the stress)."""
        edge_index, shifts = self._edges(pos, batch, cell, pbc)
        if displacement is not None:  # (zero: the graph of the strained inputs is the same)
            strain = 0.5 * (displacement + displacement.mT)  # [G, 3, 3]
            graph = batch if batch is not None else z.new_zeros(z.shape)  # [N]
            pos = pos + (pos[:, None, :] @ strain[graph]).squeeze(1)  # [N, 3]
            cell = cell + cell @ strain  # [G, 3, 3]
        edge_shift = None
        if cell is not None:
            edge_shift = cartesian_shifts(shifts, cell, edge_index, batch)  # [E, 3]
            num_graphs = cell.shape[0]
        elif batch is None:
            num_graphs = 1
        else:
            # (read from a count, not batch.max(), so that torch.compile needs no host value)
            num_graphs = torch.bincount(batch).shape[0]
        return self._predict(z, pos, batch, edge_index, edge_shift, num_graphs)

    def _predict(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        edge_index: Tensor,
        edge_shift: Tensor | None,
        num_graphs: int,
    ) -> Tensor:
        # one graph for the layers: sorted once, its geometry (pairing of the edges, their
        # lengths and harmonics) shared; the inputs were validated at the entry
        graph = prepare_graph(pos, edge_index, edge_shift, validate=False)
        h = self._atom_predictions(z, pos, graph)  # [N, out_channels]
        structure = batch if batch is not None else z.new_zeros(z.shape)  # [N]
        return scatter(h, structure, 0, dim_size=num_graphs, reduce=self.readout)  # [G, out]

    def energy(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | Sequence[bool] | bool | None = None,
    ) -> Tensor:
        """The prediction ``[num_graphs, out_channels]`` alone, also with ``derivative=True``
        (the forces are its negative gradient); arguments as in :meth:`forward`."""
        cell, pbc = self._check_inputs(z, pos, batch, cell, pbc)
        return self._energy(z, pos, batch, cell, pbc)

    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | Sequence[bool] | bool | None = None,
        stress: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        r"""Predict one value per structure (and the forces with ``derivative=True``, and
        the stress with ``stress=True``; see the class docstring).

        Args:
            z (torch.Tensor): atomic numbers ``[N]``, long, in ``species`` when it is set.
            pos (torch.Tensor): positions ``[N, 3]``, the model's dtype.
            batch (torch.Tensor, optional): structure of every atom ``[N]``, sorted.
                (default: :obj:`None`, one structure)
            cell (torch.Tensor, optional): lattice vectors as rows, ``[num_graphs, 3, 3]``
                or ``[3, 3]`` for every structure, the model's dtype (see
                :func:`~e3nn_pyg.graph.validate_cell`). (default: :obj:`None`, molecules)
            pbc (torch.Tensor or sequence of bool or bool, optional): periodic axes, bool
                ``[num_graphs, 3]`` or ``[3]``. (default: :obj:`None`: all three periodic
                when a cell is given)
            stress (bool, optional): also return the stress (NaN rows for structures
                without periodic axis); needs ``derivative=True``, some periodic structure,
                and cells of non-zero volume for the periodic ones. (default: :obj:`False`)

        Returns:
            ``[num_graphs, out_channels]``; with ``derivative=True`` the tuple
            ``(energy [num_graphs, 1], forces [N, 3])``, and with ``stress=True``
            ``(energy [num_graphs, 1], forces [N, 3], stress [num_graphs, 3, 3])``.
            ``num_graphs`` is the number of cells when a cell per structure is given.
        """
        cell, pbc = self._check_inputs(z, pos, batch, cell, pbc)
        require_bool(stress, "stress")
        volume = self._stress_volume(cell, pbc) if stress else None  # [G]
        if not self.derivative:
            return self._energy(z, pos, batch, cell, pbc)
        return self._derivatives(z, pos, batch, cell, pbc, volume)

    def _derivatives(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        cell: Tensor | None,
        pbc: Tensor | None,
        volume: Tensor | None,
    ) -> tuple[Tensor, ...]:
        """The energy, the forces and (given the volumes ``[G]``) the stress of validated
        inputs, by one backward pass."""
        grad_enabled = torch.is_grad_enabled()
        # torch.compile cannot return values differentiable through a leaf made inside it
        detach = not grad_enabled
        if not pos.requires_grad and torch.compiler.is_compiling():
            if self.training and grad_enabled:
                raise RuntimeError(
                    "a compiled force model in training mode needs pos.requires_grad_() "
                    "before the call (the forces' graph starts at pos)"
                )
            detach = True
        with torch.enable_grad():
            if not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            inputs = [pos]
            if volume is not None:
                displacement = pos.new_zeros(cell.shape).requires_grad_(True)  # [G, 3, 3]
                inputs.append(displacement)
            energy = self._energy(z, pos, batch, cell, pbc, *inputs[1:])  # [G, 1]
            gradients = energy_gradients(energy, inputs, self.training and grad_enabled)
        outputs = [energy, -gradients[0]]  # forces [N, 3]
        if volume is not None:  # NaN volume: a molecule (see _stress_volume)
            defined = ~volume.isnan()[:, None, None]  # [G, 1, 1]
            # divide by 1 where undefined, so that the NaN rows pass zero gradients
            stress = gradients[1] / torch.where(defined, volume[:, None, None], 1.0)
            outputs.append(torch.where(defined, stress, math.nan))  # [G, 3, 3]
        if detach:
            outputs = [t.detach() for t in outputs]
        return tuple(outputs)

    def _stress_volume(self, cell: Tensor | None, pbc: Tensor | None) -> Tensor:
        """The volumes ``[G]`` that divide the stress, NaN for the structures without a
        periodic axis (their stress is not defined), after checking that the stress of
        some structure is defined."""
        if not self.derivative:
            raise ValueError("stress=True needs a force model: build it with derivative=True")
        if cell is None:
            raise ValueError("stress=True needs periodic structures: pass their cell")
        volume = torch.linalg.det(cell).abs()  # [G]
        periodic = pbc.any(1)  # [G]
        require(
            periodic.any(), ValueError, "stress=True needs periodic structures: no structure "
            "has a periodic axis (pbc all False); the stress of a molecule is not defined",
        )  # fmt: skip
        require(
            ((volume > 0) | ~periodic).all(), ValueError,
            "stress=True needs cells of non-zero volume for periodic structures (for a slab, "
            "give the cell its vacuum vector along the non-periodic axis)",
            lambda: "stress=True needs cells of non-zero volume for periodic structures: "
            f"structure {int(torch.nonzero(periodic & (volume <= 0))[0, 0])} has a flat cell "
            "(for a slab, give the cell its vacuum vector along the non-periodic axis)",
        )  # fmt: skip
        return torch.where(periodic, volume, math.nan)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"{type(self).__name__}({arguments})"

r"""Potentials on a neighbour list given by the caller, for MD engines that bring their own.

A molecular dynamics engine (LAMMPS, JAX-MD, an ASE neighbour list) has already found the
pairs within the cutoff, periodic images included. :class:`GraphPotential` evaluates a
potential of the zoo (:class:`~e3nn_pyg.models.AtomisticModel` with one output and the
``"add"`` readout) on that list:

.. math::
    \mathbf{r}_e = \mathbf{p}_{j} - \mathbf{p}_{i} + \mathbf{t}_e, \qquad
    E = \sum_i \varepsilon_i(\{\mathbf{r}_e\}), \qquad
    \mathbf{g}_e = \frac{\partial E}{\partial \mathbf{r}_e}, \qquad
    \mathbf{F}_k = \sum_{e:\, i_e = k} \mathbf{g}_e - \sum_{e:\, j_e = k} \mathbf{g}_e

for every edge :math:`e` from source :math:`j` to target :math:`i` (``edge_index[0]`` and
``edge_index[1]``, the convention of ``docs/conventions.md``) with Cartesian shift
:math:`\mathbf{t}_e` (the image offset, ``shifts @ cell``). The list must hold both
directions of every pair, as the package's radius graphs do.

**The engine's conventions.** The per-pair forces :math:`\mathbf{g}_e` are those of
LAMMPS's ML-IAP unified interface (``pair_style mliap unified``): its ``rij`` is
:math:`\mathbf{r}_j - \mathbf{r}_i` for the pair ``(pair_i, pair_j)``, so ``pair_i`` is our
target and ``pair_j`` our source, and ``update_pair_forces(fij)`` takes
:math:`\mathbf{g}_e` (LAMMPS adds it to atom :math:`i` and subtracts it from atom
:math:`j`). The virial of a homogeneous strain is
:math:`\partial E / \partial \varepsilon = \sum_e \mathbf{r}_e^\top \mathbf{g}_e`
(the stress is that over the volume, ASE's sign).

**Edges beyond the cutoff** are accepted and contribute exactly zero, energy and forces:
the radial functions of the zoo end in an envelope that is flat zero from the cutoff on,
and the convolutions normalize by the model's fixed ``avg_num_neighbors``, not by a count
of edges. A Verlet list of the cutoff plus a skin can be passed as it is (its extra edges
cost convolution work, not accuracy); edges shorter than the cutoff must all be there.

**Export.** :func:`export_graph_potential` exports the potential as a function of the edge
vectors, ``program(z, edge_vec, edge_index) -> (atom_energy, energy, forces, pair_forces)``
(:meth:`GraphPotential.from_edge_vectors`), its backward pass traced into the program
(:func:`~e3nn_pyg.export.export_traced`: torch 2.13 cannot export a
:func:`torch.autograd.grad` directly). After ``import torch, e3nn_pyg``::

    program = torch.export.load("graph.pt2").module()
    edge_vec = edge_vectors(pos, edge_index, edge_shift)  # [E, 3], pos[j] - pos[i] + shift
    atom_energy, energy, forces, pair_forces = program(z, edge_vec, edge_index)

The program does not validate its inputs (:class:`GraphPotential` does): pass atomic numbers
of the model's species, tensors in its dtype, and edges in range. :func:`save_graph_potential`
writes it with the model's metadata (cutoff, species, dtype, ...), or as an AOTInductor
package called alike (``aoti=True``: ``torch._inductor.aoti_load_package(path)``);
``e3nn-pyg export --graph-input`` does the same for a checkpoint. The ASE calculator runs
such a program (not a package) on its own neighbour list (:class:`e3nn_pyg.ase.Calculator`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import require, require_bool, require_edges, require_like
from ..graph import prepare_graph
from ..graph.prepared import edge_vectors  # (re-exported: the programs' callers use it)
from .atomistic import AtomisticModel

__all__ = [
    "AtomEnergies",
    "GraphOutputs",
    "GraphPotential",
    "check_potential",
    "edge_vectors",
    "export_graph_potential",
    "save_graph_potential",
]


class GraphOutputs(NamedTuple):
    """What :class:`GraphPotential` returns (all detached, in the dtype of the positions)."""

    #: per-atom energies ``[N]``
    atom_energy: Tensor
    #: total energy ``[]``, the sum of the per-atom energies
    energy: Tensor
    #: forces ``[N, 3]``, :math:`-\partial E / \partial \mathbf{p}`
    forces: Tensor
    #: per-pair forces ``[E, 3]``, :math:`\partial E / \partial \mathbf{r}_e` in the
    #: caller's edge order (ML-IAP's ``fij``)
    pair_forces: Tensor


def check_potential(model: object) -> AtomisticModel:
    """Raise unless ``model`` is a potential of the zoo whose energy is a sum of per-atom
    energies (one output, the ``"add"`` readout); return it."""
    if not isinstance(model, AtomisticModel):
        raise TypeError(
            "a graph potential needs a model of the zoo (an AtomisticModel such as "
            f"EquivariantNet or ManyBodyNet), got {type(model).__name__}"
        )
    if model.out_channels != 1:
        raise ValueError(
            f"the {type(model).__name__} has out_channels={model.out_channels}: a potential "
            "predicts one energy (out_channels=1)"
        )
    if model.readout != "add":
        raise ValueError(
            f"the {type(model).__name__} has readout={model.readout!r}: per-atom energies "
            "need readout='add' (a mean over atoms is not a sum of atom energies)"
        )
    return model


class AtomEnergies(nn.Module):
    r"""The per-atom energies of a potential as a function of its edge vectors,
    ``(z, edge_vec, edge_index) -> [N]``: the differentiable part of a
    :class:`GraphPotential`. It does not validate its inputs (:class:`GraphPotential`
    does).

    The model's own per-atom computation runs on a graph whose positions are all zero and
    whose shifts are the edge vectors, so that every gradient lands on ``edge_vec``.

    Args:
        model (AtomisticModel): a potential (one output, ``readout="add"``).

    Shapes:
        - **input:** atomic numbers ``z`` ``[N]`` (long), edge vectors ``edge_vec``
          ``[E, 3]`` (the model's dtype), ``edge_index`` ``[2, E]`` (source, target)
        - **output:** per-atom energies ``[N]``
    """

    def __init__(self, model: AtomisticModel) -> None:
        super().__init__()
        self.model = check_potential(model)

    def forward(self, z: Tensor, edge_vec: Tensor, edge_index: Tensor) -> Tensor:
        origin = edge_vec.new_zeros(z.shape[0], 3)  # [N, 3] (0 - 0 + edge_vec: exact)
        graph = prepare_graph(origin, edge_index, edge_vec, validate=False)
        return self.model._atom_predictions(z, origin, graph)[:, 0]  # [N]


class GraphPotential(nn.Module):
    r"""A potential of the zoo on a neighbour list given by the caller (see the module
    docstring): per-atom energies, energy, forces and per-pair forces from species,
    positions, edges and edge shifts.

    It runs the model's own per-atom computation, so on the edges of the model's own
    radius graph it gives the model's energy, forces and stress (to rounding). The outputs
    are detached: an inference interface.

    Args:
        model (AtomisticModel): a potential: :class:`~e3nn_pyg.models.EquivariantNet` or
            :class:`~e3nn_pyg.models.ManyBodyNet` with ``out_channels=1`` and
            ``readout="add"`` (``derivative`` either way). The module wraps it, not a copy.

    Shapes:
        - **input:** ``z`` ``[N]`` (long, in the model's ``species``), ``pos`` ``[N, 3]``
          (the model's dtype), ``edge_index`` ``[2, E]`` (source, target; both directions
          of every pair), ``edge_shift`` ``[E, 3]`` (optional, Cartesian, dtype of ``pos``)
        - **output:** :class:`GraphOutputs` ``(atom_energy [N], energy [], forces [N, 3],
          pair_forces [E, 3])``

    Example:
        >>> from e3nn_pyg.models import EquivariantNet
        >>> potential = GraphPotential(EquivariantNet("4x0e + 2x1o", num_layers=2))
        >>> z, pos = torch.tensor([8, 1, 1]), torch.randn(3, 3)
        >>> edge_index = torch.tensor([[1, 2, 0, 0], [0, 0, 1, 2]])
        >>> out = potential(z, pos, edge_index)
        >>> tuple(out.atom_energy.shape), tuple(out.forces.shape), tuple(out.pair_forces.shape)
        ((3,), (3, 3), (4, 3))
    """

    def __init__(self, model: AtomisticModel) -> None:
        super().__init__()
        self.atom_energies = AtomEnergies(model)

    @property
    def model(self) -> AtomisticModel:
        """The wrapped potential."""
        return self.atom_energies.model

    @property
    def cutoff(self) -> float:
        """The model's cutoff: the neighbour list must hold every pair closer than it."""
        return self.model.cutoff

    def forward(
        self, z: Tensor, pos: Tensor, edge_index: Tensor, edge_shift: Tensor | None = None
    ) -> GraphOutputs:
        self._check_inputs(z, pos, edge_index, edge_shift)
        shift = None if edge_shift is None else edge_shift.detach()
        edge_vec = edge_vectors(pos.detach(), edge_index, shift)  # [E, 3]
        return self.from_edge_vectors(z, edge_vec, edge_index)

    def from_edge_vectors(self, z: Tensor, edge_vec: Tensor, edge_index: Tensor) -> GraphOutputs:
        r"""The outputs of ``forward`` from the edge vectors ``[E, 3]``
        (:func:`edge_vectors`), inputs not validated: what
        :func:`export_graph_potential` exports."""
        with torch.enable_grad():
            edge_vec = edge_vec.detach().requires_grad_(True)  # [E, 3]
            atom_energy = self.atom_energies(z, edge_vec, edge_index)  # [N]
            (pair_forces,) = torch.autograd.grad(
                atom_energy.sum(), edge_vec, allow_unused=True, materialize_grads=True
            )  # [E, 3] (zero without edges)
        pair_forces = pair_forces.detach()  # [E, 3]
        # F_k: the pair forces of the edges k is the target of, minus those it is the source of
        forces = edge_vec.new_zeros(z.shape[0], 3).index_add_(0, edge_index[1], pair_forces)
        forces = forces.index_add_(0, edge_index[0], pair_forces, alpha=-1)  # [N, 3]
        atom_energy = atom_energy.detach()  # [N]
        return GraphOutputs(atom_energy, atom_energy.sum(), forces, pair_forces)

    def _check_inputs(
        self, z: Tensor, pos: Tensor, edge_index: Tensor, edge_shift: Tensor | None
    ) -> None:
        """Refuse bad inputs before any work, with the model's checks of ``z`` and
        ``pos`` and the package's checks of edges and shifts."""
        self.model._check_inputs(z, pos, None)  # species, finite positions, dtype
        require_edges(edge_index, pos.shape[0], pos.shape[0], pos.device)
        if edge_shift is None:
            return
        num_edges = edge_index.shape[1]
        if not isinstance(edge_shift, Tensor) or tuple(edge_shift.shape) != (num_edges, 3):
            shape = list(edge_shift.shape) if isinstance(edge_shift, Tensor) else edge_shift
            raise ValueError(
                f"edge_shift must have shape [num_edges, 3] = [{num_edges}, 3], got {shape}"
            )
        require_like(edge_shift, pos, "edge_shift", "pos")
        require(torch.isfinite(edge_shift).all(), ValueError, "edge_shift holds NaN or inf")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"


class _EdgeVectorCall(nn.Module):
    """:meth:`GraphPotential.from_edge_vectors` as a module returning a plain tuple (what
    :func:`export_graph_potential` traces)."""

    def __init__(self, potential: GraphPotential) -> None:
        super().__init__()
        self.potential = potential

    def forward(self, z: Tensor, edge_vec: Tensor, edge_index: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.potential.from_edge_vectors(z, edge_vec, edge_index))


def export_graph_potential(model: AtomisticModel) -> torch.export.ExportedProgram:
    r""":func:`torch.export.export` of a potential on a given neighbour list,
    ``program(z, edge_vec, edge_index) -> (atom_energy [N], energy [], forces [N, 3],
    pair_forces [E, 3])`` (:meth:`GraphPotential.from_edge_vectors`, see the module
    docstring), for any number of atoms and edges; the model is put in eval mode.

    Args:
        model (AtomisticModel): a potential (one output, ``readout="add"``).
    """
    from ..export import export_traced  # (export imports the models: imported on use)

    module = _EdgeVectorCall(GraphPotential(model).eval())
    parameter = model.std
    species = model.species or [6, 1, 1, 8, 1]
    z = torch.tensor([species[i % len(species)] for i in range(5)], device=parameter.device)
    pos = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=parameter.dtype)
    src, dst = torch.triu_indices(5, 5, 1, device=parameter.device)  # [10] each
    edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])  # [2, 20]
    edge_vec = edge_vectors(pos.to(parameter.device), edge_index)  # [20, 3]
    num_atoms = torch.export.Dim("num_atoms", min=2)
    num_edges = torch.export.Dim("num_edges", min=2)
    dynamic_shapes = ({0: num_atoms}, {0: num_edges}, {1: num_edges})
    return export_traced(module, (z, edge_vec, edge_index), dynamic_shapes)


def save_graph_potential(
    model: AtomisticModel, path: str | os.PathLike, aoti: bool = False
) -> Path:
    """Export ``model`` (:func:`export_graph_potential`) and write it to the ``.pt2`` file
    ``path`` with its metadata (:func:`~e3nn_pyg.export.model_metadata`, read back by
    :func:`~e3nn_pyg.export.read_metadata`), marked ``"interface": "graph"``: its inputs
    and outputs are those of the program, and ``periodic`` is true (the periodic images are
    in the edge vectors, so it computes crystals and molecules alike).

    Args:
        model (AtomisticModel): a potential (one output, ``readout="add"``).
        path (str or os.PathLike): the ``.pt2`` file to write, in an existing folder.
        aoti (bool, optional): write an AOTInductor package (compiled C++, loaded with
            :func:`torch._inductor.aoti_load_package` and called as the program is)
            instead of a program loaded with :func:`torch.export.load`, as
            :func:`~e3nn_pyg.export.save_model` does. (default: :obj:`False`)

    Returns:
        the path written.
    """
    from ..export import model_metadata, require_pt2_path, write_program

    path = require_pt2_path(path)
    require_bool(aoti, "aoti")
    metadata = model_metadata(check_potential(model), periodic=True)
    dtype = metadata["dtype"]
    metadata.update(
        interface="graph",
        checks_inputs=False,  # the caller's neighbour list and species are taken as they are
        inputs=["z", "edge_vec", "edge_index"],
        outputs=list(GraphOutputs._fields),
        target={"name": "energy", "unit": "eV"},
        units=dict(length="Å", atom_energy="eV", energy="eV", forces="eV/Å", pair_forces="eV/Å"),
        signature=f"module(z [N] int64, edge_vec [E, 3] {dtype}, edge_index [2, E] int64) -> "
        "(atom_energy [N], energy [], forces [N, 3], pair_forces [E, 3])",
    )
    return write_program(export_graph_potential(model), path, metadata, aoti)

"""Zoo networks with PyG's model interface ``forward(z, pos, batch)``.

- :class:`EquivariantNet`: E(3)-equivariant convolutions, gates and an invariant readout,
  a drop-in for :class:`torch_geometric.nn.models.SchNet`.
- :class:`ManyBodyNet`: a many-body (MACE-class) potential: atomic bases from a channel-wise
  convolution contracted with themselves up to a correlation order.
- :class:`AtomisticModel`: their shared base (inputs, graph, periodic cells, forces, stress,
  offsets, config).
- :class:`SelfInteraction`: the per-irrep linear layer they use, and
  :class:`SpeciesSelfInteraction`, the same with weights per element.
- :class:`EnergyForces`: the forces of any energy model (e.g. SchNet) by autograd.
- :class:`GraphPotential`: a potential on the neighbour list of an MD engine (per-atom
  energies, forces, per-pair forces).
- :class:`RadiusInteractionGraph`, :class:`VerletInteractionGraph`: interaction graphs
  ``(pos, batch, cell, pbc) -> (edge_index, edge_shift)`` of :class:`EquivariantNet` (the
  exact radius graph, and the same reused between the steps of a simulation).
- :class:`SchNetInteractionGraph`: the radius graph and edge lengths, PyG's SchNet's
  ``interaction_graph``.
"""

from .atomistic import AtomisticModel
from .equivariant_net import EquivariantNet, InteractionBlock, layer_representations
from .forces import EnergyForces
from .graph_input import GraphPotential
from .interaction_graph import (
    InteractionGraph,
    RadiusInteractionGraph,
    SchNetInteractionGraph,
    VerletInteractionGraph,
)
from .many_body import ManyBodyBlock, ManyBodyNet, natural_irreps
from .self_interaction import SelfInteraction, SpeciesSelfInteraction

__all__ = [
    "AtomisticModel",
    "EnergyForces",
    "EquivariantNet",
    "GraphPotential",
    "InteractionBlock",
    "InteractionGraph",
    "ManyBodyBlock",
    "ManyBodyNet",
    "RadiusInteractionGraph",
    "SchNetInteractionGraph",
    "SelfInteraction",
    "SpeciesSelfInteraction",
    "VerletInteractionGraph",
    "layer_representations",
    "natural_irreps",
]

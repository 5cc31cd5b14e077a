"""Zoo networks with PyG's model interface ``forward(z, pos, batch)``.

- :class:`EquivariantNet`: E(3)-equivariant convolutions, gates and an invariant readout,
  a drop-in for :class:`torch_geometric.nn.models.SchNet`.
- :class:`SelfInteraction`: the per-irrep linear layer it uses.
- :class:`EnergyForces`: the forces of any energy model (e.g. SchNet) by autograd.
- :class:`RadiusInteractionGraph`, :class:`VerletInteractionGraph`: interaction graphs
  ``(pos, batch, cell, pbc) -> (edge_index, edge_shift)`` of :class:`EquivariantNet` (the
  exact radius graph, and the same reused between the steps of a simulation).
- :class:`SchNetInteractionGraph`: the radius graph and edge lengths, PyG's SchNet's
  ``interaction_graph``.
"""

from .equivariant_net import EquivariantNet, InteractionBlock, layer_representations
from .forces import EnergyForces
from .interaction_graph import (
    InteractionGraph,
    RadiusInteractionGraph,
    SchNetInteractionGraph,
    VerletInteractionGraph,
)
from .self_interaction import SelfInteraction

__all__ = [
    "EnergyForces",
    "EquivariantNet",
    "InteractionBlock",
    "InteractionGraph",
    "RadiusInteractionGraph",
    "SchNetInteractionGraph",
    "SelfInteraction",
    "VerletInteractionGraph",
    "layer_representations",
]

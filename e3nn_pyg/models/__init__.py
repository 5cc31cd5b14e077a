"""Zoo networks with PyG's model interface ``forward(z, pos, batch)``.

- :class:`EquivariantNet`: E(3)-equivariant convolutions, gates and an invariant readout,
  a drop-in for :class:`torch_geometric.nn.models.SchNet`.
- :class:`SelfInteraction`: the per-irrep linear layer it uses.
- :class:`EnergyForces`: the forces of any energy model (e.g. SchNet) by autograd.
- :class:`RadiusInteractionGraph`: the radius graph and edge lengths, also usable as
  SchNet's ``interaction_graph``.
"""

from .equivariant_net import EquivariantNet, InteractionBlock, layer_representations
from .forces import EnergyForces
from .interaction_graph import RadiusInteractionGraph
from .self_interaction import SelfInteraction

__all__ = [
    "EnergyForces",
    "EquivariantNet",
    "InteractionBlock",
    "RadiusInteractionGraph",
    "SelfInteraction",
    "layer_representations",
]

r"""Equivariant non-linearities.

- :mod:`~e3nn_pyg.non_linearities.rescaled_act`: activations with unit second moment.
- :class:`GatedBlock`, :class:`GatedBlockParity`: scalars through an activation, other
  irreps multiplied by activated scalar gates.
- :class:`NormActivation`: an activation on the norm of each irrep copy.
"""

from . import gated_block, norm_activation, rescaled_act
from .gated_block import GatedBlock, GatedBlockParity
from .norm_activation import NormActivation

__all__ = [
    "GatedBlock",
    "GatedBlockParity",
    "NormActivation",
    "gated_block",
    "norm_activation",
    "rescaled_act",
]

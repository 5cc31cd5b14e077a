"""The tutorial's ``e3nn.non_linearities.rescaled_act``: the activations of
:mod:`e3nn_pyg.activations` (rescaled to unit second moment), under the tutorial's name."""

from ..activations import *  # noqa: F403 (the same names, by design)
from ..activations import __all__  # noqa: F401

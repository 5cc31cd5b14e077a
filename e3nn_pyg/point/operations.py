"""The tutorial's import path of the point convolution: ``e3nn_pyg.point.operations.Convolution``
is :class:`e3nn_pyg.conv.Convolution` (re-exported, not a copy)."""

from ..conv import Convolution

__all__ = ["Convolution"]

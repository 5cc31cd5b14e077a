"""Operations on point sets, under the import path of the e3nn tutorial (``e3nn.point``).

>>> import e3nn_pyg.point.operations
>>> e3nn_pyg.point.operations.Convolution.__name__
'Convolution'
"""

from . import operations

__all__ = ["operations"]

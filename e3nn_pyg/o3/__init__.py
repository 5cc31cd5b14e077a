"""Group math of O(3): representation lists, spherical harmonics, Wigner matrices.

This subpackage imports torch only (never torch_geometric).
"""

from .rs import MulIrrep, Rs, RsLike, dim

__all__ = ["MulIrrep", "Rs", "RsLike", "dim"]

"""Group math of O(3): representation lists, spherical harmonics, Wigner matrices and
the symmetric couplings (generalized Clebsch-Gordan coefficients).

This subpackage imports torch only (never torch_geometric).
"""

from .coupling import SymmetricCoupling, expand_monomials, monomial_table, symmetric_coupling
from .rs import Irrep, IrrepLike, MulIrrep, Rs, RsLike, dim, rs_representation
from .spherical_harmonics import (
    spherical_harmonics,
    spherical_harmonics_xyz,
    spherical_harmonics_xyz_backwardable,
)
from .wigner import parity_matrix, rand_rotation, wigner_3j, wigner_D

__all__ = [
    "Irrep",
    "IrrepLike",
    "MulIrrep",
    "Rs",
    "RsLike",
    "SymmetricCoupling",
    "dim",
    "expand_monomials",
    "monomial_table",
    "parity_matrix",
    "rand_rotation",
    "rs_representation",
    "spherical_harmonics",
    "spherical_harmonics_xyz",
    "spherical_harmonics_xyz_backwardable",
    "symmetric_coupling",
    "wigner_3j",
    "wigner_D",
]

r"""The symmetry checker every layer of e3nn_pyg is tested with, and the contract of
interatomic potentials every zoo model is tested with.

- :mod:`~e3nn_pyg.testing.equivariance`: :func:`equivariance_error` and
  :func:`assert_equivariant`, the largest deviation of any function of positions and
  features from E(3)-equivariance; :func:`max_difference`, the largest difference of two
  tensors in which no NaN vanishes (what every check here takes maxima of).
- :mod:`~e3nn_pyg.testing.potentials`: what an interatomic potential is (:data:`Potential`,
  a callable ``potential(z, pos, batch[, cell=, pbc=])``), batches of atomic structures
  (:class:`Structures`), and its energy, forces and stress whatever subset of them it
  returns (:func:`evaluate_potential`); PyG zoo models as potentials
  (:func:`model_potential`).
- :mod:`~e3nn_pyg.testing.potential_errors`: the errors of a potential against what every
  potential must satisfy: symmetries, forces equal to finite differences of the energy,
  batches equal to their structures one by one, continuity across the cutoff, additivity
  of far-apart fragments and isolated atoms; :func:`assert_below` turns them into an
  assertion.
- :mod:`~e3nn_pyg.testing.periodic_errors`: those of periodic cells: invariance under
  wrapping, extensivity of supercells, stress equal to finite differences.
- :mod:`~e3nn_pyg.testing.contract`: :class:`PotentialContract`, the test suite that runs
  them all on a model.

Every name is importable from ``e3nn_pyg.testing``.
"""

from .contract import PotentialContract
from .equivariance import POS, assert_equivariant, equivariance_error, max_difference
from .periodic_errors import stress_fd_error, supercell_error, wrapping_error
from .potential_errors import (
    assert_below,
    batch_error,
    cutoff_jump,
    forces_fd_error,
    isolated_atom_error,
    separation_error,
    symmetry_error,
)
from .potentials import Potential, Structures, evaluate_potential, model_potential

__all__ = [
    "POS",
    "Potential",
    "PotentialContract",
    "Structures",
    "assert_below",
    "assert_equivariant",
    "batch_error",
    "cutoff_jump",
    "equivariance_error",
    "evaluate_potential",
    "forces_fd_error",
    "isolated_atom_error",
    "max_difference",
    "model_potential",
    "separation_error",
    "stress_fd_error",
    "supercell_error",
    "symmetry_error",
    "wrapping_error",
]

r"""The contract of interatomic potentials as a pytest test class to inherit:
:class:`PotentialContract` runs every check of :mod:`e3nn_pyg.testing.potential_errors` and
:mod:`e3nn_pyg.testing.periodic_errors` on sample structures drawn for the potential's cutoff.
"""

from __future__ import annotations

import unittest
from collections.abc import Iterator

import torch
from torch import Tensor

from . import periodic_errors, potential_errors
from .potential_errors import assert_below
from .potentials import Potential, Structures, evaluate_potential

__all__ = ["PotentialContract"]

_FCC_SITES = ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))


class PotentialContract:
    r"""The checks every interatomic potential must pass, as a pytest test class to inherit.

    A subclass gives the cutoff and the potential (and may change the sample structures
    and tolerances); pytest collects the inherited ``test_*`` methods:

    .. code-block:: python

        class TestMyModel(PotentialContract):
            cutoff = 3.0

            def potential(self):
                torch.manual_seed(0)
                return model_potential(MyModel(cutoff=3.0).double())

    To mark one check as a known failure of a model, override it:
    ``@pytest.mark.xfail(strict=True, reason=...)`` on ``def test_x(self):
    super().test_x()``. The periodic checks (wrapping, supercells, stress, and the
    symmetries, forces and batches of :meth:`crystals`) run only with ``periodic = True``
    and are skipped otherwise. Tolerances are absolute, in the units of the potential, and
    suit energies and forces of order one (a freshly initialized model); scale them for
    others.

    Attributes:
        cutoff (float): the cutoff radius of the potential (required).
        species (tuple of int): the atomic numbers of the samples. (default: ``(1, 6, 8)``)
        periodic (bool): whether the potential takes periodic cells. (default: :obj:`False`)
        dtype (torch.dtype): of the sample positions; the finite differences need float64.
            (default: :obj:`torch.float64`)
        atol (float): tolerance of the exact properties (symmetries, batches, additivity,
            wrapping, supercells), which only rounding breaks. (default: :obj:`1e-9`)
        fd_step (float): the step of the finite differences. (default: :obj:`1e-5`)
        fd_atol (float): tolerance of forces and stress against the finite differences.
            (default: :obj:`1e-6`)
        fd_components (int or None): force components checked per sample, drawn at random
            (two evaluations each); :obj:`None` checks all. (default: :obj:`12`)
        jump_atol (float): tolerance of the jumps at the cutoff
            (:func:`~e3nn_pyg.testing.potential_errors.cutoff_jump`). (default: :obj:`1e-7`)
        seed (int): seed of the samples and of the checks. (default: :obj:`0`)
    """

    cutoff: float
    species: tuple[int, ...] = (1, 6, 8)
    periodic: bool = False
    dtype: torch.dtype = torch.float64
    atol: float = 1e-9
    fd_step: float = 1e-5
    fd_atol: float = 1e-6
    fd_components: int | None = 12
    jump_atol: float = 1e-7
    seed: int = 0

    def potential(self) -> Potential:
        """The potential under test (built in :attr:`dtype`)."""
        raise NotImplementedError(f"{type(self).__name__} must define potential()")

    def molecules(self) -> Structures:
        """Three molecules of 4, 6 and 5 atoms of :attr:`species`, drawn in cubes of side
        :attr:`cutoff` with no two atoms closer than a quarter of it."""
        generator = torch.Generator().manual_seed(self.seed)
        z, pos, batch = [], [], []
        for graph, size in enumerate((4, 6, 5)):
            points: list[Tensor] = []
            while len(points) < size:
                point = self.cutoff * torch.rand(3, dtype=torch.float64, generator=generator)
                if all((point - p).norm() >= self.cutoff / 4 for p in points):
                    points.append(point)
            pos += points
            batch += [graph] * size
            z += self._draw_species(size, generator)
        return Structures(torch.tensor(z), torch.stack(pos).to(self.dtype), torch.tensor(batch))

    def crystals(self) -> Structures:
        """Two triclinic cells of 4 atoms (perturbed fcc sites): one periodic along all
        axes with sides of 0.8 :attr:`cutoff` (atoms see several images of each other),
        one of sides 1.2 :attr:`cutoff`, periodic along its first two axes only."""
        generator = torch.Generator().manual_seed(self.seed)
        z, pos, cells = [], [], []
        for side in (0.8, 1.2):
            noise = torch.randn(3, 3, dtype=torch.float64, generator=generator)
            cell = side * self.cutoff * (torch.eye(3, dtype=torch.float64) + 0.15 * noise)
            frac = torch.tensor(_FCC_SITES, dtype=torch.float64)  # [4, 3]
            frac = frac + 0.05 * torch.randn(4, 3, dtype=torch.float64, generator=generator)
            pos.append(frac @ cell)
            cells.append(cell)
            z += self._draw_species(4, generator)
        return Structures(
            torch.tensor(z),
            torch.cat(pos).to(self.dtype),
            torch.tensor([0] * 4 + [1] * 4),
            torch.stack(cells).to(self.dtype),
            torch.tensor([[True, True, True], [True, True, False]]),
        )

    def _draw_species(self, count: int, generator: torch.Generator) -> list[int]:
        index = torch.randint(len(self.species), (count,), generator=generator)
        return [self.species[i] for i in index.tolist()]

    def _samples(self) -> Iterator[tuple[str, Structures]]:
        yield "molecules", self.molecules()
        if self.periodic:
            yield "crystals", self.crystals()

    def _require_periodic(self) -> None:
        if not self.periodic:
            raise unittest.SkipTest(f"{type(self).__name__} is not periodic (periodic = False)")

    def test_samples_are_not_trivial(self):
        # every check below passes trivially on a potential whose forces vanish
        potential = self.potential()
        for name, structures in self._samples():
            out = evaluate_potential(potential, *structures)
            assert torch.isfinite(out["energy"]).all() and torch.isfinite(out["forces"]).all()
            assert out["forces"].abs().max() > 1e-6, f"the forces on the {name} all vanish"

    def test_symmetries(self):
        potential = self.potential()
        for name, structures in self._samples():
            errors = potential_errors.symmetry_error(potential, *structures, seed=self.seed)
            assert_below(errors, self.atol, f"symmetries of the {name}")

    def test_forces_are_finite_differences(self):
        potential = self.potential()
        for name, structures in self._samples():
            errors = potential_errors.forces_fd_error(
                potential, *structures, h=self.fd_step, components=self.fd_components
            )
            assert_below(errors, self.fd_atol, f"finite differences on the {name}")

    def test_batch_equals_structures_one_by_one(self):
        potential = self.potential()
        for name, structures in self._samples():
            assert_below(
                potential_errors.batch_error(potential, *structures), self.atol, f"batch of {name}"
            )

    def test_continuous_across_the_cutoff(self):
        potential = self.potential()
        r = self.cutoff
        # every species once at the center and once crossing
        for first, second in zip(self.species, self.species[1:] + self.species[:1]):
            # atom 2 crosses the cutoff sphere of atom 0; atom 1 is within reach of both
            z = torch.tensor([first, self.species[0], second])
            pos = torch.tensor([[0, 0, 0], [0.5, 0.4, 0.1], [0.5, 0, 0]], dtype=self.dtype) * r
            control = evaluate_potential(potential, z, pos)["forces"][2].abs().max()
            assert control > 1e-6, f"atom 2 ({second}) feels no force inside the cutoff"
            errors = potential_errors.cutoff_jump(potential, z, pos, atom=2, center=0, cutoff=r)
            assert_below(errors, self.jump_atol, f"jump at the cutoff of {first}-{second}")

    def test_separated_fragments_add_up(self):
        errors = potential_errors.separation_error(
            self.potential(), *self.molecules()[:3], 2 * self.cutoff
        )
        assert_below(errors, self.atol, "fragments 2 cutoffs apart")

    def test_isolated_atoms(self):
        errors = potential_errors.isolated_atom_error(
            self.potential(), torch.tensor(self.species), 2 * self.cutoff, self.dtype
        )
        assert_below(errors, self.atol, "isolated atoms")

    def test_wrapped_positions(self):
        self._require_periodic()
        errors = periodic_errors.wrapping_error(self.potential(), *self.crystals(), seed=self.seed)
        assert_below(errors, self.atol, "wrapped and unwrapped positions")

    def test_supercell_is_extensive(self):
        self._require_periodic()
        errors = periodic_errors.supercell_error(
            self.potential(), *self.crystals(), repeats=(2, 1, 2)
        )
        assert_below(errors, self.atol, "supercells")

    def test_stress_is_finite_differences(self):
        self._require_periodic()
        errors = periodic_errors.stress_fd_error(self.potential(), *self.crystals(), h=self.fd_step)
        assert_below(errors, self.fd_atol, "stress against finite differences")

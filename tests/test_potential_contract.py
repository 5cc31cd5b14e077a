"""The contract of interatomic potentials (e3nn_pyg.testing): an analytic periodic pair
potential passes every check, deliberately broken potentials fail the check meant to catch
them (and only that one, where the breakage is that specific), and the zoo models
(EquivariantNet with its own forces, PyG's SchNet with forces by autograd) pass it."""

import itertools
import math

import pytest
import torch
from torch_geometric.nn.models import SchNet

from e3nn_pyg.models import EquivariantNet, RadiusInteractionGraph
from e3nn_pyg.testing import (
    PotentialContract,
    Structures,
    assert_below,
    batch_error,
    cutoff_jump,
    evaluate_potential,
    forces_fd_error,
    isolated_atom_error,
    model_potential,
    separation_error,
    stress_fd_error,
    supercell_error,
    symmetry_error,
    wrapping_error,
)

CUTOFF = 2.5
LARGE = 1e-4  # what the breakages below cost, at the least; passing checks stay below 1e-9
F64 = torch.float64


# -- an analytic periodic pair potential -------------------------------------------------------
class PairPotential:
    r"""Morse pairs with a smooth envelope, summed over every periodic image by brute force:

    .. math::
        E = \frac{1}{2} \sum_{i, j, n} \phi_{z_i z_j}(|p_j + n\,\text{cell} - p_i|), \quad
        \phi(r) = D_{ij} \big(e^{-4(r - 1)} - 2 e^{-2(r - 1)}\big)\,
        \big(1 - (r / r_c)^2\big)^3 \ (r < r_c).

    The arguments switch on the bugs the checks must catch: ``envelope`` ``"linear"`` (the
    energy continuous at :math:`r_c`, the forces not) or ``"none"`` (a hard cut), ``wrap=False``
    (images counted for atoms inside the cell, used on atoms outside it), ``images="one"``
    (one image along each periodic axis, too few for cells under half the cutoff) and
    ``detach_cell`` (image shifts that do not follow a strain of the cell).
    """

    def __init__(self, cutoff=CUTOFF, envelope="smooth", wrap=True, images="enough",
                 detach_cell=False):  # fmt: skip
        self.cutoff, self.envelope, self.wrap = cutoff, envelope, wrap
        self.images, self.detach_cell = images, detach_cell

    def pair(self, r, zi, zj):
        x = r / self.cutoff
        depth = 0.1 * (zi * zj).to(r.dtype).sqrt()
        morse = depth * (torch.exp(-4 * (r - 1)) - 2 * torch.exp(-2 * (r - 1)))
        inside = (x < 1).to(r.dtype)
        envelope = {
            "smooth": (1 - x * x).clamp(min=0) ** 3,
            "linear": (1 - x).clamp(min=0),
            "none": inside,
        }[self.envelope]
        return morse * envelope * inside

    def vectors(self, pos, cell, pbc):
        """Every ``p_j + shift - p_i`` ``[n, n, S, 3]`` of one structure."""
        if cell is None:
            shifts = pos.new_zeros(1, 3)
        else:
            lattice = cell.detach() if self.detach_cell else cell
            if self.wrap:  # whole cells removed: floor has no gradient
                frac = torch.linalg.solve(cell.detach().T, pos.detach().T).T  # [n, 3]
                pos = pos - torch.where(pbc, frac.floor(), 0.0) @ lattice
            reach = self.cutoff * torch.linalg.inv(cell.detach()).norm(dim=0)  # [3]
            count = [
                (math.ceil(reach[a]) if self.images == "enough" else 1) if pbc[a] else 0
                for a in range(3)
            ]
            grid = torch.cartesian_prod(*[torch.arange(-c, c + 1) for c in count])  # [S, 3]
            shifts = grid.reshape(-1, 3).to(pos.dtype) @ lattice  # [S, 3]
        return pos[None, :, None] + shifts[None, None] - pos[:, None, None]

    def __call__(self, z, pos, batch, cell=None, pbc=None):
        energies = []
        for graph in range(int(batch[-1]) + 1):
            mask = batch == graph
            one_cell = None if cell is None else cell[graph]
            vec = self.vectors(pos[mask], one_cell, None if pbc is None else pbc[graph])
            square = vec.pow(2).sum(-1)  # [n, n, S]
            keep = square > 0  # not the atom itself
            r = torch.where(keep, square, 1.0).sqrt()
            zm = z[mask]
            phi = self.pair(r, zm[:, None, None], zm[None, :, None])
            energies.append(0.5 * torch.where(keep, phi, 0.0).sum())
        return torch.stack(energies)  # [G]


def closed_form(potential, z, pos, batch, cell, pbc):
    r"""Energy, forces and stress of a :class:`PairPotential` from the pair sums
    :math:`\mathbf{F}_i = \sum \phi'(r)\, \hat r`, :math:`\sigma = \frac{1}{2V} \sum \phi'(r)\,
    r \otimes r / r` (no autograd through the positions)."""
    energies, forces, stresses = [], [], []
    for graph in range(int(batch[-1]) + 1):
        mask = batch == graph
        vec = potential.vectors(pos[mask], cell[graph], pbc[graph]).detach()  # [n, n, S, 3]
        r = vec.norm(dim=-1)
        keep = r > 0
        r = torch.where(keep, r, 1.0).requires_grad_(True)
        zm = z[mask]
        phi = torch.where(keep, potential.pair(r, zm[:, None, None], zm[None, :, None]), 0.0)
        (slope,) = torch.autograd.grad(phi.sum(), r)  # phi'(r), elementwise
        unit = vec / r[..., None]
        energies.append(0.5 * phi.sum().detach())
        forces.append((slope[..., None] * unit).sum((1, 2)))
        virial = 0.5 * torch.einsum("ijs,ijsa,ijsb->ab", slope, unit, vec)
        stresses.append(virial / torch.linalg.det(cell[graph]).abs())
    return torch.stack(energies), torch.cat(forces), torch.stack(stresses)


class TestPairPotential(PotentialContract):
    cutoff = CUTOFF
    periodic = True
    fd_components = None  # cheap: all of them

    def potential(self):
        return PairPotential()


def crystals() -> Structures:
    return TestPairPotential().crystals()


def molecules() -> Structures:
    return TestPairPotential().molecules()


def test_autograd_forces_and_stress_match_the_closed_form():
    s = crystals()
    energy, forces, stress = closed_form(PairPotential(), *s)
    out = evaluate_potential(PairPotential(), *s, stress=True)
    assert forces.abs().max() > 0.1 and stress.abs().max() > 0.01
    torch.testing.assert_close(out["energy"], energy, atol=1e-12, rtol=0)
    torch.testing.assert_close(out["forces"], forces, atol=1e-12, rtol=0)
    torch.testing.assert_close(out["stress"], stress, atol=1e-12, rtol=0)
    assert torch.allclose(stress, stress.transpose(1, 2), atol=1e-12)


def test_returned_forces_and_stress_are_used_as_they_are():
    s = crystals()
    energy, forces, stress = closed_form(PairPotential(), *s)

    def returns(*values):
        return lambda z, pos, batch, cell=None, pbc=None: values

    out = evaluate_potential(returns(energy[:, None], forces, stress), *s, stress=True)
    assert out["forces"] is not forces and torch.equal(out["forces"], forces)
    assert torch.equal(out["energy"], energy) and torch.equal(out["stress"], stress)
    # also returned stress is reported when not asked for
    assert "stress" in evaluate_potential(returns(energy, forces, stress), *s)
    assert "stress" not in evaluate_potential(PairPotential(), *s)


# -- every check catches what it is meant to catch ---------------------------------------------
def plus(first, term):
    """``first`` plus an energy ``term(z, pos)`` of each structure alone."""

    def potential(z, pos, batch, cell=None, pbc=None):
        extra = [term(z[batch == g], pos[batch == g]) for g in range(int(batch[-1]) + 1)]
        return first(z, pos, batch, cell, pbc) + torch.stack(extra)

    return potential


def relative(pos):
    return pos[None, :] - pos[:, None]  # [n, n, 3] p_j - p_i


LEVI_CIVITA = torch.zeros(3, 3, 3, dtype=F64)
for order in itertools.permutations(range(3)):
    LEVI_CIVITA[order] = torch.linalg.det(torch.eye(3, dtype=F64)[list(order)])


def along_x(z, pos):  # invariant except under rotations
    r = relative(pos)
    return 0.1 * (r[..., 0].pow(2) * torch.exp(-r.pow(2).sum(-1))).sum()


def chirality(z, pos):  # a pseudoscalar: invariant except under the inversion
    r = relative(pos)  # [n, n, 3]
    length = r.norm(dim=-1)  # [n, n]
    triple = torch.einsum("ija,ikb,ilc,abc->ijkl", r, r, r, LEVI_CIVITA)  # [n, n, n, n]
    weight = length[:, :, None, None] * length[:, None, :, None] ** 2 * length[:, None, None] ** 3
    return 0.01 * (triple * weight).sum()


def trap(z, pos):  # a harmonic trap at the origin: breaks translations only
    return 0.1 * pos.pow(2).sum()


def by_index(z, pos):  # atoms weighted by their order: breaks permutations only
    distance = relative(pos).norm(dim=-1)  # [n, n]
    index = torch.arange(len(z), dtype=pos.dtype)
    return 0.1 * (index[:, None] * torch.exp(-distance)).sum()


@pytest.mark.parametrize(
    ("term", "broken"),
    [(along_x, "rotation"), (chirality, "inversion"), (trap, "translation"),
     (by_index, "permutation")],
)  # fmt: skip
def test_symmetry_error_names_the_broken_symmetry(term, broken):
    errors = symmetry_error(plus(PairPotential(), term), *molecules())
    assert errors[f"energy/{broken}"] > LARGE and errors[f"forces/{broken}"] > LARGE
    assert max(e for name, e in errors.items() if not name.endswith(broken)) < 1e-12
    with pytest.raises(AssertionError, match=rf"energy/{broken} error \d\.\d+e[-+]\d+"):
        assert_below(errors, 1e-9, "symmetries")


def test_symmetry_error_rotates_the_cell():
    def orthorhombic(z, pos, batch, cell, pbc):  # reads the diagonal of the cell only
        return PairPotential()(z, pos, batch, torch.diag_embed(cell.diagonal(0, 1, 2)), pbc)

    assert max(symmetry_error(PairPotential(), *crystals()).values()) < 1e-12
    errors = symmetry_error(orthorhombic, *crystals())
    assert errors["energy/rotation"] > LARGE
    assert errors["energy/translation"] < 1e-12 and errors["energy/permutation"] < 1e-12


def offset_forces(z, pos, batch, cell=None, pbc=None):  # forces that are not -dE/dp
    out = evaluate_potential(PairPotential(), z, pos, batch, cell, pbc)
    return out["energy"], out["forces"] + 1e-3


def test_forces_fd_error_catches_wrong_forces():
    s = molecules()
    assert forces_fd_error(PairPotential(), *s)["forces"] < 1e-8
    assert forces_fd_error(offset_forces, *s)["forces"] == pytest.approx(1e-3, rel=1e-3)
    # periodic forces include every image
    assert forces_fd_error(PairPotential(), *crystals())["forces"] < 1e-8


def test_forces_fd_error_components_are_a_seeded_subset():
    calls = []

    def counting(z, pos, batch):
        calls.append(1)
        return PairPotential()(z, pos, batch)

    s = molecules()
    first = forces_fd_error(counting, *s[:3], components=4, seed=1)
    assert len(calls) == 1 + 2 * 4
    assert first == forces_fd_error(PairPotential(), *s[:3], components=4, seed=1)
    assert first != forces_fd_error(PairPotential(), *s[:3], components=4, seed=2)


def crosstalk(z, pos, batch, cell=None, pbc=None):  # sees the centre of the whole batch
    energy = PairPotential()(z, pos, batch, cell, pbc)
    spread = (pos - pos.mean(0)).pow(2).sum(1)  # [N]
    return energy + 0.01 * torch.zeros_like(energy).index_add(0, batch, spread)


def test_batch_error_catches_structures_that_interact():
    s = molecules()
    assert max(batch_error(PairPotential(), *s).values()) < 1e-12
    errors = batch_error(crosstalk, *s)
    assert errors["energy"] > LARGE and errors["forces"] > LARGE
    assert max(batch_error(PairPotential(), *crystals()).values()) < 1e-12


def test_cutoff_jump_catches_discontinuous_energies_and_forces():
    z = torch.tensor([6, 1, 8])
    pos = torch.tensor([[0, 0, 0], [0.5, 0.4, 0.1], [0.6, 0, 0]], dtype=F64) * CUTOFF
    smooth = cutoff_jump(PairPotential(), z, pos, atom=2, center=0, cutoff=CUTOFF)
    assert max(smooth.values()) < 1e-9
    # the jumps are those of the pair term at the cutoff, whatever the slopes around it
    kink = cutoff_jump(PairPotential(envelope="linear"), z, pos, 2, 0, CUTOFF)
    depth, r = 0.1 * math.sqrt(6 * 8), CUTOFF
    morse = depth * (math.exp(-4 * (r - 1)) - 2 * math.exp(-2 * (r - 1)))
    assert kink["energy"] < 1e-9
    assert kink["forces"] == pytest.approx(abs(morse) / CUTOFF, rel=1e-4)
    hard = cutoff_jump(PairPotential(envelope="none"), z, pos, 2, 0, CUTOFF)
    assert hard["energy"] == pytest.approx(abs(morse), rel=1e-4)
    assert hard["forces"] > LARGE
    # the center may be any atom: here atom 1 crosses the sphere of atom 2
    assert max(cutoff_jump(PairPotential(), z, pos, 1, 2, CUTOFF).values()) < 1e-9


def per_atom(z, pos, batch, cell=None, pbc=None):  # intensive: the energy per atom
    return PairPotential()(z, pos, batch, cell, pbc) / torch.bincount(batch)


def coulomb(z, pos):  # no cutoff: far fragments still interact
    i, j = torch.triu_indices(len(z), len(z), 1)
    charge = z.to(pos.dtype) - 4
    return 0.1 * (charge[i] * charge[j] / (pos[j] - pos[i]).norm(dim=-1)).sum()


def test_separation_error_catches_long_range_terms():
    s = molecules()
    assert max(separation_error(PairPotential(), *s[:3], 2 * CUTOFF).values()) < 1e-12
    errors = separation_error(plus(PairPotential(), coulomb), *s[:3], 2 * CUTOFF)
    assert errors["energy"] > LARGE and errors["forces"] > LARGE
    # a mean over the atoms (an intensive "energy") is not additive
    assert separation_error(per_atom, *s[:3], 2 * CUTOFF)["energy"] > LARGE


def test_isolated_atom_error_catches_forces_on_lone_atoms_and_non_additive_energies():
    z = torch.tensor([1, 6, 8])
    assert max(isolated_atom_error(PairPotential(), z, 2 * CUTOFF).values()) == 0
    assert isolated_atom_error(plus(PairPotential(), trap), z, 2 * CUTOFF)["forces"] > LARGE
    squared = plus(PairPotential(), lambda z, pos: 0.1 * len(z) ** 2 + 0 * pos.sum())
    errors = isolated_atom_error(squared, z, 2 * CUTOFF)
    assert errors["energy"] == pytest.approx(0.1 * (9 - 3)) and errors["forces"] == 0


def test_wrapping_error_catches_images_counted_for_wrapped_atoms():
    s = crystals()
    assert max(wrapping_error(PairPotential(), *s).values()) < 1e-12
    errors = wrapping_error(PairPotential(wrap=False), *s)
    assert errors["energy/unwrapped"] > LARGE and errors["forces/unwrapped"] > LARGE


def test_supercell_error_catches_missing_images_and_intensive_energies():
    s = crystals()
    for repeats in [(2, 2, 2), (1, 3, 1)]:
        assert max(supercell_error(PairPotential(), *s, repeats=repeats).values()) < 1e-12
    # cells of sides 0.4 and 0.6 r_c: one image along each axis is not enough, two are
    small = s._replace(pos=0.5 * s.pos, cell=0.5 * s.cell)
    assert max(supercell_error(PairPotential(), *small).values()) < 1e-12
    errors = supercell_error(PairPotential(images="one"), *small)
    assert errors["energy"] > LARGE and errors["forces"] > LARGE
    assert supercell_error(per_atom, *s)["energy"] > LARGE


def test_stress_fd_error_catches_a_cell_outside_the_graph_and_a_wrong_stress():
    s = crystals()
    assert stress_fd_error(PairPotential(), *s)["stress"] < 1e-8
    assert stress_fd_error(PairPotential(detach_cell=True), *s)["stress"] > LARGE

    def half_stress(z, pos, batch, cell, pbc):
        energy, forces, stress = closed_form(PairPotential(), z, pos, batch, cell, pbc)
        return energy, forces, 0.5 * stress

    assert stress_fd_error(half_stress, *s)["stress"] > LARGE

    def correct(z, pos, batch, cell, pbc):
        return closed_form(PairPotential(), z, pos, batch, cell, pbc)

    assert stress_fd_error(correct, *s)["stress"] < 1e-8


class Broken(PotentialContract):
    """The contract around a given potential (not collected: its name has no Test)."""

    cutoff = CUTOFF
    periodic = True

    def __init__(self, potential):
        self.broken = potential

    def potential(self):
        return self.broken


def silent(z, pos, batch, cell=None, pbc=None):  # no interaction at all
    return 0 * PairPotential()(z, pos, batch, cell, pbc)


@pytest.mark.parametrize(
    ("potential", "check", "match"),
    [
        (silent, "test_samples_are_not_trivial", "forces on the molecules all vanish"),
        (plus(PairPotential(), along_x), "test_symmetries", "molecules: energy/rotation"),
        (plus(PairPotential(), chirality), "test_symmetries", "energy/inversion"),
        (offset_forces, "test_forces_are_finite_differences", "molecules: forces error"),
        (crosstalk, "test_batch_equals_structures_one_by_one", "batch of molecules"),
        (PairPotential(envelope="none"), "test_continuous_across_the_cutoff", "energy error"),
        (
            PairPotential(envelope="linear"),
            "test_continuous_across_the_cutoff",
            "cutoff of 1-6: forces error",
        ),
        (silent, "test_continuous_across_the_cutoff", "feels no force inside the cutoff"),
        (plus(PairPotential(), coulomb), "test_separated_fragments_add_up", "fragments"),
        (plus(PairPotential(), trap), "test_isolated_atoms", "isolated atoms: forces"),
        (PairPotential(wrap=False), "test_wrapped_positions", "energy/unwrapped"),
        (per_atom, "test_supercell_is_extensive", "supercells: energy"),
        (PairPotential(detach_cell=True), "test_stress_is_finite_differences", "stress error"),
    ],
)
def test_the_contract_fails_broken_potentials(potential, check, match):
    with pytest.raises(AssertionError, match=match):
        getattr(Broken(potential), check)()


# -- interfaces and bad input ------------------------------------------------------------------
def test_energy_may_be_a_column_and_batch_defaults_to_one_structure():
    s = molecules()
    one = Structures(s.z[:4], s.pos[:4], s.batch[:4])
    column = lambda z, pos, batch: PairPotential()(z, pos, batch)[:, None]  # noqa: E731
    out = evaluate_potential(column, one.z, one.pos)
    assert out["energy"].shape == (1,) and out["forces"].shape == (4, 3)
    assert not out["energy"].requires_grad and not out["forces"].requires_grad
    assert not one.pos.requires_grad  # the caller's tensor is left alone


def test_constant_potentials_have_zero_forces():
    out = evaluate_potential(lambda z, pos, batch: torch.ones(1, dtype=F64), *molecules()[:2])
    assert torch.equal(out["forces"], torch.zeros(15, 3, dtype=F64))


@pytest.mark.parametrize(
    ("output", "error", "match"),
    [
        (lambda n: torch.zeros(2), ValueError, r"energy has shape \[2\], expected \[3\]"),
        (lambda n: (torch.zeros(3), torch.zeros(n, 2)), ValueError, "forces has shape"),
        (
            lambda n: (torch.zeros(3), torch.zeros(n, 3), torch.zeros(3, 3)),
            ValueError,
            "stress has shape",
        ),
        (lambda n: [torch.zeros(3)] * 4, TypeError, "returns energy, "),
        (lambda n: 1.0, TypeError, "returns energy, "),
    ],
)
def test_malformed_outputs_are_refused(output, error, match):
    s = molecules()
    with pytest.raises(error, match=match):
        evaluate_potential(lambda z, pos, batch: output(len(z)), *s[:3])


def test_stress_needs_a_stress_from_a_potential_that_returns_forces():
    def with_forces(z, pos, batch, cell, pbc):
        return evaluate_potential(PairPotential(), z, pos, batch, cell, pbc)["energy"], pos

    with pytest.raises(ValueError, match=r"returns \(energy, forces\) but no stress"):
        evaluate_potential(with_forces, *crystals(), stress=True)
    with pytest.raises(ValueError, match="needs periodic structures"):
        evaluate_potential(PairPotential(), *molecules()[:3], stress=True)
    flat = crystals()._replace(cell=crystals().cell * torch.tensor([1.0, 1.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="nonzero volume"):
        evaluate_potential(PairPotential(), *flat, stress=True)


def test_bad_structures_are_refused():
    z, pos, batch, cell, pbc = crystals()
    cases = [
        ((z.double(), pos, batch), TypeError, "z must be a 1-D torch.long"),
        ((z, pos[:, :2], batch), ValueError, r"pos must have shape \[N, 3\]"),
        ((z[:-1], pos, batch), ValueError, "z has 7 atoms but pos has 8 rows"),
        ((z[:0], pos[:0], batch[:0]), ValueError, "no atoms"),
        ((z, pos, batch.flip(0)), ValueError, "sorted"),
        ((z, pos, batch * 2), ValueError, "batch skips structure 1"),
        ((z, pos, batch, cell, None), ValueError, "cell and pbc together"),
        ((z, pos, batch, cell[:1], pbc), ValueError, r"cell must be a tensor \[num_graphs"),
        ((z, pos, batch, cell.float(), pbc), ValueError, "dtype of pos"),
        ((z, pos, batch, cell * math.nan, pbc), ValueError, "NaN"),
        ((z, pos, batch, cell, pbc.long()), ValueError, "pbc must be a bool tensor"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            evaluate_potential(PairPotential(), *args)


def test_bad_check_arguments_are_refused():
    s, c, pair = molecules(), crystals(), PairPotential()
    cases = [
        (lambda: forces_fd_error(pair, s.z, s.pos.float(), s.batch), "need float64"),
        (lambda: forces_fd_error(pair, *s, h=0.0), "h must be a finite number > 0"),
        (lambda: forces_fd_error(pair, *s, components=0), "components must be"),
        (
            lambda: stress_fd_error(pair, c.z, c.pos.float(), c.batch, c.cell.float(), c.pbc),
            "need float64",
        ),
        (lambda: cutoff_jump(pair, *s[:2], 0, 0, CUTOFF, s.batch), "two atoms of one"),
        (lambda: cutoff_jump(pair, *s[:2], 0, 5, CUTOFF, s.batch), "two atoms of one"),
        (lambda: cutoff_jump(pair, *s[:2], 0, 15, CUTOFF, s.batch), r"atom index in \[0, 15\)"),
        (lambda: cutoff_jump(pair, *s[:2], 0, 1, CUTOFF, s.batch, delta=CUTOFF), "smaller"),
        (lambda: cutoff_jump(pair, *s[:2], 0, 1, -1.0, s.batch), "cutoff must be"),
        (lambda: separation_error(pair, *s[:2], s.batch * 0, 5.0), "at least two"),
        (lambda: separation_error(pair, *s[:3], math.inf), "distance must be"),
        (lambda: wrapping_error(pair, *s), "needs periodic structures"),
        (lambda: supercell_error(pair, *c, repeats=(2, 0, 1)), "three ints >= 1"),
        (lambda: supercell_error(pair, *c[:3], c.cell, c.pbc & False), "no periodic axis"),
        (lambda: assert_below({}, -1.0), "atol must be"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
    moved = s.pos.clone()
    moved[1] = moved[0]
    with pytest.raises(ValueError, match="sits on center"):
        cutoff_jump(pair, s.z, moved, 1, 0, CUTOFF, s.batch)


def test_assert_below_lists_every_error_above_the_tolerance():
    errors = {"a": 1e-12, "b": 2e-3, "c": math.nan}
    with pytest.raises(AssertionError, match=r"^x: b error 2\.000e-03, c error nan > 1\.0e-09$"):
        assert_below(errors, 1e-9, "x")
    assert assert_below({"a": 1e-12}, 1e-9) == {"a": 1e-12}


# -- the zoo models ----------------------------------------------------------------------------
class PeriodicModel(torch.nn.Module):
    """A module with the periodic signature, around the pair potential."""

    def forward(self, z, pos, batch=None, cell=None, pbc=None, stress=False):
        if not stress:
            return PairPotential()(z, pos, batch, cell, pbc)
        return closed_form(PairPotential(), z, pos, batch, cell, pbc)


def test_model_potential_passes_cells_and_asks_for_stress():
    c = crystals()
    plain, with_stress = model_potential(PeriodicModel()), model_potential(PeriodicModel(), True)
    assert max(wrapping_error(plain, *c).values()) < 1e-12
    assert stress_fd_error(with_stress, *c)["stress"] < 1e-8
    torch.testing.assert_close(
        evaluate_potential(with_stress, *c)["stress"], closed_form(PairPotential(), *c)[2]
    )


def make_schnet():
    torch.manual_seed(0)
    graph = RadiusInteractionGraph(3.0)
    return SchNet(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10,
                  cutoff=3.0, interaction_graph=graph).double()  # fmt: skip


def test_model_potential_refuses_what_the_model_cannot_do():
    schnet = model_potential(make_schnet())
    with pytest.raises(ValueError, match=r"SchNet\.forward takes no cell and pbc"):
        evaluate_potential(schnet, *crystals())
    with pytest.raises(TypeError, match=r"SchNet\.forward takes no cell, pbc and stress"):
        model_potential(make_schnet(), stress=True)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        model_potential(PairPotential())


class TestEquivariantNet(PotentialContract):
    cutoff = 3.0
    periodic = True

    def potential(self):
        torch.manual_seed(0)
        model = EquivariantNet("8x0e + 4x1o", num_layers=2, cutoff=3.0, radial_hidden=16,
                               derivative=True)  # fmt: skip
        return model_potential(model.double(), stress=True)


class TestSchNet(PotentialContract):
    cutoff = 3.0

    def potential(self):
        return model_potential(make_schnet())

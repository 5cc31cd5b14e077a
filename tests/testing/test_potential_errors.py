"""The errors of a potential (e3nn_pyg.testing.potential_errors): the analytic pair potential
passes every check, potentials broken on purpose fail the check meant to catch them (and only
that one, where the breakage is that specific), and bad arguments are refused."""

import math

import pytest
import torch
from pair_potential import (
    CUTOFF,
    F64,
    LARGE,
    PairPotential,
    along_x,
    by_index,
    chirality,
    coulomb,
    crosstalk,
    crystals,
    molecules,
    offset_forces,
    per_atom,
    plus,
    trap,
)

from e3nn_pyg.testing import (
    assert_below,
    batch_error,
    cutoff_jump,
    forces_fd_error,
    isolated_atom_error,
    separation_error,
    symmetry_error,
)


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


_S, _PAIR = molecules(), PairPotential()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: forces_fd_error(_PAIR, _S.z, _S.pos.float(), _S.batch),
            ValueError,
            "need float64",
        ),
        (lambda: forces_fd_error(_PAIR, *_S, h=0.0), ValueError, "h must be positive"),
        (lambda: forces_fd_error(_PAIR, *_S, h=math.nan), ValueError, "h must be positive"),
        (lambda: forces_fd_error(_PAIR, *_S, h="1e-5"), TypeError, "h must be a real number"),
        (lambda: forces_fd_error(_PAIR, *_S, components=0), ValueError, "components must be"),
        (lambda: forces_fd_error(_PAIR, *_S, components=True), TypeError, "components must be"),
        (
            lambda: cutoff_jump(_PAIR, *_S[:2], 0, 0, CUTOFF, _S.batch),
            ValueError,
            "two atoms of one",
        ),
        (
            lambda: cutoff_jump(_PAIR, *_S[:2], 0, 5, CUTOFF, _S.batch),
            ValueError,
            "two atoms of one",
        ),
        (
            lambda: cutoff_jump(_PAIR, *_S[:2], 0, 15, CUTOFF, _S.batch),
            ValueError,
            r"center must be an atom index in \[0, 15\)",
        ),
        (
            lambda: cutoff_jump(_PAIR, *_S[:2], 1.0, 0, CUTOFF, _S.batch),
            ValueError,
            "atom must be an atom index",
        ),
        (
            lambda: cutoff_jump(_PAIR, *_S[:2], 0, 1, CUTOFF, _S.batch, delta=CUTOFF),
            ValueError,
            "smaller",
        ),
        (
            lambda: cutoff_jump(_PAIR, *_S[:2], 0, 1, -1.0, _S.batch),
            ValueError,
            "cutoff must be positive",
        ),
        (
            lambda: separation_error(_PAIR, *_S[:2], _S.batch * 0, 5.0),
            ValueError,
            "at least two",
        ),
        (lambda: separation_error(_PAIR, *_S[:3], math.inf), ValueError, "distance must be"),
        (lambda: isolated_atom_error(_PAIR, _S.z, "far"), TypeError, "distance must be"),
        (lambda: assert_below({}, -1.0), ValueError, "atol must be"),
        (lambda: assert_below({}, None), ValueError, "atol must be"),
    ],
)
def test_bad_check_arguments_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_cutoff_jump_refuses_an_atom_on_its_center():
    moved = _S.pos.clone()
    moved[1] = moved[0]
    with pytest.raises(ValueError, match="sits on center"):
        cutoff_jump(_PAIR, _S.z, moved, 1, 0, CUTOFF, _S.batch)


def test_assert_below_lists_every_error_above_the_tolerance():
    errors = {"a": 1e-12, "b": 2e-3, "c": math.nan}
    with pytest.raises(AssertionError, match=r"^x: b error 2\.000e-03, c error nan > 1\.0e-09$"):
        assert_below(errors, 1e-9, "x")
    assert assert_below({"a": 1e-12}, 1e-9) == {"a": 1e-12}

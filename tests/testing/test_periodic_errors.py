"""The errors of a potential on periodic cells (e3nn_pyg.testing.periodic_errors): the analytic
pair potential passes, potentials broken on purpose fail, bad arguments are refused."""

import pytest
from pair_potential import LARGE, PairPotential, closed_form, crystals, molecules, per_atom

from e3nn_pyg.testing import stress_fd_error, supercell_error, wrapping_error


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


_S, _C, _PAIR = molecules(), crystals(), PairPotential()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: stress_fd_error(_PAIR, _C.z, _C.pos.float(), _C.batch, _C.cell.float(), _C.pbc),
            "need float64",
        ),
        (lambda: stress_fd_error(_PAIR, *_C, h=-1e-5), "h must be positive and finite"),
        (lambda: stress_fd_error(_PAIR, *_S), "needs periodic structures"),
        (lambda: wrapping_error(_PAIR, *_S), "needs periodic structures"),
        (lambda: supercell_error(_PAIR, *_C, repeats=(2, 0, 1)), "three ints >= 1"),
        (lambda: supercell_error(_PAIR, *_C, repeats=(2, 2)), "three ints >= 1"),
        (lambda: supercell_error(_PAIR, *_C, repeats=(2.0, 1, 1)), "three ints >= 1"),
        (lambda: supercell_error(_PAIR, *_C[:3], _C.cell, _C.pbc & False), "no periodic axis"),
    ],
)
def test_bad_check_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()

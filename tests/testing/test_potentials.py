"""Potentials as the checks see them (e3nn_pyg.testing.potentials): energy, forces and stress
by autograd against the closed form of the pair potential, what a potential may return, the
structures refused, and models as potentials."""

import math

import pytest
import torch
from pair_potential import F64, PairPotential, closed_form, crystals, molecules

from e3nn_pyg.testing import (
    Structures,
    evaluate_potential,
    model_potential,
    stress_fd_error,
    wrapping_error,
)


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


_Z, _POS, _BATCH, _CELL, _PBC = crystals()


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((_Z.double(), _POS, _BATCH), TypeError, "z must be a 1-D torch.long"),
        ((_Z, _POS[:, :2], _BATCH), ValueError, r"pos must have shape \[N, 3\]"),
        ((_Z[:-1], _POS, _BATCH), ValueError, "z has 7 atoms but pos has 8 rows"),
        ((_Z[:0], _POS[:0], _BATCH[:0]), ValueError, "no atoms"),
        ((_Z, _POS, _BATCH.flip(0)), ValueError, "sorted"),
        ((_Z, _POS, _BATCH * 2), ValueError, "batch skips structure 1"),
        ((_Z, _POS, _BATCH, _CELL, None), ValueError, "cell and pbc together"),
        ((_Z, _POS, _BATCH, _CELL[:1], _PBC), ValueError, r"cell must be a tensor \[num_graphs"),
        ((_Z, _POS, _BATCH, _CELL.float(), _PBC), ValueError, "dtype of pos"),
        ((_Z, _POS, _BATCH, _CELL * math.nan, _PBC), ValueError, "NaN"),
        ((_Z, _POS, _BATCH, _CELL, _PBC.long()), ValueError, "pbc must be a bool tensor"),
        ((_Z, _POS, _BATCH, _CELL.tolist(), _PBC), ValueError, "cell must be a tensor"),
        ((_Z, _POS, _BATCH, _CELL, [[True] * 3] * 2), ValueError, "pbc must be a bool tensor"),
    ],
)
def test_bad_structures_are_refused(args, error, match):
    with pytest.raises(error, match=match):
        evaluate_potential(PairPotential(), *args)


# -- models as potentials ----------------------------------------------------------------------
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


class MoleculeModel(torch.nn.Module):
    """A module that takes molecules only, around the pair potential."""

    def forward(self, z, pos, batch=None):
        return PairPotential()(z, pos, batch)


def test_model_potential_refuses_what_the_model_cannot_do():
    potential = model_potential(MoleculeModel())
    assert evaluate_potential(potential, *molecules()[:3])["energy"].shape == (3,)
    with pytest.raises(ValueError, match=r"MoleculeModel\.forward takes no cell and pbc"):
        evaluate_potential(potential, *crystals())
    with pytest.raises(TypeError, match=r"MoleculeModel\.forward takes no cell, pbc and stress"):
        model_potential(MoleculeModel(), stress=True)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        model_potential(PairPotential())

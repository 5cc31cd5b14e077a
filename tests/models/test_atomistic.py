"""What every model kind of the zoo passes (the registry's ``MODELS``: EquivariantNet and
ManyBodyNet): the symmetries of the energy and the forces (molecules and crystals),
permutations and batches, forces against finite differences, state_dict round trips and
refusals, settings every kind refuses. The tests of one kind are in
test_equivariant_net.py and test_many_body.py; the potential contract in
tests/testing/test_contract.py."""

import io

import pytest
import torch
from zoo import ELEMENTS, SMALL, crystals, make_model, molecule, molecules, run

from e3nn_pyg.o3 import rand_rotation
from e3nn_pyg.testing import assert_equivariant
from e3nn_pyg.training.registry import MODELS

pytestmark = pytest.mark.usefixtures("float64")

#: The settings each kind's equivariance is checked with (what varies its layers)
VARIANTS = {
    "equivariant-net": [dict(kernel_mode=mode) for mode in ("channelwise", "full")],
    "many-body": [dict(correlation=correlation, hidden_lmax=hidden_lmax)
                  for hidden_lmax in (0, 1, 2) for correlation in (1, 2, 3)]
                 + [dict(species_skip=True, basis_mixing=True)],
}  # fmt: skip
EQUIVARIANCE_CASES = [
    pytest.param(kind, settings, id="-".join([kind, *(f"{k}={v}" for k, v in settings.items())]))
    for kind, variants in VARIANTS.items()
    for settings in variants
]


def test_every_model_kind_of_the_registry_is_tested():
    assert set(SMALL) == set(VARIANTS) == set(MODELS)


@pytest.mark.parametrize("kind, settings", EQUIVARIANCE_CASES)
def test_energy_invariant_and_forces_equivariant(kind, settings):
    model = make_model(kind, derivative=True, **settings)
    batch = molecules(kind)
    energy, forces = model(batch.z, batch.pos, batch.batch)
    assert energy.shape == (3, 1) and forces.shape == (16, 3)
    assert energy.abs().min() > 1e-3 and forces.abs().max() > 1e-3  # not trivially zero
    errors = assert_equivariant(
        model, [batch.z, batch.pos, batch.batch], [None, "pos", None], ["0e", "1o"]
    )
    assert set(errors) == {"rotation", "parity", "translation"}


@pytest.mark.parametrize("kind", MODELS)
def test_permutation_invariance(kind):
    model = make_model(kind, derivative=True)
    data = molecule(9, 3, ELEMENTS[kind])
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    energy, forces = model(data.z, data.pos)
    energy_p, forces_p = model(data.z[perm], data.pos[perm])
    torch.testing.assert_close(energy_p, energy, atol=1e-12, rtol=0)
    torch.testing.assert_close(forces_p, forces[perm], atol=1e-12, rtol=0)


@pytest.mark.parametrize("readout", ["add", "mean"])
@pytest.mark.parametrize("kind", MODELS)
def test_batch_equals_molecules_one_by_one(kind, readout):
    model = make_model(kind, readout=readout, derivative=True)
    batch = molecules(kind)
    energy, forces = model(batch.z, batch.pos, batch.batch)
    for i, data in enumerate(batch.to_data_list()):
        energy_i, forces_i = model(data.z, data.pos)
        torch.testing.assert_close(energy[i : i + 1], energy_i, atol=1e-12, rtol=0)
        torch.testing.assert_close(forces[batch.batch == i], forces_i, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", MODELS)
def test_forces_equal_finite_differences(kind):
    model = make_model(kind, derivative=True)
    data = molecule(6, 5, ELEMENTS[kind])
    _, forces = model(data.z, data.pos)
    h = 1e-5
    with torch.no_grad():
        for i, k in [(0, 0), (1, 2), (3, 1), (5, 0), (5, 2)]:
            step = torch.zeros_like(data.pos)
            step[i, k] = h
            plus = model(data.z, data.pos + step)[0]
            minus = model(data.z, data.pos - step)[0]
            numeric = -(plus - minus).item() / (2 * h)
            assert forces[i, k].item() == pytest.approx(numeric, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("kind", MODELS)
def test_state_dict_round_trip_is_exact(kind):
    """Into a model of other weights, and into one rebuilt from the config: the same
    energies and forces, bit for bit (offsets, atom references and species included)."""
    atomref = torch.randn(100, 1, generator=torch.Generator().manual_seed(2))
    settings = dict(derivative=True, species=list(ELEMENTS[kind]), mean=0.5, std=2.0,
                    atomref=atomref)  # fmt: skip
    model, other = make_model(kind, seed=0, **settings), make_model(kind, seed=1, **settings)
    batch = molecules(kind)
    inputs = (batch.z, batch.pos, batch.batch)
    assert not torch.equal(other(*inputs)[0], model(*inputs)[0])
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    rebuilt = type(model)(**model.config())
    rebuilt.load_state_dict(model.state_dict())
    for copy in (other, rebuilt):
        for a, b in zip(copy(*inputs), model(*inputs), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize(
    "other", [dict(cutoff=5.0), dict(avg_num_neighbors=3.0), dict(readout="mean")]
)
@pytest.mark.parametrize("kind", MODELS)
def test_a_state_dict_of_another_architecture_is_refused(kind, other):
    """Same tensor shapes, other settings: loading would make a silent hybrid."""
    state = make_model(kind).state_dict()
    key, value = next(iter(other.items()))
    with pytest.raises(ValueError, match=f"{key}=.*this model: {value!r}"):
        make_model(kind, **other).load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cutoff=-1.0), "cutoff must be a positive number"),
        (dict(readout="max"), "readout must be one of"),
        (dict(derivative=True, out_channels=2), "derivative=True needs out_channels=1"),
        (dict(species=[0]), r"species must lie in \[1, 100\)"),
    ],
)
@pytest.mark.parametrize("kind", MODELS)
def test_bad_hyper_parameters_raise(kind, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(kind, **kwargs)


@pytest.mark.parametrize("kind", MODELS)
def test_periodic_energy_invariant_forces_and_stress_equivariant(kind):
    """Rotation and inversion of positions and cells, translation, wrapping atoms into
    other cells, permuting atoms: E invariant, F -> R F, stress -> R stress R^T."""
    model = make_model(kind, derivative=True)
    data = crystals()
    energy, forces, stress = run(model, data)
    assert energy.shape == (3, 1) and forces.shape == (8, 3) and stress.shape == (3, 3, 3)
    assert forces.abs().max() > 1e-3 and stress.abs().max() > 1e-4  # not trivially zero
    torch.testing.assert_close(stress, stress.mT, atol=1e-12, rtol=0)

    generator = torch.Generator().manual_seed(4)
    for matrix in (rand_rotation(dtype=torch.float64, generator=generator), -torch.eye(3)):
        out = run(model, data, pos=data.pos @ matrix.T, cell=data.cell @ matrix.T)
        expected = (energy, forces @ matrix.T, matrix @ stress @ matrix.T)
        for a, b in zip(out, expected):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    moves = torch.randint(-3, 4, data.pos.shape, generator=generator).double()
    moved = data.pos + (moves[:, None, :] @ data.cell[data.batch]).squeeze(1) + 0.7
    for a, b in zip(run(model, data, pos=moved), (energy, forces, stress)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    perm = torch.tensor([2, 0, 1, 3, 7, 5, 4, 6])  # within each structure
    out = model(data.z[perm], data.pos[perm], data.batch, data.cell, data.pbc, stress=True)
    for a, b in zip(out, (energy, forces[perm], stress)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)

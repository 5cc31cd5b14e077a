"""ManyBodyNet: the symmetries of the energy and the forces (molecules and crystals),
permutations and batches, forces against finite differences, the element-dependent weights,
state_dict round trips, settings (the potential contract: tests/testing/test_contract.py;
compile and export: tests/test_compilation.py)."""

import io

import pytest
import torch
from torch_geometric.data import Batch, Data

from e3nn_pyg.models import ManyBodyNet, natural_irreps
from e3nn_pyg.o3 import Rs
from e3nn_pyg.testing import assert_equivariant

SMALL = dict(num_channels=4, lmax=2, num_layers=2, cutoff=3.0, radial_hidden=8, readout_hidden=4)

pytestmark = pytest.mark.usefixtures("float64")


def molecule(num_atoms: int, seed: int) -> Data:
    generator = torch.Generator().manual_seed(seed)
    z = torch.tensor([1, 6, 8])[torch.randint(0, 3, (num_atoms,), generator=generator)]
    pos = 1.5 * torch.randn(num_atoms, 3, generator=generator)
    return Data(z=z, pos=pos)


def make_model(seed: int = 0, **kwargs) -> ManyBodyNet:
    torch.manual_seed(seed)
    return ManyBodyNet(**{**SMALL, **kwargs})


@pytest.fixture
def batch() -> Batch:
    return Batch.from_data_list([molecule(n, seed) for seed, n in enumerate((5, 7, 4))])


@pytest.mark.parametrize("correlation", [1, 2, 3])
@pytest.mark.parametrize("hidden_lmax", [0, 1, 2])
def test_energy_invariant_and_forces_equivariant(batch, correlation, hidden_lmax):
    model = make_model(correlation=correlation, hidden_lmax=hidden_lmax, derivative=True)
    energy, forces = model(batch.z, batch.pos, batch.batch)
    assert energy.shape == (3, 1) and forces.shape == (16, 3)
    assert energy.abs().min() > 1e-4 and forces.abs().max() > 1e-4  # not trivially zero
    errors = assert_equivariant(
        model, [batch.z, batch.pos, batch.batch], [None, "pos", None], ["0e", "1o"]
    )
    assert set(errors) == {"rotation", "parity", "translation"}


def test_the_energy_has_many_body_terms():
    """With correlation 1 (and a linear readout) the energy of one block is a sum of pair
    terms; correlation 3 multiplies the neighbours' contributions: the energy of three atoms
    is then not the sum of its pairs' energies minus the atoms'."""
    z = torch.tensor([6, 6, 6])
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [0.0, 1.3, 0.2]])

    def three_body(model):
        def energy(idx):
            return model(z[idx], pos[idx]).item()

        pairs = energy([0, 1]) + energy([0, 2]) + energy([1, 2])
        return energy([0, 1, 2]) - pairs + sum(energy([i]) for i in range(3))

    linear, cubic = make_model(correlation=1, num_layers=1), make_model(num_layers=1)
    linear.act = cubic.act = torch.nn.Identity()
    assert abs(three_body(linear)) < 1e-12
    assert abs(three_body(cubic)) > 1e-6


def test_permutation_invariance():
    model = make_model(derivative=True)
    data = molecule(9, seed=3)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    energy, forces = model(data.z, data.pos)
    energy_p, forces_p = model(data.z[perm], data.pos[perm])
    torch.testing.assert_close(energy_p, energy, atol=1e-12, rtol=0)
    torch.testing.assert_close(forces_p, forces[perm], atol=1e-12, rtol=0)


@pytest.mark.parametrize("readout", ["add", "mean"])
def test_batch_equals_molecules_one_by_one(batch, readout):
    model = make_model(readout=readout, derivative=True)
    energy, forces = model(batch.z, batch.pos, batch.batch)
    for i, data in enumerate(batch.to_data_list()):
        energy_i, forces_i = model(data.z, data.pos)
        torch.testing.assert_close(energy[i : i + 1], energy_i, atol=1e-12, rtol=0)
        torch.testing.assert_close(forces[batch.batch == i], forces_i, atol=1e-12, rtol=0)


def test_forces_equal_finite_differences():
    model = make_model(derivative=True)
    data = molecule(6, seed=5)
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


def test_a_force_loss_trains_every_parameter(batch):
    model = make_model(derivative=True, species=[1, 6, 8]).train()
    energy, forces = model(batch.z, batch.pos.clone().requires_grad_(), batch.batch)
    (energy.pow(2).sum() + forces.pow(2).sum()).backward()
    untouched = [name for name, p in model.named_parameters() if p.grad is None]
    assert untouched == []
    # the weights of the elements of the batch (rows 1-3) learn, the unseen row (0) not
    weights = [p for name, p in model.named_parameters() if "contraction" in name]
    assert weights and all(w.grad[0].abs().sum() == 0 for w in weights)
    assert all(w.grad[1:].abs().sum() > 0 for w in weights)


def test_element_slots_follow_the_species():
    model = make_model(species=[1, 8])
    assert model.embedding.num_embeddings == 3  # H, O and every other element
    assert model.element_slot[[1, 8, 6]].tolist() == [1, 2, 0]
    assert make_model().embedding.num_embeddings == model.max_z  # no species: one row each
    with pytest.raises(ValueError, match="not trained on: C"):
        model(torch.tensor([1, 6]), torch.randn(2, 3))
    model.allow_unseen_elements = True
    assert torch.isfinite(model(torch.tensor([1, 6]), torch.randn(2, 3))).all()


def test_state_dict_round_trip_is_exact(batch):
    model = make_model(derivative=True, species=[1, 6, 8], mean=0.5, std=2.0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    copy = ManyBodyNet(**model.config())
    copy.load_state_dict(torch.load(buffer))
    for a, b in zip(model(batch.z, batch.pos, batch.batch), copy(batch.z, batch.pos, batch.batch)):
        assert torch.equal(a, b)
    other = ManyBodyNet(**{**model.config(), "correlation": 2})
    with pytest.raises(ValueError, match=r"correlation=3 \(this model: 2\)"):
        other.load_state_dict(model.state_dict())


def test_repr_and_config():
    model = make_model()
    config = model.config()
    assert config["correlation"] == 3 and config["num_channels"] == 4
    assert "mean" not in config and "interaction_graph" not in config
    assert repr(model).startswith("ManyBodyNet(num_channels=4, lmax=2, hidden_lmax=1")
    assert [block.Rs_out for block in model.blocks] == [Rs("4x0e+4x1o"), Rs("4x0e")]


def test_natural_irreps():
    assert natural_irreps(3, 2) == Rs("3x0e+3x1o+3x2e")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_channels=0), "num_channels must be an int >= 1"),
        (dict(correlation=0), "correlation must be an int >= 1"),
        (dict(correlation=2.0), "correlation must be an int >= 1"),
        (dict(hidden_lmax=3, lmax=2), "hidden_lmax = 3 must not exceed lmax = 2"),
        (dict(cutoff=-1.0), "cutoff must be a positive number"),
        (dict(readout="max"), "readout must be one of"),
        (dict(derivative=True, out_channels=2), "derivative=True needs out_channels=1"),
        (dict(species=[0]), r"species must lie in \[1, 100\)"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ManyBodyNet(**{**SMALL, **kwargs})


def test_periodic_energy_invariant_forces_and_stress_equivariant():
    torch.manual_seed(1)
    cell = torch.tensor([[3.2, 0.1, 0.0], [0.3, 2.9, 0.0], [0.0, 0.2, 3.1]])
    pos = torch.rand(4, 3) @ cell
    z = torch.tensor([1, 6, 8, 6])
    model = make_model(derivative=True)
    energy, forces, stress = model(z, pos, None, cell, stress=True)
    rotation = torch.linalg.qr(torch.randn(3, 3))[0]
    rotation = rotation * torch.linalg.det(rotation)  # a proper rotation
    energy_r, forces_r, stress_r = model(z, pos @ rotation.T, None, cell @ rotation.T, stress=True)
    torch.testing.assert_close(energy_r, energy, atol=1e-10, rtol=0)
    torch.testing.assert_close(forces_r, forces @ rotation.T, atol=1e-10, rtol=0)
    torch.testing.assert_close(stress_r[0], rotation @ stress[0] @ rotation.T, atol=1e-10, rtol=0)
    shifted = model(z, pos + cell[0], None, cell, stress=True)  # an atom moved by a lattice vector
    torch.testing.assert_close(shifted[0], energy, atol=1e-10, rtol=0)
    assert stress.abs().max() > 1e-6

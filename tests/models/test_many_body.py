"""ManyBodyNet: its many-body terms, the element-dependent weights, state_dict refusals of
its own settings, its settings (what every model kind passes, symmetries, batches, forces,
state_dict round trips: tests/models/test_atomistic.py; the potential contract:
tests/testing/test_contract.py; compile and export: tests/test_compilation.py)."""

import pytest
import torch
import zoo
from torch_geometric.data import Batch

from e3nn_pyg.models import ManyBodyNet, natural_irreps
from e3nn_pyg.o3 import Rs

pytestmark = pytest.mark.usefixtures("float64")


def make_model(seed: int = 0, **kwargs) -> ManyBodyNet:
    return zoo.make_model("many-body", seed, **kwargs)


@pytest.fixture
def batch() -> Batch:
    return zoo.molecules("many-body")


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


@pytest.mark.parametrize("options", [{}, dict(species_skip=True, basis_mixing=True)])
def test_a_force_loss_trains_every_parameter(batch, options):
    model = make_model(derivative=True, species=[1, 6, 8], **options).train()
    energy, forces = model(batch.z, batch.pos.clone().requires_grad_(), batch.batch)
    (energy.pow(2).sum() + forces.pow(2).sum()).backward()
    untouched = [name for name, p in model.named_parameters() if p.grad is None]
    assert untouched == []
    # the weights of the elements of the batch (rows 1-3) learn, the unseen row (0) not
    weights = [p for name, p in model.named_parameters() if "contraction" in name]
    if options:
        weights += [p for name, p in model.named_parameters() if "skip" in name]
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


def test_a_state_dict_of_another_correlation_is_refused():
    state = make_model(derivative=True, species=[1, 6, 8]).state_dict()  # correlation 3
    other = make_model(derivative=True, species=[1, 6, 8], correlation=2)
    with pytest.raises(ValueError, match=r"correlation=3 \(this model: 2\)"):
        other.load_state_dict(state)


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
        (dict(species_skip=1), "species_skip must be True or False, got 1"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(**kwargs)

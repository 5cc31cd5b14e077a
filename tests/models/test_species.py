"""The elements a model takes: atomic numbers outside [0, max_z) and elements outside the
species it was trained on are refused at every entry (energy, forces, stress, SchNet's force
wrapper, the exported program) with one line naming them; allow_unseen_elements lets them
through; species are part of the saved state."""

import io

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import SchNet

from e3nn_pyg.compilation import compile_settings
from e3nn_pyg.elements import MAX_Z
from e3nn_pyg.export import export_model
from e3nn_pyg.models import EnergyForces, EquivariantNet, SchNetInteractionGraph
from e3nn_pyg.models.species import validate_species

SMALL = dict(hidden_Rs="8x0e + 4x1o", num_layers=2, cutoff=3.0, radial_hidden=16)
TRAINED = [1, 6, 8]  # H, C, O

pytestmark = pytest.mark.usefixtures("float64")


def equivariant_net(derivative=False, **kwargs):
    torch.manual_seed(0)
    return EquivariantNet(**SMALL, derivative=derivative, species=TRAINED, **kwargs)


def schnet_forces(**kwargs):
    torch.manual_seed(0)
    schnet = SchNet(hidden_channels=8, num_filters=8, num_interactions=1, num_gaussians=4,
                    cutoff=3.0, interaction_graph=SchNetInteractionGraph(3.0))  # fmt: skip
    return EnergyForces(schnet, species=TRAINED, **kwargs)


CELL = torch.eye(3, dtype=torch.float64) * 4.0

#: every entry point: (model, call(model, z, pos))
ENTRIES = {
    "energy": (equivariant_net, lambda m, z, pos: m(z, pos)),
    "energy of a force model": (lambda: equivariant_net(True), lambda m, z, pos: m.energy(z, pos)),
    "forces": (lambda: equivariant_net(True), lambda m, z, pos: m(z, pos)),
    "stress": (lambda: equivariant_net(True), lambda m, z, pos: m(z, pos, cell=CELL, stress=True)),
    "SchNet forces": (schnet_forces, lambda m, z, pos: m(z, pos)),
}  # fmt: skip

#: atomic numbers with elements unseen in training, and the message naming them
UNSEEN = {
    "one": (
        [1, 6, 17],
        r"not trained on: Cl \(Z=17\); it was trained on H \(Z=1\), C "
        r"\(Z=6\), O \(Z=8\) \(set allow_unseen_elements to predict them anyway\)$",
    ),
    "two, repeated": ([35, 1, 17, 35], r"not trained on: Cl \(Z=17\), Br \(Z=35\); it was"),
    "no element": ([0, 6, 8], r"not trained on: Z=0;"),
    "all": ([26, 26, 26], r"not trained on: Fe \(Z=26\);"),
}


def positions(n: int) -> torch.Tensor:
    return 1.2 * torch.randn(n, 3, generator=torch.Generator().manual_seed(n))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("unseen", UNSEEN)
def test_elements_unseen_in_training_are_refused(entry, unseen):
    build, call = ENTRIES[entry]
    numbers, match = UNSEEN[unseen]
    z = torch.tensor(numbers)
    with pytest.raises(ValueError, match=match) as caught:
        call(build(), z, positions(len(numbers)))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("unseen", UNSEEN)
def test_unseen_elements_are_predicted_with_the_opt_in(entry, unseen):
    build, call = ENTRIES[entry]
    numbers, _ = UNSEEN[unseen]
    model = build()
    model.allow_unseen_elements = True
    outputs = call(model, torch.tensor(numbers), positions(len(numbers)))
    for value in outputs if isinstance(outputs, tuple) else (outputs,):
        assert torch.isfinite(value).all()
    assert "allow_unseen_elements" not in str(getattr(model, "config", dict)())


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize("number", [MAX_Z, 150, -1])
def test_atomic_numbers_outside_the_embedding_are_refused(entry, allow, number):
    build, call = ENTRIES[entry]
    model = build()
    model.allow_unseen_elements = allow
    with pytest.raises(ValueError, match=f"z holds atomic number {number} out of range"):
        call(model, torch.tensor([1, number]), positions(2))


@pytest.mark.parametrize("entry", ENTRIES)
def test_trained_elements_and_models_without_species_take_any_element(entry):
    build, call = ENTRIES[entry]
    z = torch.tensor([8, 1, 6, 1])
    call(build(), z, positions(4))
    model = build()
    model.species, model.species_mask = None, None
    call(model, torch.tensor([17, 92, 1]), positions(3))


@pytest.mark.parametrize(
    "species, error, match",
    [
        ("CHO", TypeError, "list of atomic numbers"),
        (torch.tensor([1.0, 6.0]), TypeError, "ints"),
        (6, TypeError, "list of atomic numbers"),
        ([1.0, 6.0], TypeError, "ints"),
        ([True], TypeError, "ints"),
        ([], ValueError, "at least one element"),
        ([0, 1], ValueError, r"\[1, 100\).*\[0\]"),
        ([1, MAX_Z, 200], ValueError, r"got \[100, 200\]"),
    ],
)
@pytest.mark.parametrize("model", ["EquivariantNet", "EnergyForces"])
def test_bad_species_are_refused(model, species, error, match):
    with pytest.raises(error, match=match):
        if model == "EquivariantNet":
            EquivariantNet(**SMALL, species=species)
        else:
            EnergyForces(torch.nn.Linear(1, 1), species=species)


def test_species_are_sorted_and_distinct_python_ints():
    assert validate_species((8, 1, 6, 1), MAX_Z) == [1, 6, 8]
    for species in (np.unique([8, 1, 6, 1]), torch.tensor([8, 1, 6])):  # from data
        assert validate_species(species, MAX_Z) == [1, 6, 8]
        assert all(type(z) is int for z in validate_species(species, MAX_Z))
    assert EquivariantNet(**SMALL, species=[8, 1, 6, 1]).config()["species"] == [1, 6, 8]


def round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("build", [equivariant_net, schnet_forces])
def test_species_are_saved_and_another_set_is_refused(build):
    state = round_trip(build().state_dict())
    model = build()
    model.load_state_dict(state)
    assert model.species == TRAINED
    other = build()
    other.species = [1, 6]
    with pytest.raises(ValueError, match="species"):
        other.load_state_dict(state)


def test_states_saved_before_species_load_as_none():
    model = EquivariantNet(**SMALL)
    state = model.state_dict()
    del state["_extra_state"]["config"]["species"]
    EquivariantNet(**SMALL).load_state_dict(state)
    with pytest.raises(ValueError, match=r"species=None \(this model: \[1, 6, 8\]\)"):
        equivariant_net().load_state_dict(state)
    forces = schnet_forces()
    state = forces.state_dict()
    del state["_extra_state"]  # an EnergyForces saved before species were recorded
    forces.load_state_dict(state)


def test_the_exported_program_refuses_unseen_elements():
    model = equivariant_net().eval()
    program = export_model(model).module()
    z, pos = torch.tensor([8, 1, 1]), positions(3)
    torch.testing.assert_close(program(z, pos, torch.zeros(3, dtype=torch.long)), model(z, pos))
    with pytest.raises(RuntimeError, match="z holds elements the model was not trained on"):
        program(torch.tensor([8, 1, 17]), pos, torch.zeros(3, dtype=torch.long))


def test_the_species_check_traces_into_one_graph():
    model = equivariant_net().eval()
    with compile_settings():
        explanation = torch._dynamo.explain(model)(torch.tensor([8, 1, 1]), positions(3))
    assert explanation.graph_break_count == 0

"""EquivariantNet: the PyG zoo contract (shapes, batches, SchNet-style offsets), training
mode and no_grad, devices, state_dict with the config, the graph and its cap, its layers'
representations, input validation, periodic structures (supercells, stress against finite
differences, mixed batches); what every model kind passes (symmetries, batches, forces,
state_dict round trips): tests/models/test_atomistic.py; torch.compile and torch.export:
tests/test_compilation.py."""

import pytest
import torch
import zoo
from torch_geometric.data import Batch, Data
from zoo import crystals, run

import e3nn_pyg.conv
import e3nn_pyg.graph.periodic
import e3nn_pyg.graph.prepared
import e3nn_pyg.graph.radius
import e3nn_pyg.models.equivariant_net
from e3nn_pyg.models import EquivariantNet, layer_representations
from e3nn_pyg.testing import assert_equivariant

SMALL = zoo.SMALL["equivariant-net"]


pytestmark = pytest.mark.usefixtures("float64")


def molecule(num_atoms: int, seed: int) -> Data:
    return zoo.molecule(num_atoms, seed, zoo.ELEMENTS["equivariant-net"])


def make_model(seed: int = 0, **kwargs) -> EquivariantNet:
    return zoo.make_model("equivariant-net", seed, **kwargs)


@pytest.fixture
def batch() -> Batch:
    return zoo.molecules("equivariant-net")


def test_equivariance_checker_catches_a_broken_model(batch):
    class Broken(EquivariantNet):
        def _predict(self, z, pos, *args):
            return super()._predict(z, pos, *args) + pos[:1, :1]  # depends on x of atom 0

    torch.manual_seed(0)
    model = Broken(**SMALL)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, [batch.z, batch.pos, batch.batch], [None, "pos", None], "0e")


def test_training_mode_forces_keep_their_graph():
    model = make_model(derivative=True).train()
    data = molecule(5, seed=2)
    _, forces = model(data.z, data.pos)
    forces.pow(2).sum().backward()  # a force loss reaches the parameters
    assert model.embedding.weight.grad is not None
    assert model.embedding.weight.grad.abs().sum() > 0


def test_derivative_under_no_grad():
    model = make_model(derivative=True).eval()
    data = molecule(5, seed=2)
    with torch.no_grad():
        energy, forces = model(data.z, data.pos)
    assert not energy.requires_grad and not forces.requires_grad
    assert forces.abs().max() > 0
    assert not data.pos.requires_grad  # the caller's tensor is left alone


def test_isolated_atoms_have_zero_forces():
    model = make_model(derivative=True)
    z = torch.tensor([1, 8])
    pos = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])  # beyond the cutoff
    energy, forces = model(z, pos)
    assert torch.equal(forces, torch.zeros_like(pos))
    assert energy.shape == (1, 1)
    # a force training step on a batch without edges: zero forces, a usable loss
    model.train()
    energy, forces = model(z, pos.clone().requires_grad_(), torch.tensor([0, 1]))
    (energy.pow(2).sum() + forces.pow(2).sum()).backward()
    assert torch.equal(forces, torch.zeros_like(pos))
    assert model.embedding.weight.grad is not None


def test_mean_std_atomref_enter_per_atom_like_schnet(batch):
    atomref = torch.zeros(100, 1)
    atomref[[1, 6, 7, 8, 9], 0] = torch.tensor([-0.5, -38.0, -54.6, -75.1, -99.7])
    model = make_model(mean=0.25, std=0.0, atomref=atomref)
    out = model(batch.z, batch.pos, batch.batch)
    counts = torch.bincount(batch.batch).double()
    expected = 0.25 * counts + torch.zeros(3).index_add_(0, batch.batch, atomref[batch.z, 0])
    torch.testing.assert_close(out[:, 0], expected, atol=1e-12, rtol=0)
    model_mean = make_model(mean=0.25, std=0.0, readout="mean")
    torch.testing.assert_close(
        model_mean(batch.z, batch.pos, batch.batch), torch.full((3, 1), 0.25), atol=1e-12, rtol=0
    )


def test_out_channels_and_per_channel_mean(batch):
    model = make_model(out_channels=3, mean=[1.0, 2.0, 3.0], std=[1.0, 0.0, 1.0])
    out = model(batch.z, batch.pos, batch.batch)
    assert out.shape == (3, 3)
    torch.testing.assert_close(out[:, 1], 2.0 * torch.bincount(batch.batch).double())


def test_energy_and_forces_on_every_device(batch, device):
    """The model on ``device`` equals the reference engine on the CPU (float64)."""
    model = make_model(derivative=True)
    for interaction in model.interactions:
        interaction.conv.kernel.engine = "reference"
    energy, forces = model(batch.z, batch.pos, batch.batch)
    for interaction in model.interactions:
        interaction.conv.kernel.engine = "auto"
    model = model.to(device)
    out = model(batch.z.to(device), batch.pos.to(device), batch.batch.to(device))
    assert all(t.device.type == device.type for t in out)
    torch.testing.assert_close(out[0].cpu(), energy, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out[1].cpu(), forces, atol=1e-10, rtol=1e-10)


def test_state_dict_records_the_config_and_loads_into_a_force_model(batch):
    model = make_model()
    assert model.state_dict()["_extra_state"] == {"config": model.config()}
    forces_model = make_model(seed=3, derivative=True)
    forces_model.load_state_dict(model.state_dict())  # the forces of the energy model
    energy, _ = forces_model(batch.z, batch.pos, batch.batch)
    torch.testing.assert_close(energy, model(batch.z, batch.pos, batch.batch))
    legacy = {k: v for k, v in model.state_dict().items() if k != "_extra_state"}
    make_model(seed=4).load_state_dict(legacy)  # saved before configs were recorded


def test_reset_parameters_keeps_the_offsets(batch):
    model = make_model(mean=0.5, std=2.0)
    before = [p.clone() for p in model.parameters()]
    model.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.mean.item() == 0.5 and model.std.item() == 2.0


def test_repr_and_config():
    model = make_model(max_num_neighbors=12)
    text = repr(model)
    for piece in ("hidden_Rs='8x0e+4x1o+2x2e'", "lmax=2", "num_layers=2", "cutoff=3.0",
                  "max_num_neighbors=12", "readout='add'"):  # fmt: skip
        assert piece in text
    assert model.config()["hidden_Rs"] == "8x0e+4x1o+2x2e"


def test_max_num_neighbors_caps_the_graph():
    data = molecule(12, seed=0)
    full = make_model(cutoff=10.0)
    capped = make_model(cutoff=10.0, max_num_neighbors=3)
    with pytest.warns(UserWarning, match="max_num_neighbors=3"):
        out = capped(data.z, data.pos)
    assert not torch.allclose(out, full(data.z, data.pos))


def test_layer_representations_prune_irreps_that_cannot_contribute():
    layers = layer_representations("4x0e + 2x1o + 2x1e", lmax=1, num_layers=4)
    assert [str(rs) for rs in layers] == [
        "4x0e+2x1o",
        "4x0e+2x1o+2x1e",
        "4x0e+2x1o",
        "4x0e",
    ]
    with pytest.warns(UserWarning, match="1e"):
        layer_representations("4x0e + 2x1o + 2x1e", lmax=1, num_layers=2)
    with pytest.warns(UserWarning, match="0o"):
        layer_representations("4x0e + 2x1o + 2x1e + 1x0o", lmax=1, num_layers=4)


def test_lmax_limits_the_filters():
    model = make_model(hidden_Rs="8x0e + 4x1o", lmax=1)
    assert model.interactions[0].conv.kernel.plan.filter_orders == [0, 1]


@pytest.mark.parametrize(
    "z, pos, batch, error, match",
    [
        (torch.tensor([1.0, 6.0]), torch.zeros(2, 3), None, TypeError, "torch.long"),
        (torch.tensor([[1, 6]]), torch.zeros(2, 3), None, TypeError, "1-D"),
        (torch.tensor([1, 120]), torch.zeros(2, 3), None, ValueError, "120"),
        (torch.tensor([1, -1]), torch.zeros(2, 3), None, ValueError, "-1"),
        (torch.tensor([1, 6]), torch.zeros(2, 2), None, ValueError, r"\[N, 3\]"),
        (torch.tensor([1, 6]), torch.zeros(3, 3), None, ValueError, "2 atoms"),
        (torch.tensor([1, 6]), torch.zeros(2, 3), torch.tensor([0]), ValueError, "batch"),
        (torch.tensor([1, 6]), torch.zeros(2, 3, dtype=torch.float32), None, TypeError, "float"),
    ],
)
def test_bad_inputs_raise_clear_errors(z, pos, batch, error, match):
    model = make_model()
    with pytest.raises(error, match=match):
        model(z, pos, batch)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_Rs="8x0o + 4x1o"), "even scalars"),
        (dict(hidden_Rs="8x0 + 4x1"), "parity"),
        (dict(atomref=torch.zeros(50, 1)), "atomref"),
        (dict(mean=[1.0, 2.0]), "mean"),
        (dict(num_layers=0), "num_layers"),
        (dict(max_num_neighbors=0), "max_num_neighbors"),
        (dict(kernel_mode="depthwise"), "kernel_mode"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_model(**kwargs)


def test_inputs_are_validated_once_at_the_entry(batch, monkeypatch):
    """The model checks z, pos, batch (and cell) once; its graph and its layers do not
    check them again. Called directly, graph and layer still validate."""
    calls = []

    def counted(module, name):
        check = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(name) or check(*a, **k))

    counted(e3nn_pyg.models.atomistic, "validate_pos")
    counted(e3nn_pyg.models.atomistic, "validate_batch")
    for name in ("validate_pos", "validate_batch"):
        counted(e3nn_pyg.graph.radius, name)
    for name in ("validate_pos", "require_edges", "_check_edge_shift"):
        counted(e3nn_pyg.graph.prepared, name)
    counted(e3nn_pyg.graph.periodic, "validate_cell")
    counted(e3nn_pyg.conv, "validate_batch")
    model = make_model(derivative=True)
    model(batch.z, batch.pos, batch.batch)
    assert calls == ["validate_pos", "validate_batch"]
    calls.clear()
    model(batch.z, batch.pos, batch.batch, cell=3.0 * torch.eye(3))
    assert calls == ["validate_pos", "validate_batch"]  # (validate_cell: the model's import)
    calls.clear()
    model.interactions[0].conv(model.embedding(batch.z), batch.pos, batch=batch.batch)
    assert calls == ["validate_pos", "validate_batch"]  # the layer alone validates


def test_consumes_pyg_qm9_batches(tmp_path):
    """torch_geometric.datasets.QM9 (raw files written offline) feeds the model directly."""
    from torch_geometric.datasets import QM9
    from torch_geometric.loader import DataLoader

    from e3nn_pyg.datasets import QM9Pack, write_pyg_raw

    write_pyg_raw(QM9Pack(tmp_path / "ours", source="fixture", subset=12), tmp_path / "pyg",
                  format="pt")  # fmt: skip
    batch = next(iter(DataLoader(QM9(str(tmp_path / "pyg")), batch_size=12)))
    model = make_model(derivative=True)
    energy, forces = model(batch.z, batch.pos.double(), batch.batch)
    assert energy.shape == (12, 1) and forces.shape == (batch.num_nodes, 3)
    first = batch.get_example(0)
    torch.testing.assert_close(energy[:1], model(first.z, first.pos.double())[0])


# -- periodic structures -------------------------------------------------------------------
def test_supercell_energy_is_extensive():
    """Doubling the cell along a lattice vector doubles the energy; forces repeat and the
    stress (per volume) is the same: also when the cell is smaller than the cutoff."""
    model = make_model(derivative=True)
    for side in ((2.0, 2.5), (3.5, 5.0)):
        data = crystals((3,), seed=2, side=side)
        cell = data.cell[0]
        energy, forces, stress = model(data.z, data.pos, cell=cell, stress=True)
        double = torch.stack([2 * cell[0], cell[1], cell[2]])
        pos = torch.cat([data.pos, data.pos + cell[0]])
        out = model(data.z.repeat(2), pos, cell=double, stress=True)
        torch.testing.assert_close(out[0], 2 * energy, atol=1e-9, rtol=0)
        torch.testing.assert_close(out[1], forces.repeat(2, 1), atol=1e-9, rtol=0)
        torch.testing.assert_close(out[2], stress, atol=1e-9, rtol=0)


def test_stress_equals_finite_differences_of_the_energy():
    r"""sigma_ab = (1/V) dE/d eps_ab under x -> x (1 + eps), eps symmetric."""
    model = make_model(derivative=True)
    data = crystals((3, 2), seed=5, pbc=torch.tensor([[True, True, False]]))
    data.cell[:, 2] = torch.tensor([0.0, 0.0, 6.0])  # a slab: vacuum along z
    _, _, stress = run(model, data)
    volume = torch.linalg.det(data.cell).abs()
    h = 1e-5
    for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]:
        strain = torch.zeros(3, 3)
        strain[a, b] += h / 2
        strain[b, a] += h / 2
        energies = [
            model.energy(data.z, data.pos + sign * data.pos @ strain, data.batch,
                         data.cell + sign * data.cell @ strain, data.pbc)[:, 0]
            for sign in (1, -1)
        ]  # fmt: skip
        numeric = (energies[0] - energies[1]) / (2 * h) / volume  # [G]
        torch.testing.assert_close(stress[:, a, b], numeric, atol=1e-8, rtol=1e-6)


def test_periodic_forces_equal_finite_differences():
    model = make_model(derivative=True)
    data = crystals((4,), seed=6, side=(2.0, 2.4))  # every atom sees its own images
    _, forces = model(data.z, data.pos, cell=data.cell, pbc=data.pbc)
    h = 1e-5
    for i, k in [(0, 0), (1, 2), (2, 1), (3, 0)]:
        step = torch.zeros_like(data.pos)
        step[i, k] = h
        plus = model.energy(data.z, data.pos + step, cell=data.cell)
        minus = model.energy(data.z, data.pos - step, cell=data.cell)
        numeric = -(plus - minus).item() / (2 * h)
        assert forces[i, k].item() == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_one_atom_in_a_cell_smaller_than_the_cutoff():
    """Its images are its neighbours: energy unlike the free atom's, zero forces (every
    atom of a Bravais lattice is a centre of inversion), a stress."""
    model = make_model(derivative=True)
    z, pos = torch.tensor([6]), torch.tensor([[0.4, 0.1, -0.3]])
    cell = torch.tensor([[1.4, 0.0, 0.0], [0.3, 1.5, 0.0], [0.2, -0.1, 1.6]])
    energy, forces, stress = model(z, pos, cell=cell, stress=True)
    free_energy, _ = model(z, pos)
    assert (energy - free_energy).abs().item() > 1e-3
    assert forces.abs().max() < 1e-12 and stress.abs().max() > 1e-4


def test_batch_of_crystals_and_molecules_equals_one_by_one():
    """Structures of different cells and pbc in one batch; a structure without periodic
    axis (ASE's zero cell) is the molecule."""
    model = make_model(derivative=True)
    data = crystals((3, 2, 4), seed=7)
    data.pbc[1] = torch.tensor([True, False, True])
    data.pbc[2] = False
    data.cell[2] = 0.0
    energy, forces = model(data.z, data.pos, data.batch, data.cell, data.pbc)
    for g, one in enumerate(data.to_data_list()):
        out = model(one.z, one.pos, cell=one.cell, pbc=one.pbc)
        torch.testing.assert_close(energy[g : g + 1], out[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(forces[data.batch == g], out[1], atol=1e-12, rtol=0)
    torch.testing.assert_close(energy[2:], model(data.z[5:], data.pos[5:])[0], atol=1e-12, rtol=0)


def mixed_batch() -> Batch:
    """Two crystals (one a slab), a molecule with ASE's zero cell, and a structure with a
    cell but no periodic axis."""
    data = crystals((3, 2, 4, 2), seed=11)
    data.pbc[1] = torch.tensor([True, True, False])
    data.pbc[2] = False
    data.cell[2] = 0.0
    data.pbc[3] = False
    return data


def test_stress_of_a_mixed_batch_equals_the_periodic_structures_one_by_one():
    """Molecules get NaN rows; every periodic structure the stress it has alone."""
    model = make_model(derivative=True)
    data = mixed_batch()
    energy, forces, stress = run(model, data)
    assert stress.shape == (4, 3, 3)
    assert stress[2:].isnan().all() and not stress[:2].isnan().any()
    for g, one in enumerate(data.to_data_list()):
        if g < 2:
            alone = model(one.z, one.pos, cell=one.cell, pbc=one.pbc, stress=True)
            torch.testing.assert_close(stress[g : g + 1], alone[2], atol=1e-12, rtol=0)
        else:
            alone = model(one.z, one.pos, cell=one.cell, pbc=one.pbc)
        torch.testing.assert_close(energy[g : g + 1], alone[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(forces[data.batch == g], alone[1], atol=1e-12, rtol=0)


def test_a_stress_loss_on_a_mixed_batch_has_finite_gradients():
    """The NaN rows of the molecules, left out by torch.where, pass zero gradients."""
    model = make_model(derivative=True).train()
    data = mixed_batch()
    _, _, stress = run(model, data)
    periodic = data.pbc.any(1)[:, None, None]  # [G, 1, 1]
    loss = torch.where(periodic, stress, 0.0).pow(2).sum()
    loss.backward()
    gradients = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.isfinite(gradients).all() and gradients.abs().sum() > 0
    # a flat cell of a periodic structure is refused, also next to molecules
    data.cell[1, 2] = 0.0
    with pytest.raises(ValueError, match="structure 1 has a flat cell"):
        run(model, data)


def test_periodic_energy_forces_and_stress_on_every_device(device):
    """The periodic model on ``device`` equals the reference engine on the CPU (float64)."""
    model = make_model(derivative=True)
    data = crystals((3, 2), seed=9)
    for interaction in model.interactions:
        interaction.conv.kernel.engine = "reference"
    expected = run(model, data)
    for interaction in model.interactions:
        interaction.conv.kernel.engine = "auto"
    model, data = model.to(device), data.to(device)
    out = run(model, data)
    assert all(t.device.type == device.type for t in out)
    for a, b in zip(out, expected):
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-10)


def test_stress_in_training_and_under_no_grad():
    model = make_model(derivative=True).train()
    data = crystals((2, 3), seed=8)
    energy, forces, stress = run(model, data)
    (energy.pow(2).sum() + forces.pow(2).sum() + stress.pow(2).sum()).backward()
    assert model.embedding.weight.grad.abs().sum() > 0  # a stress loss trains the model
    model.eval()
    with torch.no_grad():
        out = run(model, data)
    assert not any(t.requires_grad for t in out)
    for a, b in zip(out, (energy, forces, stress)):
        torch.testing.assert_close(a, b.detach(), atol=1e-12, rtol=0)
    # without edges: zero forces and stress
    far = model(torch.tensor([1]), torch.zeros(1, 3), cell=10.0 * torch.eye(3), stress=True)
    assert not far[1].any() and not far[2].any()


EYE = torch.eye(3, dtype=torch.float64)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(stress=True), ValueError, "needs periodic structures: pass their cell"),
        (dict(cell=EYE, stress=True, pbc=False), ValueError, "no structure has a periodic axis"),
        (dict(cell=torch.diag(torch.tensor([2.0, 2.0, 0.0], dtype=torch.float64)),
              pbc=[True, True, False], stress=True), ValueError, "non-zero volume"),
        (dict(cell=EYE, stress=1), TypeError, "stress must be a bool"),
        (dict(pbc=[True] * 3), ValueError, "pbc was given without a cell"),
        (dict(cell=EYE.float()), TypeError, r"cell is torch\.float32"),
        (dict(cell=0 * EYE), ValueError, "singular"),
    ],
)  # fmt: skip
def test_bad_periodic_inputs_raise_clear_errors(kwargs, error, match):
    model = make_model(derivative=True)
    with pytest.raises(error, match=match):
        model(torch.tensor([1, 6]), torch.rand(2, 3), **kwargs)


def test_stress_needs_a_force_model():
    with pytest.raises(ValueError, match="stress=True needs a force model"):
        make_model()(torch.tensor([1, 6]), torch.rand(2, 3), cell=3.0 * torch.eye(3), stress=True)

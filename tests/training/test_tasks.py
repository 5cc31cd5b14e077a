"""Tasks: metrics declared once and computed from named sums; a potential's loss and metrics
use only the structures and atoms that carry each label (energy, forces, stress)."""

import math

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data, InMemoryDataset

from e3nn_pyg.datasets import QM9_TARGET_INFO
from e3nn_pyg.training import ConfigError
from e3nn_pyg.training.tasks import Metric, PotentialTask, PropertyTask, metric_values

MEV = 1000.0


def test_a_metric_is_the_scaled_mean_of_its_sums_or_absent():
    mae = Metric("forces_mae", "forces MAE", "meV/Å", "error", "components", MEV)
    rmse = Metric("forces_rmse", "forces RMSE", "meV/Å", "squared", "components", MEV, root=True)
    sums = {"error": 3.0, "squared": 4.0, "components": 4.0}
    assert mae.value(sums) == pytest.approx(750.0)
    assert rmse.value(sums) == pytest.approx(1000.0)
    assert metric_values([mae, rmse], sums) == pytest.approx({"forces_mae": 750.0,
                                                              "forces_rmse": 1000.0})  # fmt: skip
    none = {"error": 0.0, "squared": 0.0, "components": 0.0}
    assert mae.value(none) is None and metric_values([mae, rmse], none) == {}


class Zero(nn.Module):
    """A property model predicting 0 for every molecule."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, z, pos, batch=None):
        batch = torch.zeros_like(z) if batch is None else batch
        return torch.zeros(int(batch.max()) + 1, 1, dtype=pos.dtype) + self.offset


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_a_property_step_and_evaluation_give_named_sums(loss):
    target = QM9_TARGET_INFO[7]  # U0, eV, reported in meV
    values = [0.5, -1.5, 2.0]
    molecules = [
        Data(z=torch.ones(2, dtype=torch.long), pos=torch.rand(2, 3, dtype=torch.float64),
             y=torch.full((1, 19), value).index_fill(1, torch.tensor([0]), 99.0))
        for value in values
    ]  # fmt: skip
    task = PropertyTask(target, loss)
    batch_loss, sums = task.step(Zero(), Batch.from_data_list(molecules), loss_scale=2.0)
    assert set(sums) == set(task.sum_names) == {"loss", "error", "structures"}
    pointwise = [abs(v) / 2 if loss == "l1" else (v / 2) ** 2 for v in values]
    assert float(batch_loss.detach()) == pytest.approx(sum(pointwise) / 3, rel=1e-12)
    train = task.train_metrics({name: float(value) for name, value in sums.items()})
    assert train == pytest.approx({"train_loss": sum(pointwise) / 3, "train_mae": 4000.0 / 3})
    dataset = Structures(molecules)
    metrics = task.eval_metrics(task.eval_sums(Zero(), dataset[torch.arange(3)]))
    assert metrics == pytest.approx({"mae": 4000.0 / 3}) and task.score(metrics) == metrics["mae"]
    assert task.format_metrics(metrics) == "MAE of U0 1333.33 meV"
    assert task.eval_metrics({"error": 0.0, "structures": 0.0}) == {}


class Fixed(nn.Module):
    """A potential predicting energy 0, forces 0 and stress 0 (its parameter, 0, keeps them
    differentiable); as EquivariantNet, NaN stress rows for the structures without a
    periodic axis."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, z, pos, batch=None, cell=None, pbc=None, stress=False):
        batch = torch.zeros_like(z) if batch is None else batch
        num_graphs = int(batch.max()) + 1
        energy = torch.zeros(num_graphs, 1, dtype=pos.dtype) + self.offset
        forces = torch.zeros_like(pos) + self.offset
        if stress:
            assert bool(pbc.any()), "the model refuses stress=True without periodic structure"
            values = torch.zeros(num_graphs, 3, 3, dtype=pos.dtype) + self.offset
            return energy, forces, torch.where(pbc.any(1)[:, None, None], values, math.nan)
        return energy, forces


def structure(atoms: int, energy: float, force: float, stress: float, periodic: bool,
              labels: dict[str, float]) -> Data:  # fmt: skip
    """A structure whose references differ from :class:`Fixed` by ``energy`` (eV), ``force``
    (every component, eV/Å) and ``stress``; ``labels``: its label weights (0: unlabelled,
    the reference then a NaN placeholder that must never be read)."""
    weight = {key: labels.get(key, 1.0) for key in ("energy", "forces", "stress")}
    placeholder = {key: math.nan if weight[key] == 0 else 1.0 for key in weight}
    cell = 4.0 * torch.eye(3, dtype=torch.float64)[None] if periodic else torch.zeros(1, 3, 3)
    return Data(
        z=torch.ones(atoms, dtype=torch.long),
        pos=torch.rand(atoms, 3, dtype=torch.float64),
        energy=torch.tensor([energy * placeholder["energy"]], dtype=torch.float64),
        forces=torch.full((atoms, 3), force * placeholder["forces"], dtype=torch.float64),
        stress=torch.full((1, 3, 3), stress * placeholder["stress"], dtype=torch.float64),
        cell=cell.double(),
        pbc=torch.full((1, 3), periodic),
        weight=torch.ones(1, dtype=torch.float64),
        **{f"{key}_weight": torch.tensor([value], dtype=torch.float64)
           for key, value in weight.items()},
    )  # fmt: skip


class Structures(InMemoryDataset):
    def __init__(self, structures: list[Data]) -> None:
        super().__init__(None)
        self._data, self.slices = self.collate(structures)


# (atoms, energy error, force error, stress error) of three periodic structures
ERRORS = [(2, -2.0, 0.5, 0.01), (4, 8.0, -1.0, 0.02), (5, 10.0, 2.0, -0.04)]


def expected_metrics(labelled: dict[str, list[bool]]) -> dict[str, float]:
    """The MAEs over the labelled structures and atoms only (absent where none)."""
    out = {}
    energy = [(e, n) for (n, e, _, _), keep in zip(ERRORS, labelled["energy"]) if keep]
    if energy:
        out["energy_mae"] = MEV * sum(abs(e) for e, _ in energy) / len(energy)
        out["energy_mae_per_atom"] = MEV * sum(abs(e) / n for e, n in energy) / len(energy)
    forces = [(f, n) for (n, _, f, _), keep in zip(ERRORS, labelled["forces"]) if keep]
    if forces:
        components = sum(3 * n for _, n in forces)
        out["forces_mae"] = MEV * sum(abs(f) * 3 * n for f, n in forces) / components
        out["forces_rmse"] = MEV * math.sqrt(sum(f * f * 3 * n for f, n in forces) / components)
    stress = [s for (_, _, _, s), keep in zip(ERRORS, labelled["stress"]) if keep]
    if stress:
        out["stress_mae"] = MEV * sum(abs(s) for s in stress) / len(stress)
    return out


LABELLINGS = {
    "all labelled": {},
    "energy missing on one": {"energy": [True, False, True]},
    "forces missing on two": {"forces": [False, True, False]},
    "stress missing on one": {"stress": [True, True, False]},
    "no energy at all": {"energy": [False, False, False]},
    "no stress at all": {"stress": [False, False, False]},
    "each missing one": {"energy": [False, True, True], "forces": [True, False, True],
                         "stress": [True, True, False]},
}  # fmt: skip


def dataset_for(labelling: dict[str, list[bool]]) -> tuple[Structures, dict[str, list[bool]]]:
    labelled = {key: labelling.get(key, [True] * 3) for key in ("energy", "forces", "stress")}
    structures = [
        structure(n, e, f, s, True, {key: float(labelled[key][i]) for key in labelled})
        for i, (n, e, f, s) in enumerate(ERRORS)
    ]
    return Structures(structures), labelled


@pytest.mark.parametrize("labelling", LABELLINGS.values(), ids=LABELLINGS.keys())
def test_evaluation_metrics_count_the_labelled_items_only(labelling):
    dataset, labelled = dataset_for(labelling)
    task = PotentialTask(stress_weight=1.0)
    metrics = task.eval_metrics(task.eval_sums(Fixed(), dataset[torch.arange(3)]))
    assert metrics == pytest.approx(expected_metrics(labelled), rel=1e-12)
    assert all(math.isfinite(value) for value in metrics.values())


@pytest.mark.parametrize("labelling", LABELLINGS.values(), ids=LABELLINGS.keys())
def test_training_step_sums_and_loss_use_the_labelled_items_only(labelling):
    dataset, labelled = dataset_for(labelling)
    batch = Batch.from_data_list([dataset[i] for i in range(3)])
    task = PotentialTask(energy_weight=1.0, forces_weight=10.0, loss="l1", stress_weight=100.0)
    model = Fixed()
    loss, sums = task.step(model, batch, loss_scale=1.0)
    assert set(sums) == set(task.sum_names)
    assert math.isfinite(float(loss.detach()))
    loss.backward()
    assert math.isfinite(float(model.offset.grad))
    metrics = task.train_metrics({name: float(value) for name, value in sums.items()})
    expected = expected_metrics(labelled)
    for name in ("energy_mae_per_atom", "forces_mae", "stress_mae"):
        if name in expected:
            assert metrics[f"train_{name}"] == pytest.approx(expected[name], rel=1e-12)
        else:
            assert f"train_{name}" not in metrics
    # the loss by hand: per structure, the weighted terms of its labels only
    by_hand = 0.0
    for i, (n, e, f, s) in enumerate(ERRORS):
        by_hand += labelled["energy"][i] * abs(e) / n + 10.0 * labelled["forces"][i] * abs(f)
        by_hand += 100.0 * labelled["stress"][i] * abs(s) * 64.0 / n  # the virial per atom
    assert float(loss.detach()) == pytest.approx(by_hand / 3, rel=1e-12)


def test_data_without_label_weights_counts_every_structure():
    """Older data has no ``energy_weight`` (nor other weights): every structure counts."""
    dataset, labelled = dataset_for({})
    for key in ("energy_weight", "forces_weight", "stress_weight"):
        del dataset._data[key]
        del dataset.slices[key]
    task = PotentialTask(stress_weight=1.0)
    metrics = task.eval_metrics(task.eval_sums(Fixed(), dataset[torch.arange(3)]))
    assert metrics == pytest.approx(expected_metrics(labelled), rel=1e-12)


def test_stress_of_a_file_mixing_molecules_and_crystals():
    """Molecules have no stress: the stress MAE is that of the crystals, computed even in a
    batch that holds both."""
    crystal = structure(4, 1.0, 0.5, 0.03, True, {})
    molecule = structure(3, 1.0, 0.5, 0.0, False, {"stress": 0.0})
    dataset = Structures([molecule, crystal, molecule])
    task = PotentialTask(stress_weight=1.0)
    sums = task.eval_sums(Fixed(), dataset[torch.arange(3)])
    assert sums["stress_components"] == 9.0
    assert task.eval_metrics(sums)["stress_mae"] == pytest.approx(30.0, rel=1e-12)


MIXES = {
    "crystals and molecules": [True, False, True, False],
    "molecules only": [False, False],
    "crystals only": [True, True],
    "one crystal among molecules": [False, True, False],
}


@pytest.mark.parametrize("periodic", MIXES.values(), ids=MIXES.keys())
def test_stress_is_trained_on_the_periodic_structures_of_every_batch(periodic):
    """The loss of a batch mixing crystals and molecules (whose stress labels, even when
    given, are not read) equals the masked loss by hand; its gradients are finite."""
    errors = [(2 + i, 0.5 * (i + 1), 0.1 * (i + 1), 0.01 * (i + 1)) for i in range(len(periodic))]
    batch = Batch.from_data_list([
        structure(n, e, f, s, crystal, {}) for (n, e, f, s), crystal in zip(errors, periodic)
    ])  # fmt: skip
    task = PotentialTask(energy_weight=1.0, forces_weight=10.0, loss="l1", stress_weight=100.0)
    model = Fixed()
    loss, sums = task.step(model, batch, loss_scale=1.0)
    by_hand = sum(
        abs(e) / n + 10.0 * abs(f) + crystal * 100.0 * abs(s) * 64.0 / n
        for (n, e, f, s), crystal in zip(errors, periodic)
    )  # fmt: skip
    assert float(loss.detach()) == pytest.approx(by_hand / len(periodic), rel=1e-12)
    assert float(sums["stress_components"]) == 9 * sum(periodic)
    loss.backward()
    assert math.isfinite(float(model.offset.grad))


def test_a_mixed_batch_trains_the_stress_of_the_equivariant_net():
    """With the model itself: the stress term of a mixed batch is that of its crystals
    alone, and the gradients are finite."""
    from e3nn_pyg.models import EquivariantNet

    torch.manual_seed(0)
    model = EquivariantNet("4x0e + 2x1o", num_layers=2, cutoff=3.0, num_basis=4,
                           radial_hidden=8, derivative=True).double()  # fmt: skip
    crystal = structure(3, 1.0, 0.5, 0.03, True, {})
    crystal.pos = crystal.pos * 4.0  # inside its cell
    molecule = structure(3, 1.0, 0.5, 0.03, False, {})  # a stress label, never read
    task = PotentialTask(energy_weight=0.0, forces_weight=0.0, stress_weight=1.0)
    mixed, _ = task.step(model, Batch.from_data_list([molecule, crystal, molecule]), 1.0)
    alone, _ = task.step(model, Batch.from_data_list([crystal]), 1.0)
    torch.testing.assert_close(mixed, alone / 3, atol=1e-12, rtol=0)
    assert float(alone.detach()) > 0
    mixed.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    ("forces_weight", "unlabelled", "refusal"),
    [(1.0, "forces", "no structure of the validation split has forces"),
     (0.0, "energy", "no structure of the validation split has energy")],
)  # fmt: skip
def test_a_split_without_the_label_of_the_score_is_refused(forces_weight, unlabelled, refusal):
    dataset, _ = dataset_for({unlabelled: [False, False, False]})
    task = PotentialTask(forces_weight=forces_weight, energy_weight=1.0)
    with pytest.raises(ConfigError, match=refusal):
        task.check_labels(dataset[torch.arange(3)], "validation")
    other = "energy" if unlabelled == "forces" else "forces"
    labelled, _ = dataset_for({other: [False, False, False]})
    task.check_labels(labelled[torch.arange(3)], "validation")


def test_the_score_and_its_unit_come_from_the_declared_metric():
    forces, energy = PotentialTask(), PotentialTask(forces_weight=0.0)
    assert (forces.score_name, forces.report_unit) == ("forces MAE", "meV/Å")
    assert (energy.score_name, energy.report_unit) == ("energy MAE per atom", "meV/atom")
    metrics = {"forces_mae": 2.0, "energy_mae_per_atom": 3.0}
    assert forces.score(metrics) == 2.0 and energy.score(metrics) == 3.0
    assert forces.format_metrics(metrics) == "energy MAE per atom 3.00 meV/atom, forces MAE " \
        "2.00 meV/Å"  # fmt: skip


def _drop_labels(structures, every: dict[str, int]) -> list:
    """The structures with ``key`` removed from every ``every[key]``-th (from the 2nd)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    for i, atoms in enumerate(structures):
        results = dict(atoms.calc.results)
        for key, period in every.items():
            if i % period == 1:
                results.pop(key, None)
        atoms.calc = SinglePointCalculator(atoms, **results)
    return structures


@pytest.mark.parametrize(
    "every",
    [{}, {"energy": 3}, {"forces": 4}, {"energy": 2, "forces": 3}],
    ids=["all labelled", "a third without energy", "a quarter without forces", "both"],
)
def test_training_on_a_file_with_missing_labels(tmp_path, every):
    """A run on a file where some structures lack an energy or forces: finite metrics, and
    the validation counts only the labelled structures and atoms."""
    ase_io = pytest.importorskip("ase.io")
    from e3nn_pyg.datasets.ase_data import ETHANOL_DIR
    from e3nn_pyg.training import TrainConfig, Trainer, fit_target_stats, load_data
    from e3nn_pyg.training.run import model_config

    structures = _drop_labels(ase_io.read(ETHANOL_DIR / "train.xyz", index=":24"), every)
    ase_io.write(tmp_path / "mixed.xyz", structures)
    model = {"hidden_Rs": "4x0e + 2x1o", "num_layers": 2, "cutoff": 4.0, "num_basis": 4,
             "radial_hidden": 8}  # fmt: skip
    config = TrainConfig.from_dict({
        "data": str(tmp_path / "mixed.xyz"), "data_root": str(tmp_path / "cache"),
        "out": str(tmp_path / "run"), "model": model, "epochs": 1, "batch_size": 8,
        "progress": False, "split": [0.5, 0.25, 0.25],
    })  # fmt: skip
    data = load_data(config, log=False)
    stats = fit_target_stats(data, config.resolved_readout)
    arguments = model_config("equivariant-net", config, stats, 10.0)
    trainer = Trainer("m", "equivariant-net", arguments, data, stats, config, tmp_path / "m", 1e-3,
                      lambda line: None)  # fmt: skip
    record = trainer.fit().history[0]
    assert all(math.isfinite(value) for value in record.values())
    val = data.subset("val")
    index = torch.as_tensor(val.indices())
    has = {key: val._data[f"{key}_weight"][index] != 0 if f"{key}_weight" in val._data
           else torch.ones(len(val), dtype=torch.bool) for key in ("energy", "forces")}  # fmt: skip
    atoms = torch.as_tensor([val[i].num_nodes for i in range(len(val))])
    sums = data.task.eval_sums(Fixed(), val)
    assert sums["energy_structures"] == int(has["energy"].sum())
    assert sums["forces_components"] == 3 * int(atoms[has["forces"]].sum())

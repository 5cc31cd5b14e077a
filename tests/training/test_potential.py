"""Training an interatomic potential on energies and forces read from a file: the loop, the
EMA of the weights, the metrics of the run and of `evaluate`, exact resume mid-epoch."""

import json
import math

import pytest
import torch

from e3nn_pyg.cli import main
from e3nn_pyg.datasets.ase_data import ETHANOL_DIR
from e3nn_pyg.training import (
    ConfigError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    evaluate,
    fit_target_stats,
    load_checkpoint,
    load_data,
    train,
)
from e3nn_pyg.training.run import model_config

ase_io = pytest.importorskip("ase.io")


@pytest.fixture(scope="module")
def ethanol(tmp_path_factory):
    """40 training and 12 test structures of the shipped ethanol data."""
    folder = tmp_path_factory.mktemp("ethanol")
    train_file, test_file = folder / "train.xyz", folder / "test.xyz"
    ase_io.write(train_file, ase_io.read(ETHANOL_DIR / "train.xyz", index=":40"))
    ase_io.write(test_file, ase_io.read(ETHANOL_DIR / "test_MD.xyz", index=":12"))
    return train_file, test_file


POTENTIAL = dict(
    model={
        "hidden_Rs": "4x0e + 2x1o",
        "num_layers": 2,
        "cutoff": 4.0,
        "num_basis": 4,
        "radial_hidden": 8,
    },
    baseline={"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_gaussians": 8},
    epochs=2,
    batch_size=8,
    progress=False,
)


def config_for(ethanol, tmp_path, **overrides) -> TrainConfig:
    train_file, test_file = ethanol
    files = {"data": str(train_file), "test_data": str(test_file)}
    folders = {"data_root": str(tmp_path / "cache"), "out": str(tmp_path / "run")}
    values = {**POTENTIAL, **files, **folders, **overrides}
    return TrainConfig.from_dict(values)


def make_trainer(config, directory, kind="equivariant") -> Trainer:
    data = load_data(config, log=False)
    stats = fit_target_stats(data, config.resolved_readout)
    lr = config.lr if kind == "equivariant" else config.baseline["lr"]
    arguments = model_config(kind, config, stats, 10.0)
    return Trainer(kind, kind, arguments, data, stats, config, directory, lr, lambda _: None)


def test_the_split_takes_validation_from_the_training_file(ethanol, tmp_path):
    data = load_data(config_for(ethanol, tmp_path, split=[0.65, 0.25, 0.1]), log=False)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 12)
    assert data.task.forces and data.subset("test")[0].forces.shape == (9, 3)
    stats = fit_target_stats(data, "add")
    forces = torch.cat([data.subset("train")[i].forces for i in range(30)]).double()
    assert stats.std == pytest.approx(math.sqrt(float(forces.pow(2).mean())), rel=1e-12)
    energies = data.targets("train")
    fitted = stats.composition(
        data.subset("train")._data.z[:9].repeat(30), torch.arange(30).repeat_interleave(9), 30
    )
    assert float((fitted - energies).mean()) == pytest.approx(0.0, abs=1e-3)  # eV


@pytest.mark.parametrize("kind", ["equivariant", "schnet"])
def test_training_on_forces_learns(ethanol, tmp_path, kind):
    config = config_for(ethanol, tmp_path, epochs=4)
    result = make_trainer(config, tmp_path / kind, kind).fit()
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.best_val_mae == min(record["val_mae"] for record in history)
    assert all(record["val_mae"] == record["val_forces_mae"] for record in history)
    energy, forces = result.model(*_first_structure(ethanol))
    assert energy.shape == (1, 1) and forces.shape == (9, 3)


def _first_structure(ethanol):
    atoms = ase_io.read(ethanol[1], index=0)
    return torch.tensor(atoms.numbers), torch.tensor(atoms.positions, dtype=torch.float32)


def test_best_checkpoint_holds_the_averaged_weights(ethanol, tmp_path):
    config = config_for(ethanol, tmp_path, epochs=1, ema_decay=0.5)
    trainer = make_trainer(config, tmp_path / "ema")
    trainer.fit()
    best = load_checkpoint(trainer.best_path)["model_state"]
    last = load_checkpoint(trainer.last_path)
    shadow = last["ema"]["shadow"]
    names = [name for name, _ in trainer._build(lambda: _model(trainer)).named_parameters()]
    for name, average in zip(names, shadow, strict=True):
        assert torch.equal(best[name], average)
    assert any(not torch.equal(last["model_state"][n], best[n]) for n in names)


def _model(trainer):
    from e3nn_pyg.training import build_model

    return build_model(trainer.kind, trainer.model_config)


def test_ctrl_c_mid_epoch_resumes_exactly_with_the_ema(ethanol, tmp_path, monkeypatch):
    from test_loop import assert_same_training, ctrl_c_at_steps

    config = config_for(ethanol, tmp_path, epochs=2)  # 36 training structures: 5 batches
    straight = make_trainer(config, tmp_path / "straight").fit()
    with monkeypatch.context() as patch:
        ctrl_c_at_steps(patch, {7})
        with pytest.raises(TrainingInterrupted):
            make_trainer(config, tmp_path / "interrupted").fit()
    progress = load_checkpoint(tmp_path / "interrupted" / "last.pt")["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 2)
    resumed = make_trainer(config, tmp_path / "interrupted").fit(resume=True)
    assert_same_training(resumed, straight)
    for a, b in zip(resumed.history, straight.history, strict=True):
        assert a["val_forces_mae"] == b["val_forces_mae"]


def test_run_metrics_and_evaluate_agree(ethanol, tmp_path, capsys):
    config = config_for(ethanol, tmp_path, baseline={**POTENTIAL["baseline"], "name": "schnet"})
    metrics = train(config, log=lambda _: None)
    ours = metrics["results"]["equivariant_net"]
    for key in ("energy_mae", "energy_mae_per_atom", "forces_mae", "forces_rmse"):
        assert math.isfinite(ours[key]) and ours[key] > 0
    assert set(ours["forces_mae_per_element"]) == {"H", "C", "O"}
    assert metrics["results"]["schnet"]["forces_mae"] > 0
    assert (tmp_path / "run" / "parity_forces.png").exists()

    checkpoint = tmp_path / "run" / "equivariant_net" / "best.pt"
    status = main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(ethanol[1]),
                   "--json"])  # fmt: skip
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    for key in ("energy_mae", "energy_mae_per_atom", "forces_mae", "forces_rmse"):
        assert printed[key] == pytest.approx(ours[key], rel=1e-9)
    assert printed["num_structures"] == 12
    assert evaluate(checkpoint, split="val", log=lambda _: None)["num_structures"] == 4


def test_potential_settings_are_checked_before_training(ethanol, tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        config_for(ethanol, tmp_path, dataset="qm9")
    with pytest.raises(ConfigError, match="test_data needs data"):
        TrainConfig.from_dict({"test_data": "x.xyz"})
    with pytest.raises(ConfigError, match="both 0"):
        config_for(ethanol, tmp_path, energy_weight=0.0, forces_weight=0.0)
    with pytest.raises(ConfigError, match="ema_decay"):
        config_for(ethanol, tmp_path, ema_decay=1.5)
    no_forces = tmp_path / "no_forces.xyz"
    no_forces.write_text('1\nenergy=-1.0 pbc="F F F"\nH 0 0 0\n1\nenergy=-2.0\nH 0 0 0\n')
    with pytest.raises(ConfigError, match="forces"):
        load_data(config_for(ethanol, tmp_path, data=str(no_forces), test_data=None), log=False)
    status = main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--data", "x"])
    assert status == 2


@pytest.fixture(scope="module")
def copper(tmp_path_factory):
    """24 strained and rattled copper crystals with EMT energies, forces and stresses."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    generator = torch.Generator().manual_seed(0)
    structures = []
    for i in range(24):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)  # 4 atoms
        strain = torch.eye(3, dtype=torch.float64) + 0.02 * (
            torch.rand(3, 3, generator=generator, dtype=torch.float64) - 0.5
        )
        strain = strain.numpy()
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                   "stress": atoms.get_stress()}  # fmt: skip
        atoms.calc = SinglePointCalculator(atoms, **results)
        structures.append(atoms)
    path = tmp_path_factory.mktemp("copper") / "cu.xyz"
    ase_io.write(path, structures)
    return path


def test_periodic_training_with_stress(copper, tmp_path):
    values = {**POTENTIAL, "data": str(copper), "split": [0.5, 0.25, 0.25], "epochs": 2,
              "model": {**POTENTIAL["model"], "cutoff": 3.0},
              "data_root": str(tmp_path / "cache"), "out": str(tmp_path / "run")}  # fmt: skip
    metrics = train(TrainConfig.from_dict(values), log=lambda _: None)
    ours = metrics["results"]["equivariant_net"]
    assert math.isfinite(ours["stress_mae"]) and ours["stress_mae"] > 0
    history = load_checkpoint(tmp_path / "run" / "equivariant_net" / "last.pt")["progress"]
    assert "train_stress_mae" in history["history"][0]
    with pytest.raises(ConfigError, match="SchNet baseline takes molecules only"):
        baseline = {**POTENTIAL["baseline"], "name": "schnet"}
        train(TrainConfig.from_dict({**values, "baseline": baseline, "out": str(tmp_path / "b")}),
              log=lambda _: None)  # fmt: skip


def test_evaluate_leaves_out_isolated_atom_entries(ethanol, tmp_path):
    config = config_for(ethanol, tmp_path, epochs=1)
    train(config, log=lambda _: None)
    mixed = tmp_path / "mixed.xyz"
    isolated = ase_io.read(ETHANOL_DIR / "isolated_atoms.xyz", index=":")
    ase_io.write(mixed, isolated + ase_io.read(ethanol[1], index=":"))
    checkpoint = tmp_path / "run" / "equivariant_net" / "best.pt"
    with_entries = evaluate(checkpoint, data=mixed, log=lambda _: None)
    plain = evaluate(checkpoint, data=ethanol[1], log=lambda _: None)
    assert with_entries["num_structures"] == plain["num_structures"] == 12
    assert with_entries["forces_mae"] == pytest.approx(plain["forces_mae"], rel=1e-12)


def test_ema_decay_must_lie_between_0_and_1():
    from e3nn_pyg.training.ema import ExponentialMovingAverage

    for decay in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="EMA decay must lie in"):
            ExponentialMovingAverage(torch.nn.Linear(2, 1), decay)

"""Training an interatomic potential on energies and forces read from a file: the loop, the
EMA of the weights, the metrics of the run and of `evaluate`, exact resume mid-epoch."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from e3nn_pyg.cli import main
from e3nn_pyg.datasets.ase_data import ETHANOL_DIR
from e3nn_pyg.training import (
    MODEL_KINDS,
    ConfigError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    evaluate,
    fit_target_stats,
    format_table,
    load_checkpoint,
    load_data,
    model_from_checkpoint,
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


def make_trainer(config, directory, kind="equivariant-net") -> Trainer:
    data = load_data(config, log=False)
    stats = fit_target_stats(data, config.resolved_readout)
    lr = MODEL_KINDS[kind].learning_rate(config)
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


@pytest.mark.parametrize("kind", ["equivariant-net", "schnet"])
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


# -- a checkpoint on another machine; elements it was not trained on -------------------------
def _with_nitrogen(source, path, count=2):
    """Ethanol structures whose first carbon is a nitrogen, with energies and forces."""
    from ase import Atoms

    structures = []
    for atoms in ase_io.read(source, index=f":{count}"):
        numbers = atoms.numbers.copy()
        numbers[list(numbers).index(6)] = 7
        labelled = Atoms(numbers, positions=atoms.positions)
        labelled.info["energy"] = atoms.get_potential_energy()
        labelled.arrays["forces"] = atoms.get_forces()
        structures.append(labelled)
    ase_io.write(path, structures, format="extxyz")


def _write_xyz(atoms, path):
    lines = [str(len(atoms)), "ethanol"]
    lines += [f"{s} {x:.10f} {y:.10f} {z:.10f}" for s, (x, y, z) in
              zip(atoms.get_chemical_symbols(), atoms.positions)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ethanol_potential(ethanol, tmp_path_factory):
    """A potential trained on private copies of the ethanol files (H, C and O), its metrics,
    and structures with nitrogen."""
    folder = tmp_path_factory.mktemp("potential")
    (folder / "files").mkdir()
    copies = (shutil.copy(ethanol[0], folder / "files" / "train.xyz"),
              shutil.copy(ethanol[1], folder / "files" / "test.xyz"))  # fmt: skip
    metrics = train(config_for(copies, folder, epochs=1), log=lambda _: None)
    _with_nitrogen(ethanol[1], folder / "nitrogen.xyz")
    return folder / "run" / "equivariant_net" / "best.pt", folder / "nitrogen.xyz", metrics


def test_a_checkpoint_evaluates_and_predicts_without_the_files_of_its_run(
    ethanol, ethanol_potential, tmp_path, capsys
):
    best, _, metrics = ethanol_potential
    run = best.parents[2]  # the folder with the run, its data files and their cache
    checkpoint = shutil.copy(best, tmp_path / "model.pt")  # on another machine
    other = shutil.copy(ethanol[1], tmp_path / "other.xyz")
    molecule = ase_io.read(ethanol[1], index=0)
    _write_xyz(molecule, tmp_path / "molecule.xyz")
    run.rename(run.with_name(run.name + "_gone"))  # the run's files are gone
    try:
        capsys.readouterr()
        status = main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(other),
                       "--data-root", str(tmp_path / "cache"), "--json"])  # fmt: skip
        assert status == 0
        printed = json.loads(capsys.readouterr().out)
        ours = metrics["results"]["equivariant_net"]
        for key in ("energy_mae", "forces_mae", "forces_rmse"):
            assert printed[key] == pytest.approx(ours[key], rel=1e-9)
        status = main(["predict", "--checkpoint", str(checkpoint),
                       "--xyz", str(tmp_path / "molecule.xyz")])  # fmt: skip
    finally:
        run.with_name(run.name + "_gone").rename(run)
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0 and lines[0] == "index,comment,energy_eV"
    model = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    z = torch.as_tensor(molecule.numbers, dtype=torch.long)
    expected, _ = model(z, torch.as_tensor(molecule.positions, dtype=torch.float32))
    assert float(lines[1].split(",")[2]) == pytest.approx(float(expected.detach()), abs=1e-5)


def _nitrogen_inputs(path):
    atoms = ase_io.read(path, index=0)
    z = torch.as_tensor(atoms.numbers, dtype=torch.long)
    pos = torch.as_tensor(atoms.positions, dtype=torch.float32)
    return z, pos, torch.zeros(len(z), dtype=torch.long)


# (exporting takes seconds; tests/models/test_species.py checks the program's refusal fast)
@pytest.mark.parametrize(
    "command", ["predict", "evaluate", pytest.param("export", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("allowed", [False, True])
def test_elements_unseen_in_training_are_refused_unless_allowed(
    ethanol_potential, tmp_path, capsys, command, allowed
):
    checkpoint, nitrogen, _ = ethanol_potential
    argv = [command, "--checkpoint", str(checkpoint)]
    argv += {"predict": ["--xyz", str(nitrogen)],
             "evaluate": ["--data", str(nitrogen), "--data-root", str(tmp_path)],
             "export": ["--out", str(tmp_path / "model.pt2")]}[command]  # fmt: skip
    capsys.readouterr()
    status = main(argv + (["--allow-unseen-elements"] if allowed else []))
    err = capsys.readouterr().err
    if command == "export":  # the program itself refuses, or takes, nitrogen
        assert status == 0
        program = torch.export.load(tmp_path / "model.pt2").module()
        if allowed:
            assert torch.isfinite(program(*_nitrogen_inputs(nitrogen))[0]).all()  # energy
        else:
            with pytest.raises(Exception, match="not trained on"):
                program(*_nitrogen_inputs(nitrogen))
    elif allowed:
        assert status == 0, err
    else:
        assert status == 2 and len(err.strip().splitlines()) == 1
        assert err.startswith("e3nn-pyg: error: ") and "Traceback" not in err
        for piece in ("not trained on: N (Z=7)", "trained on H, C, O", "--allow-unseen-elements"):
            assert piece in err


# -- test and evaluation files where some structures lack a label --------------------------
ALL = 1  # a label dropped from every structure
ALL_BUT_ONE = 0  # from every structure but the first


def _drop(source, path, every: dict[str, int]):
    """The ethanol test structures with ``key`` removed from every ``every[key]``-th one
    (from the 2nd; ``ALL``, ``ALL_BUT_ONE``); returns which structures keep an energy and
    forces."""
    from ase.calculators.singlepoint import SinglePointCalculator

    structures = ase_io.read(source, index=":")
    kept = {"energy": [], "forces": []}
    for i, atoms in enumerate(structures):
        results = dict(atoms.calc.results)
        for key in kept:
            period = every.get(key)
            if period in (ALL, ALL_BUT_ONE):
                drop = period == ALL or i > 0
            else:
                drop = period is not None and i % period == 1
            if drop:
                results.pop(key)
            kept[key].append(not drop)
        atoms.calc = SinglePointCalculator(atoms, **results)
    ase_io.write(path, structures, format="extxyz")
    return structures, kept


def _maes_by_hand(checkpoint, structures, kept) -> dict[str, float]:
    """The energy and forces MAEs (meV, meV/Å) of the labelled structures, one at a time."""
    model = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    energy_errors, force_errors = [], []
    for atoms, has_energy, has_forces in zip(structures, kept["energy"], kept["forces"]):
        z = torch.as_tensor(atoms.numbers, dtype=torch.long)
        with torch.no_grad():  # (the forces all the same)
            energy, forces = model(z, torch.as_tensor(atoms.positions, dtype=torch.float32))
        if has_energy:
            energy_errors.append(abs(float(energy) - atoms.calc.results["energy"]))
        if has_forces:
            reference = torch.as_tensor(atoms.calc.results["forces"], dtype=torch.float64)
            force_errors.append((forces.double() - reference).abs().flatten())
    maes = {}
    if energy_errors:
        maes["energy_mae"] = 1000.0 * sum(energy_errors) / len(energy_errors)
    if force_errors:
        maes["forces_mae"] = 1000.0 * float(torch.cat(force_errors).mean())
    return maes


SCORES = {1.0: ("forces_mae", "meV/Å", "forces"),
          0.0: ("energy_mae_per_atom", "meV/atom", "energy per atom")}  # fmt: skip
# (labels dropped from test structures, see _drop; forces_weight of the run). A file where
# no structure has an energy is refused by its reader (see the test after this one).
LABELLED_FILES = {
    "energies and forces": ({}, 1.0),
    "energies only": ({"forces": ALL}, 1.0),
    "forces and one energy": ({"energy": ALL_BUT_ONE}, 1.0),
    "a few without each": ({"energy": 3, "forces": 4}, 1.0),
    "energies only, trained on energies": ({"forces": ALL}, 0.0),
    "a few without each, trained on energies": ({"energy": 3, "forces": 4}, 0.0),
}


@pytest.mark.parametrize(("every", "forces_weight"), LABELLED_FILES.values(),
                         ids=LABELLED_FILES.keys())  # fmt: skip
def test_the_report_of_a_partly_labelled_test_file(ethanol, tmp_path, every, forces_weight):
    """Each metric over the structures (atoms) with its label, absent without any; the
    table's test MAE the task's score in its unit, '-' when no test structure has it."""
    structures, kept = _drop(ethanol[1], tmp_path / "test.xyz", every)
    config = config_for((ethanol[0], tmp_path / "test.xyz"), tmp_path, epochs=1,
                        forces_weight=forces_weight)  # fmt: skip
    metrics = train(config, log=lambda _: None)
    score, unit, target = SCORES[forces_weight]
    ours = metrics["results"]["equivariant_net"]
    expected = _maes_by_hand(tmp_path / "run" / "equivariant_net" / "best.pt", structures, kept)
    for name in ("energy_mae", "forces_mae"):
        assert (name in ours) == (name in expected)
        if name in expected:
            assert ours[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-3)
    assert ours["test_mae"] == ours.get(score)
    assert (metrics["mae_unit"], metrics["target"]) == (unit, target)
    linear = metrics["results"]["per_element_linear"]
    assert ("energy_mae" in linear) == any(kept["energy"])
    assert all(math.isfinite(v) for r in metrics["results"].values() for v in
               (r.get("test_mae"), r.get("energy_mae")) if v is not None)  # fmt: skip
    row = next(line for line in format_table(metrics).splitlines() if "EquivariantNet" in line)
    assert (" - " in row) == (ours["test_mae"] is None)
    assert (ours["test_mae"] is None) or f" {unit}" in row
    plots = {Path(path).name for path in metrics["plots"]}
    if plots:  # matplotlib installed
        assert ("parity_energy.png" in plots) == any(kept["energy"])
        assert ("parity_forces.png" in plots) == any(kept["forces"])
    rows = (tmp_path / "run" / "test_predictions.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] != "" for row in rows] == kept["energy"]
    evaluated = evaluate(tmp_path / "run" / "equivariant_net" / "best.pt",
                         data=tmp_path / "test.xyz", log=lambda _: None)  # fmt: skip
    for name in ("energy_mae", "energy_mae_per_atom", "forces_mae", "forces_rmse"):
        assert (name in evaluated) == (name in ours)
        if name in ours:
            assert evaluated[name] == pytest.approx(ours[name], rel=1e-9)


@pytest.mark.parametrize("every", [{"energy": ALL}, {"energy": ALL, "forces": ALL}],
                         ids=["forces only", "no labels"])  # fmt: skip
def test_a_test_file_without_energies_is_refused_in_one_line(ethanol, tmp_path, every):
    _drop(ethanol[1], tmp_path / "test.xyz", every)
    config = config_for((ethanol[0], tmp_path / "test.xyz"), tmp_path, epochs=1)
    with pytest.raises(ConfigError, match="structure 0 has no energy 'energy'"):
        train(config, log=lambda _: None)


def test_training_on_a_file_mixing_crystals_and_molecules(copper, ethanol, tmp_path):
    """Every batch mixes copper crystals (with stresses) and ethanol molecules: the stress
    of the crystals is trained in every epoch, and reported, finite."""
    mixed = tmp_path / "mixed.xyz"
    crystals, molecules = ase_io.read(copper, index=":12"), ase_io.read(ethanol[0], index=":12")
    ase_io.write(mixed, [s for pair in zip(crystals, molecules) for s in pair])
    values = {**POTENTIAL, "data": str(mixed), "split": [0.5, 0.25, 0.25], "epochs": 2,
              "model": {**POTENTIAL["model"], "cutoff": 3.0}, "seed": 1,
              "data_root": str(tmp_path / "cache"), "out": str(tmp_path / "run")}  # fmt: skip
    metrics = train(TrainConfig.from_dict(values), log=lambda _: None)
    ours = metrics["results"]["equivariant_net"]
    for key in ("stress_mae", "forces_mae", "energy_mae"):
        assert math.isfinite(ours[key]) and ours[key] > 0
    history = load_checkpoint(tmp_path / "run" / "equivariant_net" / "last.pt")["progress"]
    for record in history["history"]:
        assert math.isfinite(record["train_stress_mae"]) and math.isfinite(record["train_loss"])
    crystals_only = tmp_path / "crystals.xyz"
    ase_io.write(crystals_only, crystals)
    best = tmp_path / "run" / "equivariant_net" / "best.pt"
    both, alone = (evaluate(best, data=path, log=lambda _: None) for path in (mixed, crystals_only))
    assert both["stress_mae"] == pytest.approx(alone["stress_mae"], rel=1e-9)


@pytest.mark.slow
def test_compiled_training_follows_the_eager_training(ethanol, tmp_path):
    """``compile=True`` (the training command's ``--compile``) trains the same model, up
    to rounding: float64, two epochs of force training of the default model kind. (AdamW
    turns the rounding noise of vanishing gradients into steps of the learning rate's
    size, so the runs drift apart at about 1e-8 after a few steps.)"""
    config = config_for(ethanol, tmp_path, epochs=2, dtype="float64")
    eager = make_trainer(config, tmp_path / "eager").fit()
    compiled_config = config_for(ethanol, tmp_path, epochs=2, dtype="float64", compile=True)
    compiled = make_trainer(compiled_config, tmp_path / "compiled").fit()
    for a, b in zip(compiled.history, eager.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_forces_mae"] == pytest.approx(b["val_forces_mae"], rel=1e-6)
    parameters = dict(eager.model.named_parameters())
    for name, value in compiled.model.named_parameters():
        torch.testing.assert_close(value, parameters[name], rtol=1e-5, atol=1e-8, msg=name)

"""The training loop: it learns, checkpoints, stops (epochs, time, patience), survives
Ctrl-C and resumes to the very model an uninterrupted run gives."""

import dataclasses
import math
import signal
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from e3nn_pyg.training import (
    MODEL_KINDS,
    ConfigError,
    Trainer,
    TrainingInterrupted,
    fit_target_stats,
    load_checkpoint,
    load_data,
)
from e3nn_pyg.training.loop import Progress, TrainingDiverged
from e3nn_pyg.training.run import model_config


def make_trainer(config, directory: Path, kind: str = "equivariant-net", log=None) -> Trainer:
    data = load_data(config, log=False)
    stats = fit_target_stats(data, config.resolved_readout)
    lines = []
    trainer = Trainer(
        kind, kind, model_config(kind, config, stats, 10.0), data, stats, config, directory,
        MODEL_KINDS[kind].learning_rate(config), log or lines.append,
    )  # fmt: skip
    trainer.lines = lines
    return trainer


def assert_same_parameters(a, b) -> None:
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for key, value in a.items():  # tensors, and EquivariantNet's config
        assert torch.equal(value, b[key]) if torch.is_tensor(value) else value == b[key]


@pytest.mark.parametrize("kind", ["equivariant-net", "schnet"])
def test_fit_learns_and_writes_checkpoints(tiny_config, tmp_path, kind):
    config = tiny_config(epochs=3, num_molecules=80)
    trainer = make_trainer(config, tmp_path / kind, kind)
    result = trainer.fit()
    assert result.epochs == 3 and len(result.history) == 3 and result.stop_reason == "epochs"
    losses = [record["train_loss"] for record in result.history]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    assert result.best_val_mae == min(record["val_mae"] for record in result.history)
    assert (tmp_path / kind / "best.pt").exists() and (tmp_path / kind / "last.pt").exists()
    last = load_checkpoint(tmp_path / kind / "last.pt")
    assert last["progress"]["epoch"] == 3 and "optimizer" in last
    assert any("val MAE" in line and "meV" in line for line in trainer.lines)


def test_ctrl_c_saves_and_resume_gives_the_uninterrupted_model(tiny_config, tmp_path):
    config = tiny_config(epochs=3)
    straight = make_trainer(config, tmp_path / "straight").fit()

    def interrupt_after_first_epoch(line: str) -> None:
        if "epoch   1" in line:
            raise KeyboardInterrupt

    trainer = make_trainer(config, tmp_path / "interrupted", log=interrupt_after_first_epoch)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert info.value.checkpoint == tmp_path / "interrupted" / "last.pt"
    assert load_checkpoint(info.value.checkpoint)["progress"]["epoch"] == 1

    resumed = make_trainer(config, tmp_path / "interrupted").fit(resume=True)
    assert resumed.epochs == 3
    assert [r["val_mae"] for r in resumed.history] == [r["val_mae"] for r in straight.history]
    assert_same_parameters(resumed.model, straight.model)


def test_a_finished_run_resumes_only_with_a_larger_budget(tiny_config, tmp_path):
    make_trainer(tiny_config(epochs=1), tmp_path).fit()
    again = make_trainer(tiny_config(epochs=1), tmp_path).fit(resume=True)
    assert again.epochs == 1
    longer = make_trainer(tiny_config(epochs=2), tmp_path).fit(resume=True)
    assert longer.epochs == 2 and len(longer.history) == 2


def test_time_budget_stops_training(tiny_config, tmp_path):
    config = tiny_config(epochs=1000, time_budget=0.3)
    result = make_trainer(config, tmp_path).fit()
    assert result.stop_reason == "time budget" and result.epochs < 1000
    assert result.seconds < 30


def test_early_stopping(tiny_config, tmp_path):
    trainer = make_trainer(tiny_config(epochs=50, patience=2), tmp_path)
    values = iter([5.0, 4.0, 6.0, 7.0, 1.0])
    trainer._validate = lambda state: {"mae": next(values)}
    result = trainer.fit()
    assert result.stop_reason == "early stopping"
    assert result.epochs == 4 and result.best_epoch == 2 and result.best_val_mae == 4.0


def test_plateau_and_mse(tiny_config, tmp_path):
    result = make_trainer(tiny_config(scheduler="plateau", loss="mse"), tmp_path).fit()
    assert result.epochs == 2 and all(math.isfinite(r["train_loss"]) for r in result.history)


def test_cosine_schedule_warms_up_and_decays(tiny_config, tmp_path):
    trainer = make_trainer(tiny_config(epochs=10, warmup=0.1, time_budget=100.0), tmp_path)
    assert trainer._lr_factor(0.0, 0.0) == pytest.approx(0.01)
    assert trainer._lr_factor(0.5, 0.0) == pytest.approx(0.5)
    assert trainer._lr_factor(1.0, 0.0) == pytest.approx(1.0)
    assert trainer._lr_factor(10.0, 0.0) == pytest.approx(0.01)
    assert trainer._lr_factor(1.0, 100.0) == pytest.approx(0.01)  # the time budget ends it
    assert trainer._lr_factor(2.0, 55.0) == pytest.approx(0.505)


def test_resume_with_another_model_config_is_refused(tiny_config, tmp_path):
    make_trainer(tiny_config(epochs=1), tmp_path).fit()
    model = {**tiny_config().model, "num_layers": 3}
    other = make_trainer(tiny_config(epochs=2, model=model), tmp_path)
    with pytest.raises(ConfigError, match=r"model\.num_layers=2 but .* model\.num_layers=3"):
        other.fit(resume=True)


def test_resume_with_another_learning_rate_is_refused(tiny_config, tmp_path, monkeypatch):
    """The base rate is recorded: a run that sets none resumes with the rate it trained
    with, even after its kind's default changed."""
    make_trainer(tiny_config(epochs=1), tmp_path).fit()  # lr null: the kind's default
    default = MODEL_KINDS["equivariant-net"].default_lr
    assert load_checkpoint(tmp_path / "last.pt")["lr"] == default
    with pytest.raises(ConfigError, match=rf"lr={default!r} but this run asks for lr=0\.5"):
        make_trainer(tiny_config(epochs=2, lr=0.5), tmp_path).fit(resume=True)
    changed = dataclasses.replace(MODEL_KINDS["equivariant-net"], default_lr=2 * default)
    monkeypatch.setitem(MODEL_KINDS, "equivariant-net", changed)
    with pytest.raises(ConfigError, match=rf"lr={default!r} but this run asks for lr="):
        make_trainer(tiny_config(epochs=2), tmp_path).fit(resume=True)
    make_trainer(tiny_config(epochs=2, lr=default), tmp_path).fit(resume=True)


class NonFiniteAtStep:
    """A task whose loss turns ``value`` at its ``at``-th training step."""

    def __init__(self, task, at: int, value: float) -> None:
        self.task, self.at, self.value, self.calls = task, at, value, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def step(self, model, batch, loss_scale):
        loss, sums = self.task.step(model, batch, loss_scale)
        self.calls += 1
        if self.calls == self.at:
            loss = loss * self.value
            sums = {**sums, "loss": sums["loss"] * self.value}
        return loss, sums


@pytest.mark.parametrize(
    ("value", "at", "epoch", "step"),
    [(math.nan, 1, 1, 1), (math.inf, 3, 1, 3), (math.nan, 6, 2, 2)],
)
def test_a_non_finite_loss_stops_training_naming_where(tiny_config, tmp_path, value, at, epoch,
                                                       step):  # fmt: skip
    config = tiny_config(epochs=3, num_molecules=80)  # 4 batches per epoch (80 * 0.8 / 16)
    trainer = make_trainer(config, tmp_path)
    trainer.task = NonFiniteAtStep(trainer.task, at, value)
    where = rf"diverged in epoch {epoch}, step {step}: the training loss is (nan|inf)"
    with pytest.raises(TrainingDiverged, match=where + ".*lower the learning rate") as info:
        trainer.fit()
    assert (info.value.epoch, info.value.step) == (epoch, step)
    assert isinstance(info.value, RuntimeError)
    saved = tmp_path / "last.pt"  # the last finite epoch, if any
    assert (load_checkpoint(saved)["progress"]["epoch"] if saved.exists() else 0) == epoch - 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_validation_score_stops_training(tiny_config, tmp_path, value):
    trainer = make_trainer(tiny_config(), tmp_path)
    trainer._validate = lambda state: {"mae": value}
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 1: the validation MAE of U0"):
        trainer.fit()


def test_progress_is_a_typed_record_saved_whole(tiny_config, tmp_path):
    make_trainer(tiny_config(epochs=1), tmp_path).fit()
    saved = load_checkpoint(tmp_path / "last.pt")["progress"]
    assert set(saved) == {entry.name for entry in fields(Progress)}
    progress = Progress.from_dict(saved, tmp_path / "last.pt")
    assert progress.epoch == 1 and progress.stop_reason == "epochs" and progress.partial == {}
    assert progress.to_dict() == saved
    with pytest.raises(ConfigError, match=r"unknown progress entries \['epochs'\]"):
        Progress.from_dict({**saved, "epochs": 3}, tmp_path / "last.pt")


def ctrl_c_at_steps(monkeypatch, steps: set[int], presses: int = 1) -> None:
    """Press Ctrl-C (a real SIGINT) ``presses`` times inside the optimizer's step number
    ``n``, for each n in ``steps``."""
    original = torch.optim.AdamW.step
    calls = []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) in steps:
            for _ in range(presses):
                signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


def assert_same_training(a, b) -> None:
    assert [r["val_mae"] for r in a.history] == [r["val_mae"] for r in b.history]
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert_same_parameters(a.model, b.model)


def as_version_1(path: Path) -> None:
    """Rewrite the checkpoint ``path`` as version 1 saved it: positional step sums."""
    payload = torch.load(path, weights_only=True)
    partial = payload["progress"]["partial"]
    payload["progress"]["partial"] = [partial[key] for key in ("loss", "error", "structures")]
    payload["version"] = 1
    del payload["format_version"]
    torch.save(payload, path)


@pytest.mark.parametrize("saved_by", ["this version", "version 1"])
def test_ctrl_c_inside_a_step_resumes_after_it_exactly(tiny_config, tmp_path, monkeypatch,
                                                       saved_by):  # fmt: skip
    """Ctrl-C in the middle of epoch 2 (inside its 2nd optimizer step): the step finishes,
    the state is saved, and the resumed run equals the uninterrupted one (also from the
    positional step sums of a version-1 checkpoint)."""
    config = tiny_config(epochs=3, num_molecules=80)  # 4 batches per epoch
    straight = make_trainer(config, tmp_path / "straight").fit()
    with monkeypatch.context() as patch:
        ctrl_c_at_steps(patch, {6})
        with pytest.raises(TrainingInterrupted):
            make_trainer(config, tmp_path / "interrupted").fit()
    progress = load_checkpoint(tmp_path / "interrupted" / "last.pt")["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 2)
    assert progress["partial"]["structures"] == 32.0  # 2 batches of 16
    if saved_by == "version 1":
        as_version_1(tmp_path / "interrupted" / "last.pt")
    resumed = make_trainer(config, tmp_path / "interrupted").fit(resume=True)
    assert_same_training(resumed, straight)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(
    tiny_config, tmp_path, monkeypatch
):
    config = tiny_config(epochs=2, num_molecules=80)
    straight = make_trainer(config, tmp_path / "straight").fit()
    with monkeypatch.context() as patch:
        ctrl_c_at_steps(patch, {6}, presses=2)  # the second before the first is taken
        with pytest.raises(TrainingInterrupted):
            make_trainer(config, tmp_path / "interrupted").fit()
    progress = load_checkpoint(tmp_path / "interrupted" / "last.pt")["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 0)  # the half-taken step is not saved
    resumed = make_trainer(config, tmp_path / "interrupted").fit(resume=True)
    assert_same_training(resumed, straight)


def test_divergence_is_one_line_on_the_command_line(tmp_path, data_root, monkeypatch, capsys):
    from e3nn_pyg.cli import main

    monkeypatch.setattr(Trainer, "_validate", lambda self, state: {"mae": math.nan})
    flags = ["--dataset", "fixture", "--num-molecules", "40", "--epochs", "1", "--no-progress",
             "--model.hidden-Rs", "4x0e+2x1o", "--model.num-layers", "2", "--model.cutoff", "4",
             "--model.num-basis", "4", "--model.radial-hidden", "8"]  # fmt: skip
    status = main(["train", *flags, "--data-root", data_root, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("e3nn-pyg: error: EquivariantNet diverged in epoch 1: the validation")

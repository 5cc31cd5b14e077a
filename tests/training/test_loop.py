"""The training loop: it learns, checkpoints, stops (epochs, time, patience), survives
Ctrl-C and resumes to the very model an uninterrupted run gives."""

import math
import signal
from pathlib import Path

import pytest
import torch

from e3nn_pyg.training import (
    ConfigError,
    Trainer,
    TrainingInterrupted,
    fit_target_stats,
    load_checkpoint,
    load_data,
)
from e3nn_pyg.training.run import model_config


def make_trainer(config, directory: Path, kind: str = "equivariant", log=None) -> Trainer:
    data = load_data(config, log=False)
    stats = fit_target_stats(data, config.resolved_readout)
    lines = []
    trainer = Trainer(
        kind, kind, model_config(kind, config, stats, 10.0), data, stats, config, directory,
        config.lr if kind == "equivariant" else config.baseline["lr"], log or lines.append,
    )  # fmt: skip
    trainer.lines = lines
    return trainer


def assert_same_parameters(a, b) -> None:
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for key, value in a.items():  # tensors, and EquivariantNet's config
        assert torch.equal(value, b[key]) if torch.is_tensor(value) else value == b[key]


@pytest.mark.parametrize("kind", ["equivariant", "schnet"])
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


def test_divergence_is_reported(tiny_config, tmp_path):
    trainer = make_trainer(tiny_config(), tmp_path)
    trainer._validate = lambda state: {"mae": math.nan}
    with pytest.raises(ConfigError, match=r"diverged in epoch 1.*lower the learning rate"):
        trainer.fit()


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


def test_ctrl_c_inside_a_step_resumes_after_it_exactly(tiny_config, tmp_path, monkeypatch):
    """Ctrl-C in the middle of epoch 2 (inside its 2nd optimizer step): the step finishes,
    the state is saved, and the resumed run equals the uninterrupted one."""
    config = tiny_config(epochs=3, num_molecules=80)  # 4 batches per epoch
    straight = make_trainer(config, tmp_path / "straight").fit()
    with monkeypatch.context() as patch:
        ctrl_c_at_steps(patch, {6})
        with pytest.raises(TrainingInterrupted):
            make_trainer(config, tmp_path / "interrupted").fit()
    progress = load_checkpoint(tmp_path / "interrupted" / "last.pt")["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 2)
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

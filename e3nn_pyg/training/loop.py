r"""The training loop of one model: AdamW, a learning-rate schedule, early stopping, a time
budget, progress bars, and checkpoints from which it resumes.

The loss and the metrics are those of the run's task (:mod:`~e3nn_pyg.training.tasks`): a
property of each molecule, or the energies and forces of an interatomic potential. Errors
are divided by the ``loss_scale`` of the fitted offsets (:mod:`~e3nn_pyg.training.data`), so
that learning rates transfer between targets. With ``ema_decay`` the validation, the best
checkpoint and the final model use an exponential moving average of the weights
(:mod:`~e3nn_pyg.training.ema`).

The cosine schedule warms up linearly over the first ``warmup`` of the budget and then
decays to 1% of ``lr``; its progress is the larger of the fraction of epochs done and the
fraction of the time budget spent, so it ends when the budget does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.loader import DataLoader

from ..progress import tqdm_if_installed
from .checkpoint import build_model, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import DATA_KEYS, ConfigError, TrainConfig
from .data import RunData, TargetStats
from .distributed import Runtime, default_dtype
from .ema import ExponentialMovingAverage
from .history import HistoryWriter
from .interrupt import DeferredInterrupt
from .tasks import predict

__all__ = [
    "FitResult",
    "Trainer",
    "TrainingInterrupted",
    "check_resumable_run",
    "mean_absolute_error",
    "predict",
    "refuse_differences",
    "resume_differences",
]

MIN_LR_FACTOR = 0.01
#: Model arguments fitted on the training data (not settings)
_FITTED = ("mean", "std", "atomref", "avg_num_neighbors")


def resume_differences(
    payload: dict[str, Any],
    config: TrainConfig,
    kind: str,
    model_config: dict[str, Any] | None = None,
) -> list[tuple[str, Any, Any]]:
    """What keeps a checkpoint from being resumed by a run: ``(key, saved, now)`` for its
    model kind, the settings that choose the data and, given the run's ``model_config``, the
    model's settings."""
    if payload["kind"] != kind:
        return [("model kind", payload["kind"], kind)]
    saved_run = payload["run_config"]
    mine = config.to_dict()
    if saved_run.get("data") is None:  # QM9 runs of earlier versions spelled the default
        saved_run = {**saved_run, "dataset": saved_run.get("dataset") or "qm9"}
        mine["dataset"] = mine["dataset"] or "qm9"
    differences = [(key, saved_run.get(key), mine[key]) for key in DATA_KEYS]
    section = "baseline" if kind == "schnet" else "model"
    saved_model = payload["model_config"]
    differences += [
        (f"{section}.{key}", saved_model.get(key), value)
        for key, value in (model_config or {}).items()
        if key not in _FITTED  # fitted on the data, equal when the data is
    ]
    return [(key, saved, now) for key, saved, now in differences if saved != now]


def refuse_differences(path: Path, differences: list[tuple[str, Any, Any]]) -> None:
    """Raise :class:`ConfigError` naming the first difference, if any."""
    for key, saved, now in differences:
        raise ConfigError(
            f"checkpoint {path} was trained with {key}={saved!r} but this run asks for "
            f"{key}={now!r}: use the checkpoint's setting to resume, or another --out (or "
            "--overwrite) to start over"
        )


def check_resumable_run(out: Path, config: TrainConfig, models: dict[str, str]) -> None:
    """Before any data is loaded: ``--resume`` needs a ``last.pt`` of at least one of the
    run's ``models`` (folder name -> kind) in ``out``, each of the same kind and data."""
    paths = {name: Path(out) / name / "last.pt" for name in models}
    if not any(path.exists() for path in paths.values()):
        missing = ", ".join(map(str, paths.values()))
        raise ConfigError(
            f"--resume: {out} holds no checkpoint to continue ({missing} missing): train "
            "without --resume"
        )
    for name, path in paths.items():
        if path.exists():
            differences = resume_differences(load_checkpoint(path), config, models[name])
            refuse_differences(path, differences)


class TrainingInterrupted(Exception):
    """Ctrl-C during training; ``checkpoint`` is where the state was saved."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"interrupted; training state saved to {checkpoint}")
        self.checkpoint = checkpoint


@dataclass
class FitResult:
    """How training of one model went."""

    model: nn.Module  # the best model (by the task's validation score)
    history: list[dict[str, float]]
    best_val_mae: float  # the validation score (a MAE) in the task's report unit
    best_epoch: int
    epochs: int
    seconds: float
    stop_reason: str
    num_parameters: int


def mean_absolute_error(prediction: Tensor, reference: Tensor, scale: float) -> float:
    """MAE of ``prediction`` in the report unit (``scale``: target unit -> report unit)."""
    return float((prediction - reference).abs().mean()) * scale


def _replicate(model: nn.Module, runtime: Runtime) -> nn.Module:
    """``model`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` when the
    run spans several processes (the wrapper averages the gradients), else itself."""
    if not runtime.distributed:
        return model
    devices = [runtime.device] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=devices)


def _progress_bar(iterable, total: int, desc: str, enabled: bool):
    bars = tqdm_if_installed() if enabled else None
    if bars is None:
        return iterable
    return bars(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, unit="batch")


@dataclass
class _TrainingState:
    """What one model's training carries from step to step."""

    model: nn.Module
    replica: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    ema: ExponentialMovingAverage | None
    progress: dict[str, Any]  # saved in checkpoints (see Trainer.fit)
    last_validation: float = 0.0  # seconds the last validation took
    consistent: bool = True  # parameters and optimizer agree (no step half taken)


class Trainer:
    r"""Trains one model of a run (``kind`` ``"equivariant"`` or ``"schnet"``).

    Args:
        name (str): the model's name in logs and files (its checkpoints go to
            ``directory``).
        kind (str): the model kind (see :func:`~e3nn_pyg.training.checkpoint.build_model`).
        model_config (dict): the model's constructor arguments.
        data (RunData): the dataset and its split.
        stats (TargetStats): the fitted target offsets (for the loss scale).
        config (TrainConfig): the run's settings.
        directory (Path): where ``best.pt``, ``last.pt`` and ``history.csv`` go.
        lr (float): the base learning rate of this model.
        log (callable): prints one line (on rank 0 only).
        runtime (Runtime, optional): device, dtype and processes
            (:mod:`~e3nn_pyg.training.distributed`). (default: one CPU process, float32)
    """

    def __init__(
        self,
        name: str,
        kind: str,
        model_config: dict[str, Any],
        data: RunData,
        stats: TargetStats,
        config: TrainConfig,
        directory: Path,
        lr: float,
        log: Callable[[str], None] = print,
        runtime: Runtime | None = None,
    ) -> None:
        self.name, self.kind = name, kind
        self.model_config = model_config
        self.data, self.stats, self.config = data, stats, config
        self.directory = Path(directory)
        self.lr = lr
        self.runtime = runtime or Runtime(torch.device("cpu"), torch.float32)
        self.log = self.runtime.logger(log)
        self.task = data.task
        # views made once: a dataset view caches the molecules it has read
        self._train_set = data.subset("train")
        val = data.subset("val")
        self._val_set = val[self.runtime.share(torch.arange(len(val)))]

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    # -- state ---------------------------------------------------------------------------
    def _payload(self, model: nn.Module, progress: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "model_config": self.model_config,
            "model_state": model.state_dict(),
            "run_config": self.config.to_dict(),
            "stats": self.stats.to_dict(),
            "target": self.data.target_record(),
            "progress": progress,
        }

    def _check_resumable(self, payload: dict[str, Any]) -> None:
        """The checkpoint holds this model, trained on the same data with the same
        settings."""
        refuse_differences(
            self.last_path, resume_differences(payload, self.config, self.kind, self.model_config)
        )

    def _lr_factor(self, epoch: float, elapsed: float) -> float:
        config = self.config
        if config.scheduler != "cosine":
            return 1.0
        progress = epoch / config.epochs
        if config.time_budget is not None:
            progress = max(progress, elapsed / config.time_budget)
        progress = min(progress, 1.0)
        if progress < config.warmup:
            return max(progress / config.warmup, MIN_LR_FACTOR)
        decay = (progress - config.warmup) / (1.0 - config.warmup)
        return MIN_LR_FACTOR + (1 - MIN_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * decay))

    def _validate(self, state: _TrainingState) -> dict[str, float]:
        """The task's validation metrics (with the averaged weights when there is an EMA),
        each rank predicting its share of the structures."""
        if state.ema is None:
            sums = self.task.eval_sums(state.model, self._val_set)
        else:
            with state.ema.applied(state.model) as averaged:
                sums = self.task.eval_sums(averaged, self._val_set)
        return self.task.eval_metrics(self.runtime.sum(sums))

    def _save_best(self, state: _TrainingState) -> None:
        """``best.pt``: the model as it is used (with the averaged weights)."""
        if state.ema is None:
            save_checkpoint(self.best_path, self._payload(state.model, state.progress))
            return
        with state.ema.applied(state.model) as averaged:
            save_checkpoint(self.best_path, self._payload(averaged, state.progress))

    def _build(self, make: Callable[[], nn.Module]) -> nn.Module:
        with default_dtype(self.runtime.dtype):
            return make().to(self.runtime.device, self.runtime.dtype)

    def _epoch_batches(self, epoch: int) -> tuple[list[list[int]], list[int]]:
        """This rank's molecules (indices into the training set) of every batch of
        ``epoch``, and the sizes of the global batches: a seeded shuffle cut into global
        batches, shared out by rank; a final batch with fewer molecules than processes is
        left out."""
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        order = torch.randperm(len(self._train_set), generator=generator)
        world = self.runtime.world_size
        batches = [b for b in order.split(self.config.batch_size) if len(b) >= world]
        return [self.runtime.share(b).tolist() for b in batches], [len(b) for b in batches]

    # -- training ------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        """Train (or continue training) and return the best model.

        With ``resume`` and an existing ``last.pt``, training continues from it, from the
        step where it stopped (a finished run is not trained further unless the budget
        grew); otherwise it starts from a fresh initialization seeded by ``config.seed``.
        Ctrl-C is taken after the step in flight (:mod:`~e3nn_pyg.training.interrupt`):
        ``last.pt`` then holds everything the resumed run needs to take the steps the
        uninterrupted run takes.

        Raises:
            TrainingInterrupted: on Ctrl-C, after saving ``last.pt``.
            ConfigError: when ``last.pt`` cannot be resumed under this config.
        """
        state = self._initial_state(resume)
        progress = state.progress
        num_parameters = sum(p.numel() for p in state.model.parameters())
        runtime = self.runtime
        stop = self._stop_reason(progress)
        if not stop:
            self.log(
                f"{self.name}: {num_parameters:,} parameters, {len(self._train_set)} training "
                f"molecules, {len(self._epoch_batches(0)[1])} batches per epoch"
                + (f" over {runtime.world_size} processes" if runtime.distributed else "")
                + f", {runtime.device} {str(runtime.dtype).removeprefix('torch.')}"
            )
        history = HistoryWriter(self.directory, enabled=runtime.is_main)
        interrupt = DeferredInterrupt()
        try:
            with interrupt:
                while not stop:
                    stop = self._epoch(state, interrupt, history)
        except KeyboardInterrupt:  # a second Ctrl-C (or a KeyboardInterrupt from a callback)
            if state.consistent:  # never save the parameters of a step half taken
                self._save_last(state)
            raise TrainingInterrupted(self.last_path) from None
        finally:
            history.close()

        runtime.barrier()  # rank 0 has written best.pt
        best = self._build(
            lambda: model_from_checkpoint(load_checkpoint(self.best_path), self.best_path)
        )
        return FitResult(
            model=best,
            history=progress["history"],
            best_val_mae=progress["best_val_mae"],
            best_epoch=progress["best_epoch"],
            epochs=progress["epoch"],
            seconds=progress["elapsed"],
            stop_reason=progress["stop_reason"],
            num_parameters=num_parameters,
        )

    def _initial_state(self, resume: bool) -> _TrainingState:
        """A fresh model and optimizer, or those of ``last.pt`` when resuming."""
        config = self.config
        torch.manual_seed(config.seed)
        model = self._build(lambda: build_model(self.kind, self.model_config))
        progress: dict[str, Any] = {
            "epoch": 0,  # epochs done
            "step": 0,  # steps done in the current epoch
            "partial": [0.0] * len(self.task.step_sums),  # its step sums so far
            "elapsed": 0.0,
            "history": [],
            "best_val_mae": math.inf,
            "best_epoch": 0,
            "stop_reason": "",
        }
        payload = None
        if resume and self.last_path.exists():
            payload = load_checkpoint(self.last_path)
            self._check_resumable(payload)
            self.model_config = payload["model_config"]
            model = self._build(lambda: model_from_checkpoint(payload, self.last_path))
            progress = {**progress, **payload["progress"]}
        ema = None
        if config.ema_decay is not None:
            ema = ExponentialMovingAverage(model, config.ema_decay)
            if payload is not None:
                if payload.get("ema") is None:
                    raise ConfigError(
                        f"checkpoint {self.last_path} was trained without an EMA of the "
                        "weights: resume it with --ema-decay as it was, or start over"
                    )
                ema.load_state_dict(payload["ema"])
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.lr, weight_decay=config.weight_decay
        )
        plateau = None
        if config.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=max(config.patience // 4, 1)
            )
        if payload is not None:
            optimizer.load_state_dict(payload["optimizer"])
            if plateau is not None and payload.get("scheduler"):
                plateau.load_state_dict(payload["scheduler"])
            where = f", step {progress['step']}" if progress["step"] else ""
            self.log(
                f"{self.name}: resuming from {self.last_path} after {progress['epoch']} epochs"
                f"{where} ({progress['elapsed']:.0f} s)"
            )
        # the replicas start equal (same seed, or the same checkpoint); DDP averages gradients
        replica = _replicate(model, self.runtime)
        return _TrainingState(model, replica, optimizer, plateau, ema, progress)

    def _save_last(self, state: _TrainingState) -> None:
        if self.runtime.is_main:
            payload = self._payload(state.model, state.progress)
            payload["optimizer"] = state.optimizer.state_dict()
            payload["scheduler"] = state.plateau.state_dict() if state.plateau else None
            payload["ema"] = state.ema.state_dict() if state.ema else None
            save_checkpoint(self.last_path, payload)

    def _epoch(
        self, state: _TrainingState, interrupt: DeferredInterrupt, history: HistoryWriter
    ) -> str:
        """Train the rest of the current epoch, validate, record and save; the stop reason.

        Raises:
            TrainingInterrupted: after saving, on a Ctrl-C between two steps.
        """
        config, runtime, progress = self.config, self.runtime, state.progress
        epoch, first = progress["epoch"], progress["step"]
        shares, global_sizes = self._epoch_batches(epoch)
        num_batches = len(shares)
        loader = DataLoader(
            self._train_set,
            batch_sampler=shares[first:],
            pin_memory=runtime.device.type == "cuda",
        )
        bar = _progress_bar(
            loader, num_batches - first, f"{self.name} epoch {epoch + 1}",
            config.progress and runtime.is_main,
        )  # fmt: skip
        state.model.train()
        start, elapsed_before = time.perf_counter(), progress["elapsed"]
        # the epoch's sums so far (after a resume: rank 0 holds those of every rank)
        partial = progress["partial"] if runtime.is_main else [0.0] * len(self.task.step_sums)
        sums = torch.tensor(partial, dtype=torch.float64, device=runtime.device)
        seen_now, out_of_time = 0, False
        for step, batch in enumerate(bar, start=first):
            spent, stop_now = runtime.from_main(
                [elapsed_before + time.perf_counter() - start, float(interrupt.requested)]
            )
            if stop_now:  # Ctrl-C: save between two steps, then stop
                progress["partial"] = runtime.sum(sums.tolist())
                self._save_last(state)
                raise TrainingInterrupted(self.last_path)
            budget = config.time_budget
            if step > first and budget is not None and spent + state.last_validation >= budget:
                out_of_time = True  # keep time for the validation
                break
            if config.scheduler == "cosine":
                factor = self._lr_factor(epoch + step / num_batches, spent)
                for group in state.optimizer.param_groups:
                    group["lr"] = self.lr * factor
            sums += self._step(state, batch, global_sizes[step])
            seen_now += batch.num_graphs
            progress["elapsed"] = elapsed_before + time.perf_counter() - start
            progress["step"] = step + 1
            if bar is not loader:
                shown = self.task.train_metrics(sums.tolist())
                bar.set_postfix(
                    {key.removeprefix("train_"): f"{value:.4g}" for key, value in shown.items()},
                    mol_s=f"{seen_now / (time.perf_counter() - start):.0f}",
                )
        train_seconds = time.perf_counter() - start
        *epoch_sums, trained_now = runtime.sum([*sums.tolist(), float(seen_now)])
        seen = epoch_sums[self.task.step_sums.index(self.task.count_sum)]

        val_start = time.perf_counter()
        val_metrics = self._validate(state)
        val_mae = self.task.score(val_metrics)
        now = time.perf_counter()
        state.last_validation, progress["elapsed"] = runtime.from_main(
            [now - val_start, elapsed_before + now - start]
        )
        if not math.isfinite(val_mae):
            raise ConfigError(
                f"{self.name} diverged in epoch {epoch + 1} (validation MAE {val_mae}): "
                f"lower the learning rate (now {self.lr:g})"
            )
        progress.update(epoch=epoch + 1, step=0, partial=[0.0] * len(self.task.step_sums))
        if state.plateau is not None:
            state.plateau.step(val_mae)
        lr = state.optimizer.param_groups[0]["lr"]
        record = {
            "epoch": epoch + 1,
            "fraction": seen / len(self._train_set),
            **self.task.train_metrics(epoch_sums),
            "val_mae": val_mae,
            **{f"val_{key}": value for key, value in val_metrics.items() if key != "mae"},
            "lr": lr,
            "elapsed": progress["elapsed"],
            "molecules_per_second": trained_now / max(train_seconds, 1e-9),
        }
        progress["history"].append(record)
        history.write(progress["history"])
        improved = val_mae < progress["best_val_mae"]
        if improved:
            progress["best_val_mae"], progress["best_epoch"] = val_mae, epoch + 1
            if runtime.is_main:
                self._save_best(state)
        stop = self._stop_reason(progress, out_of_time, state.last_validation)
        progress["stop_reason"] = stop
        progress["time_budget"] = config.time_budget
        self._save_last(state)
        self.log(
            f"{self.name} epoch {epoch + 1:3d}: train loss {record['train_loss']:.4f}, "
            f"val {self.task.score_name} {val_mae:.2f} {self.task.report_unit}"
            f"{' *' if improved else ''}, "
            f"lr {lr:.2e}, {record['molecules_per_second']:.0f} mol/s, "
            f"{progress['elapsed']:.0f} s"
        )
        if runtime.from_main([float(interrupt.requested)])[0]:  # Ctrl-C during validation
            raise TrainingInterrupted(self.last_path)
        return stop

    def _step(self, state: _TrainingState, batch, global_size: int) -> Tensor:
        """One optimizer step on this rank's share of a batch; its step sums (the task's
        ``step_sums``)."""
        runtime, config = self.runtime, self.config
        batch = batch.to(runtime.device, non_blocking=True)
        batch.pos = batch.pos.to(runtime.dtype)
        state.consistent = False
        loss, sums = self.task.step(state.replica, batch, self.stats.loss_scale)
        state.optimizer.zero_grad(set_to_none=True)
        if runtime.distributed:  # weighted by this rank's share (see distributed)
            (loss * (batch.num_graphs * runtime.world_size / global_size)).backward()
        else:
            loss.backward()
        if config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), config.max_grad_norm)
        state.optimizer.step()
        if state.ema is not None:
            state.ema.update(state.model)
        state.consistent = True
        return sums

    def _stop_reason(
        self, progress: dict[str, Any], out_of_time: bool = False, reserve: float = 0.0
    ) -> str:
        """Why training is over (empty while it goes on). ``reserve``: seconds a next epoch
        needs at least (its validation). A run resumed with a larger budget (epochs or
        seconds) or patience goes on."""
        config = self.config
        budget = config.time_budget
        if out_of_time or (budget is not None and progress["elapsed"] + reserve >= budget):
            return "time budget"
        if (
            budget is not None
            and progress["stop_reason"] == "time budget"
            and progress.get("time_budget") == budget
        ):
            return "time budget"
        if progress["epoch"] >= config.epochs:
            return "epochs"
        if progress["epoch"] and progress["epoch"] - progress["best_epoch"] >= config.patience:
            return "early stopping"
        return ""

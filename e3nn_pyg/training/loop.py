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

An epoch is a few short steps: the training steps (each one optimizer step on this rank's
share of a global batch), then the end of the epoch (the summed metrics, validation, the
record in the history, the best checkpoint, the plateau schedule, the log line, ``last.pt``).
Where training stands is a :class:`Progress` record, saved in every checkpoint. A training
loss or a validation score that is not finite stops the run with :class:`TrainingDiverged`
(``last.pt`` keeps the last finite epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.loader import DataLoader

from ..compilation import compile_model
from ..progress import tqdm_if_installed
from .checkpoint import build_model, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import DATA_KEYS, ConfigError, TrainConfig
from .data import RunData, TargetStats
from .distributed import Runtime, default_dtype
from .ema import ExponentialMovingAverage
from .history import HistoryWriter
from .interrupt import DeferredInterrupt
from .registry import lr_setting, model_kind
from .tasks import predict

__all__ = [
    "FitResult",
    "Progress",
    "Trainer",
    "TrainingDiverged",
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
    model kind, the settings that choose the data, the base learning rate (a run that sets
    none takes its kind's default, which a later version may change) and, given the run's
    ``model_config``, the model's settings."""
    if payload["kind"] != kind:
        return [("model kind", payload["kind"], kind)]
    saved_run = payload["run_config"]
    mine = config.to_dict()
    if saved_run.get("data") is None:  # QM9 runs of earlier versions spelled the default
        saved_run = {**saved_run, "dataset": saved_run.get("dataset") or "qm9"}
        mine["dataset"] = mine["dataset"] or "qm9"
    differences = [(key, saved_run.get(key), mine[key]) for key in DATA_KEYS]
    entry = model_kind(kind)
    section = entry.section.name
    differences.append((lr_setting(kind), payload.get("lr"), entry.learning_rate(config)))
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


class TrainingDiverged(RuntimeError):
    """The training loss or the validation score of a model is not finite (NaN or
    infinite): the learning rate is too high for the data, or the data holds extreme
    values. ``epoch`` (from 1) and ``step`` (from 1, :obj:`None` for the validation) say
    where."""

    def __init__(self, name: str, epoch: int, step: int | None, what: str, lr: float) -> None:
        where = f"epoch {epoch}" + ("" if step is None else f", step {step}")
        super().__init__(
            f"{name} diverged in {where}: {what}; lower the learning rate (now {lr:g}) or "
            "check the data for extreme values (last.pt keeps the last finite epoch)"
        )
        self.epoch, self.step = epoch, step


@dataclass
class Progress:
    """Where the training of one model stands; every checkpoint holds it
    (:meth:`to_dict`)."""

    epoch: int = 0  # epochs done
    step: int = 0  # steps done in the current epoch
    partial: dict[str, float] = field(default_factory=dict)  # its step sums (all ranks)
    elapsed: float = 0.0  # seconds trained
    history: list[dict[str, float]] = field(default_factory=list)  # a record per epoch
    best_val_mae: float = math.inf  # the best validation score
    best_epoch: int = 0  # its epoch
    stop_reason: str = ""  # why training is over (empty while it goes on)
    time_budget: float | None = None  # the budget under which stop_reason was decided

    def to_dict(self) -> dict[str, Any]:
        """The progress as plain values (a checkpoint's ``progress``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], path: Path) -> Progress:
        """The progress saved in the checkpoint ``path`` (of the current format: earlier
        ones are migrated by :func:`~e3nn_pyg.training.checkpoint.load_checkpoint`).

        Raises:
            ConfigError: for entries this version does not know, or step sums that are
                not named.
        """
        unknown = sorted(set(values) - {entry.name for entry in fields(cls)})
        if unknown:
            raise ConfigError(f"checkpoint {path}: unknown progress entries {unknown}")
        if not isinstance(values.get("partial", {}), dict):
            raise ConfigError(
                f"checkpoint {path} is damaged (its progress holds step sums that are not "
                "named): start over, or resume an intact last.pt"
            )
        return cls(**values)


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
    replica: nn.Module  # the model (compiled with `compile`), or its DDP wrapper
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    ema: ExponentialMovingAverage | None
    progress: Progress
    last_validation: float = 0.0  # seconds the last validation took
    consistent: bool = True  # parameters and optimizer agree (no step half taken)


@dataclass
class _EpochRun:
    """The training steps of one epoch on this rank, from where they (re)start."""

    epoch: int  # the epoch's number, from 0
    first: int  # the step they start at (after a resume within the epoch)
    shares: list[list[int]]  # this rank's structures of every batch of the epoch
    sizes: list[int]  # the sizes of the global batches
    sums: Tensor  # [len(task.sum_names)] float64: the step sums so far
    start: float  # time.perf_counter() at the start
    elapsed_before: float  # seconds trained before the start
    seen: int = 0  # structures this rank trained on since the start
    out_of_time: bool = False  # stopped before the last step, for the time budget
    losses: list[Tensor] = field(default_factory=list)  # the "loss" sum of each step

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start


class Trainer:
    r"""Trains one model of a run (``kind``: a key of
    :data:`~e3nn_pyg.training.registry.MODEL_KINDS`).

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

    Raises:
        ConfigError: when a process would be left without data, or the training or
            validation split has no label of the task's score.
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
        sizes = {"training": len(self._train_set), "validation": len(val)}
        self.runtime.require_data(config.resolved_batch_size, sizes)
        self.task.check_labels(self._train_set, "training")
        self.task.check_labels(val, "validation")
        self._val_set = val[self.runtime.share(torch.arange(len(val)))]

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    # -- state ---------------------------------------------------------------------------
    def _payload(self, model: nn.Module, progress: Progress) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "model_config": self.model_config,
            "model_state": model.state_dict(),
            "run_config": self.config.to_dict(),
            "stats": self.stats.to_dict(),
            "target": self.task.target_record(),
            "progress": progress.to_dict(),
            "lr": self.lr,
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
        batches = [b for b in order.split(self.config.resolved_batch_size) if len(b) >= world]
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
            TrainingDiverged: when the training loss or validation score is not finite.
            ConfigError: when ``last.pt`` cannot be resumed under this config.
        """
        state = self._initial_state(resume)
        progress = state.progress
        num_parameters = sum(p.numel() for p in state.model.parameters())
        stop = self._stop_reason(progress)
        if not stop:
            self._log_start(num_parameters)
        self._train(state, stop)
        self.runtime.barrier()  # rank 0 has written best.pt
        best = self._build(
            lambda: model_from_checkpoint(load_checkpoint(self.best_path), self.best_path)
        )
        return FitResult(
            model=best,
            history=progress.history,
            best_val_mae=progress.best_val_mae,
            best_epoch=progress.best_epoch,
            epochs=progress.epoch,
            seconds=progress.elapsed,
            stop_reason=progress.stop_reason,
            num_parameters=num_parameters,
        )

    def _log_start(self, num_parameters: int) -> None:
        runtime = self.runtime
        self.log(
            f"{self.name}: {num_parameters:,} parameters, {len(self._train_set)} training "
            f"molecules, {len(self._epoch_batches(0)[1])} batches per epoch"
            + (f" over {runtime.world_size} processes" if runtime.distributed else "")
            + f", {runtime.device} {str(runtime.dtype).removeprefix('torch.')}"
        )

    def _train(self, state: _TrainingState, stop: str) -> None:
        """Epochs until ``stop`` is given, under the deferred Ctrl-C."""
        history = HistoryWriter(self.directory, enabled=self.runtime.is_main)
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

    def _initial_state(self, resume: bool) -> _TrainingState:
        """A fresh model and optimizer, or those of ``last.pt`` when resuming."""
        config = self.config
        torch.manual_seed(config.seed)
        model = self._build(lambda: build_model(self.kind, self.model_config))
        progress, payload = Progress(), None
        if resume and self.last_path.exists():
            payload = load_checkpoint(self.last_path)
            self._check_resumable(payload)
            self.model_config = payload["model_config"]
            model = self._build(lambda: model_from_checkpoint(payload, self.last_path))
            progress = Progress.from_dict(payload["progress"], self.last_path)
        ema = self._ema(model, payload)
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
            where = f", step {progress.step}" if progress.step else ""
            self.log(
                f"{self.name}: resuming from {self.last_path} after {progress.epoch} epochs"
                f"{where} ({progress.elapsed:.0f} s)"
            )
        # the replicas start equal (same seed, or the same checkpoint); DDP averages gradients
        stepped = compile_model(model) if self.config.compile else model  # same parameters
        replica = _replicate(stepped, self.runtime)
        return _TrainingState(model, replica, optimizer, plateau, ema, progress)

    def _ema(self, model: nn.Module, payload: dict[str, Any] | None):
        """The EMA of the weights (with ``ema_decay``), that of ``payload`` on a resume."""
        if self.config.ema_decay is None:
            return None
        ema = ExponentialMovingAverage(model, self.config.ema_decay)
        if payload is not None:
            if payload.get("ema") is None:
                raise ConfigError(
                    f"checkpoint {self.last_path} was trained without an EMA of the "
                    "weights: resume it with --ema-decay as it was, or start over"
                )
            ema.load_state_dict(payload["ema"])
        return ema

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
        """Train the rest of the current epoch, then end it; the stop reason.

        Raises:
            TrainingInterrupted: after saving, on a Ctrl-C between two steps.
            TrainingDiverged: when its loss or validation score is not finite.
        """
        run = self._begin_epoch(state.progress)
        self._train_steps(state, run, interrupt)
        return self._end_epoch(state, run, interrupt, history)

    def _begin_epoch(self, progress: Progress) -> _EpochRun:
        """The steps left of the current epoch, with the sums of those taken (after a
        resume within it: rank 0 holds those of every rank)."""
        names = self.task.sum_names
        partial = progress.partial if self.runtime.is_main and progress.partial else {}
        sums = [float(partial.get(name, 0.0)) for name in names]
        shares, sizes = self._epoch_batches(progress.epoch)
        return _EpochRun(
            epoch=progress.epoch,
            first=progress.step,
            shares=shares,
            sizes=sizes,
            sums=torch.tensor(sums, dtype=torch.float64, device=self.runtime.device),
            start=time.perf_counter(),
            elapsed_before=progress.elapsed,
        )

    def _named_sums(self, sums: Tensor) -> dict[str, float]:
        return dict(zip(self.task.sum_names, sums.tolist(), strict=True))

    def _train_steps(
        self, state: _TrainingState, run: _EpochRun, interrupt: DeferredInterrupt
    ) -> None:
        """The epoch's steps from ``run.first``; stops early for the time budget.

        Raises:
            TrainingInterrupted: after saving, on a Ctrl-C between two steps.
        """
        loader = DataLoader(
            self._train_set,
            batch_sampler=run.shares[run.first :],
            pin_memory=self.runtime.device.type == "cuda",
        )
        bar = _progress_bar(
            loader, len(run.shares) - run.first, f"{self.name} epoch {run.epoch + 1}",
            self.config.progress and self.runtime.is_main,
        )  # fmt: skip
        state.model.train()
        loss_at = self.task.sum_names.index("loss")
        for step, batch in enumerate(bar, start=run.first):
            if not self._may_step(state, run, step, interrupt):
                break
            step_sums = self._step(state, batch, run.sizes[step])
            run.sums += step_sums
            run.losses.append(step_sums[loss_at])
            run.seen += batch.num_graphs
            state.progress.elapsed = run.elapsed()
            state.progress.step = step + 1
            if bar is not loader:
                shown = self.task.train_metrics(self._named_sums(run.sums))
                bar.set_postfix(
                    {key.removeprefix("train_"): f"{value:.4g}" for key, value in shown.items()},
                    mol_s=f"{run.seen / (time.perf_counter() - run.start):.0f}",
                )

    def _may_step(
        self, state: _TrainingState, run: _EpochRun, step: int, interrupt: DeferredInterrupt
    ) -> bool:
        """Whether to take ``step`` (not when the time budget is spent); sets its learning
        rate. Every rank decides on rank 0's clock and Ctrl-C.

        Raises:
            TrainingInterrupted: after saving, on a Ctrl-C.
        """
        spent, stop_now = self.runtime.from_main([run.elapsed(), float(interrupt.requested)])
        if stop_now:  # Ctrl-C: save between two steps, then stop
            state.progress.partial = self.runtime.sum(self._named_sums(run.sums))
            self._save_last(state)
            raise TrainingInterrupted(self.last_path)
        budget = self.config.time_budget
        if step > run.first and budget is not None and spent + state.last_validation >= budget:
            run.out_of_time = True  # keep time for the validation
            return False
        if self.config.scheduler == "cosine":
            factor = self._lr_factor(run.epoch + step / len(run.shares), spent)
            for group in state.optimizer.param_groups:
                group["lr"] = self.lr * factor
        return True

    def _step(self, state: _TrainingState, batch, global_size: int) -> Tensor:
        """One optimizer step on this rank's share of a batch; its step sums
        ``[len(task.sum_names)]`` float64, in the order of ``task.sum_names``."""
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
        return torch.stack([sums[name] for name in self.task.sum_names]).double()

    def _end_epoch(
        self,
        state: _TrainingState,
        run: _EpochRun,
        interrupt: DeferredInterrupt,
        history: HistoryWriter,
    ) -> str:
        """Validate, record, keep the best model, save ``last.pt`` and log; the stop
        reason.

        Raises:
            TrainingDiverged: when the epoch's loss or the validation score is not finite.
            TrainingInterrupted: after saving, on a Ctrl-C during the validation.
        """
        runtime, progress = self.runtime, state.progress
        train_seconds = time.perf_counter() - run.start
        sums = runtime.sum({**self._named_sums(run.sums), "trained_now": float(run.seen)})
        self._check_finite(state, run, sums["loss"], "the training loss")
        val_start = time.perf_counter()
        val_metrics = self._validate(state)
        val_mae = self.task.score(val_metrics)
        now = time.perf_counter()
        state.last_validation, progress.elapsed = runtime.from_main(
            [now - val_start, run.elapsed_before + now - run.start]
        )
        what = f"the validation {self.task.score_name}"
        self._check_finite(state, run, val_mae, what, step=False)
        progress.epoch, progress.step, progress.partial = run.epoch + 1, 0, {}
        if state.plateau is not None:
            state.plateau.step(val_mae)
        record = self._record(state, sums, val_metrics, train_seconds)
        progress.history.append(record)
        history.write(progress.history)
        improved = self._keep_if_best(state, val_mae)
        stop = self._stop_reason(progress, run.out_of_time, state.last_validation)
        progress.stop_reason, progress.time_budget = stop, self.config.time_budget
        self._save_last(state)
        self._log_epoch(record, improved)
        if runtime.from_main([float(interrupt.requested)])[0]:  # Ctrl-C during validation
            raise TrainingInterrupted(self.last_path)
        return stop

    def _check_finite(
        self, state: _TrainingState, run: _EpochRun, value: float, what: str, step: bool = True
    ) -> None:
        """Raise :class:`TrainingDiverged` when ``value`` is not finite; with ``step``,
        naming the first step of this rank whose loss was not."""
        if math.isfinite(value):
            return
        where = None
        if step:
            losses = torch.stack(run.losses).cpu() if run.losses else torch.zeros(0)
            bad = (~torch.isfinite(losses)).nonzero()[:, 0]  # steps since run.first
            # none: another rank's, or one before a resume within the epoch
            where = run.first + int(bad[0]) + 1 if len(bad) else None
        lr = state.optimizer.param_groups[0]["lr"]
        raise TrainingDiverged(self.name, run.epoch + 1, where, f"{what} is {value}", lr)

    def _record(
        self,
        state: _TrainingState,
        sums: dict[str, float],
        val_metrics: dict[str, float],
        train_seconds: float,
    ) -> dict[str, float]:
        """The epoch's row of the history."""
        score = self.task.score(val_metrics)
        return {
            "epoch": state.progress.epoch,
            "fraction": sums["structures"] / len(self._train_set),
            **self.task.train_metrics(sums),
            "val_mae": score,
            **{f"val_{key}": value for key, value in val_metrics.items() if key != "mae"},
            "lr": state.optimizer.param_groups[0]["lr"],
            "elapsed": state.progress.elapsed,
            "molecules_per_second": sums["trained_now"] / max(train_seconds, 1e-9),
        }

    def _keep_if_best(self, state: _TrainingState, val_mae: float) -> bool:
        """Record a better validation score and write ``best.pt`` (rank 0); whether it was
        better."""
        progress = state.progress
        if not val_mae < progress.best_val_mae:
            return False
        progress.best_val_mae, progress.best_epoch = val_mae, progress.epoch
        if self.runtime.is_main:
            self._save_best(state)
        return True

    def _log_epoch(self, record: dict[str, float], improved: bool) -> None:
        task = self.task
        self.log(
            f"{self.name} epoch {record['epoch']:3d}: train loss {record['train_loss']:.4f}, "
            f"val {task.score_name} {record['val_mae']:.2f} {task.report_unit}"
            f"{' *' if improved else ''}, "
            f"lr {record['lr']:.2e}, {record['molecules_per_second']:.0f} mol/s, "
            f"{record['elapsed']:.0f} s"
        )

    def _stop_reason(
        self, progress: Progress, out_of_time: bool = False, reserve: float = 0.0
    ) -> str:
        """Why training is over (empty while it goes on). ``reserve``: seconds a next epoch
        needs at least (its validation). A run resumed with a larger budget (epochs or
        seconds) or patience goes on."""
        config = self.config
        budget = config.time_budget
        if out_of_time or (budget is not None and progress.elapsed + reserve >= budget):
            return "time budget"
        if (
            budget is not None
            and progress.stop_reason == "time budget"
            and progress.time_budget == budget
        ):
            return "time budget"
        if progress.epoch >= config.epochs:
            return "epochs"
        if progress.epoch and progress.epoch - progress.best_epoch >= config.patience:
            return "early stopping"
        return ""

"""Training: configuration, data and target offsets, the loop, checkpoints, plots, runs.

- :class:`TrainConfig`: every setting of a run (command line and YAML share its keys).
- :func:`train`: a whole run (the model kind ``--model`` names, the baseline, the files);
  :func:`evaluate`, :func:`predict_xyz` and :func:`export_checkpoint` use its checkpoints.
- :class:`Trainer`: the loop of one model (AdamW, schedule, early stopping, time budget,
  resumable checkpoints).
- :data:`MODEL_KINDS`: the registry of model kinds (:class:`ModelKind`: section, builder,
  default learning rate, label, folder); checkpoints carry a format version (:func:`migrate`).
"""

from .checkpoint import (
    build_model,
    load_checkpoint,
    migrate,
    model_from_checkpoint,
    save_checkpoint,
    task_from_checkpoint,
)
from .config import ConfigError, TrainConfig, default_readout
from .data import RunData, TargetStats, fit_target_stats, load_data
from .loop import FitResult, Progress, Trainer, TrainingDiverged, TrainingInterrupted, predict
from .plots import plot_learning_curves, plot_parity
from .registry import MODEL_KINDS, ModelKind
from .run import evaluate, export_checkpoint, format_table, predict_xyz, read_xyz, train

__all__ = [
    "MODEL_KINDS",
    "ConfigError",
    "FitResult",
    "ModelKind",
    "Progress",
    "RunData",
    "TargetStats",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_model",
    "default_readout",
    "evaluate",
    "export_checkpoint",
    "fit_target_stats",
    "format_table",
    "load_checkpoint",
    "load_data",
    "migrate",
    "model_from_checkpoint",
    "plot_learning_curves",
    "plot_parity",
    "predict",
    "predict_xyz",
    "read_xyz",
    "save_checkpoint",
    "task_from_checkpoint",
    "train",
]

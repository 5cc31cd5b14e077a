r"""Checkpoints: what a trained model needs to be rebuilt, evaluated, or trained further.

A checkpoint is a ``torch.save`` dictionary of plain values and tensors (loadable with
``weights_only=True``):

- ``format``, ``version``: identify the file;
- ``kind``: ``"equivariant"`` (:class:`~e3nn_pyg.models.EquivariantNet`) or ``"schnet"``
  (PyG's :class:`~torch_geometric.nn.models.SchNet`);
- ``model_config`` and ``model_state``: constructor arguments and ``state_dict``;
- ``run_config``: the :class:`~e3nn_pyg.training.TrainConfig` of the run, ``stats``: the
  fitted target offsets, ``target``: the target's name and units;
- ``progress``: epochs, seconds trained, history, best validation MAE, whether training is
  finished; ``optimizer`` and ``scheduler`` states (``last.pt`` only).

Files are written to a temporary name and renamed, so an interruption never leaves half a
checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.nn.models import SchNet

from ..models import EnergyForces, EquivariantNet, RadiusInteractionGraph
from .config import DTYPES, ConfigError
from .distributed import default_dtype

__all__ = [
    "FORMAT",
    "KINDS",
    "build_model",
    "load_checkpoint",
    "model_from_checkpoint",
    "save_checkpoint",
]

FORMAT = "e3nn-pyg-checkpoint"
VERSION = 1
KINDS = ("equivariant", "schnet")
_REQUIRED = ("kind", "model_config", "model_state", "run_config", "stats", "target", "progress")


def build_model(kind: str, model_config: dict[str, Any]) -> nn.Module:
    """The model of a checkpoint's ``kind`` from its ``model_config`` (untrained)."""
    if kind == "equivariant":
        return EquivariantNet(**model_config)
    if kind == "schnet":
        arguments = dict(model_config)
        forces = arguments.pop("derivative", False)  # forces by autograd, as ours
        graph = RadiusInteractionGraph(arguments["cutoff"])
        schnet = SchNet(**arguments, interaction_graph=graph)
        return EnergyForces(schnet) if forces else schnet
    raise ConfigError(f"unknown model kind {kind!r}, expected one of {KINDS}")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (with the format tag) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": VERSION, **payload}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ConfigError: when the file is missing, unreadable, or not an e3nn-pyg checkpoint.
    """
    path = Path(path)
    hint = "pass a best.pt or last.pt written by `e3nn-pyg train`"
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist: {hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # whatever fails to deserialize, the file is not usable
        if isinstance(error, MemoryError):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cannot read checkpoint {path} ({reason[:120]}): {hint}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an e3nn-pyg checkpoint: {hint}")
    if payload.get("version") != VERSION:
        raise ConfigError(
            f"checkpoint {path} has format version {payload.get('version')}, this e3nn_pyg "
            f"reads version {VERSION}: retrain with this version"
        )
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise ConfigError(f"checkpoint {path} lacks {missing}: {hint}")
    damaged = [key for key in _REQUIRED if key != "kind" and not isinstance(payload[key], dict)]
    target = payload["target"]
    if not damaged and not all(isinstance(target.get(k), str) for k in ("name", "unit")):
        damaged = ["target"]
    if damaged or not isinstance(payload["kind"], str):
        raise ConfigError(
            f"checkpoint {path} is damaged ({', '.join(damaged) or 'kind'} not as written by "
            f"e3nn-pyg train): {hint}"
        )
    return payload


def model_from_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """Rebuild the model of a loaded checkpoint, in the dtype it was trained in (on the
    CPU), with a clear error when it does not fit."""
    try:
        dtype = payload["run_config"].get("dtype", "float32")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}")
        with default_dtype(getattr(torch, dtype)):
            model = build_model(payload["kind"], payload["model_config"])
        model.load_state_dict(payload["model_state"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:160]
        raise ConfigError(
            f"checkpoint {path} does not match its model ({reason}): it was written by "
            "another version of e3nn_pyg or modified; retrain it"
        ) from None
    return model

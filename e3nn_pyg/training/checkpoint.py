r"""Checkpoints: what a trained model needs to be rebuilt, evaluated, or trained further.

A checkpoint is a ``torch.save`` dictionary of plain values and tensors (loadable with
``weights_only=True``):

- ``format``, ``format_version``: identify the file (:data:`FORMAT_VERSION`);
- ``kind`` and ``name``: the model kind (an entry of :mod:`~e3nn_pyg.training.registry`) and
  its label;
- ``model_config`` and ``model_state``: constructor arguments (with the fitted offsets:
  E0s and per-element references, scale, shift, and the ``species`` seen in training) and
  ``state_dict``;
- ``run_config``: the :class:`~e3nn_pyg.training.TrainConfig` of the run (the task's
  settings), ``stats``: the fitted target offsets, ``target``: the target's name and units;
- ``progress``: epochs, seconds trained, history, best validation MAE, whether training is
  finished; ``optimizer`` and ``scheduler`` states (``last.pt`` only);
- ``lr``: the base learning rate the model trains with (the run's, or its kind's default),
  so that a resume goes on with it even where a later version changed the default.

Evaluation and prediction need nothing else: not the training files. :func:`load`
(``e3nn_pyg.load``) gives the model of a checkpoint.

**Versions.** :func:`load_checkpoint` brings a checkpoint of any earlier format to the
current one with :func:`migrate`, the one place that knows earlier formats. Version 1 (no
``format_version`` but ``version: 1``) kept the run's model settings as flat keys
(``hidden_Rs``, ``schnet_hidden``, ...), its step sums as a list, and had no ``name``, no
extra states of the model (its recorded config) and no ``species`` in its ``model_config``
(any element is then accepted). Versions 1 and 2 named the EquivariantNet kind
``equivariant`` (now ``equivariant-net``, as ``--model`` names it) and had no model ``name``
in the run's ``model`` section (it was always EquivariantNet). Versions 1 to 3 had no
``lr``: a run that set none trained with its kind's default of those versions.

Files are written to a temporary name and renamed, so an interruption never leaves half a
checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..datasets import QM9_TARGET_INFO, target_index
from .config import DTYPES, ConfigError, TrainConfig
from .distributed import default_dtype
from .registry import MODEL_KINDS, configured_lr, model_kind
from .tasks import PotentialTask, PropertyTask

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "build_model",
    "load",
    "load_checkpoint",
    "migrate",
    "model_from_checkpoint",
    "save_checkpoint",
    "task_from_checkpoint",
]

#: The ``format`` entry of every checkpoint.
FORMAT = "e3nn-pyg-checkpoint"
#: The version this e3nn_pyg writes; :func:`migrate` reads every earlier one.
FORMAT_VERSION = 4
_REQUIRED = ("kind", "model_config", "model_state", "run_config", "stats", "target", "progress")

#: The kinds that versions 1 and 2 named otherwise: their names now.
_KIND_NAMES_V2 = {"equivariant": "equivariant-net"}
#: The model of every run of versions 1 and 2.
_MODEL_V2 = _KIND_NAMES_V2["equivariant"]
#: The default learning rates of the kinds in versions 1 to 3.
_DEFAULT_LR_V3 = {"equivariant-net": 1e-2, "many-body": 1e-2, "schnet": 5e-3}

#: Version 1's flat run settings: where their values go now.
_FLAT_KEYS_V1 = {
    **{key: [("model", key)] for key in MODEL_KINDS[_MODEL_V2].section.settings},
    "schnet_hidden": [("baseline", "hidden_channels"), ("baseline", "num_filters")],
    "schnet_interactions": [("baseline", "num_interactions")],
    "schnet_gaussians": [("baseline", "num_gaussians")],
    "schnet_lr": [("baseline", "lr")],
}


def build_model(kind: str, model_config: dict[str, Any]) -> nn.Module:
    """The model of a checkpoint's ``kind`` from its ``model_config`` (untrained)."""
    return model_kind(kind).build(model_config)


def _run_config_v1(run_config: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``run_config`` in version 2's spelling."""
    out = dict(run_config)
    if isinstance(out.get("baseline"), str) or ("baseline" in out and out["baseline"] is None):
        out["baseline"] = {"name": out["baseline"]}
    for old, places in _FLAT_KEYS_V1.items():
        if old not in out:
            continue
        value = out.pop(old)
        for section, key in places:
            out.setdefault(section, {}).setdefault(key, value)
    return out


#: Version 1's positional step sums of an epoch in flight (``progress["partial"]``), by
#: their number (a property's 3, a potential's 7): their names now.
_PARTIAL_V1 = {
    3: ("loss", "error", "structures"),
    7: ("loss", "energy_error_per_atom", "structures", "forces_error", "forces_components",
        "stress_error", "stress_components"),
}  # fmt: skip


def _progress_v1(progress: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``progress`` with named step sums (every structure of version 1 had an
    energy, so its energy count is the structure count)."""
    partial = progress.get("partial")
    if not isinstance(partial, list) or len(partial) not in _PARTIAL_V1:
        return progress
    named = dict(zip(_PARTIAL_V1[len(partial)], map(float, partial), strict=True))
    if "forces_error" in named:
        named["energy_structures"] = named["structures"]
    return {**progress, "partial": named}


def _model_state_v1(kind: Any, model_config: Any, model_state: Any) -> Any:
    """A version-1 ``model_state`` with the extra states (a model's recorded config and
    species) that version 1 did not save, as the checkpoint's ``model_config`` builds them."""
    if not (kind in MODEL_KINDS and isinstance(model_config, dict)
            and isinstance(model_state, dict)):  # fmt: skip
        return model_state  # damaged: load_checkpoint reports it
    try:
        built = build_model(kind, model_config).state_dict()
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError):
        return model_state  # model_from_checkpoint reports the mismatch
    extra = {key: value for key, value in built.items() if key.endswith("_extra_state")}
    return {**extra, **model_state}


def migrate(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint payload of any earlier format version as the current version (a new
    dictionary; the current version is returned as it is).

    Raises:
        ConfigError: for a version this e3nn_pyg does not know (a newer one).
    """
    version = payload.get("format_version", payload.get("version"))
    if version == FORMAT_VERSION:
        return payload
    if version not in (1, 2, 3):
        raise ConfigError(
            f"format version {version!r}, this e3nn_pyg reads versions 1 to {FORMAT_VERSION}: "
            "update e3nn_pyg or retrain"
        )
    out = {key: value for key, value in payload.items() if key != "version"}
    out["format_version"] = FORMAT_VERSION
    if version < 3:
        _from_v2(out, version)
    out["lr"] = _learning_rate_v3(out)
    _settings_added_v3(out)
    return out


def _from_v2(out: dict[str, Any], version: int) -> None:
    """Bring the entries of a version-1 or 2 payload to version 3's."""
    if isinstance(out.get("kind"), str):
        out["kind"] = _KIND_NAMES_V2.get(out["kind"], out["kind"])
    if version == 1:
        _from_v1(out)
    run_config = out.get("run_config")
    if isinstance(run_config, dict) and isinstance(run_config.get("model", {}), dict):
        out["run_config"] = {**run_config, "model": {"name": _MODEL_V2,
                                                     **run_config.get("model", {})}}  # fmt: skip


def _learning_rate_v3(out: dict[str, Any]) -> float | None:
    """The base learning rate of a payload of versions 1 to 3 (None if it is damaged)."""
    kind, run_config = out.get("kind"), out.get("run_config")
    if kind not in _DEFAULT_LR_V3 or not isinstance(run_config, dict):
        return None
    try:
        configured = configured_lr(kind, run_config)
    except (AttributeError, TypeError):
        return None
    return _DEFAULT_LR_V3[kind] if configured is None else configured


def _settings_added_v3(out: dict[str, Any]) -> None:
    """The model settings added since (``SETTINGS_ADDED_LATER`` of its class) with the
    values that the architecture of versions 1 to 3 had, in the ``model_config`` and in the
    run's section of that kind, so that the checkpoint resumes."""
    kind = MODEL_KINDS.get(out.get("kind")) if isinstance(out.get("kind"), str) else None
    added = getattr(kind.section.cls, "SETTINGS_ADDED_LATER", {}) if kind else {}
    if not added:
        return
    if isinstance(out.get("model_config"), dict):
        out["model_config"] = {**added, **out["model_config"]}
    run_config = out.get("run_config")
    section = run_config.get(kind.section.name) if isinstance(run_config, dict) else None
    if isinstance(section, dict) and section.get("name") == kind.name:
        out["run_config"] = {**run_config, kind.section.name: {**added, **section}}


def _from_v1(out: dict[str, Any]) -> None:
    """Bring the entries of a version-1 payload (its kind already renamed) to version 2's."""
    if isinstance(out.get("run_config"), dict):
        out["run_config"] = _run_config_v1(out["run_config"])
    if isinstance(out.get("progress"), dict):
        out["progress"] = _progress_v1(out["progress"])
    if isinstance(out.get("kind"), str) and out["kind"] in MODEL_KINDS:
        out.setdefault("name", MODEL_KINDS[out["kind"]].label)
        out["model_state"] = _model_state_v1(
            out["kind"], out.get("model_config"), out.get("model_state")
        )


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (with the format tag) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, temporary)
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
    try:
        payload = migrate(payload)
    except ConfigError as error:
        raise ConfigError(f"checkpoint {path} has {error}") from None
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise ConfigError(f"checkpoint {path} lacks {missing}: {hint}")
    damaged = [key for key in _REQUIRED if key != "kind" and not isinstance(payload[key], dict)]
    if not isinstance(payload["kind"], str) or payload["kind"] not in MODEL_KINDS:
        damaged.append("kind")
    target = payload["target"]
    if not damaged and not all(isinstance(target.get(k), str) for k in ("name", "unit")):
        damaged = ["target"]
    if damaged:
        raise ConfigError(
            f"checkpoint {path} is damaged ({', '.join(damaged)} not as written by "
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


def load(path: str | os.PathLike) -> nn.Module:
    """The trained model of a checkpoint that the package writes (``best.pt`` or ``last.pt``
    of ``e3nn-pyg train``), in eval mode, on the CPU, in the dtype it was trained in.

    Args:
        path (str or os.PathLike): the checkpoint.

    Raises:
        ConfigError: (a :class:`ValueError`) when the file is missing, not an e3nn-pyg
            checkpoint, damaged, or does not fit its model.

    Example::

        model = e3nn_pyg.load("runs/eth/equivariant_net/best.pt")  # a potential
        energy, forces = model(z, pos, batch)
    """
    payload = load_checkpoint(path)
    return model_from_checkpoint(payload, path).eval()


def task_from_checkpoint(
    payload: dict[str, Any], path: str | os.PathLike
) -> PropertyTask | PotentialTask:
    """The task a loaded checkpoint's model was trained on, with its settings (loss,
    weights), from the checkpoint alone: no file of the run is read."""
    config = TrainConfig.from_dict(payload["run_config"], source=f"checkpoint {path}")
    if config.potential:
        return PotentialTask(config.energy_weight, config.forces_weight, config.loss,
                             config.stress_weight)  # fmt: skip
    return PropertyTask(QM9_TARGET_INFO[target_index(config.target)], config.loss)

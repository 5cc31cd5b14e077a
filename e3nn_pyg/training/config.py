r"""The configuration of a training run: one flat set of keys shared by the command line
(``--num-molecules`` is the key ``num_molecules``) and YAML files (``--config run.yaml``).

Values are resolved in the order defaults < config file < command-line flags, and every
value is checked before anything runs: an unknown key, a wrong type or an invalid choice
raises :class:`ConfigError` with a message that says what to fix.

>>> config = TrainConfig.from_dict({"target": "U0", "num_molecules": 1000})
>>> config.target, config.num_molecules, config.batch_size
('U0', 1000, 32)
>>> TrainConfig.from_dict({"lr_rate": 0.1})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
e3nn_pyg.training.config.ConfigError: unknown config key 'lr_rate' in config (did you mean ...
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..checks import is_int, is_real
from ..datasets import QM9_TARGETS, target_index

__all__ = [
    "BASELINES",
    "DATASETS",
    "EXTENSIVE_TARGETS",
    "ConfigError",
    "TrainConfig",
    "default_readout",
]

DATASETS = ("qm9", "fixture")
BASELINES = ("schnet",)
SCHEDULERS = ("cosine", "plateau", "none")
LOSSES = ("l1", "mse")
DEVICES = ("auto", "cpu", "cuda")
MAX_CUTOFF = 1000.0  # Å: far beyond any interatomic cutoff; larger values are typos
DTYPES = ("float32", "float64")

#: Targets that grow with the size of the molecule: summed over atoms (``readout="add"``)
#: and referenced per element; the others are averaged (``readout="mean"``).
EXTENSIVE_TARGETS = frozenset(
    ["alpha", "r2", "zpve", "U0", "U", "H", "G", "cv", "U0_atom", "U_atom", "H_atom", "G_atom"]
)


class ConfigError(ValueError):
    """A user mistake in the configuration, a file or a checkpoint: the message says what to
    fix (the command line prints it as one line, without a traceback)."""


@dataclass
class TrainConfig:
    r"""Everything that defines a training run.

    Data:
        dataset (str): ``"qm9"`` (all of QM9 from ``qm9pack``) or ``"fixture"`` (the 297
            committed molecules, for tests). (default: ``"qm9"``)
        data_root (str, optional): cache folder of the processed dataset.
            (default: :obj:`None`: ``~/.cache/e3nn_pyg/qm9``)
        target (str): a QM9 target name, e.g. ``"U0"``, ``"gap"``. (default: ``"U0"``)
        num_molecules (int, optional): a random subset of this size (drawn with ``seed``).
            (default: :obj:`None`: all)
        split (list of 3 floats): train, validation and test fractions.
            (default: ``[0.8, 0.1, 0.1]``)
        seed (int): seeds the subset, the split, the initialization and the shuffling.
            (default: ``0``)
        out (str): output folder. (default: ``"runs/e3nn-pyg"``)

    Model (:class:`~e3nn_pyg.models.EquivariantNet`):
        hidden_Rs, lmax, num_layers, cutoff, num_basis, radial_hidden, radial_layers,
        kernel_mode: as the model's arguments. readout (str, optional): ``"add"`` or
        ``"mean"``. (default: :obj:`None`: ``"add"`` for the extensive targets of
        :data:`EXTENSIVE_TARGETS`, ``"mean"`` otherwise)

    Baseline:
        baseline (str, optional): ``"schnet"`` also trains PyG's SchNet on the same split
            with the same budget. (default: :obj:`None`)
        schnet_hidden, schnet_interactions, schnet_gaussians: SchNet's
            ``hidden_channels`` (= ``num_filters``), ``num_interactions``, ``num_gaussians``.
        schnet_lr (float): SchNet's learning rate. (default: ``5e-3``)

    Optimization (AdamW, per model):
        epochs (int): at most this many epochs. (default: ``100``)
        time_budget (float, optional): seconds of training (with validation) per model.
            (default: :obj:`None`: no limit)
        batch_size (int): molecules per batch. (default: ``32``)
        lr (float): AdamW's learning rate of the equivariant model (its weights are
            :math:`\mathcal{N}(0, 1)` with the scale in the forward, hence a larger rate
            than SchNet's). (default: ``1e-2``)
        weight_decay (float): AdamW's weight decay. (default: ``0.0``)
        scheduler (str): ``"cosine"`` (linear warm-up, then cosine decay over the
            budget: epochs or time, whichever runs out first), ``"plateau"`` (halve the
            rate when the validation MAE stalls) or ``"none"``. (default: ``"cosine"``)
        warmup (float): fraction of the budget spent warming up. (default: ``0.02``)
        patience (int): stop after this many epochs without a better validation MAE.
            (default: ``20``)
        loss (str): ``"l1"`` or ``"mse"``, on standardized errors. (default: ``"l1"``)
        max_grad_norm (float, optional): gradient clipping. (default: ``10.0``)
        num_threads (int, optional): torch threads. (default: :obj:`None`: torch's)
        progress (bool): show progress bars. (default: :obj:`True`)

    Hardware (see :mod:`e3nn_pyg.training.distributed`; ``torchrun`` starts several
    processes, ``batch_size`` is then the global batch):
        device (str): ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
            (default: ``"auto"``)
        dtype (str): ``"float32"`` or ``"float64"`` for the models and data.
            (default: ``"float32"``)
    """

    dataset: str = "qm9"
    data_root: str | None = None
    target: str = "U0"
    num_molecules: int | None = None
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 0
    out: str = "runs/e3nn-pyg"
    hidden_Rs: str = "32x0e + 16x1o + 8x2e"
    lmax: int | None = None
    num_layers: int = 3
    cutoff: float = 5.0
    num_basis: int = 8
    radial_hidden: int = 64
    radial_layers: int = 1
    kernel_mode: str = "channelwise"
    readout: str | None = None
    baseline: str | None = None
    schnet_hidden: int = 64
    schnet_interactions: int = 3
    schnet_gaussians: int = 25
    schnet_lr: float = 5e-3
    epochs: int = 100
    time_budget: float | None = None
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup: float = 0.02
    patience: int = 20
    loss: str = "l1"
    max_grad_norm: float | None = 10.0
    num_threads: int | None = None
    progress: bool = True
    device: str = "auto"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.validate()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """A config from a mapping; unknown keys and wrong types raise :class:`ConfigError`."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{source} must be a mapping of keys to values, got {type(values).__name__}"
            )
        keys = cls.keys()
        for key in values:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1) or sorted(
                    (k for k in keys if str(key).startswith(k) or k.startswith(str(key))),
                    key=len,
                    reverse=True,
                )
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(
                    f"unknown config key '{key}' in {source}{hint}; valid keys: {', '.join(keys)}"
                )
        converted = {key: _convert(key, value, source) for key, value in values.items()}
        return cls(**converted)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a YAML file of ``key: value`` lines (the keys of :class:`TrainConfig`)."""
        return cls.from_dict(read_yaml(path), source=os.fspath(path))

    def updated(self, values: Mapping[str, Any], source: str = "command line") -> TrainConfig:
        """A copy with ``values`` (``None`` values are ignored) applied over this config."""
        merged = self.to_dict()
        merged.update({k: v for k, v in values.items() if v is not None})
        return TrainConfig.from_dict(merged, source=source)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    # -- derived values ----------------------------------------------------------------
    @property
    def target_name(self) -> str:
        """The canonical spelling of the target (``"u0"`` -> ``"U0"``)."""
        return QM9_TARGETS[target_index(self.target)]

    @property
    def resolved_readout(self) -> str:
        return self.readout or default_readout(self.target_name)

    def validate(self) -> None:
        """Check every value; raise :class:`ConfigError` naming the key and what to fix."""
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name))
        _choice("dataset", self.dataset, DATASETS)
        try:
            target_index(self.target)
        except (TypeError, ValueError):
            raise ConfigError(
                f"unknown target {self.target!r}: choose one of {', '.join(QM9_TARGETS)}"
            ) from None
        if self.baseline is not None:
            _choice("baseline", self.baseline, BASELINES)
        if self.readout is not None:
            _choice("readout", self.readout, ("add", "mean"))
        _choice("kernel_mode", self.kernel_mode, ("channelwise", "full"))
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("loss", self.loss, LOSSES)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        if len(self.split) != 3 or any(not 0 <= s <= 1 for s in self.split):
            raise ConfigError(
                f"split must be three fractions (train, val, test) in [0, 1], got {self.split}"
            )
        if math.fsum(self.split) > 1 + 1e-9 or min(self.split) == 0:
            raise ConfigError(f"split fractions must be > 0 and sum to at most 1, got {self.split}")
        for key, low in (
            ("num_molecules", 10),
            ("num_layers", 1),
            ("num_basis", 1),
            ("radial_hidden", 1),
            ("radial_layers", 0),
            ("lmax", 0),
            ("schnet_hidden", 1),
            ("schnet_interactions", 1),
            ("schnet_gaussians", 1),
            ("epochs", 1),
            ("batch_size", 1),
            ("patience", 1),
            ("num_threads", 1),
            ("seed", 0),
        ):
            value = getattr(self, key)
            if value is not None and value < low:
                raise ConfigError(f"{key} must be >= {low}, got {value}")
        for key in ("cutoff", "lr", "time_budget", "schnet_lr", "max_grad_norm"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be a positive number, got {value}")
        if self.cutoff > MAX_CUTOFF:
            raise ConfigError(f"cutoff must be at most {MAX_CUTOFF:g} Å, got {self.cutoff:g}")
        if self.seed >= 2**32:
            raise ConfigError(f"seed must be below 2**32 = {2**32}, got {self.seed}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if not self.hidden_Rs.strip():
            raise ConfigError("hidden_Rs must not be empty, e.g. '16x0e + 8x1o + 4x2e'")


def default_readout(target: str) -> str:
    """``"add"`` for the extensive targets (energies, ...), ``"mean"`` for the others."""
    return "add" if target in EXTENSIVE_TARGETS else "mean"


# -- types --------------------------------------------------------------------------------
def _is_split(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(is_real(s) for s in v)


_TYPES: dict[str, tuple[str, Any]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", is_int),
    "float": ("a number", is_real),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "split": ("a list of three numbers, e.g. [0.8, 0.1, 0.1]", _is_split),
}


def _field_type(key: str) -> tuple[str, bool]:
    annotation = str(next(f.type for f in dataclasses.fields(TrainConfig) if f.name == key))
    optional = "None" in annotation
    base = annotation.replace(" | None", "")
    return ("split" if base == "list[float]" else base), optional


def _check_type(key: str, value: Any) -> None:
    kind, optional = _field_type(key)
    if value is None and optional:
        return
    description, check = _TYPES[kind]
    if not check(value):
        shown = "null" if value is None else repr(value)
        raise ConfigError(f"config key '{key}' must be {description}, got {shown}")


def _convert(key: str, value: Any, source: str) -> Any:
    """Normalize YAML/CLI values: ints where floats are expected, tuples to lists."""
    kind, _ = _field_type(key)
    if kind == "float" and is_int(value):
        return float(value)
    if kind == "split" and _is_split(value):
        return [float(s) for s in value]
    return value


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {key} {value!r}: choose one of {', '.join(choices)}")


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping stored in a YAML file, with :class:`ConfigError` for unreadable files."""
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            "reading a config file needs PyYAML: pip install pyyaml (or e3nn_pyg[train])"
        ) from None
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (a binary file?)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold 'key: value' lines, not a list or value")
    return values


def write_yaml(values: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a flat mapping as ``key: value`` lines, the values in JSON notation (valid YAML,
    readable by :func:`read_yaml`; writing needs no YAML library)."""
    with open(path, "w") as f:
        f.writelines(f"{key}: {json.dumps(value)}\n" for key, value in values.items())

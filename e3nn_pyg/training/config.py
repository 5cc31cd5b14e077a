r"""The configuration of a training run: one tree of settings shared by the command line
and YAML files (``--config run.yaml``).

- Run settings are top-level keys (``num_molecules``, flag ``--num-molecules``).
- ``model:`` holds the arguments of :class:`~e3nn_pyg.models.EquivariantNet` (flag
  ``--model.num-layers``), ``baseline:`` those of PyG's
  :class:`~torch_geometric.nn.models.SchNet` with the baseline's ``name`` (flag
  ``--baseline schnet``) and learning rate (``--baseline.lr``).

Each setting is written once: a run setting in :class:`TrainConfig`'s fields (default and
help), a model setting in the model's constructor (default) and docstring (help). The help
of ``e3nn-pyg train --help``, the defaults, the type checks and the resume checks are all
read from there.

Values are resolved in the order defaults < config file < command-line flags, and every
value is checked before anything runs: an unknown key, a wrong type or an invalid choice
raises :class:`ConfigError` with a message that says what to fix.

>>> config = TrainConfig.from_dict({"target": "U0", "model": {"num_layers": 2}})
>>> config.target, config.model["num_layers"], config.model["cutoff"], config.batch_size
('U0', 2, 5.0, 32)
>>> TrainConfig.from_dict({"lr_rate": 0.1})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
e3nn_pyg.training.config.ConfigError: unknown config key 'lr_rate' in config (did you mean ...
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch_geometric.nn.models import SchNet

from ..checks import is_int, is_real
from ..datasets import QM9_TARGETS, target_index
from ..models import EquivariantNet

__all__ = [
    "BASELINE",
    "BASELINES",
    "DATASETS",
    "DATA_KEYS",
    "EXTENSIVE_TARGETS",
    "MODEL",
    "ConfigError",
    "Section",
    "Setting",
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


# -- settings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One key of the configuration: its type (``"str"``, ``"int"``, ``"float"``,
    ``"bool"`` or ``"split"``), whether it may be null, its default and its help text."""

    key: str
    kind: str
    optional: bool
    default: Any
    help: str


_KINDS = {"str": "str", "RsLike": "str", "int": "int", "float": "float", "bool": "bool",
          "list[float]": "split"}  # fmt: skip


def _kind(annotation: Any) -> tuple[str, bool]:
    """``(kind, optional)`` of an annotation, written as a string or as a type."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if not isinstance(annotation, (str, type)):
        text = str(annotation).replace("typing.", "")
    optional = "None" in text or text.startswith("Optional[")
    base = re.sub(r"^Optional\[(.*)\]$", r"\1", text).replace(" | None", "").strip()
    if base not in _KINDS:
        raise TypeError(f"no config type for annotation {text!r}")
    return _KINDS[base], optional


def _argument_help(cls: type) -> dict[str, str]:
    """The ``Args:`` entries of a class docstring (PyG's style), without their defaults."""
    entries: dict[str, str] = {}
    key = None
    in_args = False
    for line in inspect.getdoc(cls).splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        if in_args and line and not line.startswith(" "):  # the next section
            break
        match = re.match(r"^    (\w+) \([^)]*\):\s*(.*)$", line)
        if in_args and match:
            key = match.group(1)
            entries[key] = match.group(2)
        elif in_args and key and line.startswith("        "):
            entries[key] += " " + line.strip()
    return {k: re.sub(r"\s*\(default:.*$", "", v).strip() for k, v in entries.items()}


class Section:
    """A group of settings under one key of the configuration (``model:``, ``baseline:``),
    read from a class's constructor: its defaults and annotations, and the help of its
    docstring.

    Args:
        name (str): the key of the section.
        cls (type): the class whose constructor arguments the section holds.
        keys (tuple of str): the arguments a run may set.
        defaults (dict, optional): the run's own defaults where they differ from the
            constructor's. (default: :obj:`None`)
        extra (dict, optional): settings of the run that are not constructor arguments.
            (default: :obj:`None`)
    """

    def __init__(
        self,
        name: str,
        cls: type,
        keys: tuple[str, ...],
        defaults: Mapping[str, Any] | None = None,
        extra: Mapping[str, Setting] | None = None,
    ) -> None:
        self.name = name
        self.cls = cls
        self.argument_keys = keys
        parameters = inspect.signature(cls).parameters
        docs = _argument_help(cls)
        self.settings: dict[str, Setting] = dict(extra or {})
        for key in keys:
            parameter = parameters[key]
            kind, optional = _kind(parameter.annotation)
            default = (defaults or {}).get(key, parameter.default)
            help_text = docs[key] + f" ({cls.__name__}'s {key})"
            self.settings[key] = Setting(key, kind, optional or default is None, default,
                                         help_text)  # fmt: skip

    def arguments(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments among a section's values."""
        return {key: values[key] for key in self.argument_keys}

    def defaults(self) -> dict[str, Any]:
        return {key: _copy(setting.default) for key, setting in self.settings.items()}

    def checked(self, values: Any, source: str) -> dict[str, Any]:
        """The section's values over its defaults, converted and type-checked."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"'{self.name}' in {source} must be a mapping of keys to values, got "
                f"{type(values).__name__}"
            )
        _check_keys(values, list(self.settings), source, prefix=f"{self.name}.")
        out = self.defaults()
        for key, value in values.items():
            setting = self.settings[key]
            out[key] = _checked_value(f"{self.name}.{key}", setting.kind, setting.optional, value)
        return out


#: The equivariant model's settings (``model:``).
MODEL = Section(
    "model",
    EquivariantNet,
    ("hidden_Rs", "lmax", "num_layers", "cutoff", "max_num_neighbors", "num_basis",
     "radial_hidden", "radial_layers", "kernel_mode", "readout"),
    defaults={"readout": None},  # None: from the target (see TrainConfig.resolved_readout)
)  # fmt: skip

#: The baseline's settings (``baseline:``); a smaller SchNet than PyG's default, trained
#: in the same time as the equivariant model.
BASELINE = Section(
    "baseline",
    SchNet,
    ("hidden_channels", "num_filters", "num_interactions", "num_gaussians", "cutoff"),
    defaults={
        "hidden_channels": 64,
        "num_filters": 64,
        "num_interactions": 3,
        "num_gaussians": 25,
        "cutoff": None,
    },
    extra={
        "name": Setting(
            "name",
            "str",
            True,
            None,
            "the baseline to train on the same split with the same budget: schnet (default: none)",
        ),
        "lr": Setting("lr", "float", False, 5e-3, "AdamW learning rate of the baseline"),
    },
)
BASELINE.settings["cutoff"] = dataclasses.replace(
    BASELINE.settings["cutoff"], help="SchNet's cutoff in Å (default: the model's cutoff)"
)

SECTIONS = {section.name: section for section in (MODEL, BASELINE)}

#: The run settings that choose the data: a checkpoint resumes only under the same values.
DATA_KEYS = ("dataset", "data", "test_data", "isolated_atoms", "target", "num_molecules", "split",
             "seed")  # fmt: skip

#: The flat keys of earlier versions (checkpoints and YAML files written before the
#: sections): where their values go now.
_LEGACY_KEYS = {
    **{key: [("model", key)] for key in MODEL.settings},
    "schnet_hidden": [("baseline", "hidden_channels"), ("baseline", "num_filters")],
    "schnet_interactions": [("baseline", "num_interactions")],
    "schnet_gaussians": [("baseline", "num_gaussians")],
    "schnet_lr": [("baseline", "lr")],
}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TrainConfig:
    # The docstring is written from the fields below (see _document): one place per setting.

    # data
    dataset: str | None = field(
        default=None,
        metadata=_help(
            "qm9 (all of QM9, from the qm9pack package) or fixture (the 297 committed molecules, "
            "for tests); none when data is given"
        ),
    )
    data: str | None = field(
        default=None,
        metadata=_help(
            "a file that ASE reads (extxyz, ...) with the energy and forces of every structure: "
            "train an interatomic potential instead of a QM9 target"
        ),
    )
    test_data: str | None = field(
        default=None,
        metadata=_help(
            "the test structures of a potential; data is then split into train and validation "
            "(split[1] of it validates)"
        ),
    )
    isolated_atoms: str | None = field(
        default=None,
        metadata=_help(
            "a file with the isolated-atom energies (E0s) of a potential's elements (default: "
            "the isolated-atom entries of data, else a least-squares fit)"
        ),
    )
    data_root: str | None = field(
        default=None,
        metadata=_help(
            "cache folder of the processed dataset (default: ~/.cache/e3nn_pyg/<dataset>)"
        ),
    )
    target: str = field(
        default="U0",
        metadata=_help(
            "the QM9 target: mu alpha homo lumo gap r2 zpve U0 U H G cv U0_atom ... A B C"
        ),
    )
    num_molecules: int | None = field(
        default=None,
        metadata=_help(
            "a random subset of this many molecules (drawn with seed); of a data file, its first "
            "structures (default: all)"
        ),
    )
    split: list[float] = field(
        default_factory=lambda: [0.8, 0.1, 0.1],
        metadata=_help("train, validation and test fractions"),
    )
    seed: int = field(
        default=0,
        metadata=_help("seeds the subset, the split, the initialization and the shuffling"),
    )
    out: str = field(
        default="runs/e3nn-pyg", metadata=_help("output folder (checkpoints, metrics.json, plots)")
    )
    # models
    model: dict[str, Any] = field(
        default_factory=MODEL.defaults,
        metadata=_help(
            "the arguments of EquivariantNet (readout: add or mean, default from the target)"
        ),
    )
    baseline: dict[str, Any] = field(
        default_factory=BASELINE.defaults,
        metadata=_help("the baseline (name: schnet) and the arguments of PyG's SchNet"),
    )
    # optimization (AdamW, per model)
    epochs: int = field(default=100, metadata=_help("at most this many epochs per model"))
    time_budget: float | None = field(
        default=None,
        metadata=_help("seconds of training (with validation) per model (default: no limit)"),
    )
    batch_size: int = field(
        default=32,
        metadata=_help(
            "structures per batch (the global batch when torchrun starts several processes)"
        ),
    )
    lr: float = field(
        default=1e-2,
        metadata=_help(
            "AdamW learning rate of the equivariant model (its weights are N(0, 1) with the scale "
            "in the forward, hence a larger rate than SchNet's)"
        ),
    )
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    scheduler: str = field(
        default="cosine",
        metadata=_help(
            "cosine (linear warm-up, then cosine decay over the budget: epochs or time, whichever "
            "runs out first), plateau (halve the rate when the validation MAE stalls) or none"
        ),
    )
    warmup: float = field(
        default=0.02, metadata=_help("fraction of the budget spent warming up (cosine)")
    )
    patience: int = field(
        default=20, metadata=_help("stop after this many epochs without a better validation MAE")
    )
    loss: str = field(default="l1", metadata=_help("l1 or mse, on standardized errors"))
    energy_weight: float = field(
        default=1.0, metadata=_help("weight of the energy per atom in a potential's loss")
    )
    forces_weight: float = field(
        default=10.0, metadata=_help("weight of the forces in a potential's loss")
    )
    stress_weight: float = field(
        default=1.0,
        metadata=_help(
            "weight of the stress (as a virial per atom) in a potential's loss, for periodic "
            "structures with a stress"
        ),
    )
    ema_decay: float | None = field(
        default=0.99,
        metadata=_help(
            "decay of the moving average of the weights used for validation, checkpoints and the "
            "final model (null: no average)"
        ),
    )
    max_grad_norm: float | None = field(
        default=10.0, metadata=_help("gradient clipping norm (null: none)")
    )
    num_threads: int | None = field(
        default=None, metadata=_help("torch threads (default: torch's choice)")
    )
    progress: bool = field(default=True, metadata=_help("show progress bars"))
    # hardware
    device: str = field(default="auto", metadata=_help("auto (CUDA when present), cpu or cuda"))
    dtype: str = field(
        default="float32", metadata=_help("float32 or float64, for the models and the data")
    )

    def __post_init__(self) -> None:
        for name, section in SECTIONS.items():
            setattr(self, name, section.checked(getattr(self, name), "config"))
        self.validate()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Every setting by its dotted key (``"lr"``, ``"model.cutoff"``)."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.name in SECTIONS:
                for key, setting in SECTIONS[f.name].settings.items():
                    out[f"{f.name}.{key}"] = setting
                continue
            kind, optional = _field_type(f.name)
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out[f.name] = Setting(f.name, kind, optional, default, f.metadata["help"])
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """A config from a (nested) mapping; unknown keys and wrong types raise
        :class:`ConfigError`. The flat keys of earlier versions (``hidden_Rs``,
        ``schnet_hidden``, ``baseline: schnet``, ...) are read into their sections."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{source} must be a mapping of keys to values, got {type(values).__name__}"
            )
        values = _from_legacy(values)
        _check_keys(values, cls.keys(), source)
        converted = {}
        for key, value in values.items():
            if key in SECTIONS:
                converted[key] = SECTIONS[key].checked(value, source)
            else:
                kind, optional = _field_type(key)
                converted[key] = _checked_value(key, kind, optional, value)
        return cls(**converted)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a YAML file of ``key: value`` lines and ``model:``/``baseline:`` sections."""
        return cls.from_dict(read_yaml(path), source=os.fspath(path))

    def updated(self, values: Mapping[str, Any], source: str = "command line") -> TrainConfig:
        """A copy with ``values`` applied over this config: ``None`` values are ignored, a
        section's values update that section."""
        merged = self.to_dict()
        for key, value in values.items():
            if key in SECTIONS and isinstance(value, Mapping):
                merged[key].update({k: v for k, v in value.items() if v is not None})
            elif value is not None:
                merged[key] = value
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
        readout = self.model["readout"]
        if self.data is not None:
            return readout or "add"  # energies are extensive
        return readout or default_readout(self.target_name)

    @property
    def resolved_dataset(self) -> str:
        """The dataset's name in logs and files: ``"qm9"``, ``"fixture"`` or the data file."""
        if self.data is not None:
            return os.path.basename(self.data)
        return self.dataset or "qm9"

    @property
    def baseline_cutoff(self) -> float:
        return self.baseline["cutoff"] or self.model["cutoff"]

    def validate(self) -> None:
        """Check every value; raise :class:`ConfigError` naming the key and what to fix.

        The model's own arguments are checked by its constructor (see
        :func:`~e3nn_pyg.training.run.check_models`); here only what the run needs of them.
        """
        for f in dataclasses.fields(self):
            if f.name not in SECTIONS:
                kind, optional = _field_type(f.name)
                _checked_value(f.name, kind, optional, getattr(self, f.name))
        if self.dataset is not None:
            _choice("dataset", self.dataset, DATASETS)
            if self.data is not None:
                raise ConfigError(
                    f"give dataset ({self.dataset!r}) or data ({self.data!r}), not both"
                )
        for key in ("test_data", "isolated_atoms"):
            if getattr(self, key) is not None and self.data is None:
                raise ConfigError(f"{key} needs data (the training structures)")
        for key in ("data", "test_data", "isolated_atoms"):
            if getattr(self, key) is not None and not getattr(self, key).strip():
                raise ConfigError(f"{key} must be a file path, got an empty string")
        for key in ("energy_weight", "forces_weight", "stress_weight"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key} must be a number >= 0, got {value}")
        if self.energy_weight == 0 and self.forces_weight == 0:
            raise ConfigError("energy_weight and forces_weight are both 0: nothing to learn")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(
                f"ema_decay must lie in (0, 1) (or null: no EMA), got {self.ema_decay}"
            )
        try:
            target_index(self.target)
        except (TypeError, ValueError):
            raise ConfigError(
                f"unknown target {self.target!r}: choose one of {', '.join(QM9_TARGETS)}"
            ) from None
        if self.baseline["name"] is not None:
            _choice("baseline", self.baseline["name"], BASELINES)
        if self.model["readout"] is not None:
            _choice("model.readout", self.model["readout"], ("add", "mean"))
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
            ("epochs", 1),
            ("batch_size", 1),
            ("patience", 1),
            ("num_threads", 1),
            ("seed", 0),
        ):
            value = getattr(self, key)
            if value is not None and value < low:
                raise ConfigError(f"{key} must be >= {low}, got {value}")
        for key, value in (
            ("lr", self.lr),
            ("time_budget", self.time_budget),
            ("baseline.lr", self.baseline["lr"]),
            ("max_grad_norm", self.max_grad_norm),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be a positive number, got {value}")
        for key in ("model.cutoff", "baseline.cutoff"):
            section, name = key.split(".")
            cutoff = getattr(self, section)[name]
            if cutoff is not None and cutoff > MAX_CUTOFF:
                raise ConfigError(f"{key} must be at most {MAX_CUTOFF:g} Å, got {cutoff:g}")
        if self.seed >= 2**32:
            raise ConfigError(f"seed must be below 2**32 = {2**32}, got {self.seed}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be a fraction in [0, 1), got {self.warmup}")


def _document(cls: type) -> type:
    lines = [
        "Everything that defines a training run (module docstring). Keys, defaults and",
        "meanings:",
        "",
    ]
    for key, setting in cls.settings().items():
        shown = "null" if setting.default is None else json.dumps(setting.default)
        lines.append(f"- ``{key}`` (default ``{shown}``): {setting.help}")
    cls.__doc__ = "\n".join(lines) + "\n"
    return cls


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
    return _kind(str(next(f.type for f in dataclasses.fields(TrainConfig) if f.name == key)))


def _checked_value(key: str, kind: str, optional: bool, value: Any) -> Any:
    """``value`` checked against its type and normalized (ints where floats are expected
    become floats, tuples lists)."""
    if value is None and optional:
        return None
    description, check = _TYPES[kind]
    if not check(value):
        shown = "null" if value is None else repr(value)
        raise ConfigError(f"config key '{key}' must be {description}, got {shown}")
    if kind == "float":
        return float(value)
    if kind == "split":
        return [float(s) for s in value]
    return value


def _check_keys(values: Mapping, keys: list[str], source: str, prefix: str = "") -> None:
    for key in values:
        if key in keys:
            continue
        close = difflib.get_close_matches(str(key), keys, n=1) or sorted(
            (k for k in keys if str(key).startswith(k) or k.startswith(str(key))),
            key=len,
            reverse=True,
        )
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown config key '{prefix}{key}' in {source}{hint}; valid keys: "
            + ", ".join(prefix + k for k in keys)
        )


def _from_legacy(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat keys of earlier versions moved into their sections."""
    out = {key: copy.deepcopy(value) for key, value in values.items()}
    if isinstance(out.get("baseline"), str) or ("baseline" in out and out["baseline"] is None):
        out["baseline"] = {"name": out["baseline"]}
    for old, places in _LEGACY_KEYS.items():
        if old not in out or (old in SECTIONS and isinstance(out[old], Mapping)):
            continue
        value = out.pop(old)
        for section, key in places:
            target = out.setdefault(section, {})
            if isinstance(target, dict):
                target.setdefault(key, value)
    return out


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {key} {value!r}: choose one of {', '.join(choices)}")


def _copy(value: Any) -> Any:
    return copy.deepcopy(value) if isinstance(value, (list, dict)) else value


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
    """Write a mapping as ``key: value`` lines and its sections (mappings) as indented
    blocks, the values in JSON notation (valid YAML, readable by :func:`read_yaml`; writing
    needs no YAML library)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            lines.append(f"{key}:\n")
            lines.extend(f"  {k}: {json.dumps(v)}\n" for k, v in value.items())
        else:
            lines.append(f"{key}: {json.dumps(value)}\n")
    with open(path, "w") as f:
        f.writelines(lines)


_document(TrainConfig)

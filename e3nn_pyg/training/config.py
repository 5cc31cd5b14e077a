r"""The configuration of a training run: one tree of settings shared by the command line
and YAML files (``--config run.yaml``).

- Run settings are top-level keys (``num_molecules``, flag ``--num-molecules``).
- ``model:`` names the model kind (``name``, flag ``--model many-body``; default
  ``equivariant-net``) and holds the arguments of its constructor
  (:class:`~e3nn_pyg.models.EquivariantNet`'s, ...; flag ``--model.num-layers``);
  ``baseline:`` names the baseline (``--baseline schnet``) and holds the arguments of PyG's
  :class:`~torch_geometric.nn.models.SchNet` and its learning rate (``--baseline.lr``). A
  section given as a name (``model: many-body``) chooses the kind with its defaults; naming
  another kind than a config file's (``--model many-body`` over ``model: {name:
  equivariant-net, ...}``) starts from the new kind's defaults; a key of another kind than
  the chosen one is refused, naming its kind.

Each setting is written once: a run setting in :class:`TrainConfig`'s fields (default and
help and limits: ``min``, ``max``, ``above``, ``below``, ``choices``), a model setting in the
model's constructor (default) and docstring (help), its section and the kind's default
learning rate in the registry of model kinds (:mod:`~e3nn_pyg.training.registry`). The help
of ``e3nn-pyg train --help``, the defaults, the checks and the resume checks are all read
from there; :meth:`TrainConfig.validate` is a loop over the settings plus the few rules
between them.

Values are resolved in the order defaults < config file < command-line flags, and every
value is checked before anything runs: an unknown key, a wrong type or a value outside its
limits raises :class:`ConfigError` with a message that says what to fix.

>>> config = TrainConfig.from_dict({"target": "U0", "model": {"num_layers": 2}})
>>> config.model["name"], config.model["num_layers"], config.model["cutoff"]
('equivariant-net', 2, 5.0)
>>> config.batch_size, config.resolved_batch_size  # (null: the task's default)
(None, 32)
>>> TrainConfig.from_dict({"lr_rate": 0.1})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
e3nn_pyg.training.settings.ConfigError: unknown config key 'lr_rate' in config (did you mean ...
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..datasets import QM9_TARGETS, target_index
from .registry import BASELINES, MAX_CUTOFF, MODELS, SECTIONS, default_rates
from .settings import ConfigError, Limits, Setting, annotation_kind, check_keys

__all__ = [
    "BASELINES",
    "DATASETS",
    "DATA_KEYS",
    "EXTENSIVE_TARGETS",
    "MAX_CUTOFF",
    "MODELS",
    "SECTIONS",
    "ConfigError",
    "Setting",
    "TrainConfig",
    "default_readout",
]

DATASETS = ("qm9", "fixture")
DTYPES = ("float32", "float64")

#: The default batch sizes. A potential learns from the forces of every atom, so that small
#: batches (more steps per epoch) learn more per CPU-minute (measured on ethanol: the
#: "Interatomic potentials" page of the documentation).
POTENTIAL_BATCH_SIZE = 8
PROPERTY_BATCH_SIZE = 32

#: Targets that grow with the size of the molecule: summed over atoms (``readout="add"``)
#: and referenced per element; the others are averaged (``readout="mean"``).
EXTENSIVE_TARGETS = frozenset(
    ["alpha", "r2", "zpve", "U0", "U", "H", "G", "cv", "U0_atom", "U_atom", "H_atom", "G_atom"]
)

#: The run settings that choose the data: a checkpoint resumes only under the same values.
DATA_KEYS = ("dataset", "data", "test_data", "isolated_atoms", "target", "num_molecules", "split",
             "seed")  # fmt: skip


def _setting(help: str, kind: str | None = None, **limits: Any) -> dict[str, Any]:
    """The metadata of a field: its help, its kind where the annotation does not say it
    (``"path"``), and its :class:`~e3nn_pyg.training.settings.Limits`."""
    return {"help": help, "kind": kind, "limits": Limits(**limits)}


@dataclass
class TrainConfig:
    # The docstring is written from the fields below (see _document): one place per setting.

    # data
    dataset: str | None = field(
        default=None,
        metadata=_setting(
            "qm9 (all of QM9, from the qm9pack package) or fixture (the 297 committed molecules, "
            "for tests); null when data is given (default: qm9 without data)",
            choices=DATASETS,
        ),
    )
    data: str | None = field(
        default=None,
        metadata=_setting(
            "a file that ASE reads (extxyz, ...) with energies and forces (stresses of periodic "
            "structures optional; a structure without a label is left out of that term): "
            "train an interatomic potential instead of a QM9 target",
            kind="path",
        ),
    )
    test_data: str | None = field(
        default=None,
        metadata=_setting(
            "the test structures of a potential; data is then split into train and validation "
            "(split[1] of it validates)",
            kind="path",
        ),
    )
    isolated_atoms: str | None = field(
        default=None,
        metadata=_setting(
            "a file with the isolated-atom energies (E0s) of a potential's elements (default: "
            "the isolated-atom entries of data, else a least-squares fit)",
            kind="path",
        ),
    )
    data_root: str | None = field(
        default=None,
        metadata=_setting(
            "cache folder of the processed dataset (default: ~/.cache/e3nn_pyg/<dataset>)"
        ),
    )
    target: str = field(
        default="U0",
        metadata=_setting(
            "the QM9 target, in any case: one of {" + ", ".join(QM9_TARGETS) + "} (a potential: "
            "not used)"
        ),
    )
    num_molecules: int | None = field(
        default=None,
        metadata=_setting(
            "a random subset of this many molecules (drawn with seed); of a data file, its first "
            "structures (default: all)",
            min=10,
        ),
    )
    split: list[float] = field(
        default_factory=lambda: [0.8, 0.1, 0.1],
        metadata=_setting(
            "train, validation and test fractions, summing to at most 1", above=0, max=1
        ),
    )
    seed: int = field(
        default=0,
        metadata=_setting(
            "seeds the subset, the split, the initialization and the shuffling",
            min=0,
            max=2**32 - 1,
        ),
    )
    out: str = field(
        default="runs/e3nn-pyg",
        metadata=_setting("output folder (checkpoints, metrics.json, plots)"),
    )
    # models
    model: dict[str, Any] = field(
        default_factory=SECTIONS["model"].defaults,
        metadata=_setting(
            f"the model kind (name: {', '.join(MODELS)}) and the arguments of its constructor "
            "(readout: add or mean, default from the target)"
        ),
    )
    baseline: dict[str, Any] = field(
        default_factory=SECTIONS["baseline"].defaults,
        metadata=_setting(
            f"the baseline (name: {', '.join(BASELINES)}) and the arguments of its constructor"
        ),
    )
    # optimization (AdamW, per model)
    epochs: int = field(default=100, metadata=_setting("at most this many epochs per model", min=1))
    time_budget: float | None = field(
        default=None,
        metadata=_setting(
            "seconds of training (with validation) per model (default: no limit)", above=0
        ),
    )
    batch_size: int | None = field(
        default=None,
        metadata=_setting(
            "structures per batch (the global batch when torchrun starts several processes; "
            f"default: {POTENTIAL_BATCH_SIZE} for a potential, {PROPERTY_BATCH_SIZE} for a QM9 "
            "property)",
            min=1,
        ),
    )
    lr: float | None = field(
        default=None,
        metadata=_setting(
            f"AdamW learning rate of the model (default: the kind's own: {default_rates(MODELS)})",
            above=0,
        ),
    )
    weight_decay: float = field(default=0.0, metadata=_setting("AdamW weight decay", min=0))
    scheduler: str = field(
        default="cosine",
        metadata=_setting(
            "cosine (linear warm-up, then cosine decay over the budget: epochs or time, whichever "
            "runs out first), plateau (halve the rate when the validation MAE stalls) or none",
            choices=("cosine", "plateau", "none"),
        ),
    )
    warmup: float = field(
        default=0.02,
        metadata=_setting("fraction of the budget spent warming up (cosine)", min=0, below=1),
    )
    patience: int = field(
        default=20,
        metadata=_setting("stop after this many epochs without a better validation MAE", min=1),
    )
    loss: str = field(
        default="l1", metadata=_setting("l1 or mse, on standardized errors", choices=("l1", "mse"))
    )
    energy_weight: float = field(
        default=1.0, metadata=_setting("weight of the energy per atom in a potential's loss", min=0)
    )
    forces_weight: float = field(
        default=10.0, metadata=_setting("weight of the forces in a potential's loss", min=0)
    )
    stress_weight: float = field(
        default=1.0,
        metadata=_setting(
            "weight of the stress (as a virial per atom) in a potential's loss, for periodic "
            "structures with a stress",
            min=0,
        ),
    )
    ema_decay: float | None = field(
        default=0.99,
        metadata=_setting(
            "decay of the moving average of the weights used for validation, checkpoints and the "
            "final model (null: no average)",
            above=0,
            below=1,
        ),
    )
    max_grad_norm: float | None = field(
        default=10.0, metadata=_setting("gradient clipping norm (null: none)", above=0)
    )
    num_threads: int | None = field(
        default=None, metadata=_setting("torch threads (default: torch's choice)", min=1)
    )
    progress: bool = field(default=True, metadata=_setting("show progress bars"))
    compile: bool = field(
        default=False,
        metadata=_setting(
            "torch.compile the training steps (e3nn_pyg.compile_model: one graph around the "
            "native operators; the first steps compile)"
        ),
    )
    # hardware
    device: str = field(
        default="auto",
        metadata=_setting("auto (CUDA when present), cpu or cuda", choices=("auto", "cpu", "cuda")),
    )
    dtype: str = field(
        default="float32",
        metadata=_setting("float32 or float64, for the models and the data", choices=DTYPES),
    )

    def __post_init__(self) -> None:
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
                for key, setting in SECTIONS[f.name].flag_settings().items():
                    out[f"{f.name}.{key}"] = setting
                continue
            kind, optional = annotation_kind(str(f.type))
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out[f.name] = Setting(f.name, f.metadata["kind"] or kind, optional, default,
                                  f.metadata["help"], f.metadata["limits"])  # fmt: skip
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """A config from a (nested) mapping; unknown keys, wrong types and values outside
        their limits raise :class:`ConfigError`. A section given as a plain value names its
        model kind (``model: many-body``, ``baseline: schnet``)."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{source} must be a mapping of keys to values, got {type(values).__name__}"
            )
        values = {key: copy.deepcopy(value) for key, value in values.items()}
        in_sections: dict[str, str] = {}  # where a section's key goes (the first section's)
        for name, section in SECTIONS.items():
            for key in section.flag_settings():
                in_sections.setdefault(key, f"{name}.{key}")
        check_keys(values, cls.keys(), source, elsewhere=in_sections)
        for name, section in SECTIONS.items():
            if name in values and (values[name] is None or isinstance(values[name], str)):
                values[name] = {"name": values[name]}
            if name in values:
                values[name] = section.checked(values[name], source)
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a YAML file of ``key: value`` lines and ``model:``/``baseline:`` sections."""
        return cls.from_dict(read_yaml(path), source=os.fspath(path))

    def updated(self, values: Mapping[str, Any], source: str = "command line") -> TrainConfig:
        """A copy with ``values`` applied over this config (``None`` sets null), a
        section's values over that section; a section that names another model kind starts
        from that kind's defaults."""
        merged = self.to_dict()
        for key, value in values.items():
            choice = SECTIONS.get(key)
            if (
                choice is not None
                and isinstance(value, Mapping)
                and not ("name" in value and choice.changes_kind(merged[key], value["name"]))
            ):
                merged[key].update(value)
            else:
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
    def potential(self) -> bool:
        """Whether the run trains an interatomic potential (energies and forces of
        ``data``) rather than a QM9 property."""
        return self.data is not None

    @property
    def resolved_batch_size(self) -> int:
        """The batch size: the config's, or the default of the task (see
        ``POTENTIAL_BATCH_SIZE``)."""
        if self.batch_size is not None:
            return self.batch_size
        return POTENTIAL_BATCH_SIZE if self.potential else PROPERTY_BATCH_SIZE

    @property
    def resolved_readout(self) -> str:
        readout = self.model["readout"]
        if self.potential:
            return readout or "add"  # energies are extensive
        return readout or default_readout(self.target_name)

    @property
    def resolved_dataset(self) -> str:
        """The dataset's name in logs and files: ``"qm9"``, ``"fixture"`` or the data file."""
        if self.potential:
            return os.path.basename(self.data)
        return self.dataset or "qm9"

    @property
    def baseline_cutoff(self) -> float:
        return self.baseline["cutoff"] or self.model["cutoff"]

    def validate(self) -> None:
        """Check every value against its type and limits (normalizing it: floats where
        floats are expected), then the rules between settings; raise :class:`ConfigError`
        naming the key and what to fix.

        The model's own arguments are checked by its constructor (see
        :func:`~e3nn_pyg.training.run.check_models`); here only what the run needs of them.
        """
        settings = self.settings()
        for f in dataclasses.fields(self):
            if f.name in SECTIONS:
                setattr(self, f.name, SECTIONS[f.name].checked(getattr(self, f.name), "config"))
            else:
                setattr(self, f.name, settings[f.name].checked(f.name, getattr(self, f.name)))
        for rule in _RULES:
            problem = rule(self)
            if problem:
                raise ConfigError(problem)


# -- the rules between settings (each returns what is wrong, or None) -----------------------
def _one_data_source(config: TrainConfig) -> str | None:
    if config.dataset is not None and config.data is not None:
        return f"give dataset ({config.dataset!r}) or data ({config.data!r}), not both"
    return None


def _files_need_data(config: TrainConfig) -> str | None:
    for key in ("test_data", "isolated_atoms"):
        if getattr(config, key) is not None and config.data is None:
            return f"{key} needs data (the training structures)"
    return None


def _something_to_learn(config: TrainConfig) -> str | None:
    if config.energy_weight == 0 and config.forces_weight == 0:
        return "energy_weight and forces_weight are both 0: nothing to learn"
    return None


def _known_target(config: TrainConfig) -> str | None:
    try:
        target_index(config.target)
    except (TypeError, ValueError):
        return f"unknown target {config.target!r}: choose one of {', '.join(QM9_TARGETS)}"
    return None


def _split_fits(config: TrainConfig) -> str | None:
    if math.fsum(config.split) > 1 + 1e-9:
        return f"split fractions must sum to at most 1, got {config.split}"
    return None


_RULES = (_one_data_source, _files_need_data, _something_to_learn, _known_target, _split_fits)


def _document(cls: type) -> type:
    lines = [
        "Everything that defines a training run (module docstring). Keys, defaults and",
        "meanings:",
        "",
    ]
    for key, setting in cls.settings().items():
        lines.append(f"- ``{key}`` ({setting.offers()}): {setting.help}")
    cls.__doc__ = "\n".join(lines) + "\n"
    return cls


def default_readout(target: str) -> str:
    """``"add"`` for the extensive targets (energies, ...), ``"mean"`` for the others."""
    return "add" if target in EXTENSIVE_TARGETS else "mean"


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

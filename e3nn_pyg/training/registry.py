r"""The model kinds a run trains: one :class:`ModelKind` entry each.

An entry says everything the training command, the checkpoints and ``evaluate``,
``predict`` and ``export`` need of a kind: its name (the checkpoint's ``kind``, and the
value of ``--model`` or ``--baseline`` that chooses it), its section of the configuration
(the constructor arguments a run sets), its default learning rate, the label of tables and
plots, the output folder, and how to build the model from the constructor arguments a
checkpoint keeps (``model_config``). Adding a model kind is adding an entry to
:data:`MODEL_KINDS`; :data:`SECTIONS` are the keys of the configuration that choose one
(a :class:`~e3nn_pyg.training.settings.KindChoice` each).

- ``equivariant-net``: :class:`~e3nn_pyg.models.EquivariantNet`, chosen by ``--model``
  (the default), label EquivariantNet, folder ``equivariant_net``;
- ``many-body``: :class:`~e3nn_pyg.models.ManyBodyNet`, chosen by ``--model many-body``,
  label ManyBodyNet, folder ``many_body``;
- ``schnet``: PyG's :class:`~torch_geometric.nn.models.SchNet` (a baseline), chosen by
  ``--baseline``, label SchNet, folder ``schnet``.

A run trains the kind its ``model`` names and the one its ``baseline`` names, if any
(:func:`run_kinds`); each kind's learning rate is the run's setting (``lr``,
``baseline.lr``) or, when that is null, the kind's ``default_lr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch_geometric.nn.models import SchNet

from ..kernel import MODES as KERNEL_MODES
from ..models import EnergyForces, EquivariantNet, ManyBodyNet, SchNetInteractionGraph
from ..models.equivariant_net import INT_MINIMUMS, READOUTS
from ..models.many_body import INT_MINIMUMS as MANY_BODY_INT_MINIMUMS
from .settings import ConfigError, KindChoice, Limits, Section, Setting

__all__ = ["BASELINES", "MAX_CUTOFF", "MODELS", "MODEL_KINDS", "SECTIONS", "ModelKind",
           "configured_lr", "default_rates", "lr_setting", "model_kind", "run_kinds"]  # fmt: skip

MAX_CUTOFF = 1000.0  # Å: far beyond any interatomic cutoff; larger values are typos

#: The setting (dotted key) that sets the learning rate of the kinds of each section (null:
#: the kind's own)
_LR_SETTING = {"model": "lr", "baseline": "baseline.lr"}


@dataclass(frozen=True)
class ModelKind:
    """One kind of model a run can train (see the module docstring).

    Args:
        name (str): the checkpoint's ``kind`` and the value of ``--model`` (``--baseline``)
            that chooses it.
        label (str): the model's name in tables, plots and logs.
        folder (str): the subfolder of ``--out`` with its checkpoints and history.
        section (Section): its settings in the configuration, under the key that chooses
            it (``model`` or ``baseline``).
        build (callable): the untrained model from its constructor arguments.
        run_arguments (callable): the arguments the run adds to the section's, from the
            config (e.g. a cutoff that follows the model's).
        default_lr (float): its AdamW learning rate where the run sets none.
        potential_lr (float, optional): the same for a potential (energies and forces of
            ``--data``), where it differs. (default: :obj:`None`: ``default_lr``)
        periodic (bool): whether it takes periodic structures.
        degree_argument (str, optional): the argument that takes the mean number of
            neighbours of the training structures. (default: :obj:`None`)
        export_refusal (str, optional): why ``export`` cannot trace it; :obj:`None` when it
            can. (default: :obj:`None`)
    """

    name: str
    label: str
    folder: str
    section: Section
    build: Callable[[dict[str, Any]], nn.Module]
    run_arguments: Callable[[Any], dict[str, Any]]
    default_lr: float
    periodic: bool
    degree_argument: str | None = None
    export_refusal: str | None = None
    potential_lr: float | None = None

    @property
    def baseline(self) -> bool:
        """Whether it is a baseline (chosen by ``--baseline``, next to the model)."""
        return self.section.name == "baseline"

    def settings(self, config) -> dict[str, Any]:
        """The values of its section in a :class:`~e3nn_pyg.training.TrainConfig`.

        Raises:
            ConfigError: when the section holds another kind's settings.
        """
        values = getattr(config, self.section.name)
        if SECTIONS[self.section.name].section(values["name"]) is not self.section:
            raise ConfigError(
                f"the config's {self.section.name} is {values['name']}: it holds no settings "
                f"of {self.name}"
            )
        return values

    def arguments(self, config) -> dict[str, Any]:
        """Its constructor arguments set by the config (before anything is fitted)."""
        arguments = self.section.arguments(self.settings(config))
        return {**arguments, **self.run_arguments(config), "readout": config.resolved_readout}

    def learning_rate(self, config) -> float:
        """Its learning rate in a run: the config's, or its own default for the run's task."""
        configured = configured_lr(self.name, vars(config))
        if configured is not None:
            return configured
        if config.potential and self.potential_lr is not None:
            return self.potential_lr
        return self.default_lr

    def describe_default_lr(self) -> str:
        """Its default learning rates as text: ``"0.01"``, ``"0.01 (0.04 for a potential)"``."""
        if self.potential_lr is None:
            return f"{self.default_lr:g}"
        return f"{self.default_lr:g} ({self.potential_lr:g} for a potential)"


def _model_section(cls: type, keys: tuple[str, ...], int_minimums: Mapping[str, int],
                   choices: Mapping[str, tuple[str, ...]]) -> Section:  # fmt: skip
    """The section of a kind chosen by ``--model``: integers from their minimums, a cutoff
    up to :data:`MAX_CUTOFF`, the values of ``choices``, and a readout that follows the
    target unless set (see TrainConfig.resolved_readout)."""
    limits = {name: Limits(min=low) for name, low in int_minimums.items()}
    limits.update({name: Limits(choices=values) for name, values in choices.items()})
    limits["cutoff"] = Limits(above=0, max=MAX_CUTOFF)
    limits["readout"] = Limits(choices=READOUTS)
    return Section("model", cls, keys, defaults={"readout": None}, limits=limits)


#: The architecture arguments of each model (the others are fitted on the data or set by the
#: run: offsets, neighbour count, species, forces)
_EQUIVARIANT_NET_KEYS = ("hidden_Rs", "lmax", "num_layers", "cutoff", "max_num_neighbors",
                         "num_basis", "radial_hidden", "radial_layers", "kernel_mode",
                         "readout")  # fmt: skip
_MANY_BODY_KEYS = ("num_channels", "lmax", "hidden_lmax", "correlation", "num_layers", "cutoff",
                   "max_num_neighbors", "num_basis", "radial_hidden", "radial_layers",
                   "readout_hidden", "species_skip", "basis_mixing", "readout")  # fmt: skip


def _build_equivariant(model_config: Mapping[str, Any]) -> nn.Module:
    return EquivariantNet(**model_config)


def _build_many_body(model_config: Mapping[str, Any]) -> nn.Module:
    return ManyBodyNet(**model_config)


def _build_schnet(model_config: Mapping[str, Any]) -> nn.Module:
    arguments = dict(model_config)
    forces = arguments.pop("derivative", False)  # forces by autograd, as ours
    # SchNet has no species argument: a potential's wrapper checks them; the command line
    # checks them for every kind (see e3nn_pyg.training.run)
    species = arguments.pop("species", None)
    graph = SchNetInteractionGraph(arguments["cutoff"])
    schnet = SchNet(**arguments, interaction_graph=graph)
    return EnergyForces(schnet, species=species) if forces else schnet


EQUIVARIANT_NET = ModelKind(
    name="equivariant-net",
    label="EquivariantNet",
    folder="equivariant_net",
    section=_model_section(
        EquivariantNet, _EQUIVARIANT_NET_KEYS, INT_MINIMUMS, {"kernel_mode": KERNEL_MODES}
    ),
    build=_build_equivariant,
    run_arguments=lambda config: {},
    # its weights are N(0, 1) with the scale in the forward, hence a larger rate than SchNet's
    default_lr=1e-2,
    periodic=True,
    degree_argument="avg_num_neighbors",
)

MANY_BODY = ModelKind(
    name="many-body",
    label="ManyBodyNet",
    folder="many_body",
    section=_model_section(ManyBodyNet, _MANY_BODY_KEYS, MANY_BODY_INT_MINIMUMS, {}),
    build=_build_many_body,
    run_arguments=lambda config: {},
    default_lr=1e-2,
    # the best of 5e-3, 1e-2, 2e-2 and 4e-2 for the ethanol potential at a fixed time on one
    # core (docs: "Interatomic potentials", the settings tried); worse for QM9's U0 (1e-2)
    potential_lr=4e-2,
    periodic=True,
    degree_argument="avg_num_neighbors",
)

#: A smaller SchNet than PyG's default, trained in the same time as the equivariant model.
SCHNET = ModelKind(
    name="schnet",
    label="SchNet",
    folder="schnet",
    section=Section(
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
        limits={
            "hidden_channels": Limits(min=1),
            "num_filters": Limits(min=1),
            "num_interactions": Limits(min=1),
            # PyG's Gaussian smearing divides by the spacing of its first two centres
            "num_gaussians": Limits(min=2),
            "cutoff": Limits(above=0, max=MAX_CUTOFF),
        },
    ),
    build=_build_schnet,
    run_arguments=lambda config: {"cutoff": config.baseline_cutoff},
    default_lr=5e-3,
    periodic=False,
    export_refusal="PyG's SchNet reads batch.max() in its readout, which torch.export cannot trace",
)
SCHNET.section.settings["cutoff"] = Setting(
    "cutoff", "float", True, None, "the cutoff in Å (default: the model's cutoff)",
    Limits(above=0, max=MAX_CUTOFF),
)  # fmt: skip

#: Every model kind by name.
MODEL_KINDS = {kind.name: kind for kind in (EQUIVARIANT_NET, MANY_BODY, SCHNET)}
#: The values of ``--model``.
MODELS = tuple(name for name, kind in MODEL_KINDS.items() if not kind.baseline)
#: The values of ``--baseline``.
BASELINES = tuple(name for name, kind in MODEL_KINDS.items() if kind.baseline)


def lr_setting(kind: str) -> str:
    """The setting that sets the learning rate of the model kind ``kind``: ``"lr"`` or
    ``"baseline.lr"``."""
    return _LR_SETTING[MODEL_KINDS[kind].section.name]


def configured_lr(kind: str, run: Mapping[str, Any]) -> float | None:
    """The learning rate that the settings ``run`` (a config as a mapping; a missing key is
    null) set for the model kind ``kind`` (None: the kind's default)."""
    value: Any = run
    for key in lr_setting(kind).split("."):
        value = (value or {}).get(key)
    return value


def default_rates(names: tuple[str, ...]) -> str:
    """The default learning rates of the kinds ``names``, as text: ``"0.01 for a, ..."``."""
    return ", ".join(f"{MODEL_KINDS[name].describe_default_lr()} for {name}" for name in names)


def _sections(key: str) -> dict[str, Section]:
    return {kind.name: kind.section for kind in MODEL_KINDS.values() if kind.section.name == key}


#: The keys of the configuration that choose a model kind, with the kinds' settings.
SECTIONS = {
    "model": KindChoice(
        "model",
        _sections("model"),
        Setting("name", "str", False, EQUIVARIANT_NET.name, "the model kind to train: " +
                ", ".join(f"{name} ({MODEL_KINDS[name].label})" for name in MODELS),
                Limits(choices=MODELS)),
    ),
    "baseline": KindChoice(
        "baseline",
        _sections("baseline"),
        Setting("name", "str", True, None,
                "the baseline to train on the same split with the same budget",
                Limits(choices=BASELINES)),
        extra={"lr": Setting("lr", "float", True, None, "AdamW learning rate of the baseline "
                             f"(default: the kind's own: {default_rates(BASELINES)})",
                             Limits(above=0))},
    ),
}  # fmt: skip


def model_kind(name: Any) -> ModelKind:
    """The entry of a kind by name.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {name!r}, expected one of {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[name]


def run_kinds(config) -> list[ModelKind]:
    """The kinds a run trains: the model its ``model`` section names, and the baseline its
    ``baseline`` section names (if any)."""
    names = [getattr(config, key)["name"] for key in SECTIONS]
    return [MODEL_KINDS[name] for name in names if name is not None]

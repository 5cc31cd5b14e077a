r"""The model kinds a run trains: one :class:`ModelKind` entry each.

An entry says everything the training command, the checkpoints and ``evaluate``,
``predict`` and ``export`` need of a kind: its name (the checkpoint's ``kind``, and the
value of ``--baseline`` for a baseline), its section of the configuration, the label of
tables and plots, the output folder, and how to build the model from the constructor
arguments a checkpoint keeps (``model_config``). Adding a model kind is adding an entry to
:data:`MODEL_KINDS`.

- ``equivariant``: :class:`~e3nn_pyg.models.EquivariantNet`, section ``model``, label
  EquivariantNet, folder ``equivariant_net``;
- ``schnet``: PyG's :class:`~torch_geometric.nn.models.SchNet` (a baseline), section
  ``baseline``, label SchNet, folder ``schnet``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch_geometric.nn.models import SchNet

from ..kernel import MODES as KERNEL_MODES
from ..models import EnergyForces, EquivariantNet, SchNetInteractionGraph
from ..models.equivariant_net import INT_MINIMUMS, READOUTS
from .settings import ConfigError, Limits, Section, Setting

__all__ = ["BASELINES", "MAX_CUTOFF", "MODEL_KINDS", "ModelKind", "model_kind", "run_kinds"]

MAX_CUTOFF = 1000.0  # Å: far beyond any interatomic cutoff; larger values are typos


@dataclass(frozen=True)
class ModelKind:
    """One kind of model a run can train (see the module docstring).

    Args:
        name (str): the checkpoint's ``kind``; a baseline's value of ``--baseline``.
        label (str): the model's name in tables, plots and logs.
        folder (str): the subfolder of ``--out`` with its checkpoints and history.
        section (Section): its settings in the configuration.
        build (callable): the untrained model from its constructor arguments.
        run_arguments (callable): the arguments the run adds to the section's, from the
            config (e.g. a cutoff that follows the model's).
        learning_rate (callable): its learning rate, from the config.
        baseline (bool): trained only when ``--baseline`` names it.
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
    learning_rate: Callable[[Any], float]
    baseline: bool
    periodic: bool
    degree_argument: str | None = None
    export_refusal: str | None = None

    def settings(self, config) -> dict[str, Any]:
        """The values of its section in a :class:`~e3nn_pyg.training.TrainConfig`."""
        return getattr(config, self.section.name)

    def arguments(self, config) -> dict[str, Any]:
        """Its constructor arguments set by the config (before anything is fitted)."""
        arguments = self.section.arguments(self.settings(config))
        return {**arguments, **self.run_arguments(config), "readout": config.resolved_readout}


def _build_equivariant(model_config: Mapping[str, Any]) -> nn.Module:
    return EquivariantNet(**model_config)


def _build_schnet(model_config: Mapping[str, Any]) -> nn.Module:
    arguments = dict(model_config)
    forces = arguments.pop("derivative", False)  # forces by autograd, as ours
    # SchNet has no species argument: a potential's wrapper checks them; the command line
    # checks them for every kind (see e3nn_pyg.training.run)
    species = arguments.pop("species", None)
    graph = SchNetInteractionGraph(arguments["cutoff"])
    schnet = SchNet(**arguments, interaction_graph=graph)
    return EnergyForces(schnet, species=species) if forces else schnet


EQUIVARIANT = ModelKind(
    name="equivariant",
    label="EquivariantNet",
    folder="equivariant_net",
    section=Section(
        "model",
        EquivariantNet,
        (
            "hidden_Rs",
            "lmax",
            "num_layers",
            "cutoff",
            "max_num_neighbors",
            "num_basis",
            "radial_hidden",
            "radial_layers",
            "kernel_mode",
            "readout",
        ),
        defaults={"readout": None},  # None: from the target (see TrainConfig.resolved_readout)
        limits={
            **{name: Limits(min=low) for name, low in INT_MINIMUMS.items()},
            "cutoff": Limits(above=0, max=MAX_CUTOFF),
            "kernel_mode": Limits(choices=KERNEL_MODES),
            "readout": Limits(choices=READOUTS),
        },
    ),
    build=_build_equivariant,
    run_arguments=lambda config: {},
    learning_rate=lambda config: config.lr,
    baseline=False,
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
    learning_rate=lambda config: config.baseline["lr"],
    baseline=True,
    periodic=False,
    export_refusal="PyG's SchNet reads batch.max() in its readout, which torch.export cannot trace",
)

#: Every model kind by name.
MODEL_KINDS = {kind.name: kind for kind in (EQUIVARIANT, SCHNET)}
#: The values of ``--baseline``.
BASELINES = tuple(name for name, kind in MODEL_KINDS.items() if kind.baseline)

# The baseline section also holds which baseline to train and its learning rate.
SCHNET.section.settings["cutoff"] = Setting(
    "cutoff", "float", True, None, "SchNet's cutoff in Å (default: the model's cutoff)",
    Limits(above=0, max=MAX_CUTOFF),
)  # fmt: skip
SCHNET.section.settings["name"] = Setting(
    "name", "str", True, None, "the baseline to train on the same split with the same budget",
    Limits(choices=BASELINES),
)  # fmt: skip
SCHNET.section.settings["lr"] = Setting(
    "lr", "float", False, 5e-3, "AdamW learning rate of the baseline", Limits(above=0)
)


def model_kind(name: Any) -> ModelKind:
    """The entry of a kind by name.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {name!r}, expected one of {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[name]


def run_kinds(config) -> list[ModelKind]:
    """The kinds a run trains: every kind that is not a baseline, and the baseline the
    config names."""
    return [
        kind
        for kind in MODEL_KINDS.values()
        if not kind.baseline or config.baseline["name"] == kind.name
    ]

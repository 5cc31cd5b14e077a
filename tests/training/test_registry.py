"""The registry of model kinds: one entry per kind, used by the config, the run and the
checkpoints."""

import inspect

import pytest

from e3nn_pyg.training import MODEL_KINDS, ConfigError, TrainConfig, build_model
from e3nn_pyg.training.config import SECTIONS
from e3nn_pyg.training.registry import BASELINES, MODELS, model_kind, run_kinds


def test_entries_are_distinct_and_their_sections_are_the_config_sections():
    kinds = list(MODEL_KINDS.values())
    for attribute in ("name", "label", "folder"):
        values = [getattr(kind, attribute) for kind in kinds]
        assert len(set(values)) == len(values), attribute
    assert {kind.section.name for kind in kinds} == set(SECTIONS)
    assert BASELINES == tuple(kind.name for kind in kinds if kind.baseline)
    assert MODELS == tuple(kind.name for kind in kinds if not kind.baseline)
    assert TrainConfig.settings()["baseline.name"].limits.choices == BASELINES
    assert TrainConfig.settings()["model.name"].limits.choices == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_every_model_kind_has_what_the_run_reads_of_the_model_section(name):
    # the readout follows the target, the baseline's cutoff and the neighbour count the model's
    settings = MODEL_KINDS[name].section.settings
    assert settings["readout"].default is None and settings["cutoff"].kind == "float"


@pytest.mark.parametrize("name", list(MODEL_KINDS))
def test_every_kind_builds_from_the_default_config(name):
    kind = MODEL_KINDS[name]
    config = TrainConfig(**{kind.section.name: {"name": name}})
    assert kind in run_kinds(config)
    model = build_model(name, kind.arguments(config))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_a_run_trains_the_model_and_the_baseline_it_names():
    assert [kind.name for kind in run_kinds(TrainConfig())] == ["equivariant-net"]
    for name in MODELS:
        with_baseline = TrainConfig(model={"name": name}, baseline={"name": "schnet"})
        assert [kind.name for kind in run_kinds(with_baseline)] == [name, "schnet"]


@pytest.mark.parametrize("name", list(MODEL_KINDS))
def test_the_learning_rate_is_the_configs_or_the_kinds_default(name):
    kind = MODEL_KINDS[name]
    lr = "baseline.lr" if kind.baseline else "lr"
    config = TrainConfig(**{kind.section.name: {"name": name}})
    assert kind.learning_rate(config) == kind.default_lr
    assert f"{kind.describe_default_lr()} for {name}" in TrainConfig.settings()[lr].help
    potential = config.updated({"data": "structures.xyz"})
    assert kind.learning_rate(potential) == (kind.potential_lr or kind.default_lr)
    for run in (config, potential):
        chosen = run.updated({"baseline": {"lr": 0.5}} if kind.baseline else {"lr": 0.5})
        assert kind.learning_rate(chosen) == 0.5


def test_the_many_body_potential_has_its_own_default_rate():
    kind = MODEL_KINDS["many-body"]
    assert (kind.default_lr, kind.potential_lr) == (1e-2, 4e-2)
    assert "0.01 (0.04 for a potential) for many-body" in TrainConfig.settings()["lr"].help


def test_an_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model kind 'dimenet', expected one of"):
        model_kind("dimenet")


def test_a_kind_reads_no_settings_of_a_section_that_names_another_kind():
    with pytest.raises(ConfigError, match="model is equivariant-net: it holds no settings of many"):
        MODEL_KINDS["many-body"].arguments(TrainConfig())


#: Constructor arguments of a model that are not settings: fitted on the training data
#: (offsets, species), fixed by the task (forces, one output, the elements' range), or the
#: model's default interaction graph of its cutoff
SET_BY_THE_RUN = {"mean", "std", "atomref", "species", "derivative", "out_channels", "max_z",
                  "interaction_graph"}  # fmt: skip


@pytest.mark.parametrize("name", MODELS)
def test_every_architecture_argument_of_a_model_is_a_setting(name):
    kind = MODEL_KINDS[name]
    arguments = set(inspect.signature(kind.section.cls).parameters)
    assert arguments - set(kind.section.settings) == SET_BY_THE_RUN | {kind.degree_argument}

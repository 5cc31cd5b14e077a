"""The registry of model kinds: one entry per kind, used by the config, the run and the
checkpoints."""

import pytest

from e3nn_pyg.training import MODEL_KINDS, ConfigError, TrainConfig, build_model
from e3nn_pyg.training.config import SECTIONS
from e3nn_pyg.training.registry import BASELINES, model_kind, run_kinds


def test_entries_are_distinct_and_their_sections_are_the_config_sections():
    kinds = list(MODEL_KINDS.values())
    for attribute in ("name", "label", "folder"):
        values = [getattr(kind, attribute) for kind in kinds]
        assert len(set(values)) == len(values), attribute
    assert {kind.section.name for kind in kinds} == set(SECTIONS)
    assert BASELINES == tuple(kind.name for kind in kinds if kind.baseline)
    assert TrainConfig.settings()["baseline.name"].limits.choices == BASELINES


@pytest.mark.parametrize("name", list(MODEL_KINDS))
def test_every_kind_builds_from_the_default_config(name):
    kind = MODEL_KINDS[name]
    config = TrainConfig(baseline={"name": name} if kind.baseline else {})
    assert kind in run_kinds(config)
    model = build_model(name, kind.arguments(config))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_a_run_trains_the_models_and_the_baseline_it_names():
    assert [kind.name for kind in run_kinds(TrainConfig())] == ["equivariant"]
    with_baseline = TrainConfig(baseline={"name": "schnet"})
    assert [kind.name for kind in run_kinds(with_baseline)] == ["equivariant", "schnet"]


def test_an_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model kind 'dimenet', expected one of"):
        model_kind("dimenet")

"""TrainConfig: defaults, YAML files, and a clear ConfigError for every kind of mistake."""

import pytest

from e3nn_pyg.training import ConfigError, TrainConfig, default_readout
from e3nn_pyg.training.config import read_yaml, write_yaml


def test_defaults_are_valid_and_round_trip():
    config = TrainConfig()
    assert config.dataset == "qm9" and config.target == "U0" and config.split == [0.8, 0.1, 0.1]
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(target="gap", num_molecules=500, baseline="schnet", split=[0.7, 0.2, 0.1])
    write_yaml(config.to_dict(), tmp_path / "run.yaml")
    assert TrainConfig.from_yaml(tmp_path / "run.yaml") == config


def test_yaml_integers_become_floats_and_lists_stay_lists(tmp_path):
    (tmp_path / "run.yaml").write_text("lr: 1\ncutoff: 4\nsplit: [0.8, 0.1, 0.1]\n")
    config = TrainConfig.from_yaml(tmp_path / "run.yaml")
    assert config.lr == 1.0 and isinstance(config.lr, float) and config.cutoff == 4.0


def test_updated_ignores_none_and_checks_values():
    config = TrainConfig().updated({"lr": None, "epochs": 7})
    assert config.lr == TrainConfig().lr and config.epochs == 7
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        config.updated({"epochs": 0})


@pytest.mark.parametrize(
    "values, match",
    [
        ({"lr_rate": 0.1}, r"unknown config key 'lr_rate' in config \(did you mean 'lr'\?\)"),
        ({"lr": "fast"}, r"'lr' must be a number, got 'fast'"),
        ({"epochs": 2.5}, r"'epochs' must be an integer"),
        ({"progress": "yes"}, r"'progress' must be true or false"),
        ({"target": "U00"}, r"unknown target 'U00'.*U0"),
        ({"dataset": "qm7"}, r"unknown dataset 'qm7': choose one of qm9, fixture"),
        ({"baseline": "dimenet"}, r"unknown baseline"),
        ({"split": [0.8, 0.3, 0.1]}, r"sum to at most 1"),
        ({"split": [0.8, 0.2]}, r"three fractions"),
        ({"num_molecules": 3}, r"num_molecules must be >= 10"),
        ({"time_budget": -5}, r"time_budget must be a positive number"),
        ({"scheduler": "step"}, r"unknown scheduler"),
        ({"hidden_Rs": " "}, r"hidden_Rs must not be empty"),
    ],
)
def test_mistakes_raise_config_errors_that_say_what_to_fix(values, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(values)


def test_target_names_are_case_insensitive_and_pick_the_readout():
    assert TrainConfig(target="u0").target_name == "U0"
    assert TrainConfig(target="u0").resolved_readout == "add"
    assert TrainConfig(target="gap").resolved_readout == "mean"
    assert TrainConfig(target="gap", readout="add").resolved_readout == "add"
    assert default_readout("homo") == "mean" and default_readout("U0_atom") == "add"


@pytest.mark.parametrize(
    "text, match",
    [
        ("lr: [1, 2\n", "not valid YAML at line"),
        ("- lr\n- seed\n", "key: value"),
        ("epochs: ten\n", "'epochs' must be an integer"),
    ],
)
def test_bad_yaml_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_yaml(path)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_yaml(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert TrainConfig.from_yaml(tmp_path / "empty.yaml") == TrainConfig()

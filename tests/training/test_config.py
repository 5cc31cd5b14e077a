"""TrainConfig: defaults, YAML files, and a clear ConfigError for every kind of mistake."""

import pytest

from e3nn_pyg.training import ConfigError, TrainConfig, default_readout
from e3nn_pyg.training.config import read_yaml, write_yaml


def test_defaults_are_valid_and_round_trip():
    config = TrainConfig()
    assert config.resolved_dataset == "qm9" and config.target == "U0"
    assert config.split == [0.8, 0.1, 0.1]
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(target="gap", num_molecules=500, baseline={"name": "schnet"},
                         model={"num_layers": 2}, split=[0.7, 0.2, 0.1])  # fmt: skip
    write_yaml(config.to_dict(), tmp_path / "run.yaml")
    assert TrainConfig.from_yaml(tmp_path / "run.yaml") == config


def test_yaml_integers_become_floats_and_lists_stay_lists(tmp_path):
    (tmp_path / "run.yaml").write_text("lr: 1\nmodel:\n  cutoff: 4\nsplit: [0.8, 0.1, 0.1]\n")
    config = TrainConfig.from_yaml(tmp_path / "run.yaml")
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.model["cutoff"] == 4.0 and isinstance(config.model["cutoff"], float)
    assert config.baseline_cutoff == 4.0  # the baseline follows the model's cutoff


def test_sections_take_their_defaults_and_help_from_the_models():
    from torch_geometric.nn.models import SchNet

    from e3nn_pyg.models import EquivariantNet

    config = TrainConfig(model={"num_layers": 2})
    assert config.model["num_basis"] == EquivariantNet.__init__.__defaults__[5] == 8
    assert config.model["num_layers"] == 2 and config.baseline["num_interactions"] == 3
    assert "radial perceptron" in TrainConfig.settings()["model.radial_hidden"].help
    radial_hidden = TrainConfig.settings()["model.radial_hidden"].help
    assert "model equivariant-net, many-body: EquivariantNet's and ManyBodyNet's" in radial_hidden
    assert "(model many-body: ManyBodyNet's correlation)" in TrainConfig.__doc__
    assert "num_gaussians" in TrainConfig.__doc__ and SchNet.__name__ in TrainConfig.__doc__
    with pytest.raises(ConfigError, match=r"'model.num_layer'.*did you mean 'model.num_layers'"):
        TrainConfig.from_dict({"model": {"num_layer": 2}})
    with pytest.raises(ConfigError, match=r"'model.cutoff' must be a finite number, got 'far'"):
        TrainConfig.from_dict({"model": {"cutoff": "far"}})


@pytest.mark.parametrize(
    "values, hint",
    [
        ({"hidden_Rs": "4x0e"}, "did you mean 'model.hidden_Rs'"),
        ({"cutoff": 4}, "did you mean 'model.cutoff'"),
        ({"num_gaussians": 8}, "did you mean 'baseline.num_gaussians'"),
    ],
)
def test_section_keys_at_the_top_level_name_their_section(values, hint):
    # (earlier versions' flat keys: checkpoints are migrated, see test_checkpoint)
    with pytest.raises(ConfigError, match=hint):
        TrainConfig.from_dict(values)


def test_a_section_given_as_a_name_names_the_kind():
    assert TrainConfig.from_dict({"baseline": "schnet"}).baseline["name"] == "schnet"
    assert TrainConfig.from_dict({"baseline": None}).baseline["name"] is None
    model = TrainConfig.from_dict({"model": "equivariant-net"}).model
    assert model == TrainConfig().model and model["name"] == "equivariant-net"
    with pytest.raises(ConfigError, match=r"'model.name' must be a string, got null"):
        TrainConfig.from_dict({"model": None})


def test_the_model_section_holds_the_settings_of_the_kind_it_names():
    import inspect

    from e3nn_pyg.models import ManyBodyNet

    signature = inspect.signature(ManyBodyNet).parameters
    model = TrainConfig.from_dict({"model": "many-body"}).model
    assert model["name"] == "many-body" and model["readout"] is None  # from the target
    assert model["correlation"] == signature["correlation"].default
    assert model["num_layers"] == signature["num_layers"].default
    assert "hidden_Rs" not in model and "avg_num_neighbors" not in model  # fitted, not set
    chosen = TrainConfig.from_dict({"model": {"name": "many-body", "correlation": 2}})
    assert chosen.model["correlation"] == 2


@pytest.mark.parametrize(
    "model, message",
    [
        (
            {"correlation": 2},
            r"'model.correlation' in config is a setting of model many-body, "
            r"and model is equivariant-net: choose many-body \(--model "
            r"many-body, or model: \{name: many-body\}",
        ),
        (
            {"name": "many-body", "hidden_Rs": "4x0e"},
            r"'model.hidden_Rs' in config is a "
            r"setting of model equivariant-net, and "
            r"model is many-body",
        ),
        ({"name": "many-body", "correlation": 0}, r"model.correlation must be >= 1, got 0"),
        ({"name": "many-body", "num_channels": 2.5}, r"'model.num_channels' must be an integer"),
    ],
)
def test_a_key_of_another_kind_is_refused_naming_its_kind(model, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"model": model})


def test_naming_another_kind_over_a_config_starts_from_its_defaults(tmp_path):
    file_config = TrainConfig(model={"num_layers": 2, "cutoff": 4.0})
    write_yaml(file_config.to_dict(), tmp_path / "run.yaml")  # every equivariant-net key
    many_body = TrainConfig.from_yaml(tmp_path / "run.yaml").updated(
        {"model": {"name": "many-body", "correlation": 2}}
    )
    assert many_body.model == {**TrainConfig(model={"name": "many-body"}).model,
                               "correlation": 2}  # fmt: skip
    same = file_config.updated({"model": {"name": "equivariant-net", "num_basis": 4}})
    assert same.model == {**file_config.model, "num_basis": 4}  # the same kind: values kept
    assert many_body.updated({"model": "equivariant-net"}).model == TrainConfig().model


def test_a_baseline_switched_on_over_a_config_keeps_its_settings():
    config = TrainConfig(baseline={"num_interactions": 2})  # as config.yaml of a run without
    switched = config.updated({"baseline": {"name": "schnet"}})
    assert switched.baseline["name"] == "schnet" and switched.baseline["num_interactions"] == 2


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("model", {"num_layers": 0}, "model.num_layers must be >= 1, got 0"),
        ("model", {"cutoff": 0.0}, r"model.cutoff must be in \(0, 1000\], got 0.0"),
        ("model", {"radial_layers": -1}, "model.radial_layers must be >= 0, got -1"),
        (
            "model",
            {"max_num_neighbors": 0},
            r"model.max_num_neighbors must be >= 1 \(or null\), got 0",
        ),
        ("baseline", {"name": "schnet", "num_gaussians": 1}, "num_gaussians must be >= 2"),
        ("baseline", {"name": "schnet", "num_filters": 0}, "num_filters must be >= 1"),
    ],
)
def test_model_settings_outside_their_limits_are_refused_with_the_config(section, values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{section: values})


def test_model_settings_are_checked_by_the_model_before_the_data_is_loaded():
    from e3nn_pyg.training.run import check_models

    check_models(TrainConfig())
    with pytest.raises(ConfigError, match="invalid model settings: hidden_Rs = '4x1o' needs"):
        check_models(TrainConfig(model={"hidden_Rs": "4x1o"}))
    with pytest.raises(ConfigError, match="invalid model settings: cannot parse Rs"):
        check_models(TrainConfig(model={"hidden_Rs": "4x0e+"}))


def test_updated_sets_values_and_null_and_checks_them():
    config = TrainConfig().updated({"ema_decay": None, "epochs": 7, "baseline": {"name": None}})
    assert config.ema_decay is None and config.epochs == 7 and config.lr == TrainConfig().lr
    with pytest.raises(ConfigError, match="epochs must be >= 1, got 0"):
        config.updated({"epochs": 0})
    with pytest.raises(ConfigError, match="'patience' must be an integer, got null"):
        config.updated({"patience": None})
    assert config.updated({"lr": 0.1}).updated({"lr": None}).lr is None  # the kind's own


@pytest.mark.parametrize(
    "values, match",
    [
        ({"lr_rate": 0.1}, r"unknown config key 'lr_rate' in config \(did you mean 'lr'\?\)"),
        ({"lr": "fast"}, r"'lr' must be a finite number, got 'fast'"),
        ({"lr": float("inf")}, r"'lr' must be a finite number, got inf"),
        ({"lr": 0}, r"lr must be > 0 \(or null\), got 0.0"),
        ({"ema_decay": 1}, r"ema_decay must be in \(0, 1\) \(or null\), got 1.0"),
        ({"warmup": 1.0}, r"warmup must be in \[0, 1\), got 1.0"),
        ({"seed": 2**32}, r"seed must be in \[0, 4294967295\], got 4294967296"),
        ({"split": [0.9, 0.1, 0.0]}, r"each fraction must be in \(0, 1\]"),
        ({"model": {"cutoff": 1e4}}, r"model.cutoff must be in \(0, 1000\]"),
        ({"baseline": {"lr": -1}}, r"baseline.lr must be > 0 \(or null\)"),
        ({"data": " "}, r"'data' must be a file path"),
        ({"epochs": 2.5}, r"'epochs' must be an integer"),
        ({"progress": "yes"}, r"'progress' must be true or false"),
        ({"target": "U00"}, r"unknown target 'U00'.*U0"),
        ({"dataset": "qm7"}, r"unknown dataset 'qm7': choose one of qm9, fixture"),
        ({"baseline": "dimenet"}, r"unknown baseline"),
        ({"split": [0.8, 0.3, 0.1]}, r"sum to at most 1"),
        ({"split": [0.8, 0.2]}, r"three fractions"),
        ({"num_molecules": 3}, r"num_molecules must be >= 10"),
        ({"time_budget": -5}, r"time_budget must be > 0 \(or null\), got -5"),
        ({"scheduler": "step"}, r"unknown scheduler"),
        ({"model": {"readout": "max"}}, r"unknown model.readout 'max': choose one of add, mean"),
        ({"baseline": {"name": "dimenet"}}, r"unknown baseline"),
        ({"model": "dimenet"}, r"unknown model.name 'dimenet': choose one of equivariant-net"),
        ({"model": {"name": "schnet"}}, r"unknown model.name 'schnet'"),
        ({"baseline": "equivariant-net"}, r"unknown baseline.name 'equivariant-net'"),
        ({"model": {"num_interactions": 2}}, r"unknown config key 'model.num_interactions'"),
    ],
)
def test_mistakes_raise_config_errors_that_say_what_to_fix(values, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(values)


def test_target_names_are_case_insensitive_and_pick_the_readout():
    assert TrainConfig(target="u0").target_name == "U0"
    assert TrainConfig(target="u0").resolved_readout == "add"
    assert TrainConfig(target="gap").resolved_readout == "mean"
    assert TrainConfig(target="gap", model={"readout": "add"}).resolved_readout == "add"
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

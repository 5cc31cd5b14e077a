"""Checkpoints: round trip of every model kind, the migration of earlier format versions,
and ConfigError for unusable files."""

import pytest
import torch

from e3nn_pyg.models import ManyBodyNet
from e3nn_pyg.training import (
    MODEL_KINDS,
    ConfigError,
    TrainConfig,
    build_model,
    load_checkpoint,
    migrate,
    model_from_checkpoint,
    save_checkpoint,
)
from e3nn_pyg.training.checkpoint import FORMAT, FORMAT_VERSION
from e3nn_pyg.training.loop import resume_differences

EQUIVARIANT = {"hidden_Rs": "4x0e + 2x1o", "num_layers": 2, "cutoff": 3.0, "radial_hidden": 8}
SCHNET = {"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_gaussians": 8,
          "cutoff": 3.0, "mean": 0.0, "std": 1.0, "atomref": torch.randn(100, 1)}  # fmt: skip


def payload(kind: str, config: dict) -> dict:
    torch.manual_seed(0)
    model = build_model(kind, config)
    return {
        "kind": kind, "model_config": config, "model_state": model.state_dict(),
        "run_config": {}, "stats": {}, "target": {"name": "U0", "unit": "eV"}, "progress": {},
    }  # fmt: skip


@pytest.mark.parametrize("kind, config", [("equivariant-net", EQUIVARIANT), ("schnet", SCHNET)])
def test_round_trip(tmp_path, kind, config):
    saved = payload(kind, config)
    save_checkpoint(tmp_path / "model.pt", saved)
    assert not (tmp_path / "model.pt.tmp").exists()
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded["format"] == FORMAT and loaded["format_version"] == FORMAT_VERSION
    assert migrate(loaded) is loaded  # the current version as it is
    model = model_from_checkpoint(loaded, tmp_path / "model.pt")
    for key, value in saved["model_state"].items():  # tensors, and the model's config
        restored = model.state_dict()[key]
        assert torch.equal(restored, value) if torch.is_tensor(value) else restored == value
    z, pos = torch.tensor([6, 1, 1]), torch.randn(3, 3)
    assert model(z, pos).shape == (1, 1)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist: pass a best\.pt or last\.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_garbage_file(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")


def test_torch_file_that_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="is not an e3nn-pyg checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_truncated_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "model.pt", payload("equivariant-net", EQUIVARIANT))
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "model.pt")


def test_state_that_does_not_fit_the_model(tmp_path):
    saved = payload("equivariant-net", EQUIVARIANT)
    saved["model_config"] = {**EQUIVARIANT, "num_layers": 3}
    save_checkpoint(tmp_path / "model.pt", saved)
    with pytest.raises(ConfigError, match="does not match its model"):
        model_from_checkpoint(load_checkpoint(tmp_path / "model.pt"), tmp_path / "model.pt")


@pytest.mark.parametrize(
    "entry, value, named",
    [
        ("target", None, "target"),
        ("target", {"name": 7, "unit": "eV"}, "target"),
        ("stats", "garbage", "stats"),
        ("progress", 3, "progress"),
        ("run_config", [1, 2], "run_config"),
        ("kind", 5, "kind"),
    ],
)
def test_tampered_entries_are_reported_as_damage(tmp_path, entry, value, named):
    saved = payload("equivariant-net", EQUIVARIANT)
    saved[entry] = value
    save_checkpoint(tmp_path / "model.pt", saved)
    with pytest.raises(ConfigError, match=rf"is damaged \({named} not as written"):
        load_checkpoint(tmp_path / "model.pt")


#: The names of the kinds in versions 1 and 2
OLD_KIND_NAMES = {"equivariant-net": "equivariant", "schnet": "schnet"}


def version_1(kind: str, config: dict) -> dict:
    """A checkpoint as version 1 wrote it: ``version`` instead of ``format_version``, the
    run's settings as flat keys, no ``name``, no extra states of the model."""
    saved = {**payload(kind, config), "kind": OLD_KIND_NAMES[kind]}
    saved["model_state"] = {key: value for key, value in saved["model_state"].items()
                            if not key.endswith("_extra_state")}  # fmt: skip
    saved["run_config"] = {"target": "U0", "dataset": "fixture", "hidden_Rs": "4x0e + 2x1o",
                           "num_layers": 2, "cutoff": 3.0, "schnet_hidden": 8,
                           "schnet_interactions": 1, "schnet_lr": 1e-3,
                           "baseline": "schnet", "epochs": 2}  # fmt: skip
    return {"format": FORMAT, "version": 1, **saved}


@pytest.mark.parametrize("kind, config", [("equivariant-net", EQUIVARIANT), ("schnet", SCHNET)])
def test_a_version_1_checkpoint_is_migrated_on_load(tmp_path, kind, config):
    old = version_1(kind, config)
    torch.save(old, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded["format_version"] == FORMAT_VERSION and "version" not in loaded
    assert loaded["name"] == MODEL_KINDS[kind].label
    built = build_model(kind, config).state_dict()
    extra = [key for key in built if key.endswith("_extra_state")]
    assert all(loaded["model_state"][key] == built[key] for key in extra)
    run = TrainConfig.from_dict(loaded["run_config"])  # the current spelling
    assert run.model["hidden_Rs"] == "4x0e + 2x1o" and run.model["cutoff"] == 3.0
    assert run.baseline["name"] == "schnet" and run.baseline["lr"] == 1e-3
    assert run.baseline["hidden_channels"] == run.baseline["num_filters"] == 8
    model = model_from_checkpoint(loaded, tmp_path / "old.pt")
    assert model(torch.tensor([6, 1, 1]), torch.randn(3, 3)).shape == (1, 1)
    assert old["version"] == 1 and "name" not in old  # migrate makes a new dictionary


@pytest.mark.parametrize("kind, config", [("equivariant-net", EQUIVARIANT), ("schnet", SCHNET)])
def test_a_version_2_checkpoint_takes_the_new_kind_names(tmp_path, kind, config):
    saved = {**payload(kind, config), "kind": OLD_KIND_NAMES[kind], "name": "old label",
             "run_config": {"dataset": "fixture", "model": {"num_layers": 2}}}  # fmt: skip
    torch.save({"format": FORMAT, "format_version": 2, **saved}, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded["format_version"] == FORMAT_VERSION and loaded["kind"] == kind
    assert loaded["name"] == "old label"  # what version 2 recorded stays
    run = TrainConfig.from_dict(loaded["run_config"])  # every version-2 run trained it
    assert run.model["name"] == "equivariant-net" and run.model["num_layers"] == 2
    model = model_from_checkpoint(loaded, tmp_path / "old.pt")
    assert model(torch.tensor([6, 1, 1]), torch.randn(3, 3)).shape == (1, 1)
    assert saved["kind"] == OLD_KIND_NAMES[kind]  # migrate makes a new dictionary


@pytest.mark.parametrize(
    "kind, run_config, lr",
    [
        ("many-body", {"lr": None}, 1e-2),  # the default of versions 1 to 3
        ("many-body", {"lr": 0.04}, 0.04),
        ("schnet", {"baseline": {"lr": None}}, 5e-3),
        ("schnet", {"baseline": {"lr": 1e-3}}, 1e-3),
        ("equivariant-net", {}, 1e-2),
    ],
)
def test_a_version_3_checkpoint_gets_the_learning_rate_it_trained_with(kind, run_config, lr):
    saved = {"format": FORMAT, "format_version": 3, "kind": kind, "run_config": run_config}
    assert migrate(saved)["lr"] == lr
    assert "lr" not in saved  # migrate makes a new dictionary


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, "2", None])
def test_unknown_format_versions_are_refused(tmp_path, version):
    saved = {**payload("equivariant-net", EQUIVARIANT), "format": FORMAT, "format_version": version}
    torch.save(saved, tmp_path / "model.pt")
    with pytest.raises(ConfigError, match=rf"has format version {version!r}, this e3nn_pyg"):
        load_checkpoint(tmp_path / "model.pt")


def test_an_unknown_model_kind_is_damage(tmp_path):
    save_checkpoint(tmp_path / "model.pt", {**payload("equivariant-net", EQUIVARIANT),
                                            "kind": "dimenet"})  # fmt: skip
    with pytest.raises(ConfigError, match=r"is damaged \(kind not as written"):
        load_checkpoint(tmp_path / "model.pt")


def test_a_version_3_many_body_checkpoint_loads_and_resumes_with_the_settings_of_its_time(
    tmp_path,
):
    """Version 3 knew no ``species_skip`` nor ``basis_mixing``: its config, the model's
    recorded config and the run's section lack them, and they mean off."""
    config = {"num_channels": 4, "num_layers": 1, "cutoff": 3.0, "species": [1, 6, 8]}
    saved = payload("many-body", config)
    added = ManyBodyNet.SETTINGS_ADDED_LATER
    recorded = saved["model_state"]["_extra_state"]["config"]
    old = {key: value for key, value in recorded.items() if key not in added}
    saved["model_state"]["_extra_state"] = {"config": old}
    run = TrainConfig.from_dict({"data": "x.xyz", "model": "many-body"}).to_dict()
    run["model"] = {key: value for key, value in run["model"].items() if key not in added}
    saved["run_config"] = run
    torch.save({"format": FORMAT, "format_version": 3, **saved}, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert all(loaded["model_config"][key] is False for key in added)
    assert all(loaded["run_config"]["model"][key] is False for key in added)
    model = model_from_checkpoint(loaded, tmp_path / "old.pt")
    assert model(torch.tensor([6, 1, 1]), torch.randn(3, 3)).shape == (1, 1)
    assert loaded["lr"] == 1e-2  # the default of version 3, not today's
    run = TrainConfig.from_dict(loaded["run_config"])
    model_config = loaded["model_config"]
    assert resume_differences(loaded, run, "many-body", model_config) == [("lr", 1e-2, 4e-2)]
    same_rate = run.updated({"lr": 1e-2})
    assert resume_differences(loaded, same_rate, "many-body", model_config) == []
    with pytest.raises(ValueError, match=r"species_skip=False \(this model: True\)"):
        ManyBodyNet(**{**config, "species_skip": True}).load_state_dict(saved["model_state"])

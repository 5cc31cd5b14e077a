"""Checkpoints: round trip of both model kinds, and ConfigError for unusable files."""

import pytest
import torch

from e3nn_pyg.training import (
    ConfigError,
    build_model,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from e3nn_pyg.training.checkpoint import FORMAT

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


@pytest.mark.parametrize("kind, config", [("equivariant", EQUIVARIANT), ("schnet", SCHNET)])
def test_round_trip(tmp_path, kind, config):
    saved = payload(kind, config)
    save_checkpoint(tmp_path / "model.pt", saved)
    assert not (tmp_path / "model.pt.tmp").exists()
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded["format"] == FORMAT
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
    save_checkpoint(tmp_path / "model.pt", payload("equivariant", EQUIVARIANT))
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "model.pt")


def test_state_that_does_not_fit_the_model(tmp_path):
    saved = payload("equivariant", EQUIVARIANT)
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
    saved = payload("equivariant", EQUIVARIANT)
    saved[entry] = value
    save_checkpoint(tmp_path / "model.pt", saved)
    with pytest.raises(ConfigError, match=rf"is damaged \({named} not as written"):
        load_checkpoint(tmp_path / "model.pt")

"""A tiny run on the committed fixture, shared by the training tests."""

import pytest

from e3nn_pyg.training import TrainConfig

TINY = dict(
    dataset="fixture",
    num_molecules=40,
    model={
        "hidden_Rs": "4x0e + 2x1o",
        "num_layers": 2,
        "cutoff": 4.0,
        "num_basis": 4,
        "radial_hidden": 8,
    },
    baseline={"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_gaussians": 8},
    epochs=2,
    batch_size=16,
    progress=False,
)


@pytest.fixture(scope="session")
def tiny() -> dict:
    """Settings of a run that trains in about a second."""
    return dict(TINY)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("qm9_cache"))


@pytest.fixture
def tiny_config(tmp_path, data_root):
    def make(**overrides) -> TrainConfig:
        values = {**TINY, "data_root": data_root, "out": str(tmp_path / "run"), **overrides}
        return TrainConfig.from_dict(values)

    return make

"""PyG's own QM9 processes the raw files written from a QM9Pack, offline, into equal data."""

import importlib.util
import sys

import pytest
import torch
from torch_geometric.datasets import QM9

from e3nn_pyg.datasets import QM9Pack, write_pyg_raw

HAS_RDKIT = importlib.util.find_spec("rdkit") is not None


@pytest.fixture(scope="module")
def fixture_dataset(tmp_path_factory):
    return QM9Pack(tmp_path_factory.mktemp("qm9"), source="fixture")


def _assert_same_molecules(pyg, ours, pos_atol):
    assert len(pyg) == len(ours)
    for a, b in zip(pyg, ours):
        assert a.name == b.name and int(a.idx) == int(b.idx)
        assert torch.equal(a.z, b.z)
        torch.testing.assert_close(a.pos, b.pos, atol=pos_atol, rtol=0)
        assert torch.equal(a.y, b.y), (a.name, a.y - b.y)


@pytest.fixture
def no_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("torch_geometric.datasets.QM9 tried to download")

    monkeypatch.setattr("torch_geometric.datasets.qm9.download_url", fail)


def test_pyg_qm9_offline_without_rdkit(tmp_path, fixture_dataset, monkeypatch, no_download):
    # Without RDKit, PyG's QM9 looks for raw/qm9_v3.pt (else downloads PyG's processed copy).
    monkeypatch.setitem(sys.modules, "rdkit", None)
    paths = write_pyg_raw(fixture_dataset, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["qm9_v3.pt"]
    pyg = QM9(str(tmp_path))
    _assert_same_molecules(pyg, fixture_dataset, pos_atol=0)
    assert pyg[0].edge_index is None and pyg[0].x is None


@pytest.mark.skipif(not HAS_RDKIT, reason="rdkit is not installed")
def test_pyg_qm9_offline_from_sdf(tmp_path, no_download):
    # With RDKit, PyG's QM9 processes gdb9.sdf + gdb9.sdf.csv + uncharacterized.txt itself:
    # an independent check of our target order and unit conversion.
    ours = QM9Pack(tmp_path / "ours", source="fixture", subset=65)  # QM9 indices 1..67
    paths = write_pyg_raw(ours, tmp_path / "pyg", format="sdf")
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "gdb9.sdf",
        "gdb9.sdf.csv",
        "uncharacterized.txt",
    ]
    pyg = QM9(str(tmp_path / "pyg"))
    # Placeholders for the uncharacterized 58 and 61 are skipped by PyG, so idx still match.
    _assert_same_molecules(pyg, ours, pos_atol=5.1e-5)
    assert pyg[0].smiles == "[H]C([H])([H])[H]" and pyg[0].edge_index.shape == (2, 8)


@pytest.mark.skipif(not HAS_RDKIT, reason="rdkit is not installed")
def test_write_pyg_raw_sdf_needs_first_n(tmp_path, fixture_dataset):
    with pytest.raises(ValueError, match="needs a first-N subset"):
        write_pyg_raw(fixture_dataset, tmp_path, format="sdf")


def test_write_pyg_raw_validation(tmp_path, fixture_dataset, monkeypatch):
    with pytest.raises(ValueError, match="format must be"):
        write_pyg_raw(fixture_dataset, tmp_path, format="xyz")
    with pytest.raises(TypeError, match="must be a QM9Pack"):
        write_pyg_raw([], tmp_path)
    with pytest.raises(ValueError, match="dataset is empty"):
        write_pyg_raw(fixture_dataset[torch.arange(0)], tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="needs RDKit"):
        write_pyg_raw(fixture_dataset, tmp_path, format="sdf")

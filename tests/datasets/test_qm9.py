"""QM9Pack: QM9 offline with PyG's fields and units, its cache and subsets."""

import doctest
import importlib.util
import math
import sys
import time

import pytest
import torch

import e3nn_pyg.datasets.qm9 as qm9_module
from e3nn_pyg.datasets import QM9Pack, target_index

HAS_QM9PACK = importlib.util.find_spec("qm9pack") is not None
needs_qm9pack = pytest.mark.skipif(not HAS_QM9PACK, reason="qm9pack is not installed")

# Methane (gdb_1) as PyG's QM9 shows it: positions from DeepChem's gdb9.sdf (4 decimals) ...
METHANE_POS_PYG = [
    [-0.0127, 1.0858, 0.0080],
    [0.0022, -0.0060, 0.0020],
    [1.0117, 1.4638, 0.0003],
    [-0.5408, 1.4475, -0.8766],
    [-0.5238, 1.4379, 0.9064],
]
# ... and the row of DeepChem's gdb9.sdf.csv that PyG converts: A, B, C (GHz), mu (D),
# alpha (a0^3), homo, lumo, gap, r2 (a0^2), zpve, U0, U, H, G (Hartree), cv (cal/mol/K),
# U0_atom, U_atom, H_atom, G_atom (kcal/mol).
METHANE_CSV_ROW = [
    157.7118, 157.70997, 157.70699, 0.0, 13.21, -0.3877, 0.1171, 0.5048, 35.3641, 0.044749,
    -40.47893, -40.476062, -40.475117, -40.498597, 6.469,
    -395.999594594, -398.643290011, -401.014646522, -372.471772148,
]  # fmt: skip
HA, KCAL = 27.211386246, 0.04336414
# Per column of data.y (PyG's order): factor from the CSV units to PyG's units.
PYG_FACTORS = [1, 1, HA, HA, HA, 1, HA, HA, HA, HA, HA, 1, KCAL, KCAL, KCAL, KCAL, 1, 1, 1]


@pytest.fixture(scope="module")
def fixture_dataset(tmp_path_factory):
    return QM9Pack(tmp_path_factory.mktemp("qm9"), source="fixture")


def test_methane(fixture_dataset):
    data = fixture_dataset[0]
    assert data.name == "gdb_1" and int(data.idx) == 0
    assert data.z.dtype == torch.long and data.z.tolist() == [6, 1, 1, 1, 1]
    assert data.pos.dtype == torch.float32 and data.pos.shape == (5, 3)
    # Full precision of the QM9 xyz file; PyG's SDF rounds it to 4 decimals.
    assert (
        data.pos[0].tolist() == torch.tensor([-0.0126981359, 1.0858041578, 0.0080009958]).tolist()
    )
    torch.testing.assert_close(data.pos, torch.tensor(METHANE_POS_PYG), atol=5.1e-5, rtol=0)
    # y: PyG reorders the CSV row to (mu, ..., G_atom, A, B, C) and converts in float32.
    row = torch.tensor(METHANE_CSV_ROW, dtype=torch.float32)
    expected = torch.cat([row[3:], row[:3]]) * torch.tensor(PYG_FACTORS, dtype=torch.float32)
    assert data.y.dtype == torch.float32 and data.y.shape == (1, 19)
    assert torch.equal(data.y[0], expected)
    assert data.y[0, target_index("U0")].item() == pytest.approx(-1101.4878, abs=1e-4)
    assert data.y[0, target_index("U0_atom")].item() == pytest.approx(-17.1722, abs=1e-4)
    assert data.y[0, target_index("gap")].item() == pytest.approx(0.5048 * HA, rel=1e-6)


def test_all_fixture_molecules(fixture_dataset):
    assert len(fixture_dataset) == 297
    names = [d.name for d in fixture_dataset]
    idx = torch.cat([d.idx for d in fixture_dataset])
    assert names == [f"gdb_{i + 1}" for i in idx.tolist()]
    assert bool((idx[1:] > idx[:-1]).all())
    # The first 100 QM9 indices without the 3 uncharacterized ones (58, 61, 80).
    assert idx[:97].tolist() == [i for i in range(100) if i + 1 not in (58, 61, 80)]
    for data in fixture_dataset:
        n = data.z.numel()
        assert data.pos.shape == (n, 3) and data.y.shape == (1, 19)
        assert set(data.z.tolist()) <= {1, 6, 7, 8, 9}
    assert max(d.z.numel() for d in fixture_dataset) >= 20


def test_atomref_matches_atomization(fixture_dataset):
    z = fixture_dataset._data.z
    batch = torch.repeat_interleave(torch.tensor([d.z.numel() for d in fixture_dataset]))
    y = fixture_dataset._data.y.double()  # [M, 19]
    for k, name in enumerate(["U0", "U", "H", "G"]):
        ref = QM9Pack.atomref(name)[z, 0].double()  # [num_atoms]
        per_molecule = torch.zeros(len(fixture_dataset), dtype=torch.float64).index_add_(
            0, batch, ref
        )
        atomization = y[:, 7 + k] - per_molecule
        # float32 rounding of E (about 1e4 eV) dominates: half an ulp is 5e-4 eV.
        torch.testing.assert_close(atomization, y[:, 12 + k], atol=2e-3, rtol=0)
    assert QM9Pack.atomref("U0")[1, 0].item() == pytest.approx(-0.500273 * HA)
    assert QM9Pack.atomref("mu") is None and QM9Pack.atomref("U0_atom") is None


def test_mean_std(fixture_dataset):
    y = torch.cat([d.y for d in fixture_dataset]).double()
    assert fixture_dataset.mean("U0_atom") == pytest.approx(y[:, 12].mean().item())
    assert fixture_dataset.std(12) == pytest.approx(y[:, 12].std().item())
    part = fixture_dataset[torch.arange(10)]
    assert part.mean("mu") == pytest.approx(y[:10, 0].mean().item())


def test_cache_is_reused(tmp_path, monkeypatch):
    first = QM9Pack(tmp_path, source="fixture")
    files = sorted(p.name for p in (tmp_path / "processed").iterdir())
    assert "fixture_all_v1.pt" in files

    def fail(self):
        raise AssertionError("processed again")

    monkeypatch.setattr(QM9Pack, "process", fail)
    second = QM9Pack(tmp_path, source="fixture")
    assert len(second) == len(first)
    assert torch.equal(second._data.pos, first._data.pos)
    with pytest.raises(AssertionError, match="processed again"):
        QM9Pack(tmp_path, source="fixture", force_reload=True)


def test_subset_first_n(tmp_path, fixture_dataset):
    subset = QM9Pack(tmp_path, source="fixture", subset=10)
    assert len(subset) == 10
    assert [d.name for d in subset] == [d.name for d in fixture_dataset[:10]]
    assert subset.processed_file_names == "fixture_first10_v1.pt"
    assert torch.equal(subset[3].pos, fixture_dataset[3].pos)


def test_subset_random_is_seeded(tmp_path, fixture_dataset):
    a = QM9Pack(tmp_path / "a", source="fixture", subset=50, subset_seed=1)
    b = QM9Pack(tmp_path / "b", source="fixture", subset=50, subset_seed=1)
    c = QM9Pack(tmp_path / "a", source="fixture", subset=50, subset_seed=2)
    names = [d.name for d in a]
    assert len(a) == 50 and names == [d.name for d in b]
    assert names != [d.name for d in c]
    all_names = [d.name for d in fixture_dataset]
    assert set(names) <= set(all_names)
    assert names == sorted(names, key=all_names.index)  # kept in QM9 order
    assert names != all_names[:50]
    assert "subset_seed=1" in repr(a)


def test_subset_validation(tmp_path):
    with pytest.raises(ValueError, match="subset must be >= 1"):
        QM9Pack(tmp_path, source="fixture", subset=0)
    with pytest.raises(ValueError, match="exceeds the 297 molecules"):
        QM9Pack(tmp_path, source="fixture", subset=1000)
    with pytest.raises(ValueError, match="exceeds the 297 molecules"):
        QM9Pack(tmp_path, source="fixture", subset=1000, subset_seed=0)
    with pytest.raises(ValueError, match="subset_seed needs a subset"):
        QM9Pack(tmp_path, source="fixture", subset_seed=0)
    with pytest.raises(TypeError, match="subset must be an int"):
        QM9Pack(tmp_path, source="fixture", subset=1.5)
    with pytest.raises(ValueError, match="source must be one of"):
        QM9Pack(tmp_path, source="pyg")


def test_pre_filter_and_transform(tmp_path):
    small = QM9Pack(
        tmp_path,
        source="fixture",
        pre_filter=lambda d: d.z.numel() <= 5,
        transform=lambda d: d.update({"n": d.z.numel()}),
    )
    assert 0 < len(small) < 20
    assert all(d.n <= 5 for d in small)


def test_fixture_loads_fast(tmp_path):
    start = time.perf_counter()
    QM9Pack(tmp_path, source="fixture")
    processed = time.perf_counter() - start
    start = time.perf_counter()
    QM9Pack(tmp_path, source="fixture")
    loaded = time.perf_counter() - start
    assert processed < 3.0 and loaded < 0.5, (processed, loaded)


def test_progress_without_tqdm(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    QM9Pack(tmp_path, source="fixture", subset=40)
    err = capsys.readouterr().err
    assert "QM9: 0% molecules read" in err and "QM9: 90% molecules read" in err


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = doctest.testmod(qm9_module)
    assert result.failed == 0 and result.attempted == 3
    assert (tmp_path / "e3nn_pyg" / "qm9" / "processed" / "fixture_all_v1.pt").exists()


def test_missing_qm9pack_message(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'e3nn_pyg\[qm9\]'"):
        QM9Pack(tmp_path, subset=3)


@needs_qm9pack
def test_qm9pack_first_molecules_match_fixture(tmp_path, fixture_dataset):
    ours = QM9Pack(tmp_path, subset=97)
    assert repr(ours) == "QM9Pack(97, source='qm9pack', subset=97)"
    for a, b in zip(ours, fixture_dataset[:97]):
        assert a.name == b.name and torch.equal(a.z, b.z)
        assert torch.equal(a.pos, b.pos) and torch.equal(a.y, b.y)


@pytest.mark.slow
@needs_qm9pack
def test_full_dataset(tmp_path):
    start = time.perf_counter()
    dataset = QM9Pack(tmp_path)
    seconds = time.perf_counter() - start
    assert len(dataset) == 130_831
    idx = dataset._data.idx
    assert idx.unique().numel() == 130_831 and int(idx.max()) == 133_884
    assert 57 not in set(idx[:100].tolist())  # gdb_58 is uncharacterized
    assert dataset._data.z.numel() / len(dataset) == pytest.approx(18.03, abs=0.01)
    # PyG's QM9 statistics of the atomization energy at 0 K (eV).
    assert dataset.mean("U0_atom") == pytest.approx(-76.116, abs=1e-3)
    assert dataset.std("U0_atom") == pytest.approx(10.3238, abs=1e-3)
    assert all(math.isfinite(v) for v in dataset._data.y.sum(0).tolist())
    assert seconds < 300

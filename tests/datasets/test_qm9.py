import doctest
import importlib.util
import math
import sys
import time

import pytest
import torch
from torch_geometric.datasets import QM9

import e3nn_pyg.datasets.qm9 as qm9_module
from e3nn_pyg.datasets import (
    FIXTURE_PATH,
    QM9_TARGET_INFO,
    QM9_TARGETS,
    QM9Pack,
    make_fixture,
    random_split,
    target_index,
    write_pyg_raw,
)
from e3nn_pyg.datasets.qm9 import main

HAS_QM9PACK = importlib.util.find_spec("qm9pack") is not None
HAS_RDKIT = importlib.util.find_spec("rdkit") is not None
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


def test_target_table():
    assert QM9_TARGETS == (
        "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
        "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C",
    )  # fmt: skip
    assert [t.index for t in QM9_TARGET_INFO] == list(range(19))
    units = {t.name: t.unit for t in QM9_TARGET_INFO}
    assert units["mu"] == "D" and units["alpha"] == "a0^3" and units["r2"] == "a0^2"
    assert units["cv"] == "cal/(mol K)" and units["A"] == units["C"] == "GHz"
    energies = ["homo", "lumo", "gap", "zpve", "U0", "U", "H", "G"]
    energies += ["U0_atom", "U_atom", "H_atom", "G_atom"]
    for t in QM9_TARGET_INFO:
        if t.name in energies:
            assert (t.unit, t.report_unit, t.report_scale) == ("eV", "meV", 1000.0)
        else:
            assert (t.report_unit, t.report_scale) == (t.unit, 1.0)


def test_target_index():
    assert target_index("U0") == 7
    assert target_index("u0") == 7
    assert target_index(" U0_ATOM ") == 12
    assert target_index("gap") == 4
    assert target_index("C") == 18
    assert target_index(3) == 3
    assert [target_index(name) for name in QM9_TARGETS] == list(range(19))


@pytest.mark.parametrize("bad", ["U1", "energy", "", 19, -1])
def test_target_index_rejects_unknown(bad):
    with pytest.raises(ValueError, match="valid names: mu, alpha, homo"):
        target_index(bad)


@pytest.mark.parametrize("bad", [True, 1.0, None, [7]])
def test_target_index_rejects_types(bad):
    with pytest.raises(TypeError, match="target must be"):
        target_index(bad)


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


def test_random_split():
    train, val, test = random_split(100, [80, 10, 10], seed=3)
    again = random_split(100, [80, 10, 10], seed=3)
    other = random_split(100, [80, 10, 10], seed=4)
    assert [len(train), len(val), len(test)] == [80, 10, 10]
    assert all(torch.equal(x, y) for x, y in zip((train, val, test), again))
    assert not torch.equal(train, other[0])
    together = torch.cat([train, val, test])
    assert sorted(together.tolist()) == list(range(100))
    assert train.dtype == torch.long


def test_random_split_fractions_and_partial(fixture_dataset):
    pieces = random_split(fixture_dataset, [0.8, 0.1, 0.1], seed=0)
    assert sum(len(p) for p in pieces) == len(fixture_dataset)
    assert [len(p) for p in pieces] == [237, 30, 30]
    assert len(set(torch.cat(pieces).tolist())) == len(fixture_dataset)
    train = fixture_dataset[pieces[0]]
    assert len(train) == 237 and train[0].name == fixture_dataset[int(pieces[0][0])].name
    half = random_split(10, [0.3, 0.2], seed=0)
    assert [len(p) for p in half] == [3, 2]
    assert random_split(10, [4], seed=0)[0].tolist() == random_split(10, [4, 6], seed=0)[0].tolist()


@pytest.mark.parametrize(
    ("sizes", "error", "match"),
    [
        ([8, 3], ValueError, "sum to at most 10"),
        ([-1, 3], ValueError, "must be >= 0"),
        ([0.6, 0.6], ValueError, "sum to at most 1"),
        ([1.5], ValueError, r"in \[0, 1\]"),
        ([5, 0.5], TypeError, "all ints or all floats"),
        ([], TypeError, "non-empty sequence"),
        ("80", TypeError, "non-empty sequence"),
    ],
)
def test_random_split_rejects(sizes, error, match):
    with pytest.raises(error, match=match):
        random_split(10, sizes)


def test_random_split_rejects_dataset_and_seed():
    with pytest.raises(TypeError, match="sized dataset or an int"):
        random_split(object(), [1])
    with pytest.raises(ValueError, match="dataset size"):
        random_split(-1, [1])
    with pytest.raises(TypeError, match="seed must be an int"):
        random_split(10, [1], seed=1.0)


def test_fixture_loads_fast(tmp_path):
    assert FIXTURE_PATH.stat().st_size < 1_000_000
    start = time.perf_counter()
    QM9Pack(tmp_path, source="fixture")
    processed = time.perf_counter() - start
    start = time.perf_counter()
    QM9Pack(tmp_path, source="fixture")
    loaded = time.perf_counter() - start
    assert processed < 3.0 and loaded < 0.5, (processed, loaded)


def test_progress_without_tqdm(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    QM9Pack(tmp_path, source="fixture", subset=40)
    err = capsys.readouterr().err
    assert "QM9: 0% molecules read" in err and "QM9: 90% molecules read" in err


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
    monkeypatch.setattr(qm9_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="needs RDKit"):
        write_pyg_raw(fixture_dataset, tmp_path, format="sdf")


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = doctest.testmod(qm9_module)
    assert result.failed == 0 and result.attempted >= 6
    assert (tmp_path / "e3nn_pyg" / "qm9" / "processed" / "fixture_all_v1.pt").exists()


def test_missing_qm9pack_message(tmp_path, monkeypatch):
    monkeypatch.setattr(qm9_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'e3nn_pyg\[qm9\]'"):
        QM9Pack(tmp_path, subset=3)


@needs_qm9pack
def test_qm9pack_first_molecules_match_fixture(tmp_path, fixture_dataset):
    ours = QM9Pack(tmp_path, subset=97)
    assert repr(ours) == "QM9Pack(97, source='qm9pack', subset=97)"
    for a, b in zip(ours, fixture_dataset[:97]):
        assert a.name == b.name and torch.equal(a.z, b.z)
        assert torch.equal(a.pos, b.pos) and torch.equal(a.y, b.y)


@needs_qm9pack
def test_process_command(tmp_path, capsys):
    main(["--process", "--root", str(tmp_path), "--subset", "5"])
    out = capsys.readouterr().out
    assert "processed 5 molecules" in out and "qm9pack_first5_v1.pt" in out


@pytest.mark.slow
@needs_qm9pack
def test_fixture_is_reproducible(tmp_path):
    assert make_fixture(tmp_path / "fixture.csv") == 297
    assert (tmp_path / "fixture.csv").read_bytes() == FIXTURE_PATH.read_bytes()


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

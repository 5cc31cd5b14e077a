"""The checked dataset cache on QM9Pack: a stale source, a replaced, truncated or garbage
cache file is rebuilt with a warning; one that cannot be rebuilt is a clear error, also
through the command line (one line, exit status 2)."""

import importlib.util
import os
import shutil
import warnings

import pytest
import torch

import e3nn_pyg.datasets.qm9 as qm9_module
from e3nn_pyg.cli import main as cli_main
from e3nn_pyg.datasets import FIXTURE_PATH, DatasetCacheError, QM9Pack
from e3nn_pyg.datasets.cache import file_record, matches_record


def test_file_record_and_match(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello")
    record = file_record(path)
    assert record["size"] == 5 and len(record["sha256"]) == 64
    assert matches_record(path, record)
    os.utime(path, ns=(1, 1))
    assert matches_record(path, record)  # touched: the hash decides
    path.write_text("hellO")
    assert not matches_record(path, record)
    path.write_text("hello!")
    assert not matches_record(path, record)
    assert not matches_record(tmp_path / "missing", record)
    assert not matches_record(path, "not a record")


def assert_same(a, b):
    assert len(a) == len(b)
    for key in ("z", "pos", "y", "idx"):
        assert torch.equal(a._data[key], b._data[key])
    assert a._data.name == b._data.name


@pytest.fixture
def fresh(tmp_path):
    """A fixture cache: (root, dataset)."""
    root = tmp_path / "qm9"
    return root, QM9Pack(root, source="fixture", subset=30, log=False)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: open(path, "wb").write(b"not a torch file at all"),
        lambda path: os.truncate(path, os.path.getsize(path) // 3),
        lambda path: open(path, "wb").close(),
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_a_damaged_cache_is_rebuilt(fresh, damage):
    root, dataset = fresh
    damage(dataset.processed_paths[0])
    with pytest.warns(UserWarning, match="rebuilt the dataset cache .*changed since"):
        rebuilt = QM9Pack(root, source="fixture", subset=30, log=False)
    assert_same(rebuilt, dataset)


def test_another_valid_cache_in_its_place_is_rebuilt(fresh):
    root, dataset = fresh
    other = QM9Pack(root, source="fixture", subset=10, log=False)
    shutil.copy(other.processed_paths[0], dataset.processed_paths[0])
    with pytest.warns(UserWarning, match="changed since it was written"):
        rebuilt = QM9Pack(root, source="fixture", subset=30, log=False)
    assert len(rebuilt) == 30
    assert_same(rebuilt, dataset)


def test_a_changed_source_is_read_again(tmp_path, monkeypatch):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(FIXTURE_PATH, source / FIXTURE_PATH.name)
    monkeypatch.setattr(qm9_module, "_source_dir", lambda name: str(source))
    root = tmp_path / "qm9"
    assert len(QM9Pack(root, source="fixture", log=False)) == 297
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(QM9Pack(root, source="fixture", log=False)) == 297  # unchanged: trusted
    lines = (source / FIXTURE_PATH.name).read_text().splitlines(keepends=True)
    (source / FIXTURE_PATH.name).write_text("".join(lines[:-7]))
    with pytest.warns(UserWarning, match="the source .*qm9_fixture.csv changed"):
        assert len(QM9Pack(root, source="fixture", log=False)) == 290


def test_a_cache_that_does_not_load_is_rebuilt(fresh):
    root, dataset = fresh
    path = dataset.processed_paths[0]
    with open(path, "r+b") as f:  # same size, garbage inside, and a record that matches
        f.write(b"\x00" * 64)
    dataset._write_record()
    with pytest.warns(UserWarning, match=r"torch.load fails on it \(\w+Error\)"):
        rebuilt = QM9Pack(root, source="fixture", subset=30, log=False)
    assert_same(rebuilt, dataset)


def without_qm9pack(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "qm9pack" else find_spec(name, *a),
    )


def garbage_qm9pack_cache(root, name):
    processed = root / "processed"
    processed.mkdir(parents=True)
    (processed / name).write_bytes(b"garbage" * 50)


def test_a_cache_that_cannot_be_rebuilt_is_a_clear_error(tmp_path, monkeypatch):
    without_qm9pack(monkeypatch)
    garbage_qm9pack_cache(tmp_path, "qm9pack_first5_v1.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "rebuilt" warning: the error says it all
        with pytest.raises(DatasetCacheError) as info:
            QM9Pack(tmp_path, subset=5, log=False)
    message = str(info.value)
    assert "qm9pack_first5_v1.pt is unusable (torch.load fails on it (UnpicklingError))" in message
    assert "cannot be rebuilt from its source" in message
    assert "pip install 'e3nn_pyg[qm9]'" in message
    assert isinstance(info.value, ValueError)


def test_the_command_line_reports_an_unrebuildable_cache_in_one_line(tmp_path, monkeypatch, capsys):
    without_qm9pack(monkeypatch)
    garbage_qm9pack_cache(tmp_path / "cache", "qm9pack_random40_seed0_v1.pt")
    argv = ["train", "--dataset", "qm9", "--num-molecules", "40", "--epochs", "1"]
    argv += [
        "--data-root",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    ]
    status = cli_main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert lines[0].startswith("e3nn-pyg: error: ") and "Traceback" not in err
    assert "qm9pack_random40_seed0_v1.pt is unusable" in lines[0]
    assert "cannot be rebuilt" in lines[0] and "unexpected" not in lines[0]


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="needs qm9pack")
def test_a_readable_cache_outlives_its_source_package(tmp_path, monkeypatch):
    built = QM9Pack(tmp_path, subset=5, log=False)
    without_qm9pack(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = QM9Pack(tmp_path, subset=5, log=False)
    assert_same(again, built)

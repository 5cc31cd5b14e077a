"""The one place that asks whether tqdm is installed."""

import sys

import pytest

from e3nn_pyg.progress import tqdm_if_installed


def test_tqdm_when_installed_none_otherwise(monkeypatch):
    tqdm = pytest.importorskip("tqdm")
    assert tqdm_if_installed() is tqdm.tqdm
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    assert tqdm_if_installed() is None

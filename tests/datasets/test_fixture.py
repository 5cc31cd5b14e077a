"""The QM9 fixture shipped with the package, and its maker."""

import importlib.util

import pytest

from e3nn_pyg.datasets import FIXTURE_PATH, make_fixture

HAS_QM9PACK = importlib.util.find_spec("qm9pack") is not None
needs_qm9pack = pytest.mark.skipif(not HAS_QM9PACK, reason="qm9pack is not installed")


@pytest.mark.slow
@needs_qm9pack
def test_fixture_is_reproducible(tmp_path):
    assert make_fixture(tmp_path / "fixture.csv") == 297
    assert (tmp_path / "fixture.csv").read_bytes() == FIXTURE_PATH.read_bytes()


def test_the_fixture_is_small_and_starts_with_methane():
    assert FIXTURE_PATH.stat().st_size < 1_000_000
    lines = FIXTURE_PATH.read_text().splitlines()
    assert len(lines) == 1 + 297 and lines[1].startswith("1,")


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"num_first": -1}, ValueError, "num_first must be an int >= 0"),
        ({"num_random": 1.5}, ValueError, "num_random must be an int >= 0"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"seed": 2**64}, ValueError, "seed must lie in"),
    ],
)
def test_make_fixture_checks_its_arguments_first(tmp_path, arguments, error, match):
    with pytest.raises(error, match=match):
        make_fixture(tmp_path / "fixture.csv", **arguments)
    assert not (tmp_path / "fixture.csv").exists()

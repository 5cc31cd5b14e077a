"""Value checks: a precise error eagerly, a graph assertion under torch.compile."""

import pytest
import torch

from e3nn_pyg.checks import require, require_index_range


def test_require_builds_the_detailed_message_only_on_failure():
    calls = []

    def detail() -> str:
        calls.append(1)
        return "x holds 5"

    require(torch.tensor(True), ValueError, "x out of range", detail)
    assert calls == []
    with pytest.raises(ValueError, match=r"^x holds 5$"):
        require(torch.tensor(False), ValueError, "x out of range", detail)
    with pytest.raises(KeyError, match="static"):
        require(torch.tensor(False), KeyError, "static")


@pytest.mark.parametrize(
    "index, message",
    [([0, 4, -2, 7], "node -2 out of range"), ([0, 4, 7, 9], "node 9 out of range")],
)
def test_require_index_range_names_the_lowest_negative_or_highest_entry(index, message):
    with pytest.raises(IndexError, match=message + r" \[0, 5\)"):
        require_index_range(torch.tensor(index), 5, "node")


def test_require_index_range_accepts_empty_and_in_range_indices():
    require_index_range(torch.empty(0, dtype=torch.long), 0, "node")
    require_index_range(torch.tensor([0, 4]), 5, "node")


def test_under_compile_a_failed_check_raises_the_static_message():
    def scaled(x):
        require((x > 0).all(), ValueError, "x must be positive", lambda: f"x min {x.min()}")
        return 2 * x

    compiled = torch.compile(scaled, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(torch.ones(3)), torch.full((3,), 2.0))
    with pytest.raises(RuntimeError, match="x must be positive"):
        compiled(-torch.ones(3))

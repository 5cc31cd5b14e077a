"""Value checks: a precise error eagerly, a graph assertion under torch.compile."""

import math

import pytest
import torch

from e3nn_pyg.checks import (
    require,
    require_atomic_numbers,
    require_bool,
    require_choice,
    require_edges,
    require_features,
    require_floating,
    require_index_range,
    require_int,
    require_like,
    require_positive,
)
from e3nn_pyg.o3 import Rs


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


@pytest.mark.parametrize(
    "edges, error, message",
    [
        ([[0, 1], [1, 3]], IndexError, r"target node 3 out of range \[0, 3\)"),
        ([[0, -1], [1, 3]], IndexError, r"source node -1 out of range \[0, 4\)"),
        ([[0, 1]], ValueError, r"\[2, num_edges\]"),
        ([[0.0], [1.0]], TypeError, "integer"),
    ],
)
def test_require_edges_checks_both_rows_with_one_message(edges, error, message):
    require_edges(torch.tensor([[0], [0]]), 1, 1)
    require_edges(torch.empty(2, 0, dtype=torch.int32), 0, 0)
    with pytest.raises(error, match=message):
        require_edges(torch.tensor(edges), 4, 3)


@pytest.mark.parametrize(
    "x, rows, batch_axes, error, message",
    [
        (torch.zeros(3, 4), None, False, ValueError,
         r"x has shape \[3, 4\], expected \[num_nodes, 5\] for Rs_in 2x0e\+1x1o"),
        (torch.zeros(5), None, False, ValueError, r"x has shape \[5\]"),
        (torch.zeros(2, 3, 5), None, False, ValueError, r"x has shape \[2, 3, 5\]"),
        (torch.zeros(3, 5), 4, False, ValueError, "x has 3 rows, expected 4"),
        (torch.zeros(2, 3, 4), None, True, ValueError, r"expected \[\.\.\., 5\] for Rs_in"),
        (torch.zeros(()), None, True, ValueError, r"x has shape \[\], expected \[\.\.\., 5\]"),
        ("features", None, False, TypeError, "x must be a torch.Tensor, got str"),
        (torch.zeros(3, 5, dtype=torch.long), None, True, TypeError, "x must be a floating"),
    ],
)  # fmt: skip
def test_require_features_names_the_width_of_the_representation(
    x, rows, batch_axes, error, message
):
    require_features(torch.zeros(3, 5), Rs("2x0e+1x1o"), "x", rows=3)
    require_features(torch.zeros(2, 3, 5), Rs("2x0e+1x1o"), "x", batch_axes=True)
    with pytest.raises(error, match=message):
        require_features(x, Rs("2x0e+1x1o"), "x", rows=rows, batch_axes=batch_axes)


@pytest.mark.parametrize(
    "check, value, expected",
    [
        (lambda v: require_int(v, "h", minimum=1), 3, 3),
        (lambda v: require_int(v, "L", minimum=0), 0, 0),
        (lambda v: require_positive(v, "r"), 2, 2.0),
        (lambda v: require_positive(v, "r"), torch.tensor(1.5), 1.5),
        (lambda v: require_bool(v, "loop"), False, False),
        (lambda v: require_choice(v, "mode", ("full", "channelwise")), "full", "full"),
        (lambda v: require_choice(v, "p", (None, 1)), None, None),
    ],
)
def test_the_value_checks_return_what_they_accept(check, value, expected):
    out = check(value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    "check, value, error, message",
    [
        (lambda v: require_int(v, "h", minimum=1), 0, ValueError, "h must be an int >= 1, got 0"),
        (lambda v: require_int(v, "h"), 2.0, TypeError, "h must be an int, got float 2.0"),
        (lambda v: require_int(v, "h"), True, TypeError, "h must be an int, got bool True"),
        (lambda v: require_positive(v, "r"), 0.0, ValueError, "r must be positive and finite"),
        (lambda v: require_positive(v, "r"), -1, ValueError, "r must be positive and finite"),
        (lambda v: require_positive(v, "r"), math.nan, ValueError, "positive and finite, got nan"),
        (lambda v: require_positive(v, "r"), math.inf, ValueError, "positive and finite, got inf"),
        (lambda v: require_positive(v, "r"), "1", TypeError, "r must be a real number, got str"),
        (lambda v: require_positive(v, "r"), True, TypeError, "r must be a real number, got bool"),
        (lambda v: require_positive(v, "r"), torch.ones(2), TypeError, "r must be a real number"),
        (lambda v: require_bool(v, "loop"), 1, TypeError, "loop must be a bool, got int 1"),
        (lambda v: require_bool(v, "loop"), None, TypeError, "loop must be a bool, got NoneType"),
        (lambda v: require_choice(v, "mode", ("full", "channelwise")), "Full", ValueError,
         r"mode must be one of \('full', 'channelwise'\), got 'Full'"),
        (lambda v: require_choice(v, "p", (0, 1)), True, ValueError, "p must be one of"),
        (lambda v: require_choice(v, "mode", ("full",)), ["full"], ValueError, "got \\['full'\\]"),
    ],
)  # fmt: skip
def test_the_value_checks_name_the_argument(check, value, error, message):
    with pytest.raises(error, match=message):
        check(value)


@pytest.mark.parametrize(
    "z",
    [
        torch.tensor([1.0, 8.0]),
        torch.tensor([1, 8], dtype=torch.int32),
        torch.tensor([[1, 8]]),
        torch.tensor(8),
        [1, 8],
        None,
    ],
)
def test_require_atomic_numbers_refuses_all_but_a_1d_long_tensor(z):
    with pytest.raises(TypeError, match=r"z must be a 1-D torch\.long tensor of atomic numbers"):
        require_atomic_numbers(z)


def test_require_atomic_numbers_returns_a_1d_long_tensor():
    z = torch.tensor([1, 6, 8])
    assert require_atomic_numbers(z) is z


def test_require_floating_and_require_like():
    x = torch.zeros(2, dtype=torch.float64)
    assert require_floating(x, "x") is x
    with pytest.raises(TypeError, match="edge_length must be a floating-point tensor"):
        require_floating(torch.tensor([1]), "edge_length")
    with pytest.raises(TypeError, match=r"edge_length must be a torch\.Tensor, got list"):
        require_floating([1.0], "edge_length")
    require_like(x, torch.ones(3, dtype=torch.float64), "x", "pos")
    with pytest.raises(
        TypeError, match=r"x \(torch.float32 on cpu\) must match pos \(torch.float64 on cpu\)"
    ):
        require_like(x.float(), x, "x", "pos")


def test_under_compile_a_failed_check_raises_the_static_message():
    def scaled(x):
        require((x > 0).all(), ValueError, "x must be positive", lambda: f"x min {x.min()}")
        return 2 * x

    compiled = torch.compile(scaled, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(torch.ones(3)), torch.full((3,), 2.0))
    with pytest.raises(RuntimeError, match="x must be positive"):
        compiled(-torch.ones(3))

"""Path planning: selection rule, radial-weight layout, normalization constants, errors."""

import math
from functools import partial

import pytest

from e3nn_pyg.o3 import Rs
from e3nn_pyg.tensor_product.paths import plan_kernel, selection_rule


@pytest.mark.parametrize(
    ("l_in", "p_in", "l_out", "p_out", "expected"),
    [
        (0, 0, 0, 0, [0]),
        (0, 0, 1, 0, [1]),
        (1, 0, 1, 0, [0, 1, 2]),  # no parity: every order of the triangle
        (1, -1, 1, -1, [0, 2]),  # 1o -> 1o: even filters
        (1, -1, 1, 1, [1]),  # 1o -> 1e: odd filters
        (0, 1, 1, 1, []),  # 0e -> 1e: l_f = 1 is odd, forbidden
        (0, 1, 1, -1, [1]),
        (2, 1, 1, -1, [1, 3]),
        (2, 1, 2, 1, [0, 2, 4]),
        (1, -1, 2, 0, [1, 2, 3]),  # parity-free output accepts every order
    ],
)
def test_selection_rule(l_in, p_in, l_out, p_out, expected):
    assert selection_rule(l_in, p_in, l_out, p_out) == expected


def test_selection_rule_lmax_and_lfilter():
    assert selection_rule(2, 1, 2, 1, lmax=2) == [0, 2]
    assert selection_rule(2, 0, 2, 0, lfilter=[1, 3]) == [1, 3]
    assert selection_rule(2, 0, 2, 0, lmax=2, lfilter=[1, 3]) == [1]


def test_tutorial_plan():
    plan = plan_kernel([(2, 0)], [(4, 0), (4, 1), (4, 2)])
    assert plan.n_path == 24
    assert [pair.filters for pair in plan.pairs] == [(0,), (1,), (2,)]
    assert plan.filter_orders == [0, 1, 2]
    # each output block has N_o = 2 inputs x 1 filter: sqrt((2 l_o + 1) / 2)
    assert [pair.norms for pair in plan.pairs] == [
        (math.sqrt(1 / 2),),
        (math.sqrt(3 / 2),),
        (math.sqrt(5 / 2),),
    ]


def _expected_layout(rs_in, rs_out, rule=selection_rule):
    """(index_out, index_in, filters, offset) in the order of docs/conventions.md, computed
    independently."""
    layout, offset = [], 0
    for index_out, (mul_o, l_o, p_o) in enumerate(Rs(rs_out)):
        for index_in, (mul_i, l_i, p_i) in enumerate(Rs(rs_in)):
            filters = tuple(rule(l_i, p_i, l_o, p_o))
            if filters:
                layout.append((index_out, index_in, filters, offset))
                offset += mul_o * mul_i * len(filters)
    return layout, offset


@pytest.mark.parametrize(
    ("rs_in", "rs_out"),
    [
        ("2x0e + 3x1o + 1x2e", "1x0e + 2x1o + 2x2e + 1x1e"),
        ("3x1o + 2x0e", "2x1o"),  # the 0e input reaches 1o through l_f = 1
        ("1x0 + 2x1 + 1x2", "2x0 + 1x1 + 3x2 + 1x3"),
    ],
)
def test_weight_layout_output_outer_input_inner(rs_in, rs_out):
    plan = plan_kernel(rs_in, rs_out)
    layout, n_path = _expected_layout(rs_in, rs_out)
    got = [(p.index_out, p.index_in, p.filters, p.weight_offset) for p in plan.pairs]
    assert got == layout
    assert plan.n_path == n_path
    # the blocks tile [0, n_path) without gaps
    ends = [p.weight_offset + p.num_weights for p in plan.pairs]
    assert [p.weight_offset for p in plan.pairs[1:]] == ends[:-1]
    assert ends[-1] == n_path


@pytest.mark.parametrize("normalization", ["component", "norm"])
def test_normalization_constants(normalization):
    rs_in, rs_out = "2x0e + 3x1o + 1x2e", "1x0e + 2x1o + 2x2e"
    plan = plan_kernel(rs_in, rs_out, normalization=normalization)
    fan_in = {}
    for pair in plan.pairs:
        fan_in[pair.index_out] = fan_in.get(pair.index_out, 0) + pair.mul_in * len(pair.filters)
    for pair in plan.pairs:
        n_o = fan_in[pair.index_out]
        for l_f, norm in zip(pair.filters, pair.norms):
            if normalization == "component":
                expected = math.sqrt((2 * pair.l_out + 1) / n_o)
            else:
                expected = math.sqrt((2 * pair.l_in + 1) * (2 * l_f + 1) / n_o)
            assert norm == pytest.approx(expected, rel=1e-15)


def test_lmax_rule_changes_the_plan():
    rule = partial(selection_rule, lmax=1)
    plan = plan_kernel("1x1o", "1x1o+1x0e", rule)
    assert [pair.filters for pair in plan.pairs] == [(0,), (1,)]
    assert plan.n_path == 2


def test_zero_multiplicity_blocks_are_skipped():
    plan = plan_kernel("0x1o + 2x0e", "0x2e + 1x0e")
    assert [(p.index_out, p.index_in) for p in plan.pairs] == [(1, 1)]
    assert plan.n_path == 2


def test_error_output_without_path():
    with pytest.raises(ValueError, match=r"no path produces output irrep 1x1e"):
        plan_kernel("2x0e", "1x0e + 1x1e")


def test_error_input_without_path():
    with pytest.raises(ValueError, match=r"input irreps 1x1e .* reach no output"):
        plan_kernel("1x0e + 1x1e", "1x0e")


def test_error_lmax_removes_every_path():
    with pytest.raises(ValueError, match="no path produces"):
        plan_kernel("1x2e", "1x0e", partial(selection_rule, lmax=1))


def test_error_rule_breaking_parity_or_triangle():
    def bad_parity(l_in, p_in, l_out, p_out):
        return [1]  # 0e -> 0e through an odd filter

    with pytest.raises(ValueError, match="triangle or parity"):
        plan_kernel("1x0e", "1x0e", bad_parity)
    with pytest.raises(ValueError, match="triangle or parity"):
        plan_kernel("1x0", "1x0", lambda *args: [2])


def test_error_unknown_normalization():
    with pytest.raises(ValueError, match="normalization"):
        plan_kernel("1x0", "1x0", normalization="integral")


@pytest.mark.parametrize(
    "rs_in, rs_out, match",
    [
        ("", "2x0e", "Rs_in = '' has no irrep of non-zero multiplicity"),
        ("0x0e + 0x1o", "2x0e", r"Rs_in = '0x0e\+0x1o' has no irrep"),
        ("2x0e", "0x1o", "Rs_out = '0x1o' has no irrep of non-zero multiplicity"),
    ],
)
def test_empty_representations_are_named(rs_in, rs_out, match):
    with pytest.raises(ValueError, match=match):
        plan_kernel(rs_in, rs_out)

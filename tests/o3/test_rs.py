"""Tests of e3nn_pyg.o3.rs: parsing, layout, simplify/sort and input validation."""

import pytest
import torch

from e3nn_pyg.o3 import MulIrrep, Rs, dim, rand_rotation, rs_representation


# -- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "blocks"),
    [
        ("4x0e + 2x1o + 2e", [(4, 0, 1), (2, 1, -1), (1, 2, 1)]),
        ("4x0e+2x1o+2e", [(4, 0, 1), (2, 1, -1), (1, 2, 1)]),
        ("  4 x 0e  +2x 1o ", [(4, 0, 1), (2, 1, -1)]),
        ("2x1", [(2, 1, 0)]),
        ("3", [(1, 3, 0)]),
        ("1o", [(1, 1, -1)]),
        ("0x2e", [(0, 2, 1)]),
        ("10x12o + 1x0", [(10, 12, -1), (1, 0, 0)]),
        ("", []),
        ("   ", []),
        ([(2, 0)], [(2, 0, 0)]),
        ([(2, 0, 1), (1, 1, -1)], [(2, 0, 1), (1, 1, -1)]),
        ([(2, 0), (1, 1, -1), [3, 2, 1]], [(2, 0, 0), (1, 1, -1), (3, 2, 1)]),
        (((1, 1, -1),), [(1, 1, -1)]),
        ([MulIrrep(5, 3, -1)], [(5, 3, -1)]),
        ((entry for entry in [(1, 0, 1), (1, 1, -1)]), [(1, 0, 1), (1, 1, -1)]),
        ([], []),
    ],
)
def test_parse_spellings(spec, blocks):
    rs = Rs(spec)
    assert [tuple(block) for block in rs] == blocks
    assert all(isinstance(block, MulIrrep) for block in rs)


def test_copy_constructor_and_default():
    rs = Rs("2x0e + 1x1o")
    assert Rs(rs) == rs
    assert Rs(rs) is not rs
    assert Rs() == Rs("") == Rs([])
    assert len(Rs()) == 0


def test_string_round_trip():
    for spec in ["4x0e+2x1o+1x2e", "2x1", "1x0o+0x3e+7x10", ""]:
        assert str(Rs(spec)) == spec
        assert Rs(str(Rs(spec))) == Rs(spec)


# -- dimensions and layout -----------------------------------------------------------------
def test_dim_and_counts():
    rs = Rs("4x0e + 2x1o + 2e")
    assert rs.dim == 4 * 1 + 2 * 3 + 1 * 5 == 15
    assert dim("4x0e + 2x1o + 2e") == 15
    assert dim([(2, 0), (1, 3)]) == 9
    assert Rs().dim == 0
    assert Rs("0x5e").dim == 0
    assert [block.dim for block in rs] == [4, 6, 5]
    assert rs.num_irreps == 7
    assert rs.ls == [0, 0, 0, 0, 1, 1, 2]
    assert len(rs) == 3


def test_slices_cover_the_features_in_order():
    rs = Rs("2x0e + 1x1o + 0x3e + 3x2e")
    slices = rs.slices()
    assert slices == [slice(0, 2), slice(2, 5), slice(5, 5), slice(5, 20)]
    assert slices[-1].stop == rs.dim


def test_lmax():
    assert Rs("1x0e + 2x3o + 1x1e").lmax == 3
    assert Rs("5x0").lmax == 0
    with pytest.raises(ValueError, match="empty"):
        _ = Rs().lmax


def test_is_scalar():
    assert Rs("3x0e + 0o").is_scalar()
    assert not Rs("3x0e + 1x1o").is_scalar()


# -- str / iteration / equality / hash ------------------------------------------------------
def test_str_and_repr():
    assert str(Rs([(2, 0)])) == "2x0"
    assert str(Rs("4x0e + 2x1o + 2e")) == "4x0e+2x1o+1x2e"
    assert repr(Rs("1x1o")) == "Rs('1x1o')"
    assert str(MulIrrep(3, 2, -1)) == "3x2o"


def test_iteration_and_indexing():
    rs = Rs("4x0e + 2x1o")
    first, second = rs
    assert (first.mul, first.l, first.p) == (4, 0, 1)
    assert second == MulIrrep(mul=2, l=1, p=-1)
    assert rs[1] == second
    assert rs[-1] == second
    assert rs[:1] == Rs("4x0e")
    assert isinstance(rs[:1], Rs)
    assert [mul for mul, _, _ in rs] == [4, 2]


def test_equality():
    rs = Rs("4x0e + 2x1o")
    assert rs == Rs([(4, 0, 1), (2, 1, -1)])
    assert rs == [(4, 0, 1), (2, 1, -1)]
    assert rs == "4x0e+2x1o"
    assert Rs([(1, 0)]) == "1x0"
    assert rs != Rs("2x1o + 4x0e")  # order matters
    assert Rs("1x0") != Rs("1x0e")  # no parity is not even parity
    assert Rs("1x0e") != Rs("1x0o")
    assert Rs("2x0e") != Rs("1x0e + 1x0e")  # equality is not up to simplify
    # comparing with things that are not representation lists is False, not an error
    assert rs != "not an Rs"
    assert rs != 3
    assert rs != [(1, -1)]


def test_hash():
    assert hash(Rs("4x0e + 2x1o")) == hash(Rs([(4, 0, 1), (2, 1, -1)]))
    table = {Rs("1x1o"): "vector", Rs("1x1e"): "pseudovector"}
    assert table[Rs([(1, 1, -1)])] == "vector"
    assert len({Rs("2x0"), Rs([(2, 0)]), Rs([(2, 0, 0)])}) == 1


def test_immutable():
    rs = Rs("1x0e")
    with pytest.raises(AttributeError):
        rs.blocks = ()  # no new attributes (slots)
    with pytest.raises(TypeError):
        rs[0] = MulIrrep(2, 0, 1)


# -- concatenation ---------------------------------------------------------------------------
def test_concatenation():
    a, b = Rs("2x0e"), Rs("1x1o")
    assert a + b == Rs("2x0e + 1x1o")
    assert a + "1x1o" == Rs("2x0e + 1x1o")
    assert "1x1o" + a == Rs("1x1o + 2x0e")
    assert [(1, 1, -1)] + a == Rs("1x1o + 2x0e")  # noqa: RUF005 (exercises __radd__)
    assert isinstance(a + b, Rs)
    assert (a + b).dim == a.dim + b.dim
    assert a * 3 == Rs("2x0e + 2x0e + 2x0e")
    assert a + Rs() == a
    assert a == Rs("2x0e")  # operands are not modified
    with pytest.raises(ValueError):
        _ = a + "1x1q"


# -- simplify --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1x0e + 2x0e + 1x1o + 1x0e", "3x0e + 1x1o + 1x0e"),  # adjacent only: never sorts
        ("1x1o + 1x0e", "1x1o + 1x0e"),
        ("1x0e + 1x0o", "1x0e + 1x0o"),  # different parity
        ("1x0 + 1x0e", "1x0 + 1x0e"),  # p = 0 is its own parity
        ("1x1 + 2x1", "3x1"),
        ("1x2e + 0x1o + 1x2e", "2x2e"),  # empty blocks are dropped, which makes neighbours
        ("0x0e", ""),
        ("", ""),
    ],
)
def test_simplify(spec, expected):
    rs = Rs(spec)
    simple = rs.simplify()
    assert simple == Rs(expected)
    assert simple.dim == rs.dim  # the layout is unchanged, only the bookkeeping
    assert simple.simplify() == simple


def test_simplify_keeps_the_feature_layout():
    rs = Rs("1x1o + 2x1o + 1x0e + 1x1o")
    R = rand_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(
        rs_representation(rs, R), rs_representation(rs.simplify(), R), rtol=0, atol=1e-12
    )


# -- sort ------------------------------------------------------------------------------------
def _tagged_features(rs: Rs) -> torch.Tensor:
    """A feature vector whose entries say (block index, position in the block)."""
    return torch.cat(
        [100.0 * i + torch.arange(block.dim, dtype=torch.float64) for i, block in enumerate(rs)]
    )


def test_sort_orders_by_l_and_is_stable():
    rs = Rs("1x2e + 3x0e + 2x1o + 1x0e + 1x2e")
    sorted_rs, perm = rs.sort()
    assert [block.l for block in sorted_rs] == [0, 0, 1, 2, 2]
    assert sorted(map(tuple, sorted_rs)) == sorted(map(tuple, rs))
    assert sorted(perm) == list(range(rs.dim))
    # equal keys keep their order: the 3x0e block comes before the 1x0e one
    assert [block.mul for block in sorted_rs] == [3, 1, 2, 1, 1]
    x = _tagged_features(rs)
    slices = rs.slices()
    expected = torch.cat([x[slices[i]] for i in (1, 3, 2, 0, 4)])
    torch.testing.assert_close(x[perm], expected, rtol=0, atol=0)


def test_sort_permutation_gives_the_sorted_layout():
    rs = Rs("1x1o + 1x0e")
    sorted_rs, perm = rs.sort()
    assert sorted_rs == Rs("1x0e + 1x1o")
    assert perm == [3, 0, 1, 2]
    x = torch.tensor([[10.0, 11.0, 12.0, 20.0]])  # [x, y, z, scalar]
    torch.testing.assert_close(x[..., perm], torch.tensor([[20.0, 10.0, 11.0, 12.0]]))


def test_sort_permutation_intertwines_the_representations():
    # x_sorted = x[perm] must transform with the sorted Rs: D_sorted = P D P^T
    rs = Rs("2x2e + 1x0o + 1x1o + 1x0e + 1x1e")
    sorted_rs, perm = rs.sort()
    R = rand_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for matrix in (R, -R):
        D = rs_representation(rs, matrix)
        D_sorted = rs_representation(sorted_rs, matrix)
        torch.testing.assert_close(D[perm][:, perm], D_sorted, rtol=0, atol=1e-12)


def test_sort_of_sorted_is_identity():
    rs = Rs("1x0e + 2x1o + 1x2e")
    sorted_rs, perm = rs.sort()
    assert sorted_rs == rs
    assert perm == list(range(rs.dim))
    assert Rs().sort() == (Rs(), [])


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        [(-1, 0)],  # negative mul
        [(1, -1)],  # negative l
        [(1.5, 0)],  # non-integer mul
        [(1, 1.0)],  # non-integer l (even if integral)
        [("2", 0)],
        [(1, "1")],
        [(True, 0)],  # bool is not an int here
        [(1, False)],
        [(1, 1, True)],
        [(1, 1, 2)],  # parity outside {-1, 0, 1}
        [(1, 1, -2)],
        [(1, 1, 0.5)],
        [(1, 1, "o")],
        [(1,)],  # wrong tuple length
        [(1, 1, 1, 1)],
        [3],  # not a tuple
        [(2, 0), "1x1o"],
        3,  # not a spec at all
        None,
        2.5,
    ],
)
def test_bad_entries_raise_value_error(spec):
    with pytest.raises(ValueError, match="Rs"):
        Rs(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "4y0e",
        "x1o",
        "1xo",
        "1x1a",
        "1x-1e",
        "-1x0e",
        "1.5x0e",
        "1x0.5e",
        "4x0e++1x1o",
        "4x0e+",
        "+4x0e",
        "1x1o 2x0e",
        "1x1oe",
        "e",
        "1x1E",
        "4x0e, 2x1o",
    ],
)
def test_malformed_strings_raise_value_error(spec):
    with pytest.raises(ValueError, match="cannot parse Rs term"):
        Rs(spec)


def test_error_names_the_offending_entry():
    with pytest.raises(ValueError, match=r"\(1, -3\)"):
        Rs([(2, 0), (1, -3)])
    with pytest.raises(ValueError, match="'1xo'"):
        Rs("2x0e + 1xo")

"""Tests of e3nn_pyg.o3.rs: irreps, parsing, layout, simplify/sort/filter/count, feature
chunks, random features, representation matrices and input validation."""

import copy
import pickle
import re

import numpy as np
import pytest
import torch

from e3nn_pyg.o3 import Irrep, MulIrrep, Rs, dim, rand_rotation, rs_representation, wigner_D


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
        # e3nn's nested (mul, (l, p)) and (mul, "1e")
        ([(16, (1, 1))], [(16, 1, 1)]),
        ([(16, (1, 1)), (2, (0, -1)), (3, (2, 0))], [(16, 1, 1), (2, 0, -1), (3, 2, 0)]),
        ([(2, [1, -1])], [(2, 1, -1)]),
        ([(4, "1e"), (2, "0o"), (1, "3")], [(4, 1, 1), (2, 0, -1), (1, 3, 0)]),
        ([(3, Irrep(2, -1))], [(3, 2, -1)]),
        # irreps and one-term strings as entries
        ([Irrep(1, -1), Irrep("2e")], [(1, 1, -1), (1, 2, 1)]),
        (["1e", "2x1o", " 3 x 0 ", "0o"], [(1, 1, 1), (2, 1, -1), (3, 0, 0), (1, 0, -1)]),
        ([(2, 0), "1x1o"], [(2, 0, 0), (1, 1, -1)]),
        # the 2020 shorthand: a bare order l is one copy without parity
        ([0], [(1, 0, 0)]),
        ([3], [(1, 3, 0)]),
        ([0, (2, 0)], [(1, 0, 0), (2, 0, 0)]),
        ([2, 0], [(1, 2, 0), (1, 0, 0)]),
        (range(3), [(1, 0, 0), (1, 1, 0), (1, 2, 0)]),
        # every spelling in one list
        ([(16, (1, 1)), "2o", 0, (3, "0e"), (1, 1), (1, 1, -1)],
         [(16, 1, 1), (1, 2, -1), (1, 0, 0), (3, 0, 1), (1, 1, 0), (1, 1, -1)]),
        # a single irrep or block is a one-block list
        (Irrep("1o"), [(1, 1, -1)]),
        (MulIrrep(3, 2, 1), [(3, 2, 1)]),
        # a tuple of tuples is a list of blocks
        (((2, 0), (1, 1, -1)), [(2, 0, 0), (1, 1, -1)]),
    ],
)  # fmt: skip
def test_parse_spellings(spec, blocks):
    rs = Rs(spec)
    assert [tuple(block) for block in rs] == blocks
    assert all(isinstance(block, MulIrrep) for block in rs)


def test_spellings_agree():
    spellings = [
        "16x1e + 1x2o + 1x0 + 3x0e",
        [(16, 1, 1), (1, 2, -1), (1, 0), (3, 0, 1)],
        [(16, (1, 1)), "2o", 0, (3, "0e")],
        [(16, "1e"), Irrep(2, -1), "1x0", MulIrrep(3, 0, 1)],
    ]
    assert len({Rs(spec) for spec in spellings}) == 1
    assert all(Rs(spec) == spellings[0] for spec in spellings)


def test_e3nn_irreps_convert():
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    irreps = e3nn_o3.Irreps("16x1e + 2x0o + 0x2e")
    assert Rs(irreps) == Rs("16x1e + 2x0o + 0x2e")
    assert Rs(irreps).dim == irreps.dim
    assert Rs(str(irreps)) == Rs(irreps)
    # e3nn's Irrep is a pair (l, p): on its own it is one copy, not a block (mul, l)
    assert Rs([e3nn_o3.Irrep("1e")]) == Rs(e3nn_o3.Irrep("1e")) == Rs("1x1e")
    assert Irrep(e3nn_o3.Irrep("2o")) == Irrep("2o")


def test_pickle_and_copy_keep_the_feature_layout():
    rs = Rs("2x0e + 1x1o + 0x2e")
    x = rs.randn(3)
    for other in (pickle.loads(pickle.dumps(rs)), copy.deepcopy(rs), copy.copy(rs)):
        assert other == rs and hash(other) == hash(rs)
        for a, b in zip(other.chunks(x), rs.chunks(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


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
    assert 3 * a == a * 3
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


# -- Irrep -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "l", "p"),
    [
        ((1, -1), 1, -1),
        ((2, 1), 2, 1),
        ((3,), 3, 0),
        ((0, 0), 0, 0),
        (("1o",), 1, -1),
        (("0e",), 0, 1),
        (("2",), 2, 0),
        ((" 12 o ",), 12, -1),
        (((2, -1),), 2, -1),
        ((Irrep(4, 1),), 4, 1),
    ],
)
def test_irrep_spellings(args, l, p):
    ir = Irrep(*args)
    assert (ir.l, ir.p) == (l, p)
    assert ir.dim == 2 * l + 1
    assert tuple(ir) == (l, p)
    assert ir.is_scalar() == (l == 0)


def test_irrep_str_repr_and_round_trip():
    assert str(Irrep(1, -1)) == "1o"
    assert str(Irrep(2, 1)) == "2e"
    assert str(Irrep(3)) == "3"
    assert repr(Irrep("1e")) == "Irrep('1e')"
    for ir in (Irrep(0, 1), Irrep(5, -1), Irrep(2, 0)):
        assert Irrep(str(ir)) == ir
        assert eval(repr(ir)) == ir  # the repr is the constructor call


def test_irrep_is_an_immutable_hashable_pair():
    ir = Irrep("1o")
    assert ir == Irrep(1, -1) == (1, -1)
    assert ir != Irrep("1e") and ir != Irrep("1")
    assert hash(ir) == hash(Irrep(1, -1))
    assert len({Irrep("1o"), Irrep(1, -1), Irrep((1, -1)), Irrep("1e")}) == 2
    l, p = ir
    assert (l, p) == (1, -1)
    assert sorted([Irrep("2e"), Irrep("0e"), Irrep("1o"), Irrep("0o")]) == [
        Irrep("0o"), Irrep("0e"), Irrep("1o"), Irrep("2e")
    ]  # fmt: skip
    with pytest.raises(AttributeError):
        ir.l = 2
    with pytest.raises(AttributeError):
        ir.mul = 2  # no new attributes (slots)
    assert Irrep(ir) is ir
    assert pickle.loads(pickle.dumps(ir)) == ir
    assert isinstance(pickle.loads(pickle.dumps(ir)), Irrep)
    assert copy.deepcopy(ir) == ir


def test_irrep_arithmetic_makes_an_rs():
    ir = Irrep("1o")
    assert 3 * ir == ir * 3 == Rs("3x1o")
    assert isinstance(3 * ir, Rs)
    assert 0 * ir == Rs("0x1o")
    assert ir + Irrep("0e") == Rs("1x1o + 1x0e")
    assert ir + "2x0e" == Rs("1x1o + 2x0e")
    assert "2x0e" + ir == Rs("2x0e + 1x1o")
    assert Rs("2x0e") + ir == Rs("2x0e + 1x1o")
    with pytest.raises(TypeError, match="an Irrep can be multiplied by an int only"):
        _ = ir * 2.0
    with pytest.raises(ValueError, match="negative"):
        _ = -1 * ir


def test_mul_irrep_ir():
    block = MulIrrep(3, 2, -1)
    assert block.ir == Irrep("2o")
    assert isinstance(block.ir, Irrep)
    assert [block.ir for block in Rs("2x0e + 1x1o")] == [Irrep("0e"), Irrep("1o")]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1,), "non-negative"),
        ((1.0,), "non-negative int"),
        ((True,), "non-negative int"),
        ((1, 2), "parity"),
        ((1, True), "parity"),
        ((1, "o"), "parity"),
        (("1x1o",), "cannot parse irrep '1x1o'"),
        (("1q",), "cannot parse irrep"),
        (("",), "cannot parse irrep"),
        (((1, 1, 1),), "pair"),
        (((1,),), "pair"),
        (("1o", 1), "non-negative int"),
        ((None,), "non-negative int"),
    ],
)
def test_irrep_bad_values(args, match):
    with pytest.raises(ValueError, match=match):
        Irrep(*args)


# -- repetition, membership, count ---------------------------------------------------------
def test_repetition_repeats_the_list():
    rs = Rs("1x0e + 2x1o")
    assert 2 * rs == rs * 2 == rs + rs == Rs("1x0e + 2x1o + 1x0e + 2x1o")
    assert (2 * rs).dim == 2 * rs.dim
    assert (2 * rs).simplify() == Rs("1x0e + 2x1o + 1x0e + 2x1o")  # not 2x0e + 4x1o
    assert 0 * rs == Rs() and 1 * rs == rs
    assert 3 * Rs("2x0e") == Rs("2x0e") * 3 == Rs("2x0e + 2x0e + 2x0e")
    assert (3 * Rs("2x0e")).simplify() == Rs("6x0e")


@pytest.mark.parametrize("times", [2.0, "2", True, None, Rs("1x0e")])
def test_repetition_needs_an_int(times):
    rs = Rs("1x0e")
    with pytest.raises(TypeError, match="an Rs can be multiplied by an int only"):
        _ = rs * times
    with pytest.raises(TypeError):
        _ = times * rs


def test_repetition_refuses_negative_counts():
    with pytest.raises(ValueError, match="negative"):
        _ = -1 * Rs("1x0e")


def test_count():
    rs = Rs("2x0e + 1x1o + 3x0e + 1x0o + 0x2e + 4x1")
    assert rs.count("0e") == 5
    assert rs.count(Irrep(0, 1)) == 5
    assert rs.count((1, -1)) == 1
    assert rs.count("0o") == 1
    assert rs.count("2e") == 0  # present with multiplicity 0
    assert rs.count("1") == 4  # no parity is its own irrep
    assert rs.count("1e") == 0
    assert Rs().count("0e") == 0
    assert sum(rs.count(ir) * ir.dim for ir in {block.ir for block in rs}) == rs.dim
    with pytest.raises(ValueError, match="cannot parse irrep"):
        rs.count("2x0e")


def test_contains():
    rs = Rs("2x0e + 1x1o + 0x2e")
    assert "0e" in rs and Irrep(1, -1) in rs and (1, -1) in rs
    assert "1e" not in rs and "0o" not in rs
    assert "2e" not in rs  # multiplicity 0: no copy present
    assert MulIrrep(2, 0, 1) in rs and MulIrrep(0, 2, 1) in rs
    assert MulIrrep(1, 0, 1) not in rs


# -- filter ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "2x0e + 1x1o + 1x2e + 3x0o + 0x1o + 2x1"),
        ({"keep": "0e + 2e"}, "2x0e + 1x2e"),
        ({"keep": "5x1o"}, "1x1o + 0x1o"),  # the multiplicities of keep do not matter
        ({"keep": ["0e", "1o"]}, "2x0e + 1x1o + 0x1o"),
        ({"keep": Irrep(0, -1)}, "3x0o"),
        ({"keep": [Irrep(1, 0)]}, "2x1"),
        ({"keep": ""}, ""),
        ({"keep": "3e"}, ""),
        ({"l": 0}, "2x0e + 3x0o"),
        ({"l": [0, 2]}, "2x0e + 1x2e + 3x0o"),
        ({"l": range(2)}, "2x0e + 1x1o + 3x0o + 0x1o + 2x1"),
        ({"p": -1}, "1x1o + 3x0o + 0x1o"),
        ({"p": [1, 0]}, "2x0e + 1x2e + 2x1"),
        ({"l": [0, 2], "p": 1}, "2x0e + 1x2e"),
        ({"keep": "0e + 0o + 1o", "l": 0, "p": -1}, "3x0o"),
    ],
)
def test_filter(kwargs, expected):
    rs = Rs("2x0e + 1x1o + 1x2e + 3x0o + 0x1o + 2x1")
    assert rs.filter(**kwargs) == Rs(expected)


def test_filter_keeps_order_and_does_not_merge():
    rs = Rs("1x0e + 1x1o + 2x0e")
    assert rs.filter(l=0) == Rs("1x0e + 2x0e")
    assert rs.filter(l=0).simplify() == Rs("3x0e")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"l": -1}, "-1 is not a valid order l"),
        ({"l": [0, 1.0]}, "1.0 is not a valid order l"),
        ({"l": True}, "True is not a valid order l"),
        ({"p": 2}, "2 is not a valid parity p"),
        ({"p": ["e"]}, "'e' is not a valid parity p"),
        ({"keep": "1x1q"}, "cannot parse Rs term"),
        ({"keep": [(1, -1)]}, r"Rs entry \(1, -1\)"),  # tuples are blocks: use Irrep(1, -1)
    ],
)
def test_filter_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Rs("1x0e + 1x1o").filter(**kwargs)


# -- chunks and from_chunks ------------------------------------------------------------------
CHUNK_RS = Rs("2x0e + 1x1o + 0x3e + 3x2o + 1x0")


@pytest.mark.parametrize("leading", [(), (7,), (2, 3), (0,), (4, 0, 2)])
def test_chunks_shapes_values_and_round_trip(leading):
    x = CHUNK_RS.randn(*leading, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    chunks = CHUNK_RS.chunks(x)
    assert [tuple(c.shape) for c in chunks] == [
        (*leading, mul, 2 * l + 1) for mul, l, _ in CHUNK_RS
    ]
    for chunk, s in zip(chunks, CHUNK_RS.slices()):
        torch.testing.assert_close(chunk.flatten(-2), x[..., s], rtol=0, atol=0)
    back = CHUNK_RS.from_chunks(chunks)
    assert back.shape == x.shape and back.dtype == x.dtype
    torch.testing.assert_close(back, x, rtol=0, atol=0)
    torch.testing.assert_close(CHUNK_RS.from_chunks(chunks, leading), x, rtol=0, atol=0)


def test_chunks_are_multiplicity_major_views():
    rs = Rs("2x1o")
    x = torch.arange(6.0)
    u0, u1 = rs.chunks(x)[0]  # copy u holds the features u * 3 .. u * 3 + 2
    assert u0.tolist() == [0.0, 1.0, 2.0] and u1.tolist() == [3.0, 4.0, 5.0]
    rs.chunks(x)[0][1, 2] = -1.0  # a view: writes through
    assert x[5] == -1.0
    y = torch.randn(6, 4).t()  # not contiguous: still views
    (chunk,) = rs.chunks(y)
    assert chunk.data_ptr() == y.data_ptr()
    torch.testing.assert_close(rs.from_chunks([chunk]), y, rtol=0, atol=0)


def test_from_chunks_is_the_inverse_of_chunks_with_gradients():
    rs = Rs("1x0e + 2x1o + 1x2e")
    blocks = [torch.randn(5, mul, 2 * l + 1, requires_grad=True) for mul, l, _ in rs]
    x = rs.from_chunks(blocks)
    assert x.shape == (5, rs.dim)
    for block, chunk in zip(blocks, rs.chunks(x)):
        torch.testing.assert_close(chunk, block, rtol=0, atol=0)
    weights = torch.randn(rs.dim)
    (x * weights).sum().backward()
    for block, w in zip(blocks, rs.chunks(weights)):
        torch.testing.assert_close(block.grad, w.expand_as(block), rtol=0, atol=0)


def test_from_chunks_of_an_rs_without_blocks():
    rs = Rs()
    assert rs.chunks(torch.randn(3, 0)) == []
    out = rs.from_chunks([], (3, 2), dtype=torch.float64)
    assert out.shape == (3, 2, 0) and out.dtype == torch.float64
    assert rs.from_chunks([], ()).shape == (0,)
    with pytest.raises(ValueError, match="has no blocks: from_chunks needs leading_shape"):
        rs.from_chunks([])


def test_from_chunks_of_empty_blocks():
    rs = Rs("0x1o + 0x0e")
    x = torch.randn(4, 0)
    chunks = rs.chunks(x)
    assert [tuple(c.shape) for c in chunks] == [(4, 0, 3), (4, 0, 1)]
    assert rs.from_chunks(chunks).shape == (4, 0)


@pytest.mark.parametrize(
    "x",
    [torch.randn(4, 13), torch.randn(13, 4), torch.tensor(1.0), [0.0] * 12, None],
)
def test_chunks_refuses_features_of_another_width(x):
    with pytest.raises(ValueError, match=r"Rs '2x0e\+1x1o\+0x3e\+3x2o\+1x0' chunks features"):
        CHUNK_RS.chunks(x)


def test_from_chunks_refuses_bad_chunks():
    rs = Rs("2x0e + 1x1o")
    good = [torch.randn(4, 2, 1), torch.randn(4, 1, 3)]
    with pytest.raises(ValueError, match="has 2 blocks, got 1 chunks"):
        rs.from_chunks(good[:1])
    with pytest.raises(ValueError, match="has 2 blocks, got 3 chunks"):
        rs.from_chunks([*good, good[0]])
    with pytest.raises(ValueError, match=r"chunk 1 of Rs '2x0e\+1x1o' must be \[\.\.\., 1, 3\]"):
        rs.from_chunks([good[0], torch.randn(4, 3)])  # flattened
    with pytest.raises(ValueError, match=r"chunk 0 .* \[\.\.\., 2, 1\] for its block 2x0e"):
        rs.from_chunks([torch.randn(4, 1, 2), good[1]])  # transposed
    with pytest.raises(ValueError, match=r"chunk 0 .* got list"):
        rs.from_chunks([[[0.0], [0.0]], good[1]])
    with pytest.raises(ValueError, match="different leading shapes"):
        rs.from_chunks([good[0], torch.randn(5, 1, 3)])
    with pytest.raises(ValueError, match="different leading shapes"):
        rs.from_chunks(good, (5,))  # the chunks' own leading shape is (4,)


def test_chunks_trace_without_graph_breaks():
    rs = Rs("2x0e + 1x1o + 0x2e")

    def double(x):
        return rs.from_chunks([2 * c for c in rs.chunks(x)])

    explanation = torch._dynamo.explain(double)(torch.randn(3, rs.dim))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


# -- randn -----------------------------------------------------------------------------------
def test_randn_shape_dtype_and_reproducibility():
    rs = Rs("4x0e + 2x1o + 1x2e")
    assert rs.randn().shape == (15,)
    assert rs.randn(3, 2).shape == (3, 2, 15)
    assert rs.randn((3, 2)).shape == rs.randn(torch.Size([3, 2])).shape == (3, 2, 15)
    assert rs.randn(0).shape == (0, 15)
    assert rs.randn(2, dtype=torch.float64).dtype == torch.float64
    assert rs.randn(2).dtype == torch.get_default_dtype()
    assert rs.randn(2, device="cpu").device.type == "cpu"
    a = rs.randn(5, generator=torch.Generator().manual_seed(3))
    b = rs.randn(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert Rs().randn(4).shape == (4, 0)
    big = rs.randn(4000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert abs(big.mean().item()) < 0.02 and abs(big.std().item() - 1) < 0.02


@pytest.mark.parametrize("leading", [(-1,), (2.0,), (True,), ("3",), ((2, -1),)])
def test_randn_bad_leading_shape(leading):
    with pytest.raises(ValueError, match="leading shape must be non-negative ints"):
        Rs("1x0e").randn(*leading)


# -- representation --------------------------------------------------------------------------
def _group_elements(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    R1, R2 = rand_rotation(2, dtype=torch.float64, generator=generator)
    return [R1, -R2, R1 @ torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))]


def test_representation_is_an_orthogonal_homomorphism():
    rs = Rs("2x0e + 1x0o + 2x1o + 1x1e + 1x2e + 0x3o + 1x3o")
    elements = _group_elements(seed=1)
    for A in elements:
        D = rs.representation(A)
        assert D.shape == (rs.dim, rs.dim)
        torch.testing.assert_close(D @ D.T, torch.eye(rs.dim, dtype=D.dtype), rtol=0, atol=1e-10)
        for B in elements:
            torch.testing.assert_close(
                rs.representation(A @ B),
                D @ rs.representation(B),
                rtol=0,
                atol=1e-10,
            )


def test_representation_matches_rs_representation_and_the_irreps():
    rs = Rs("2x0e + 1x1o + 1x2o + 1x1e")
    for R in _group_elements(seed=2):
        D = rs.representation(R)
        torch.testing.assert_close(D, rs_representation(rs, R), rtol=0, atol=0)
        torch.testing.assert_close(D, rs_representation(str(rs), R), rtol=0, atol=0)
        blocks = [block.ir.representation(R) for block in rs for _ in range(block.mul)]
        torch.testing.assert_close(D, torch.block_diag(*blocks), rtol=0, atol=0)
    R = _group_elements(seed=2)[0]
    torch.testing.assert_close(Irrep("1o").representation(R), R, rtol=0, atol=1e-12)
    torch.testing.assert_close(Irrep("2e").representation(R), wigner_D(2, R), rtol=0, atol=0)
    torch.testing.assert_close(Irrep("2o").representation(-R), -wigner_D(2, R), rtol=0, atol=0)


def test_representation_transforms_chunks_blockwise():
    # acting with the matrix on features acts with each irrep's matrix on every copy
    rs = Rs("2x1o + 3x2e")
    R = _group_elements(seed=3)[1]
    x = rs.randn(4, dtype=torch.float64)
    y = x @ rs.representation(R).T
    for (_, l, p), x_c, y_c in zip(rs, rs.chunks(x), rs.chunks(y)):
        torch.testing.assert_close(y_c, x_c @ Irrep(l, p).representation(R).T, rtol=0, atol=1e-12)


def test_representation_batch_and_errors():
    rs = Rs("1x0o + 1x1e")
    R = torch.stack(_group_elements(seed=4))
    D = rs.representation(R)
    assert D.shape == (3, 4, 4)
    for i in range(3):
        torch.testing.assert_close(D[i], rs.representation(R[i]))
    with pytest.raises(ValueError, match="p = 0"):
        Rs("1x1").representation(-torch.eye(3))
    with pytest.raises(ValueError, match="orthogonal"):
        rs.representation(2 * torch.eye(3))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        rs.representation(torch.eye(2))
    assert Rs().representation(torch.eye(3)).shape == (0, 0)


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        [(-1, 0)],  # negative mul
        [(1, -1)],  # negative l
        [(1.5, 0)],  # non-integer mul
        [(1, 1.0)],  # non-integer l (even if integral)
        [("2", 0)],
        [(True, 0)],  # bool is not an int here
        [(1, False)],
        [(1, 1, True)],
        [(1, 1, 2)],  # parity outside {-1, 0, 1}
        [(1, 1, -2)],
        [(1, 1, 0.5)],
        [(1, 1, "o")],
        [(1,)],  # wrong tuple length
        [(1, 1, 1, 1)],
        [MulIrrep(-1, 0, 1)],  # a block built by hand is checked too
        [MulIrrep(1, 0, 2)],
        [-1],  # a bare order must be a non-negative int
        [True],
        [1.5],
        [None],
        [(1, (1,))],  # the nested irrep must be a pair (l, p)
        [(1, (1, 1, 1))],
        [(1, MulIrrep(1, 1, 1))],
        [(1, (1, 2))],  # parity outside {-1, 0, 1}
        [(1, (-1, 1))],
        [(1.0, (1, 1))],
        [(-2, "1e")],
        [(1, "1x1o")],  # (mul, irrep): the irrep has no multiplicity
        [(1, "1q")],
        ["1x1o + 2x0e"],  # a string entry is one term
        ["1q"],
        [""],
        [{"l": 1}],
        3,  # not a spec at all: Rs(3) would read as three scalars or as one l = 3
        (2, 0),  # ambiguous: one block (2, 0) or the orders 2 and 0
        (1, 1, -1),
        None,
        2.5,
        b"ab",
        torch.tensor([1, 2]),
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
    with pytest.raises(ValueError, match=r"Rs entry \(2, \(1, 5\)\): parity .* got 5"):
        Rs([(1, 0), (2, (1, 5))])
    with pytest.raises(ValueError, match=r"Rs entry -4: order l .* got -4"):
        Rs([0, 1, -4])
    with pytest.raises(ValueError, match=r"Rs entry \(1, '1x1o'\): cannot parse irrep '1x1o'"):
        Rs([(1, "1x1o")])
    with pytest.raises(ValueError, match=r"Rs entry '1x0e\+1x1o': a string inside a list"):
        Rs(["1x0e+1x1o"])
    with pytest.raises(ValueError, match=r"Rs entry \{'l': 1\} is none of"):
        Rs([{"l": 1}])
    with pytest.raises(ValueError, match=r"ambiguous: write \[\(2, 0\)\] .* \[2, 0\]"):
        Rs((2, 0))


# -- every spelling of one representation: exact, or refused ---------------------------------
CANONICAL = Rs([MulIrrep(16, 0, 1), MulIrrep(8, 1, -1)])  # 16x0e + 8x1o


@pytest.mark.parametrize(
    "spec",
    [
        "16x0e+8x1o",
        " 16x0e + 8x1o ",
        "16 x 0e+8 x 1 o",
        "16x0e\n+\t8x1o",
        "016x0e+8x01o",
        [(16, 0, 1), (8, 1, -1)],
        [[16, 0, 1], [8, 1, -1]],
        ((16, 0, 1), (8, 1, -1)),
        [(16, "0e"), (8, "1o")],
        [(16, (0, 1)), (8, (1, -1))],
        [(16, [0, 1]), (8, [1, -1])],
        [(16, Irrep("0e")), (8, Irrep(1, -1))],
        ["16x0e", "8x1o"],
        [(np.int64(16), np.int32(0), np.int8(1)), (np.uint8(8), 1, -1)],
        [(16, (np.int64(0), np.int64(1))), (8, "1o")],
        iter([(16, 0, 1), (8, 1, -1)]),
        Rs("16x0e") + "8x1o",
        16 * Irrep("0e") + 8 * Irrep("1o"),
        np.int64(16) * Irrep("0e") + np.int64(8) * Irrep("1o"),
        Irrep("0e") * np.int16(16) + Irrep("1o") * 8,
    ],
)
def test_every_spelling_of_one_rs_is_exact(spec):
    rs = Rs(spec)
    assert rs == CANONICAL and str(rs) == "16x0e+8x1o"
    # Python ints inside, whatever the spelling: equal blocks hash and print alike
    assert all(type(v) is int for block in rs for v in block)
    assert hash(rs) == hash(CANONICAL)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0e", [(1, 0, 1)]),
        ("1x0", [(1, 0, 0)]),
        ("2", [(1, 2, 0)]),
        ("0x0e", [(0, 0, 1)]),
        ([(16, 0)], [(16, 0, 0)]),
        ([[16, 0]], [(16, 0, 0)]),
        ([(16, 0, 1)], [(16, 0, 1)]),
        ([np.int64(2), 0], [(1, 2, 0), (1, 0, 0)]),  # the bare-order shorthand
        ([Irrep("1o")], [(1, 1, -1)]),
        (Irrep("1o"), [(1, 1, -1)]),
        ("", []),
        ("  ", []),
        ([], []),
    ],
)
def test_short_spellings_are_exact(spec, expected):
    assert list(Rs(spec)) == [MulIrrep(*block) for block in expected]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"0e": 16}, "from the dict"),  # keys or values as multiplicities: ambiguous
        ({16: 0}, "from the dict"),
        ({(16, 0)}, "from the set"),  # a set has no order: no layout
        (frozenset({(16, 0, 1), (8, 1, -1)}), "from the frozenset"),
        ((16, 0), "ambiguous"),
        ((np.int64(16), np.int64(0)), "ambiguous"),
        ("16x0E", "cannot parse Rs term"),
        ("16X0e", "cannot parse Rs term"),
        ("16x-1e", "cannot parse Rs term"),
        ("16x0p", "cannot parse Rs term"),
        ("1.5x0e", "cannot parse Rs term"),
        ("1e1x0e", "cannot parse Rs term"),
        ("16x0e+", "cannot parse Rs term '' in"),
        ("16x0e + 8x1o + ", "cannot parse Rs term '' in"),
        ("x0e", "cannot parse Rs term"),
        ("16x", "cannot parse Rs term"),
        ("16*0e", "cannot parse Rs term"),
        ("16 0e", "cannot parse Rs term"),
        ("2x1x0e", "cannot parse Rs term"),
        ("\u0661\u0666x0e", "cannot parse Rs term"),  # Arabic-Indic digits: ASCII only
        ("16x0\uff45", "cannot parse Rs term"),  # a full-width e
        ([(True, 0)], "multiplicity must be a non-negative int, got True"),
        ([(np.bool_(True), 0)], "multiplicity must be a non-negative int"),
        ([(16, True)], "order l must be a non-negative int, got True"),
        ([(16, 0, True)], "parity must be one of -1, 0, 1, got True"),
        ([(16, 0, False)], "parity must be one of -1, 0, 1, got False"),
        ([(16, (0, True))], "parity must be one of -1, 0, 1, got True"),
        ([(16.0, 0)], "multiplicity must be a non-negative int, got 16.0"),
        ([(np.float64(16), 0)], "multiplicity must be a non-negative int"),
        ([("16", 0)], "multiplicity must be a non-negative int, got '16'"),
        ([(torch.tensor(16), 0)], "multiplicity must be a non-negative int"),
        ([(16, 0, 1.0)], "parity must be one of -1, 0, 1, got 1.0"),
        ([(16, "0e", 1)], "order l must be a non-negative int"),
        ([(16, "1x0e")], "cannot parse irrep '1x0e'"),
        ([(16,)], "is none of"),
        ([(16, 0, 1, 0)], "is none of"),
        (["16x0e+8x1o"], "a string inside a list is one term"),
        (np.array([[16, 0]]), "is none of"),
        ([{"0e": 16}], "is none of"),
    ],
)
def test_wrong_spellings_are_refused(spec, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        Rs(spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1o", (1, -1)),
        (" 1o ", (1, -1)),
        ("01o", (1, -1)),
        ("1", (1, 0)),
        ((1, -1), (1, -1)),
        ([1, -1], (1, -1)),
        ((np.int64(1), np.int64(-1)), (1, -1)),
        (Irrep(1, -1), (1, -1)),
    ],
)
def test_irrep_spellings_are_exact(spec, expected):
    ir = Irrep(spec)
    assert ir == expected and all(type(v) is int for v in ir)


@pytest.mark.parametrize(
    "spec",
    [
        "1O",
        "-1e",
        "1p",
        "1.0e",
        "1x1e",
        "x1e",
        "",
        "\u0661e",
        (1,),
        (1, 2),
        (True, 1),
        (1, True),
        (1.0, 1),
        [1, 1, 1],
    ],
)
def test_wrong_irrep_spellings_are_refused(spec):
    with pytest.raises(ValueError, match=r"[Ii]rrep"):
        Irrep(spec)


@pytest.mark.parametrize("times", [np.int64(3), np.int32(3), 3])
def test_numpy_integers_repeat_not_broadcast(times):
    # numpy would otherwise take the tuple for an array: np.int64(3) * Irrep("1o") -> [3, -3]
    assert times * Irrep("1o") == Rs("3x1o") == Irrep("1o") * times
    assert times * Rs("0e") == Rs("0e+0e+0e") == Rs("0e") * times
    with pytest.raises(TypeError, match="multiplied by an int only"):
        Irrep("1o") * np.float64(3)

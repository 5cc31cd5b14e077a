"""Tests of e3nn_pyg.o3.coupling: the symmetric couplings (generalized Clebsch-Gordan)."""

import itertools
import math

import pytest
import torch

from e3nn_pyg.o3 import (
    Irrep,
    Rs,
    expand_monomials,
    monomial_table,
    parity_matrix,
    rand_rotation,
    rs_representation,
    symmetric_coupling,
)

LMAX3 = ["0e", "1o", "2e", "3o"]


def _character(l: int, angle: torch.Tensor) -> torch.Tensor:
    return sum(torch.cos(m * angle) for m in range(-l, l + 1))


def _expected_count(irreps: list[str], nu: int, out: str) -> float:
    r"""The multiplicity of ``out`` in :math:`\mathrm{Sym}^\nu(V)` by characters: the cycle
    index of :math:`S_\nu` in the power sums :math:`\chi(g^k)`, averaged over :math:`O(3)`
    (Weyl's measure on the rotation angle, an exact midpoint rule) over :math:`O(3)`, or
    over :math:`SO(3)` for irreps without parity."""
    irreps, out = [Irrep(ir) for ir in irreps], Irrep(out)
    signs = (1,) if out.p == 0 else (1, -1)
    n = 512
    angle = (torch.arange(n, dtype=torch.float64) + 0.5) * math.pi / n
    measure = (1 - torch.cos(angle)) / n
    total = 0.0
    for sign in signs:  # g = sign * R(angle): g^k = sign^k R(k angle)
        power = [sum((ir.p if sign**k < 0 else 1) * _character(ir.l, k * angle) for ir in irreps)
                 for k in range(nu + 1)]  # fmt: skip
        cycle_index = 0.0
        for permutation in itertools.permutations(range(nu)):
            term, seen = 1.0, set()
            for start in range(nu):
                length, position = 0, start
                while position not in seen:
                    seen.add(position)
                    position, length = permutation[position], length + 1
                term = term * power[length] if length else term
            cycle_index = cycle_index + term
        out_character = (out.p if sign < 0 else 1) * _character(out.l, angle)
        total += float((measure * cycle_index * out_character).sum()) / math.factorial(nu)
    return total / len(signs)


def _act(full: torch.Tensor, D_in: torch.Tensor, D_out: torch.Tensor) -> torch.Tensor:
    """The group element acting on every slot of ``full`` ``[n_eta, D, ..., D, M]``."""
    nu = full.dim() - 2
    for slot in range(1, nu + 1):
        full = torch.movedim(torch.tensordot(D_in, full, dims=([1], [slot])), 0, slot)
    return full @ D_out.T


def test_hand_counts_of_a_vector_squared():
    # x (x) x = 0 + 1 + 2; the l = 1 part is the cross product, antisymmetric
    counts = [symmetric_coupling(["1o"], 2, f"{L}e").num_couplings for L in range(4)]
    assert counts == [1, 0, 1, 0]
    # odd parity products of two vectors do not exist
    assert symmetric_coupling(["1o"], 2, "0o").num_couplings == 0
    # |x|^2 x and the l = 3 part; the triple product is antisymmetric
    counts = [symmetric_coupling(["1o"], 3, f"{L}o").num_couplings for L in range(4)]
    assert counts == [0, 1, 0, 1]


@pytest.mark.parametrize("nu", [1, 2, 3])
@pytest.mark.parametrize("out", ["0e", "1o", "2e", "3o", "0o", "1e"])
def test_counts_equal_the_character_formula(nu, out):
    expected = _expected_count(LMAX3, nu, out)
    assert abs(expected - round(expected)) < 1e-9
    assert symmetric_coupling(LMAX3, nu, out).num_couplings == round(expected)


def test_counts_without_parity_and_of_order_four():
    assert symmetric_coupling(["0", "1", "2"], 2, "1").num_couplings == round(
        _expected_count(["0", "1", "2"], 2, "1")
    )
    assert symmetric_coupling(["0e", "1o"], 4, "0e").num_couplings == round(
        _expected_count(["0e", "1o"], 4, "0e")
    )


@pytest.mark.parametrize(
    ("irreps", "nu", "out"),
    [(LMAX3, 3, "0e"), (LMAX3, 3, "1o"), (LMAX3, 2, "2e"), (["0e", "1o"], 4, "1o")],
)
def test_couplings_are_equivariant_orthonormal_and_symmetric(irreps, nu, out):
    coupling = symmetric_coupling(irreps, nu, out)
    dim = Rs(irreps).dim
    full = expand_monomials(coupling.coefficients, coupling.monomials, dim)  # [n_eta, D.., M]
    assert coupling.num_couplings > 0
    generator = torch.Generator().manual_seed(0)
    R = rand_rotation(dtype=torch.float64, generator=generator)
    for g in (R, R @ parity_matrix(torch.float64)):
        moved = _act(full, rs_representation(irreps, g), rs_representation(out, g))
        assert (moved - full).abs().max() < 1e-12
    flat = full.reshape(coupling.num_couplings, -1)
    gram = flat @ flat.T
    assert torch.allclose(gram, torch.eye(len(gram), dtype=torch.float64), atol=1e-12)
    for permutation in itertools.permutations(range(1, nu + 1)):
        assert torch.equal(full.permute(0, *permutation, nu + 1), full)


def test_monomial_form_equals_the_full_contraction():
    coupling = symmetric_coupling(["0e", "1o", "2e"], 3, "1o")
    A = torch.randn(9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full = expand_monomials(coupling.coefficients, coupling.monomials, 9)
    direct = torch.einsum("eabcM,a,b,c->eM", full, A, A, A)
    products = A[coupling.monomials].prod(dim=1)  # [n_mono]
    assert torch.allclose(torch.einsum("emM,m->eM", coupling.coefficients, products), direct)


def test_monomial_table_counts_and_order():
    table = monomial_table(16, 3)
    assert table.shape == (math.comb(18, 3), 3)
    assert (table[:, :-1] <= table[:, 1:]).all()
    rows = list(map(tuple, table.tolist()))
    assert sorted(rows, key=lambda row: row[::-1]) == rows and len(set(rows)) == len(rows)


def test_cached_results_are_copies():
    first = symmetric_coupling(["1o"], 2, "0e")
    first.coefficients.zero_()
    first.monomials.zero_()
    again = symmetric_coupling(["1o"], 2, "0e")
    assert again.coefficients.abs().sum() > 0 and again.monomials.max() == 2


def test_no_coupling_gives_an_empty_basis():
    coupling = symmetric_coupling(["0e"], 2, "1o")
    assert coupling.coefficients.shape == (0, 1, 3) and coupling.num_couplings == 0


@pytest.mark.parametrize(
    ("irreps", "nu", "out", "error", "match"),
    [
        (["1o", "1o"], 2, "0e", ValueError, "distinct"),
        (["1o", "1"], 2, "0e", ValueError, "all have a parity"),
        (["1o"], 2, "0", ValueError, "all have a parity"),
        ([], 2, "0e", ValueError, "at least one irrep"),
        ("1o", 2, "0e", TypeError, "sequence of irreps"),
        (["1o"], 0, "0e", ValueError, "nu must be an int >= 1"),
        (["1o"], 2.0, "0e", TypeError, "nu must be an int"),
        (["1x"], 2, "0e", ValueError, "1x"),
    ],
)
def test_bad_input_is_refused(irreps, nu, out, error, match):
    with pytest.raises(error, match=match):
        symmetric_coupling(irreps, nu, out)

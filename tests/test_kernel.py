"""Kernel: path counts, the formula of docs/conventions.md (checked by a naive loop), normalization,
variance preservation, equivariance, input validation."""

import math
from functools import partial

import pytest
import torch
from torch import nn

from e3nn_pyg import radial
from e3nn_pyg.kernel import Kernel, edge_lengths
from e3nn_pyg.non_linearities import rescaled_act
from e3nn_pyg.o3 import (
    Rs,
    rand_rotation,
    rs_representation,
    spherical_harmonics,
    spherical_harmonics_xyz_backwardable,
    wigner_3j,
)
from e3nn_pyg.radial import CosineBasisModel
from e3nn_pyg.tensor_product.paths import selection_rule
from e3nn_pyg.testing import assert_equivariant, equivariance_error

ENGINES = ["reference", "fused"]
TUTORIAL_RADIAL = partial(
    CosineBasisModel,
    max_radius=3.0,
    number_of_basis=3,
    h=100,
    L=2,
    act=rescaled_act.Softplus(beta=5),
)


pytestmark = pytest.mark.usefixtures("float64")


class PolynomialRadial(nn.Module):
    """A known radial model: ``R_c(r) = sum_k coeffs[c, k] r^k``."""

    def __init__(self, out_dim: int, degree: int = 2, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.coeffs = nn.Parameter(torch.randn(out_dim, degree + 1, generator=generator))

    def forward(self, r):
        powers = torch.stack([r**k for k in range(self.coeffs.shape[1])], dim=-1)  # [E, k]
        return powers @ self.coeffs.T  # [E, out_dim]


class GaussianWeights(nn.Module):
    """Radial weights drawn from N(0, 1) for every edge (a seeded, r-independent model)."""

    def __init__(self, out_dim: int, seed: int = 0) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, r):
        return torch.randn(r.shape[0], self.out_dim, generator=self.generator, dtype=r.dtype)


def _vectors(num, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(num, 3, generator=generator)).to(dtype)


def naive_kernel(rs_in, rs_out, weights, edge_vec, normalization="component"):
    """docs/conventions.md's kernel formula, one scalar term at a time.

    Loops over output block, input block, (u, v, f, m_i, m_f, m_o); the paths, their
    weight offsets and N_o are worked out here, independently of the plan.
    """
    rs_in, rs_out = Rs(rs_in), Rs(rs_out)
    num_edges = edge_vec.shape[0]
    out = torch.zeros(num_edges, rs_out.dim, rs_in.dim)
    offset = 0
    for (mul_o, l_o, p_o), rows in zip(rs_out, rs_out.slices()):
        filters = [
            [
                l_f
                for l_f in range(abs(l_i - l_o), l_i + l_o + 1)
                if p_o == 0 or p_i * (-1) ** l_f == p_o
            ]
            for _, l_i, p_i in rs_in
        ]
        n_o = sum(mul_i * len(fs) for (mul_i, _, _), fs in zip(rs_in, filters))
        for (mul_i, l_i, _), cols, fs in zip(rs_in, rs_in.slices(), filters):
            for u in range(mul_o):
                for v in range(mul_i):
                    for f, l_f in enumerate(fs):
                        w = weights[:, offset + (u * mul_i + v) * len(fs) + f]  # [E]
                        y = spherical_harmonics([l_f], edge_vec, normalization=normalization)
                        cg = wigner_3j(l_i, l_f, l_o)
                        if normalization == "component":
                            c = math.sqrt((2 * l_o + 1) / n_o)
                        else:
                            c = math.sqrt((2 * l_i + 1) * (2 * l_f + 1) / n_o)
                        for m_i in range(2 * l_i + 1):
                            for m_f in range(2 * l_f + 1):
                                for m_o in range(2 * l_o + 1):
                                    row = rows.start + u * (2 * l_o + 1) + m_o
                                    col = cols.start + v * (2 * l_i + 1) + m_i
                                    out[:, row, col] += c * w * cg[m_i, m_f, m_o] * y[:, m_f]
            offset += mul_o * mul_i * len(fs)
    assert offset == weights.shape[1]
    return out


# -- path counts and shapes ----------------------------------------------------------------
def test_tutorial_kernel_numbers():
    torch.manual_seed(0)
    kernel = Kernel([(2, 0)], [(4, 0), (4, 1), (4, 2)], RadialModel=TUTORIAL_RADIAL, sh=None)
    assert kernel.n_path == 24
    assert kernel.R.out_dim == 24
    assert kernel.max_radius == 3.0
    assert kernel(_vectors(7)).shape == (7, 36, 2)
    assert kernel(_vectors(0)).shape == (0, 36, 2)


@pytest.mark.parametrize(
    ("rs_in", "rs_out", "n_path"),
    [
        ("1x1o", "1x1o", 2),  # l_f in {0, 2}
        ("1x1o", "1x1e", 1),  # l_f = 1
        ("1x1", "1x1", 3),  # no parity: l_f in {0, 1, 2}
        ("2x0e + 1x1o", "3x0e + 2x1o", 2 * 3 * 1 + 1 * 3 * 1 + 2 * 2 * 1 + 1 * 2 * 2),
    ],
)
def test_parity_rule_path_counts(rs_in, rs_out, n_path):
    assert Kernel(rs_in, rs_out, PolynomialRadial).n_path == n_path


@pytest.mark.parametrize("rs", ["1x0e + 1x1o + 1x2e", "1x0o + 1x1e + 1x2o"])
def test_parity_of_the_kernel(rs):
    """K(-r) = D_out(-I) K(r) D_in(-I)^T: fails if a filter of the wrong parity is kept."""
    kernel = Kernel(rs, rs, PolynomialRadial)
    edge_vec = _vectors(5)
    minus = -torch.eye(3)
    expected = rs_representation(rs, minus) @ kernel(edge_vec) @ rs_representation(rs, minus).T
    assert (kernel(-edge_vec) - expected).abs().max() < 1e-12


# -- the formula ---------------------------------------------------------------------------
@pytest.mark.parametrize("normalization", ["component", "norm"])
@pytest.mark.parametrize(
    ("rs_in", "rs_out"),
    [
        ("2x0e + 1x1o + 1x2e", "1x0e + 2x1o + 1x2e + 1x1e"),
        ([(2, 0)], [(1, 0), (2, 1), (1, 2)]),
        ("1x1 + 1x0", "2x2 + 1x1"),
    ],
)
def test_kernel_matches_naive_formula(rs_in, rs_out, normalization):
    kernel = Kernel(rs_in, rs_out, PolynomialRadial, normalization=normalization)
    edge_vec = _vectors(3)
    weights = kernel.R(edge_vec.norm(dim=1))  # [E, n_path]
    expected = naive_kernel(rs_in, rs_out, weights, edge_vec, normalization)
    assert (kernel(edge_vec) - expected).abs().max() < 1e-12


def test_custom_sh_is_used():
    calls = []

    def sh(ls, vectors):
        calls.append(list(ls))
        return spherical_harmonics_xyz_backwardable(ls, vectors)

    kernel = Kernel("2x0", "1x0 + 1x1 + 1x2", PolynomialRadial, sh=sh)
    reference = Kernel("2x0", "1x0 + 1x1 + 1x2", PolynomialRadial)
    edge_vec = _vectors(4)
    assert (kernel(edge_vec) - reference(edge_vec)).abs().max() < 1e-14
    assert calls == [[0, 1, 2]]


def test_selection_rule_lmax():
    rule = partial(selection_rule, lmax=0)
    kernel = Kernel("1x1o", "1x1o", PolynomialRadial, selection_rule=rule)
    assert kernel.n_path == 1
    edge_vec = _vectors(4)
    # only l_f = 0 is left: K(r) = sqrt(3 / 1) R(|r|) C^(1,0,1), an isotropic kernel
    radial = kernel.R(edge_vec.norm(dim=1))  # [E, 1]
    expected = math.sqrt(3) * radial[:, :, None] * wigner_3j(1, 0, 1)[:, 0, :]  # [E, 3, 3]
    assert (kernel(edge_vec) - expected).abs().max() < 1e-12
    assert (expected[0] - expected[0, 0, 0] * torch.eye(3)).abs().max() < 1e-12


@pytest.mark.parametrize("normalization", ["component", "norm"])
@pytest.mark.parametrize(
    ("rs_in", "rs_out"),
    [("2x0e + 2x1o + 1x2e", "3x0e + 1x1o + 2x2e + 1x1e"), ("1x0 + 2x1", "2x0 + 1x1 + 1x2")],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_apply_equals_kernel_matrix_times_x(rs_in, rs_out, normalization, engine):
    kernel = Kernel(rs_in, rs_out, PolynomialRadial, normalization=normalization, engine=engine)
    edge_vec = _vectors(11)
    x = torch.randn(11, Rs(rs_in).dim)
    expected = (kernel(edge_vec) @ x.unsqueeze(-1)).squeeze(-1)
    assert (kernel.apply(edge_vec, x) - expected).abs().max() < 1e-12


# -- variance preservation -----------------------------------------------------------------
RS_VARIANCE_IN = "3x0e + 2x1o + 2x2e"
RS_VARIANCE_OUT = "2x0e + 2x1o + 2x2e + 1x1e"


@pytest.mark.parametrize("engine", ENGINES)
def test_variance_preserved_component(engine):
    """Unit-variance components in, unit mean squared component out, for every irrep."""
    num_edges = 20_000
    generator = torch.Generator().manual_seed(1)
    kernel = Kernel(RS_VARIANCE_IN, RS_VARIANCE_OUT, GaussianWeights, engine=engine)
    edge_vec = torch.randn(num_edges, 3, generator=generator)
    x = torch.randn(num_edges, Rs(RS_VARIANCE_IN).dim, generator=generator)
    out = kernel.apply(edge_vec, x)
    for block, s in zip(kernel.Rs_out, kernel.Rs_out.slices()):
        second_moment = out[:, s].pow(2).mean().item()
        assert second_moment == pytest.approx(1.0, rel=0.1), f"block {block}"


@pytest.mark.parametrize("engine", ENGINES)
def test_variance_preserved_norm(engine):
    """Irreps of unit mean squared norm in, the same out ('norm' normalization)."""
    num_edges = 20_000
    generator = torch.Generator().manual_seed(2)
    rs_in = Rs(RS_VARIANCE_IN)
    kernel = Kernel(rs_in, RS_VARIANCE_OUT, GaussianWeights, normalization="norm", engine=engine)
    edge_vec = torch.randn(num_edges, 3, generator=generator)
    x = torch.cat(
        [
            torch.randn(num_edges, b.dim, generator=generator) / math.sqrt(2 * b.l + 1)
            for b in rs_in
        ],
        dim=1,
    )
    out = kernel.apply(edge_vec, x)
    for (mul, l, _), s in zip(kernel.Rs_out, kernel.Rs_out.slices()):
        norms = out[:, s].reshape(num_edges, mul, 2 * l + 1).pow(2).sum(-1)  # [E, mul]
        assert norms.mean().item() == pytest.approx(1.0, rel=0.1), f"block {mul}x{l}"


# -- equivariance --------------------------------------------------------------------------
def _kernel_error(kernel, edge_vec, matrix):
    """max |K(R r) - D_out(R) K(r) D_in(R)^T|, the representations in float64."""
    d_out = rs_representation(kernel.Rs_out, matrix.double()).to(edge_vec.dtype)
    d_in = rs_representation(kernel.Rs_in, matrix.double()).to(edge_vec.dtype)
    moved = kernel(edge_vec @ matrix.to(edge_vec.dtype).T)
    return (moved - d_out @ kernel(edge_vec) @ d_in.T).abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_matrices_equivariant(dtype):
    torch.manual_seed(0)
    rs_in, rs_out = "2x0e + 1x1o + 1x2e", "2x0e + 2x1o + 1x2e + 1x1e"
    kernel = Kernel(rs_in, rs_out, TUTORIAL_RADIAL).to(dtype)
    edge_vec = _vectors(20, dtype=dtype)
    scale = kernel(edge_vec).abs().max().item()
    tol = 1e-9 if dtype == torch.float64 else 1e-4 * max(1.0, scale)
    rotation = rand_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert _kernel_error(kernel, edge_vec, rotation) < tol
    assert _kernel_error(kernel, edge_vec, -torch.eye(3)) < tol
    assert _kernel_error(kernel, edge_vec, -rotation) < tol


def test_tutorial_kernel_rotation_equivariant():
    """The tutorial's Rs have no parity: rotations only."""
    torch.manual_seed(0)
    kernel = Kernel([(2, 0)], [(4, 0), (4, 1), (4, 2)], TUTORIAL_RADIAL)
    rotation = rand_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert _kernel_error(kernel, _vectors(20), rotation) < 1e-9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("engine", ENGINES)
def test_apply_equivariant(dtype, engine):
    torch.manual_seed(0)
    rs_in, rs_out = "2x0e + 1x1o + 1x2e", "2x0e + 2x1o + 1x2e + 1x1e"
    kernel = Kernel(rs_in, rs_out, TUTORIAL_RADIAL, engine=engine).to(dtype)
    args = [_vectors(20, dtype=dtype), torch.randn(20, Rs(rs_in).dim, dtype=dtype)]
    errors = assert_equivariant(kernel.apply, args, ["1x1o", rs_in], [rs_out])
    assert set(errors) == {"rotation", "parity", "translation"}


def test_equivariance_check_can_fail():
    """A kernel whose weights skip the Clebsch-Gordan coupling is caught."""
    torch.manual_seed(0)
    kernel = Kernel("1x1o", "1x1o", TUTORIAL_RADIAL)
    args = [_vectors(20), torch.randn(20, 3)]
    errors = equivariance_error(
        lambda v, x: kernel.apply(v, x) + v[:, :1] * x[:, :1], args, ["1x1o", "1x1o"], ["1x1o"]
    )
    assert errors["rotation"] > 1e-3


# -- edge lengths, parameters, repr, validation --------------------------------------------
def test_edge_lengths_zero_vector_has_finite_gradient():
    edge_vec = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]], requires_grad=True)
    lengths = edge_lengths(edge_vec)
    lengths.sum().backward()
    assert lengths.tolist() == [0.0, 5.0]
    assert torch.isfinite(edge_vec.grad).all()
    assert edge_vec.grad[0].abs().max() == 0


def test_zero_length_edges_give_finite_kernel_and_gradients():
    torch.manual_seed(0)
    kernel = Kernel("1x0e + 1x1o", "1x0e + 1x1o + 1x2e", TUTORIAL_RADIAL)
    edge_vec = torch.zeros(2, 3, requires_grad=True)
    k = kernel(edge_vec)
    k.pow(2).sum().backward()
    assert torch.isfinite(k).all()
    assert torch.isfinite(edge_vec.grad).all()


def test_reset_parameters_and_repr():
    torch.manual_seed(0)
    kernel = Kernel([(2, 0)], [(4, 0), (4, 1), (4, 2)], TUTORIAL_RADIAL)
    before = [p.detach().clone() for p in kernel.parameters()]
    kernel.reset_parameters()
    after = list(kernel.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    text = repr(kernel)
    for piece in ("Rs_in=2x0", "Rs_out=4x0+4x1+4x2", "n_path=24", "normalization='component'"):
        assert piece in text


def test_kernel_rejects_bad_edge_vectors():
    kernel = Kernel("2x0", "1x0", PolynomialRadial)
    with pytest.raises(ValueError, match=r"\[num_edges, 3\]"):
        kernel(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"\[num_edges, 3\]"):
        kernel(torch.randn(5))
    with pytest.raises(TypeError, match="float32"):
        kernel(torch.randn(5, 3, dtype=torch.float32))
    for bad in (math.nan, math.inf):
        edge_vec = torch.randn(5, 3)
        edge_vec[3, 1] = bad
        with pytest.raises(ValueError, match="edge vectors hold NaN or infinite values"):
            kernel(edge_vec)
        with pytest.raises(ValueError, match="edge vectors hold NaN or infinite values"):
            kernel.apply(edge_vec, torch.randn(5, 2))


def test_apply_rejects_bad_features():
    kernel = Kernel("2x0 + 1x1", "1x0", PolynomialRadial)
    with pytest.raises(ValueError, match=r"2x0\+1x1"):
        kernel.apply(_vectors(4), torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"2x0\+1x1"):
        kernel.apply(_vectors(4), torch.randn(4))


def test_kernel_rejects_impossible_representations():
    with pytest.raises(ValueError, match="no path produces output irrep 1x1e"):
        Kernel("1x0e", "1x1e", PolynomialRadial)
    with pytest.raises(ValueError, match="reach no output"):
        Kernel("1x0e + 1x1e", "1x0e", PolynomialRadial)
    with pytest.raises(ValueError, match="normalization"):
        Kernel("1x0", "1x0", PolynomialRadial, normalization="integral")


class _WrongWidth(nn.Module):
    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(1, out_dim + 1)

    def forward(self, lengths):
        return self.linear(lengths.unsqueeze(-1))  # [E, out_dim + 1]


@pytest.mark.parametrize(
    "radial, match",
    [
        (_WrongWidth, r"maps 2 edge lengths to \[2, 5\], expected \[2, 4\]"),
        (lambda out_dim: nn.Linear(3, out_dim), "fails on edge lengths of shape"),
    ],
)
def test_a_radial_model_that_does_not_fit_is_refused_when_built(radial, match):
    with pytest.raises(ValueError, match=match):
        Kernel("2x0e", "2x0e", RadialModel=radial)


@pytest.mark.parametrize("engine", [*ENGINES, "auto"])
@pytest.mark.parametrize("h", [2, 100])  # the envelope on the hidden features or the weights
def test_the_kernel_checks_edge_vectors_not_again_their_lengths(monkeypatch, engine, h):
    """Kernel.convolve checks its edge vectors; the radial model's check of their lengths
    (a host synchronisation per layer) is not run again, and the values are unchanged."""
    radial_model = partial(TUTORIAL_RADIAL, h=h)
    kernel = Kernel("2x0e+1x1o", "1x0e+1x1o", radial_model, mode="channelwise", engine=engine)
    pos = torch.randn(6, 3)
    edge_index = torch.tensor([[i, j] for i in range(6) for j in range(6) if i != j]).T
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]  # [E, 3]
    x = torch.randn(6, 5)
    expected = kernel.convolve(x, edge_index, edge_vec, 6)  # [6, 4]
    messages = kernel.apply(edge_vec, x[edge_index[0]])  # [E, 4]

    def refuse(edge_length):
        raise AssertionError("the edge lengths were checked again")

    monkeypatch.setattr(radial, "_check_edge_length", refuse)
    assert torch.equal(kernel.convolve(x, edge_index, edge_vec, 6), expected)
    assert torch.equal(kernel.apply(edge_vec, x[edge_index[0]]), messages)
    with pytest.raises(AssertionError, match="checked again"):  # the public entry checks
        kernel.R(edge_lengths(edge_vec))

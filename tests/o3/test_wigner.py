"""Tests of e3nn_pyg.o3.wigner: rotations, Wigner D, Rs representations, wigner_3j."""

import math

import numpy as np
import pytest
import torch

from e3nn_pyg.o3 import (
    Rs,
    parity_matrix,
    rand_rotation,
    rs_representation,
    spherical_harmonics,
    wigner_3j,
    wigner_D,
)


def _triples(lmax: int) -> list[tuple[int, int, int]]:
    return [
        (l1, l2, l3)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1)
    ]


TRIPLES_4 = _triples(4)
TRIPLES_8 = _triples(8)
#: a fast sample of the triples with l = 5..8 (the full set runs in the slow suite)
SAMPLE_8 = [(8, 8, 8), (8, 7, 3), (5, 8, 6), (2, 8, 7), (8, 8, 0), (1, 8, 8), (6, 5, 7)]


def _rotations(n: int, seed: int) -> torch.Tensor:
    return rand_rotation(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _gaunt(l1: int, l2: int, l3: int) -> torch.Tensor:
    r""":math:`\int Y^{l_1}_i Y^{l_2}_j Y^{l_3}_k d\Omega` by an exact product quadrature
    (Gauss-Legendre in cos(theta) about the polar axis y, uniform in phi)."""
    degree = l1 + l2 + l3
    cos_theta, w_theta = np.polynomial.legendre.leggauss(degree // 2 + 1)
    phi = 2 * np.pi * np.arange(degree + 1) / (degree + 1)
    sin_theta = np.sqrt(1 - cos_theta**2)
    x = np.outer(sin_theta, np.sin(phi))
    y = np.outer(cos_theta, np.ones_like(phi))  # the polar axis
    z = np.outer(sin_theta, np.cos(phi))
    points = torch.from_numpy(np.stack([x, y, z], axis=-1).reshape(-1, 3))
    weights = torch.from_numpy(np.outer(w_theta, np.full_like(phi, 2 * np.pi / phi.size)).ravel())
    y1, y2, y3 = (spherical_harmonics(l, points, normalization="integral") for l in (l1, l2, l3))
    return torch.einsum("p,pi,pj,pk->ijk", weights, y1, y2, y3)


# -- wigner_3j: values -----------------------------------------------------------------------
def test_golden_110():
    expected = torch.zeros(3, 3, 1, dtype=torch.float64)
    expected[:, :, 0] = torch.eye(3, dtype=torch.float64) / math.sqrt(3)
    torch.testing.assert_close(wigner_3j(1, 1, 0, torch.float64), expected, rtol=0, atol=1e-6)


def test_golden_111_is_the_cross_product():
    epsilon = torch.zeros(3, 3, 3, dtype=torch.float64)
    for (i, j, k), sign in [((0, 1, 2), 1), ((1, 2, 0), 1), ((2, 0, 1), 1)]:
        epsilon[i, j, k], epsilon[j, i, k] = sign, -sign
    c = wigner_3j(1, 1, 1, torch.float64)
    torch.testing.assert_close(c, epsilon / math.sqrt(6), rtol=0, atol=1e-6)
    assert c[0, 1, 2] == pytest.approx(0.408248, abs=1e-6)


def test_golden_112():
    expected = torch.zeros(3, 3, 5, dtype=torch.float64)
    values = {
        (0, 0, 2): -0.182574,
        (2, 2, 2): -0.182574,
        (1, 1, 2): 0.365148,
        (0, 0, 4): -0.316228,
        (2, 2, 4): 0.316228,
        (0, 1, 1): 0.316228,
        (1, 0, 1): 0.316228,
        (0, 2, 0): 0.316228,
        (2, 0, 0): 0.316228,
        (1, 2, 3): 0.316228,
        (2, 1, 3): 0.316228,
    }
    for index, value in values.items():
        expected[index] = value
    # every listed value, and zero everywhere else
    torch.testing.assert_close(wigner_3j(1, 1, 2, torch.float64), expected, rtol=0, atol=1e-6)


def test_trivial_triples():
    for l in range(6):
        c = wigner_3j(l, l, 0, torch.float64)[:, :, 0]  # the invariant pairing: identity
        torch.testing.assert_close(
            c, torch.eye(2 * l + 1, dtype=torch.float64) / (2 * l + 1) ** 0.5
        )
        c = wigner_3j(0, l, l, torch.float64)[0]
        torch.testing.assert_close(
            c, torch.eye(2 * l + 1, dtype=torch.float64) / (2 * l + 1) ** 0.5
        )


# -- wigner_3j: properties -------------------------------------------------------------------
def _check_norm(triple):
    assert wigner_3j(*triple, dtype=torch.float64).norm().item() == pytest.approx(1.0, abs=1e-12)


def _check_invariance(triples, seed):
    rotations = _rotations(3, seed)
    lmax = max(max(t) for t in triples)
    D = [wigner_D(l, rotations) for l in range(lmax + 1)]  # [3, 2l+1, 2l+1]
    for l1, l2, l3 in triples:
        c = wigner_3j(l1, l2, l3, torch.float64)
        rotated = torch.einsum("zia,zjb,zkc,abc->zijk", D[l1], D[l2], D[l3], c)
        error = (rotated - c).abs().max().item()
        assert error < 1e-10, ((l1, l2, l3), error)


def _check_permutations(triple):
    l1, l2, l3 = triple
    c = wigner_3j(l1, l2, l3, torch.float64)
    sign = (-1) ** (l1 + l2 + l3)
    # cyclic permutations: unchanged
    torch.testing.assert_close(wigner_3j(l2, l3, l1, torch.float64), c.permute(1, 2, 0))
    torch.testing.assert_close(wigner_3j(l3, l1, l2, torch.float64), c.permute(2, 0, 1))
    # odd permutations: times (-1)^(l1+l2+l3)
    torch.testing.assert_close(wigner_3j(l2, l1, l3, torch.float64), sign * c.permute(1, 0, 2))
    torch.testing.assert_close(wigner_3j(l1, l3, l2, torch.float64), sign * c.permute(0, 2, 1))
    torch.testing.assert_close(wigner_3j(l3, l2, l1, torch.float64), sign * c.permute(2, 1, 0))


def _check_gaunt(triple):
    c = wigner_3j(*triple, dtype=torch.float64)
    gaunt = _gaunt(*triple)
    if sum(triple) % 2:
        # parity kills the Gaunt integral of an odd total order
        assert gaunt.abs().max() < 1e-12
    else:
        assert (gaunt * c).sum() > 0
        # the invariant tensor is unique: C is the normalised Gaunt tensor
        torch.testing.assert_close(c, gaunt / gaunt.norm(), rtol=0, atol=1e-12)


def _check_e3nn(triple):
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    expected = e3nn_o3.wigner_3j(*triple, dtype=torch.float64)
    torch.testing.assert_close(
        wigner_3j(*triple, dtype=torch.float64), expected, rtol=0, atol=1e-10
    )


def test_frobenius_norm():
    for triple in TRIPLES_4 + SAMPLE_8:
        _check_norm(triple)


def test_invariance_under_rotations():
    _check_invariance(TRIPLES_4 + SAMPLE_8, seed=0)


def test_permutation_symmetry():
    for triple in TRIPLES_4 + SAMPLE_8:
        _check_permutations(triple)


def test_sign_rule_of_even_triples_is_the_gaunt_overlap():
    for triple in TRIPLES_4 + SAMPLE_8:
        _check_gaunt(triple)


def test_agrees_with_e3nn_0_6():
    for triple in TRIPLES_4 + SAMPLE_8:
        _check_e3nn(triple)


@pytest.mark.slow
def test_all_triples_up_to_8():
    for triple in TRIPLES_8:
        _check_norm(triple)
        _check_permutations(triple)
        _check_gaunt(triple)
    _check_invariance(TRIPLES_8, seed=1)


@pytest.mark.slow
def test_all_triples_up_to_8_agree_with_e3nn_0_6():
    for triple in TRIPLES_8:
        _check_e3nn(triple)


def test_invariance_check_can_fail():
    # flipping the sign of one m-component of l3 breaks the invariance
    rotations = _rotations(1, seed=2)
    c = wigner_3j(1, 2, 3, torch.float64).clone()
    c[..., 0] *= -1
    D1, D2, D3 = (wigner_D(l, rotations)[0] for l in (1, 2, 3))
    rotated = torch.einsum("ia,jb,kc,abc->ijk", D1, D2, D3, c)
    assert (rotated - c).abs().max() > 1e-3


# -- wigner_3j: API --------------------------------------------------------------------------


def test_dtype_follows_the_default(float64):
    assert wigner_3j(1, 1, 2).dtype == torch.float64


def test_dtype_and_device_arguments():
    assert wigner_3j(1, 1, 2).dtype == torch.get_default_dtype()
    c32 = wigner_3j(2, 3, 4, dtype=torch.float32, device="cpu")
    assert c32.dtype == torch.float32 and c32.device.type == "cpu"
    assert c32.shape == (5, 7, 9)
    c64 = wigner_3j(2, 3, 4, dtype=torch.float64, device=torch.device("cpu"))
    torch.testing.assert_close(c32, c64.float())


def test_returns_a_fresh_tensor():
    # editing the result in place must not leak into later calls (the values are cached)
    c = wigner_3j(1, 1, 0, dtype=torch.float64)
    c.mul_(2)
    assert wigner_3j(1, 1, 0, dtype=torch.float64)[0, 0, 0].item() == pytest.approx(3**-0.5)
    assert not wigner_3j(2, 2, 2).requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    c = wigner_3j(2, 3, 4, dtype=torch.float64, device="cuda")
    assert c.device.type == "cuda"
    torch.testing.assert_close(c.cpu(), wigner_3j(2, 3, 4, dtype=torch.float64))
    R = _rotations(2, seed=3)
    torch.testing.assert_close(wigner_D(3, R.cuda()).cpu(), wigner_D(3, R))
    torch.testing.assert_close(
        rs_representation("1x0e + 2x1o + 1x2e", -R.cuda()).cpu(),
        rs_representation("1x0e + 2x1o + 1x2e", -R),
    )


@pytest.mark.parametrize(
    "triple", [(1, 1, 3), (0, 1, 2), (2, 0, 1), (3, 1, 1), (0, 0, 1), (5, 1, 7)]
)
def test_triangle_violations(triple):
    with pytest.raises(ValueError, match="triangle"):
        wigner_3j(*triple)


@pytest.mark.parametrize(
    "triple, error, match",
    [
        ((-1, 1, 1), ValueError, "order l1 must be an int >= 0, got -1"),
        ((1, -1, 0), ValueError, "order l2 must be an int >= 0, got -1"),
        ((1.0, 1, 1), TypeError, "order l1 must be an int, got float"),
        ((1, 1, 2.0), TypeError, "order l3 must be an int, got float"),
        ((True, 1, 1), TypeError, "order l1 must be an int, got bool"),
        (("1", 1, 1), TypeError, "order l1 must be an int, got str"),
        ((None, 0, 0), TypeError, "order l1 must be an int, got NoneType"),
    ],
)
def test_bad_orders(triple, error, match):
    with pytest.raises(error, match=match):
        wigner_3j(*triple)


# -- rotations -------------------------------------------------------------------------------
def test_rand_rotation_is_a_rotation():
    R = _rotations(1000, seed=4)
    identity = torch.eye(3, dtype=torch.float64).expand(1000, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), identity, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(1000, dtype=torch.float64))


def test_rand_rotation_is_seedable():
    a = rand_rotation(4, generator=torch.Generator().manual_seed(7))
    b = rand_rotation(4, generator=torch.Generator().manual_seed(7))
    c = rand_rotation(4, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (0,)])
def test_rand_rotation_shapes(shape):
    R = rand_rotation(*shape)
    assert R.shape == (*shape, 3, 3)
    assert R.dtype == torch.get_default_dtype()
    assert rand_rotation(*shape, dtype=torch.float64).dtype == torch.float64


def test_rand_rotation_is_roughly_haar():
    # for the Haar measure E[R] = 0, and the character chi(R) = tr R of the irrep l = 1
    # has E[chi] = 0 and E[chi^2] = 1 (Schur orthogonality); a uniform draw of the
    # rotation angle, for example, would give E[chi] = 1
    R = _rotations(20000, seed=9)
    trace = R.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert R.mean(0).abs().max() < 0.03
    assert abs(trace.mean().item()) < 0.05
    assert abs(trace.pow(2).mean().item() - 1) < 0.1


def test_parity_matrix():
    P = parity_matrix(dtype=torch.float64)
    torch.testing.assert_close(P, -torch.eye(3, dtype=torch.float64), rtol=0, atol=0)
    assert parity_matrix().dtype == torch.get_default_dtype()


# -- wigner_D ----------------------------------------------------------------------------------
def test_wigner_D_of_l0_l1_and_identity():
    R = _rotations(5, seed=10)
    torch.testing.assert_close(wigner_D(0, R), torch.ones(5, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(wigner_D(1, R), R, rtol=0, atol=1e-12)
    for l in range(8):
        identity = torch.eye(2 * l + 1, dtype=torch.float64)
        torch.testing.assert_close(
            wigner_D(l, torch.eye(3, dtype=torch.float64)), identity, rtol=0, atol=1e-12
        )


def test_wigner_D_is_a_homomorphism_and_orthogonal():
    R1, R2 = _rotations(2, seed=11)
    for l in range(11):
        D1, D2, D12 = wigner_D(l, R1), wigner_D(l, R2), wigner_D(l, R1 @ R2)
        torch.testing.assert_close(D12, D1 @ D2, rtol=0, atol=1e-10)
        identity = torch.eye(2 * l + 1, dtype=torch.float64)
        torch.testing.assert_close(D1 @ D1.T, identity, rtol=0, atol=1e-10)
        torch.testing.assert_close(wigner_D(l, R1.T), D1.T, rtol=0, atol=1e-10)


def test_wigner_D_batch_and_dtype():
    R = _rotations(6, seed=12).reshape(2, 3, 3, 3)
    D = wigner_D(2, R)
    assert D.shape == (2, 3, 5, 5)
    torch.testing.assert_close(D[1, 2], wigner_D(2, R[1, 2]))
    D32 = wigner_D(2, R.float())
    assert D32.dtype == torch.float32
    torch.testing.assert_close(D32, D.float(), rtol=0, atol=1e-6)


def test_wigner_D_rejects_improper_and_non_orthogonal():
    R = _rotations(1, seed=13)[0]
    for improper in (
        -torch.eye(3, dtype=torch.float64),
        -R,
        torch.diag(torch.tensor([1.0, 1, -1])),
    ):
        with pytest.raises(ValueError, match="det"):
            wigner_D(1, improper)
    with pytest.raises(ValueError, match="det"):
        wigner_D(2, torch.stack([R, -R]))  # one improper element in a batch
    for matrix in (2 * torch.eye(3), torch.randn(3, 3), R + 1e-3, torch.zeros(3, 3)):
        with pytest.raises(ValueError, match="orthogonal"):
            wigner_D(1, matrix)


def test_wigner_D_bad_arguments():
    R = _rotations(1, seed=14)[0]
    with pytest.raises(ValueError, match="l must be an int >= 0, got -1"):
        wigner_D(-1, R)
    with pytest.raises(TypeError, match=r"l must be an int, got float 1\.0"):
        wigner_D(1.0, R)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        wigner_D(1, torch.eye(3)[:, :2])
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        wigner_D(1, torch.eye(2))
    with pytest.raises(TypeError, match="floating"):
        wigner_D(1, torch.eye(3, dtype=torch.int64))


# -- rs_representation -----------------------------------------------------------------------
def test_rs_representation_block_structure():
    rs = Rs("2x1o + 1x0e + 0x3o + 1x2e + 1x1e")
    R = _rotations(1, seed=15)[0]
    rep = rs_representation(rs, R)
    assert rep.shape == (rs.dim, rs.dim) == (15, 15)
    expected = torch.block_diag(
        wigner_D(1, R), wigner_D(1, R), wigner_D(0, R), wigner_D(2, R), wigner_D(1, R)
    )
    torch.testing.assert_close(rep, expected, rtol=0, atol=0)  # off-diagonal blocks exactly 0


def test_rs_representation_parity_signs():
    rs = "1x0e + 1x0o + 1x1o + 1x1e + 1x2e + 1x2o"
    rep = rs_representation(rs, -torch.eye(3, dtype=torch.float64))
    signs = [1] + [-1] + [-1] * 3 + [1] * 3 + [1] * 5 + [-1] * 5
    torch.testing.assert_close(rep, torch.diag(torch.tensor(signs, dtype=torch.float64)))


def test_rs_representation_of_improper_elements():
    R = _rotations(1, seed=16)[0]
    rep = rs_representation("1x2o + 1x2e", -R)
    torch.testing.assert_close(rep[:5, :5], -wigner_D(2, R), rtol=0, atol=0)
    torch.testing.assert_close(rep[5:, 5:], wigner_D(2, R), rtol=0, atol=0)
    # a polar vector transforms with the matrix itself, rotation or not
    for matrix in (R, -R, R @ torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))):
        torch.testing.assert_close(rs_representation("1x1o", matrix), matrix, rtol=0, atol=1e-12)


def test_rs_representation_is_a_homomorphism_of_o3():
    rs = "1x0o + 2x1e + 1x2o + 1x3e"
    R1, R2 = _rotations(2, seed=17)
    for A, B in ((R1, -R2), (-R1, -R2), (-R1, R2)):
        torch.testing.assert_close(
            rs_representation(rs, A @ B),
            rs_representation(rs, A) @ rs_representation(rs, B),
            rtol=0,
            atol=1e-10,
        )


def test_rs_representation_batch_mixing_proper_and_improper():
    rs = "1x1e + 1x0o"
    R = _rotations(4, seed=18)
    R[1], R[3] = -R[1], -R[3]
    rep = rs_representation(rs, R)
    assert rep.shape == (4, 4, 4)
    for i in range(4):
        torch.testing.assert_close(rep[i], rs_representation(rs, R[i]))
    assert rep[1, 3, 3] == -1 and rep[0, 3, 3] == 1


def test_rs_representation_without_parity():
    R = _rotations(1, seed=19)[0]
    torch.testing.assert_close(rs_representation("1x1", R), R, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="p = 0"):
        rs_representation("1x0e + 1x1", -R)
    with pytest.raises(ValueError, match="p = 0"):
        rs_representation("1x1", torch.stack([R, -R]))
    # an empty block without parity does not matter
    torch.testing.assert_close(rs_representation("1x1o + 0x2", -R), -R, rtol=0, atol=1e-12)


def test_rs_representation_bad_arguments():
    with pytest.raises(ValueError, match="orthogonal"):
        rs_representation("1x1o", 2 * torch.eye(3))
    with pytest.raises(ValueError, match="cannot parse"):
        rs_representation("1x1q", torch.eye(3))
    assert rs_representation("", torch.eye(3)).shape == (0, 0)

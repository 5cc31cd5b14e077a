"""Tests of e3nn_pyg.o3.spherical_harmonics against docs/conventions.md."""

import math

import numpy as np
import pytest
import torch
from scipy.special import lpmv

from e3nn_pyg.o3 import (
    rand_rotation,
    spherical_harmonics,
    spherical_harmonics_xyz,
    spherical_harmonics_xyz_backwardable,
    wigner_D,
)

LMAX = 10
NORMALIZATIONS = ["component", "norm", "integral"]


def _random_vectors(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, 3, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _axes(dtype=torch.float64) -> torch.Tensor:
    eye = torch.eye(3, dtype=dtype)
    return torch.cat([eye, -eye])  # [6, 3]: +-x, +-y, +-z


def _offsets(ls) -> list[int]:
    return np.cumsum([0] + [2 * l + 1 for l in ls]).tolist()


def _sphere_quadrature(lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and weights integrating every product Y^a Y^b with a, b <= lmax exactly:
    Gauss-Legendre in cos(theta) (polar axis y) times a uniform grid in phi."""
    n_theta, n_phi = lmax + 1, 2 * lmax + 2
    cos_theta, w_theta = np.polynomial.legendre.leggauss(n_theta)
    sin_theta = np.sqrt(1 - cos_theta**2)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    points = np.stack(
        [
            np.outer(sin_theta, np.sin(phi)),  # x
            np.outer(cos_theta, np.ones(n_phi)),  # y
            np.outer(sin_theta, np.cos(phi)),  # z
        ],
        axis=-1,
    ).reshape(-1, 3)
    weights = np.outer(w_theta, np.full(n_phi, 2 * np.pi / n_phi)).reshape(-1)
    return torch.from_numpy(points), torch.from_numpy(weights)


def _closed_form(l: int, vectors: torch.Tensor) -> torch.Tensor:
    """The angle formula of docs/conventions.md ('integral'), via scipy's Legendre functions."""
    r = vectors.numpy()
    r = r / np.linalg.norm(r, axis=-1, keepdims=True)
    cos_theta, phi = r[:, 1], np.arctan2(r[:, 0], r[:, 2])
    out = []
    for m in range(-l, l + 1):
        k = abs(m)
        norm = math.sqrt(
            (2 * l + 1) / (4 * math.pi) * math.factorial(l - k) / math.factorial(l + k)
        )
        legendre = (-1) ** k * lpmv(k, l, cos_theta)  # remove the Condon-Shortley phase
        if m == 0:
            out.append(norm * legendre)
        elif m > 0:
            out.append(math.sqrt(2) * norm * legendre * np.cos(k * phi))
        else:
            out.append(math.sqrt(2) * norm * legendre * np.sin(k * phi))
    return torch.from_numpy(np.stack(out, axis=-1))


# -- values --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ((1.0, 0.0, 0.0), [0, 0, -1.118034, 0, -1.936492]),
        ((0.0, 1.0, 0.0), [0, 0, 2.236068, 0, 0]),
        ((0.0, 0.0, 1.0), [0, 0, -1.118034, 0, 1.936492]),
        ((1.0, 2.0, 3.0), [0.829925, 0.553283, -0.159719, 1.659850, 1.106567]),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_golden_values_l2(vector, expected, dtype):
    y = spherical_harmonics(2, torch.tensor(vector, dtype=dtype))
    assert y.dtype == dtype
    torch.testing.assert_close(y, torch.tensor(expected, dtype=dtype), rtol=0, atol=1e-6)


def test_l0_and_l1():
    r = _random_vectors(20)
    y = spherical_harmonics([0, 1], r)
    torch.testing.assert_close(y[:, 0], torch.ones(20, dtype=torch.float64))
    # Y^1 = sqrt(3) r / |r|, components in the order (x, y, z)
    torch.testing.assert_close(y[:, 1:], math.sqrt(3) * r / r.norm(dim=-1, keepdim=True))


def test_explicit_polynomials_up_to_l2():
    x, y, z = (_random_vectors(50, seed=1) / _random_vectors(50, seed=1).norm(dim=-1)[:, None]).T
    s3, s5, s15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)
    expected = torch.stack(
        [
            torch.ones_like(x),
            s3 * x,
            s3 * y,
            s3 * z,
            s15 * x * z,
            s15 * x * y,
            s5 / 2 * (2 * y**2 - x**2 - z**2),
            s15 * y * z,
            s15 / 2 * (z**2 - x**2),
        ],
        dim=-1,
    )
    got = spherical_harmonics([0, 1, 2], torch.stack([x, y, z], dim=-1))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_closed_form_of_conventions_up_to_l10():
    r = _random_vectors(200, seed=2)
    for l in range(LMAX + 1):
        expected = _closed_form(l, r)
        got = spherical_harmonics(l, r, normalization="integral")
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_sum_rule_of_the_normalizations(normalization):
    r = _random_vectors(100, seed=3)
    ls = list(range(LMAX + 1))
    y = spherical_harmonics(ls, r, normalization=normalization)
    offsets = _offsets(ls)
    for l in ls:
        total = y[:, offsets[l] : offsets[l + 1]].pow(2).sum(-1)  # [N]
        expected = {"component": 2 * l + 1, "norm": 1, "integral": (2 * l + 1) / (4 * math.pi)}
        torch.testing.assert_close(total, torch.full_like(total, expected[normalization]))


def test_normalizations_are_rescalings():
    r = _random_vectors(30, seed=4)
    for l in range(LMAX + 1):
        component = spherical_harmonics(l, r)
        norm = spherical_harmonics(l, r, normalization="norm")
        integral = spherical_harmonics(l, r, normalization="integral")
        torch.testing.assert_close(norm * math.sqrt(2 * l + 1), component)
        torch.testing.assert_close(integral * math.sqrt(4 * math.pi), component)


@pytest.mark.parametrize(
    ("normalization", "scale"),
    [
        ("integral", lambda l: 1.0),
        ("component", lambda l: 4 * math.pi),
        ("norm", lambda l: 4 * math.pi / (2 * l + 1)),
    ],
)
def test_orthonormality_by_exact_quadrature(normalization, scale):
    points, weights = _sphere_quadrature(LMAX)
    ls = list(range(LMAX + 1))
    y = spherical_harmonics(ls, points, normalization=normalization)  # [P, 121]
    gram = torch.einsum("p,pi,pj->ij", weights, y, y)
    expected = torch.diag(torch.tensor([scale(l) for l in ls for _ in range(2 * l + 1)]))
    torch.testing.assert_close(gram.to(expected.dtype), expected, rtol=0, atol=1e-12)


def test_quadrature_can_see_a_wrong_normalization():
    # the Gram test is sharp: a 1e-6 relative change of one component is visible
    points, weights = _sphere_quadrature(4)
    y = spherical_harmonics(list(range(5)), points, normalization="integral")
    y[:, 7] *= 1 + 1e-6
    gram = torch.einsum("p,pi,pj->ij", weights, y, y)
    assert (gram - torch.eye(25, dtype=gram.dtype)).abs().max() > 1e-7


# -- symmetries ----------------------------------------------------------------------------
def test_equivariance_up_to_l10():
    r = _random_vectors(64, seed=5)
    rotations = rand_rotation(4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for l in range(LMAX + 1):
        y = spherical_harmonics(l, r)  # [N, 2l+1]
        y_rotated = spherical_harmonics(l, r @ rotations.transpose(-1, -2))  # [4, N, 2l+1]
        D = wigner_D(l, rotations)  # [4, 2l+1, 2l+1]
        error = (y_rotated - y @ D.transpose(-1, -2)).abs().max().item()
        assert error <= 1e-9, (l, error)


def test_rotation_about_the_polar_axis_mixes_m_and_minus_m():
    # phi = atan2(x, z) -> phi + alpha, so (Y_m, Y_-m) rotate by the angle m * alpha
    alpha = 0.7
    c, s = math.cos(alpha), math.sin(alpha)
    R = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)
    r = _random_vectors(20, seed=7)
    for l in range(LMAX + 1):
        y, y_rotated = spherical_harmonics(l, r), spherical_harmonics(l, r @ R.T)
        torch.testing.assert_close(y_rotated[:, l], y[:, l], rtol=0, atol=1e-12)
        for m in range(1, l + 1):
            cm, sm = math.cos(m * alpha), math.sin(m * alpha)
            plus, minus = y[:, l + m], y[:, l - m]
            torch.testing.assert_close(
                y_rotated[:, l + m], cm * plus - sm * minus, atol=1e-12, rtol=0
            )
            torch.testing.assert_close(
                y_rotated[:, l - m], cm * minus + sm * plus, atol=1e-12, rtol=0
            )


def test_parity_up_to_l10():
    r = torch.cat([_random_vectors(64, seed=8), _axes()])
    for l in range(LMAX + 1):
        error = (spherical_harmonics(l, -r) - (-1) ** l * spherical_harmonics(l, r)).abs().max()
        assert error <= 1e-9, (l, error)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_agrees_with_e3nn_0_6(normalization):
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    r = torch.cat([_random_vectors(100, seed=9), _axes(), 1e3 * _random_vectors(5, seed=10)])
    for l in range(LMAX + 1):
        expected = e3nn_o3.spherical_harmonics(l, r, normalize=True, normalization=normalization)
        got = spherical_harmonics(l, r, normalization=normalization)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    ls = list(range(LMAX + 1))
    expected = e3nn_o3.spherical_harmonics(ls, r, normalize=True, normalization=normalization)
    torch.testing.assert_close(
        spherical_harmonics(ls, r, normalization=normalization), expected, rtol=0, atol=1e-10
    )


# -- normalize=False, the origin, extreme scales ---------------------------------------------
def test_unnormalized_gives_solid_harmonics():
    r = _random_vectors(40, seed=11)
    length = r.norm(dim=-1, keepdim=True)
    for l in range(LMAX + 1):
        solid = spherical_harmonics(l, r, normalize=False)
        torch.testing.assert_close(solid, length**l * spherical_harmonics(l, r), rtol=1e-12, atol=0)
        # homogeneous polynomials of degree l
        torch.testing.assert_close(
            spherical_harmonics(l, 0.3 * r, normalize=False), 0.3**l * solid, rtol=1e-12, atol=0
        )


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_at_the_origin(normalize, dtype):
    y = spherical_harmonics(list(range(LMAX + 1)), torch.zeros(2, 3, dtype=dtype), normalize)
    expected = torch.zeros(2, (LMAX + 1) ** 2, dtype=dtype)
    expected[:, 0] = 1
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    y = spherical_harmonics(0, torch.zeros(3, dtype=dtype), normalize, normalization="integral")
    torch.testing.assert_close(y, torch.tensor([1 / math.sqrt(4 * math.pi)], dtype=dtype))


def _hard_points(dtype) -> list[tuple[float, float, float]]:
    axes = [tuple(v) for v in _axes().tolist()]
    scales = [1e-30, 1e30] + ([1e-300, 1e300] if dtype == torch.float64 else [])
    generic = (0.3, -1.2, 0.5)
    near_pole = (1e-9, 1.0, -2e-9)
    scaled = [tuple(s * c for c in point) for s in scales for point in [generic, (0.0, 1.0, 0.0)]]
    return [(0.0, 0.0, 0.0), *axes, near_pole, *scaled]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_values_and_gradients_at_hard_points(dtype):
    ls = list(range(LMAX + 1))
    points = torch.tensor(_hard_points(dtype), dtype=dtype, requires_grad=True)  # [P, 3]
    y = spherical_harmonics(ls, points)  # [P, 121]
    assert torch.isfinite(y).all()
    # the gradient of every single component, not only of the sum (which could cancel)
    for index in range(y.shape[-1]):
        (grad,) = torch.autograd.grad(y[:, index].sum(), points, retain_graph=True)
        assert torch.isfinite(grad).all(), (index, grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_gradients_at_the_origin_unnormalized(dtype):
    origin = torch.zeros(1, 3, dtype=dtype, requires_grad=True)
    y = spherical_harmonics(list(range(LMAX + 1)), origin, normalize=False)
    (grad,) = torch.autograd.grad(y[:, 1:].sum(), origin)
    # only Y^1 = sqrt(3) r is linear: its gradient at 0 is sqrt(3) per component
    torch.testing.assert_close(grad, torch.full_like(grad, math.sqrt(3)))


@pytest.mark.parametrize("scale", [1e-30, 1e-300, 1e30, 1e300])
def test_extreme_scales_are_exact_in_float64(scale):
    # Y is scale invariant, and its gradient scales as 1 / |r|
    direction = torch.cat([_random_vectors(10, seed=12), _axes()])
    ls = list(range(LMAX + 1))

    def values_and_gradient(r):
        r = r.clone().requires_grad_(True)
        y = spherical_harmonics(ls, r)
        weights = torch.linspace(-1, 1, y.shape[-1], dtype=torch.float64)
        (grad,) = torch.autograd.grad((y * weights).sum(), r)
        return y.detach(), grad

    y_unit, grad_unit = values_and_gradient(direction)
    y_scaled, grad_scaled = values_and_gradient(scale * direction)
    torch.testing.assert_close(y_scaled, y_unit, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_scaled * scale, grad_unit, rtol=1e-10, atol=1e-10)


def test_extreme_scales_in_float32():
    direction = _random_vectors(10, seed=13, dtype=torch.float32)
    reference = spherical_harmonics(list(range(LMAX + 1)), direction)
    for scale in (1e-30, 1e30):
        got = spherical_harmonics(list(range(LMAX + 1)), scale * direction)
        torch.testing.assert_close(got, reference, rtol=0, atol=1e-5)


def test_float32_is_accurate_at_l10():
    r = _random_vectors(200, seed=14)
    ls = list(range(LMAX + 1))
    error = (spherical_harmonics(ls, r.float()).double() - spherical_harmonics(ls, r)).abs().max()
    assert error < 1e-5


def test_gradient_is_tangent_to_the_sphere():
    r = torch.cat([_random_vectors(20, seed=15), _axes()]).requires_grad_(True)
    y = spherical_harmonics(list(range(LMAX + 1)), r)
    for index in range(0, y.shape[-1], 7):
        (grad,) = torch.autograd.grad(y[:, index].sum(), r, retain_graph=True)
        radial = (grad * r).sum(-1)  # Y(r / |r|) does not change along r
        torch.testing.assert_close(radial, torch.zeros_like(radial), rtol=0, atol=1e-10)


@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_and_gradgradcheck(normalize):
    points = torch.cat([_random_vectors(4, seed=16), _axes(), torch.tensor([[1e-7, 2.0, 0.0]])])
    points = points.double().requires_grad_(True)
    for ls in ([0, 1, 2, 3, 4], [10]):

        def func(r, ls=ls):
            return spherical_harmonics(ls, r, normalize=normalize)

        assert torch.autograd.gradcheck(func, (points,), eps=1e-6, atol=1e-6)
        assert torch.autograd.gradgradcheck(func, (points[:4],), eps=1e-6, atol=1e-5)


# -- API -------------------------------------------------------------------------------------
def test_aliases():
    r = _random_vectors(5, seed=17)
    expected = spherical_harmonics([0, 2], r)
    for alias in (spherical_harmonics_xyz, spherical_harmonics_xyz_backwardable):
        torch.testing.assert_close(alias([0, 2], r), expected, rtol=0, atol=0)
        torch.testing.assert_close(
            alias(1, r, normalize=False, normalization="norm"),
            spherical_harmonics(1, r, normalize=False, normalization="norm"),
        )


def test_ls_order_repeats_and_empty():
    r = _random_vectors(5, seed=18)
    torch.testing.assert_close(
        spherical_harmonics([2, 0, 2], r),
        torch.cat(
            [spherical_harmonics(2, r), spherical_harmonics(0, r), spherical_harmonics(2, r)], -1
        ),
    )
    torch.testing.assert_close(spherical_harmonics(range(3), r), spherical_harmonics([0, 1, 2], r))
    torch.testing.assert_close(spherical_harmonics((1,), r), spherical_harmonics(1, r))
    assert spherical_harmonics([], r).shape == (5, 0)


@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4), (0,)])
def test_batch_shapes(shape):
    r = torch.randn(*shape, 3, dtype=torch.float64)
    y = spherical_harmonics([0, 1, 3], r)
    assert y.shape == (*shape, 1 + 3 + 7)
    torch.testing.assert_close(y.reshape(-1, 11), spherical_harmonics([0, 1, 3], r.reshape(-1, 3)))


@pytest.mark.parametrize("shape", [(5, 2), (5, 4), (3, 5), ()])
def test_wrong_last_dimension(shape):
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        spherical_harmonics(1, torch.zeros(shape))


def test_not_a_tensor():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        spherical_harmonics(1, [[0.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_dtype(dtype):
    with pytest.raises(TypeError, match="floating"):
        spherical_harmonics(1, torch.zeros(4, 3, dtype=dtype))


@pytest.mark.parametrize(
    "ls, error, match",
    [
        (-1, ValueError, "order must be an int >= 0, got -1"),
        ([0, -2], ValueError, "order must be an int >= 0, got -2"),
        (True, TypeError, "order must be an int, got bool True"),
        ([1, False], TypeError, "order must be an int, got bool False"),
        ([1.0], TypeError, "order must be an int, got float 1.0"),
        ([2, "3"], TypeError, "order must be an int, got str '3'"),
        (None, TypeError, "ls must be an int or a sequence of ints, got None"),
    ],
)
def test_bad_orders(ls, error, match):
    with pytest.raises(error, match=match):
        spherical_harmonics(ls, torch.zeros(4, 3))


def test_normalize_must_be_a_bool():
    with pytest.raises(TypeError, match="normalize must be a bool, got str 'no'"):
        spherical_harmonics(1, torch.zeros(4, 3), normalize="no")


@pytest.mark.parametrize("normalization", ["unit", "Component", "", None, "seismology"])
def test_unknown_normalization(normalization):
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(1, torch.zeros(4, 3), normalization=normalization)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    r = torch.cat([_random_vectors(100, seed=19), _axes(), torch.zeros(1, 3, dtype=torch.float64)])
    ls = list(range(LMAX + 1))
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        expected = spherical_harmonics(ls, r).to(dtype)
        r_cuda = r.to("cuda", dtype).requires_grad_(True)
        got = spherical_harmonics(ls, r_cuda)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=atol)
        (grad,) = torch.autograd.grad(got.sum(), r_cuda)
        assert torch.isfinite(grad).all()


def test_jacobian_at_the_origin_normalized():
    # r / |r| is taken as r at the origin: Y^1 = sqrt(3) r there, so its Jacobian is sqrt(3) I
    origin = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    y = spherical_harmonics(1, origin)
    for i in range(3):
        (grad,) = torch.autograd.grad(y[0, i], origin, retain_graph=True)
        expected = torch.zeros(1, 3, dtype=torch.float64)
        expected[0, i] = math.sqrt(3)
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("normalize", [True, False])
def test_finite_second_derivatives_at_hard_points(normalize):
    # second derivatives scale as |r|^(l-2): at 1e+-300 they overflow float64 for real, so
    # the checked points stop at 1e+-30 (the origin, the axes and the near pole included)
    points = [p for p in _hard_points(torch.float64) if max(map(abs, p)) < 1e100]
    points = [p for p in points if max(map(abs, p)) == 0 or max(map(abs, p)) > 1e-100]
    points = torch.tensor(points, dtype=torch.float64, requires_grad=True)  # [P, 3]
    y = spherical_harmonics(list(range(LMAX + 1)), points, normalize=normalize)
    weights = torch.linspace(-1, 1, y.shape[-1], dtype=torch.float64)
    (grad,) = torch.autograd.grad((y * weights).sum(), points, create_graph=True)
    for i in range(3):
        (hessian_row,) = torch.autograd.grad(grad[:, i].sum(), points, retain_graph=True)
        assert torch.isfinite(hessian_row).all(), (i, hessian_row)

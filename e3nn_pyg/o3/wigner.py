r"""Rotations, Wigner D matrices and Clebsch-Gordan coefficients in the real basis.

Everything is consistent with :func:`~e3nn_pyg.o3.spherical_harmonics`:

.. math::
    Y^l(R r) = D^l(R)\, Y^l(r), \qquad
    C_{ijk} = \sum_{i'j'k'} D^{l_1}_{ii'} D^{l_2}_{jj'} D^{l_3}_{kk'} C_{i'j'k'},

with :math:`D^1(R) = R` and :math:`C = \mathtt{wigner\_3j}(l_1, l_2, l_3)` of Frobenius
norm one.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import torch
from torch import Tensor

from ..checks import require_floating, require_int
from .spherical_harmonics import spherical_harmonics

__all__ = [
    "parity_matrix",
    "rand_rotation",
    "wigner_3j",
    "wigner_D",
]


# -- rotations -------------------------------------------------------------------------
def rand_rotation(
    *shape: int,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Haar-uniform random rotation matrices (orthogonal, det +1).

    Built from a normalised Gaussian quaternion, which is uniform on :math:`S^3` and so
    gives the Haar measure on :math:`SO(3)`.

    Args:
        *shape (int): batch shape of the output.
        dtype, device: of the output (default: torch's defaults).
        generator (torch.Generator, optional): for reproducible draws.

    Returns:
        Tensor ``[*shape, 3, 3]``.

    Example:
        >>> R = rand_rotation(generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(R @ R.T, torch.eye(3), atol=1e-6), round(float(torch.det(R)), 6)
        (True, 1.0)
    """
    dtype = dtype or torch.get_default_dtype()
    q = torch.randn(*shape, 4, dtype=dtype, device=device, generator=generator)  # [..., 4]
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)  # [..., 3, 3]


def parity_matrix(dtype: torch.dtype | None = None, device=None) -> Tensor:
    """The inversion :math:`-I`, as a ``[3, 3]`` matrix."""
    return -torch.eye(3, dtype=dtype or torch.get_default_dtype(), device=device)


def _check_orthogonal(R: Tensor) -> Tensor:
    if not isinstance(R, Tensor) or R.shape[-2:] != (3, 3):
        shape = tuple(R.shape) if isinstance(R, Tensor) else type(R).__name__
        raise ValueError(f"R must be a tensor of shape [..., 3, 3], got {shape}")
    require_floating(R, "R")
    identity = torch.eye(3, dtype=R.dtype, device=R.device)
    tolerance = 1e-4 if R.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-8
    if (R @ R.transpose(-1, -2) - identity).abs().amax() > tolerance:
        raise ValueError("R must be orthogonal (R @ R.T = I)")
    return torch.linalg.det(R)  # [...]


# -- Wigner D ---------------------------------------------------------------------------
@cache
def _sampling_points(l: int) -> tuple[Tensor, Tensor]:
    """Fixed well-spread unit vectors and the pseudo-inverse of ``Y^l`` on them (float64)."""
    generator = torch.Generator().manual_seed(1234 + l)
    points = torch.randn(4 * l + 4, 3, dtype=torch.float64, generator=generator)
    points = points / points.norm(dim=-1, keepdim=True)  # [K, 3]
    pinv = torch.linalg.pinv(spherical_harmonics(l, points))  # [2l+1, K]
    return points, pinv


def wigner_D(l: int, R: Tensor) -> Tensor:
    r"""The representation matrix :math:`D^l(R)` of a rotation on :math:`Y^l`.

    Solved from :math:`Y^l(R u_k) = D^l(R) Y^l(u_k)` on fixed points :math:`u_k`
    (least squares over more points than unknowns, exact to rounding).

    Args:
        l (int): the order.
        R (Tensor): ``[..., 3, 3]`` rotation matrices (det +1).

    Returns:
        Tensor ``[..., 2l+1, 2l+1]``; :math:`D^1(R) = R`.

    Example:
        >>> R = rand_rotation(generator=torch.Generator().manual_seed(1))
        >>> torch.allclose(wigner_D(1, R), R, atol=1e-6)
        True
    """
    require_int(l, "l", minimum=0)
    det = _check_orthogonal(R)
    if (det < 0).any():
        raise ValueError(
            "wigner_D takes rotations (det +1); for improper elements use rs_representation, "
            "which applies the parity of each irrep"
        )
    points, pinv = _sampling_points(l)  # computed in float64 whatever R's dtype
    points, pinv = points.to(R.device), pinv.to(R.device)
    rotated = spherical_harmonics(l, points @ R.double().transpose(-1, -2))  # [..., K, 2l+1]
    return (pinv @ rotated).transpose(-1, -2).to(R.dtype)  # [..., 2l+1, 2l+1]


# -- Clebsch-Gordan -------------------------------------------------------------------
def _su2_clebsch_gordan(j1: int, m1: int, j2: int, m2: int, j3: int, m3: int) -> float:
    r""":math:`\langle j_1 m_1 j_2 m_2 | j_3 m_3 \rangle` by Racah's formula, exact rationals."""
    if m3 != m1 + m2:
        return 0.0
    f = math.factorial
    prefactor = Fraction(
        (2 * j3 + 1) * f(j3 + j1 - j2) * f(j3 - j1 + j2) * f(j1 + j2 - j3),
        f(j1 + j2 + j3 + 1),
    ) * (f(j3 + m3) * f(j3 - m3) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2))
    total = Fraction(0)
    for k in range(max(0, j2 - j3 - m1, j1 - j3 + m2), min(j1 + j2 - j3, j1 - m1, j2 + m2) + 1):
        total += Fraction(
            (-1) ** k,
            f(k)
            * f(j1 + j2 - j3 - k)
            * f(j1 - m1 - k)
            * f(j2 + m2 - k)
            * f(j3 - j2 + m1 + k)
            * f(j3 - j1 - m2 + k),
        )
    return math.copysign(math.sqrt(prefactor * total * total), total)


def _real_from_complex(l: int) -> Tensor:
    r"""Unitary ``Q`` with :math:`Y_\text{real} = Q Y_\text{complex}` (Condon-Shortley complex
    harmonics about the polar axis ``y``, :math:`\varphi = \operatorname{atan2}(x, z)`)."""
    q = torch.zeros(2 * l + 1, 2 * l + 1, dtype=torch.complex128)
    q[l, l] = 1
    s = 1 / math.sqrt(2)
    for m in range(1, l + 1):
        q[l + m, l + m] = (-1) ** m * s
        q[l + m, l - m] = s
        q[l - m, l + m] = -1j * (-1) ** m * s
        q[l - m, l - m] = 1j * s
    return q


def _gauss_sphere_quadrature(degree: int) -> tuple[Tensor, Tensor]:
    """Points and weights integrating polynomials up to ``degree`` exactly on the sphere."""
    import numpy as np  # numpy is a dependency of torch's CPU build; used only here

    n_theta = degree // 2 + 1
    n_phi = degree + 1
    cos_theta, w_theta = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * math.pi * torch.arange(n_phi, dtype=torch.float64) / n_phi
    cos_theta = torch.from_numpy(cos_theta)  # [T]
    sin_theta = (1 - cos_theta**2).sqrt()
    points = torch.stack(
        [
            sin_theta[:, None] * phi.sin()[None, :],  # x
            cos_theta[:, None].expand(-1, n_phi),  # y: the polar axis
            sin_theta[:, None] * phi.cos()[None, :],  # z
        ],
        dim=-1,
    ).reshape(-1, 3)  # [T * P, 3]
    weights = (torch.from_numpy(w_theta)[:, None] * (2 * math.pi / n_phi)).expand(-1, n_phi)
    return points, weights.reshape(-1)


def _check_triple(l1: int, l2: int, l3: int) -> None:
    for name, l in (("l1", l1), ("l2", l2), ("l3", l3)):
        require_int(l, f"wigner_3j order {name}", minimum=0)
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(
            f"wigner_3j({l1}, {l2}, {l3}) violates the triangle rule |l1 - l2| <= l3 <= l1 + l2"
        )


@cache
def _wigner_3j_float64(l1: int, l2: int, l3: int) -> Tensor:
    """Computed once for the sorted orders, then permuted: exact permutation symmetry."""
    order = sorted(range(3), key=lambda i: (l1, l2, l3)[i])
    c = _wigner_3j_sorted(*sorted((l1, l2, l3)))
    # axis k of the result is axis inverse[k] of the sorted tensor
    inverse = [order.index(k) for k in range(3)]
    odd = (inverse[0], inverse[1], inverse[2]) in ((0, 2, 1), (2, 1, 0), (1, 0, 2))
    sign = (-1) ** (l1 + l2 + l3) if odd else 1
    return sign * c.permute(*inverse).contiguous()


def _wigner_3j_sorted(l1: int, l2: int, l3: int) -> Tensor:
    cg = torch.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=torch.complex128)
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= l3:
                cg[l1 + m1, l2 + m2, l3 + m1 + m2] = _su2_clebsch_gordan(
                    l1, m1, l2, m2, l3, m1 + m2
                )
    q1, q2, q3 = (_real_from_complex(l) for l in (l1, l2, l3))
    # sum_{m1 m2 m3} cg Y1_m1 Y2_m2 conj(Y3_m3) is invariant; express it in the real basis
    c = torch.einsum("im,jn,ko,mno->ijk", q1.conj(), q2.conj(), q3, cg)
    # the tensor is real for even l1+l2+l3 and imaginary for odd: rotate it onto the reals
    c = c.real if (l1 + l2 + l3) % 2 == 0 else c.imag
    c = c / c.norm()
    return c * _sign_convention(l1, l2, l3, c)


def _sign_convention(l1: int, l2: int, l3: int, c: Tensor) -> float:
    """+1 or -1 fixing the overall sign of the sorted-order tensor (docs/conventions.md)."""
    if (l1 + l2 + l3) % 2 == 0:
        # positive overlap with the Gaunt tensor  int Y1_i Y2_j Y3_k dOmega
        points, weights = _gauss_sphere_quadrature(l1 + l2 + l3)
        y1, y2, y3 = (spherical_harmonics(l, points) for l in (l1, l2, l3))
        gaunt = torch.einsum("p,pi,pj,pk->ijk", weights, y1, y2, y3)
        return 1.0 if (gaunt * c).sum() > 0 else -1.0
    # odd sums have no Gaunt tensor; with l1 <= l2 <= l3 this phase reproduces e3nn 0.6
    # (checked for every triple up to l = 8 in tests/o3/test_wigner.py)
    return float((-1) ** ((l1 + l2 - l3 - 1) // 2))


def wigner_3j(
    l1: int,
    l2: int,
    l3: int,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Real Clebsch-Gordan coefficients :math:`C^{(l_1, l_2, l_3)}`.

    The unique (up to sign) tensor invariant under
    :math:`D^{l_1} \otimes D^{l_2} \otimes D^{l_3}`, of Frobenius norm one, computed
    from exact rational Clebsch-Gordan coefficients and cached. Cyclic permutations of
    ``(l1, l2, l3)`` leave it unchanged; odd ones multiply it by
    :math:`(-1)^{l_1+l_2+l_3}`. Sign: positive overlap with the Gaunt tensor for even
    :math:`l_1 + l_2 + l_3`, e3nn 0.6's sign for odd ones (:math:`C^{(1,1,1)} =
    \epsilon / \sqrt 6`).

    Args:
        l1, l2, l3 (int): orders satisfying the triangle rule.
        dtype, device: of the output (default: torch's default dtype, CPU).

    Returns:
        Tensor ``[2l1+1, 2l2+1, 2l3+1]``.

    Example:
        >>> torch.allclose(wigner_3j(1, 1, 0)[:, :, 0], torch.eye(3) / 3**0.5)
        True
        >>> round(float(wigner_3j(1, 1, 1)[0, 1, 2]), 6)  # epsilon_012 / sqrt(6)
        0.408248
    """
    _check_triple(l1, l2, l3)
    dtype = dtype or torch.get_default_dtype()
    # copy: the cached tensor must never be handed out (in-place edits would corrupt it)
    return _wigner_3j_float64(l1, l2, l3).to(dtype=dtype, device=device, copy=True)

r"""Real spherical harmonics in the basis of CONVENTIONS.md (polar axis ``y``).

With :math:`\cos\theta = y/|r|` and :math:`\varphi = \operatorname{atan2}(x, z)`,

.. math::
    Y^l_0 = N_{l0} P^0_l(\cos\theta), \quad
    Y^l_{m>0} = \sqrt2 N_{lm} P^m_l(\cos\theta)\cos(m\varphi), \quad
    Y^l_{m<0} = \sqrt2 N_{l|m|} P^{|m|}_l(\cos\theta)\sin(|m|\varphi),

:math:`N_{lm} = \sqrt{\tfrac{2l+1}{4\pi}\tfrac{(l-m)!}{(l+m)!}}`, :math:`P^m_l` without the
Condon-Shortley phase. Nothing here uses angles: with :math:`(X, Y, Z) = (z, x, y)`,
:math:`\sin^m\theta\, e^{im\varphi} = (X + iY)^m` and
:math:`P^m_l(\cos\theta) / \sin^m\theta` is a polynomial in :math:`Z` (and :math:`|r|^2`)
given by a three-term recurrence whose normalised coefficients stay of order one. Every
:math:`Y^l` is therefore a polynomial in the unit vector, exact for every ``l`` and with
finite gradients everywhere, the polar axis included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import torch
from torch import Tensor

__all__ = [
    "spherical_harmonics",
    "spherical_harmonics_xyz",
    "spherical_harmonics_xyz_backwardable",
]

_NORMALIZATIONS = ("component", "norm", "integral")


@cache
def _recurrence(lmax: int) -> tuple[tuple[float, ...], dict, dict]:
    r"""Coefficients of the normalised associated Legendre recurrence ('component').

    ``q[l, m] = N_lm P_l^m / sin^m`` (times :math:`\sqrt{4\pi}`) obeys
    ``q[m, m] = sqrt((2m+1)/(2m)) q[m-1, m-1]`` and
    ``q[l, m] = a_lm Z q[l-1, m] - b_lm r^2 q[l-2, m]``.
    """
    diagonal = [1.0]
    for m in range(1, lmax + 1):
        diagonal.append(diagonal[-1] * math.sqrt((2 * m + 1) / (2 * m)))
    a, b = {}, {}
    for m in range(lmax + 1):
        for l in range(m + 1, lmax + 1):
            a[l, m] = math.sqrt((2 * l + 1) * (2 * l - 1) / ((l - m) * (l + m)))
            if l >= m + 2:
                b[l, m] = math.sqrt(
                    (2 * l + 1) * (l + m - 1) * (l - m - 1) / ((2 * l - 3) * (l - m) * (l + m))
                )
    return tuple(diagonal), a, b


def _unit_vectors(vectors: Tensor) -> Tensor:
    """``v / |v|`` computed without overflow, underflow or NaN gradients; ``0`` at ``v = 0``."""
    scale = vectors.abs().amax(dim=-1, keepdim=True)  # [..., 1]
    nonzero = scale > 0  # [..., 1]
    scaled = vectors / torch.where(nonzero, scale, torch.ones_like(scale))  # max |.| is 1
    squared = scaled.pow(2).sum(dim=-1, keepdim=True)  # 1 <= squared <= 3, or 0
    # mask before the sqrt: sqrt'(0) = inf would turn the masked-out zero gradient into NaN
    norm = torch.where(nonzero, squared, torch.ones_like(squared)).sqrt()  # [..., 1]
    return scaled / norm


def _check_ls(ls: int | Sequence[int]) -> list[int]:
    if isinstance(ls, int):
        ls = [ls]
    elif isinstance(ls, Sequence):
        ls = list(ls)
    else:
        raise ValueError(f"ls must be an int or a sequence of ints, got {ls!r}")
    for l in ls:
        if not isinstance(l, int) or isinstance(l, bool) or l < 0:
            raise ValueError(f"spherical harmonics order must be a non-negative int, got {l!r}")
    return ls


def spherical_harmonics(
    ls: int | Sequence[int],
    vectors: Tensor,
    normalize: bool = True,
    normalization: str = "component",
) -> Tensor:
    r"""Real spherical harmonics :math:`Y^l(r)` for each ``l`` in ``ls``, concatenated.

    Args:
        ls (int or list of int): the orders, in output order (repeats allowed).
        vectors (Tensor): ``[..., 3]`` vectors ``(x, y, z)``.
        normalize (bool, optional): evaluate at :math:`r/|r|` (``True``) or give the solid
            harmonics :math:`|r|^l Y^l(\hat r)` (``False``). (default: ``True``)
        normalization (str, optional): ``"component"``
            (:math:`\sum_m (Y^l_m)^2 = 2l+1` on the sphere), ``"norm"`` (:math:`=1`) or
            ``"integral"`` (:math:`\int (Y^l_m)^2 d\Omega = 1`). (default: ``"component"``)

    Returns:
        Tensor ``[..., sum(2l+1)]``. At :math:`r = 0`: :math:`Y^0` is its constant and
        :math:`Y^{l>0} = 0`, with finite gradients.

    Example:
        >>> y = spherical_harmonics([0, 1], torch.tensor([[0.0, 0.0, 2.0]]))
        >>> y  # Y^1 = sqrt(3) r / |r|, order (x, y, z)
        tensor([[1.0000, 0.0000, 0.0000, 1.7321]])
    """
    ls = _check_ls(ls)
    if not isinstance(vectors, Tensor) or vectors.shape[-1:] != (3,):
        shape = tuple(vectors.shape) if isinstance(vectors, Tensor) else type(vectors).__name__
        raise ValueError(f"vectors must be a tensor of shape [..., 3], got {shape}")
    if not vectors.is_floating_point():
        raise TypeError(f"vectors must be a floating tensor, got dtype {vectors.dtype}")
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    if not ls:
        return vectors.new_zeros((*vectors.shape[:-1], 0))

    lmax = max(ls)
    r = _unit_vectors(vectors) if normalize else vectors
    x, y, z = r.unbind(-1)
    polar, r2 = y, (r * r).sum(-1)  # Z = y, and |r|^2 (1 on the sphere, 0 at the origin)
    diagonal, a, b = _recurrence(lmax)

    # cos_sin[m] = (Re, Im) of (z + i x)^m = sin^m(theta) (cos m phi, sin m phi)
    cos_sin = [(torch.ones_like(x), torch.zeros_like(x))]
    for _ in range(lmax):
        c, s = cos_sin[-1]
        cos_sin.append((z * c - x * s, z * s + x * c))

    # legendre[l][m] = q_lm(Z), the normalised P_l^m / sin^m, by the stable recurrence
    legendre: list[list[Tensor]] = [[] for _ in range(lmax + 1)]
    for m in range(lmax + 1):
        legendre[m].append(torch.full_like(x, diagonal[m]))
        for l in range(m + 1, lmax + 1):
            value = a[l, m] * polar * legendre[l - 1][m]
            if l >= m + 2:
                value = value - b[l, m] * r2 * legendre[l - 2][m]
            legendre[l].append(value)

    sqrt2 = math.sqrt(2.0)
    blocks = []
    for l in ls:
        if normalization == "component":
            factor = 1.0
        elif normalization == "norm":
            factor = 1.0 / math.sqrt(2 * l + 1)
        else:
            factor = 1.0 / math.sqrt(4 * math.pi)
        row = [sqrt2 * legendre[l][k] * cos_sin[k][1] for k in range(l, 0, -1)]  # m = -l..-1
        row.append(legendre[l][0])  # m = 0
        row += [sqrt2 * legendre[l][k] * cos_sin[k][0] for k in range(1, l + 1)]  # m = 1..l
        block = torch.stack(row, dim=-1)  # [..., 2l+1]
        blocks.append(block * factor if factor != 1.0 else block)
    return torch.cat(blocks, dim=-1)


#: The tutorial's names: both are the (fully differentiable) :func:`spherical_harmonics`.
spherical_harmonics_xyz = spherical_harmonics
spherical_harmonics_xyz_backwardable = spherical_harmonics

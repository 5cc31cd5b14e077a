r"""Real spherical harmonics in the basis of docs/conventions.md (polar axis ``y``).

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

import torch
from torch import Tensor

from ..checks import require_bool, require_choice, require_floating, require_int

__all__ = [
    "spherical_harmonics",
    "spherical_harmonics_xyz",
    "spherical_harmonics_xyz_backwardable",
]

_NORMALIZATIONS = ("component", "norm", "integral")


_Table = dict[tuple[int, int], float]
# a plain dict, not functools.cache: torch.compile warns about tracing through a cache
_RECURRENCES: dict[int, tuple[_Table, _Table]] = {}


def _recurrence(lmax: int) -> tuple[_Table, _Table]:
    """:func:`_recurrence_tables`, computed once per ``lmax``."""
    if lmax not in _RECURRENCES:
        _RECURRENCES[lmax] = _recurrence_tables(lmax)
    return _RECURRENCES[lmax]


def _recurrence_tables(lmax: int) -> tuple[_Table, _Table]:
    r"""Tables of the Legendre recurrence in monic form, for :math:`0 \le m \le l \le l_{max}`.

    The normalised :math:`q_{lm} = \sqrt{4\pi} N_{lm} P^m_l / \sin^m\theta` ('component')
    obey :math:`q_{mm} = \sqrt{(2m+1)/(2m)}\, q_{m-1,m-1}` (:math:`q_{00} = 1`) and
    :math:`q_{lm} = a_{lm} Z q_{l-1,m} - b_{lm} r^2 q_{l-2,m}` with
    :math:`a_{lm} = \sqrt{\frac{(2l+1)(2l-1)}{(l-m)(l+m)}}`,
    :math:`b_{lm} = \sqrt{\frac{(2l+1)(l+m-1)(l-m-1)}{(2l-3)(l-m)(l+m)}}`. Writing
    :math:`q_{lm} = c_{lm} p_{lm}` with :math:`c_{lm} = a_{lm} c_{l-1,m}`, :math:`c_{mm} = q_{mm}`,
    takes the :math:`a_{lm}` out of the loop:

    .. math::
        p_{mm} = 1, \quad p_{m+1,m} = Z, \quad
        p_{lm} = Z p_{l-1,m} - \beta_{lm} r^2 p_{l-2,m}, \quad
        \beta_{lm} = b_{lm} c_{l-2,m} / c_{lm}.

    Returns ``(beta, c)``, keyed by ``(l, m)``.
    """
    beta, c = {}, {}
    for m in range(lmax + 1):
        c[m, m] = math.prod([math.sqrt((2 * k + 1) / (2 * k)) for k in range(1, m + 1)])
        for l in range(m + 1, lmax + 1):
            c[l, m] = c[l - 1, m] * math.sqrt((2 * l + 1) * (2 * l - 1) / ((l - m) * (l + m)))
            if l >= m + 2:
                b = math.sqrt(
                    (2 * l + 1) * (l + m - 1) * (l - m - 1) / ((2 * l - 3) * (l - m) * (l + m))
                )
                beta[l, m] = b * c[l - 2, m] / c[l, m]
    return beta, c


def _unit_vectors(vectors: Tensor) -> Tensor:
    r"""``v / |v|`` without overflow, underflow or NaN gradients; ``0`` at ``v = 0``.

    With :math:`s = \max_i |v_i|` (``1`` at the origin), :math:`w = v / s` has
    :math:`1 \le |w|^2 \le 3` and :math:`v / |v| = w / |w|` for every :math:`s > 0`, so
    :math:`s` is held constant for autograd (no gradient flows through the max). At the
    origin :math:`|w|^2 = 0` is clamped to ``1``: the value is ``0`` and the Jacobian ``I``.
    Computed in float64 and rounded once to the input dtype: the steep high-``l`` harmonics
    near the poles magnify the rounding of :math:`v/|v|` (float32 ``l = 10`` errors drop by a
    third in RMS), and three components cost little next to the harmonics.
    """
    work = vectors if vectors.device.type == "mps" else vectors.double()  # mps has no float64
    with torch.no_grad():
        scale = work.abs().amax(dim=-1, keepdim=True)  # [..., 1]
        scale = scale.masked_fill_(scale == 0, 1.0)
    scaled = work / scale  # [..., 3], max |.| is exactly 1 (or all 0)
    if torch.compiler.is_compiling():
        # the compiler fuses these; the matmuls below would make autograd guard on the
        # number of rows, a data-dependent size under compile
        squared = (scaled * scaled).sum(-1, keepdim=True)  # [..., 1]
        return (scaled * squared.clamp_min(1.0).rsqrt()).to(vectors.dtype)  # [..., 3]
    ones = scaled.new_ones(3, 1)
    # row sums and broadcasts by matmul: their backward is a matmul, not a slow size-3 reduction
    squared = (scaled * scaled) @ ones  # [..., 1], in [1, 3], or 0 at the origin
    inverse_norm = squared.clamp_min(1.0).rsqrt()  # [..., 1]
    return (scaled * (inverse_norm @ ones.T)).to(vectors.dtype)  # [..., 3]


def _check_ls(ls: int | Sequence[int]) -> list[int]:
    if isinstance(ls, int):
        ls = [ls]
    elif isinstance(ls, Sequence):
        ls = list(ls)
    else:
        raise TypeError(f"ls must be an int or a sequence of ints, got {ls!r}")
    return [require_int(l, "spherical harmonics order", minimum=0) for l in ls]


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
    require_floating(vectors, "vectors")
    require_bool(normalize, "normalize")
    require_choice(normalization, "normalization", _NORMALIZATIONS)
    if not ls:
        return vectors.new_zeros((*vectors.shape[:-1], 0))

    lmax = max(ls)
    r = _unit_vectors(vectors) if normalize else vectors
    if normalization == "component":
        factors = [1.0] * (lmax + 1)
    elif normalization == "norm":
        factors = [1.0 / math.sqrt(2 * l + 1) for l in range(lmax + 1)]
    else:
        factors = [1.0 / math.sqrt(4 * math.pi)] * (lmax + 1)

    blocks = {0: r.new_full((1,), factors[0]).expand(*r.shape[:-1], 1)}  # Y^0 is a constant
    if lmax >= 1:
        blocks[1] = r * (math.sqrt(3.0) * factors[1])  # Y^1 = sqrt(3) r, order (x, y, z)
    if lmax >= 2:
        blocks.update(_higher_orders(r, lmax, factors))
    return torch.cat([blocks[l] for l in ls], dim=-1)  # [..., sum(2l+1)]


def _higher_orders(r: Tensor, lmax: int, factors: list[float]) -> dict[int, Tensor]:
    r"""The blocks :math:`Y^l` for :math:`2 \le l \le l_{max}` at ``r`` (unit or not).

    :math:`Y^l_{\pm m} = \sqrt2 f_l c_{lm} p_{lm}(Z, r^2) (\cos, \sin)_m` and
    :math:`Y^l_0 = f_l c_{l0} p_{l0}` (:func:`_recurrence`; :math:`f_l` the normalization),
    where :math:`(\cos, \sin)_m = ` (Re, Im) of :math:`(z + ix)^m`. All constants are
    folded into one multiplication per :math:`(l, m)`.
    """
    # contiguous columns: every op below is a dense elementwise op on [...] tensors
    x, y, z = r.movedim(-1, 0).contiguous().unbind(0)  # [...] each
    polar = y  # Z = y
    r2 = torch.addcmul(torch.addcmul(x * x, y, y), z, z)  # |r|^2: 1 on the sphere, 0 at 0
    polar2 = polar * polar  # [...]
    beta, c = _recurrence(lmax)

    # cos_sin[m] = (Re, Im) of (z + i x)^m = sin^m(theta) (cos m phi, sin m phi), m >= 1
    cos_sin = {1: (z, x)}
    for m in range(2, lmax + 1):
        cos, sin = cos_sin[m - 1]
        cos_sin[m] = (torch.addcmul(z * cos, x, sin, value=-1.0), torch.addcmul(z * sin, x, cos))

    # p[l, m] by the monic recurrence; p[m, m] = 1 is left out (a number)
    p: dict[tuple[int, int], Tensor] = {}
    for m in range(lmax):
        p[m + 1, m] = polar
        if m + 2 <= lmax:
            p[m + 2, m] = torch.add(polar2, r2, alpha=-beta[m + 2, m])
        for l in range(m + 3, lmax + 1):
            p[l, m] = torch.addcmul(polar * p[l - 1, m], r2, p[l - 2, m], value=-beta[l, m])

    blocks = {}
    for l in range(2, lmax + 1):
        sines, cosines = [], []
        for m in range(1, l + 1):
            weight = math.sqrt(2.0) * factors[l] * c[l, m]
            scaled = weight * p[l, m] if m < l else weight  # [...] or a number
            cosines.append(scaled * cos_sin[m][0])
            sines.append(scaled * cos_sin[m][1])
        zonal = factors[l] * c[l, 0] * p[l, 0]  # m = 0
        blocks[l] = torch.stack([*sines[::-1], zonal, *cosines], dim=-1)  # [..., 2l+1]
    return blocks


#: The tutorial's names: both are the (fully differentiable) :func:`spherical_harmonics`.
spherical_harmonics_xyz = spherical_harmonics
spherical_harmonics_xyz_backwardable = spherical_harmonics

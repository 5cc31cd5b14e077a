r"""Radial models: learned functions of the edge length that weight the kernel paths.

A radial model maps edge lengths :math:`r` to one weight per kernel path,

.. math::
    R_c(r) = u(r / r_c) \sum_h W_{ch}\, \sigma\Big(\sum_b W_{hb} B_b(r)\Big),

where :math:`B_b` is a fixed radial basis (:class:`CosineBasis`, :class:`GaussianBasis`,
:class:`BesselBasis`), :math:`W` a small multi-layer perceptron without biases
(:class:`RadialMLP`) and :math:`u` a smooth cutoff envelope (:func:`polynomial_cutoff`)
that makes :math:`R_c` and :math:`R_c'` vanish at :math:`r_c` = ``max_radius`` and
:math:`R_c = 0` beyond.

Every model follows the radial model contract of ``docs/conventions.md``: ``Model(out_dim)``
(all other arguments bound with :func:`functools.partial`) is a module whose forward takes
edge lengths ``[num_edges]`` and returns ``[num_edges, out_dim]``, and which exposes
``max_radius`` (the default cutoff radius of the convolution), ``out_dim`` and
``number_of_basis``.

>>> from functools import partial
>>> import torch
>>> RadialModel = partial(CosineBasisModel, max_radius=3.0, number_of_basis=3, h=100, L=2,
...                       act=torch.tanh)
>>> model = RadialModel(5)
>>> model(torch.tensor([0.5, 1.0, 3.0, 4.0])).shape
torch.Size([4, 5])
>>> model(torch.tensor([3.0, 4.0])).abs().max().item()
0.0
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .activations import Softplus
from .checks import require, require_floating, require_int, require_positive
from .constants import ExactConstants

F64 = torch.float64

__all__ = [
    "BesselBasis",
    "BesselRadialModel",
    "CosineBasis",
    "CosineBasisModel",
    "GaussianBasis",
    "GaussianRadialModel",
    "PolynomialCutoff",
    "RadialBasis",
    "RadialMLP",
    "edge_lengths",
    "polynomial_cutoff",
]

Activation = Callable[[Tensor], Tensor]

# Number of trapezoid nodes on [0, max_radius] used to compute the basis normalization.
_QUADRATURE_NODES = 4097
# Below this |k r|, sin(k r) / (k r) is evaluated by its Taylor series (see ``_sinc``).
_SINC_SERIES_BELOW = 0.1


def _check_edge_length(edge_length: object) -> Tensor:
    """The check of the public entries that take edge lengths: 1-D, floating, >= 0."""
    edge_length = require_floating(edge_length, "edge_length")
    if edge_length.dim() != 1:
        raise ValueError(
            f"edge_length must be 1-D [num_edges], got shape {tuple(edge_length.shape)}"
        )
    require(
        (edge_length >= 0).all(), ValueError,
        "edge_length must be >= 0 (lengths of edge vectors), got negative or NaN values",
    )  # fmt: skip
    return edge_length


def edge_lengths(edge_vec: Tensor) -> Tensor:
    r""":math:`|r|` of every edge vector ``[E, 3]``, with a zero (not NaN) gradient at zero."""
    squared = edge_vec.pow(2).sum(dim=-1)  # [E]
    nonzero = squared > 0
    return torch.where(nonzero, squared, torch.ones_like(squared)).sqrt() * nonzero


def polynomial_cutoff(edge_length: Tensor, max_radius: float, p: int = 6) -> Tensor:
    r"""Smooth cutoff envelope, :math:`1` at :math:`r = 0` and flat :math:`0` from :math:`r_c` on.

    With :math:`x = \min(\max(r, 0) / r_c, 1)`,

    .. math::
        u(x) = 1 - \frac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \frac{p(p+1)}{2} x^{p+2},
        \qquad
        u'(x) = -\frac{p(p+1)(p+2)}{2} x^{p-1} (1 - x)^2,

    so :math:`u` decreases monotonically from 1 to 0, and :math:`u`, :math:`u'` and
    :math:`u''` all vanish at :math:`x = 1` (the envelope of DimeNet without its
    :math:`1/x` factor). Beyond :math:`r_c` the value and every derivative are exactly 0.

    Args:
        edge_length (torch.Tensor): lengths :math:`r`, any shape, floating point.
        max_radius (float): the cutoff radius :math:`r_c > 0`.
        p (int, optional): the polynomial order; :math:`u'(0) = 0` for :math:`p \ge 2`.
            (default: :obj:`6`)

    Returns:
        torch.Tensor: :math:`u(r / r_c)`, same shape and dtype as ``edge_length``.

    >>> polynomial_cutoff(torch.tensor([0.0, 1.0, 2.0, 3.0]), max_radius=2.0)
    tensor([1.0000, 0.8555, 0.0000, 0.0000])
    """
    edge_length = require_floating(edge_length, "edge_length")
    max_radius = require_positive(max_radius, "max_radius")
    p = require_int(p, "p", minimum=1)
    return _polynomial_cutoff(edge_length, max_radius, p)


def _polynomial_cutoff(edge_length: Tensor, max_radius: float, p: int) -> Tensor:
    """:func:`polynomial_cutoff` on checked arguments."""
    x = (edge_length / max_radius).clamp(0.0, 1.0)  # same shape as edge_length
    a = (p + 1) * (p + 2) / 2
    b = p * (p + 2)
    c = p * (p + 1) / 2
    u = 1.0 - x.pow(p) * (a - x * (b - c * x))  # Horner form, same shape as edge_length
    # From x = 1 on, select an exact 0: value and gradients are then exactly 0 (the
    # polynomial's own rounding would leave ~1e-16).
    return torch.where(x < 1.0, u, torch.zeros_like(u))


class PolynomialCutoff(nn.Module):
    r"""Module form of :func:`polynomial_cutoff`: :math:`u(r / r_c)`, zero from :math:`r_c` on.

    .. math::
        u(x) = 1 - \frac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \frac{p(p+1)}{2} x^{p+2}

    Args:
        max_radius (float): the cutoff radius :math:`r_c > 0`.
        p (int, optional): the polynomial order. (default: :obj:`6`)

    Shapes:
        - **input:** lengths :math:`(*)`
        - **output:** envelope :math:`(*)`
    """

    def __init__(self, max_radius: float, p: int = 6) -> None:
        super().__init__()
        self.max_radius = require_positive(max_radius, "max_radius")
        self.p = require_int(p, "p", minimum=1)

    def forward(self, edge_length: Tensor) -> Tensor:
        return self.evaluate(require_floating(edge_length, "edge_length"))

    def evaluate(self, edge_length: Tensor) -> Tensor:
        """The envelope at floating ``edge_length``, not validated (same shape)."""
        return _polynomial_cutoff(edge_length, self.max_radius, self.p)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(max_radius={self.max_radius}, p={self.p})"


class RadialBasis(ExactConstants):
    r"""Base class of the fixed radial bases :math:`B_b(r)`, :math:`b = 1..n`.

    Subclasses implement :meth:`evaluate`; :meth:`forward` validates the edge lengths first.

    Args:
        max_radius (float): the radius :math:`r_c` the basis is laid out on.
        number_of_basis (int): the number of basis functions.

    Shapes:
        - **input:** edge lengths :math:`(|\mathcal{E}|)`, all :math:`\ge 0`
        - **output:** basis values :math:`(|\mathcal{E}|, \text{number\_of\_basis})`
    """

    def __init__(self, max_radius: float, number_of_basis: int) -> None:
        super().__init__()
        self.max_radius = require_positive(max_radius, "max_radius")
        self.number_of_basis = require_int(number_of_basis, "number_of_basis", minimum=1)

    def evaluate(self, edge_length: Tensor) -> Tensor:
        """The basis at ``edge_length [E]``, not validated: ``[E, number_of_basis]``."""
        raise NotImplementedError

    def _register_centers(self) -> None:
        """The constant ``centers``, ``linspace(0, max_radius, number_of_basis)``, of the
        bases centred evenly on :math:`[0, r_c]`."""
        self.register_constant(
            "centers",
            torch.linspace(0.0, self.max_radius, self.number_of_basis, dtype=F64),
            persistent=True,  # (in the state_dicts saved so far)
        )  # [number_of_basis]

    def forward(self, edge_length: Tensor) -> Tensor:
        """The basis at ``edge_length [E]`` (checked: 1-D, floating, >= 0):
        ``[E, number_of_basis]``."""
        return self.evaluate(_check_edge_length(edge_length))

    def rms(self) -> float:
        r"""Root mean square of the basis vector over :math:`[0, r_c]`.

        .. math::
            \Big(\frac{1}{r_c} \int_0^{r_c} \sum_b B_b(r)^2 \, dr\Big)^{1/2},

        computed deterministically in float64 (trapezoid rule on a fine grid).
        """
        exact = copy.deepcopy(self).to(torch.float64)  # its constants exact in float64
        r = torch.linspace(
            0.0, self.max_radius, _QUADRATURE_NODES, dtype=torch.float64, device=_device(self)
        )
        with torch.no_grad():
            square = exact.evaluate(r).pow(2).sum(-1)  # [nodes]
        return math.sqrt(torch.trapezoid(square, r).item() / self.max_radius)

    def extra_repr(self) -> str:
        return f"max_radius={self.max_radius}, number_of_basis={self.number_of_basis}"


def _device(module: nn.Module) -> torch.device:
    tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


class CosineBasis(RadialBasis):
    r"""The tutorial's basis: :math:`\cos^2` bumps centred on ``linspace(0, max_radius, n)``.

    With the step :math:`s = r_c / (n - 1)` and centres :math:`c_b = b\,s`,
    :math:`b = 0..n-1`,

    .. math::
        B_b(r) = \begin{cases} \cos^2\big(\frac{\pi}{2} \frac{r - c_b}{s}\big)
        & |r - c_b| < s \\ 0 & \text{otherwise,} \end{cases}

    which is what the tutorial's
    ``basis = lambda x: x.div(step).add(1).relu().sub(2).neg().relu().add(1).mul(math.pi / 2)
    .cos().pow(2)`` evaluates at :math:`x = r - c_b` (up to rounding: the lambda leaves
    :math:`\cos^2(\pi/2) \approx 10^{-15}` outside the bump, this is exactly 0). The
    bumps are a partition of unity on :math:`[0, r_c]`: :math:`\sum_b B_b(r) = 1`. The last
    bump reaches past :math:`r_c` (to :math:`r_c + s`); :class:`CosineBasisModel` cuts it
    with an envelope.

    Args:
        max_radius (float): the last centre :math:`r_c`.
        number_of_basis (int): the number of bumps :math:`n \ge 2` (the width of a bump is
            the spacing of the centres).

    >>> CosineBasis(2.0, 3)(torch.tensor([0.0, 0.5, 1.0]))
    tensor([[1.0000, 0.0000, 0.0000],
            [0.5000, 0.5000, 0.0000],
            [0.0000, 1.0000, 0.0000]])
    """

    def __init__(self, max_radius: float, number_of_basis: int) -> None:
        super().__init__(max_radius, number_of_basis)
        if self.number_of_basis < 2:
            raise ValueError(
                "CosineBasis needs number_of_basis >= 2: the width of a bump is the spacing of "
                f"the centres linspace(0, max_radius, number_of_basis), got {number_of_basis}"
            )
        self.step = self.max_radius / (self.number_of_basis - 1)
        self._register_centers()

    def evaluate(self, edge_length: Tensor) -> Tensor:
        u = (edge_length.unsqueeze(-1) - self.centers) / self.step  # [E, number_of_basis]
        bump = torch.cos(u * (math.pi / 2)).pow(2)  # [E, number_of_basis]
        return torch.where(u.abs() < 1.0, bump, torch.zeros_like(bump))  # [E, number_of_basis]


class GaussianBasis(RadialBasis):
    r"""Gaussians of width :math:`\sigma` centred on ``linspace(0, max_radius, n)``.

    .. math::
        B_b(r) = \exp\Big(-\frac{(r - c_b)^2}{2 \sigma^2}\Big), \qquad
        c_b = b\,\sigma, \quad \sigma = \frac{r_c}{n - 1}

    (:math:`\sigma = r_c` when :math:`n = 1`, with the single centre at 0).

    Args:
        max_radius (float): the last centre :math:`r_c`.
        number_of_basis (int): the number of Gaussians :math:`n \ge 1`.
    """

    def __init__(self, max_radius: float, number_of_basis: int) -> None:
        super().__init__(max_radius, number_of_basis)
        self.sigma = self.max_radius / max(self.number_of_basis - 1, 1)
        self._register_centers()

    def evaluate(self, edge_length: Tensor) -> Tensor:
        u = (edge_length.unsqueeze(-1) - self.centers) / self.sigma  # [E, number_of_basis]
        return torch.exp(-0.5 * u.pow(2))  # [E, number_of_basis]


def _sinc(x: Tensor) -> Tensor:
    r""":math:`\sin(x) / x`, equal to 1 at 0, with finite first and second derivatives.

    ``torch.sinc`` has a NaN second derivative at 0, hence the series near 0.
    """
    small = x.abs() < _SINC_SERIES_BELOW
    safe_x = torch.where(small, torch.ones_like(x), x)
    x2 = x.pow(2)
    series = 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0))
    return torch.where(small, series, torch.sin(safe_x) / safe_x)


class BesselBasis(RadialBasis):
    r"""Spherical Bessel functions of order 0 with nodes at :math:`r_c` (DimeNet's basis).

    .. math::
        B_n(r) = \sqrt{\frac{2}{r_c}}\, \frac{\sin(n \pi r / r_c)}{r}, \qquad n = 1..N,

    continued by its limit :math:`\sqrt{2 / r_c}\, n \pi / r_c` at :math:`r = 0` (evaluated
    as :math:`\sqrt{2/r_c}\,k_n \operatorname{sinc}(k_n r)` with :math:`k_n = n\pi/r_c`, so
    that first and second derivatives are finite at 0).

    Args:
        max_radius (float): the radius :math:`r_c` where every :math:`B_n` vanishes.
        number_of_basis (int): the number of frequencies :math:`N \ge 1`.
    """

    def __init__(self, max_radius: float, number_of_basis: int) -> None:
        super().__init__(max_radius, number_of_basis)
        self.prefactor = math.sqrt(2.0 / self.max_radius)
        self.register_constant(
            "frequencies",
            torch.arange(1, self.number_of_basis + 1, dtype=F64) * (math.pi / self.max_radius),
            persistent=True,  # (in the state_dicts saved so far)
        )  # [number_of_basis]

    def evaluate(self, edge_length: Tensor) -> Tensor:
        kr = edge_length.unsqueeze(-1) * self.frequencies  # [E, number_of_basis]
        return self.prefactor * self.frequencies * _sinc(kr)  # [E, number_of_basis]


def _default_act() -> Activation:
    return Softplus(beta=5)


def _act_name(act: Activation) -> str:
    if isinstance(act, nn.Module) or not hasattr(act, "__name__"):
        return repr(act)
    return f"{getattr(act, '__module__', None) or ''}.{act.__name__}".lstrip(".")


class RadialMLP(nn.Module):
    r"""A radial basis, a bias-free perceptron and a smooth cutoff envelope.

    .. math::
        R_c(r) = u(r / r_c) \sum_h W_{ch}\, \sigma\Big( \dots
        \sigma\Big(\frac{1}{\beta} \sum_b W_{hb} B_b(r)\Big) \dots \Big),

    with ``L`` hidden layers of width ``h``, activation :math:`\sigma` = ``act`` and the
    envelope :math:`u` of :func:`polynomial_cutoff` (:math:`p = 6`). ``L = 0`` is the single
    linear map :math:`R_c(r) = u(r/r_c)\,\beta^{-1} \sum_b W_{cb} B_b(r)`.

    **Normalization.** Weights are stored as :math:`\mathcal{N}(0, 1)` samples and scaled in
    the forward: the first layer by :math:`1/\beta`, where :math:`\beta` is the basis'
    :meth:`RadialBasis.rms` (so that the first pre-activation has unit second moment for
    :math:`r` uniform on :math:`[0, r_c]`, whatever the basis' scale or sparsity), every
    later layer by :math:`1/\sqrt{\text{fan\_in}} = 1/\sqrt{h}`. With an activation of unit
    second moment (``rescaled_act``), the output before the envelope is :math:`O(1)`, which
    the variance-preserving normalization of the kernel assumes.

    **Cutoff.** The radius graph drops every pair beyond ``max_radius``. For the
    convolution to be continuous (with continuous forces) when an atom crosses the cutoff,
    :math:`R_c` and :math:`R_c'` vanish at :math:`r_c` (:math:`u = u' = u'' = 0` there) and
    :math:`R_c` is exactly 0, with zero gradients, beyond. This deviates from the e3nn
    tutorial, whose radial functions do not vanish at ``max_radius``.

    Args:
        out_dim (int): the number of outputs :math:`c` (the number of kernel paths).
        basis (RadialBasis): the radial basis; its ``max_radius`` is the cutoff.
        h (int, optional): the width of the hidden layers. (default: :obj:`100`)
        L (int, optional): the number of hidden layers. (default: :obj:`2`)
        act (callable, optional): the activation :math:`\sigma`, a function or module,
            ideally of unit second moment under :math:`\mathcal{N}(0, 1)`; :obj:`None`
            uses ``rescaled_act.Softplus(beta=5)``. (default: :obj:`None`)

    Shapes:
        - **input:** edge lengths :math:`(|\mathcal{E}|)`, all :math:`\ge 0`
        - **output:** radial weights :math:`(|\mathcal{E}|, \text{out\_dim})`
    """

    def __init__(
        self,
        out_dim: int,
        basis: RadialBasis,
        h: int = 100,
        L: int = 2,
        act: Activation | None = None,
    ) -> None:
        super().__init__()
        self.out_dim = require_int(out_dim, "out_dim", minimum=1)
        if not isinstance(basis, RadialBasis):
            raise TypeError(f"basis must be a RadialBasis, got {type(basis).__name__}")
        self.h = require_int(h, "h", minimum=1)
        self.L = require_int(L, "L", minimum=0)
        if act is None:
            act = _default_act()
        if not callable(act):
            raise TypeError(f"act must be callable, got {type(act).__name__} {act!r}")
        self.basis = basis
        self.act = act
        self.cutoff = PolynomialCutoff(basis.max_radius)
        self.max_radius = basis.max_radius
        self.number_of_basis = basis.number_of_basis

        widths = [self.number_of_basis] + [self.h] * self.L + [self.out_dim]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(fan_out, fan_in))
            for fan_in, fan_out in itertools.pairwise(widths)
        )
        self.scales = [1.0 / basis.rms()] + [self.h**-0.5] * self.L
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Draw every weight from :math:`\mathcal{N}(0, 1)` (the scales live in the forward)."""
        for weight in self.weights:
            nn.init.normal_(weight)

    def hidden_features(self, edge_length: Tensor, envelope: bool = True) -> Tensor:
        r"""The last hidden layer, scaled by the envelope: :math:`u(r/r_c)\, h(r)`.

        The model is linear in it: ``forward(r) == hidden_features(r) @ output_weight.T``
        (the envelope is applied before the last layer, which is the same map). A
        consumer that wants the outputs in another order (or only some of them) can
        therefore permute the rows of :attr:`output_weight` instead of the outputs.
        For ``L = 0`` the "hidden layer" is the basis itself.

        Args:
            edge_length (Tensor): edge lengths :math:`(|\mathcal{E}|)`, all :math:`\ge 0`.
            envelope (bool, optional): multiply by the envelope :math:`u(r/r_c)`; without
                it, a consumer applies ``self.cutoff`` itself, e.g. on a narrower tensor.
                (default: ``True``)

        Returns:
            Tensor :math:`(|\mathcal{E}|, h)` (or :math:`(|\mathcal{E}|, \text{number\_of\_basis})`
            for ``L = 0``).

        Example:
            >>> model = RadialMLP(4, CosineBasis(2.0, 3), h=5, L=1, act=torch.tanh)
            >>> r = torch.tensor([0.5, 1.5, 2.5])
            >>> torch.allclose(model.hidden_features(r) @ model.output_weight.T, model(r))
            True
        """
        return self._hidden_features(_check_edge_length(edge_length), envelope)

    def _hidden_features(self, edge_length: Tensor, envelope: bool = True) -> Tensor:
        """:meth:`hidden_features` on checked edge lengths (what a kernel calls: its edge
        lengths are norms of checked vectors)."""
        x = self.basis.evaluate(edge_length)  # [E, number_of_basis]
        # (no slicing of the ParameterList: it would re-wrap functional_call's tensors)
        for weight, scale in itertools.islice(zip(self.weights, self.scales), self.L):
            x = self.act(F.linear(x, weight * scale))  # [E, h]
        if not envelope:
            return x  # [E, h]
        return x * self.cutoff.evaluate(edge_length).unsqueeze(-1)  # [E, h]

    @property
    def output_weight(self) -> Tensor:
        r"""The last layer's matrix, normalization included: ``[out_dim, h]`` (differentiable).

        See :meth:`hidden_features`.
        """
        return self.weights[-1] * self.scales[-1]  # [out_dim, h]

    def forward(self, edge_length: Tensor) -> Tensor:
        return self.evaluate(_check_edge_length(edge_length))  # [E, out_dim]

    def evaluate(self, edge_length: Tensor) -> Tensor:
        """The radial weights at checked ``edge_length [E]``: ``[E, out_dim]``."""
        return F.linear(self._hidden_features(edge_length), self.output_weight)  # [E, out_dim]

    def __repr__(self) -> str:
        if type(self) is RadialMLP:
            basis = f"basis={self.basis!r}"
        else:
            basis = self.basis.extra_repr()
        return (
            f"{self.__class__.__name__}(out_dim={self.out_dim}, {basis}, h={self.h}, "
            f"L={self.L}, act={_act_name(self.act)})"
        )


class _BasisRadialModel(RadialMLP):
    """A :class:`RadialMLP` on the basis named by the subclass (its :attr:`basis_class`)."""

    basis_class: type[RadialBasis]
    default_number_of_basis: int

    def __init__(
        self,
        out_dim: int,
        max_radius: float,
        number_of_basis: int | None = None,
        h: int = 100,
        L: int = 2,
        act: Activation | None = None,
    ) -> None:
        if number_of_basis is None:
            number_of_basis = self.default_number_of_basis
        super().__init__(out_dim, self.basis_class(max_radius, number_of_basis), h, L, act)


_MODEL_TEXT = r"""

    .. math::
        R_c(r) = u(r / r_c) \sum_h W_{{ch}}\, \sigma\Big(\frac{{1}}{{\beta}} \sum_b W_{{hb}}
        B_b(r)\Big), \qquad B_b(r) = {basis}

    (shown for ``L = 1``; see :class:`RadialMLP` for the normalization :math:`\beta` and the
    envelope :math:`u`). :math:`R_c` and :math:`R_c'` vanish at ``max_radius`` and
    :math:`R_c = 0` beyond, so that the convolution is continuous across the cutoff.{remark}

    Args:
        out_dim (int): the number of outputs (the number of kernel paths).
        max_radius (float): the cutoff radius :math:`r_c` ({max_radius}).
        number_of_basis (int, optional): {number_of_basis}. (default: :obj:`{default}`)
        h (int, optional): the width of the hidden layers. (default: :obj:`100`)
        L (int, optional): the number of hidden layers. (default: :obj:`2`)
        act (callable, optional): the activation; :obj:`None` uses
            ``rescaled_act.Softplus(beta=5)``. (default: :obj:`None`)

    Shapes:
        - **input:** edge lengths :math:`(|\mathcal{{E}}|)`, all :math:`\ge 0`
        - **output:** radial weights :math:`(|\mathcal{{E}}|, \text{{out\_dim}})`
"""


def _document(model: type[_BasisRadialModel], basis: str, remark: str = "", **arguments) -> None:
    """Complete ``model``'s docstring (its first line) with the formula of the model on the
    function ``basis`` :math:`B_b(r)`, a ``remark`` of its own, and the arguments every
    basis model shares (``arguments``: the notes on ``max_radius`` and ``number_of_basis``)."""
    model.__doc__ = (model.__doc__ or "").rstrip() + _MODEL_TEXT.format(
        basis=basis,
        remark=f" {remark}" if remark else "",
        default=model.default_number_of_basis,
        **arguments,
    )


class CosineBasisModel(_BasisRadialModel):
    """The tutorial's radial model: :class:`CosineBasis` bumps, a perceptron, an envelope."""

    basis_class = CosineBasis
    default_number_of_basis = 10


_document(
    CosineBasisModel,
    r"\cos^2\Big(\frac{\pi}{2} \frac{r - c_b}{s}\Big) \text{ on } |r - c_b| < s",
    "(The tutorial's model lets its last bump reach ``max_radius + step``.)",
    max_radius="also the last centre",
    number_of_basis="the number of bumps, :math:`\\ge 2`",
)


class GaussianRadialModel(_BasisRadialModel):
    """Radial model on :class:`GaussianBasis`, a perceptron and an envelope."""

    basis_class = GaussianBasis
    default_number_of_basis = 10


_document(
    GaussianRadialModel,
    r"e^{-(r - c_b)^2 / 2\sigma_b^2}",
    max_radius="also the last centre",
    number_of_basis="the number of Gaussians",
)


class BesselRadialModel(_BasisRadialModel):
    """Radial model on :class:`BesselBasis`, a perceptron and an envelope."""

    basis_class = BesselBasis
    default_number_of_basis = 8


_document(
    BesselRadialModel,
    r"\sqrt{\frac{2}{r_c}} \frac{\sin(b \pi r / r_c)}{r}",
    r":math:`R_c` is finite and smooth at :math:`r = 0`.",
    max_radius="the frequencies are multiples of :math:`\\pi / r_c`",
    number_of_basis="the number of frequencies",
)

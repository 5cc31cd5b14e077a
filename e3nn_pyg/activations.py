r"""Activation functions rescaled to unit second moment (the tutorial's ``rescaled_act``).

They sit at the bottom of the package, below the radial models that use them by default;
:mod:`e3nn_pyg.non_linearities.rescaled_act` is the tutorial's name for this module.

Every activation :math:`f` here is multiplied by the constant that makes its output have
unit second moment when its input is a standard normal variable,

.. math::
    \tilde f(x) = \frac{f(x)}{\sqrt{\mathbb{E}_{z \sim \mathcal{N}(0, 1)}\left[f(z)^2\right]}},
    \qquad \mathbb{E}\left[\tilde f(z)^2\right] = 1,

so that stacking layers neither blows up nor shrinks features whose components have unit
variance. The constants are computed once per activation (and hyper-parameters) by the
deterministic adaptive quadrature of :func:`second_moment`, exact to about ``1e-13``.

Every activation is a :class:`torch.nn.Module` (usable in :class:`torch.nn.Sequential`,
picklable) and the ready-made instances are callable on tensors:

>>> import torch
>>> from e3nn_pyg.non_linearities import rescaled_act
>>> round(rescaled_act.relu.scale ** 2, 12)  # E[relu(z)^2] = 1/2
2.0
>>> sp = rescaled_act.Softplus(beta=5)
>>> sp
Softplus(beta=5.0)
>>> sp(torch.zeros(2)).shape
torch.Size([2])
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import require_positive

__all__ = [
    "Absolute",
    "ReLU",
    "RescaledActivation",
    "ShiftedSoftplus",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "absolute",
    "relu",
    "second_moment",
    "sigmoid",
    "silu",
    "softplus",
    "swish",
    "tanh",
]

# -- quadrature ------------------------------------------------------------------------
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)
_RADIUS = 20.0  # the standard normal density is below 1e-87 beyond |x| = 20
_MAX_LEVELS = 40


def _panel_integrals(function, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """20-point Gauss-Legendre integral of ``f(x)^2 phi(x)`` over each panel ``[a, b]``."""
    half, mid = (b - a) / 2, (a + b) / 2  # [P]
    x = mid[:, None] + half[:, None] * _NODES  # [P, 20]
    with torch.no_grad():
        fx = function(torch.from_numpy(x))  # [P, 20]
    if not isinstance(fx, Tensor) or fx.shape != x.shape:
        raise ValueError(
            f"the activation must map a tensor of shape {tuple(x.shape)} to a tensor of the "
            f"same shape, got {getattr(fx, 'shape', type(fx))}"
        )
    fx = fx.detach().to(device="cpu", dtype=torch.float64).numpy()
    if not np.isfinite(fx).all():
        raise ValueError("the activation returned non-finite values on [-20, 20]")
    density = np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)  # [P, 20]
    return half * ((fx**2 * density) @ _WEIGHTS)  # [P]


def second_moment(function, tol: float = 1e-14) -> float:
    r"""The second moment :math:`\mathbb{E}[f(z)^2]` of ``function`` for
    :math:`z \sim \mathcal{N}(0, 1)`, by deterministic adaptive quadrature.

    The integral :math:`\int f(x)^2 \varphi(x)\,dx` is taken over :math:`[-20, 20]` (the
    Gaussian tail beyond is below ``1e-87``), starting from unit panels (so a kink at an
    integer such as ``0`` for ReLU sits on a panel boundary) and bisecting every panel
    whose 20-point Gauss-Legendre value disagrees with the sum over its two halves by more
    than its share of ``tol``.

    Args:
        function (callable): maps a float64 tensor to a float64 tensor of the same shape.
        tol (float, optional): target absolute error of the result. (default: ``1e-14``)

    Returns:
        float: :math:`\mathbb{E}[f(z)^2]`.

    Example:
        >>> round(second_moment(torch.relu), 14), round(second_moment(lambda x: x), 14)
        (0.5, 1.0)
    """
    if not callable(function):
        raise TypeError(f"second_moment needs a callable, got {type(function).__name__}")
    tol = require_positive(tol, "tol")
    edges = np.arange(-_RADIUS, _RADIUS + 1)  # unit panels, 0 is an edge
    a, b = edges[:-1], edges[1:]
    total = 0.0
    for level in range(_MAX_LEVELS):
        mid = (a + b) / 2
        whole = _panel_integrals(function, a, b)  # [P]
        halves = _panel_integrals(function, a, mid) + _panel_integrals(function, mid, b)  # [P]
        done = np.abs(halves - whole) <= tol * (b - a) / (2 * _RADIUS)
        if level == _MAX_LEVELS - 1:
            done[:] = True
        total += float(halves[done].sum())
        a, b, mid = a[~done], b[~done], mid[~done]
        if a.size == 0:
            break
        a, b = np.concatenate([a, mid]), np.concatenate([mid, b])
    return total


# -- rescaled activations --------------------------------------------------------------
_SCALES: dict[tuple, float] = {}


class RescaledActivation(torch.nn.Module):
    r"""Base class of the rescaled activations:
    :math:`\tilde f(x) = c\, f(x)` with :math:`c = \mathbb{E}[f(z)^2]^{-1/2}`.

    A subclass defines :meth:`function` (the raw :math:`f`) and, when :math:`f` has
    hyper-parameters, :meth:`hyper_parameters`; the constant :attr:`scale` is computed
    once per class and hyper-parameters and cached.

    Shapes:
        - **input:** any shape :math:`(*)`
        - **output:** the same shape :math:`(*)`
    """

    def __init__(self) -> None:
        super().__init__()
        key = (type(self), *self.hyper_parameters().items())
        if key not in _SCALES:
            _SCALES[key] = 1.0 / math.sqrt(second_moment(self.function))
        #: The constant :math:`c = \mathbb{E}[f(z)^2]^{-1/2}`.
        self.scale: float = _SCALES[key]

    def hyper_parameters(self) -> dict[str, float]:
        """The hyper-parameters of :math:`f`, shown in the repr (none by default)."""
        return {}

    def function(self, x: Tensor) -> Tensor:
        """The raw activation :math:`f`, before rescaling."""
        raise NotImplementedError(f"{type(self).__name__} must define function(x)")

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.function(x)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.hyper_parameters().items())


_SOFTPLUS_EXACT_ABOVE = 40.0


def _softplus(x: Tensor, beta: float) -> Tensor:
    r""":math:`\log(1 + e^{\beta x}) / \beta`, exact to rounding and overflow-free.

    Above :math:`\beta x = 40` it returns :math:`x`: the neglected
    :math:`\log(1 + e^{-\beta x}) / \beta < 5 \cdot 10^{-18} / \beta` is below float64's
    resolution of :math:`x` there, and :math:`e^{40}` does not overflow float32.
    """
    return F.softplus(x, beta=beta, threshold=_SOFTPLUS_EXACT_ABOVE)


def _parameter_free(name: str, function, doc: str) -> type[RescaledActivation]:
    """The class ``name`` of the rescaled ``function`` (an activation without
    hyper-parameters), defined in this module."""
    members = {"__doc__": doc, "__module__": __name__, "function": staticmethod(function)}
    return type(name, (RescaledActivation,), members)


Sigmoid = _parameter_free(
    "Sigmoid",
    torch.sigmoid,
    r""":math:`f(x) = 1 / (1 + e^{-x})`, rescaled (:math:`c \approx 1.846`).""",
)
Tanh = _parameter_free("Tanh", torch.tanh, r""":math:`f(x) = \tanh x`, rescaled (odd).""")
ReLU = _parameter_free(
    "ReLU", torch.relu, r""":math:`f(x) = \max(x, 0)`, rescaled (:math:`c = \sqrt 2`)."""
)
SiLU = _parameter_free(
    "SiLU", F.silu, r""":math:`f(x) = x / (1 + e^{-x})` (SiLU, also called swish), rescaled."""
)
Absolute = _parameter_free(
    "Absolute", torch.abs, r""":math:`f(x) = |x|` (even; already normalised, :math:`c = 1`)."""
)


class _SoftplusFamily(RescaledActivation):
    r"""A softplus of sharpness :math:`\beta > 0` (:attr:`beta`, its hyper-parameter)."""

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = require_positive(beta, "beta")
        super().__init__()

    def hyper_parameters(self) -> dict[str, float]:
        return {"beta": self.beta}


class Softplus(_SoftplusFamily):
    r""":math:`f(x) = \frac{1}{\beta} \log(1 + e^{\beta x})`, rescaled.

    Args:
        beta (float, optional): sharpness; :math:`\beta \to \infty` tends to ReLU.
            (default: ``1.0``)
    """

    def function(self, x: Tensor) -> Tensor:
        return _softplus(x, self.beta)


class ShiftedSoftplus(_SoftplusFamily):
    r""":math:`f(x) = \frac{1}{\beta} \left(\log(1 + e^{\beta x}) - \log 2\right)`
    (zero at zero, as in SchNet), rescaled.

    Args:
        beta (float, optional): sharpness. (default: ``1.0``)
    """

    def function(self, x: Tensor) -> Tensor:
        return _softplus(x, self.beta) - math.log(2.0) / self.beta


sigmoid = Sigmoid()
tanh = Tanh()
relu = ReLU()
silu = SiLU()
swish = silu
softplus = Softplus()
absolute = Absolute()

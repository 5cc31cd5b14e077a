r"""Norm activation: a non-linearity on the norm of every irrep copy, with a learnable
bias, that keeps the direction of the copy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..checks import require_features, require_positive
from ..o3 import Rs, RsLike
from ._common import Activation, activated_parity, as_module

__all__ = ["NormActivation"]


def _as_rs(spec: RsLike | Sequence[int]) -> Rs:
    """An ``Rs`` from an Rs-like or from capsule dimensionalities ``[2l+1, ...]``."""
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(d, int) for d in spec):
        for d in spec:
            if isinstance(d, bool) or d < 1 or d % 2 == 0:
                raise ValueError(
                    f"dimensionalities must be odd positive ints 2l+1 (one per irrep copy), "
                    f"got {d!r} in {list(spec)}"
                )
        return Rs([(1, (d - 1) // 2) for d in spec]).simplify()
    return Rs(spec)


class NormActivation(torch.nn.Module):
    r"""Applies a non-linearity to the norm of each irrep copy and keeps its direction.

    For each copy :math:`v \in \mathbb{R}^{2l+1}` of an irrep with ``l > 0``, with its own
    learnable bias :math:`b`,

    .. math::
        v' = \sigma_t\!\left(\lVert v \rVert_\epsilon - b\right)
        \frac{v}{\lVert v \rVert_\epsilon},
        \qquad \lVert v \rVert_\epsilon = \sqrt{\lVert v \rVert^2 + \epsilon^2},

    so the new norm is (up to :math:`\epsilon`) :math:`\sigma_t(\lVert v \rVert - b)`: the
    bias is a threshold subtracted from the norm, as in e3nn. The smoothed norm
    :math:`\lVert v \rVert_\epsilon \geq \epsilon` makes :math:`v'` and its gradients
    finite everywhere, also at :math:`v = 0` where
    :math:`\partial v' / \partial v = \sigma_t(\epsilon - b) / \epsilon`.
    Scalars (``l = 0``) go through :math:`\sigma_s` directly, :math:`s' = \sigma_s(s)`,
    not through their norm :math:`|s|`, so that their sign is kept.

    The norm is invariant under rotations and parity, so every ``l > 0`` irrep keeps its
    parity. Odd scalars (``0o``) need an odd :math:`\sigma_s` (``ValueError`` otherwise),
    so that ``Rs_out == Rs_in``.

    Args:
        Rs_in (Rs-like or list of int): the representation, or the e3nn "dimensionalities",
            one ``2l+1`` per irrep copy (e.g. ``[1, 1, 3, 3, 5]``, parity ``0``).
        tensor_act (callable): :math:`\sigma_t`, applied to the biased norms.
        scalar_act (callable, optional): :math:`\sigma_s`, applied to the scalars
            (``None``: identity). (default: ``None``)
        eps (float, optional): :math:`\epsilon > 0` of the smoothed norm.
            (default: ``1e-6``)
        bias_min (float, optional): lower end of the uniform initialisation of the
            biases. (default: ``0.5``)
        bias_max (float, optional): upper end of the uniform initialisation of the
            biases. (default: ``2.0``)

    Shapes:
        - **input:** :math:`(*, \dim(\mathrm{Rs}))`, features on the last axis
        - **output:** :math:`(*, \dim(\mathrm{Rs}))`

    Example:
        >>> import torch
        >>> from e3nn_pyg.non_linearities import rescaled_act
        >>> Rs_out = [(4, 0), (4, 1), (4, 2)]
        >>> dimensionalities = [2 * L + 1 for mult, L in Rs_out for _ in range(mult)]
        >>> act = NormActivation(dimensionalities, rescaled_act.sigmoid, rescaled_act.sigmoid)
        >>> act.Rs_in, act.bias.shape
        (Rs('4x0+4x1+4x2'), torch.Size([8]))
        >>> act(torch.randn(10, 36)).shape
        torch.Size([10, 36])
    """

    def __init__(
        self,
        Rs_in: RsLike | Sequence[int],
        tensor_act: Activation,
        scalar_act: Activation | None = None,
        eps: float = 1e-6,
        bias_min: float = 0.5,
        bias_max: float = 2.0,
    ) -> None:
        super().__init__()
        rs = _as_rs(Rs_in)
        if tensor_act is None:
            raise TypeError("NormActivation needs a tensor_act (e.g. rescaled_act.sigmoid)")
        eps = require_positive(eps, "eps")
        if not bias_min <= bias_max:
            raise ValueError(f"need bias_min <= bias_max, got {bias_min} > {bias_max}")
        self.tensor_act = as_module(tensor_act, "tensor_act")
        self.scalar_act = as_module(scalar_act, "scalar_act")
        for mul, l, p in rs:
            if l == 0 and mul and activated_parity(p, self.scalar_act, "NormActivation") != p:
                raise ValueError(
                    f"NormActivation keeps Rs = '{rs}', but scalar_act {self.scalar_act!r} "
                    "is even and would make its odd scalars even: use an odd scalar_act"
                )
        self.Rs_in = rs
        self.Rs_out = rs
        self.eps = float(eps)
        self.bias_min = float(bias_min)
        self.bias_max = float(bias_max)
        self.bias = torch.nn.Parameter(
            torch.empty(sum(mul for mul, l, _ in rs if l > 0))  # one per l > 0 copy
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the biases uniformly in ``[bias_min, bias_max]``."""
        with torch.no_grad():
            self.bias.uniform_(self.bias_min, self.bias_max)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[..., Rs.dim]`` -> ``[..., Rs.dim]``."""
        require_features(x, self.Rs_in, f"{type(self).__name__} input", batch_axes=True)
        if self.eps**2 < torch.finfo(x.dtype).tiny:
            raise ValueError(
                f"NormActivation eps={self.eps:g} is too small for {x.dtype}: eps**2 underflows "
                "and the norm of a zero vector would be 0 (NaN outputs); use eps >= "
                f"{math.sqrt(torch.finfo(x.dtype).tiny):.1e}"
            )
        out, copy = [], 0
        for (mul, l, _), v in zip(self.Rs_in, self.Rs_in.chunks(x)):  # v: [..., mul, 2l+1]
            if l == 0:  # the activation sees the scalars as [..., mul]
                out.append(self.scalar_act(v.flatten(-2)).unsqueeze(-1))  # [..., mul, 1]
                continue
            norm = (v.pow(2).sum(-1, keepdim=True) + self.eps**2).sqrt()  # [..., mul, 1]
            bias = self.bias[copy : copy + mul, None]  # [mul, 1]
            out.append(v * (self.tensor_act(norm - bias) / norm))  # [..., mul, 2l+1]
            copy += mul
        return self.Rs_out.from_chunks(out, x.shape[:-1], dtype=x.dtype, device=x.device)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(Rs='{self.Rs_in}', tensor_act={self.tensor_act!r}, "
            f"scalar_act={self.scalar_act!r}, eps={self.eps}, bias_min={self.bias_min}, "
            f"bias_max={self.bias_max})"
        )

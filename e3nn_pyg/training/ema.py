r"""An exponential moving average (EMA) of a model's parameters, as NequIP and MACE keep
one: validation, the best checkpoint and the final model use the averaged weights, which
are smoother than those of the last step.

After the :math:`n`-th optimizer step,

.. math::
    \bar\theta \leftarrow d_n \bar\theta + (1 - d_n)\, \theta, \qquad
    d_n = \min\Big(d, \frac{1 + n}{10 + n}\Big),

so that the early average follows the fast-moving weights (a warm-up of the decay).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    r"""The EMA of the parameters of ``model`` (buffers are the model's own).

    Args:
        model (torch.nn.Module): the trained model.
        decay (float): :math:`d` in :math:`(0, 1)`.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> ema = ExponentialMovingAverage(model, decay=0.9)
        >>> with torch.no_grad():
        ...     _ = model.weight.add_(1.0)
        >>> ema.update(model)  # d_1 = 2/11
        >>> with ema.applied(model):
        ...     pass  # the model holds the averaged weights here
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average in the parameters after an optimizer step."""
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for average, parameter in zip(self.shadow, model.parameters(), strict=True):
            average.lerp_(parameter.detach(), 1.0 - decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with the averaged parameters inside the block, its own after."""
        saved = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            for parameter, average in zip(model.parameters(), self.shadow, strict=True):
                parameter.copy_(average)
        try:
            yield model
        finally:
            with torch.no_grad():
                for parameter, own in zip(model.parameters(), saved, strict=True):
                    parameter.copy_(own)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError(
                f"the EMA state holds {len(state['shadow'])} tensors, the model has "
                f"{len(self.shadow)} parameters"
            )
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for average, saved in zip(self.shadow, state["shadow"], strict=True):
            average.copy_(saved)

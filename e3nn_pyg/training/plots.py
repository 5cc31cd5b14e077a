r"""PNG plots of a run: learning curves and parity plots (predictions against DFT)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["plot_learning_curves", "plot_parity"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | os.PathLike,
    target: str,
    unit: str,
    reference: Mapping[str, float] | None = None,
) -> bool:
    """Training loss against epochs and validation MAE against training time, per model.

    Args:
        histories: model name -> the per-epoch records of the trainer.
        path: the PNG to write.
        target, unit: for the labels (``unit`` of the MAE, e.g. ``"meV"``).
        reference: horizontal lines, e.g. ``{"mean predictor": mae}`` on the MAE panel.

    Returns:
        ``False`` when matplotlib is missing (nothing written).
    """
    plt = _pyplot()
    if plt is None:
        return False
    from matplotlib import ticker

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, history in histories.items():
        if not history:
            continue
        epochs = [record["epoch"] for record in history]
        left.plot(epochs, [record["train_loss"] for record in history], marker=".", label=name)
        right.plot(
            [record["elapsed"] for record in history],
            [record["val_mae"] for record in history],
            marker=".",
            label=name,
        )
    for name, value in (reference or {}).items():
        right.axhline(value, linestyle="--", linewidth=1, color="gray")
        right.annotate(name, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8,
                       va="bottom", color="gray")  # fmt: skip
    left.set(xlabel="epoch", ylabel="training loss (standardized)", yscale="log",
             title="training loss")  # fmt: skip
    right.set(xlabel="training time (s)", ylabel=f"validation MAE ({unit})", yscale="log",
              title=f"validation MAE of {target}")  # fmt: skip
    plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (left, right):
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def plot_parity(
    predictions: Mapping[str, Tensor],
    reference: Tensor,
    path: str | os.PathLike,
    target: str,
    unit: str,
    report_unit: str,
    report_scale: float,
) -> bool:
    """Predicted against DFT values on the test set (top) and the errors (bottom), one
    column per model, with the MAE in each title.

    Args:
        predictions: model name -> predictions ``[M]`` in the target's ``unit``.
        reference: the DFT values ``[M]``.
        path: the PNG to write.
        target, unit: the target's name and unit; errors are shown in ``report_unit``
            (``report_scale`` converts).

    Returns:
        ``False`` when matplotlib is missing (nothing written).
    """
    plt = _pyplot()
    if plt is None:
        return False
    names = list(predictions)
    figure, axes = plt.subplots(
        2, len(names), figsize=(4.6 * len(names), 8), squeeze=False,
        gridspec_kw={"height_ratios": [3, 2]},
    )  # fmt: skip
    y = reference.double().numpy()
    low, high = float(y.min()), float(y.max())
    pad = 0.03 * (high - low or 1.0)
    for column, name in enumerate(names):
        predicted = predictions[name].double()
        error = ((predicted - reference.double()) * report_scale).numpy()  # [M]
        mae = float(torch.as_tensor(error).abs().mean())
        top, bottom = axes[0, column], axes[1, column]
        top.plot([low - pad, high + pad], [low - pad, high + pad], color="gray", linewidth=1)
        top.scatter(y, predicted.numpy(), s=6, alpha=0.6)
        top.set(xlabel=f"DFT {target} ({unit})", ylabel=f"predicted {target} ({unit})",
                title=f"{name}: test MAE {mae:.1f} {report_unit}")  # fmt: skip
        top.set_aspect("equal", adjustable="datalim")
        bottom.axhline(0.0, color="gray", linewidth=1)
        bottom.scatter(y, error, s=6, alpha=0.6)
        bottom.set(xlabel=f"DFT {target} ({unit})", ylabel=f"error ({report_unit})")
        for axis in (top, bottom):
            axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True

"""Progress bars when ``tqdm`` is installed (an optional dependency), plain output otherwise."""

from __future__ import annotations

from typing import Any

__all__ = ["tqdm_if_installed"]


def tqdm_if_installed() -> Any | None:
    """The ``tqdm`` class, or ``None`` when the package is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm

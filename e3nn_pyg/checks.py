r"""Checks of tensor values that work eagerly and inside :func:`torch.compile`.

A check of a tensor's values (no NaN coordinates, indices in range, a sorted batch) needs
the values on the host. Eagerly that is one synchronisation and a precise message; inside
a compiled graph reading a value would break the graph, so the same check becomes an
assertion of the graph itself (:func:`torch._assert_async`), which raises
``RuntimeError`` with the static part of the message when the compiled code runs.

Example:
    >>> import torch
    >>> x = torch.tensor([1, 5, 2])
    >>> require(x.max() < 4, IndexError, "x out of range", lambda: f"x holds {int(x.max())}")
    Traceback (most recent call last):
    ...
    IndexError: x holds 5
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import torch
from torch import Tensor

__all__ = ["is_int", "is_real", "require", "require_index_range"]


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer, and not a bool (``True`` is an ``int`` to Python).

    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (int, float, numpy scalar), and not a bool.

    >>> is_real(2.5), is_real(False), is_real("2.5")
    (True, False, False)
    """
    return isinstance(value, Real) and not isinstance(value, bool)


def require(
    ok: Tensor,
    error: type[Exception],
    message: str,
    detail: Callable[[], str] | None = None,
) -> None:
    """Raise ``error`` unless the boolean scalar tensor ``ok`` is true.

    Args:
        ok (Tensor): a boolean tensor of one element.
        error (type): the exception raised eagerly (e.g. ``ValueError``).
        message (str): what is wrong, without values read from tensors (the message of
            the compiled assertion, and the eager one when ``detail`` is ``None``).
        detail (callable, optional): builds the eager message, naming the bad values;
            called only when the check fails. (default: ``None``)
    """
    if torch.compiler.is_compiling():
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise error(detail() if detail is not None else message)


def require_index_range(
    index: Tensor, bound: int, what: str, error: type[Exception] = IndexError
) -> None:
    """Raise ``error`` unless every entry of ``index`` lies in ``[0, bound)``; the
    message names the lowest negative entry, or else the highest one.

    Example:
        >>> require_index_range(torch.tensor([0, 3]), 3, "source node")
        Traceback (most recent call last):
        ...
        IndexError: source node 3 out of range [0, 3)
    """
    inside = (index >= 0) & (index < bound)  # no min/max: empty tensors need no branch

    def detail() -> str:
        outside = index[~inside]
        low = int(outside.min())
        return f"{what} {low if low < 0 else int(outside.max())} out of range [0, {bound})"

    # (the static message leaves out bound: formatting a compiled size would fix its value)
    require(inside.all(), error, f"{what} out of range", detail)

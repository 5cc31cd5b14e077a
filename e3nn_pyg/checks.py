r"""The shared input checks of the package: every public entry point validates with these,
then calls an unchecked core (engines never validate).

**Plain arguments** (no tensor values read, no synchronisation): :func:`require_int`,
:func:`require_positive`, :func:`require_bool`, :func:`require_choice`; **tensor layouts**:
:func:`require_floating`, :func:`require_like`, :func:`require_features`. Each raises
``TypeError`` for a value of the wrong type and ``ValueError`` for one out of its limits,
with a message that names the argument.

**Tensor values**, eagerly and inside :func:`torch.compile` (:func:`require`,
:func:`require_index_range`, :func:`require_edges`): a check of a tensor's values (no NaN
coordinates, indices in range, a sorted batch) needs the values on the host. Eagerly that
is one synchronisation and a precise message; inside a compiled graph reading a value
would break the graph, so the same check becomes an assertion of the graph itself
(:func:`torch._assert_async`), which raises ``RuntimeError`` with the static part of the
message when the compiled code runs.

Example:
    >>> import torch
    >>> x = torch.tensor([1, 5, 2])
    >>> require(x.max() < 4, IndexError, "x out of range", lambda: f"x holds {int(x.max())}")
    Traceback (most recent call last):
    ...
    IndexError: x holds 5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "is_int",
    "is_real",
    "require",
    "require_atomic_numbers",
    "require_bool",
    "require_choice",
    "require_edges",
    "require_features",
    "require_floating",
    "require_index_range",
    "require_int",
    "require_like",
    "require_positive",
]


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


def require_edges(
    edge_index: Tensor,
    num_src: int,
    num_dst: int,
    device: torch.device | None = None,
    what: str = "edge_index",
    error: type[Exception] = IndexError,
) -> None:
    """Raise unless ``edge_index`` is an integer ``[2, E]`` tensor (on ``device`` if given)
    of sources in ``[0, num_src)`` and targets in ``[0, num_dst)``; the range is checked with
    one synchronisation, and the message (an ``error``) names the first row out of range.
    ``what`` names the tensor in the messages.

    Example:
        >>> require_edges(torch.tensor([[0, 1], [1, 2]]), 2, 2)
        Traceback (most recent call last):
        ...
        IndexError: edge_index has target node 2 out of range [0, 2)
    """
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        shape = list(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index)
        raise ValueError(f"{what} must have shape [2, num_edges], got {shape}")
    if edge_index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{what} must be an integer tensor, got dtype {edge_index.dtype}")
    if device is not None and edge_index.device != device:
        raise ValueError(f"{what} is on {edge_index.device} but pos is on {device}")
    src, dst = edge_index[0], edge_index[1]  # [E]
    inside = ((src >= 0) & (src < num_src) & (dst >= 0) & (dst < num_dst)).all()

    def detail() -> str:
        source = bool(((src >= 0) & (src < num_src)).all())
        index, bound = (dst, num_dst) if source else (src, num_src)
        outside = index[~((index >= 0) & (index < bound))]
        low = int(outside.min())
        node = "target" if source else "source"
        value = low if low < 0 else int(outside.max())
        return f"{what} has {node} node {value} out of range [0, {bound})"

    require(inside, error, f"{what} has a node out of range", detail)


def require_features(
    x: object, rs: Any, what: str, rows: int | None = None, batch_axes: bool = False
) -> None:
    """Raise unless ``x`` is a floating-point ``[rows, rs.dim]`` tensor: the feature width
    check of every layer that takes features of a representation ``rs``.

    ``batch_axes=True`` accepts any leading axes, ``[..., rs.dim]`` (the pointwise layers:
    gates, norm activations, self-interactions). A tensor of another width or rank is a
    ``ValueError``, anything but a floating-point tensor a ``TypeError``.

    Example:
        >>> from e3nn_pyg.o3 import Rs
        >>> require_features(torch.zeros(4, 3), Rs("2x0e"), "x")
        Traceback (most recent call last):
        ...
        ValueError: x has shape [4, 3], expected [num_nodes, 2] for Rs_in 2x0e
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    rank_ok = x.dim() >= 1 if batch_axes else x.dim() == 2
    if not rank_ok or x.shape[-1] != rs.dim:
        leading = "..." if batch_axes else "num_nodes" if rows is None else rows
        raise ValueError(
            f"{what} has shape {list(x.shape)}, expected [{leading}, {rs.dim}] for Rs_in {rs}"
        )
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{what} has {x.shape[0]} rows, expected {rows}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")


def require_floating(x: object, what: str) -> Tensor:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor; return it.

    >>> require_floating(torch.tensor([1, 2]), "edge_length")
    Traceback (most recent call last):
    ...
    TypeError: edge_length must be a floating-point tensor, got dtype torch.int64
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def require_like(x: Tensor, like: Tensor, what: str, like_what: str) -> None:
    """Raise ``TypeError`` unless ``x`` has the dtype and device of ``like``.

    >>> require_like(torch.zeros(2), torch.zeros(2, dtype=torch.float64), "x", "pos")
    Traceback (most recent call last):
    ...
    TypeError: x (torch.float32 on cpu) must match pos (torch.float64 on cpu): convert one of them
    """
    if x.dtype != like.dtype or x.device != like.device:
        raise TypeError(
            f"{what} ({x.dtype} on {x.device}) must match {like_what} ({like.dtype} on "
            f"{like.device}): convert one of them"
        )


def require_int(value: object, name: str, minimum: int | None = None) -> int:
    """Raise unless ``value`` is an int (not a bool), at least ``minimum`` if given; return it.

    >>> require_int(0, "h", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: h must be an int >= 1, got 0
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def require_positive(value: object, name: str) -> float:
    """Raise unless ``value`` is a positive finite real number (a bool is not; a tensor of
    one element is read); return it as a float.

    >>> require_positive(float("inf"), "max_radius")
    Traceback (most recent call last):
    ...
    ValueError: max_radius must be positive and finite, got inf
    """
    if isinstance(value, Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def require_atomic_numbers(z: object) -> Tensor:
    """Raise ``TypeError`` unless ``z`` is a 1-D ``torch.long`` tensor (atomic numbers);
    return it. Their range is the caller's (a model's ``max_z``, its species).

    >>> require_atomic_numbers(torch.tensor([[1, 8]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: z must be a 1-D torch.long tensor of atomic numbers, got torch.int64 tensor ...
    """
    if not isinstance(z, Tensor) or z.dtype != torch.long or z.dim() != 1:
        what = f"{z.dtype} tensor of shape {list(z.shape)}" if isinstance(z, Tensor) else z
        raise TypeError(f"z must be a 1-D torch.long tensor of atomic numbers, got {what}")
    return z


def require_bool(value: object, name: str) -> bool:
    """Raise ``TypeError`` unless ``value`` is a bool (not merely truthy); return it.

    >>> require_bool(1, "loop")
    Traceback (most recent call last):
    ...
    TypeError: loop must be a bool, got int 1
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def require_choice(value: object, name: str, choices: Sequence[Any]) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``; return it.

    >>> require_choice("integral", "normalization", ("component", "norm"))
    Traceback (most recent call last):
    ...
    ValueError: normalization must be one of ('component', 'norm'), got 'integral'
    """
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value

r"""The equivariance checker every layer of e3nn_pyg is tested with.

A function :math:`f` is E(3)-equivariant when, for every element :math:`g` (rotation,
inversion, translation),

.. math::
    f(\rho_\text{in}(g)\, x) = \rho_\text{out}(g)\, f(x),

where positions transform as :math:`p \mapsto R p + t` and features of type ``Rs`` as
:math:`x \mapsto D^\text{Rs}(R)\, x` (translations leave features alone).

Example:
    >>> import torch
    >>> from e3nn_pyg.o3 import spherical_harmonics
    >>> vectors = torch.randn(10, 3, dtype=torch.float64)
    >>> errors = equivariance_error(
    ...     lambda v: spherical_harmonics([0, 1, 2], v), [vectors], ["1x1o"], ["0e+1o+2e"])
    >>> sorted(errors), max(errors.values()) < 1e-12
    (['parity', 'rotation', 'translation'], True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..o3 import Rs, RsLike, rand_rotation, rs_representation

__all__ = ["POS", "assert_equivariant", "equivariance_error", "max_difference"]

#: Marks an argument or output as positions: rotated, inverted and translated.
POS = "pos"

Spec = RsLike | None


def max_difference(got: Tensor, want: Tensor, equal_nan: bool = False) -> float:
    r"""The largest :math:`|	ext{got} - 	ext{want}|` in float64 (0 for empty tensors), where
    a NaN never vanishes: NaN in either counts as an infinite difference, unless
    ``equal_nan`` and both are NaN at that place (as :func:`torch.allclose` takes it). The
    checks of this package take maxima of these (Python's ``max`` would drop a NaN).

    Example:
        >>> nan = float("nan")
        >>> max_difference(torch.tensor([1.0, nan]), torch.tensor([1.5, nan]))
        inf
        >>> max_difference(torch.tensor([1.0, nan]), torch.tensor([1.5, nan]), equal_nan=True)
        0.5
    """
    if not want.numel():
        return 0.0
    difference = (got.double() - want.double()).abs().nan_to_num(nan=math.inf)
    if equal_nan:
        difference = torch.where(got.isnan() & want.isnan(), 0.0, difference)
    return difference.max().item()


def _normalize_specs(specs: Sequence[Spec] | Spec, count: int, what: str) -> list:
    if count == 1 and (specs is None or specs == POS or isinstance(specs, (str, Rs))):
        specs = [specs]
    specs = list(specs)  # type: ignore[arg-type]
    if len(specs) != count:
        raise ValueError(f"{what}: {len(specs)} specs given for {count} tensors")
    return [spec if spec is None or spec == POS else Rs(spec) for spec in specs]


def _has_parity(specs: list) -> bool:
    return all(
        block.p != 0 for spec in specs if isinstance(spec, Rs) for block in spec if block.mul > 0
    )


def _transform(value, spec, matrix: Tensor, shift: Tensor):
    """Apply ``(matrix, shift)`` in float64 to one argument or output."""
    if spec is None:
        return value
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise TypeError(f"a tensor typed {spec!r} must be a floating tensor, got {type(value)}")
    wide = value.to(torch.float64)
    if spec == POS:
        if wide.shape[-1] != 3:
            raise ValueError(f"positions must have last dimension 3, got {tuple(value.shape)}")
        out = wide @ matrix.T + shift
    else:
        if wide.shape[-1] != spec.dim:
            raise ValueError(
                f"tensor of shape {tuple(value.shape)} does not match Rs {spec} (dim {spec.dim})"
            )
        out = wide @ rs_representation(spec, matrix).T
    return out.to(value.dtype)


def _as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def equivariance_error(
    func: Callable,
    args: Sequence,
    rs_in: Sequence[Spec] | Spec,
    rs_out: Sequence[Spec] | Spec,
    seed: int = 0,
) -> dict[str, float]:
    r"""Largest deviation from equivariance of ``func`` under a rotation, the inversion
    and a translation.

    Args:
        func (callable): called as ``func(*args)``; returns a tensor or a tuple of them.
        args (sequence): example inputs.
        rs_in (sequence): one spec per argument: an ``Rs`` (features on the last axis),
            :data:`POS` (``"pos"``: positions ``[..., 3]``), or ``None`` (left untouched,
            e.g. ``batch`` or ``edge_index``).
        rs_out (sequence): one spec per output, as for ``rs_in`` (one spec alone for one
            output). ``None`` outputs must be exactly invariant (compared unchanged).
        seed (int, optional): seed of the random rotation and translation. (default: ``0``)

    Returns:
        ``{"rotation": err, "translation": err, "parity": err}``: max absolute errors, the
        transformations applied in float64. ``"parity"`` is left out when some ``Rs`` has
        irreps without parity (``p = 0``), for which the inversion is not defined.
    """
    args = list(args)
    specs_in = _normalize_specs(rs_in, len(args), "rs_in")
    reference = _as_tuple(func(*args))
    specs_out = _normalize_specs(rs_out, len(reference), "rs_out")

    generator = torch.Generator().manual_seed(seed)
    identity = torch.eye(3, dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    elements = {
        "rotation": (rand_rotation(dtype=torch.float64, generator=generator), zero),
        "translation": (identity, torch.randn(3, dtype=torch.float64, generator=generator)),
    }
    if _has_parity(specs_in + specs_out):
        elements["parity"] = (-identity, zero)

    errors = {}
    for name, (matrix, shift) in elements.items():
        moved_args = [_transform(a, s, matrix, shift) for a, s in zip(args, specs_in)]
        moved_outputs = _as_tuple(func(*moved_args))
        error = 0.0
        for out, moved, spec in zip(reference, moved_outputs, specs_out):
            expected = _transform(out, spec, matrix, shift)
            error = max(error, max_difference(moved, expected))
        errors[name] = error
    return errors


def assert_equivariant(
    func: Callable,
    args: Sequence,
    rs_in: Sequence[Spec] | Spec,
    rs_out: Sequence[Spec] | Spec,
    atol: float | None = None,
    seed: int = 0,
) -> dict[str, float]:
    r"""Assert :func:`equivariance_error` is within tolerance; return the errors.

    The default tolerance follows docs/conventions.md: ``1e-9`` for float64 outputs and
    ``1e-4`` times the output scale (``max(1, max|out|)``) for lower precision.

    Raises:
        AssertionError: naming the transformation and the error.
    """
    errors = equivariance_error(func, args, rs_in, rs_out, seed=seed)
    if atol is None:
        outputs = [o for o in _as_tuple(func(*args)) if isinstance(o, Tensor)]
        if all(o.dtype == torch.float64 for o in outputs if o.is_floating_point()):
            atol = 1e-9
        else:
            scale = max([1.0] + [o.abs().max().item() for o in outputs if o.numel()])
            atol = 1e-4 * scale
    for name, error in errors.items():
        if not error <= atol:
            raise AssertionError(f"not equivariant under {name}: error {error:.3e} > {atol:.1e}")
    return errors

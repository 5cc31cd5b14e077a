r"""Path planning: which filter orders connect which input and output blocks.

A path couples input block :math:`(mul_i, l_i, p_i)` to output block
:math:`(mul_o, l_o, p_o)` through a filter of order :math:`l_f`, allowed when

.. math::
    |l_i - l_o| \le l_f \le l_i + l_o, \qquad p_o = 0 \;\text{or}\; p_i (-1)^{l_f} = p_o.

The plan also fixes where each path finds its radial weights (docs/conventions.md: output
blocks outer, input blocks inner, ``[mul_o, mul_i, n_filters]`` inside a block) and its
normalization constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..checks import require_choice
from ..o3 import Rs, RsLike

__all__ = ["BlockPair", "KernelPlan", "plan_kernel", "selection_rule"]

SelectionRule = Callable[[int, int, int, int], list[int]]


def selection_rule(
    l_in: int,
    p_in: int,
    l_out: int,
    p_out: int,
    lmax: int | None = None,
    lfilter: list[int] | None = None,
) -> list[int]:
    r"""Filter orders :math:`l_f` allowed between ``(l_in, p_in)`` and ``(l_out, p_out)``.

    Args:
        l_in, p_in, l_out, p_out (int): orders and parities of the two irreps.
        lmax (int, optional): largest filter order kept. (default: no limit)
        lfilter (list of int, optional): only these filter orders are kept.
            (default: all)

    Use :func:`functools.partial` to fix ``lmax`` or ``lfilter`` for a Kernel.

    Example:
        >>> selection_rule(1, -1, 1, -1)  # 1o -> 1o through even filters
        [0, 2]
        >>> selection_rule(1, 0, 1, 0, lmax=1)
        [0, 1]
    """
    orders = range(abs(l_in - l_out), l_in + l_out + 1)
    allowed = [l for l in orders if p_out == 0 or p_in * (-1) ** l == p_out]
    if lmax is not None:
        allowed = [l for l in allowed if l <= lmax]
    if lfilter is not None:
        allowed = [l for l in allowed if l in lfilter]
    return allowed


@dataclass(frozen=True)
class BlockPair:
    """The paths between one input block and one output block."""

    index_out: int  # block index in Rs_out
    index_in: int  # block index in Rs_in
    mul_out: int
    mul_in: int
    l_out: int
    l_in: int
    filters: tuple[int, ...]  # the filter orders l_f
    weight_offset: int  # where its [mul_out, mul_in, n_filters] weights start
    norms: tuple[float, ...]  # the normalization constant of each filter's path

    @property
    def num_weights(self) -> int:
        return self.mul_out * self.mul_in * len(self.filters)


@dataclass(frozen=True)
class KernelPlan:
    """All block pairs of a kernel, in radial-weight order."""

    rs_in: Rs
    rs_out: Rs
    pairs: tuple[BlockPair, ...]
    n_path: int
    normalization: str

    @property
    def filter_orders(self) -> list[int]:
        """The distinct filter orders, ascending."""
        return sorted({l for pair in self.pairs for l in pair.filters})


def plan_kernel(
    rs_in: RsLike,
    rs_out: RsLike,
    rule: SelectionRule = selection_rule,
    normalization: str = "component",
) -> KernelPlan:
    r"""Enumerate the paths of a kernel from ``rs_in`` to ``rs_out``.

    The normalization constant of a path is :math:`\sqrt{(2l_o+1)/N_o}` ('component') or
    :math:`\sqrt{(2l_i+1)(2l_f+1)/N_o}` ('norm'), with
    :math:`N_o = \sum_\text{input blocks} mul_i \cdot n_\text{filters}`.

    Raises:
        ValueError: when an output irrep has no path (nothing can produce it) or an
            input irrep has none (it would be ignored), or the rule returns an order
            that breaks the triangle or parity rule.

    Example:
        >>> plan = plan_kernel([(2, 0)], [(4, 0), (4, 1), (4, 2)])
        >>> plan.n_path, [pair.filters for pair in plan.pairs]
        (24, [(0,), (1,), (2,)])
    """
    rs_in, rs_out = Rs(rs_in), Rs(rs_out)
    _check_plan_inputs(rs_in, rs_out, normalization)
    pairs = []
    offset = 0
    used_inputs = set()
    for index_out, (mul_out, l_out, p_out) in enumerate(rs_out):
        block_pairs = _block_pairs(rs_in, mul_out, l_out, p_out, rule)
        fan_in = sum(mul_in * len(filters) for _, mul_in, _, filters in block_pairs)
        if mul_out > 0 and fan_in == 0:
            raise ValueError(
                f"no path produces output irrep {mul_out}x{l_out}"
                f"{'' if p_out == 0 else 'e' if p_out == 1 else 'o'} from Rs_in '{rs_in}'"
            )
        for index_in, mul_in, l_in, filters in block_pairs:
            used_inputs.add(index_in)
            if normalization == "component":
                norms = tuple(math.sqrt((2 * l_out + 1) / fan_in) for _ in filters)
            else:
                norms = tuple(math.sqrt((2 * l_in + 1) * (2 * l_f + 1) / fan_in) for l_f in filters)
            pair = BlockPair(
                index_out, index_in, mul_out, mul_in, l_out, l_in, filters, offset, norms
            )
            pairs.append(pair)
            offset += pair.num_weights
    unused = [str(block) for i, block in enumerate(rs_in) if block.mul > 0 and i not in used_inputs]
    if unused:
        raise ValueError(f"input irreps {', '.join(unused)} of Rs_in reach no output of '{rs_out}'")
    return KernelPlan(rs_in, rs_out, tuple(pairs), offset, normalization)


def _check_plan_inputs(rs_in: Rs, rs_out: Rs, normalization: str) -> None:
    for name, rs in (("Rs_in", rs_in), ("Rs_out", rs_out)):
        if not any(mul > 0 for mul, _, _ in rs):
            raise ValueError(
                f"{name} = '{rs}' has no irrep of non-zero multiplicity: a kernel needs "
                f"{'input' if name == 'Rs_in' else 'output'} features"
            )
    require_choice(normalization, "normalization", ("component", "norm"))


def _block_pairs(
    rs_in: Rs, mul_out: int, l_out: int, p_out: int, rule: SelectionRule
) -> list[tuple[int, int, int, tuple[int, ...]]]:
    """``(index_in, mul_in, l_in, filters)`` of the input blocks with a path into the
    output block ``(mul_out, l_out, p_out)``; the rule's orders are checked."""
    block_pairs = []
    for index_in, (mul_in, l_in, p_in) in enumerate(rs_in):
        filters = tuple(rule(l_in, p_in, l_out, p_out))
        for l_f in filters:
            if not abs(l_in - l_out) <= l_f <= l_in + l_out or not (
                p_out == 0 or p_in * (-1) ** l_f == p_out
            ):
                raise ValueError(
                    f"selection rule returned filter order {l_f} for {l_in}{p_in:+d} -> "
                    f"{l_out}{p_out:+d}, which breaks the triangle or parity rule"
                )
        if filters and mul_in > 0 and mul_out > 0:
            block_pairs.append((index_in, mul_in, l_in, filters))
    return block_pairs

r"""Representation lists (``Rs``): the types of equivariant feature vectors.

An ``Rs`` is a list of blocks ``(mul, l, p)``: ``mul`` copies of the irreducible
representation of order ``l`` (dimension :math:`2l+1`) and parity ``p`` in
``{+1, -1, 0}`` (``0``: no parity, the block only knows rotations). A feature vector
is the concatenation of the blocks in list order, each block laid out ``[mul, 2l+1]``
multiplicity-major, so that

.. math::
    \text{index} = \text{offset} + u\,(2l+1) + m, \qquad m = 0..2l \leftrightarrow -l..l.

:class:`Rs` accepts every spelling used in the e3nn tutorial and later versions:

>>> Rs([(2, 0)])
Rs('2x0')
>>> Rs("4x0e + 2x1o + 2e").dim
15
>>> Rs([(1, 1, -1), (3, 0, 1)]).simplify()
Rs('1x1o+3x0e')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple, overload

from ..checks import is_int

__all__ = ["MulIrrep", "Rs", "RsLike", "dim"]

_PARITY_TO_STR = {1: "e", -1: "o", 0: ""}
_STR_TO_PARITY = {"e": 1, "o": -1, "": 0}
_TERM = re.compile(r"^(?:(\d+)\s*x\s*)?(\d+)\s*([eo]?)$")


class MulIrrep(NamedTuple):
    """One block of an :class:`Rs`: ``mul`` copies of the irrep ``(l, p)``."""

    mul: int
    l: int
    p: int

    @property
    def dim(self) -> int:
        """Number of features of the block, ``mul * (2l + 1)``."""
        return self.mul * (2 * self.l + 1)

    def __str__(self) -> str:
        return f"{self.mul}x{self.l}{_PARITY_TO_STR[self.p]}"


def _parse_entry(entry: object) -> MulIrrep:
    if isinstance(entry, MulIrrep):
        return entry
    if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
        raise ValueError(
            f"Rs entry {entry!r} must be a tuple (mul, l) or (mul, l, p), e.g. (4, 1, -1)"
        )
    mul, l = entry[0], entry[1]
    p = entry[2] if len(entry) == 3 else 0
    if not is_int(mul) or mul < 0:
        raise ValueError(
            f"Rs entry {entry!r}: multiplicity must be a non-negative int, got {mul!r}"
        )
    if not is_int(l) or l < 0:
        raise ValueError(f"Rs entry {entry!r}: order l must be a non-negative int, got {l!r}")
    if not is_int(p) or p not in (-1, 0, 1):
        raise ValueError(f"Rs entry {entry!r}: parity must be one of -1, 0, 1, got {p!r}")
    return MulIrrep(mul, l, p)


def _parse_string(text: str) -> list[MulIrrep]:
    if not text.strip():
        return []
    blocks = []
    for term in text.split("+"):
        match = _TERM.match(term.strip())
        if match is None:
            raise ValueError(
                f"cannot parse Rs term {term.strip()!r} in {text!r}: expected terms like "
                "'4x0e', '2x1o', '3e' or '2x1' joined by '+'"
            )
        mul, l, p = match.groups()
        blocks.append(MulIrrep(int(mul) if mul is not None else 1, int(l), _STR_TO_PARITY[p]))
    return blocks


class Rs:
    r"""An immutable representation list.

    Args:
        spec (str or iterable or Rs, optional): ``"4x0e + 2x1o"``, ``[(mul, l)]``,
            ``[(mul, l, p)]`` (mixed is fine), or another :class:`Rs`. ``(mul, l)``
            means parity ``0``. (default: empty)

    Raises:
        ValueError: naming the offending entry, for a negative or non-integer ``mul``
            or ``l``, a parity outside ``{-1, 0, 1}``, or a malformed string.

    Example:
        >>> rs = Rs("2x0e + 1x1o")
        >>> rs.dim, rs.lmax, list(rs)
        (5, 1, [MulIrrep(mul=2, l=0, p=1), MulIrrep(mul=1, l=1, p=-1)])
        >>> rs == [(2, 0, 1), (1, 1, -1)]
        True
    """

    __slots__ = ("_blocks",)

    def __init__(self, spec: RsLike = ()) -> None:
        if isinstance(spec, Rs):
            blocks = list(spec._blocks)
        elif isinstance(spec, str):
            blocks = _parse_string(spec)
        elif isinstance(spec, Iterable):
            blocks = [_parse_entry(entry) for entry in spec]
        else:
            raise ValueError(
                f"cannot make an Rs from {spec!r}: give a string like '4x0e+2x1o' or a list "
                "of (mul, l) / (mul, l, p) tuples"
            )
        self._blocks: tuple[MulIrrep, ...] = tuple(blocks)

    # -- sequence protocol -------------------------------------------------------------
    def __iter__(self) -> Iterator[MulIrrep]:
        return iter(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)

    @overload
    def __getitem__(self, index: int) -> MulIrrep: ...

    @overload
    def __getitem__(self, index: slice) -> Rs: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Rs(self._blocks[index])
        return self._blocks[index]

    def __add__(self, other: RsLike) -> Rs:
        return Rs(self._blocks + Rs(other)._blocks)

    def __radd__(self, other: RsLike) -> Rs:
        return Rs(Rs(other)._blocks + self._blocks)

    def __mul__(self, times: int) -> Rs:
        """``rs * n`` repeats the list ``n`` times (like a Python list)."""
        return Rs(self._blocks * times)

    def __eq__(self, other: object) -> bool:
        try:
            return self._blocks == Rs(other)._blocks  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False

    def __hash__(self) -> int:
        return hash(self._blocks)

    def __repr__(self) -> str:
        return f"Rs('{self}')"

    def __str__(self) -> str:
        return "+".join(str(block) for block in self._blocks)

    # -- properties --------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Length of a feature vector of this type, :math:`\\sum mul (2l+1)`."""
        return sum(block.dim for block in self._blocks)

    @property
    def num_irreps(self) -> int:
        """Number of irreps, counting multiplicities, :math:`\\sum mul`."""
        return sum(block.mul for block in self._blocks)

    @property
    def lmax(self) -> int:
        """Largest order ``l``; raises ``ValueError`` for an empty list."""
        if not self._blocks:
            raise ValueError("lmax of an empty Rs is undefined")
        return max(block.l for block in self._blocks)

    @property
    def ls(self) -> list[int]:
        """The order of every irrep, repeated ``mul`` times."""
        return [block.l for block in self._blocks for _ in range(block.mul)]

    def slices(self) -> list[slice]:
        """The feature-axis slice of every block."""
        out, start = [], 0
        for block in self._blocks:
            out.append(slice(start, start + block.dim))
            start += block.dim
        return out

    def is_scalar(self) -> bool:
        """True when every block has ``l = 0``."""
        return all(block.l == 0 for block in self._blocks)

    # -- transformations ---------------------------------------------------------------
    def simplify(self) -> Rs:
        """Merge adjacent blocks of equal ``(l, p)`` and drop empty ones; never sorts."""
        merged: list[MulIrrep] = []
        for block in self._blocks:
            if block.mul == 0:
                continue
            if merged and (merged[-1].l, merged[-1].p) == (block.l, block.p):
                merged[-1] = MulIrrep(merged[-1].mul + block.mul, block.l, block.p)
            else:
                merged.append(block)
        return Rs(merged)

    def sort(self) -> tuple[Rs, list[int]]:
        r"""Blocks sorted by ``(l, p)`` (stable), and the feature permutation.

        Returns:
            ``(rs_sorted, perm)`` with ``x_sorted = x[..., perm]``: feature ``i`` of the
            sorted layout is feature ``perm[i]`` of the original one.

        Example:
            >>> Rs("1x1o + 1x0e").sort()
            (Rs('1x0e+1x1o'), [3, 0, 1, 2])
        """
        slices = self.slices()
        blocks = self._blocks
        order = sorted(range(len(blocks)), key=lambda i: (blocks[i].l, blocks[i].p))
        perm = [index for i in order for index in range(slices[i].start, slices[i].stop)]
        return Rs([self._blocks[i] for i in order]), perm


RsLike = Rs | str | Iterable[tuple[int, ...]]


def dim(rs: RsLike) -> int:
    """Dimension of a representation list, ``Rs(rs).dim`` (the e3nn function name)."""
    return Rs(rs).dim

r"""Representation lists (``Rs``): the types of equivariant feature vectors.

An ``Rs`` is a list of blocks ``(mul, l, p)``: ``mul`` copies of the irreducible
representation (:class:`Irrep`) of order ``l`` (dimension :math:`2l+1`) and parity ``p``
in ``{+1, -1, 0}`` (``0``: no parity, the block only knows rotations). A feature vector
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
>>> Rs([(16, (1, 1)), "2o", 0, (3, "0e")])
Rs('16x1e+1x2o+1x0+3x0e')

and cuts feature tensors into its blocks and back:

>>> rs = Rs("2x0e + 1x1o")
>>> x = rs.randn(10)
>>> [tuple(block.shape) for block in rs.chunks(x)]
[(10, 2, 1), (10, 1, 3)]
>>> torch.equal(rs.from_chunks(rs.chunks(x)), x)
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from numbers import Integral
from typing import NamedTuple, overload

import torch
from torch import Tensor

from .wigner import _check_orthogonal, wigner_D

__all__ = ["Irrep", "IrrepLike", "MulIrrep", "Rs", "RsLike", "dim", "rs_representation"]

_PARITY_TO_STR = {1: "e", -1: "o", 0: ""}
_STR_TO_PARITY = {"e": 1, "o": -1, "": 0}
# ASCII digits only: \d would also read other scripts' digits ("١٦x0e")
_TERM = re.compile(r"^(?:([0-9]+)\s*x\s*)?([0-9]+)\s*([eo]?)$")
_IRREP = re.compile(r"^([0-9]+)\s*([eo]?)$")
_ENTRY_FORMS = (
    "(mul, l), (mul, l, p), (mul, (l, p)), (mul, '1e'), an Irrep, a string such as '1e' or "
    "'2x1o', or a bare order l"
)


def _integer(value: object) -> int | None:
    """``value`` as a Python int when it is an integer (``int``, a numpy integer), else
    :obj:`None`; bools are not integers here (``True`` is an ``int`` to Python)."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    return None


def _is_integer(value: object) -> bool:
    """Whether ``value`` is an integer for an Rs: an int or a numpy integer, not a bool."""
    return _integer(value) is not None


# -- irreps ----------------------------------------------------------------------------------
class Irrep(tuple):
    r"""One irreducible representation of :math:`O(3)`: order ``l``, parity ``p``.

    The irrep of order ``l`` has dimension :math:`2l+1`. Under the inversion it gets the
    factor ``p`` (``+1`` even, ``-1`` odd); ``p = 0`` is an irrep of :math:`SO(3)` only,
    on which improper elements do not act. An ``Irrep`` is an immutable ``(l, p)`` tuple,
    so it hashes, sorts and unpacks like one; ``n * ir`` and ``ir + ir`` make an
    :class:`Rs`, as in e3nn.

    Args:
        l (int or str or tuple or Irrep): the order, or the whole irrep as a string
            (``"1e"``, ``"2o"``, ``"3"`` for ``p = 0``), an ``(l, p)`` tuple or an Irrep.
        p (int, optional): the parity, with an integer ``l`` only. (default: ``0``)

    Raises:
        ValueError: naming the offending value, for a negative or non-integer ``l``, a
            parity outside ``{-1, 0, 1}`` or a malformed string.

    Example:
        >>> ir = Irrep("1o")
        >>> ir, str(ir), ir.l, ir.p, ir.dim
        (Irrep('1o'), '1o', 1, -1, 3)
        >>> ir == Irrep(1, -1) == (1, -1), Irrep(2) == Irrep("2")
        (True, True)
        >>> 3 * ir
        Rs('3x1o')
    """

    __slots__ = ()
    __array_ufunc__ = None  # numpy defers: np.int64(3) * ir is 3 * ir, not an array

    def __new__(cls, l: IrrepLike | int, p: int | None = None) -> Irrep:
        if p is None:
            if isinstance(l, Irrep):
                return l
            if isinstance(l, str):
                return _irrep_from_string(l)
            if isinstance(l, (tuple, list)):
                pair = list(iter(l))  # not len(): e3nn's Irrep refuses it
                if len(pair) != 2:
                    raise ValueError(f"Irrep {l!r} must be a pair (l, p)")
                l, p = pair
            else:
                p = 0
        order, parity = _integer(l), _integer(p)
        if order is None or order < 0:
            raise ValueError(f"Irrep order l must be a non-negative int, got {l!r}")
        if parity not in (-1, 0, 1):
            raise ValueError(f"Irrep parity must be one of -1, 0, 1, got {p!r}")
        return super().__new__(cls, (order, parity))

    def __getnewargs__(self) -> tuple[int, int]:  # pickle and copy call __new__(cls, l, p)
        return (self[0], self[1])

    @property
    def l(self) -> int:  # noqa: E743 (the name of the math)
        """The order ``l``."""
        return self[0]

    @property
    def p(self) -> int:
        """The parity: ``+1`` even, ``-1`` odd, ``0`` none."""
        return self[1]

    @property
    def dim(self) -> int:
        """Dimension :math:`2l+1`."""
        return 2 * self[0] + 1

    def is_scalar(self) -> bool:
        """True for ``l = 0``."""
        return self[0] == 0

    def representation(self, R: Tensor) -> Tensor:
        r"""The matrix :math:`p^{[\det R < 0]} D^l(\pm R)` by which ``R`` acts on this irrep
        (see :meth:`Rs.representation`); ``[..., 2l+1, 2l+1]``."""
        return Rs([self]).representation(R)

    def __repr__(self) -> str:
        return f"Irrep('{self}')"

    def __str__(self) -> str:
        return f"{self[0]}{_PARITY_TO_STR[self[1]]}"

    # the tuple operators would repeat or join the pairs themselves: these build an Rs
    def __mul__(self, times: int) -> Rs:  # type: ignore[override]
        """``ir * n``: ``n`` copies of the irrep, ``Rs([(n, l, p)])``."""
        return Rs([(_repetitions(times, "an Irrep"), self[0], self[1])])

    __rmul__ = __mul__

    def __add__(self, other: RsLike) -> Rs:  # type: ignore[override]
        return Rs([self]) + other

    def __radd__(self, other: RsLike) -> Rs:
        return Rs(other) + Rs([self])


IrrepLike = Irrep | str | tuple[int, int]


def _irrep_from_string(text: str, entry: object = None) -> Irrep:
    match = _IRREP.match(text.strip())
    if match is None:
        where = "" if entry is None else f"Rs entry {entry!r}: "
        raise ValueError(
            f"{where}cannot parse irrep {text!r}: expected an order and an optional parity, "
            "such as '0e', '1o' or '2'"
        )
    l, p = match.groups()
    return Irrep(int(l), _STR_TO_PARITY[p])


class MulIrrep(NamedTuple):
    """One block of an :class:`Rs`: ``mul`` copies of the irrep ``(l, p)``."""

    mul: int
    l: int
    p: int

    @property
    def ir(self) -> Irrep:
        """The irrep of the copies."""
        return Irrep(self.l, self.p)

    @property
    def dim(self) -> int:
        """Number of features of the block, ``mul * (2l + 1)``."""
        return self.mul * (2 * self.l + 1)

    def __str__(self) -> str:
        return f"{self.mul}x{self.l}{_PARITY_TO_STR[self.p]}"


# -- parsing -----------------------------------------------------------------------------------
def _block(mul: object, l: object, p: object, entry: object) -> MulIrrep:
    """A validated block of Python ints; errors name ``entry``, the spelling it came from."""
    multiplicity, order, parity = _integer(mul), _integer(l), _integer(p)
    if multiplicity is None or multiplicity < 0:
        raise ValueError(
            f"Rs entry {entry!r}: multiplicity must be a non-negative int, got {mul!r}"
        )
    if order is None or order < 0:
        raise ValueError(f"Rs entry {entry!r}: order l must be a non-negative int, got {l!r}")
    if parity not in (-1, 0, 1):
        raise ValueError(f"Rs entry {entry!r}: parity must be one of -1, 0, 1, got {p!r}")
    return MulIrrep(multiplicity, order, parity)


def _is_irrep(value: object) -> bool:
    """An :class:`Irrep`, or one of another library (e3nn's ``o3.Irrep``, a pair ``(l, p)``
    that would otherwise read as a block ``(mul, l)``): it has ``l`` and ``p``, no ``mul``."""
    if isinstance(value, Irrep):
        return True
    return all(hasattr(value, name) for name in ("l", "p")) and not hasattr(value, "mul")


def _parse_entry(entry: object) -> MulIrrep:
    if isinstance(entry, MulIrrep):  # built by hand, so checked like the others
        return _block(*entry, entry)
    if _is_irrep(entry):
        return _block(1, entry.l, entry.p, entry)  # type: ignore[attr-defined]
    if isinstance(entry, str):
        blocks = _parse_string(entry)
        if len(blocks) != 1:
            raise ValueError(
                f"Rs entry {entry!r}: a string inside a list is one term, such as '1e' or "
                "'2x1o' (give the whole Rs as one string to join terms with '+')"
            )
        return blocks[0]
    if _is_integer(entry):  # the 2020 shorthand: a bare order l is one copy without parity
        return _block(1, entry, 0, entry)
    # iterated, not measured: e3nn's tuple subclasses refuse len()
    items = list(iter(entry)) if isinstance(entry, (tuple, list)) else []
    if len(items) == 3:
        return _block(*items, entry)
    if len(items) == 2:
        mul, ir = items
        if isinstance(ir, str):  # e3nn's (mul, "1e")
            ir = _irrep_from_string(ir, entry)
            return _block(mul, ir.l, ir.p, entry)
        if isinstance(ir, (tuple, list)):  # e3nn's nested (mul, (l, p))
            pair = list(iter(ir))
            if len(pair) != 2:
                raise ValueError(f"Rs entry {entry!r}: the irrep {ir!r} must be a pair (l, p)")
            return _block(mul, *pair, entry)
        return _block(mul, ir, 0, entry)
    raise ValueError(f"Rs entry {entry!r} is none of {_ENTRY_FORMS}, e.g. (4, 1, -1)")


def _parse_string(text: str) -> list[MulIrrep]:
    if not text.strip():
        return []
    blocks = []
    for term in text.split("+"):
        if not term.strip():
            raise ValueError(
                f"cannot parse Rs term '' in {text!r}: a '+' needs a term on each side"
            )
        match = _TERM.match(term.strip())
        if match is None:
            raise ValueError(
                f"cannot parse Rs term {term.strip()!r} in {text!r}: expected terms like "
                "'4x0e', '2x1o', '3e' or '2x1' joined by '+'"
            )
        mul, l, p = match.groups()
        blocks.append(MulIrrep(int(mul) if mul is not None else 1, int(l), _STR_TO_PARITY[p]))
    return blocks


def _repetitions(times: object, what: str) -> int:
    count = _integer(times)
    if count is None:
        raise TypeError(f"{what} can be multiplied by an int only, got {times!r}")
    if count < 0:
        raise ValueError(f"{what} cannot be repeated a negative number of times ({count})")
    return count


def _as_set(values: object, what: str, ok: Callable[[object], bool]) -> frozenset:
    """``values`` (one value or an iterable of them) as a set, every value checked."""
    items = list(values) if isinstance(values, Iterable) else [values]
    for value in items:
        if not ok(value):
            raise ValueError(f"filter: {value!r} is not a valid {what} (in {values!r})")
    return frozenset(items)


# -- Rs ----------------------------------------------------------------------------------------
class Rs:
    r"""An immutable representation list.

    Spellings, mixed freely inside a list:

    - a string ``"4x0e + 2x1o + 2e"`` (``e``: ``p = +1``, ``o``: ``p = -1``, none:
      ``p = 0``; a term without ``x`` is one copy);
    - blocks ``(mul, l)`` (parity ``0``, the tutorial's spelling) and ``(mul, l, p)``;
    - e3nn's nested ``(mul, (l, p))`` and ``(mul, "1e")`` (so an ``e3nn.o3.Irreps``
      converts as it is), an :class:`Irrep` (one copy), a one-term string ``"1e"`` or
      ``"2x1o"``;
    - the 2020 shorthand of a bare order ``l``: one copy without parity, ``(1, l, 0)``
      (inside a list only: ``Rs((2, 0))`` is refused as ambiguous, and so is
      ``Rs(3)``: write ``[(2, 0)]`` for two scalars or ``[2, 0]`` for the orders 2 and 0).

    Every spelling is either exact or refused: numbers are Python or numpy integers (never
    bools or floats, stored as Python ints), strings use ASCII digits and lower-case ``e``
    and ``o``, a ``+`` needs a term on each side, and dicts and sets are refused (a dict's
    keys and values could be read either way round, a set has no order).

    ``rs + other`` concatenates; ``n * rs`` and ``rs * n`` repeat the list ``n`` times, like
    a Python list (the tutorial's ``Rs`` were plain lists, and e3nn's ``Irreps`` repeat
    too), which gives a different feature layout from multiplying the multiplicities: use
    ``.simplify()`` to merge equal neighbours.

    Args:
        spec (str or iterable or Rs or Irrep, optional): the list in any spelling above,
            or another :class:`Rs`. (default: empty)

    Raises:
        ValueError: naming the offending entry, for a negative or non-integer ``mul``
            or ``l``, a parity outside ``{-1, 0, 1}``, a malformed string, or a spec that
            is none of the spellings (or an ambiguous tuple of ints).

    Example:
        >>> rs = Rs("2x0e + 1x1o")
        >>> rs.dim, rs.lmax, list(rs)
        (5, 1, [MulIrrep(mul=2, l=0, p=1), MulIrrep(mul=1, l=1, p=-1)])
        >>> rs == [(2, 0, 1), (1, 1, -1)], rs == [(2, (0, 1)), "1o"]
        (True, True)
        >>> 2 * rs
        Rs('2x0e+1x1o+2x0e+1x1o')
    """

    __slots__ = ("_block_shapes", "_blocks", "_sizes")
    __array_ufunc__ = None  # numpy defers: np.int64(2) * rs is 2 * rs, not an array

    def __init__(self, spec: RsLike = ()) -> None:
        if isinstance(spec, Rs):
            blocks = list(spec._blocks)
        elif isinstance(spec, str):
            blocks = _parse_string(spec)
        elif isinstance(spec, MulIrrep) or _is_irrep(spec):
            blocks = [_parse_entry(spec)]
        elif isinstance(spec, (Mapping, Set)):
            raise ValueError(
                f"cannot make an Rs from the {type(spec).__name__} {spec!r}: its order (or "
                "the meaning of keys and values) is not a layout; give a string like "
                "'16x0e+8x1o' or a list of blocks like [(16, '0e'), (8, '1o')]"
            )
        elif isinstance(spec, tuple) and spec and all(_is_integer(entry) for entry in spec):
            raise ValueError(
                f"Rs{spec!r} is ambiguous: write [{spec!r}] for one block (mul, l[, p]), or "
                f"the list {list(spec)!r} for one copy of each order l"
            )
        elif isinstance(spec, Iterable) and not isinstance(spec, (bytes, bytearray, Tensor)):
            blocks = [_parse_entry(entry) for entry in spec]
        else:
            raise ValueError(
                f"cannot make an Rs from {spec!r}: give a string like '4x0e+2x1o' or a list "
                "of (mul, l) / (mul, l, p) tuples"
            )
        self._blocks: tuple[MulIrrep, ...] = tuple(blocks)
        # the layout, for the feature helpers: shapes [mul, 2l+1] and widths of the blocks
        self._block_shapes = tuple((block.mul, 2 * block.l + 1) for block in self._blocks)
        self._sizes = tuple(block.dim for block in self._blocks)

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

    def __contains__(self, item: object) -> bool:
        """``block in rs`` for a :class:`MulIrrep`; ``ir in rs`` (an irrep-like) when some
        copy of ``ir`` is present (``rs.count(ir) > 0``)."""
        if isinstance(item, MulIrrep):
            return item in self._blocks
        return self.count(item) > 0  # type: ignore[arg-type]

    def __add__(self, other: RsLike) -> Rs:
        return Rs(self._blocks + Rs(other)._blocks)

    def __radd__(self, other: RsLike) -> Rs:
        return Rs(Rs(other)._blocks + self._blocks)

    def __mul__(self, times: int) -> Rs:
        """``rs * n`` repeats the list ``n`` times (like a Python list)."""
        return Rs(self._blocks * _repetitions(times, "an Rs"))

    __rmul__ = __mul__

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

    def count(self, ir: IrrepLike) -> int:
        """Total multiplicity of the irrep ``ir`` (``"1o"``, ``(1, -1)`` or an
        :class:`Irrep`) over all blocks.

        Example:
            >>> Rs("2x0e + 1x1o + 3x0e + 1x0o").count("0e")
            5
        """
        ir = Irrep(ir)
        return sum(block.mul for block in self._blocks if (block.l, block.p) == ir)

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

    def filter(
        self,
        keep: RsLike | None = None,
        *,
        l: int | Iterable[int] | None = None,
        p: int | Iterable[int] | None = None,
    ) -> Rs:
        r"""The blocks that pass every criterion given, in their order (nothing merged).

        Args:
            keep (Rs-like or Irrep, optional): the irreps to keep, in any :class:`Rs`
                spelling (its multiplicities are ignored): ``"0e + 1o"``, ``["0e", "1o"]``,
                ``Irrep(1, -1)``. Tuples are blocks ``(mul, l[, p])`` as everywhere in an
                Rs, so write ``Irrep(l, p)`` to name an irrep by numbers. (default: all)
            l (int or iterable of int, optional): the orders to keep. (default: all)
            p (int or iterable of int, optional): the parities to keep. (default: all)

        Example:
            >>> rs = Rs("2x0e + 1x1o + 1x2e + 3x0o")
            >>> rs.filter("0e + 2e"), rs.filter(l=[0, 2], p=1), rs.filter(p=-1)
            (Rs('2x0e+1x2e'), Rs('2x0e+1x2e'), Rs('1x1o+3x0o'))
        """
        irreps = None if keep is None else {block.ir for block in Rs(keep)}
        ls = None if l is None else _as_set(l, "order l", lambda v: _is_integer(v) and v >= 0)
        parity_ok = lambda v: _is_integer(v) and v in (-1, 0, 1)  # noqa: E731
        ps = None if p is None else _as_set(p, "parity p", parity_ok)
        return Rs(
            block
            for block in self._blocks
            if (irreps is None or block.ir in irreps)
            and (ls is None or block.l in ls)
            and (ps is None or block.p in ps)
        )

    # -- feature tensors -----------------------------------------------------------------
    def chunks(self, x: Tensor) -> list[Tensor]:
        r"""The blocks of a feature tensor: one view ``[..., mul, 2l+1]`` per block, in order.

        Views share memory with ``x`` (a slice of its last axis, split in two): writing
        into one writes into ``x``. Blocks of multiplicity 0 give ``[..., 0, 2l+1]``.
        Traced by :func:`torch.compile` without graph breaks.

        Args:
            x (Tensor): features ``[..., dim]``.

        Returns:
            list of Tensor, ``[..., mul, 2l+1]`` for every block.
        """
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Rs '{self}' chunks features [..., {self.dim}], got {shape}")
        if not self._blocks:
            return []
        return [
            piece.unflatten(-1, shape)  # [..., mul, 2l+1]
            for piece, shape in zip(x.split(self._sizes, dim=-1), self._block_shapes)
        ]

    def from_chunks(
        self,
        chunks: Sequence[Tensor],
        leading_shape: Sequence[int] | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        r"""The inverse of :meth:`chunks`: blocks ``[..., mul, 2l+1]`` concatenated into
        features ``[..., dim]``.

        Args:
            chunks (sequence of Tensor): one tensor per block, ``[..., mul, 2l+1]``, with
                equal leading shapes.
            leading_shape (sequence of int, optional): the leading shape ``...``; needed
                only for an Rs without blocks, whose features ``[..., 0]`` have no chunk to
                take it from (checked against the chunks otherwise). (default: ``None``)
            dtype, device: of the features of an Rs without blocks (default: torch's
                defaults).

        Returns:
            Tensor ``[..., dim]``, a new tensor unless the Rs has a single block (then
            possibly a view of it, like :meth:`torch.Tensor.flatten`).
        """
        if len(chunks) != len(self._blocks):
            raise ValueError(
                f"Rs '{self}' has {len(self._blocks)} blocks, got {len(chunks)} chunks"
            )
        for i, (chunk, (mul, width)) in enumerate(zip(chunks, self._block_shapes)):
            if not isinstance(chunk, Tensor) or chunk.shape[-2:] != (mul, width):
                shape = tuple(chunk.shape) if isinstance(chunk, Tensor) else type(chunk).__name__
                raise ValueError(
                    f"chunk {i} of Rs '{self}' must be [..., {mul}, {width}] for its block "
                    f"{self._blocks[i]}, got {shape}"
                )
        if not torch.compiler.is_compiling():  # traced, the concatenation checks shapes
            leading = {chunk.shape[:-2] for chunk in chunks}  # torch.Size: a hashable tuple
            if leading_shape is not None:
                leading.add(tuple(leading_shape))
            if len(leading) > 1:
                shapes = sorted(tuple(shape) for shape in leading)
                raise ValueError(f"chunks of Rs '{self}' have different leading shapes {shapes}")
        if not chunks:
            if leading_shape is None:
                raise ValueError(
                    f"Rs '{self}' has no blocks: from_chunks needs leading_shape to shape [..., 0]"
                )
            return torch.zeros(*leading_shape, 0, dtype=dtype, device=device)
        flat = [chunk.flatten(-2) for chunk in chunks]  # [..., mul (2l+1)]
        return torch.cat(flat, dim=-1) if len(flat) > 1 else flat[0]  # [..., dim]

    def randn(
        self,
        *leading: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Random features ``[*leading, dim]`` of this type, every component
        :math:`\mathcal{N}(0, 1)`.

        Args:
            *leading (int): the leading shape (or one tuple of it, like :func:`torch.randn`).
            dtype, device: of the output (default: torch's defaults).
            generator (torch.Generator, optional): for reproducible draws.
        """
        if len(leading) == 1 and isinstance(leading[0], (tuple, list, torch.Size)):
            leading = tuple(leading[0])
        if not all(_is_integer(size) and size >= 0 for size in leading):
            raise ValueError(f"randn: the leading shape must be non-negative ints, got {leading}")
        return torch.randn(*leading, self.dim, dtype=dtype, device=device, generator=generator)

    def representation(self, R: Tensor) -> Tensor:
        r"""The block-diagonal matrix by which an element of :math:`O(3)` acts on the
        features (e3nn's ``D_from_matrix``).

        For a rotation :math:`R` each copy of :math:`(l, p)` gets :math:`D^l(R)`; for an
        improper element (:math:`\det R = -1`) it gets :math:`p\, D^l(-R)`. Irreps with
        ``p = 0`` only admit rotations.

        Args:
            R (Tensor): ``[..., 3, 3]`` orthogonal matrices.

        Returns:
            Tensor ``[..., dim, dim]``: a homomorphism,
            ``representation(A @ B) == representation(A) @ representation(B)``.

        Example:
            >>> Rs("1x0e + 1x1o").representation(-torch.eye(3)).diagonal().tolist()
            [1.0, -1.0, -1.0, -1.0]
        """
        det = _check_orthogonal(R)
        improper = det < 0  # [...]
        if improper.any() and any(block.p == 0 for block in self._blocks if block.mul > 0):
            raise ValueError(
                f"Rs {self} has irreps without parity (p = 0): only rotations act on it"
            )
        sign = torch.where(improper, -1.0, 1.0).to(R)[..., None, None]  # [..., 1, 1]
        rotation = R * sign
        out = R.new_zeros((*R.shape[:-2], self.dim, self.dim))
        start = 0
        for block in self._blocks:
            D = wigner_D(block.l, rotation)  # [..., 2l+1, 2l+1]
            if block.p != 0:
                D = D * torch.where(improper, float(block.p), 1.0).to(R)[..., None, None]
            width = 2 * block.l + 1
            for _ in range(block.mul):
                out[..., start : start + width, start : start + width] = D
                start += width
        return out


RsLike = Rs | str | Irrep | Iterable[MulIrrep | Irrep | tuple | int | str]


def dim(rs: RsLike) -> int:
    """Dimension of a representation list, ``Rs(rs).dim`` (the e3nn function name)."""
    return Rs(rs).dim


def rs_representation(rs: RsLike, R: Tensor) -> Tensor:
    r"""``Rs(rs).representation(R)``: the matrix by which ``R`` acts on features of ``rs``
    (:meth:`Rs.representation`).

    Example:
        >>> rs_representation("1x0e + 1x1o", -torch.eye(3)).diagonal().tolist()
        [1.0, -1.0, -1.0, -1.0]
    """
    return Rs(rs).representation(R)

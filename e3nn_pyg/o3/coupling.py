r"""Generalized Clebsch-Gordan coefficients: the equivariant symmetric polynomials of
degree :math:`\nu` in one feature vector.

Let :math:`V = \bigoplus_a V_{(l_a, p_a)}` be one copy each of distinct irreps (components
concatenated in list order, :math:`D = \sum_a (2 l_a + 1)`) and :math:`(L, P)` an output
irrep. The couplings of order :math:`\nu` are a basis :math:`U^\eta` of the equivariant maps
:math:`\mathrm{Sym}^\nu(V) \to V_{(L, P)}`, i.e. of the tensors
:math:`U^\eta_{i_1 \dots i_\nu M}` symmetric in :math:`i_1 \dots i_\nu` with

.. math::
    U^\eta_{i_1 \dots i_\nu M} = \sum_{j, M'} \rho(g)_{i_1 j_1} \cdots \rho(g)_{i_\nu j_\nu}
        D^{(L, P)}(g)_{M M'}\, U^\eta_{j_1 \dots j_\nu M'} \quad \text{for all } g \in O(3),

so that :math:`B_M = \sum_{i} U^\eta_{i_1 \dots i_\nu M} A_{i_1} \cdots A_{i_\nu}` is an
irrep :math:`(L, P)` of the body-order :math:`\nu + 1` features of MACE (Batatia et al.,
NeurIPS 2022).

**Construction** (:func:`symmetric_coupling`). For every sorted choice
:math:`a_1 \le \dots \le a_\nu` of input irreps whose parities multiply to :math:`P` and
every chain of intermediate orders :math:`l_1 \otimes l_2 \to l_{12}`,
:math:`l_{12} \otimes l_3 \to l_{123}`, ..., :math:`\to L`, the product of the
:func:`~e3nn_pyg.o3.wigner_3j` tensors along the chain is equivariant; it is placed in the
block :math:`(a_1, \dots, a_\nu)` of the full tensor and symmetrized over the :math:`\nu!`
permutations of the input slots (the sorted choices suffice: a symmetric tensor is the
symmetrization of its sorted block). The candidates are taken in that order (choices
lexicographic, then intermediate orders increasing) and orthonormalized by Gram-Schmidt in
float64; a candidate whose remainder has norm below ``1e-10`` of the chain's (before
symmetrization) is linearly dependent on the kept ones, or symmetrizes to zero, and is
dropped. All of this is deterministic.

**Normalization.** The kept elements are orthonormal for the Frobenius inner product of the
full symmetric tensors: :math:`\sum_{i, M} U^\eta_{iM} U^{\eta'}_{iM} = \delta_{\eta\eta'}`.

**Monomial form.** A symmetric tensor is stored by its values on the sorted index tuples
:math:`i_1 \le \dots \le i_\nu` (the monomials of degree :math:`\nu` in the :math:`D`
components, in colexicographic order: by the last index, then the one before, ...), each
multiplied by the number of distinct permutations of the tuple, so that the full
contraction becomes a sum over monomials:

.. math::
    \sum_{i_1 \dots i_\nu} U_{i_1 \dots i_\nu M} A_{i_1} \cdots A_{i_\nu}
    = \sum_{m} U^{\mathrm{mono}}_{m M} \prod_{\xi=1}^{\nu} A_{i_\xi(m)}.

:func:`expand_monomials` gives the full tensor back. In colexicographic order the monomials
of degree :math:`\nu` whose indices are all :math:`\le i` come first, so the monomials of
degree :math:`\nu + 1` ending in :math:`i` are a leading block of those of degree
:math:`\nu` times :math:`A_i` (how :class:`~e3nn_pyg.tensor_product.SymmetricContraction`
builds them).

Example:
    >>> coupling = symmetric_coupling(["1o"], 2, "0e")  # the invariant |A|^2 / sqrt(3)
    >>> coupling.monomials.tolist()
    [[0, 0], [0, 1], [1, 1], [0, 2], [1, 2], [2, 2]]
    >>> (coupling.coefficients[0, :, 0] * 3**0.5).round(decimals=12).tolist()
    [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    >>> [symmetric_coupling(["1o"], 2, L).num_couplings for L in ("0e", "1e", "2e")]
    [1, 0, 1]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from functools import cache
from typing import NamedTuple

import torch
from torch import Tensor

from ..checks import require_int
from .rs import Irrep, IrrepLike
from .wigner import wigner_3j

__all__ = ["SymmetricCoupling", "expand_monomials", "monomial_table", "symmetric_coupling"]

# a candidate whose remainder after projection keeps less than this part of its norm is
# linearly dependent on the couplings kept before it
_RANK_TOLERANCE = 1e-10


class SymmetricCoupling(NamedTuple):
    r"""The couplings :math:`\mathrm{Sym}^\nu(V) \to V_{(L, P)}` in monomial form:
    ``coefficients`` ``[n_eta, n_monomials, 2L+1]`` float64,
    :math:`U^{\mathrm{mono}}_{\eta m M}`, and ``monomials`` ``[n_monomials, nu]`` long, the
    sorted component indices of each monomial (colexicographic order, as
    :func:`monomial_table`)."""

    coefficients: Tensor
    monomials: Tensor

    @property
    def num_couplings(self) -> int:
        """The number :math:`n_\\eta` of linearly independent couplings."""
        return self.coefficients.shape[0]


@cache
def _monomial_table(dim: int, nu: int) -> Tensor:
    rows = sorted(itertools.combinations_with_replacement(range(dim), nu), key=lambda t: t[::-1])
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), nu)  # [n_mono, nu]


def monomial_table(dim: int, nu: int) -> Tensor:
    """The sorted index tuples :math:`i_1 \\le \\dots \\le i_\\nu` of ``range(dim)`` in
    colexicographic order (by :math:`i_\\nu`, then :math:`i_{\\nu-1}`, ...),
    ``[n_monomials, nu]`` long (:math:`\\binom{dim + \\nu - 1}{\\nu}` rows).

    >>> monomial_table(3, 2).tolist()
    [[0, 0], [0, 1], [1, 1], [0, 2], [1, 2], [2, 2]]
    """
    require_int(dim, "dim", minimum=1)
    require_int(nu, "nu", minimum=1)
    return _monomial_table(dim, nu).clone()


def _permutation_counts(monomials: Tensor) -> Tensor:
    """The number of distinct orderings of each sorted tuple, ``[n_mono]`` float64."""
    nu = monomials.shape[1]
    counts = torch.full((monomials.shape[0],), float(math.factorial(nu)), dtype=torch.float64)
    for value in monomials.unique().tolist():
        repeats = (monomials == value).sum(dim=1)  # [n_mono]
        counts /= torch.tensor([math.factorial(r) for r in repeats.tolist()], dtype=torch.float64)
    return counts


def _chains(orders: Sequence[int], L: int) -> Iterator[list[int]]:
    """Every sequence of intermediate orders coupling ``orders`` left to right into ``L``."""
    if len(orders) == 1:
        if orders[0] == L:
            yield []
        return

    def extend(current: int, rest: Sequence[int], path: list[int]) -> Iterator[list[int]]:
        if not rest:
            if current == L:
                yield path
            return
        for order in range(abs(current - rest[0]), current + rest[0] + 1):
            yield from extend(order, rest[1:], [*path, order])

    yield from extend(orders[0], orders[1:], [])


def _chain_tensor(orders: Sequence[int], chain: Sequence[int]) -> Tensor:
    """The product of ``wigner_3j`` along ``chain``: ``[2l_1+1, ..., 2l_nu+1, 2L+1]``."""
    current = orders[0]
    tensor = torch.eye(2 * current + 1, dtype=torch.float64)  # [2l_1+1, 2l_1+1]
    for order, coupled in zip(orders[1:], chain):
        cg = wigner_3j(current, order, coupled, dtype=torch.float64)  # [c, 2l+1, 2l'+1]
        tensor = torch.tensordot(tensor, cg, dims=([tensor.dim() - 1], [0]))
        current = coupled
    return tensor


def _symmetrized_at_monomials(
    block: Tensor, choice: Sequence[int], offsets: Sequence[int], monomials: Tensor, dim: int
) -> Tensor:
    r"""The symmetrization over the input slots of ``block`` (placed at irreps ``choice``),
    read at the sorted tuples: ``[n_mono, 2L+1]``."""
    nu = len(choice)
    full = torch.zeros((dim,) * nu + (block.shape[-1],), dtype=torch.float64)
    full[tuple(slice(offsets[a], offsets[a] + block.shape[k]) for k, a in enumerate(choice))] = (
        block
    )
    total = torch.zeros(monomials.shape[0], block.shape[-1], dtype=torch.float64)
    for permutation in itertools.permutations(range(nu)):
        total += full[tuple(monomials[:, k] for k in permutation)]  # [n_mono, 2L+1]
    return total / math.factorial(nu)


def _parities_ok(irreps: Sequence[Irrep], choice: Sequence[int], out: Irrep) -> bool:
    parity = math.prod(irreps[a].p for a in choice)
    return out.p == 0 or parity == out.p


@cache
def _symmetric_coupling(irreps: tuple[Irrep, ...], nu: int, out: Irrep) -> SymmetricCoupling:
    offsets = list(itertools.accumulate([0] + [ir.dim for ir in irreps]))
    dim = offsets[-1]
    monomials = _monomial_table(dim, nu)  # [n_mono, nu]
    counts = _permutation_counts(monomials)  # [n_mono]
    # values at the sorted tuples times sqrt(count): the Euclidean inner product of these is
    # the Frobenius inner product of the full symmetric tensors
    metric = counts.sqrt()[:, None]  # [n_mono, 1]
    kept: list[Tensor] = []
    for choice in itertools.combinations_with_replacement(range(len(irreps)), nu):
        if not _parities_ok(irreps, choice, out):
            continue
        orders = [irreps[a].l for a in choice]
        for chain in _chains(orders, out.l):
            block = _chain_tensor(orders, chain)  # [2l_1+1, ..., 2L+1]
            candidate = metric * _symmetrized_at_monomials(block, choice, offsets, monomials, dim)
            # relative to the chain before symmetrization: a chain that symmetrizes to zero
            # leaves rounding noise only, which must not count as a new direction
            norm = block.norm()
            for _ in range(2):  # twice is enough (Gram-Schmidt re-orthogonalization)
                for basis in kept:
                    candidate = candidate - (basis * candidate).sum() * basis
            if candidate.norm() > _RANK_TOLERANCE * norm:
                kept.append(candidate / candidate.norm())
    shape = (len(kept), monomials.shape[0], out.dim)
    stacked = torch.stack(kept) if kept else torch.zeros(shape, dtype=torch.float64)
    # sorted-tuple values times count: the monomial coefficients
    coefficients = stacked * (counts.sqrt()[None, :, None])  # [n_eta, n_mono, 2L+1]
    return SymmetricCoupling(coefficients, monomials)


def _check_irreps(irreps_in: Sequence[IrrepLike], out: IrrepLike) -> tuple[tuple, Irrep]:
    if isinstance(irreps_in, (str, Irrep)):
        raise TypeError(
            f"irreps_in must be a sequence of irreps such as ['0e', '1o'], got {irreps_in!r}"
        )
    irreps = tuple(Irrep(ir) for ir in irreps_in)
    out = Irrep(out)
    if not irreps:
        raise ValueError("irreps_in must hold at least one irrep")
    if len(set(irreps)) != len(irreps):
        raise ValueError(f"irreps_in must be distinct irreps, got {[str(ir) for ir in irreps]}")
    with_parity = {ir.p != 0 for ir in (*irreps, out)}
    if len(with_parity) > 1:
        raise ValueError(
            "irreps_in and the output irrep must all have a parity or all have none, got "
            f"{[str(ir) for ir in irreps]} -> {out}"
        )
    return irreps, out


def symmetric_coupling(
    irreps_in: Sequence[IrrepLike], nu: int, irrep_out: IrrepLike
) -> SymmetricCoupling:
    r"""The orthonormal basis of the equivariant symmetric maps
    :math:`\mathrm{Sym}^\nu(V) \to V_{(L, P)}` in monomial form (module docstring).

    Args:
        irreps_in (list): distinct irreps (:class:`Irrep` or its string), one copy each
            (``["0e", "1o"]``).
        nu (int): the correlation order :math:`\nu \ge 1`.
        irrep_out (Irrep): the output irrep :math:`(L, P)` (or its string).

    Returns:
        :class:`SymmetricCoupling`: ``coefficients`` ``[n_eta, n_monomials, 2L+1]``
        float64 (``n_eta`` may be 0) and ``monomials`` ``[n_monomials, nu]`` long.
        Computed once per arguments and cached; the tensors returned are copies.

    Example:
        >>> coupling = symmetric_coupling(["0e", "1o", "2e"], 3, "0e")
        >>> coupling.coefficients.shape, coupling.monomials.shape
        (torch.Size([5, 165, 1]), torch.Size([165, 3]))
    """
    irreps, out = _check_irreps(irreps_in, irrep_out)
    require_int(nu, "nu", minimum=1)
    coupling = _symmetric_coupling(irreps, nu, out)
    return SymmetricCoupling(coupling.coefficients.clone(), coupling.monomials.clone())


def expand_monomials(coefficients: Tensor, monomials: Tensor, dim: int) -> Tensor:
    r"""The full symmetric tensors of couplings in monomial form.

    Args:
        coefficients (Tensor): ``[..., n_monomials, K]`` (e.g. ``[n_eta, n_mono, 2L+1]``).
        monomials (Tensor): ``[n_monomials, nu]`` long, sorted tuples of ``range(dim)``,
            every one of them (:func:`monomial_table`).
        dim (int): the number :math:`D` of components.

    Returns:
        Tensor ``[..., dim, ..., dim, K]`` (``nu`` axes of size ``dim``), symmetric in them.

    Example:
        >>> coupling = symmetric_coupling(["1o"], 2, "0e")
        >>> full = expand_monomials(coupling.coefficients, coupling.monomials, 3)
        >>> torch.allclose(full[0, :, :, 0], torch.eye(3, dtype=torch.float64) / 3**0.5)
        True
    """
    nu = monomials.shape[1]
    counts = _permutation_counts(monomials).to(coefficients)  # [n_mono]
    values = coefficients / counts[:, None]  # [..., n_mono, K]
    lead = coefficients.shape[:-2]
    full = coefficients.new_zeros((*lead, *(dim,) * nu, coefficients.shape[-1]))
    for permutation in itertools.permutations(range(nu)):
        index = tuple(monomials[:, k] for k in permutation)
        full[(Ellipsis, *index, slice(None))] = values
    return full

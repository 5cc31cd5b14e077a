r"""Radius graphs of periodic structures (crystals, slabs, wires).

:func:`periodic_radius_graph` connects every atom to the periodic images of the atoms of
its structure closer than the cutoff, in triclinic cells of any size and with any axes
periodic, and returns the cell shift of every edge; :func:`cartesian_shifts` turns those
into the Cartesian offsets of the edge vectors (what
:class:`~e3nn_pyg.conv.Convolution` takes as ``edge_shift``).

Every image :math:`\mathbf{p}_j + \mathbf{s} C_g` of a source atom closer than ``r`` to
a target atom gives one edge, so cells smaller than the cutoff give several edges
between the same two atoms and edges from an atom's own images (``loop=False`` leaves
out only the zero-shift self edge). The edge vector, in the convention of
``docs/conventions.md`` (source minus target), is

.. math::
    \mathbf{r}_{ji} = \mathbf{p}_j - \mathbf{p}_i + \mathbf{s}_{ji} C_g,

computed as ``(pos[j] - pos[i]) + cartesian_shifts(shifts, cell, edge_index, batch)``
(:func:`cartesian_shifts`), the vector the comparison with ``r`` is made on (strict, in
the dtype of ``pos``). The graph is exact (no neighbour cap) and symmetric: the reverse
of every edge :math:`(j, i, \mathbf{s})` is :math:`(i, j, -\mathbf{s})`, with exactly
the opposite vector. Positions may lie outside their cell (unwrapped): the shifts
absorb it, so wrapping atoms into the cell changes the shifts, not the edge vectors.
Edges are sorted by target, then source, then shift.

The search wraps the atoms into their cells (in float64), takes the images of every atom
that lie within ``r`` of its cell along each periodic axis (as many per axis as the
cutoff spans distances :math:`1 / \|\mathbf{b}_k\|` between the cell's faces,
:math:`\mathbf{b}_k` the reciprocal vectors), and searches them with a cell list of
side :math:`\approx r` (each atom against the 27 cells around its own), in blocks of
bounded memory. It runs as one custom op under :func:`torch.compile`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..checks import require_bool, require_positive
from ..compilation import require_graph_settings
from . import search
from .search import _ALL_OFFSETS, _CellList, _search, _squared_norm
from .validation import validate_batch, validate_cell, validate_pos

__all__ = ["cartesian_shifts", "periodic_radius_graph"]

# At most this many (atom, image) candidates before pruning: more means a cell far smaller
# than the cutoff (e.g. in the wrong unit), whose exact graph would not fit in memory.
_MAX_IMAGES = 1 << 26


def periodic_radius_graph(
    pos: Tensor,
    r: float,
    cell: Tensor,
    pbc: Tensor | Sequence[bool] | bool,
    batch: Tensor | None = None,
    loop: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""The edges between atoms of periodic structures closer than ``r``, with their cell
    shifts.

    .. math::
        \mathcal{E} = \big\{ (j, i, \mathbf{s}) \;:\; \text{batch}_i = \text{batch}_j = g,\;
        \mathbf{s} \in \mathbb{Z}^3,\; s_k = 0 \text{ unless } \text{pbc}_{g,k},\;
        \|\mathbf{p}_j - \mathbf{p}_i + \mathbf{s} C_g\|^2 < r^2,\;
        (j, \mathbf{s}) \neq (i, \mathbf{0}) \text{ unless } \texttt{loop} \big\}

    The graph is exact (no neighbour cap) and symmetric, its edges sorted by target, then
    source, then shift; see the module docstring for the edge vectors and the search.

    Args:
        pos (torch.Tensor): atom positions ``[N, 3]``, floating dtype, finite.
        r (float): cutoff radius, positive and finite.
        cell (torch.Tensor): lattice vectors as rows, ``[num_graphs, 3, 3]`` or ``[3, 3]``
            (shared by every structure), the dtype and device of ``pos``; see
            :func:`validate_cell`.
        pbc (torch.Tensor or sequence of bool or bool): periodic axes, bool
            ``[num_graphs, 3]`` or ``[3]``; along the others no images are taken.
        batch (torch.Tensor, optional): structure index of every atom ``[N]``, sorted
            ascending. (default: :obj:`None`, one structure)
        loop (bool, optional): also return the self edges ``(i, i, 0)``.
            (default: :obj:`False`)

    Returns:
        ``(edge_index, shifts)``: ``edge_index`` ``[2, E]`` long (row 0 the source ``j``,
        row 1 the target ``i``), and ``shifts`` ``[E, 3]``, the integer cell offsets
        :math:`\mathbf{s}` as whole numbers in the dtype of ``pos`` (ready to multiply with
        the cell, whose gradient a stress needs), both on the device of ``pos``.

    Raises:
        TypeError, ValueError: for invalid inputs (see :func:`validate_pos`,
            :func:`validate_batch` and :func:`validate_cell`), before any search;
            ``ValueError`` also when the cutoff reaches more than :math:`2^{26}` periodic
            images in all (a cell far smaller than the cutoff, e.g. in the wrong unit).

    Example:
        >>> pos = torch.tensor([[0.0, 0.0, 0.0]])
        >>> cell = 1.5 * torch.eye(3)
        >>> edge_index, shifts = periodic_radius_graph(pos, 2.0, cell, [True, False, False])
        >>> edge_index.tolist(), shifts.tolist()
        ([[0, 0], [0, 0]], [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    """
    validate_pos(pos)
    if batch is not None:
        validate_batch(batch, pos.size(0), device=pos.device)
    r = require_positive(r, "r")
    require_bool(loop, "loop")
    cell, pbc = validate_cell(cell, pbc, pos, batch)
    return _periodic_edges(pos, r, cell, pbc, batch, loop)


def _periodic_edges(
    pos: Tensor, r: float, cell: Tensor, pbc: Tensor, batch: Tensor | None, loop: bool = False
) -> tuple[Tensor, Tensor]:
    """:func:`periodic_radius_graph` on inputs its caller has validated, with ``cell`` and
    ``pbc`` per structure (as :func:`validate_cell` returns them)."""
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    return _periodic_search(pos.detach(), batch.long(), cell.detach(), pbc, r, loop)


def cartesian_shifts(
    shifts: Tensor, cell: Tensor, edge_index: Tensor, batch: Tensor | None = None
) -> Tensor:
    r"""The Cartesian offsets :math:`\mathbf{s}_e C_{g(e)}` ``[E, 3]`` of periodic edges:
    what :class:`~e3nn_pyg.conv.Convolution` takes as ``edge_shift``.

    Computed as ``s_0 a_0 + s_1 a_1 + s_2 a_2`` in this order for every edge, so that
    reversed edges get exactly opposite offsets; gradients flow to ``cell`` (a stress
    differentiates through it).

    Args:
        shifts (torch.Tensor): integer cell offsets ``[E, 3]``, as
            :func:`periodic_radius_graph` returns them.
        cell (torch.Tensor): lattice vectors as rows, ``[num_graphs, 3, 3]`` or ``[3, 3]``.
        edge_index (torch.Tensor): ``[2, E]``; the structure of an edge is its target's.
        batch (torch.Tensor, optional): structure of every atom ``[N]``.
            (default: :obj:`None`, one structure)

    Example:
        >>> cartesian_shifts(torch.tensor([[1.0, -1.0, 0.0]]), 2.0 * torch.eye(3),
        ...                  torch.tensor([[0], [0]]))
        tensor([[ 2., -2.,  0.]])
    """
    if shifts.dim() != 2 or shifts.shape[1] != 3 or edge_index.shape != (2, shifts.shape[0]):
        raise ValueError(
            f"shifts must have shape [E, 3] and edge_index [2, E], got {list(shifts.shape)} "
            f"and {list(edge_index.shape)}"
        )
    if cell.dim() == 2 or batch is None:
        cell = cell.reshape(-1, 3, 3)[:1]  # [1, 3, 3]
        graph = edge_index.new_zeros(shifts.shape[0])  # [E]
    else:
        graph = batch.index_select(0, edge_index[1])  # [E]
    return _shift_vectors(shifts.to(cell.dtype), cell, graph)


def _shift_vectors(shifts: Tensor, cell: Tensor, graph: Tensor) -> Tensor:
    """``shifts[e] @ cell[graph[e]]`` ``[E, 3]``, summed in a fixed order (exact negation)."""
    return (
        shifts[:, 0:1] * cell[graph, 0] + shifts[:, 1:2] * cell[graph, 1]
        + shifts[:, 2:3] * cell[graph, 2]
    )  # fmt: skip


@torch.library.custom_op("e3nn_pyg::periodic_radius_search", mutates_args=())
def _periodic_search(
    pos: Tensor, batch: Tensor, cell: Tensor, pbc: Tensor, r: float, loop: bool
) -> tuple[Tensor, Tensor]:
    """The edges and shifts of :func:`periodic_radius_graph` on validated inputs."""
    num_nodes = pos.size(0)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device), pos.new_empty(0, 3)
    images = _PeriodicImages(pos, batch, cell, pbc, r)
    cells = _CellList(images.pos, images.reach, images.graph, cell.size(0))
    # candidates within the search radius, found on the wrapped float64 positions
    target, second = _search(
        images.inside, images.reach, _ImageCandidates(cells, images.inside, batch),
        drop_self=False, sources=images.pos.index_select(0, cells.order),
    )  # fmt: skip
    image = cells.order.index_select(0, second)  # [C]
    source = images.atom.index_select(0, image)  # [C]
    # the shift of the unwrapped positions: pos = inside + wrap @ cell
    shift = images.shift[image] - images.wrap[source] + images.wrap[target]  # [C, 3]
    shift_float = shift.to(pos.dtype)  # [C, 3]
    # the exact test, on the edge vector as the models compute it
    vec = (pos[source] - pos[target]) + _shift_vectors(shift_float, cell, batch[target])
    keep = _squared_norm(vec) < torch.tensor(r * r, dtype=pos.dtype, device=pos.device)  # [C]
    if not loop:
        keep &= (source != target) | (shift != 0).any(1)
    keep = torch.nonzero(keep).squeeze(1)  # [E]
    source, target, shift = source[keep], target[keep], shift[keep]
    order = torch.arange(len(keep), device=pos.device)  # [E] by target, source, shift
    for column in (shift[:, 2], shift[:, 1], shift[:, 0], target * num_nodes + source):
        order = order[torch.argsort(column[order], stable=True)]
    edge_index = torch.stack([source[order], target[order]])  # [2, E]
    return edge_index, shift_float[keep][order]


@_periodic_search.register_fake
def _(pos, batch, cell, pbc, r, loop):
    if not torch.compiler.is_exporting():
        require_graph_settings(pos)
    num_edges = torch.library.get_ctx().new_dynamic_size()
    return pos.new_empty(2, num_edges, dtype=torch.long), pos.new_empty(num_edges, 3)


def _complete_cell(cell: Tensor, pbc: Tensor) -> Tensor:
    """The cells ``[G, 3, 3]`` with the rows of non-periodic axes replaced by an orthonormal
    basis of the complement of the periodic rows (the given rows may be zero; shifts along
    those axes are zero, so only the periodic rows define the lattice)."""
    periodic = cell * pbc[..., None]  # [G, 3, 3]
    # right singular vectors: the first rank(periodic) span the periodic rows, the rest
    # their orthogonal complement
    vh = torch.linalg.svd(periodic)[2]  # [G, 3, 3]
    axes = torch.argsort((~pbc).to(torch.int8), dim=1, stable=True)  # [G, 3] periodic first
    completion = torch.zeros_like(cell).scatter(1, axes[..., None].expand(-1, -1, 3), vh)
    return torch.where(pbc[..., None], cell, completion)  # [G, 3, 3]


class _PeriodicImages:
    """The atoms wrapped into their cells, and their periodic images near the cells.

    ``inside`` ``[N, 3]`` (float64) are the wrapped positions, ``pos = inside + wrap @ cell``
    with integer ``wrap`` ``[N, 3]`` (zero along non-periodic axes). The images are
    ``inside[atom] + shift @ cell`` ``[M, 3]`` for the shifts whose image lies within
    ``reach`` of the cell's slab ``0 <= f_k < 1`` along every periodic axis ``k`` (``f``
    fractional coordinates): a necessary condition to lie within ``reach`` of an atom of
    the cell. ``reach`` is ``r`` enlarged by a bound on the rounding of the edge vectors, so
    that every edge of the exact test is among the candidates.
    """

    def __init__(self, pos: Tensor, batch: Tensor, cell: Tensor, pbc: Tensor, r: float) -> None:
        pos64 = pos.to(torch.float64)  # [N, 3]
        basis = _complete_cell(cell.to(torch.float64), pbc)  # [G, 3, 3]
        inverse = torch.linalg.inv(basis)  # [G, 3, 3], column k: reciprocal vector b_k
        reciprocal = inverse.norm(dim=1)  # [G, 3] |b_k|: 1 / distance between faces
        frac = (pos64[:, None, :] @ inverse[batch]).squeeze(1)  # [N, 3]
        wrap = torch.where(pbc[batch], frac.floor(), 0.0)  # [N, 3]
        frac = frac - wrap  # [N, 3] in [0, 1) along periodic axes, up to rounding
        self.inside = pos64 - _shift_vectors(wrap, basis, batch)  # [N, 3]
        self.wrap = wrap.long()  # [N, 3]

        self.reach = _reach(pos, basis, reciprocal, pbc, r)
        slab = self.reach * reciprocal  # [G, 3] the reach in fractional units
        # wrapped fractional differences lie in (-1, 1): |s_k| <= ceil(reach |b_k|)
        images = torch.where(pbc, (slab + 1e-9).ceil(), 0.0).long()  # [G, 3] each side
        widths = 2 * images + 1  # [G, 3]
        per_atom = widths.prod(1)[batch]  # [N]
        total = int(per_atom.sum())
        if total > _MAX_IMAGES:
            closest = float((1 / reciprocal.masked_fill(~pbc, 0).amax(1)).min())
            raise ValueError(
                f"periodic_radius_graph: the cutoff {r} reaches {total} periodic images "
                f"(more than {_MAX_IMAGES}); the closest faces of a cell are {closest:.3g} "
                "apart: check the cell (its unit?)"
            )
        low, high = -slab - 1e-9, 1 + slab + 1e-9  # [G, 3]
        atoms, shifts = [], []
        chunk = torch.div(
            torch.cumsum(per_atom, 0) - per_atom, search._PAIR_CHUNK, rounding_mode="floor"
        )
        splits = torch.unique_consecutive(chunk, return_counts=True)[1].tolist()
        all_atoms = torch.arange(pos.size(0), device=pos.device)
        for a, n in zip(all_atoms.split(splits), per_atom.split(splits)):
            atom = torch.repeat_interleave(a, n)  # [P]
            local = torch.arange(len(atom), device=pos.device) - torch.repeat_interleave(
                torch.cumsum(n, 0) - n, n
            )  # [P] index of the shift in its structure's grid
            g = batch[atom]  # [P]
            w = widths[g]  # [P, 3]
            grid = torch.stack(
                [local // (w[:, 1] * w[:, 2]), local // w[:, 2] % w[:, 1], local % w[:, 2]], 1
            )  # [P, 3]
            shift = grid - images[g]  # [P, 3]
            f = frac[atom] + shift  # [P, 3]
            near = (((f > low[g]) & (f < high[g])) | ~pbc[g]).all(1)  # [P]
            atoms.append(atom[near])
            shifts.append(shift[near])
        self.atom = torch.cat(atoms)  # [M]
        self.shift = torch.cat(shifts)  # [M, 3]
        self.graph = batch[self.atom]  # [M]
        self.pos = self.inside[self.atom] + _shift_vectors(
            self.shift.to(torch.float64), basis, self.graph
        )  # [M, 3]


def _reach(pos: Tensor, basis: Tensor, reciprocal: Tensor, pbc: Tensor, r: float) -> float:
    """``r`` enlarged by a bound on the rounding of ``(pos_j - pos_i) + s @ cell`` in the
    dtype of ``pos``: ``|pos_j - pos_i| <= 2 max|p|``, ``|s_k| <= n_k + 2 max|p| |b_k|``,
    ``n_k <= r |b_k| + 1``."""
    lengths = basis.norm(dim=2) * pbc  # [G, 3]
    extent = 2 * float(pos.to(torch.float64).abs().max())
    skew = float((lengths * reciprocal).sum(1).max())
    span = float(((r * reciprocal + 2) * lengths).sum(1).max())
    eps = torch.finfo(pos.dtype).eps
    return r * (1 + 1e-6) + 64 * eps * (extent * (1 + skew) + span + r)


class _ImageCandidates:
    """Candidates of atom ``i`` (wrapped): the images in the 27 cells around its own."""

    def __init__(self, cells: _CellList, inside: Tensor, batch: Tensor) -> None:
        self.cells = cells
        self.graph = batch
        self.cell = cells.locate(inside, batch)  # [N, 3]

    def ranges(self, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.cells._neighbours(
            targets, self.graph[targets], self.cell[targets], _ALL_OFFSETS
        )

r"""The radius search: the edges of :func:`~e3nn_pyg.graph.radius_graph` on validated inputs.

Three ways to find the pairs closer than ``r``, which return identical tensors:

- dense blocks: every ordered pair of each molecule of at most ``_DENSE_MAX_ATOMS`` atoms,
  found already sorted by target, then source;
- a cell list (:class:`_CellList`): cells of side slightly above ``r``; each pair is found
  once, from its own cell and 13 of the 26 neighbouring cells, then mirrored;
- ``torch_cluster``'s k-d tree (optional, ``pip install torch-cluster``).

The first two make the ``"torch"`` backend and work in blocks of ``_TARGET_BLOCK`` targets
and chunks of about ``_PAIR_CHUNK`` candidate pairs (:func:`_search`, shared with the
periodic search), so memory stays bounded for any system size. The search is one custom op
(``e3nn_pyg::radius_search``) to :func:`torch.compile` and :func:`torch.export`: its number
of edges depends on the data.
"""

from __future__ import annotations

import functools
import math
import warnings
from types import ModuleType
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from ..compilation import require_graph_settings

__all__ = ["BACKENDS", "NeighborTruncationWarning"]

BACKENDS = ("auto", "torch", "torch_cluster")
# "auto" rule, measured with benchmarks/bench_graph.py (1 thread, medians): the pure-torch
# search wins while every molecule has at most this many atoms, torch_cluster above.
AUTO_TORCH_MAX_ATOMS = 32
# Molecules of at most this many atoms are searched with one dense block each, larger
# ones with a cell list (both inside the "torch" backend).
_DENSE_MAX_ATOMS = 64
# Memory bounds of the "torch" backend: targets handled per block, candidate pairs per chunk.
_TARGET_BLOCK = 1 << 13
_PAIR_CHUNK = 1 << 20
# The 27 cells around a cell (itself included), and the 13 that come after it in (x, y, z)
# lexicographic order.
_ALL_OFFSETS = torch.cartesian_prod(*(torch.arange(-1, 2),) * 3)  # [27, 3]
_HALF_OFFSETS = _ALL_OFFSETS[14:]  # [13, 3]


class NeighborTruncationWarning(UserWarning):
    """Emitted when ``max_num_neighbors`` drops edges of the radius graph.

    Silence it with ``warnings.simplefilter("ignore", NeighborTruncationWarning)``.
    """


@torch.library.custom_op("e3nn_pyg::radius_search", mutates_args=())
def _radius_search(
    pos: Tensor, batch: Tensor, r: float, loop: bool, max_num_neighbors: int | None, backend: str
) -> Tensor:
    """The edges of :func:`radius_graph` on validated inputs, ``source_to_target``."""
    num_nodes = pos.size(0)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    sizes = torch.bincount(batch)  # [num_graphs]
    largest = int(sizes.max())
    if backend == "auto":
        backend = _auto_backend(pos, largest)
    if backend == "torch":
        edge_index = _radius_torch(pos, r, batch, sizes, loop)
    else:
        edge_index = _radius_torch_cluster(pos, r, batch, largest, loop)

    if max_num_neighbors is not None:
        edge_index, truncated = _keep_nearest(edge_index, pos, max_num_neighbors)
        if truncated:
            warnings.warn(
                f"radius_graph: max_num_neighbors={max_num_neighbors} dropped edges of "
                f"{truncated} of {num_nodes} nodes (the nearest {max_num_neighbors} were kept); "
                "the graph is no longer symmetric and models using it lose exact "
                "equivariance. Pass max_num_neighbors=None for the exact radius graph.",
                NeighborTruncationWarning,
                stacklevel=2,
            )
    return edge_index


@_radius_search.register_fake
def _(pos, batch, r, loop, max_num_neighbors, backend):
    if not torch.compiler.is_exporting():
        require_graph_settings(pos)
    num_edges = torch.library.get_ctx().new_dynamic_size()
    return pos.new_empty(2, num_edges, dtype=torch.long)


@functools.cache
def _torch_cluster() -> ModuleType | None:
    try:
        import torch_cluster
    except (ImportError, OSError):
        return None
    return torch_cluster


def _import_torch_cluster() -> ModuleType:
    module = _torch_cluster()
    if module is None:
        raise ImportError(
            "backend='torch_cluster' needs the torch_cluster package: "
            "pip install torch-cluster (or pip install 'e3nn_pyg[fast]'), "
            "or use backend='torch'"
        )
    return module


def _auto_backend(pos: Tensor, largest: int) -> str:
    if (
        largest <= AUTO_TORCH_MAX_ATOMS
        or pos.device.type != "cpu"
        or pos.dtype not in (torch.float32, torch.float64)
        or _torch_cluster() is None
    ):
        return "torch"
    return "torch_cluster"


def _squared_norm(d: Tensor) -> Tensor:
    """``|d|^2`` of vectors ``[E, 3]`` summed x, y, z left to right (torch_cluster's rounding)."""
    return d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]  # [E]


def _squared_distance(pos: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """``|pos[src] - pos[dst]|^2``, rounded as :func:`_squared_norm`."""
    return _squared_norm(pos.index_select(0, src) - pos.index_select(0, dst))  # [E]


def _sorted_edges(src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """``[src; dst]`` sorted by target, then source."""
    key = dst * num_nodes + src  # [E]
    if key.is_cpu:  # numpy sorts and divides int64 faster than torch on CPU
        target, source = np.divmod(np.sort(key.numpy()), num_nodes)
        return torch.from_numpy(np.stack([source, target]))
    key = torch.sort(key)[0]
    return torch.stack([key % num_nodes, torch.div(key, num_nodes, rounding_mode="floor")])


def _keep_nearest(edge_index: Tensor, pos: Tensor, cap: int) -> tuple[Tensor, int]:
    """Keep the ``cap`` nearest sources of every target; also return how many targets lost some.

    ``edge_index`` must be sorted by target, then source; the result keeps that order.
    """
    src, dst = edge_index
    degree = torch.bincount(dst, minlength=pos.size(0))  # [N]
    truncated = int((degree > cap).sum())
    if truncated == 0:
        return edge_index, 0
    d2 = _squared_distance(pos, src, dst)  # [E]
    order = torch.argsort(d2, stable=True)  # [E]
    order = order[torch.argsort(dst[order], stable=True)]  # by (target, distance, source)
    first = torch.cumsum(degree, 0) - degree  # [N] position of each target's first edge
    rank = torch.arange(len(order), device=pos.device) - first[dst[order]]  # [E]
    keep = torch.empty_like(rank, dtype=torch.bool)
    keep[order] = rank < cap
    return edge_index[:, keep], truncated


# -- backend "torch_cluster" -----------------------------------------------------------------
def _radius_torch_cluster(pos: Tensor, r: float, batch: Tensor, largest: int, loop: bool) -> Tensor:
    # torch_cluster caps every query at max_num_neighbors (32 by default) in k-d tree order:
    # a cap of the largest molecule size keeps every edge.
    edge_index = _import_torch_cluster().radius_graph(
        pos.contiguous(), r, batch=batch, loop=loop, max_num_neighbors=largest
    )
    return _sorted_edges(edge_index[0], edge_index[1], pos.size(0))


# -- backend "torch" -------------------------------------------------------------------------
class _Candidates(Protocol):
    """Candidate sources of targets, as ranges of consecutive positions."""

    def ranges(self, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(target, first candidate, number of candidates)`` ``[R]`` each."""
        ...


class _MoleculeBlocks:
    """Candidates of atom ``i``: every atom of its molecule, ``i`` included (one range)."""

    def __init__(self, batch: Tensor, sizes: Tensor) -> None:
        self.batch = batch
        self.sizes = sizes
        self.ptr = torch.cumsum(sizes, 0) - sizes  # [G] first atom of each molecule

    def ranges(self, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        graph = self.batch[targets]  # [T]
        return targets, self.ptr[graph], self.sizes[graph]


class _CellList:
    """Candidates of position ``p``: the atoms after it in its cell, and 13 neighbouring cells.

    The 13 cells are one of each pair of opposite neighbours, so that every pair of atoms
    closer than ``r`` (cells have a side of at least ``r``) is a candidate exactly once.
    Atoms are renumbered cell by cell (``order``) so that each cell is a contiguous range.
    Cells are indexed per molecule from the molecule's lower corner; their side is enlarged
    where needed so that all cell keys fit in an int64, and by a small margin over ``r`` so
    that rounding never puts two atoms closer than ``r`` two cells apart.
    """

    def __init__(self, pos: Tensor, r: float, batch: Tensor, num_graphs: int) -> None:
        pos64 = pos.to(torch.float64)  # [N, 3] binning only; distances use pos's dtype
        index = batch[:, None].expand(-1, 3)  # [N, 3]
        lo = pos64.new_full((num_graphs, 3), math.inf).scatter_reduce(0, index, pos64, "amin")
        hi = pos64.new_full((num_graphs, 3), -math.inf).scatter_reduce(0, index, pos64, "amax")
        extent = hi - lo  # [G, 3], -inf for a molecule without atoms
        max_cells = max(1, int((2.0**62 / num_graphs) ** (1 / 3)) - 1)  # per axis
        margin = max(1e-3, 16 * torch.finfo(pos.dtype).eps)
        self.lo = lo  # [G, 3]
        self.side = torch.clamp(extent.amax(1) / max_cells, min=r * (1 + margin))  # [G]
        self.shape = (extent / self.side[:, None]).floor().clamp(0, max_cells).long() + 1
        cells = self.shape.prod(1)  # [G]
        self.base = torch.cumsum(cells, 0) - cells  # [G] first key of each molecule
        cell = self.locate(pos64, batch)  # [N, 3]

        key = self._key(batch, cell)  # [N]
        self.order = torch.argsort(key)  # [N] atom at each position of the cell-by-cell order
        self.keys, self.counts = torch.unique_consecutive(key[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts  # [C] first position of cells
        self.slot = torch.repeat_interleave(self.counts)  # [N] cell of each position
        self.graph = batch[self.order]  # [N]
        self.cell = cell[self.order]  # [N, 3]

    def locate(self, pos64: Tensor, graph: Tensor) -> Tensor:
        """The cell ``[..., 3]`` of float64 points of the molecules ``graph``."""
        cell = ((pos64 - self.lo[graph]) / self.side[graph, None]).floor().long()  # [..., 3]
        return torch.minimum(cell.clamp(min=0), self.shape[graph] - 1)

    def _key(self, graph: Tensor, cell: Tensor) -> Tensor:
        shape = self.shape[graph]  # [..., 3]
        return (
            self.base[graph]
            + (cell[..., 0] * shape[..., 1] + cell[..., 1]) * shape[..., 2]
            + cell[..., 2]
        )

    def _neighbours(
        self, targets: Tensor, graph: Tensor, cell: Tensor, offsets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The ranges of the non-empty cells at ``offsets [K, 3]`` from each target's cell."""
        graph = graph[:, None]  # [T, 1]
        cell = cell[:, None, :] + offsets.to(targets.device)  # [T, K, 3]
        inside = ((cell >= 0) & (cell < self.shape[graph])).all(-1)  # [T, K]
        key = self._key(graph, cell)  # [T, K]
        slot = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)  # [T, K]
        found = inside & (self.keys[slot] == key)  # [T, K]
        slot = slot[found]  # [R]
        return targets[:, None].expand_as(found)[found], self.starts[slot], self.counts[slot]

    def ranges(self, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        own = self.slot[targets]  # [T]
        own_start = targets + 1  # [T]
        own_length = self.starts[own] + self.counts[own] - own_start  # [T]
        tgt, start, length = self._neighbours(
            targets, self.graph[targets], self.cell[targets], _HALF_OFFSETS
        )  # [R] each
        return (
            torch.cat([targets, tgt]),
            torch.cat([own_start, start]),
            torch.cat([own_length, length]),
        )


def _search(
    pos: Tensor,
    r: float,
    candidates: _Candidates,
    drop_self: bool,
    sources: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The candidate pairs ``(first, second)`` with ``|sources[second] - pos[first]| < r``
    (``sources`` defaults to ``pos``).

    Targets are handled in blocks of ``_TARGET_BLOCK``, their candidate ranges in chunks of
    about ``_PAIR_CHUNK`` pairs; pairs come out in the order of the ranges.
    """
    num_nodes = pos.size(0)
    r2 = torch.tensor(r * r, dtype=pos.dtype, device=pos.device)  # rounded like torch_cluster
    firsts, seconds = [], []
    for begin in range(0, num_nodes, _TARGET_BLOCK):
        block = torch.arange(begin, min(begin + _TARGET_BLOCK, num_nodes), device=pos.device)
        tgt, start, length = candidates.ranges(block)  # [R] each
        chunk = torch.div(torch.cumsum(length, 0) - length, _PAIR_CHUNK, rounding_mode="floor")
        splits = torch.unique_consecutive(chunk, return_counts=True)[1].tolist()
        for t, s, n in zip(tgt.split(splits), start.split(splits), length.split(splits)):
            segment = torch.repeat_interleave(n)  # [P] range of each candidate pair
            shift = s - (torch.cumsum(n, 0) - n)  # [R]
            second = torch.arange(len(segment), device=pos.device) + shift.index_select(0, segment)
            first = t.index_select(0, segment)  # [P]
            if sources is None:
                keep = _squared_distance(pos, second, first) < r2  # [P]
            else:
                d = sources.index_select(0, second) - pos.index_select(0, first)  # [P, 3]
                keep = _squared_norm(d) < r2  # [P]
            if drop_self:
                keep &= first != second
            keep = torch.nonzero(keep).squeeze(1)  # [K]
            firsts.append(first.index_select(0, keep))
            seconds.append(second.index_select(0, keep))
    return torch.cat(firsts), torch.cat(seconds)


def _radius_torch(pos: Tensor, r: float, batch: Tensor, sizes: Tensor, loop: bool) -> Tensor:
    if int(sizes.max()) <= _DENSE_MAX_ATOMS:
        # Every ordered pair of each molecule, found already sorted by target, then source.
        target, source = _search(pos, r, _MoleculeBlocks(batch, sizes), drop_self=not loop)
        return torch.stack([source, target])
    cells = _CellList(pos, r, batch, len(sizes))
    # Each unordered pair once, as positions in the cell-by-cell order.
    first, second = _search(pos[cells.order], r, cells, drop_self=False)
    a, b = cells.order.index_select(0, first), cells.order.index_select(0, second)
    src, dst = [a, b], [b, a]
    if loop:
        nodes = torch.arange(pos.size(0), device=pos.device)
        src.append(nodes)
        dst.append(nodes)
    return _sorted_edges(torch.cat(src), torch.cat(dst), pos.size(0))

r"""Radius graphs: which atoms talk to which in a point convolution.

:func:`radius_graph` connects every pair of distinct atoms of the same molecule that lie
closer than a cutoff ``r``. It is exact by default (no cap on the number of neighbours, see
PyG issues #1867 and #2933: the usual silent cap of 32 breaks equivariance) and has two
backends that return identical tensors: a pure-torch search (always available) and
``torch_cluster``'s k-d tree (optional, ``pip install torch-cluster``).

:func:`validate_pos` and :func:`validate_batch` are the input checks it shares with the
convolution.
"""

from __future__ import annotations

import functools
import math
import warnings
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from .checks import is_int, is_real, require
from .compilation import GRAPH_SETTINGS, INDUCTOR_SETTINGS, settings_applied

__all__ = ["NeighborTruncationWarning", "radius_graph", "validate_batch", "validate_pos"]

BACKENDS = ("auto", "torch", "torch_cluster")
FLOWS = ("source_to_target", "target_to_source")

# "auto" rule, measured with benchmarks/bench_graph.py (1 thread, medians): the pure-torch
# search wins while every molecule has at most this many atoms, torch_cluster above.
AUTO_TORCH_MAX_ATOMS = 32
# Molecules of at most this many atoms are searched with one dense block each, larger
# ones with a cell list (both inside the "torch" backend).
_DENSE_MAX_ATOMS = 64
# Memory bounds of the "torch" backend: targets handled per block, candidate pairs per chunk.
_TARGET_BLOCK = 1 << 13
_PAIR_CHUNK = 1 << 20
# The 13 cells around a cell that come after it in (x, y, z) lexicographic order.
_HALF_OFFSETS = torch.cartesian_prod(*(torch.arange(-1, 2),) * 3)[14:]  # [13, 3]


class NeighborTruncationWarning(UserWarning):
    """Emitted when ``max_num_neighbors`` drops edges of the radius graph.

    Silence it with ``warnings.simplefilter("ignore", NeighborTruncationWarning)``.
    """


# -- validation ------------------------------------------------------------------------------
def validate_pos(pos: Tensor, name: str = "pos") -> None:
    r"""Check that ``pos`` holds ``N`` finite points of 3D space.

    Args:
        pos (torch.Tensor): positions, shape ``[N, 3]``, floating dtype.
        name (str, optional): how to call the tensor in error messages. (default: ``"pos"``)

    Raises:
        TypeError: if ``pos`` is not a floating-point tensor.
        ValueError: if its shape is not ``[N, 3]`` or it holds NaN or infinite values.
    """
    if not isinstance(pos, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, 3], got {type(pos).__name__}")
    if not pos.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {pos.dtype}")
    if pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {list(pos.shape)}")
    if pos.is_meta:  # no values to check
        return
    finite = torch.isfinite(pos)  # [N, 3]

    def detail() -> str:
        bad = int((~finite).any(dim=1).sum())
        return f"{name} holds NaN or infinite coordinates in {bad} of {len(pos)} rows"

    require(finite.all(), ValueError, f"{name} holds NaN or infinite coordinates", detail)


def validate_batch(batch: Tensor, num_nodes: int, device: torch.device | None = None) -> None:
    r"""Check a PyG ``batch`` vector: molecule index of every node, sorted ascending.

    Args:
        batch (torch.Tensor): shape ``[num_nodes]``, integer dtype, non-negative,
            non-decreasing (nodes of one molecule are contiguous, as PyG's ``Batch`` makes them).
        num_nodes (int): the number of nodes it must describe.
        device (torch.device, optional): the device it must live on, e.g. ``pos.device``.
            (default: :obj:`None`, not checked)

    Raises:
        TypeError: if ``batch`` is not an integer tensor.
        ValueError: for a wrong shape, a negative entry, a decreasing step or a wrong device.
    """
    if not isinstance(batch, Tensor):
        raise TypeError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
    if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
        raise TypeError(f"batch must be an integer tensor, got dtype {batch.dtype}")
    if batch.dim() != 1:
        raise ValueError(f"batch must be 1-D of shape [num_nodes], got {list(batch.shape)}")
    if batch.numel() != num_nodes:
        raise ValueError(f"batch has {batch.numel()} entries but there are {num_nodes} nodes")
    if device is not None:
        device = torch.device(device)
        if batch.device.type != device.type or device.index not in (None, batch.device.index):
            raise ValueError(f"batch is on {batch.device} but pos is on {device}")
    require(
        (batch >= 0).all(), ValueError, "batch must be non-negative",
        lambda: f"batch must be non-negative, got minimum {int(batch.min())}",
    )  # fmt: skip
    require(
        (batch.cummax(0).values == batch).all(), ValueError,  # (no [1:] slice: size N - 1)
        "batch must be sorted ascending (the nodes of each molecule contiguous, as in "
        "torch_geometric.data.Batch); sort the nodes by molecule first",
    )  # fmt: skip


def _validate_radius(r: float) -> float:
    if isinstance(r, Tensor) and r.numel() == 1:
        r = r.item()
    if not is_real(r):
        raise TypeError(f"r must be a real number, got {type(r).__name__}")
    r = float(r)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"r must be positive and finite, got {r}")
    return r


# -- the entry point -------------------------------------------------------------------------
def radius_graph(
    pos: Tensor,
    r: float,
    batch: Tensor | None = None,
    loop: bool = False,
    max_num_neighbors: int | None = None,
    backend: str = "auto",
    flow: str = "source_to_target",
) -> Tensor:
    r"""The edges between atoms of the same molecule closer than ``r``.

    .. math::
        \mathcal{E} = \big\{ (j, i) \;:\; \text{batch}_i = \text{batch}_j,\;
        \|\mathbf{p}_j - \mathbf{p}_i\|^2 < r^2,\; i \neq j \text{ unless } \texttt{loop} \big\}

    The comparison is strict and made on squared distances in the dtype of ``pos``, exactly
    as ``torch_cluster`` does, so that both backends return the same tensor. With
    ``flow="source_to_target"`` (PyG's default) ``edge_index[0]`` is the source ``j`` and
    ``edge_index[1]`` the target ``i`` that receives the message; ``"target_to_source"``
    swaps the two rows. Edges are sorted by target, then source.

    **Exact by default.** ``max_num_neighbors=None`` keeps every edge. A cap keeps, for each
    target, its ``max_num_neighbors`` nearest sources (ties: lower source index first; with
    ``loop=True`` the self-loop, at distance 0, counts and comes first) and emits a
    :class:`NeighborTruncationWarning` when it drops edges: the capped graph is no longer
    symmetric and, where distances nearly tie, depends on rounding, which breaks the exact
    equivariance of the models built on it.

    **Backends.** Both return the same tensor.

    - ``"torch"``, pure torch: molecules of at most 64 atoms are searched as dense blocks
      (every ordered pair), larger ones with a cell list (cells of side slightly above
      ``r``; each pair is found once, from its own cell and 13 of the 26 neighbouring
      cells, then mirrored). Work goes in blocks of 8192 targets and chunks of about
      :math:`2^{20}` candidate pairs, so memory stays bounded for any system size.
    - ``"torch_cluster"``: ``torch_cluster.radius_graph`` (a k-d tree per molecule), called
      with a cap as large as the largest molecule so that it drops nothing (its default is
      32); the nearest-first cap above is applied afterwards.
    - ``"auto"``: ``"torch"`` when every molecule has at most 32 atoms, when
      ``torch_cluster`` is not installed, or when ``pos`` is not a float32/float64 CPU
      tensor; ``"torch_cluster"`` otherwise.

    The rule comes from ``benchmarks/bench_graph.py`` (one CPU thread, medians of 41 calls,
    CPU time, ``r = 5`` Å, float32, sorting included; atoms uniform, 0.125 per Å³):
    on batches of 4096 atoms the dense search beats torch_cluster up to 32 atoms per
    molecule (4.7 ms against 5.7 ms) and loses from 48 (7.4 ms against 6.9 ms).

    =====================================  ============  ====================
    system                                 ``"torch"``   ``"torch_cluster"``
    =====================================  ============  ====================
    128 QM9-like molecules (9-29 atoms)    1.6 ms        2.4 ms
    1,000 atoms in a 20 Å cube             4.4 ms        3.6 ms
    10,000 atoms in a 43 Å cube            64 ms         51 ms
    =====================================  ============  ====================

    Args:
        pos (torch.Tensor): atom positions, shape ``[N, 3]``, floating dtype, finite.
        r (float): cutoff radius, positive and finite.
        batch (torch.Tensor, optional): molecule index of every atom, shape ``[N]``,
            sorted ascending. (default: :obj:`None`, one molecule)
        loop (bool, optional): also return the self-loops ``(i, i)``. (default: :obj:`False`)
        max_num_neighbors (int, optional): keep at most this many incoming edges per target,
            the nearest ones. (default: :obj:`None`, no cap)
        backend (str, optional): ``"auto"``, ``"torch"`` or ``"torch_cluster"``.
            (default: ``"auto"``)
        flow (str, optional): ``"source_to_target"`` or ``"target_to_source"``.
            (default: ``"source_to_target"``)

    Returns:
        torch.Tensor: ``edge_index`` of shape ``[2, E]``, dtype ``torch.long``, on the device
        of ``pos``.

    Raises:
        TypeError, ValueError: for invalid inputs (see :func:`validate_pos` and
            :func:`validate_batch`), before any search.
        ImportError: for ``backend="torch_cluster"`` when ``torch_cluster`` is missing.

    Example:
        >>> pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
        >>> radius_graph(pos, r=1.5)
        tensor([[1, 0],
                [0, 1]])
        >>> radius_graph(pos, r=1.5, batch=torch.tensor([0, 1, 1]))
        tensor([], size=(2, 0), dtype=torch.int64)
    """
    validate_pos(pos)
    num_nodes = pos.size(0)
    if batch is not None:
        validate_batch(batch, num_nodes, device=pos.device)
    r = _validate_radius(r)
    if not isinstance(loop, bool):
        raise TypeError(f"loop must be a bool, got {type(loop).__name__}")
    if max_num_neighbors is not None:
        if not is_int(max_num_neighbors):
            raise TypeError(
                f"max_num_neighbors must be an int or None, got {type(max_num_neighbors).__name__}"
            )
        if max_num_neighbors < 1:
            raise ValueError(f"max_num_neighbors must be >= 1 (or None), got {max_num_neighbors}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}, expected one of {BACKENDS}")
    if flow not in FLOWS:
        raise ValueError(f"unknown flow {flow!r}, expected one of {FLOWS}")
    if backend == "torch_cluster":
        _import_torch_cluster()

    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=pos.device)
    # the search has a data-dependent number of edges: one custom op to torch.compile
    edge_index = _radius_search(pos.detach(), batch.long(), r, loop, max_num_neighbors, backend)
    if flow == "target_to_source":
        edge_index = edge_index.flip(0)
    return edge_index


# -- the search, one opaque step to torch.compile and torch.export ---------------------------
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
        _check_compile_settings(pos)
    num_edges = torch.library.get_ctx().new_dynamic_size()
    return pos.new_empty(2, num_edges, dtype=torch.long)


def _check_compile_settings(pos: Tensor) -> None:
    """Refuse a torch.compile without the settings of :mod:`e3nn_pyg.compilation` that a
    radius graph needs (read here, while the compiler traces: traced code cannot read
    them); the Inductor settings concern its C++ code, on CPU."""
    inductor = INDUCTOR_SETTINGS if pos.device.type == "cpu" else {}
    if not settings_applied(GRAPH_SETTINGS, inductor):
        raise RuntimeError(
            "torch.compile of a radius graph needs the settings of e3nn_pyg.compilation "
            "(a data-dependent number of edges; on CPU, no vectorised loop tails, which "
            "miscompute gradients in torch 2.13): compile with "
            "e3nn_pyg.compile_model(module), or call the compiled module inside "
            "e3nn_pyg.compilation.compile_settings()"
        )


# -- shared pieces ---------------------------------------------------------------------------
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


def _squared_distance(pos: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """``|pos[src] - pos[dst]|^2`` summed x, y, z left to right (torch_cluster's rounding)."""
    d = pos.index_select(0, src) - pos.index_select(0, dst)  # [E, 3]
    return d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]  # [E]


def _sorted_edges(src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """``[src; dst]`` sorted by target, then source."""
    key = dst * num_nodes + src  # [E]
    if key.is_cpu:  # numpy sorts and divides int64 several times faster than torch on CPU
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
        side = torch.clamp(extent.amax(1) / max_cells, min=r * (1 + margin))  # [G]
        self.shape = (extent / side[:, None]).floor().clamp(0, max_cells).long() + 1  # [G, 3]
        cells = self.shape.prod(1)  # [G]
        self.base = torch.cumsum(cells, 0) - cells  # [G] first key of each molecule
        cell = ((pos64 - lo[batch]) / side[batch, None]).floor().long()  # [N, 3]
        cell = torch.minimum(cell.clamp(min=0), self.shape[batch] - 1)  # [N, 3]

        key = self._key(batch, cell)  # [N]
        self.order = torch.argsort(key)  # [N] atom at each position of the cell-by-cell order
        self.keys, self.counts = torch.unique_consecutive(key[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts  # [C] first position of cells
        self.slot = torch.repeat_interleave(self.counts)  # [N] cell of each position
        self.graph = batch[self.order]  # [N]
        self.cell = cell[self.order]  # [N, 3]

    def _key(self, graph: Tensor, cell: Tensor) -> Tensor:
        shape = self.shape[graph]  # [..., 3]
        return (
            self.base[graph]
            + (cell[..., 0] * shape[..., 1] + cell[..., 1]) * shape[..., 2]
            + cell[..., 2]
        )

    def ranges(self, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        own = self.slot[targets]  # [T]
        own_start = targets + 1  # [T]
        own_length = self.starts[own] + self.counts[own] - own_start  # [T]
        graph = self.graph[targets][:, None]  # [T, 1]
        cell = self.cell[targets][:, None, :] + _HALF_OFFSETS.to(targets.device)  # [T, 13, 3]
        inside = ((cell >= 0) & (cell < self.shape[graph])).all(-1)  # [T, 13]
        key = self._key(graph, cell)  # [T, 13]
        slot = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)  # [T, 13]
        found = inside & (self.keys[slot] == key)  # [T, 13]
        slot = slot[found]  # [R]
        return (
            torch.cat([targets, targets[:, None].expand_as(found)[found]]),
            torch.cat([own_start, self.starts[slot]]),
            torch.cat([own_length, self.counts[slot]]),
        )


def _search(
    pos: Tensor, r: float, candidates: _MoleculeBlocks | _CellList, drop_self: bool
) -> tuple[Tensor, Tensor]:
    """The candidate pairs ``(first, second)`` with ``|pos[second] - pos[first]| < r``.

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
            keep = _squared_distance(pos, second, first) < r2  # [P]
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

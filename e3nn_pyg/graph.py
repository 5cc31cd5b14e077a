r"""Radius graphs: which atoms talk to which in a point convolution.

:func:`radius_graph` connects every pair of distinct atoms of the same molecule that lie
closer than a cutoff ``r``. It is exact by default (no cap on the number of neighbours, see
PyG issues #1867 and #2933: the usual silent cap of 32 breaks equivariance) and has two
backends that return identical tensors: a pure-torch search (always available) and
``torch_cluster``'s k-d tree (optional, ``pip install torch-cluster``).

:func:`periodic_radius_graph` does the same for periodic structures (crystals, slabs,
wires): it connects every atom to the periodic images of the atoms of its structure, in
triclinic cells of any size and with any axes periodic, and returns the cell shift of every
edge; :func:`cartesian_shifts` turns those into the Cartesian offsets of the edge vectors.

:func:`validate_pos`, :func:`validate_batch` and :func:`validate_cell` are the input checks
they share with the convolution and the models. Each public function validates its inputs;
the models, which validate theirs once at their entry, call the unchecked cores
(``_radius_edges``, ``_periodic_edges``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from .checks import is_int, is_real, require
from .compilation import GRAPH_SETTINGS, INDUCTOR_SETTINGS, settings_applied

__all__ = [
    "NeighborTruncationWarning",
    "cartesian_shifts",
    "periodic_radius_graph",
    "radius_graph",
    "validate_batch",
    "validate_cell",
    "validate_pos",
]

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
# The 27 cells around a cell (itself included), and the 13 that come after it in (x, y, z)
# lexicographic order.
_ALL_OFFSETS = torch.cartesian_prod(*(torch.arange(-1, 2),) * 3)  # [27, 3]
_HALF_OFFSETS = _ALL_OFFSETS[14:]  # [13, 3]
# Periodic cells whose lattice vectors span less than this fraction of the volume of
# orthogonal vectors of the same lengths are refused as singular.
_MIN_CELL_SINE = 1e-6
# At most this many (atom, image) candidates before pruning: more means a cell far smaller
# than the cutoff (e.g. in the wrong unit), whose exact graph would not fit in memory.
_MAX_IMAGES = 1 << 26


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


def _validate_loop(loop: bool) -> None:
    if not isinstance(loop, bool):
        raise TypeError(f"loop must be a bool, got {type(loop).__name__}")


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

    The threshold of 32 atoms is where the dense search stops beating torch_cluster on
    batches of molecules of growing size, as ``benchmarks/bench_graph.py --sweep`` measures
    (one CPU thread); without ``--sweep`` it times both backends on QM9-like batches and on
    systems of 1,000 and 10,000 atoms.


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
    if batch is not None:
        validate_batch(batch, pos.size(0), device=pos.device)
    r = _validate_options(r, loop, max_num_neighbors, backend, flow)
    return _radius_edges(pos, r, batch, loop, max_num_neighbors, backend, flow)


def _validate_options(
    r: float, loop: bool, max_num_neighbors: int | None, backend: str, flow: str
) -> float:
    """Check the options of :func:`radius_graph` (no tensor values: no synchronisation);
    return ``r`` as a float."""
    r = _validate_radius(r)
    _validate_loop(loop)
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
    return r


def _radius_edges(
    pos: Tensor,
    r: float,
    batch: Tensor | None,
    loop: bool = False,
    max_num_neighbors: int | None = None,
    backend: str = "auto",
    flow: str = "source_to_target",
) -> Tensor:
    """:func:`radius_graph` on inputs its caller has validated (a model checks them once at
    its entry, not again in every layer)."""
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    # the search has a data-dependent number of edges: one custom op to torch.compile
    edge_index = _radius_search(pos.detach(), batch.long(), r, loop, max_num_neighbors, backend)
    if flow == "target_to_source":
        edge_index = edge_index.flip(0)
    return edge_index


# -- periodic structures ---------------------------------------------------------------------
def validate_cell(
    cell: Tensor, pbc: Tensor | Sequence[bool] | bool, pos: Tensor, batch: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Check the cells and periodic axes of structures, and give them per structure.

    The rows of a cell are its lattice vectors :math:`\mathbf{a}_1, \mathbf{a}_2,
    \mathbf{a}_3` (ASE's layout: ``atoms.cell``). Only the vectors of periodic axes are used:
    those must be linearly independent; the others may be anything finite (ASE stores zeros
    for the missing vectors of a slab or a molecule).

    Args:
        cell (torch.Tensor): ``[num_graphs, 3, 3]``, or ``[3, 3]`` for one cell shared by
            every structure; the dtype and device of ``pos``, finite.
        pbc (torch.Tensor or sequence of bool or bool): periodic axes, bool ``[num_graphs, 3]``,
            or ``[3]`` (or one bool) for every structure.
        pos (torch.Tensor): the (validated) positions ``[N, 3]``.
        batch (torch.Tensor, optional): the (validated) structure of every atom ``[N]``.
            (default: :obj:`None`, one structure)

    Returns:
        ``(cell, pbc)`` of shapes ``[num_graphs, 3, 3]`` and ``[num_graphs, 3]`` (bool, on the
        device of ``pos``); ``num_graphs`` is that of ``cell`` or ``pbc`` where they have one,
        else the number of structures in ``batch``.

    Raises:
        TypeError: for a ``cell`` that is not a floating tensor of the dtype of ``pos``, or
            a ``pbc`` that is not boolean.
        ValueError: for wrong shapes, a device other than that of ``pos``, NaN or infinite
            entries, periodic lattice vectors that are (nearly) linearly dependent, or atoms
            of a structure without a cell.
    """
    if not isinstance(cell, Tensor):
        raise TypeError(
            f"cell must be a torch.Tensor of shape [num_graphs, 3, 3] or [3, 3], "
            f"got {type(cell).__name__}"
        )
    if not cell.is_floating_point():
        raise TypeError(f"cell must be a floating-point tensor, got dtype {cell.dtype}")
    if cell.dim() not in (2, 3) or tuple(cell.shape[-2:]) != (3, 3):
        raise ValueError(
            f"cell must have shape [num_graphs, 3, 3] or [3, 3] (lattice vectors as rows), "
            f"got {list(cell.shape)}"
        )
    if cell.dtype != pos.dtype:
        raise TypeError(f"cell is {cell.dtype} but pos is {pos.dtype}: convert one of them")
    if cell.device != pos.device:
        raise ValueError(f"cell is on {cell.device} but pos is on {pos.device}")
    pbc = _as_pbc(pbc, pos.device)
    if cell.dim() == 3 and pbc.dim() == 2 and cell.shape[0] != pbc.shape[0]:
        raise ValueError(f"cell holds {cell.shape[0]} structures but pbc holds {pbc.shape[0]}")
    if cell.dim() == 3:
        num_graphs = cell.shape[0]
    elif pbc.dim() == 2:
        num_graphs = pbc.shape[0]
    else:
        num_graphs = 1 if batch is None else torch.bincount(batch).shape[0]
    if batch is None:
        if num_graphs != 1:
            raise ValueError(
                f"cell and pbc describe {num_graphs} structures but no batch was given "
                "(one structure)"
            )
    else:
        require(
            (batch < num_graphs).all(), ValueError,
            "batch holds structure indices beyond the cells given",
            lambda: f"batch holds structure {int(batch.max())} but there are cells for "
            f"{num_graphs} structures",
        )  # fmt: skip
    cell, pbc = cell.expand(num_graphs, 3, 3), pbc.expand(num_graphs, 3)
    if cell.is_meta:  # no values to check
        return cell, pbc
    require(torch.isfinite(cell).all(), ValueError, "cell holds NaN or infinite values")
    sine = _cell_sine(cell, pbc)  # [G]

    def detail() -> str:
        bad = int(torch.nonzero(~(sine > _MIN_CELL_SINE))[0, 0])
        return (
            f"the cell of structure {bad} is singular: its periodic lattice vectors "
            f"{cell[bad][pbc[bad]].tolist()} are (nearly) linearly dependent"
        )

    require(
        (sine > _MIN_CELL_SINE).all(), ValueError,
        "a cell is singular: its periodic lattice vectors are (nearly) linearly dependent",
        detail,
    )  # fmt: skip
    return cell, pbc


def _as_pbc(pbc: Tensor | Sequence[bool] | bool, device: torch.device) -> Tensor:
    if isinstance(pbc, bool):
        pbc = [pbc] * 3
    if not isinstance(pbc, Tensor):
        try:
            pbc = torch.as_tensor(pbc)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"pbc must be a bool tensor of shape [num_graphs, 3] or [3], got {pbc!r}"
            ) from None
    if pbc.dtype != torch.bool:
        raise TypeError(f"pbc must be a bool tensor, got dtype {pbc.dtype}")
    if pbc.dim() not in (1, 2) or pbc.shape[-1] != 3:
        raise ValueError(f"pbc must have shape [num_graphs, 3] or [3], got {list(pbc.shape)}")
    return pbc.to(device)


def _cell_sine(cell: Tensor, pbc: Tensor) -> Tensor:
    """The volume spanned by the periodic lattice vectors over the product of their lengths
    ``[G]``: 1 for orthogonal ones (or none), 0 (or NaN) for dependent ones."""
    a = cell.detach().to(torch.float64)  # [G, 3, 3]
    both = pbc[:, :, None] & pbc[:, None, :]  # [G, 3, 3]
    eye = torch.eye(3, dtype=torch.float64, device=a.device)
    gram = torch.where(both, a @ a.mT, eye)  # [G, 3, 3], squared volume as determinant
    length2 = torch.where(pbc, (a * a).sum(-1), 1.0)  # [G, 3]
    return (torch.linalg.det(gram) / length2.prod(-1)).clamp(min=0).sqrt()  # [G]


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
    r = _validate_radius(r)
    _validate_loop(loop)
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
    candidates: _MoleculeBlocks | _CellList | _ImageCandidates,
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


# -- periodic search, one opaque step to torch.compile and torch.export ----------------------
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
        _check_compile_settings(pos)
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

        # rounding of (pos_j - pos_i) + s @ cell in pos's dtype: |pos_j - pos_i| <= 2 max|p|,
        # |s_k| <= n_k + 2 max|p| |b_k|, n_k <= r |b_k| + 1
        lengths = basis.norm(dim=2) * pbc  # [G, 3]
        extent = 2 * float(pos64.abs().max())
        skew = float((lengths * reciprocal).sum(1).max())
        span = float(((r * reciprocal + 2) * lengths).sum(1).max())
        eps = torch.finfo(pos.dtype).eps
        self.reach = r * (1 + 1e-6) + 64 * eps * (extent * (1 + skew) + span + r)

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
        chunk = torch.div(torch.cumsum(per_atom, 0) - per_atom, _PAIR_CHUNK, rounding_mode="floor")
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

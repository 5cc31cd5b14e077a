r"""Interaction graphs: which atoms a model lets interact.

An **interaction graph** of :class:`~e3nn_pyg.models.EquivariantNet` is a callable

.. code-block:: python

    edge_index, edge_shift = interaction_graph(pos, batch, cell, pbc)

that takes the positions ``[N, 3]``, the structure of every atom ``[N]`` (or ``None``: one
structure), and for periodic structures the cells ``[num_graphs, 3, 3]`` and periodic axes
``[num_graphs, 3]`` bool (both ``None`` for molecules), and returns the edges ``[2, E]``
(row 0 the source :math:`j`, row 1 the target :math:`i`) and their integer cell shifts
:math:`\mathbf{s}` ``[E, 3]`` as whole numbers in the dtype of ``pos`` (``None`` for
molecules). The edge vectors are :math:`\mathbf{p}_j - \mathbf{p}_i + \mathbf{s} C`; the
model computes them itself, from the possibly strained cell, so that forces and the stress
are derivatives of the energy whatever graph is used. The model always calls its graph, as
PyG's :class:`~torch_geometric.nn.models.SchNet` does.

- :class:`RadiusInteractionGraph` (the default): the exact radius graph
  (:func:`~e3nn_pyg.graph.radius_graph`, :func:`~e3nn_pyg.graph.periodic_radius_graph`
  with a cell).
- :class:`VerletInteractionGraph`: the same graph, reused between calls: the pairs within
  ``cutoff + skin`` are searched once and filtered at every call (molecular dynamics; the
  ASE calculator uses it).
- :class:`SchNetInteractionGraph`: PyG's SchNet signature ``(pos, batch) -> (edge_index,
  edge_weight)`` (SchNet's own default needs ``pyg-lib`` or ``torch-cluster``).

Any other callable of the protocol works too; the model then checks what it returns (edges
in range, within one structure, shifts of the right shape and dtype, whole numbers, zero
along non-periodic axes). The graphs of this module build their edges from the inputs the
model has validated (their ``edges`` method), so the model checks those only once.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import is_real, require, require_edges
from ..graph import (
    _periodic_edges,
    _radius_edges,
    _shift_vectors,
    _squared_norm,
    _validate_options,
    radius_graph,
    validate_batch,
    validate_cell,
    validate_pos,
)
from ..radial import edge_lengths

__all__ = [
    "TRUSTED_GRAPHS",
    "InteractionGraph",
    "RadiusInteractionGraph",
    "SchNetInteractionGraph",
    "VerletInteractionGraph",
    "check_interaction_graph",
    "check_skin",
    "checked_graph_output",
    "periodic_inputs",
]

EdgesAndShifts = tuple[Tensor, Tensor | None]
#: ``interaction_graph(pos, batch, cell, pbc) -> (edge_index, edge_shift)``
InteractionGraph = Callable[[Tensor, Tensor | None, Tensor | None, Tensor | None], EdgesAndShifts]
FLOW = "source_to_target"  # row 0 of edge_index: the sources

# The Verlet list is searched again once an atom has moved this fraction of half the skin:
# the remaining 1 % of the skin absorbs the rounding of the distances in the model's dtype
# (below 1e-4 Å in float32 for coordinates up to 1000 Å), so that every pair within the
# cutoff is still among the candidates.
_SKIN_USE = 0.99


def periodic_inputs(
    cell: Tensor | None, pbc: Any, pos: Tensor, batch: Tensor | None
) -> tuple[Tensor | None, Tensor | None]:
    """The cells ``[G, 3, 3]`` and periodic axes ``[G, 3]`` per structure, checked
    (:func:`~e3nn_pyg.graph.validate_cell`; ``pbc=None``: all periodic), or ``(None, None)``
    for molecules (no cell), for validated ``pos`` and ``batch``."""
    if cell is None:
        if pbc is not None:
            raise ValueError("pbc was given without a cell: pass the cell too")
        return None, None
    return validate_cell(cell, True if pbc is None else pbc, pos, batch)


def _validated_inputs(
    pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Any
) -> tuple[Tensor | None, Tensor | None]:
    """Check the inputs of a graph called on its own; the cells and axes per structure."""
    validate_pos(pos)
    if batch is not None:
        validate_batch(batch, pos.shape[0], pos.device)
    return periodic_inputs(cell, pbc, pos, batch)


class _GraphOfValidatedInputs(nn.Module):
    """A graph of this module: called on its own it checks its inputs, then builds its edges
    with :meth:`edges`, which the model calls directly on the inputs it has validated."""

    def forward(
        self,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | list[bool] | bool | None = None,
    ) -> EdgesAndShifts:
        """The edges ``[2, E]`` and cell shifts ``[E, 3]`` (``None`` without a cell)."""
        cell, pbc = _validated_inputs(pos, batch, cell, pbc)
        return self.edges(pos, batch, cell, pbc)

    def edges(
        self, pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
    ) -> EdgesAndShifts:
        """:meth:`forward` of validated inputs, with ``cell`` and ``pbc`` per structure."""
        raise NotImplementedError(f"{type(self).__name__} must define edges()")


class RadiusInteractionGraph(_GraphOfValidatedInputs):
    r"""The exact radius graph: every pair of atoms of one structure closer than the cutoff,

    .. math::
        \mathcal{E} = \{(j, i, \mathbf{s}) : \text{batch}_i = \text{batch}_j,\
        \lVert \mathbf{p}_j - \mathbf{p}_i + \mathbf{s} C \rVert < r_c,\
        (j, \mathbf{s}) \ne (i, \mathbf{0})\},

    with :math:`\mathbf{s} = \mathbf{0}` for molecules (:func:`~e3nn_pyg.graph.radius_graph`)
    and every periodic image within the cutoff for periodic structures
    (:func:`~e3nn_pyg.graph.periodic_radius_graph`). The default interaction graph of
    :class:`~e3nn_pyg.models.EquivariantNet` (see the module docstring for the protocol).

    Args:
        cutoff (float, optional): the cutoff radius :math:`r_c`. (default: :obj:`5.0`)
        max_num_neighbors (int, optional): keep the nearest ``max_num_neighbors`` sources of
            every atom (breaks the exact symmetry when it cuts; molecules only).
            (default: :obj:`None`, no cap)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)`,
          cell :math:`(|\mathcal{G}|, 3, 3)` or :math:`(3, 3)`, pbc :math:`(|\mathcal{G}|, 3)`
          or :math:`(3)` (all but ``pos`` optional)
        - **output:** edge indices :math:`(2, |\mathcal{E}|)`, cell shifts
          :math:`(|\mathcal{E}|, 3)` or ``None`` without a cell

    Example:
        >>> import torch
        >>> graph = RadiusInteractionGraph(cutoff=1.5)
        >>> pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 3, 0]])
        >>> graph(pos)
        (tensor([[1, 0],
                [0, 1]]), None)
        >>> edge_index, shifts = graph(pos[:1], cell=torch.eye(3), pbc=[True, False, False])
        >>> edge_index.tolist(), shifts.tolist()
        ([[0, 0], [0, 0]], [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    """

    def __init__(self, cutoff: float = 5.0, max_num_neighbors: int | None = None) -> None:
        super().__init__()
        self.cutoff = _validate_options(cutoff, False, max_num_neighbors, "auto", FLOW)
        self.max_num_neighbors = max_num_neighbors

    def edges(
        self, pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
    ) -> EdgesAndShifts:
        """``forward`` of validated inputs, with ``cell`` and ``pbc`` per structure
        (as :func:`~e3nn_pyg.graph.validate_cell` returns them)."""
        if cell is None:
            edge_index = _radius_edges(pos, self.cutoff, batch, False, self.max_num_neighbors)
            return edge_index, None  # [2, E]
        if self.max_num_neighbors is not None:
            raise ValueError(
                "periodic structures (a cell was given) need max_num_neighbors=None: the "
                "periodic graph is exact"
            )
        return _periodic_edges(pos, self.cutoff, cell, pbc, batch)  # [2, E], [E, 3]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cutoff={self.cutoff}, "
            f"max_num_neighbors={self.max_num_neighbors})"
        )


def check_skin(skin: object) -> float:
    """The Verlet skin of :class:`VerletInteractionGraph` as a float; ``ValueError`` unless
    it is a finite number ``>= 0``."""
    if not is_real(skin) or not (math.isfinite(skin) and skin >= 0):
        raise ValueError(f"skin must be a number >= 0, got {skin!r}")
    return float(skin)


class VerletInteractionGraph(_GraphOfValidatedInputs):
    r"""The exact radius graph of :class:`RadiusInteractionGraph` (no neighbour cap),
    reused between calls: a Verlet list for molecular dynamics.

    The pairs within ``cutoff + skin`` are searched once; every call filters them to those
    within the cutoff by the comparison the search itself makes (same dtype, same
    operations), so the graph is bit for bit the one a new search gives. The search is
    redone when an atom has moved by almost ``skin / 2`` since the last one (a pair outside
    the candidates could then have come within the cutoff), or when the number of atoms,
    the structures (``batch``), the cells, the periodic axes, the dtype or the device
    change. A call reads the positions on the host (eager use, not for ``torch.compile``).

    Args:
        cutoff (float): the cutoff radius.
        skin (float, optional): the extra distance searched, in the unit of the positions;
            ``0`` searches at every call. (default: :obj:`0.5`)

    Example:
        >>> graph = VerletInteractionGraph(cutoff=1.5, skin=0.5)
        >>> pos = torch.tensor([[0.0, 0, 0], [1.6, 0, 0]])
        >>> graph(pos)[0].tolist()
        [[], []]
        >>> pos[1, 0] = 1.4  # moved less than skin / 2: the candidates are filtered again
        >>> graph(pos)[0].tolist(), graph.builds
        ([[1, 0], [0, 1]], 1)
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        super().__init__()
        self.cutoff = _validate_options(cutoff, False, None, "auto", FLOW)
        self.skin = check_skin(skin)
        #: how many times the candidates were searched
        self.builds = 0
        self._reference: tuple | None = None  # (pos, batch, cell, pbc) of the last search
        self._candidates: EdgesAndShifts | None = None  # [2, C], [C, 3] or None

    def edges(
        self, pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
    ) -> EdgesAndShifts:
        """``forward`` of validated inputs, with ``cell`` and ``pbc`` per structure."""
        pos = pos.detach()
        cell = None if cell is None else cell.detach()
        if self._stale(pos, batch, cell, pbc):
            self._search(pos, batch, cell, pbc)
        candidates, shifts = self._candidates
        source, target = candidates
        vec = pos.index_select(0, source) - pos.index_select(0, target)  # [C, 3]
        if cell is not None:  # as the periodic search: (pos_j - pos_i) + s C
            graph = torch.zeros_like(target) if batch is None else batch.index_select(0, target)
            vec = vec + _shift_vectors(shifts, cell, graph)  # [C, 3]
        r2 = torch.tensor(self.cutoff * self.cutoff, dtype=pos.dtype, device=pos.device)
        keep = torch.nonzero(_squared_norm(vec) < r2).squeeze(1)  # [E]
        edge_index = candidates.index_select(1, keep)  # [2, E]
        return edge_index, None if shifts is None else shifts.index_select(0, keep)

    def _stale(
        self, pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
    ) -> bool:
        if self._reference is None:
            return True
        old_pos, old_batch, old_cell, old_pbc = self._reference
        if (old_pos.shape, old_pos.dtype, old_pos.device) != (pos.shape, pos.dtype, pos.device):
            return True
        for old, new in ((old_batch, batch), (old_cell, cell), (old_pbc, pbc)):
            if (old is None) != (new is None) or (
                new is not None and (old.shape != new.shape or not torch.equal(old, new))
            ):
                return True
        moved = (pos.double() - old_pos.double()).pow(2).sum(1).max()  # squared, Å^2
        return bool(moved.sqrt() >= _SKIN_USE * self.skin / 2)

    def _search(
        self, pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
    ) -> None:
        reach = self.cutoff + self.skin
        if cell is None:
            self._candidates = _radius_edges(pos, reach, batch), None
        else:
            self._candidates = _periodic_edges(pos, reach, cell, pbc, batch)
        self._reference = tuple(None if t is None else t.clone() for t in (pos, batch, cell, pbc))
        self.builds += 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cutoff={self.cutoff}, skin={self.skin})"


class SchNetInteractionGraph(nn.Module):
    r"""The radius graph with PyG's SchNet signature: ``(pos, batch) -> (edge_index,
    edge_weight)``, the edge lengths :math:`w_{ji} = \lVert \mathbf{p}_j - \mathbf{p}_i
    \rVert` carrying gradients to ``pos``. Pass it as ``interaction_graph=`` to
    :class:`~torch_geometric.nn.models.SchNet` (whose default needs ``pyg-lib`` or
    ``torch-cluster``); molecules only.

    Args:
        cutoff (float, optional): the cutoff radius. (default: :obj:`5.0`)
        max_num_neighbors (int, optional): keep the nearest ``max_num_neighbors`` sources of
            every atom. (default: :obj:`None`, no cap)

    Example:
        >>> graph = SchNetInteractionGraph(cutoff=1.5)
        >>> edge_index, edge_weight = graph(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 3, 0]]))
        >>> edge_index.tolist(), edge_weight.tolist()
        ([[1, 0], [0, 1]], [1.0, 1.0])
    """

    def __init__(self, cutoff: float = 5.0, max_num_neighbors: int | None = None) -> None:
        super().__init__()
        self.cutoff = _validate_options(cutoff, False, max_num_neighbors, "auto", FLOW)
        self.max_num_neighbors = max_num_neighbors

    def forward(self, pos: Tensor, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        edge_index = radius_graph(pos, self.cutoff, batch, max_num_neighbors=self.max_num_neighbors)
        src, dst = edge_index  # [E], [E]
        return edge_index, edge_lengths(pos[src] - pos[dst])  # [2, E], [E]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cutoff={self.cutoff}, "
            f"max_num_neighbors={self.max_num_neighbors})"
        )


#: the graphs whose edges of validated inputs the model uses without checking them again
TRUSTED_GRAPHS = (RadiusInteractionGraph, VerletInteractionGraph)


def check_interaction_graph(graph: object) -> None:
    """Refuse an ``interaction_graph`` that is not a callable of four arguments
    ``(pos, batch, cell, pbc)`` (e.g. a graph of PyG's SchNet signature ``(pos, batch)``).
    """
    if not callable(graph):
        raise TypeError(f"interaction_graph must be callable, got {type(graph).__name__}")
    function: Callable = graph.forward if isinstance(graph, nn.Module) else graph
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # (no signature to read: the call will tell)
        return
    try:
        signature.bind(None, None, None, None)
    except TypeError:
        raise TypeError(
            f"interaction_graph must take (pos, batch, cell, pbc) and return (edge_index, "
            f"edge_shift); {type(graph).__name__} takes {signature} (a graph of PyG's SchNet "
            "signature (pos, batch) -> (edge_index, edge_weight) is not one)"
        ) from None


def checked_graph_output(
    output: object, pos: Tensor, batch: Tensor | None, pbc: Tensor | None
) -> EdgesAndShifts:
    """The ``(edge_index, edge_shift)`` an interaction graph returned for validated inputs
    (``pbc`` per structure, ``None`` for molecules), checked: a clear error instead of a
    silently wrong graph."""
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        raise TypeError(
            f"interaction_graph must return (edge_index, edge_shift), got {type(output).__name__}"
        )
    edge_index, shifts = output
    _check_edge_index(edge_index, pos, batch)
    if pbc is None:
        if shifts is not None:
            raise ValueError(
                "interaction_graph returned edge shifts for molecules (no cell was given): "
                "return (edge_index, None)"
            )
        return edge_index, None
    _check_shifts(shifts, edge_index, pos, batch, pbc)
    return edge_index, shifts


def _check_edge_index(edge_index: object, pos: Tensor, batch: Tensor | None) -> None:
    what = "the edge_index returned by interaction_graph"
    num_nodes = pos.shape[0]
    require_edges(edge_index, num_nodes, num_nodes, pos.device, what, ValueError)
    if batch is not None:
        source, target = batch[edge_index[0]], batch[edge_index[1]]  # [E], [E]
        require(
            (source == target).all(), ValueError,
            f"{what} joins atoms of different structures",
            lambda: f"{what} joins atoms of different structures: an edge from structure "
            f"{int(source[source != target][0])} to {int(target[source != target][0])}",
        )  # fmt: skip


def _check_shifts(
    shifts: object, edge_index: Tensor, pos: Tensor, batch: Tensor | None, pbc: Tensor
) -> None:
    what = "the edge_shift returned by interaction_graph"
    num_edges = edge_index.shape[1]
    if not isinstance(shifts, Tensor) or tuple(shifts.shape) != (num_edges, 3):
        shape = list(shifts.shape) if isinstance(shifts, Tensor) else shifts
        raise ValueError(
            f"{what} must be the integer cell shifts [num_edges, 3] = [{num_edges}, 3] of "
            f"periodic structures, got {shape}"
        )
    if shifts.dtype != pos.dtype or shifts.device != pos.device:
        raise TypeError(
            f"{what} is {shifts.dtype} on {shifts.device}: it must be whole numbers in the "
            f"dtype of pos ({pos.dtype} on {pos.device})"
        )
    require(
        (torch.isfinite(shifts) & (shifts == shifts.round())).all(), ValueError,
        f"{what} must hold whole numbers (cell shifts, not Cartesian vectors)",
    )  # fmt: skip
    graph = torch.zeros_like(edge_index[1]) if batch is None else batch[edge_index[1]]  # [E]
    require(
        ((shifts == 0) | pbc[graph]).all(), ValueError,
        f"{what} shifts edges along a non-periodic axis",
    )  # fmt: skip

r"""Radius graphs: which atoms talk to which in a point convolution.

:func:`radius_graph` connects every pair of distinct atoms of the same molecule that lie
closer than a cutoff ``r``.

**Exact by default.** ``max_num_neighbors=None`` keeps every edge. A cap keeps, for each
target, its ``max_num_neighbors`` nearest sources (ties: lower source index first; with
``loop=True`` the self-loop, at distance 0, counts and comes first) and emits a
:class:`~e3nn_pyg.graph.NeighborTruncationWarning` when it drops edges: the capped graph
is no longer symmetric and, where distances nearly tie, depends on rounding, which breaks
the exact equivariance of the models built on it.

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
"""

from __future__ import annotations

import torch
from torch import Tensor

from .search import _radius_search
from .validation import _validate_options, validate_batch, validate_pos

__all__ = ["radius_graph"]


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
    swaps the two rows. Edges are sorted by target, then source. Exact by default (no
    neighbour cap); see the module docstring for the cap and the backends.


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

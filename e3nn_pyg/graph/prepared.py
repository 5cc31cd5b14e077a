r"""The graph of a convolution as one value: :func:`prepare_graph` and :class:`Graph`.

A :class:`~e3nn_pyg.conv.Convolution` needs its graph in one form: the edges sorted by
target as an :class:`~torch_geometric.EdgeIndex` (what ``propagate`` fuses on), the edge
shifts permuted alike, the numbers of sources and targets, whether an edge may share its
row with its reverse, and the geometry of the engine's rows (the pairing of the edges,
their vectors, lengths and spherical harmonics). :func:`prepare_graph` validates the
positions, edges and shifts once and returns that value; every convolution of a model call
accepts it in place of ``edge_index`` (``conv(x, pos, graph)``) and skips the work done:
the graph is sorted once, the geometry built by the first layer that needs it and reused by
the others.

A :class:`Graph` belongs to the positions it was prepared on: a convolution refuses it with
other position tensors, or with the same ones modified in place since. Prepare one per
forward pass: its geometry, once built, carries the autograd graph of that pass.

Under :func:`torch.compile` and :func:`torch.export` the edges are sorted as in eager
mode, and the rows of the engines come from
:func:`~e3nn_pyg.tensor_product.fused.pair_edges_traced` (no data-dependent branch; on
CPU, where the native operators read them). The graph a convolution builds for itself in
explain mode keeps the caller's edge order (its edge masks follow it) and takes the
per-edge path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.utils import is_sparse, to_edge_index

from ..checks import is_int, require, require_edges, require_like
from ..tensor_product.engines import RowGeometry
from ..tensor_product.fused import EdgePairing, pair_edges, pair_edges_traced
from .validation import validate_pos

__all__ = ["Adj", "Graph", "PairTensor", "edge_vectors", "prepare_graph"]

PairTensor = tuple[Tensor, Tensor]
Adj = Tensor  # a [2, E] tensor, an EdgeIndex or a transposed sparse adjacency


@dataclass(frozen=True, eq=False)
class Graph:
    r"""A graph prepared for the convolutions of one forward pass (see the module docstring).

    Attributes:
        edge_index (Tensor): ``[2, E]`` (source, target) indices: an ``EdgeIndex`` sorted by
            target, or a plain long tensor in the caller's order (under
            :func:`torch.compile`, and the graph a convolution builds in explain mode).
        pos (tuple of Tensor): the (source, target) positions it was prepared on.
        edge_shift (Tensor, optional): ``[E, 3]`` Cartesian shifts of the edge vectors, in
            the order of ``edge_index``.
        size (tuple of int): the numbers of sources and targets.
        symmetric (bool): whether an edge may share its row with its reverse: sources and
            targets are the same nodes and no shift needs a gradient of its own.
    """

    edge_index: Tensor
    pos: PairTensor
    edge_shift: Tensor | None
    size: tuple[int, int]
    symmetric: bool
    _versions: tuple = field(default=(), repr=False)
    _rows: dict = field(default_factory=dict, repr=False)

    @property
    def plain(self) -> Tensor:
        """The edges as a plain long tensor ``[2, E]``."""
        return _as_plain(self.edge_index)

    def require_positions(self, pos: Tensor | PairTensor) -> None:
        """Raise ``ValueError`` unless ``pos`` are the tensors this graph was prepared on,
        unmodified."""
        src, dst = pos if isinstance(pos, (tuple, list)) else (pos, pos)
        if src is not self.pos[0] or dst is not self.pos[1]:
            raise ValueError(
                "the graph was prepared on other positions: call prepare_graph with the "
                "positions of this call"
            )
        if not torch.compiler.is_compiling() and _versions(self.pos) != self._versions:
            raise ValueError(
                "the positions were modified in place after prepare_graph: prepare the graph again"
            )

    def edge_vectors(self) -> Tensor:
        r""":math:`\mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij}` of every edge ``[E, 3]``."""
        return self._memo()[0]

    def geometry(self) -> RowGeometry:
        """The engine's rows: the edges paired with their reverse where the graph allows
        (:func:`~e3nn_pyg.tensor_product.fused.pair_edges`), their vectors, lengths and
        harmonics; built on first use and shared by every layer."""
        return self._memo()[1]

    def _memo(self) -> tuple[Tensor, RowGeometry]:
        # a cached tensor must carry the autograd graph that this call's gradients need
        shift = self.edge_shift
        key = (
            torch.is_grad_enabled(), self.pos[0].requires_grad, self.pos[1].requires_grad,
            shift is not None and shift.requires_grad,
        )  # fmt: skip
        if self._rows.get("key") != key:
            plain = self.plain
            edge_vec = edge_vectors(self.pos, plain, shift)  # [E, 3]
            if not torch.compiler.is_compiling():
                pairing = pair_edges(plain, edge_vec, symmetric=self.symmetric)
            elif self.symmetric and edge_vec.device.type == "cpu":  # (the native engine's)
                # pair_edges has data-dependent branches
                pairing = pair_edges_traced(plain, edge_vec, self.size[0])
            else:
                rows = torch.arange(plain.shape[1], device=plain.device)  # [E]
                pairing = EdgePairing(rows, plain[0], plain[1], 0)
            self._rows.update(key=key, value=(edge_vec, RowGeometry(edge_vec, pairing)))
        return self._rows["value"]


def edge_vectors(
    pos: Tensor | PairTensor, edge_index: Tensor, edge_shift: Tensor | None = None
) -> Tensor:
    """``(pos_src[j] - pos_dst[i]) + edge_shift`` of every edge ``[E, 3]`` (``pos``: one
    tensor, or the (source, target) pair), rounded as the periodic radius graph rounds it
    (so that a reversed edge gets exactly the opposite vector)."""
    src, dst = _pair(pos)
    edge_vec = src.index_select(0, edge_index[0]) - dst.index_select(0, edge_index[1])
    return edge_vec if edge_shift is None else edge_vec + edge_shift  # [E, 3]


def prepare_graph(
    pos: Tensor | PairTensor,
    edge_index: Adj,
    edge_shift: Tensor | None = None,
    size: tuple[int, int] | None = None,
    validate: bool = True,
) -> Graph:
    r"""The graph of ``edge_index`` on ``pos``, ready for every convolution of a forward pass.

    Args:
        pos (Tensor or tuple of Tensor): positions ``[N, 3]``, or (source, target) positions.
        edge_index (Tensor or EdgeIndex): ``[2, E]`` integer (source, target) indices on the
            device of ``pos``, or a transposed sparse adjacency.
        edge_shift (Tensor, optional): ``[E, 3]`` finite Cartesian shifts of the edge
            vectors, in the dtype and on the device of ``pos``, one row per column of
            ``edge_index`` (e.g. :func:`~e3nn_pyg.graph.cartesian_shifts`). Gradients flow to
            it, edge by edge. (default: :obj:`None`)
        size (tuple of int, optional): (sources, targets); targets are the first
            ``size[1]`` target positions. (default: the rows of the positions)
        validate (bool, optional): check positions, edges and shifts (``False``: the caller
            has, e.g. a model at its entry). (default: :obj:`True`)

    Returns:
        :class:`Graph`: the edges sorted by target, the shifts permuted alike.

    Example:
        >>> pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> graph = prepare_graph(pos, torch.tensor([[1, 2, 0], [0, 0, 2]]))
        >>> graph.plain.tolist(), graph.size, graph.symmetric
        ([[1, 2, 0], [0, 0, 2]], (3, 3), True)
    """
    pos = check_positions(pos) if validate else _pair(pos)
    return build_graph(pos, edge_index, edge_shift, size, validate=validate)


def _pair(pos: Tensor | PairTensor) -> PairTensor:
    return tuple(pos) if isinstance(pos, (tuple, list)) else (pos, pos)


def check_positions(pos: Tensor | PairTensor) -> PairTensor:
    """Validate positions (one tensor, or a (source, target) pair) and return the pair."""
    if not isinstance(pos, (tuple, list)):
        validate_pos(pos)
        return pos, pos
    if len(pos) != 2:
        raise ValueError(f"pos must be a tensor or a (source, target) pair, got {len(pos)}")
    validate_pos(pos[0], "source pos")
    validate_pos(pos[1], "target pos")
    return pos[0], pos[1]


def build_graph(
    pos: PairTensor,
    edge_index: Adj,
    edge_shift: Tensor | None,
    size: tuple[int, int] | None,
    validate: bool,
    sort: bool = True,
) -> Graph:
    """:func:`prepare_graph` on checked positions; ``sort=False`` keeps the caller's edge
    order (explain mode)."""
    size = check_size(size, *pos)
    if edge_shift is not None and is_sparse(edge_index):
        raise ValueError(
            "edge_shift needs edge_index as a [2, E] tensor or EdgeIndex (the rows of "
            "edge_shift follow its columns; a sparse adjacency has no edge order)"
        )
    plain = _plain_edges(edge_index)  # [2, E] or an EdgeIndex already sorted
    if validate:
        require_edges(_as_plain(plain), *size, pos[0].device)
        if edge_shift is not None:
            _check_edge_shift(edge_shift, plain.shape[1], pos[0])
    if sort:
        plain, perm = _sort_by_target(plain, size)
        if edge_shift is not None and perm is not None:
            edge_shift = edge_shift.index_select(0, perm)  # [E, 3]
    else:
        plain = _as_plain(plain).long()
    # edges may pair with their reverse; not when the shifts need their own gradient
    # (a pair's gradient would land on its first edge)
    symmetric = pos[1] is pos[0] and (edge_shift is None or not edge_shift.requires_grad)
    versions = () if torch.compiler.is_compiling() else _versions(pos)
    return Graph(plain, pos, edge_shift, size, symmetric, versions)


def _as_plain(edge_index: Tensor) -> Tensor:
    return edge_index.as_tensor() if isinstance(edge_index, EdgeIndex) else edge_index


def _versions(pos: PairTensor) -> tuple[int, int]:
    return pos[0]._version, pos[1]._version


def _plain_edges(edge_index: Adj) -> Tensor:
    """A ``[2, E]`` tensor from a tensor, an ``EdgeIndex`` (kept when sorted by target, for
    :func:`_sort_by_target`) or a transposed sparse adjacency."""
    if is_sparse(edge_index):
        # PyG passes adjacencies transposed: adj_t[i, j] != 0 for an edge j -> i
        return to_edge_index(edge_index)[0].flip(0)
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"edge_index must be a tensor or a sparse adjacency, got {type(edge_index)}"
        )
    if isinstance(edge_index, EdgeIndex) and not edge_index.is_sorted_by_col:
        return edge_index.as_tensor()  # (as_subclass would keep the wrapper)
    return edge_index


def _sort_by_target(edge_index: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
    """An ``EdgeIndex`` sorted by target and the permutation of the edges it applied
    (``None``: the edges kept their order)."""
    if isinstance(edge_index, EdgeIndex) and edge_index.sparse_size() == size:
        return edge_index, None
    return EdgeIndex(_as_plain(edge_index).long(), sparse_size=size).sort_by("col")


def check_size(size: tuple[int, int] | None, pos_src: Tensor, pos_dst: Tensor) -> tuple[int, int]:
    if size is None:
        return pos_src.shape[0], pos_dst.shape[0]
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(is_int(n) and n >= 0 for n in size)
    ):
        raise ValueError(f"size must be a pair of non-negative ints, got {size!r}")
    num_src, num_dst = size
    if num_src != pos_src.shape[0]:
        raise ValueError(f"size[0] = {num_src} but there are {pos_src.shape[0]} source nodes")
    if num_dst > pos_dst.shape[0]:
        raise ValueError(
            f"size[1] = {num_dst} but there are only {pos_dst.shape[0]} target positions"
        )
    return num_src, num_dst


def _check_edge_shift(edge_shift: Tensor, num_edges: int, pos: Tensor) -> None:
    if not isinstance(edge_shift, Tensor) or tuple(edge_shift.shape) != (num_edges, 3):
        shape = list(edge_shift.shape) if isinstance(edge_shift, Tensor) else type(edge_shift)
        raise ValueError(
            f"edge_shift must have shape [num_edges, 3] = [{num_edges}, 3], got {shape}"
        )
    require_like(edge_shift, pos, "edge_shift", "the positions")
    if not edge_shift.is_meta:
        require(
            torch.isfinite(edge_shift).all(), ValueError, "edge_shift holds NaN or infinite values"
        )

r"""The e3nn point convolution as a :class:`torch_geometric.nn.MessagePassing` layer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import is_sparse, to_edge_index

from .checks import is_int, require, require_index_range
from .graph import _radius_edges, _validate_options, validate_batch, validate_pos
from .kernel import Kernel
from .o3 import Rs, RsLike
from .tensor_product.engines import RowGeometry
from .tensor_product.fused import pair_edges

__all__ = ["Convolution", "shared_graph", "sorted_edge_index"]

PairTensor = tuple[Tensor, Tensor]
Adj = Tensor  # a [2, E] tensor, an EdgeIndex or a transposed sparse adjacency


def _as_edge_index(
    edge_index, num_src: int, num_dst: int, device: torch.device, check: bool = True
) -> Tensor:
    """A plain ``[2, E]`` long tensor from a tensor, an ``EdgeIndex`` or a sparse ``adj_t``;
    validated unless ``check=False`` (a graph its caller has validated)."""
    if is_sparse(edge_index):
        # PyG passes adjacencies transposed: adj_t[i, j] != 0 for an edge j -> i
        edge_index = to_edge_index(edge_index)[0].flip(0)
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"edge_index must be a tensor or a sparse adjacency, got {type(edge_index)}"
        )
    if isinstance(edge_index, EdgeIndex):
        edge_index = edge_index.as_tensor()  # (as_subclass would keep the wrapper)
    if not check:
        return edge_index.long()
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, num_edges], got {list(edge_index.shape)}")
    if edge_index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"edge_index must be an integer tensor, got dtype {edge_index.dtype}")
    if edge_index.device != device:
        raise ValueError(f"edge_index is on {edge_index.device} but pos is on {device}")
    require_index_range(edge_index[0], num_src, "edge_index has source node")
    require_index_range(edge_index[1], num_dst, "edge_index has target node")
    return edge_index.long()


def sorted_edge_index(edge_index: Adj, num_src: int, num_dst: int, device) -> Adj:
    """A validated ``EdgeIndex`` sorted by target: what ``propagate`` fuses on.

    A model that runs several convolutions on one graph converts it once. Under
    :func:`torch.compile` (which cannot trace ``EdgeIndex``) the plain validated tensor is
    returned, and ``propagate`` takes the per-message path.
    """
    return _sort_by_target(edge_index, num_src, num_dst, device)[0]


def _sort_by_target(
    edge_index: Adj, num_src: int, num_dst: int, device, check: bool = True
) -> tuple[Adj, Tensor | None]:
    """:func:`sorted_edge_index` and the permutation of the edges it applied (``None``:
    the edges kept their order); validated unless ``check=False``."""
    if torch.compiler.is_compiling():
        return _as_edge_index(edge_index, num_src, num_dst, device, check), None
    if (
        isinstance(edge_index, EdgeIndex)
        and edge_index.is_sorted_by_col
        and edge_index.sparse_size() == (num_src, num_dst)
    ):
        if check:
            _as_edge_index(edge_index, num_src, num_dst, device)  # dtype, device and range
        return edge_index, None
    plain = _as_edge_index(edge_index, num_src, num_dst, device, check)  # [2, E]
    return EdgeIndex(plain, sparse_size=(num_src, num_dst)).sort_by("col")


def shared_graph(
    pos: Tensor, edge_index: Adj, edge_shift: Tensor | None = None
) -> tuple[Adj, Tensor | None, dict]:
    """The graph, edge shifts and ``graph_cache`` that the convolutions of one forward pass
    share, for inputs that the caller has validated.

    The graph is sorted by target once (:func:`sorted_edge_index`, without its checks) and
    ``edge_shift`` permuted alike. The returned ``graph_cache`` holds the sorted graph and
    records the three tensors as validated: a :class:`Convolution` called with exactly
    these tensors (the same objects, unmodified, ``pos`` as both sources and targets) and
    this ``graph_cache`` skips its checks of the positions, the edges and the shifts. A
    model that validates its inputs once at its entry (as
    :class:`~e3nn_pyg.models.EquivariantNet` does) uses it so that its layers do not
    validate them again; anything else goes through the checks of :class:`Convolution`.

    Args:
        pos (Tensor): positions ``[N, 3]``, checked by :func:`~e3nn_pyg.graph.validate_pos`.
        edge_index (Tensor or EdgeIndex): ``[2, E]`` integer indices in ``[0, N)`` on the
            device of ``pos``, e.g. from :func:`~e3nn_pyg.graph.radius_graph`.
        edge_shift (Tensor, optional): ``[E, 3]`` finite Cartesian shifts of the edge
            vectors, in the dtype and on the device of ``pos``. (default: :obj:`None`)

    Returns:
        ``(edge_index, edge_shift, graph_cache)`` to pass to every convolution.
    """
    size = (pos.shape[0], pos.shape[0])
    graph, perm = _sort_by_target(edge_index, *size, pos.device, check=False)
    if edge_shift is not None and perm is not None:
        edge_shift = edge_shift.index_select(0, perm)  # [E, 3]
    cache: dict = {}
    _sorted_graph(cache, graph, size, pos.device, check=False)
    if not torch.compiler.is_compiling():  # (compiled code caches nothing, see _cached)
        cache["checked"] = _checked_key(pos, graph, edge_shift)
    return graph, edge_shift, cache


def _checked_key(pos: Tensor, edge_index: Adj, edge_shift: Tensor | None) -> tuple:
    return (
        pos, edge_index, edge_shift, pos._version, edge_index._version,
        None if edge_shift is None else edge_shift._version,
    )  # fmt: skip


def _is_checked(
    cache: dict | None, pos: PairTensor, edge_index: Adj | None, edge_shift: Tensor | None
) -> bool:
    """Whether :func:`shared_graph` recorded these very tensors, unmodified, as validated."""
    if cache is None or "checked" not in cache or edge_index is None or pos[1] is not pos[0]:
        return False
    if torch.compiler.is_compiling():
        return False
    recorded = cache["checked"]
    key = _checked_key(pos[0], edge_index, edge_shift)
    return all(a is b for a, b in zip(recorded[:3], key[:3])) and recorded[3:] == key[3:]


def _cached(cache: dict | None, name: str, key: tuple, make: Callable[[], Any]) -> Any:
    """``make()``, kept in ``cache[name]`` and reused while ``key`` matches.

    Tensors and other objects in the key match by identity, plain values by equality.
    Under :func:`torch.compile` nothing is cached (the compiler removes repeated work).
    """
    if torch.compiler.is_compiling():
        return make()
    if cache is not None and name in cache:
        old_key, value = cache[name]
        if len(old_key) == len(key) and all(
            a == b if a is None or isinstance(a, (bool, int, float, tuple)) else a is b
            for a, b in zip(old_key, key)
        ):
            return value
    value = make()
    if cache is not None:
        cache[name] = (key, value)
    return value


def _sorted_graph(
    cache: dict | None, edge_index: Adj, size: tuple[int, int], device, check: bool = True
) -> tuple[Adj, Tensor | None]:
    """:func:`_sort_by_target`, once per ``graph_cache`` for the same (unmodified) graph."""
    key = (edge_index, getattr(edge_index, "_version", None), size)
    return _cached(
        cache, "graph", key, lambda: _sort_by_target(edge_index, *size, device, check)
    )  # fmt: skip


def _sorted_shift(cache: dict | None, edge_shift: Tensor, perm: Tensor | None) -> Tensor:
    """``edge_shift`` in the order of the sorted graph, once per ``graph_cache`` (so that
    the layers share one tensor, and with it the rows' geometry)."""
    if perm is None:
        return edge_shift
    key = (edge_shift, edge_shift._version, perm)
    return _cached(cache, "shift", key, lambda: edge_shift.index_select(0, perm))


def _geometry(
    cache: dict | None,
    plain: Tensor,
    edge_vec: Tensor,
    pos: PairTensor,
    edge_shift: Tensor | None,
    symmetric: bool,
) -> RowGeometry:
    """The engine's rows of the graph, computed once per ``graph_cache`` (see ``forward``).

    The pairing (:func:`pair_edges`) and the rows' lengths and harmonics depend on the
    graph, the positions and the shifts: a cache entry is reused only for the same edge,
    position and shift tensors, unmodified (same ``_version``), under the same autograd
    mode (a cached tensor must carry the graph to the positions that this call's gradients
    need).
    """
    shift_state = (
        None if edge_shift is None else (edge_shift._version, edge_shift.requires_grad)
    )  # fmt: skip
    key = (
        plain, pos[0], pos[1], edge_shift, plain._version, pos[0]._version, pos[1]._version,
        shift_state, symmetric, torch.is_grad_enabled(), pos[0].requires_grad,
        pos[1].requires_grad,
    )  # fmt: skip
    return _cached(
        cache, "geometry", key,
        lambda: RowGeometry(edge_vec, pair_edges(plain, edge_vec, symmetric=symmetric)),
    )  # fmt: skip


def _edge_vectors(pos_src: Tensor, pos_dst: Tensor, edge_shift: Tensor | None) -> Tensor:
    """``(pos_src - pos_dst) + edge_shift`` ``[E, 3]``, rounded as the periodic radius graph
    rounds it (so that a reversed edge gets exactly the opposite vector)."""
    edge_vec = pos_src - pos_dst  # [E, 3]
    return edge_vec if edge_shift is None else edge_vec + edge_shift


def _check_edge_shift(edge_shift: Tensor, num_edges: int, pos: Tensor) -> None:
    if not isinstance(edge_shift, Tensor) or tuple(edge_shift.shape) != (num_edges, 3):
        shape = list(edge_shift.shape) if isinstance(edge_shift, Tensor) else type(edge_shift)
        raise ValueError(
            f"edge_shift must have shape [num_edges, 3] = [{num_edges}, 3], got {shape}"
        )
    if edge_shift.dtype != pos.dtype or edge_shift.device != pos.device:
        raise TypeError(
            f"edge_shift is {edge_shift.dtype} on {edge_shift.device} but positions are "
            f"{pos.dtype} on {pos.device}"
        )
    if not edge_shift.is_meta:
        require(
            torch.isfinite(edge_shift).all(), ValueError, "edge_shift holds NaN or infinite values"
        )


class Convolution(MessagePassing):
    r"""The E(3)-equivariant point convolution of e3nn.

    .. math::
        \mathbf{x}'_i = \frac{1}{\sqrt{n_\text{norm}}} \sum_{j \in \mathcal{N}(i)}
        K(\mathbf{r}_{ij})\, \mathbf{x}_j, \qquad
        \mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i,

    with :math:`K(\mathbf{r}) = R(|\mathbf{r}|) Y(\hat{\mathbf{r}})` coupled to
    :math:`\mathbf{x}_j` by Clebsch-Gordan coefficients (:class:`~e3nn_pyg.kernel.Kernel`).
    Every call goes through :meth:`propagate`, on the graph as an ``EdgeIndex`` sorted by
    target, so PyG dispatches it to :meth:`message_and_aggregate`: the kernel's engine
    (:mod:`~e3nn_pyg.tensor_product.engines`) gathers, applies and sums without storing
    per-edge messages where it can, and on a symmetric graph evaluates the radial model once
    per undirected pair of edges (:func:`~e3nn_pyg.tensor_product.fused.pair_edges`). In
    explain mode (``explain=True``, GNNExplainer) PyG calls :meth:`message` instead, one
    message per edge through :meth:`Kernel.apply`, and the propagate, message and aggregate
    hooks see them. Both paths give the same values and gradients. A channel-wise kernel
    (``Kernel(..., mode="channelwise")``) sums its unmixed channels over the neighbours and
    mixes them once per target node. Without
    ``edge_index`` the layer builds the radius graph of ``max_radius`` on ``pos`` and
    ``batch``; it is exact (no neighbour cap) unless ``max_num_neighbors`` is given. With
    ``edge_shift`` every edge vector gets a Cartesian offset, :math:`\mathbf{r}_{ij} =
    \mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij}`: the source's periodic image in a
    crystal (:func:`~e3nn_pyg.graph.periodic_radius_graph`).

    Args:
        Kernel (callable): ``Kernel(Rs_in, Rs_out)`` builds the kernel, e.g.
            ``functools.partial(Kernel, RadialModel=...)``.
        Rs_in (Rs-like): input representation.
        Rs_out (Rs-like): output representation.
        max_radius (float, optional): radius of the graph built when no ``edge_index``
            is given. (default: the radial model's ``max_radius``)
        n_norm (float, optional): the sum is divided by :math:`\sqrt{n_\text{norm}}`,
            e.g. the typical number of neighbours. (default: ``1.0``)
        loop (bool, optional): include self-loops in the built graph (they carry only the
            :math:`l_f = 0` filter, :math:`Y^{l>0}(0) = 0`). (default: ``False``)
        max_num_neighbors (int, optional): cap on the built graph's in-degree, nearest
            first, with a warning when it cuts. (default: ``None``, exact)
        graph_backend (str, optional): backend of :func:`~e3nn_pyg.graph.radius_graph`.
            (default: ``"auto"``)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, \dim_\text{in})` or
          :math:`((|\mathcal{V}_s|, \dim_\text{in}), (|\mathcal{V}_t|, *))`, positions
          :math:`(|\mathcal{V}|, 3)` or :math:`((|\mathcal{V}_s|, 3), (|\mathcal{V}_t|, 3))`,
          edge indices :math:`(2, |\mathcal{E}|)` (optional; or an ``EdgeIndex`` or a
          transposed sparse adjacency), batch vector :math:`(|\mathcal{V}|)` (optional),
          edge shifts :math:`(|\mathcal{E}|, 3)` (optional, periodic images)
        - **output:** node features :math:`(|\mathcal{V}_t|, \dim_\text{out})`

    Example:
        >>> from functools import partial
        >>> from e3nn_pyg.kernel import Kernel
        >>> from e3nn_pyg.radial import CosineBasisModel
        >>> RadialModel = partial(CosineBasisModel, max_radius=3.0, number_of_basis=3, h=100,
        ...                       L=2, act=torch.relu)
        >>> conv = Convolution(partial(Kernel, RadialModel=RadialModel), [(2, 0)], "4x0+4x1")
        >>> conv(torch.randn(12, 2), 2 * torch.randn(12, 3)).shape
        torch.Size([12, 16])
    """

    SUPPORTS_FUSED_EDGE_INDEX = True  # propagate fuses on EdgeIndex sorted by target

    def __init__(
        self,
        Kernel: Callable[[RsLike, RsLike], Kernel],
        Rs_in: RsLike,
        Rs_out: RsLike,
        max_radius: float | None = None,
        n_norm: float = 1.0,
        loop: bool = False,
        max_num_neighbors: int | None = None,
        graph_backend: str = "auto",
    ) -> None:
        super().__init__(aggr="add", flow="source_to_target", node_dim=0)
        self.kernel = Kernel(Rs(Rs_in), Rs(Rs_out))
        self.Rs_in: Rs = self.kernel.Rs_in
        self.Rs_out: Rs = self.kernel.Rs_out
        self.max_radius = max_radius if max_radius is not None else self.kernel.max_radius
        if not (isinstance(n_norm, (int, float)) and math.isfinite(n_norm) and n_norm > 0):
            raise ValueError(f"n_norm must be a positive number, got {n_norm!r}")
        self.n_norm = float(n_norm)
        self.loop = loop
        self.max_num_neighbors = max_num_neighbors
        self.graph_backend = graph_backend

    def reset_parameters(self) -> None:
        """Re-initialize the kernel's radial model."""
        super().reset_parameters()
        self.kernel.reset_parameters()

    def _check_features(self, x: Tensor, pos: Tensor, name: str) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.Rs_in.dim:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{name} has shape {shape}, expected [num_nodes, {self.Rs_in.dim}] for "
                f"Rs_in {self.Rs_in}"
            )
        if x.shape[0] != pos.shape[0]:
            raise ValueError(f"{name} has {x.shape[0]} rows but its positions have {pos.shape[0]}")
        if x.dtype != pos.dtype or x.device != pos.device:
            raise TypeError(
                f"{name} is {x.dtype} on {x.device} but positions are {pos.dtype} on {pos.device}"
            )
        self.kernel.check_like_parameters(pos, f"{name} and positions")

    def forward(
        self,
        x: Tensor | PairTensor,
        pos: Tensor | PairTensor,
        edge_index: Adj | None = None,
        batch: Tensor | None = None,
        n_norm: float | None = None,
        size: tuple[int, int] | None = None,
        graph_cache: dict | None = None,
        edge_shift: Tensor | None = None,
    ) -> Tensor:
        r"""Convolve ``x`` over the graph; see the class docstring for shapes.

        Args:
            x (Tensor or tuple of Tensor): node features, or (source, target) features.
            pos (Tensor or tuple of Tensor): positions, or (source, target) positions.
            edge_index (Tensor or EdgeIndex, optional): the graph, also as a sparse
                adjacency (default: the radius graph of ``pos`` and ``batch``).
            batch (Tensor, optional): the structure of every node, for the radius graph.
            n_norm (float, optional): overrides the layer's ``n_norm`` for this call.
            size (tuple of int, optional): (sources, targets); the output has ``size[1]``
                rows. (default: the rows of the source and target positions)
            graph_cache (dict, optional): a dict that the convolutions of one forward pass
                on the same graph and positions share: the first computes the pairing of
                the edges and their spherical harmonics, the others reuse them. Make a new
                one per forward pass; :func:`shared_graph` makes one for inputs that are
                already validated. (default: ``None``, nothing shared)
            edge_shift (Tensor, optional): ``[E, 3]`` added to the edge vectors,
                :math:`\mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij}`,
                one row per column of ``edge_index`` (which must then be given, as a tensor
                or ``EdgeIndex``): the periodic images of the sources, e.g.
                :func:`~e3nn_pyg.graph.cartesian_shifts` of the shifts of
                :func:`~e3nn_pyg.graph.periodic_radius_graph`. Gradients flow to it, edge
                by edge (a stress differentiates through the cell): edges that require
                grad are not paired with their reverse. (default: :obj:`None`, no shift)
        """
        x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, None)
        pos_src, pos_dst = pos if isinstance(pos, (tuple, list)) else (pos, pos)
        checked = _is_checked(graph_cache, (pos_src, pos_dst), edge_index, edge_shift)
        if not checked:
            validate_pos(pos_src, "pos" if pos_dst is pos_src else "source pos")
            if pos_dst is not pos_src:
                validate_pos(pos_dst, "target pos")
        self._check_features(x_src, pos_src, "x" if x_dst is None else "source x")
        if x_dst is not None and x_dst.shape[0] != pos_dst.shape[0]:
            raise ValueError(
                f"target x has {x_dst.shape[0]} rows but target pos has {pos_dst.shape[0]}"
            )
        num_src, num_dst = size = self._sizes(size, pos_src, pos_dst)

        check_edges = not checked
        if edge_index is None:
            if pos_dst is not pos_src:
                raise ValueError("bipartite inputs need an explicit edge_index")
            if edge_shift is not None:
                raise ValueError("edge_shift needs the edge_index whose edges it shifts")
            if self.max_radius is None:
                raise ValueError(
                    "no edge_index given and no max_radius: pass max_radius to Convolution "
                    "or use a radial model that defines one"
                )
            if batch is not None:
                validate_batch(batch, num_src, pos_src.device)
            radius = _validate_options(
                self.max_radius, self.loop, self.max_num_neighbors, self.graph_backend,
                "source_to_target",
            )  # fmt: skip
            edge_index = _radius_edges(  # (pos is validated above)
                pos_src, radius, batch, self.loop, self.max_num_neighbors, self.graph_backend
            )  # [2, E]
            if num_dst < num_src:  # size=(N, M): the first M nodes are the targets
                edge_index = edge_index[:, edge_index[1] < num_dst]
            check_edges = False  # (built here from validated positions)
        if edge_shift is not None and is_sparse(edge_index):
            raise ValueError(
                "edge_shift needs edge_index as a [2, E] tensor or EdgeIndex (the rows of "
                "edge_shift follow its columns; a sparse adjacency has no edge order)"
            )
        if self.explain:  # PyG's edge masks follow the caller's edge order: keep it
            graph = _as_edge_index(edge_index, num_src, num_dst, pos_src.device, check_edges)
            perm = None
        else:
            graph, perm = _sorted_graph(
                graph_cache, edge_index, size, pos_src.device, check=check_edges
            )  # fmt: skip
        if edge_shift is not None:
            if not checked:
                _check_edge_shift(edge_shift, graph.shape[1], pos_src)
            edge_shift = _sorted_shift(graph_cache, edge_shift, perm)  # [E, 3]
        # edges may pair with their reverse; not when the shifts need their own gradient
        # (a pair's gradient would land on its first edge)
        symmetric = pos_dst is pos_src and (edge_shift is None or not edge_shift.requires_grad)
        out = self.propagate(
            graph, x=(x_src, x_dst), pos=(pos_src, pos_dst), edge_shift=edge_shift,
            symmetric=symmetric, size=size, graph_cache=graph_cache,
        )  # fmt: skip  # [N_dst, dim_out]
        scale = self.n_norm if n_norm is None else n_norm
        return out / math.sqrt(scale)  # [N_dst, dim_out]

    def _sizes(self, size, pos_src: Tensor, pos_dst: Tensor) -> tuple[int, int]:
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

    def message(
        self, x_j: Tensor, pos_i: Tensor, pos_j: Tensor, edge_shift: Tensor | None
    ) -> Tensor:
        r""":math:`K(\mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij})\, \mathbf{x}_j` for every
        edge (explain mode)."""
        return self.kernel.apply(_edge_vectors(pos_j, pos_i, edge_shift), x_j)  # [E, dim_out]

    def message_and_aggregate(
        self,
        edge_index: Adj,
        x: PairTensor,
        pos: PairTensor,
        edge_shift: Tensor | None,
        symmetric: bool,
        graph_cache: dict | None,
    ) -> Tensor:
        r"""The sums :math:`\sum_j K(\mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij})\,
        \mathbf{x}_j` with the kernel's engine, without per-edge messages where the engine
        allows."""
        # PyG fuses only on these two: our sorted EdgeIndex, or a sparse adjacency handed
        # to propagate directly
        if isinstance(edge_index, EdgeIndex):
            num_dst, plain = edge_index.sparse_size(1), edge_index.as_tensor()
        else:
            num_dst, plain = edge_index.size(0), to_edge_index(edge_index)[0].flip(0)
        src, dst = plain[0], plain[1]  # [E]
        edge_vec = _edge_vectors(
            pos[0].index_select(0, src), pos[1].index_select(0, dst), edge_shift
        )  # [E, 3]
        geometry = _geometry(graph_cache, plain, edge_vec, pos, edge_shift, symmetric)
        return self.kernel.convolve(x[0], plain, edge_vec, num_dst, geometry=geometry)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.Rs_in} -> {self.Rs_out}, "
            f"n_path={self.kernel.n_path}, max_radius={self.max_radius}, n_norm={self.n_norm})"
        )

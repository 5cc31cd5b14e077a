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

from .checks import is_int, require_index_range
from .graph import radius_graph, validate_batch, validate_pos
from .kernel import Kernel
from .o3 import Rs, RsLike
from .tensor_product.engines import RowGeometry
from .tensor_product.fused import pair_edges

__all__ = ["Convolution", "sorted_edge_index"]

PairTensor = tuple[Tensor, Tensor]
Adj = Tensor  # a [2, E] tensor, an EdgeIndex or a transposed sparse adjacency


def _as_edge_index(edge_index, num_src: int, num_dst: int, device: torch.device) -> Tensor:
    """A plain ``[2, E]`` long tensor from a tensor, an ``EdgeIndex`` or a sparse ``adj_t``."""
    if is_sparse(edge_index):
        # PyG passes adjacencies transposed: adj_t[i, j] != 0 for an edge j -> i
        edge_index = to_edge_index(edge_index)[0].flip(0)
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"edge_index must be a tensor or a sparse adjacency, got {type(edge_index)}"
        )
    if isinstance(edge_index, EdgeIndex):
        edge_index = edge_index.as_tensor()  # (as_subclass would keep the wrapper)
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
    if torch.compiler.is_compiling():
        return _as_edge_index(edge_index, num_src, num_dst, device)
    if (
        isinstance(edge_index, EdgeIndex)
        and edge_index.is_sorted_by_col
        and edge_index.sparse_size() == (num_src, num_dst)
    ):
        _as_edge_index(edge_index, num_src, num_dst, device)  # dtype, device and range
        return edge_index
    plain = _as_edge_index(edge_index, num_src, num_dst, device)  # [2, E]
    return EdgeIndex(plain, sparse_size=(num_src, num_dst)).sort_by("col").values


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


def _sorted_graph(cache: dict | None, edge_index: Adj, size: tuple[int, int], device) -> Adj:
    """:func:`sorted_edge_index`, once per ``graph_cache`` for the same (unmodified) graph."""
    key = (edge_index, getattr(edge_index, "_version", None), size)
    return _cached(cache, "graph", key, lambda: sorted_edge_index(edge_index, *size, device))


def _geometry(
    cache: dict | None, plain: Tensor, edge_vec: Tensor, pos: PairTensor, symmetric: bool
) -> RowGeometry:
    """The engine's rows of the graph, computed once per ``graph_cache`` (see ``forward``).

    The pairing (:func:`pair_edges`) and the rows' lengths and harmonics depend on the
    graph and the positions: a cache entry is reused only for the same edge and position
    tensors, unmodified (same ``_version``), under the same autograd mode (a cached tensor
    must carry the graph to the positions that this call's gradients need).
    """
    key = (
        plain, pos[0], pos[1], plain._version, pos[0]._version, pos[1]._version, symmetric,
        torch.is_grad_enabled(), pos[0].requires_grad, pos[1].requires_grad,
    )  # fmt: skip
    return _cached(
        cache, "geometry", key,
        lambda: RowGeometry(edge_vec, pair_edges(plain, edge_vec, symmetric=symmetric)),
    )  # fmt: skip


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
    ``batch``; it is exact (no neighbour cap) unless ``max_num_neighbors`` is given.

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
          transposed sparse adjacency), batch vector :math:`(|\mathcal{V}|)` (optional)
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
    ) -> Tensor:
        """Convolve ``x`` over the graph; see the class docstring for shapes.

        Args:
            x (Tensor or (Tensor, Tensor)): node features, or (source, target) features.
            pos (Tensor or (Tensor, Tensor)): positions, or (source, target) positions.
            edge_index (Tensor, EdgeIndex or sparse adjacency, optional): the graph
                (default: the radius graph of ``pos`` and ``batch``).
            batch (Tensor, optional): the structure of every node, for the radius graph.
            n_norm (float, optional): overrides the layer's ``n_norm`` for this call.
            size ((int, int), optional): (sources, targets); the output has ``size[1]``
                rows. (default: the rows of the source and target positions)
            graph_cache (dict, optional): a dict that the convolutions of one forward pass
                on the same graph and positions share: the first computes the pairing of
                the edges and their spherical harmonics, the others reuse them. Make a new
                one per forward pass. (default: ``None``, nothing shared)
        """
        x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, None)
        pos_src, pos_dst = pos if isinstance(pos, (tuple, list)) else (pos, pos)
        validate_pos(pos_src, "pos" if pos_dst is pos_src else "source pos")
        if pos_dst is not pos_src:
            validate_pos(pos_dst, "target pos")
        self._check_features(x_src, pos_src, "x" if x_dst is None else "source x")
        if x_dst is not None and x_dst.shape[0] != pos_dst.shape[0]:
            raise ValueError(
                f"target x has {x_dst.shape[0]} rows but target pos has {pos_dst.shape[0]}"
            )
        num_src, num_dst = size = self._sizes(size, pos_src, pos_dst)

        if edge_index is None:
            if pos_dst is not pos_src:
                raise ValueError("bipartite inputs need an explicit edge_index")
            if self.max_radius is None:
                raise ValueError(
                    "no edge_index given and no max_radius: pass max_radius to Convolution "
                    "or use a radial model that defines one"
                )
            if batch is not None:
                validate_batch(batch, num_src, pos_src.device)
            edge_index = radius_graph(
                pos_src, self.max_radius, batch, loop=self.loop,
                max_num_neighbors=self.max_num_neighbors, backend=self.graph_backend,
            )  # fmt: skip
            if num_dst < num_src:  # size=(N, M): the first M nodes are the targets
                edge_index = edge_index[:, edge_index[1] < num_dst]
        if self.explain:  # PyG's edge masks follow the caller's edge order: keep it
            graph = _as_edge_index(edge_index, num_src, num_dst, pos_src.device)
        else:
            graph = _sorted_graph(graph_cache, edge_index, size, pos_src.device)
        symmetric = pos_dst is pos_src  # edges may pair with their reverse
        out = self.propagate(
            graph, x=(x_src, x_dst), pos=(pos_src, pos_dst), symmetric=symmetric, size=size,
            graph_cache=graph_cache,
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

    def message(self, x_j: Tensor, pos_i: Tensor, pos_j: Tensor) -> Tensor:
        r""":math:`K(\mathbf{p}_j - \mathbf{p}_i)\, \mathbf{x}_j` for every edge (explain mode)."""
        return self.kernel.apply(pos_j - pos_i, x_j)  # [E, dim_out]

    def message_and_aggregate(
        self,
        edge_index: Adj,
        x: PairTensor,
        pos: PairTensor,
        symmetric: bool,
        graph_cache: dict | None,
    ) -> Tensor:
        r"""The sums :math:`\sum_j K(\mathbf{p}_j - \mathbf{p}_i)\, \mathbf{x}_j` with the
        kernel's engine, without per-edge messages where the engine allows."""
        # PyG fuses only on these two: our sorted EdgeIndex, or a sparse adjacency handed
        # to propagate directly
        if isinstance(edge_index, EdgeIndex):
            num_dst, plain = edge_index.sparse_size(1), edge_index.as_tensor()
        else:
            num_dst, plain = edge_index.size(0), to_edge_index(edge_index)[0].flip(0)
        src, dst = plain[0], plain[1]  # [E]
        edge_vec = pos[0].index_select(0, src) - pos[1].index_select(0, dst)  # [E, 3]
        geometry = _geometry(graph_cache, plain, edge_vec, pos, symmetric)
        return self.kernel.convolve(x[0], plain, edge_vec, num_dst, geometry=geometry)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.Rs_in} -> {self.Rs_out}, "
            f"n_path={self.kernel.n_path}, max_radius={self.max_radius}, n_norm={self.n_norm})"
        )

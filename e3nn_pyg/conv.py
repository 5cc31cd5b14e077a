r"""The e3nn point convolution as a :class:`torch_geometric.nn.MessagePassing` layer."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor
from torch_geometric.nn import MessagePassing

from .checks import require_features, require_like, require_positive
from .graph import _radius_edges, _validate_options, validate_batch
from .graph.prepared import (
    Adj,
    Graph,
    PairTensor,
    build_graph,
    check_positions,
    check_size,
)
from .kernel import Kernel
from .o3 import Rs, RsLike

__all__ = ["Convolution"]


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
    hooks see them. Both paths give the same values and gradients. The layers of a model that
    convolve on one graph share it: :func:`~e3nn_pyg.graph.prepare_graph` validates and
    sorts it once, and each layer takes the :class:`~e3nn_pyg.graph.Graph` as
    ``edge_index`` (sharing the pairing of its edges, their lengths and harmonics). A
    channel-wise kernel
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
        >>> import torch
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
        self.n_norm = require_positive(n_norm, "n_norm")
        self.loop = loop
        self.max_num_neighbors = max_num_neighbors
        self.graph_backend = graph_backend

    def reset_parameters(self) -> None:
        """Re-initialize the kernel's radial model."""
        super().reset_parameters()
        self.kernel.reset_parameters()

    def forward(
        self,
        x: Tensor | PairTensor,
        pos: Tensor | PairTensor,
        edge_index: Adj | Graph | None = None,
        batch: Tensor | None = None,
        n_norm: float | None = None,
        size: tuple[int, int] | None = None,
        edge_shift: Tensor | None = None,
    ) -> Tensor:
        r"""Convolve ``x`` over the graph; see the class docstring for shapes.

        Args:
            x (Tensor or tuple of Tensor): node features, or (source, target) features.
            pos (Tensor or tuple of Tensor): positions, or (source, target) positions.
            edge_index (Tensor, EdgeIndex or Graph, optional): the graph, also as a sparse
                adjacency, or a :class:`~e3nn_pyg.graph.Graph` of
                :func:`~e3nn_pyg.graph.prepare_graph` on ``pos`` (the layers of a forward
                pass then share its sorting and geometry, and ``batch``, ``size`` and
                ``edge_shift`` are the graph's). (default: the radius graph of ``pos``
                and ``batch``)
            batch (Tensor, optional): the structure of every node, for the radius graph.
            n_norm (float, optional): overrides the layer's ``n_norm`` for this call.
            size (tuple of int, optional): (sources, targets); the output has ``size[1]``
                rows. (default: the rows of the source and target positions)
            edge_shift (Tensor, optional): ``[E, 3]`` added to the edge vectors,
                :math:`\mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij}`,
                one row per column of ``edge_index`` (which must then be given, as a tensor
                or ``EdgeIndex``), e.g. :func:`~e3nn_pyg.graph.cartesian_shifts`. Gradients
                flow to it, edge by edge: edges that require grad are not paired with their
                reverse. (default: :obj:`None`, no shift)
        """
        n_norm = self.n_norm if n_norm is None else require_positive(n_norm, "n_norm")
        x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, None)
        graph = self._prepare(x_src, x_dst, pos, edge_index, batch, size, edge_shift)
        out = self.propagate(
            graph.edge_index, x=(x_src, x_dst), pos=graph.pos, edge_shift=graph.edge_shift,
            graph=graph, size=graph.size,
        )  # fmt: skip  # [N_dst, dim_out]
        return out / math.sqrt(n_norm)  # [N_dst, dim_out]

    def _check_features(self, x_src: Tensor, x_dst: Tensor | None, pos: PairTensor) -> None:
        name = "x" if x_dst is None else "source x"
        require_features(x_src, self.Rs_in, name)
        if x_src.shape[0] != pos[0].shape[0]:
            raise ValueError(
                f"{name} has {x_src.shape[0]} rows but its positions have {pos[0].shape[0]}"
            )
        require_like(x_src, pos[0], name, "the positions")
        self.kernel.check_like_parameters(pos[0], f"{name} and positions")
        if x_dst is not None and x_dst.shape[0] != pos[1].shape[0]:
            raise ValueError(
                f"target x has {x_dst.shape[0]} rows but target pos has {pos[1].shape[0]}"
            )

    def _prepare(
        self,
        x_src: Tensor,
        x_dst: Tensor | None,
        pos: Tensor | PairTensor,
        edge_index: Adj | Graph | None,
        batch: Tensor | None,
        size: tuple[int, int] | None,
        edge_shift: Tensor | None,
    ) -> Graph:
        """The graph of this call, its inputs and the features validated: a given
        :class:`~e3nn_pyg.graph.Graph` (on these very positions), the graph of
        ``edge_index`` or else the radius graph. In explain mode the edges keep the
        caller's order (PyG's edge masks follow it; a given graph's order is its own)."""
        if isinstance(edge_index, Graph):
            if batch is not None or size is not None or edge_shift is not None:
                raise ValueError(
                    "batch, size and edge_shift belong to the prepared graph: pass them to "
                    "prepare_graph"
                )
            edge_index.require_positions(pos)
            self._check_features(x_src, x_dst, edge_index.pos)
            return edge_index
        pos = check_positions(pos)
        self._check_features(x_src, x_dst, pos)
        if edge_index is not None:
            return build_graph(
                pos, edge_index, edge_shift, size, validate=True, sort=not self.explain
            )
        return self._radius_graph(pos, batch, size, edge_shift)

    def _radius_graph(
        self,
        pos: PairTensor,
        batch: Tensor | None,
        size: tuple[int, int] | None,
        edge_shift: Tensor | None,
    ) -> Graph:
        """The graph of the radius ``max_radius`` on validated positions."""
        if pos[1] is not pos[0]:
            raise ValueError("bipartite inputs need an explicit edge_index")
        if edge_shift is not None:
            raise ValueError("edge_shift needs the edge_index whose edges it shifts")
        if self.max_radius is None:
            raise ValueError(
                "no edge_index given and no max_radius: pass max_radius to Convolution "
                "or use a radial model that defines one"
            )
        num_dst = check_size(size, *pos)[1]
        if batch is not None:
            validate_batch(batch, pos[0].shape[0], pos[0].device)
        radius = _validate_options(
            self.max_radius, self.loop, self.max_num_neighbors, self.graph_backend,
            "source_to_target",
        )  # fmt: skip
        edge_index = _radius_edges(
            pos[0], radius, batch, self.loop, self.max_num_neighbors, self.graph_backend
        )  # [2, E]
        if num_dst < pos[0].shape[0]:  # size=(N, M): the first M nodes are the targets
            edge_index = edge_index[:, edge_index[1] < num_dst]
        return build_graph(pos, edge_index, None, size, validate=False, sort=not self.explain)

    def message(
        self, x_j: Tensor, pos_i: Tensor, pos_j: Tensor, edge_shift: Tensor | None
    ) -> Tensor:
        r""":math:`K(\mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij})\, \mathbf{x}_j` for every
        edge (explain mode)."""
        edge_vec = pos_j - pos_i  # [E, 3]
        if edge_shift is not None:
            edge_vec = edge_vec + edge_shift
        return self.kernel._edge_messages(edge_vec, x_j)  # [E, dim_out]

    def message_and_aggregate(self, edge_index: Adj, x: PairTensor, graph: Graph) -> Tensor:
        r"""The sums :math:`\sum_j K(\mathbf{p}_j - \mathbf{p}_i + \mathbf{t}_{ij})\,
        \mathbf{x}_j` with the kernel's engine, without per-edge messages where the engine
        allows; the rows' geometry is the graph's, shared by the layers."""
        return self.kernel._convolve(
            x[0], graph.plain, graph.edge_vectors(), graph.size[1], graph.geometry()
        )  # [N_dst, dim_out]

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.Rs_in} -> {self.Rs_out}, "
            f"n_path={self.kernel.n_path}, max_radius={self.max_radius}, n_norm={self.n_norm})"
        )

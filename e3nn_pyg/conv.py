r"""The e3nn point convolution as a :class:`torch_geometric.nn.MessagePassing` layer."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import is_sparse, to_edge_index

from .graph import radius_graph, validate_batch, validate_pos
from .kernel import Kernel
from .o3 import Rs, RsLike
from .tensor_product.fused import pair_edges

__all__ = ["Convolution"]

PairTensor = tuple[Tensor, Tensor]


def _as_edge_index(edge_index, num_src: int, num_dst: int, device: torch.device) -> Tensor:
    """A plain ``[2, E]`` long tensor from a tensor, an ``EdgeIndex`` or a sparse ``adj_t``."""
    if is_sparse(edge_index):
        # PyG passes adjacencies transposed: adj_t[i, j] != 0 for an edge j -> i
        edge_index = to_edge_index(edge_index)[0].flip(0)
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"edge_index must be a tensor or a sparse adjacency, got {type(edge_index)}"
        )
    edge_index = edge_index.as_subclass(Tensor)  # EdgeIndex -> plain tensor
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, num_edges], got {list(edge_index.shape)}")
    if edge_index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"edge_index must be an integer tensor, got dtype {edge_index.dtype}")
    if edge_index.device != device:
        raise ValueError(f"edge_index is on {edge_index.device} but pos is on {device}")
    if edge_index.numel():
        for row, name, bound in ((0, "source", num_src), (1, "target", num_dst)):
            low, high = int(edge_index[row].min()), int(edge_index[row].max())
            if low < 0 or high >= bound:
                raise ValueError(
                    f"edge_index has {name} node {low if low < 0 else high} out of range "
                    f"[0, {bound}) for {bound} {name} nodes"
                )
    return edge_index.long()


class Convolution(MessagePassing):
    r"""The E(3)-equivariant point convolution of e3nn.

    .. math::
        \mathbf{x}'_i = \frac{1}{\sqrt{n_\text{norm}}} \sum_{j \in \mathcal{N}(i)}
        K(\mathbf{r}_{ij})\, \mathbf{x}_j, \qquad
        \mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i,

    with :math:`K(\mathbf{r}) = R(|\mathbf{r}|) Y(\hat{\mathbf{r}})` coupled to
    :math:`\mathbf{x}_j` by Clebsch-Gordan coefficients (:class:`~e3nn_pyg.kernel.Kernel`).
    With the kernel's ``"reference"`` engine the messages are computed through
    :meth:`Kernel.apply` (no ``[E, dim_out, dim_in]`` matrix is built) and summed at their
    targets by :meth:`propagate`; with the ``"fused"`` engine (the default, see
    :class:`~e3nn_pyg.kernel.Kernel`) :meth:`Kernel.convolve` gathers, applies and sums
    in chunks, and on a symmetric graph evaluates the radial model once per undirected pair
    of edges (:func:`~e3nn_pyg.tensor_product.fused.pair_edges`). Both give the same values
    and gradients. A channel-wise kernel (``Kernel(..., mode="channelwise")``) sums its
    unmixed channels over the neighbours and mixes them once per target node. Without
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
        edge_index: Tensor | None = None,
        batch: Tensor | None = None,
        n_norm: float | None = None,
    ) -> Tensor:
        """Convolve ``x`` over the graph; see the class docstring for shapes."""
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
        num_src, num_dst = pos_src.shape[0], pos_dst.shape[0]

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
        else:
            edge_index = _as_edge_index(edge_index, num_src, num_dst, pos_src.device)

        edge_vec = pos_src[edge_index[0]] - pos_dst[edge_index[1]]  # [E, 3]
        if self.kernel.uses_fused:
            pairing = pair_edges(edge_index, edge_vec, symmetric=pos_dst is pos_src)
            out = self.kernel.convolve(x_src, edge_index, edge_vec, num_dst, pairing)
        else:
            out = self.propagate(
                edge_index, x=(x_src, x_dst), edge_vec=edge_vec, size=(num_src, num_dst)
            )
        scale = self.n_norm if n_norm is None else n_norm
        return out / math.sqrt(scale)  # [N_dst, dim_out]

    def message(self, x_j: Tensor, edge_vec: Tensor) -> Tensor:
        return self.kernel.apply(edge_vec, x_j)  # [E, dim_out]

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.Rs_in} -> {self.Rs_out}, "
            f"n_path={self.kernel.n_path}, max_radius={self.max_radius}, n_norm={self.n_norm})"
        )

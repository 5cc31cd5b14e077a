r"""The interaction graph of the zoo models, compatible with PyG's ``RadiusInteractionGraph``."""

from __future__ import annotations

from torch import Tensor, nn

from ..graph import radius_graph
from ..kernel import edge_lengths

__all__ = ["RadiusInteractionGraph"]


class RadiusInteractionGraph(nn.Module):
    r"""The radius graph of a batch of molecules and its edge lengths,

    .. math::
        \mathcal{E} = \{(j, i) : i \ne j,\ \text{batch}_i = \text{batch}_j,\
        \lVert \mathbf{p}_j - \mathbf{p}_i \rVert < r_c\}, \qquad
        w_{ji} = \lVert \mathbf{p}_j - \mathbf{p}_i \rVert,

    built with :func:`e3nn_pyg.graph.radius_graph` (pure torch, exact: no neighbour cap
    unless ``max_num_neighbors`` is given). It has the call signature of
    :class:`torch_geometric.nn.models.schnet.RadiusInteractionGraph`, so it can be passed as
    ``interaction_graph=`` to PyG's :class:`~torch_geometric.nn.models.SchNet` (whose default
    needs ``pyg-lib`` or ``torch-cluster``). The edge lengths carry gradients to ``pos``.

    Args:
        cutoff (float, optional): the cutoff radius :math:`r_c`. (default: :obj:`5.0`)
        max_num_neighbors (int, optional): keep the nearest ``max_num_neighbors`` sources of
            every atom (breaks the exact symmetry when it cuts). (default: :obj:`None`,
            no cap)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)`
          (optional)
        - **output:** edge indices :math:`(2, |\mathcal{E}|)`, edge lengths
          :math:`(|\mathcal{E}|)`

    Example:
        >>> import torch
        >>> graph = RadiusInteractionGraph(cutoff=1.5)
        >>> edge_index, edge_weight = graph(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 3, 0]]))
        >>> edge_index.tolist(), edge_weight.tolist()
        ([[1, 0], [0, 1]], [1.0, 1.0])
    """

    def __init__(self, cutoff: float = 5.0, max_num_neighbors: int | None = None) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.max_num_neighbors = max_num_neighbors

    def forward(self, pos: Tensor, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        edge_index = radius_graph(
            pos, self.cutoff, batch, max_num_neighbors=self.max_num_neighbors
        )  # [2, E]
        src, dst = edge_index
        return edge_index, edge_lengths(pos[src] - pos[dst])  # [2, E], [E]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cutoff={self.cutoff}, "
            f"max_num_neighbors={self.max_num_neighbors})"
        )

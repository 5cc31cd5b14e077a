"""prepare_graph: one validated, sorted graph value for the convolutions of a forward pass."""

import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.utils import to_torch_coo_tensor

from e3nn_pyg.graph import Graph, prepare_graph, radius_graph

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning"),
    pytest.mark.usefixtures("float64"),
]


def shuffled_graph(num_nodes=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pos = 2 * torch.randn(num_nodes, 3, generator=generator)
    edge_index = radius_graph(pos, 3.0)
    order = torch.randperm(edge_index.shape[1], generator=generator)
    return pos, edge_index[:, order]


@pytest.mark.parametrize(
    "form",
    ["tensor", "int32", "edge_index", "sorted_edge_index", "sparse"],
)
def test_every_adjacency_format_gives_the_same_sorted_graph(form):
    pos, edge_index = shuffled_graph()
    n = len(pos)
    given = {
        "tensor": edge_index,
        "int32": edge_index.int(),
        "edge_index": EdgeIndex(edge_index, sparse_size=(n, n)),
        "sorted_edge_index": EdgeIndex(edge_index, sparse_size=(n, n)).sort_by("col")[0],
        "sparse": to_torch_coo_tensor(edge_index.flip(0), size=(n, n)),  # adj_t
    }[form]
    graph = prepare_graph(pos, given)
    assert isinstance(graph, Graph) and isinstance(graph.edge_index, EdgeIndex)
    assert graph.edge_index.is_sorted_by_col and graph.size == (n, n)
    assert graph.plain.dtype == torch.long
    expected = {tuple(e) for e in edge_index.T.tolist()}
    assert {tuple(e) for e in graph.plain.T.tolist()} == expected
    assert torch.equal(graph.plain[1], graph.plain[1].sort().values)


def test_shifts_follow_their_edges_and_decide_the_pairing():
    pos, edge_index = shuffled_graph()
    shift = torch.randn(edge_index.shape[1], 3)
    graph = prepare_graph(pos, edge_index, shift)
    by_edge = {tuple(e): s for e, s in zip(edge_index.T.tolist(), shift.tolist())}
    for e, s in zip(graph.plain.T.tolist(), graph.edge_shift.tolist()):
        assert by_edge[tuple(e)] == s
    vectors = graph.edge_vectors()
    src, dst = graph.plain
    torch.testing.assert_close(vectors, pos[src] - pos[dst] + graph.edge_shift)
    assert graph.symmetric
    assert not prepare_graph(pos, edge_index, shift.requires_grad_()).symmetric
    assert not prepare_graph((pos, pos.clone()), edge_index).symmetric  # bipartite


def test_the_geometry_is_built_once_per_autograd_mode():
    pos, edge_index = shuffled_graph()
    graph = prepare_graph(pos, edge_index)
    first = graph.geometry()
    assert graph.geometry() is first
    with torch.no_grad():
        assert graph.geometry() is not first  # another mode: no autograd graph to share
    assert first.pairing.num_paired * 2 == edge_index.shape[1]  # every edge with its reverse


def test_size_keeps_the_first_targets():
    pos, edge_index = shuffled_graph()
    kept = edge_index[:, edge_index[1] < 4]
    graph = prepare_graph(pos, kept, size=(len(pos), 4))
    assert graph.size == (len(pos), 4) and graph.edge_index.sparse_size() == (len(pos), 4)
    with pytest.raises(IndexError, match=r"target node [4-6] out of range"):
        prepare_graph(pos, edge_index, size=(len(pos), 4))
    with pytest.raises(ValueError, match="size must be a pair"):
        prepare_graph(pos, kept, size=(len(pos),))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda p, e, s: (p[:, :2], e, s), ValueError, r"\[N, 3\]"),
        (lambda p, e, s: (p, e[:1], s), ValueError, r"\[2, num_edges\]"),
        (lambda p, e, s: (p, e.float(), s), TypeError, "integer"),
        (
            lambda p, e, s: (p, e.index_fill(1, torch.tensor([0]), -1), s),
            IndexError,
            "source node -1 out of range",
        ),
        (lambda p, e, s: (p, e, s[1:]), ValueError, r"edge_shift must have shape"),
        (
            lambda p, e, s: (p, e, s.float()),
            TypeError,
            r"edge_shift \(torch\.float32 on cpu\) must match",
        ),
        (lambda p, e, s: (p, e, s / 0), ValueError, "edge_shift holds NaN"),
        (lambda p, e, s: (p, [[0], [1]], s), TypeError, "edge_index must be a tensor"),
    ],
)
def test_bad_inputs_are_refused_by_name(change, error, match):
    pos, edge_index = shuffled_graph()
    shift = torch.zeros(edge_index.shape[1], 3)
    with pytest.raises(error, match=match):
        prepare_graph(*change(pos, edge_index, shift))


def test_without_validation_nothing_is_read():
    """validate=False: the caller has checked (no synchronisation); the result is the same."""
    pos, edge_index = shuffled_graph()
    checked = prepare_graph(pos, edge_index)
    trusted = prepare_graph(pos, edge_index, validate=False)
    assert torch.equal(checked.plain, trusted.plain)
    pos[0, 0] = float("nan")  # not looked at
    prepare_graph(pos, edge_index, validate=False)

"""Convolution: the formula on explicit graphs, the PyG contract (edge formats, bipartite
inputs, batches), equivariance, forces, degenerate graphs, input validation, memory."""

import math
from functools import partial

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch_geometric import EdgeIndex
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

import e3nn_pyg.conv
from e3nn_pyg.conv import Convolution
from e3nn_pyg.graph import (
    Graph,
    cartesian_shifts,
    periodic_radius_graph,
    prepare_graph,
    radius_graph,
)
from e3nn_pyg.kernel import Kernel
from e3nn_pyg.non_linearities import rescaled_act
from e3nn_pyg.o3 import Rs
from e3nn_pyg.radial import CosineBasisModel
from e3nn_pyg.tensor_product import native
from e3nn_pyg.tensor_product.fused import pair_edges
from e3nn_pyg.testing import assert_equivariant

MAX_RADIUS = 3.0
RS_IN = "2x0e + 1x1o"
RS_OUT = "2x0e + 2x1o + 1x2e + 1x1e"
TUTORIAL_IN, TUTORIAL_OUT = [(2, 0)], [(4, 0), (4, 1), (4, 2)]
ENGINES = ["reference", "fused", *(["native"] if native.available() else [])]

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning"),
    pytest.mark.usefixtures("float64"),
]


def make_conv(rs_in=RS_IN, rs_out=RS_OUT, seed=0, h=16, engine="auto", mode=None, **kwargs):
    """A convolution; channel-wise for the native engine (the kernels it implements)."""
    mode = mode or ("channelwise" if engine == "native" else "full")
    torch.manual_seed(seed)
    radial = partial(
        CosineBasisModel,
        max_radius=MAX_RADIUS,
        number_of_basis=3,
        h=h,
        L=2,
        act=rescaled_act.Softplus(beta=5),
    )
    kernel = partial(Kernel, RadialModel=radial, engine=engine, mode=mode)
    return Convolution(kernel, rs_in, rs_out, **kwargs)


def molecule(num_atoms, seed=0, ball=3.0, min_distance=1.0):
    """Positions in a ball of radius ``ball`` (Å), pairwise at least ``min_distance`` apart."""
    generator = torch.Generator().manual_seed(seed)
    points = []
    while len(points) < num_atoms:
        p = (2 * torch.rand(3, generator=generator) - 1) * ball
        if p.norm() <= ball and all((p - q).norm() >= min_distance for q in points):
            points.append(p)
    return torch.stack(points) if points else torch.zeros(0, 3)


def features(num_atoms, rs=RS_IN, seed=0):
    generator = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(num_atoms, Rs(rs).dim, generator=generator)


def brute_force_edges(pos, r, batch=None):
    """Every ordered pair of distinct atoms of one molecule closer than r, as [2, E]."""
    n = pos.shape[0]
    batch = torch.zeros(n, dtype=torch.long) if batch is None else batch
    close = (pos[:, None] - pos[None]).pow(2).sum(-1) < r**2
    close &= batch[:, None] == batch[None]
    close.fill_diagonal_(False)
    src, dst = close.nonzero().T
    return torch.stack([src, dst])


def dense_oracle(conv, x_src, pos_src, pos_dst, edge_index, n_norm=None):
    """out_i = sum_{(j, i) in edges} K(p_j - p_i) x_j / sqrt(n_norm), with kernel matrices."""
    src, dst = edge_index
    k = conv.kernel(pos_src[src] - pos_dst[dst])  # [E, dim_out, dim_in]
    messages = (k @ x_src[src].unsqueeze(-1)).squeeze(-1)  # [E, dim_out]
    out = torch.zeros(pos_dst.shape[0], conv.Rs_out.dim).index_add_(0, dst, messages)
    return out / math.sqrt(conv.n_norm if n_norm is None else n_norm)


# -- the formula ---------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_matches_dense_oracle(engine):
    conv = make_conv(n_norm=4.0, engine=engine)
    pos, x = molecule(10), features(10)
    edge_index = brute_force_edges(pos, MAX_RADIUS)
    assert 0 < edge_index.shape[1] < 90  # a real radius graph, neither empty nor complete
    expected = dense_oracle(conv, x, pos, pos, edge_index)
    assert (conv(x, pos) - expected).abs().max() < 1e-12
    # n_norm given to forward overrides the layer's
    expected = dense_oracle(conv, x, pos, pos, edge_index, n_norm=9.0)
    assert (conv(x, pos, n_norm=9.0) - expected).abs().max() < 1e-12


@pytest.mark.parametrize("engine", ENGINES)
def test_matches_dense_oracle_with_gradients_on_every_device(device, engine):
    """The same numbers on every device: values and radial-weight gradients against the
    CPU float64 oracle (``"auto"`` and ``"native"`` fall back to ``"fused"`` on CUDA)."""
    conv = make_conv(engine=engine)
    pos, x = molecule(12), features(12)
    edges = brute_force_edges(pos, MAX_RADIUS)
    expected = dense_oracle(conv, x, pos, pos, edges)
    weight = conv.kernel.R.weights[0]
    (expected_grad,) = torch.autograd.grad(expected.pow(2).sum(), weight)
    conv = conv.to(device)
    out = conv(x.to(device), pos.to(device), edges.to(device))
    assert out.device.type == device.type
    (grad,) = torch.autograd.grad(out.pow(2).sum(), conv.kernel.R.weights[0])
    torch.testing.assert_close(out.cpu(), expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(grad.cpu(), expected_grad, atol=1e-10, rtol=1e-10)


def test_self_loops_add_the_isotropic_self_term():
    conv = make_conv(loop=True)
    pos, x = molecule(8), features(8)
    edge_index = brute_force_edges(pos, MAX_RADIUS)
    loops = torch.arange(8).repeat(2, 1)
    expected = dense_oracle(conv, x, pos, pos, torch.cat([edge_index, loops], dim=1))
    assert (conv(x, pos) - expected).abs().max() < 1e-12
    assert (conv(x, pos) - make_conv()(x, pos)).abs().max() > 1e-3


def test_built_radius_graph_equals_explicit_edge_index():
    conv = make_conv()
    pos, x = molecule(12, seed=3), features(12)
    built = conv(x, pos)
    assert (conv(x, pos, brute_force_edges(pos, MAX_RADIUS)) - built).abs().max() < 1e-12
    assert (conv(x, pos, radius_graph(pos, MAX_RADIUS)) - built).abs().max() < 1e-12


# -- the PyG contract ----------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_edge_index_formats_agree(engine):
    """A [2, E] tensor, an EdgeIndex and a transposed sparse adjacency (adj_t[i, j] != 0 for
    an edge j -> i, as PyG's propagate reads it) give the same result."""
    conv = make_conv(engine=engine)
    pos, x = molecule(9, seed=1), features(9)
    n = pos.shape[0]
    edge_index = brute_force_edges(pos, MAX_RADIUS)
    # make the graph directed so that a transposition mistake shows
    edge_index = edge_index[:, edge_index[0] < edge_index[1]]
    expected = dense_oracle(conv, x, pos, pos, edge_index)
    formats = {
        "tensor": edge_index,
        "EdgeIndex": EdgeIndex(edge_index, sparse_size=(n, n)),
        "coo adj_t": to_torch_coo_tensor(edge_index, size=(n, n)).t(),
        "csr adj_t": to_torch_csr_tensor(edge_index.flip(0), size=(n, n)),
        "int32": edge_index.int(),
    }
    for name, edges in formats.items():
        assert (conv(x, pos, edges) - expected).abs().max() < 1e-12, name


@pytest.mark.parametrize("engine", ENGINES)
def test_bipartite_inputs(engine):
    conv = make_conv(engine=engine)
    pos_src, pos_dst = molecule(7, seed=1), molecule(4, seed=2)
    x_src, x_dst = features(7), features(4, seed=5)
    edge_index = torch.tensor([[0, 1, 2, 6, 6, 3], [0, 0, 1, 3, 2, 3]])
    expected = dense_oracle(conv, x_src, pos_src, pos_dst, edge_index)
    out = conv((x_src, x_dst), (pos_src, pos_dst), edge_index)
    assert out.shape == (4, conv.Rs_out.dim)
    assert (out - expected).abs().max() < 1e-12
    assert (conv((x_src, None), (pos_src, pos_dst), edge_index) - out).abs().max() == 0
    # a sparse adj_t of a bipartite graph is [num_dst, num_src]
    adj_t = to_torch_coo_tensor(edge_index, size=(7, 4)).t()
    assert (conv((x_src, x_dst), (pos_src, pos_dst), adj_t) - out).abs().max() < 1e-12
    # isolated target 2 has one edge, target 3 two, all targets are covered
    errors = assert_equivariant(
        lambda xs, ps, pd: conv((xs, None), (ps, pd), edge_index),
        [x_src, pos_src, pos_dst],
        [RS_IN, "pos", "pos"],
        [RS_OUT],
    )
    assert set(errors) == {"rotation", "parity", "translation"}


@pytest.mark.parametrize("engine", ENGINES)
def test_every_call_goes_through_propagate_and_message_and_aggregate(engine):
    conv = make_conv(engine=engine)
    pos, x = molecule(8), features(8)
    calls = []
    conv.register_propagate_forward_hook(lambda module, inputs, out: calls.append("propagate"))
    conv.register_message_and_aggregate_forward_hook(
        lambda module, inputs, out: calls.append("message_and_aggregate")
    )
    conv.register_message_forward_hook(lambda module, inputs, out: calls.append("message"))
    out = conv(x, pos)
    assert calls == ["message_and_aggregate", "propagate"]
    edge_index = brute_force_edges(pos, MAX_RADIUS)
    assert torch.allclose(out, dense_oracle(conv, x, pos, pos, edge_index), atol=1e-12)
    # a hook's result replaces the output, as in every PyG layer
    conv.register_propagate_forward_hook(lambda module, inputs, out: 2 * out)
    assert torch.allclose(conv(x, pos), 2 * out, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_explain_mode_masks_each_message_in_the_callers_edge_order(engine):
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

    conv = make_conv(engine=engine)
    pos, x = molecule(8), features(8)
    edge_index = brute_force_edges(pos, MAX_RADIUS).flip(1)  # not sorted by target
    mask = torch.randn(edge_index.shape[1])
    set_masks(conv, mask, edge_index, apply_sigmoid=True)
    seen = []
    conv.register_message_forward_hook(lambda module, inputs, out: seen.append(out.shape))
    out = conv(x, pos, edge_index)
    clear_masks(conv)
    src, dst = edge_index
    messages = conv.kernel.apply(pos[src] - pos[dst], x[src]) * mask.sigmoid()[:, None]
    expected = torch.zeros(8, conv.Rs_out.dim).index_add_(0, dst, messages)
    assert seen == [(edge_index.shape[1], conv.Rs_out.dim)]
    assert torch.allclose(out, expected / math.sqrt(conv.n_norm), atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_size_selects_the_first_nodes_as_targets(engine):
    conv = make_conv(engine=engine)
    pos, x = molecule(10), features(10)
    full = conv(x, pos)
    assert torch.allclose(conv(x, pos, size=(10, 4)), full[:4], atol=1e-12)
    edge_index = brute_force_edges(pos, MAX_RADIUS)
    edge_index = edge_index[:, edge_index[1] < 4]
    assert torch.allclose(conv(x, pos, edge_index, size=(10, 4)), full[:4], atol=1e-12)
    with pytest.raises(ValueError, match="size must be a pair"):
        conv(x, pos, size=(10,))
    with pytest.raises(ValueError, match=r"size\[0\] = 9 but there are 10 source nodes"):
        conv(x, pos, size=(9, 4))
    with pytest.raises(ValueError, match=r"size\[1\] = 11 but there are only 10"):
        conv(x, pos, size=(10, 11))
    with pytest.raises(IndexError, match="target node 9 out of range"):
        conv(x, pos, brute_force_edges(pos, MAX_RADIUS), size=(10, 4))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_prepared_graph_never_serves_stale_geometry(engine):
    """Layers share the geometry of a prepared graph: built in one autograd mode, it is
    rebuilt in another; other or modified positions are refused."""
    conv = make_conv(engine=engine)
    pos, x = molecule(8), features(8)
    edge_index = brute_force_edges(pos, MAX_RADIUS)

    def forces(prepared):
        out = conv(x, prepared.pos[0], prepared)
        return torch.autograd.grad(out.pow(2).sum(), prepared.pos[0])[0]

    graph = prepare_graph(pos, edge_index)
    with torch.no_grad():
        conv(x, pos, graph)  # geometry without an autograd graph
    assert torch.allclose(conv(x, pos, graph), conv(x, pos, edge_index))
    leaf = pos.clone().requires_grad_(True)
    graph = prepare_graph(leaf, edge_index)
    with torch.no_grad():
        conv(x, leaf, graph)  # geometry without an autograd graph to pos
    expected = torch.autograd.grad(conv(x, leaf, edge_index).pow(2).sum(), leaf)[0]
    assert torch.allclose(forces(graph), expected, atol=1e-12)
    with pytest.raises(ValueError, match="prepared on other positions"):
        conv(x, pos.clone(), graph)
    moved = pos.clone()
    graph = prepare_graph(moved, edge_index)
    moved[0] += 0.1  # in place: same tensor, new version
    with pytest.raises(ValueError, match="modified in place"):
        conv(x, moved, graph)
    with pytest.raises(ValueError, match="belong to the prepared graph"):
        conv(x, pos, prepare_graph(pos, edge_index), size=(8, 8))


def test_dataloader_batch_equals_molecules_one_by_one():
    conv = make_conv()
    sizes = [5, 1, 9, 3, 12, 7]
    data = [
        Data(x=features(n, seed=i), pos=molecule(n, seed=i) + 10.0 * i) for i, n in enumerate(sizes)
    ]
    loader = DataLoader(data, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [4, 2]
    one_by_one = torch.cat([conv(d.x, d.pos) for d in data])
    batched = torch.cat([conv(b.x, b.pos, batch=b.batch) for b in batches])
    assert (batched - one_by_one).abs().max() < 1e-12


def test_batch_does_not_mix_molecules():
    """Two copies of a molecule at the same place: the batch must keep them apart."""
    conv = make_conv()
    pos, x = molecule(6), features(6)
    batch = Batch.from_data_list([Data(x=x, pos=pos), Data(x=x, pos=pos)])
    out = conv(batch.x, batch.pos, batch=batch.batch)
    single = conv(x, pos)
    assert (out - torch.cat([single, single])).abs().max() < 1e-12


def test_node_permutation_equivariance():
    conv = make_conv()
    pos, x = molecule(11, seed=4), features(11)
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    assert (conv(x[perm], pos[perm]) - conv(x, pos)[perm]).abs().max() < 1e-12


# -- equivariance --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("engine", ENGINES)
def test_equivariance_one_molecule(dtype, engine):
    conv = make_conv(engine=engine).to(dtype)
    pos, x = molecule(12).to(dtype), features(12).to(dtype)
    errors = assert_equivariant(conv, [x, pos], [RS_IN, "pos"], [RS_OUT])
    assert set(errors) == {"rotation", "parity", "translation"}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equivariance_batch(dtype):
    conv = make_conv().to(dtype)
    data = [Data(x=features(n, seed=n), pos=molecule(n, seed=n)) for n in (4, 1, 9)]
    batch = Batch.from_data_list(data)
    args = [batch.x.to(dtype), batch.pos.to(dtype), None, batch.batch]
    assert_equivariant(conv, args, [RS_IN, "pos", None, None], [RS_OUT])


def test_equivariance_tutorial_representations():
    """The tutorial's Rs have no parity: rotations and translations only."""
    conv = make_conv(TUTORIAL_IN, TUTORIAL_OUT)
    pos, x = molecule(12), features(12, rs=TUTORIAL_IN)
    errors = assert_equivariant(conv, [x, pos], [TUTORIAL_IN, "pos"], [TUTORIAL_OUT])
    assert set(errors) == {"rotation", "translation"}


def _energy(conv, x, pos):
    """A scalar energy: the sum of the l = 0 outputs of the convolution."""
    out = conv(x, pos)
    scalars = [s for block, s in zip(conv.Rs_out, conv.Rs_out.slices()) if block.l == 0]
    return sum(out[:, s].sum() for s in scalars)


@pytest.mark.parametrize("engine", ENGINES)
def test_forces_finite_and_equivariant(engine):
    conv = make_conv(engine=engine)
    pos, x = molecule(10, seed=6), features(10)

    def forces(x, pos):
        pos = pos.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_energy(conv, x, pos), pos)
        return -grad  # [N, 3]

    f = forces(x, pos)
    assert torch.isfinite(f).all() and f.abs().max() > 1e-3
    # forces rotate with the molecule, flip under inversion, ignore translations
    assert_equivariant(forces, [x, pos], [RS_IN, "pos"], ["1x1o"])
    # momentum conservation: internal forces sum to zero
    assert f.sum(0).abs().max() < 1e-10


# -- degenerate graphs ---------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_coincident_atoms_give_finite_outputs_and_gradients(engine):
    conv = make_conv(engine=engine)
    pos = molecule(5)
    pos = torch.cat([pos, pos[:1]]).requires_grad_(True)  # atoms 0 and 5 coincide
    x = features(6)
    out = conv(x, pos)
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    assert torch.isfinite(pos.grad).all()
    for p in conv.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_graph(engine):
    conv = make_conv(engine=engine)
    x, pos = torch.zeros(0, conv.Rs_in.dim), torch.zeros(0, 3)
    assert conv(x, pos).shape == (0, conv.Rs_out.dim)
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert conv(x, pos, empty).shape == (0, conv.Rs_out.dim)
    batch = torch.zeros(0, dtype=torch.long)
    assert conv(x, pos, batch=batch).shape == (0, conv.Rs_out.dim)


@pytest.mark.parametrize("engine", ENGINES)
def test_isolated_and_single_atoms_give_zeros(engine):
    conv = make_conv(engine=engine)
    far = 10.0 * torch.arange(4.0)[:, None] * torch.tensor([[1.0, 0.0, 0.0]])  # 10 Å apart
    out = conv(features(4), far)
    assert out.shape == (4, conv.Rs_out.dim) and out.abs().max() == 0
    single = conv(features(1), torch.zeros(1, 3))
    assert single.shape == (1, conv.Rs_out.dim) and single.abs().max() == 0
    batch = Batch.from_data_list(
        [Data(x=features(1), pos=torch.zeros(1, 3)), Data(x=features(5), pos=molecule(5))]
    )
    out = conv(batch.x, batch.pos, batch=batch.batch)
    assert out[0].abs().max() == 0 and out[1:].abs().max() > 0


# -- periodic edges ------------------------------------------------------------------------
def periodic_crystal(num_atoms=6, side=2.6, seed=0):
    """Atoms in a triclinic cell smaller than the cutoff: its periodic graph, with the
    Cartesian shift of every edge (several edges join the same two atoms)."""
    generator = torch.Generator().manual_seed(seed)
    cell = side * torch.tensor([[1.0, 0.0, 0.0], [0.3, 1.0, 0.0], [-0.2, 0.1, 1.1]])
    pos = torch.rand(num_atoms, 3, generator=generator) @ cell
    edge_index, shifts = periodic_radius_graph(pos, MAX_RADIUS, cell, True)
    return pos, cell, edge_index, cartesian_shifts(shifts, cell, edge_index)


def image_oracle(conv, x, pos, edge_index, edge_shift):
    """The same sums with one source node per edge, placed at the shifted image: a bipartite
    graph without shifts (the convolution's own path for explicit positions)."""
    src, dst = edge_index
    images = pos[src] + edge_shift  # [E, 3]
    bipartite = torch.stack([torch.arange(len(src)), dst])
    return conv((x[src], x), (images, pos), bipartite)


@pytest.mark.parametrize("side", [2.6, 5.0], ids=["repeated-pairs", "pairs"])
@pytest.mark.parametrize("engine", ENGINES)
def test_edge_shift_moves_the_sources_to_their_images(engine, side):
    """Values and gradients (positions and shifts, edge by edge) equal those of the explicit
    images, on the fused path (sorted graph; in the larger cell, with constant shifts, pairs
    of opposite periodic edges share their radial weights) and the per-message path."""
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

    conv = make_conv(engine=engine)
    pos, _, edge_index, edge_shift = periodic_crystal(num_atoms=8, side=side)
    x = features(len(pos))
    vec = pos[edge_index[0]] - pos[edge_index[1]] + edge_shift
    if side < MAX_RADIUS:
        assert len(edge_index.t().unique(dim=0)) < edge_index.shape[1]  # repeated atom pairs
    else:
        assert pair_edges(edge_index, vec).num_paired > 0 and edge_shift.abs().max() > 0
    generator = torch.Generator().manual_seed(1)
    perm = torch.randperm(edge_index.shape[1], generator=generator)  # not sorted by target
    edge_index, edge_shift = edge_index[:, perm], edge_shift[perm]

    def run(function, shift_grad=True):
        p = pos.clone().requires_grad_(True)
        t = edge_shift.clone().requires_grad_(shift_grad)
        out = function(p, t)
        return (out, *torch.autograd.grad(out.pow(2).sum(), (p, t) if shift_grad else p))

    expected = run(lambda p, t: image_oracle(conv, x, p, edge_index, t))
    fused = run(lambda p, t: conv(x, p, edge_index, edge_shift=t))
    constant = run(lambda p, t: conv(x, p, edge_index, edge_shift=t), shift_grad=False)
    set_masks(conv, torch.full((edge_index.shape[1],), 1e9), edge_index, apply_sigmoid=True)
    per_message = run(lambda p, t: conv(x, p, edge_index, edge_shift=t))
    clear_masks(conv)
    for got in (fused, constant, per_message):
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert (fused[0] - conv(x, pos, edge_index)).abs().max() > 1e-3  # the shifts matter


def test_periodic_convolution_is_equivariant():
    conv = make_conv()
    pos, cell, edge_index, _ = periodic_crystal(seed=2)
    _, shifts = periodic_radius_graph(pos, MAX_RADIUS, cell, True)

    def layer(x, pos, cell):
        return conv(x, pos, edge_index, edge_shift=cartesian_shifts(shifts, cell, edge_index))

    # lattice vectors rotate (and invert) as vectors, and do not translate
    assert_equivariant(layer, [features(len(pos)), pos, cell], [RS_IN, "pos", "1o"], RS_OUT)


def test_a_prepared_graph_is_validated_and_sorted_once(monkeypatch):
    """prepare_graph validates positions, edges and shifts and sorts the edges once; the
    convolutions called with its Graph do neither again, and share its geometry."""
    import e3nn_pyg.graph.prepared as prepared

    conv = make_conv()
    pos, _, edge_index, edge_shift = periodic_crystal()
    x = features(len(pos))
    expected = conv(x, pos, edge_index, edge_shift=edge_shift)
    graph = prepare_graph(pos, edge_index, edge_shift)
    assert isinstance(graph, Graph) and isinstance(graph.edge_index, EdgeIndex)
    assert graph.edge_index.is_sorted_by_col and graph.symmetric
    calls = []
    for name in ("validate_pos", "require_edges", "_check_edge_shift", "pair_edges"):
        check = getattr(prepared, name)
        monkeypatch.setattr(
            prepared, name, lambda *a, _n=name, _f=check, **k: calls.append(_n) or _f(*a, **k)
        )
    for _ in range(2):  # e.g. two layers of a model
        out = conv(x, pos, graph)
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
    assert calls == ["pair_edges"]  # the geometry, once
    calls.clear()
    prepare_graph(pos, edge_index, edge_shift)
    assert calls == ["validate_pos", "require_edges", "_check_edge_shift"]
    with pytest.raises(ValueError, match="NaN or infinite"):
        prepare_graph(pos, edge_index, torch.full_like(edge_shift, math.nan))
    with pytest.raises(IndexError, match="target node 6 out of range"):
        prepare_graph(pos, torch.tensor([[0], [6]]))


# -- parameters and repr -------------------------------------------------------------------
def test_reset_parameters_changes_weights():
    conv = make_conv()
    before = [p.detach().clone() for p in conv.parameters()]
    assert before
    conv.reset_parameters()
    assert all(not torch.equal(b, p) for b, p in zip(before, conv.parameters()))


def test_repr_shows_hyper_parameters():
    text = repr(make_conv(TUTORIAL_IN, TUTORIAL_OUT, n_norm=3.0))
    for piece in ("Convolution(", "2x0 -> 4x0+4x1+4x2", "n_path=24", "max_radius=3.0", "3.0"):
        assert piece in text


# -- bad inputs ----------------------------------------------------------------------------
@pytest.fixture
def guarded(monkeypatch):
    """A convolution whose graph search and radial model fail the test if they run."""
    conv = make_conv()

    def no_graph(*args, **kwargs):
        pytest.fail("radius_graph ran before the input was rejected")

    monkeypatch.setattr(e3nn_pyg.conv, "_radius_edges", no_graph)
    conv.kernel.R.register_forward_pre_hook(
        lambda *args: pytest.fail("the kernel ran before the input was rejected")
    )
    return conv


def test_rejects_wrong_feature_width(guarded):
    with pytest.raises(ValueError, match=r"2x0e\+1x1o"):
        guarded(torch.randn(5, 4), molecule(5))
    with pytest.raises(ValueError, match=r"2x0e\+1x1o"):
        guarded(torch.randn(5), molecule(5))
    with pytest.raises(ValueError, match="rows"):
        guarded(features(4), molecule(5))


def test_rejects_bad_positions(guarded):
    x = features(5)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        guarded(x, torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        guarded(x, torch.randn(5, 3, 1))
    for bad in (math.nan, math.inf):
        pos = molecule(5)
        pos[2, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            guarded(x, pos)
    with pytest.raises(TypeError, match="floating"):
        guarded(x, torch.zeros(5, 3, dtype=torch.long))


def test_rejects_bad_batch(guarded):
    x, pos = features(5), molecule(5)
    with pytest.raises(ValueError, match="sorted"):
        guarded(x, pos, batch=torch.tensor([0, 1, 0, 1, 1]))
    with pytest.raises(ValueError, match="4 entries but there are 5 nodes"):
        guarded(x, pos, batch=torch.tensor([0, 0, 1, 1]))
    with pytest.raises(TypeError, match="integer"):
        guarded(x, pos, batch=torch.zeros(5))


def test_rejects_bad_edge_index(guarded):
    x, pos = features(5), molecule(5)
    with pytest.raises(IndexError, match="source node 5 out of range"):
        guarded(x, pos, torch.tensor([[0, 5], [1, 0]]))
    with pytest.raises(IndexError, match="target node -1 out of range"):
        guarded(x, pos, torch.tensor([[0, 1], [1, -1]]))
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        guarded(x, pos, torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match="integer"):
        guarded(x, pos, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="bipartite inputs need an explicit edge_index"):
        guarded((x, x[:2]), (pos, pos[:2]))


def test_rejects_bad_edge_shift(guarded):
    x, pos = features(5), molecule(5)
    edge_index = torch.tensor([[0, 1, 2], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"edge_shift must have shape \[num_edges, 3\] = \[3"):
        guarded(x, pos, edge_index, edge_shift=torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"edge_shift \(torch\.float32 on cpu\) must match"):
        guarded(x, pos, edge_index, edge_shift=torch.zeros(3, 3, dtype=torch.float32))
    with pytest.raises(ValueError, match="edge_shift holds NaN"):
        guarded(x, pos, edge_index, edge_shift=torch.full((3, 3), math.nan))
    with pytest.raises(ValueError, match="edge_shift needs the edge_index"):
        guarded(x, pos, edge_shift=torch.zeros(3, 3))
    adjacency = to_torch_coo_tensor(edge_index, size=5).t()
    with pytest.raises(ValueError, match="sparse adjacency has no edge order"):
        guarded(x, pos, adjacency, edge_shift=torch.zeros(3, 3))


def test_rejects_dtype_mismatch(guarded):
    x, pos = features(5), molecule(5)
    with pytest.raises(TypeError, match="float32"):
        guarded(x.float(), pos)
    conv = make_conv().float()  # float32 parameters, float64 inputs
    conv.kernel.R.register_forward_pre_hook(
        lambda *args: pytest.fail("the kernel ran before the input was rejected")
    )
    with pytest.raises(TypeError, match=r"float64.*float32"):
        conv(x, pos)


def test_rejects_device_mismatch(guarded):
    """On the 'meta' device (no data), so that the check runs on a CPU-only machine too."""
    x, pos = features(5), molecule(5)
    with pytest.raises(TypeError, match="meta"):
        guarded(x.to("meta"), pos)
    with pytest.raises(ValueError, match="meta"):
        guarded(x, pos, torch.tensor([[0, 1], [1, 0]], device="meta"))
    with pytest.raises(ValueError, match="meta"):
        guarded(x, pos, batch=torch.zeros(5, dtype=torch.long, device="meta"))
    conv = make_conv().to("meta")  # parameters elsewhere than the inputs
    conv.kernel.R.register_forward_pre_hook(
        lambda *args: pytest.fail("the kernel ran before the input was rejected")
    )
    with pytest.raises(TypeError, match="meta"):
        conv(x, pos)


@pytest.mark.parametrize(
    "n_norm, error",
    [(0.0, ValueError), (-4.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
     ("4", TypeError), (True, TypeError)],
)  # fmt: skip
def test_rejects_bad_n_norm(n_norm, error):
    with pytest.raises(error, match="n_norm must be"):
        make_conv(n_norm=n_norm)
    conv = make_conv()
    with pytest.raises(error, match="n_norm must be"):  # the override of one call too
        conv(features(5), molecule(5), n_norm=n_norm)


# -- memory --------------------------------------------------------------------------------
class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (in elements) produced by any operator."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.numel = max(self.numel, t.untyped_storage().nbytes() // t.element_size())
        return out


@pytest.mark.parametrize("engine", ENGINES)
def test_memory_grows_with_edges_times_widths_not_their_product(engine):
    """Peak tensor size ~ E (dim_in + dim_out + n_path), never E dim_in dim_out."""
    rs = "32x0e + 32x1o + 32x2e"
    conv = make_conv(rs, rs, h=8, engine=engine).float()
    pos, x = molecule(12, ball=1.5, min_distance=0.5).float(), features(12, rs=rs).float()
    num_edges = brute_force_edges(pos, MAX_RADIUS).shape[1]
    assert num_edges == 12 * 11
    dim = conv.Rs_in.dim
    assert (dim, conv.kernel.n_path) == (288, 14336 if engine != "native" else 448)
    linear = num_edges * (dim + dim + conv.kernel.n_path)
    product = num_edges * dim * dim
    assert product > 4 * linear

    with LargestAllocation() as forward_backward:
        out = conv(x, pos.requires_grad_(True))
        out.pow(2).sum().backward()
    assert forward_backward.numel < 2 * linear, (forward_backward.numel, linear, product)

    # the probe sees the product when the kernel matrices are built (it can fail)
    with LargestAllocation() as matrices:
        conv.kernel(torch.randn(num_edges, 3, dtype=torch.float32))
    assert matrices.numel >= product

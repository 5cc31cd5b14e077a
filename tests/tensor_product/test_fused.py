"""The fused engine and the channel-wise kernel against the reference path (the oracle)."""

import warnings
from functools import partial

import pytest
import torch

from e3nn_pyg.conv import Convolution
from e3nn_pyg.graph import radius_graph
from e3nn_pyg.kernel import Kernel
from e3nn_pyg.radial import CosineBasisModel
from e3nn_pyg.tensor_product import native
from e3nn_pyg.tensor_product.fused import FusedTensorProduct, pair_edges
from e3nn_pyg.tensor_product.paths import plan_kernel, selection_rule
from e3nn_pyg.testing import assert_equivariant

RADIUS = 2.5
CASES = [  # Rs_in, Rs_out, largest filter order
    ("2x0e", "4x0e+4x1o+4x2e", None),
    ("3x0e+2x1o+2x2e", "2x0e+2x1o+1x2e+1x1e", 3),
    ("2x0+2x1", "1x0+2x1+1x2", None),  # no parity: filters of both parities in one pair
]
MODES = ["full", "channelwise"]


def make_kernel(rs_in, rs_out, lmax, mode, engine="auto"):
    radial = partial(CosineBasisModel, max_radius=RADIUS, number_of_basis=5, h=12, L=2)
    rule = partial(selection_rule, lmax=lmax)
    return Kernel(rs_in, rs_out, radial, selection_rule=rule, mode=mode, engine=engine)


def max_relative(a, b):
    return ((a - b).abs().max() / a.abs().max().clamp(min=1e-300)).item()


def outputs_and_gradients(kernel, x, pos, edge_index, pairing):
    """Output, its gradients to x, pos and every parameter, and a second-order gradient."""
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    out = kernel.convolve(x, edge_index, edge_vec, x.shape[0], pairing)
    params = list(kernel.parameters())
    grads = torch.autograd.grad(out.pow(2).sum(), [x, pos, *params], create_graph=True)
    force_loss = grads[1].pow(2).sum()  # force training: d/dparams of |dE/dpos|^2
    return [out, *grads, *torch.autograd.grad(force_loss, params)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("rs_in", "rs_out", "lmax"), CASES)
def test_convolve_matches_reference(float64, rs_in, rs_out, lmax, mode):
    torch.manual_seed(0)
    kernel = make_kernel(rs_in, rs_out, lmax, mode)
    kernel.chunk_size = 23  # several chunks, chunks mixing pairs and single edges
    pos = (2 * torch.randn(24, 3)).requires_grad_()
    x = torch.randn(24, kernel.Rs_in.dim, requires_grad=True)
    edge_index = radius_graph(pos.detach(), RADIUS)
    edge_index = edge_index[:, torch.arange(edge_index.shape[1]) != 3]  # one edge unpaired
    edge_index = torch.cat([edge_index, torch.tensor([[5], [5]])], dim=1)  # a self-loop
    pairing = pair_edges(edge_index, pos[edge_index[0]] - pos[edge_index[1]])
    assert 0 < pairing.num_paired < edge_index.shape[1] // 2

    kernel.engine = "reference"
    expected = outputs_and_gradients(kernel, x, pos, edge_index, None)
    kernel.engine = "fused"
    for rows in (None, pairing):
        got = outputs_and_gradients(kernel, x, pos, edge_index, rows)
        for a, b in zip(expected, got, strict=True):
            assert max_relative(a, b) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_compiled_engine_matches_eager(float64, mode):
    """``engine="compiled"`` (torch.compile, padded static chunks) equals the eager engine."""
    torch.manual_seed(6)
    kernel = make_kernel("3x0e+2x1o+2x2e", "2x0e+2x1o+1x2e+1x1e", 3, mode)
    kernel.chunk_size = 16  # several chunks, the last ones padded
    pos = (2 * torch.randn(24, 3)).requires_grad_()
    x = torch.randn(24, kernel.Rs_in.dim, requires_grad=True)
    edge_index = radius_graph(pos.detach(), RADIUS)
    edge_index = torch.cat([edge_index[:, 1:], torch.tensor([[5], [5]])], dim=1)  # single rows
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    pairing = pair_edges(edge_index, edge_vec)
    assert 0 < pairing.num_paired and pairing.num_rows - pairing.num_paired > 1
    params = list(kernel.parameters())
    results = {}
    for engine in ("fused", "compiled"):
        kernel.engine = engine
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a compiler failure fails the test
            with torch.no_grad():
                inference = kernel.convolve(x, edge_index, edge_vec, 24, pairing)
                applied = kernel.apply(edge_vec, x[edge_index[0]])
            out = kernel.convolve(x, edge_index, edge_vec, 24, pairing)
            first = torch.autograd.grad(out.pow(2).sum(), [x, pos, *params], retain_graph=True)
            higher = outputs_and_gradients(kernel, x, pos, edge_index, pairing)
        results[engine] = [inference, applied, *first, *higher]
    assert kernel.fused.compile_rows == 16
    for a, b in zip(results["fused"], results["compiled"], strict=True):
        assert max_relative(a, b) < 1e-12


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("rs_in", "rs_out", "lmax"), CASES)
def test_apply_and_kernel_matrices_agree(float64, rs_in, rs_out, lmax, mode):
    torch.manual_seed(1)
    kernel = make_kernel(rs_in, rs_out, lmax, mode)
    edge_vec = torch.randn(9, 3)
    edge_vec[0] = 0.0  # a zero-length edge (self-loop)
    x = torch.randn(9, kernel.Rs_in.dim)
    fused = kernel.apply(edge_vec, x)
    kernel.engine = "reference"
    reference = kernel.apply(edge_vec, x)
    from_matrices = torch.einsum("eij,ej->ei", kernel(edge_vec), x)
    assert max_relative(reference, fused) < 1e-12
    assert max_relative(reference, from_matrices) < 1e-12


class Constant(torch.nn.Module):
    """A stand-in radial model returning fixed weights."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def forward(self, lengths):
        return self.weights


def test_channelwise_is_a_factorized_full_kernel(float64):
    r"""Channel-wise = full kernel with :math:`R_{uvf} = L_{u,(ivf)} R_{vf}`, same constants."""
    torch.manual_seed(2)
    channelwise = make_kernel("3x0e+2x1o", "2x0e+2x1o+1x2e", None, "channelwise")
    full = make_kernel("3x0e+2x1o", "2x0e+2x1o+1x2e", None, "full")
    edge_vec = torch.randn(7, 3)
    lengths = edge_vec.norm(dim=1)
    radial = channelwise.R(lengths)  # [E, n_path of the channel-wise kernel]
    assert radial.shape[1] == sum(p.mul_in * len(p.filters) for p in full.plan.pairs)
    assert [tuple(m.shape) for m in channelwise.mix] == [(2, 3 + 2), (2, 3 + 2 * 2), (1, 3 + 2 * 2)]
    full.R = Constant(channelwise.full_weights(radial))
    assert max_relative(full(edge_vec), channelwise(edge_vec)) < 1e-12
    # the (0e -> 1o) block of the weights: mix[1][:, v] * R_v for the 3 scalar channels v
    expected = channelwise.mix[1][:, :3].unsqueeze(0) * radial[:, 5:8].unsqueeze(1)
    block = channelwise.full_weights(radial)[:, 6 + 4 : 6 + 4 + 6]
    assert torch.equal(block, expected.reshape(7, 6))


def test_gradgradcheck(float64):
    torch.manual_seed(3)
    kernel = make_kernel("1x0e+1x1o", "1x0e+1x1o", None, "channelwise")
    pos = 1.2 * torch.randn(5, 3)
    edge_index = radius_graph(pos, RADIUS)
    pairing = pair_edges(edge_index)
    assert pairing.num_paired > 0
    x = torch.randn(5, kernel.Rs_in.dim)

    def convolve(x, pos):
        edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
        return kernel.convolve(x, edge_index, edge_vec, 5, pairing)

    inputs = (x.requires_grad_(), pos.requires_grad_())
    assert torch.autograd.gradcheck(convolve, inputs)
    assert torch.autograd.gradgradcheck(convolve, inputs)


@pytest.mark.parametrize("mode", MODES)
def test_convolution_engines_agree_and_are_equivariant(float64, mode):
    torch.manual_seed(4)
    radial = partial(CosineBasisModel, max_radius=RADIUS, number_of_basis=5, h=12, L=1)
    rs_in, rs_out = "2x0e+1x1o+1x2e", "1x0e+2x1o+1x2e+1x1e"
    conv = Convolution(partial(Kernel, RadialModel=radial, mode=mode), rs_in, rs_out, n_norm=3)
    expected = "native" if native.available() else "fused"
    assert conv.kernel.engine == "auto" and conv.kernel.engine_impl.name == expected
    pos = 1.5 * torch.randn(16, 3)
    batch = torch.arange(16) // 8
    x = torch.randn(16, conv.Rs_in.dim)
    fused = conv(x, pos, batch=batch)
    conv.kernel.engine = "reference"
    assert max_relative(conv(x, pos, batch=batch), fused) < 1e-12
    conv.kernel.engine = "fused"
    bipartite = conv((x, x[:5]), (pos, pos[:5]), radius_graph(pos, RADIUS)[:, :20].clamp(max=4))
    assert bipartite.shape == (5, conv.Rs_out.dim)
    assert_equivariant(lambda x, pos: conv(x, pos, batch=batch), (x, pos), [rs_in, "pos"], [rs_out])


def test_pair_edges():
    edge_index = torch.tensor([[0, 1, 2, 1, 3, 3], [1, 0, 1, 2, 3, 0]])
    pairing = pair_edges(edge_index)
    assert pairing.num_paired == 2
    assert pairing.edge[:2].tolist() == [1, 2]  # pair rows: the edge with the smaller target
    assert pairing.dst[:2].tolist() == [0, 1] and pairing.src[:2].tolist() == [1, 2]
    assert sorted(pairing.edge[2:].tolist()) == [4, 5]  # the self-loop and 0 -> 3 alone
    vec = torch.randn(6, 3)
    vec[0] = -vec[1]
    assert pair_edges(edge_index, vec).num_paired == 1  # 1 <-> 2 vectors not opposite
    symmetric = torch.tensor([[0, 1, 2, 1, 3], [1, 0, 1, 2, 3]])  # every edge has its reverse
    pairing = pair_edges(symmetric)
    assert pairing.num_paired == 2 and pairing.edge.tolist() == [1, 2, 4]
    assert pairing.dst.tolist() == [0, 1, 3] and pairing.src.tolist() == [1, 2, 3]
    vec = torch.randn(5, 3)
    vec[0] = -vec[1]
    assert pair_edges(symmetric, vec).edge.tolist() == [1, 2, 3, 4]  # 1 <-> 2 not opposite
    multigraph = torch.tensor([[0, 0, 1], [1, 1, 0]])
    assert pair_edges(multigraph).num_paired == 0
    assert pair_edges(edge_index, symmetric=False).dst.tolist() == [0, 0, 1, 1, 2, 3]
    assert pair_edges(torch.zeros(2, 0, dtype=torch.long)).num_rows == 0
    with pytest.raises(ValueError, match="edge_index"):
        pair_edges(torch.zeros(3, 2, dtype=torch.long))


class Wrapped(torch.nn.Module):
    """A radial model that is not a RadialMLP: the engine permutes its output."""

    def __init__(self, out_dim):
        super().__init__()
        self.inner = CosineBasisModel(out_dim, max_radius=RADIUS, number_of_basis=5, h=8, L=1)

    def forward(self, lengths):
        return self.inner(lengths)


@pytest.mark.parametrize("mode", MODES)
def test_generic_radial_model_and_autograd_path(float64, mode):
    """Any radial model, and the engine without recomputation, match the reference."""
    torch.manual_seed(5)
    rule = partial(selection_rule, lmax=3)
    kernel = Kernel("2x0e+2x1o+1x2e", "1x0e+2x1o+2x2e", Wrapped, selection_rule=rule, mode=mode)
    kernel.chunk_size = 7
    pos = (1.5 * torch.randn(10, 3)).requires_grad_()
    x = torch.randn(10, kernel.Rs_in.dim, requires_grad=True)
    edge_index = radius_graph(pos.detach(), RADIUS)
    pairing = pair_edges(edge_index)
    kernel.engine = "reference"
    expected = outputs_and_gradients(kernel, x, pos, edge_index, None)
    kernel.engine = "fused"
    for recompute in (True, False):
        kernel.fused.recompute = recompute
        got = outputs_and_gradients(kernel, x, pos, edge_index, pairing)
        for a, b in zip(expected, got, strict=True):
            assert max_relative(a, b) < 1e-12


def test_weight_permutation_is_a_permutation():
    for channelwise in (False, True):
        plan = plan_kernel("3x0e+2x1o+2x2e", "2x0e+2x1o+1x2e", partial(selection_rule, lmax=3))
        engine = FusedTensorProduct(plan, channelwise)
        permutation = engine.weight_permutation.sort().values
        assert torch.equal(permutation, torch.arange(engine.num_weights))
        for o, order in enumerate(engine.mix_permutation):
            assert torch.equal(order.sort().values, torch.arange(engine.mid_channels[o]))


def test_engine_validation():
    plan = plan_kernel("2x0e", "1x0e+1x1o")
    engine = FusedTensorProduct(plan)
    assert engine.part_widths == [1, 3]
    with pytest.raises(ValueError, match="weights"):
        engine(torch.randn(4, 3), torch.randn(4, engine.num_sh), torch.randn(4, 1, 2))
    with pytest.raises(ValueError, match="source features"):
        engine(torch.randn(4, 4), torch.randn(4, engine.num_sh), torch.randn(4, 3, 2))
    radial = partial(CosineBasisModel, max_radius=RADIUS, number_of_basis=5, h=4, L=1)
    for mode in MODES:  # no edges
        empty = Kernel("2x0e+1x1o", "1x0e+1x2e", radial, mode=mode).apply(
            torch.zeros(0, 3), torch.zeros(0, 5)
        )
        assert empty.shape == (0, 6)
    with pytest.raises(ValueError, match="engine"):
        Kernel("2x0e", "1x0e", radial, engine="fast")
    with pytest.raises(ValueError, match="compile_rows"):
        FusedTensorProduct(plan, compile_rows=0)
    kernel = Kernel("2x0e", "1x0e", radial, engine="compiled")  # compiles on first use only
    assert kernel.fused.compile_rows == kernel.chunk_size == 1024
    kernel.chunk_size = 64
    assert kernel.fused.compile_rows == 64
    kernel.engine = "fused"
    assert kernel.fused.compile_rows is None and kernel.engine_impl.name == "fused"
    with pytest.raises(ValueError, match="chunk_size"):
        kernel.chunk_size = 0
    with pytest.raises(ValueError, match="mode"):
        Kernel("2x0e", "1x0e", radial, mode="depthwise")
    with pytest.raises(ValueError, match="channel-wise"):
        FusedTensorProduct(plan, channelwise=True).assemble([torch.zeros(3, 2), torch.zeros(3, 6)])

"""Engines as objects, the native channel-wise kernels and the trilinear autograd: every
engine equals the reference path (values and gradients of the first three orders)."""

import os
import subprocess
import sys
from functools import partial

import pytest
import torch

from e3nn_pyg.conv import Convolution
from e3nn_pyg.graph import radius_graph
from e3nn_pyg.kernel import Kernel
from e3nn_pyg.radial import CosineBasisModel
from e3nn_pyg.tensor_product import native
from e3nn_pyg.tensor_product.engines import ENGINES, make_engine
from e3nn_pyg.tensor_product.fused import pair_edges
from e3nn_pyg.tensor_product.paths import selection_rule

RADIUS = 2.5
CASES = [  # Rs_in, Rs_out, largest filter order
    ("2x0e", "4x0e+4x1o+4x2e", None),
    ("3x0e+2x1o+2x2e", "2x0e+3x0e+2x1o+1x2e+1x1e", 3),  # two blocks of the same irrep
    ("2x0+2x1", "1x0+2x1+1x2", None),  # no parity: filters of both parities in one pair
    ("1x0e+1x3o", "1x0e+0x1o+1x3o+1x4e", 4),  # orders 3 and 4, a block of multiplicity 0
]
needs_native = pytest.mark.skipif(not native.available(), reason="no C compiler")
ENGINE_NAMES = ["reference", "fused", pytest.param("native", marks=needs_native)]


def make_kernel(rs_in, rs_out, lmax, mode="channelwise", engine="auto"):
    radial = partial(CosineBasisModel, max_radius=RADIUS, number_of_basis=5, h=12, L=2)
    rule = partial(selection_rule, lmax=lmax)
    return Kernel(rs_in, rs_out, radial, selection_rule=rule, mode=mode, engine=engine)


def max_relative(a, b):
    assert a.shape == b.shape
    if a.numel() == 0:
        return 0.0
    return ((a - b).abs().max() / a.abs().max().clamp(min=1e-300)).item()


def graph(num_nodes=24, seed=0):
    """Positions and a radius graph with one unpaired edge and a self-loop."""
    torch.manual_seed(seed)
    pos = 2 * torch.randn(num_nodes, 3)
    edge_index = radius_graph(pos, RADIUS)
    edge_index = edge_index[:, torch.arange(edge_index.shape[1]) != 3]  # one edge unpaired
    return pos, torch.cat([edge_index, torch.tensor([[5], [5]])], dim=1)  # a self-loop


def derivatives(kernel, x, pos, edge_index, pairing):
    """Output and its derivatives of orders 1 to 3 (to x, pos and every parameter)."""
    x, pos = x.detach().requires_grad_(), pos.detach().requires_grad_()
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    out = kernel.convolve(x, edge_index, edge_vec, x.shape[0], pairing)
    inputs = [x, pos, *kernel.parameters()]
    grad = partial(torch.autograd.grad, inputs=inputs, materialize_grads=True)  # 0x1o: unused
    first = grad(out.pow(2).sum(), create_graph=True)
    # force training: d/d(params, x, pos) of |dE/dpos|^2 + a term through dE/dx
    loss = first[1].pow(2).sum() + first[0].pow(3).sum()
    second = grad(loss, create_graph=True)
    third = grad(sum(g.pow(2).sum() for g in second))
    return [out, *first, *second, *third]


@needs_native
@pytest.mark.parametrize("mode", ["channelwise", "full"])
@pytest.mark.parametrize(("rs_in", "rs_out", "lmax"), CASES)
def test_native_matches_reference_to_third_order(float64, rs_in, rs_out, lmax, mode):
    kernel = make_kernel(rs_in, rs_out, lmax, mode=mode)
    assert kernel.engine_impl.name == "native"
    pos, edge_index = graph()
    x = torch.randn(pos.shape[0], kernel.Rs_in.dim)
    pairing = pair_edges(edge_index, pos[edge_index[0]] - pos[edge_index[1]])
    assert 0 < pairing.num_paired < edge_index.shape[1] // 2
    kernel.engine = "reference"
    expected = derivatives(kernel, x, pos, edge_index, None)
    kernel.engine = "native"
    for rows in (None, pairing):
        got = derivatives(kernel, x, pos, edge_index, rows)
        assert len(got) == len(expected)
        for a, b in zip(expected, got, strict=True):
            assert max_relative(a, b) < 1e-12


@needs_native
@pytest.mark.parametrize(("rs_in", "rs_out", "lmax"), CASES)
def test_force_training_double_backward_in_one_pass(float64, rs_in, rs_out, lmax):
    """The channel-wise double backward's one-pass operator equals the reference's."""
    kernel = make_kernel(rs_in, rs_out, lmax)
    pos, edge_index = graph()
    x = torch.randn(pos.shape[0], kernel.Rs_in.dim)

    def second_order():
        x_, pos_ = x.clone().requires_grad_(), pos.clone().requires_grad_()
        edge_vec = pos_[edge_index[0]] - pos_[edge_index[1]]
        out = kernel.convolve(x_, edge_index, edge_vec, x.shape[0])
        inputs = [x_, pos_, *kernel.parameters()]
        first = torch.autograd.grad(out.pow(2).sum(), [x_, pos_], create_graph=True)
        loss = first[1].pow(2).sum() + first[0].pow(3).sum() + out.sum()
        return torch.autograd.grad(loss, inputs, materialize_grads=True)  # not recorded

    kernel.engine = "reference"
    expected = second_order()
    kernel.engine = "native"
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        got = second_order()
    calls = {event.key: event.count for event in profile.key_averages()}
    assert calls.get("e3nn_pyg::native_conv_double_backward", 0) >= 1
    layout = kernel.engine_impl.kernels.layout
    library = native.ops.kernels(layout.table, layout.ijk, layout.coefficients, x.dtype)[0]
    assert hasattr(library, "cw_double_backward_f64")  # the one-pass C loop, not composed
    for a, b in zip(expected, got, strict=True):
        assert max_relative(a, b) < 1e-12


@pytest.mark.parametrize("mode", ["channelwise", "full"])
@pytest.mark.parametrize("engine", ["fused", pytest.param("native", marks=needs_native)])
def test_gradients_pass_gradcheck_to_third_order(float64, engine, mode):
    torch.manual_seed(1)
    kernel = make_kernel("2x0e+1x1o", "1x0e+1x1o+1x2e", None, mode=mode, engine=engine)
    pos = 1.5 * torch.randn(5, 3)
    edge_index = radius_graph(pos, 10.0)
    pairing = pair_edges(edge_index)

    def convolve(x, pos):
        edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
        return kernel.convolve(x, edge_index, edge_vec, 5, pairing)

    def force(x, pos):  # a gradient, so that gradgradcheck checks the third order
        energy = convolve(x, pos).pow(2).sum()
        return torch.autograd.grad(energy, pos, create_graph=True)[0]

    inputs = (torch.randn(5, 5, requires_grad=True), pos.requires_grad_())
    assert torch.autograd.gradcheck(convolve, inputs)
    assert torch.autograd.gradgradcheck(convolve, inputs)
    assert torch.autograd.gradgradcheck(force, inputs)


@needs_native
@pytest.mark.parametrize("mode", ["channelwise", "full"])
def test_native_is_independent_of_the_thread_count(float64, mode):
    kernel = make_kernel("4x0e+2x1o+2x2e", "3x0e+2x1o+2x2e", None, mode=mode)
    pos, edge_index = graph(num_nodes=300, seed=2)  # enough rows for several threads
    x = torch.randn(300, kernel.Rs_in.dim, requires_grad=True)
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    pairing = pair_edges(edge_index, edge_vec)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            pos_ = pos.clone().requires_grad_()
            edge_vec = pos_[edge_index[0]] - pos_[edge_index[1]]
            out = kernel.convolve(x, edge_index, edge_vec, 300, pairing)
            first = torch.autograd.grad(out.pow(2).sum(), [x, pos_], create_graph=True)
            loss = sum(g.pow(2).sum() for g in first)  # force training's double backward
            results.append([out, *first, *torch.autograd.grad(loss, [x, *kernel.parameters()])])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert max_relative(a, b) < 1e-13


@needs_native
def test_auto_picks_the_native_engine_on_cpu():
    assert make_kernel("2x0e", "2x0e+1x1o", None).engine_impl.name == "native"
    assert make_kernel("2x0e", "2x0e+1x1o", None, mode="full").engine_impl.name == "native"
    kernel = make_kernel("2x0e", "2x0e+1x1o", None)
    kernel.engine = "reference"
    assert kernel.engine_impl.name == "reference" and kernel.engine == "reference"
    with pytest.raises(ValueError, match="engine must be one of"):
        make_engine("fast", kernel.fused)
    assert set(ENGINES) == {"auto", "reference", "fused", "compiled", "native"}


@needs_native
def test_native_engine_falls_back_on_tensors_it_does_not_take():
    kernel = make_kernel("2x0e+1x1o", "2x0e+1x1o", None)
    assert not kernel.engine_impl.kernels.supports(torch.zeros(2, dtype=torch.bfloat16))
    assert not kernel.engine_impl.kernels.supports(torch.zeros(2, device="meta"))
    assert kernel.engine_impl.kernels.supports(torch.zeros(2), torch.zeros(2).double())


def test_kernels_reject_wrapped_index_tensors():
    from torch_geometric import EdgeIndex

    kernel = make_kernel("2x0e", "2x0e", None)
    pos, edge_index = graph(num_nodes=6)
    wrapped = EdgeIndex(edge_index, sparse_size=(6, 6))
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    with pytest.raises(TypeError, match="plain tensor, got EdgeIndex"):
        kernel.convolve(torch.randn(6, 2), wrapped, edge_vec, 6)


def test_without_a_compiler_auto_uses_the_fused_engine(tmp_path):
    """Nothing is built at construction; the first convolution finds no compiler and runs
    the fused engine (equal values); asking for the native engine is refused."""
    code = """
from functools import partial
import pytest, torch
from e3nn_pyg.kernel import Kernel
from e3nn_pyg.radial import CosineBasisModel
from e3nn_pyg.tensor_product import native
from e3nn_pyg.tensor_product.native import build
radial = partial(CosineBasisModel, max_radius=2.0, number_of_basis=3, h=8, L=1)
kernels = [Kernel('2x0e', '2x0e+1x1o', radial, mode=mode) for mode in ('channelwise', 'full')]
assert not build._generic  # lazy: nothing built yet
x, edge_vec = torch.randn(3, 2), torch.randn(4, 3)
edge_index = torch.tensor([[0, 1, 2, 0], [1, 0, 0, 2]])
for kernel in kernels:
    out = kernel.convolve(x, edge_index, edge_vec, 3)
    kernel.engine = 'fused'
    assert torch.equal(kernel.convolve(x, edge_index, edge_vec, 3), out)
assert not native.available() and 'no-such-compiler' in native.build_error()
with pytest.raises(RuntimeError, match='not available'):
    Kernel('2x0e', '2x0e+1x1o', radial, mode='channelwise', engine='native')
"""
    env = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), "E3NN_PYG_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("mode", ["full", "channelwise"])
def test_every_engine_takes_blocks_of_multiplicity_zero(float64, engine, mode):
    radial = partial(CosineBasisModel, max_radius=RADIUS, number_of_basis=3, h=8, L=1)
    kernel = partial(Kernel, RadialModel=radial, mode=mode, engine=engine)
    conv = Convolution(kernel, "2x0e+1x1o", "4x0e + 0x1o + 2x1o + 0x2e")
    x, pos = torch.randn(10, 5), torch.randn(10, 3)
    out = conv(x, pos)
    conv.kernel.engine = "reference"
    assert out.shape == (10, 10) and max_relative(conv(x, pos), out) < 1e-12


@pytest.mark.parametrize("mode", ["channelwise", "full"])
def test_kernels_copy_and_pickle_after_use(mode):
    import copy
    import io

    kernel = make_kernel("2x0e+1x1o", "2x0e+1x1o", None, mode=mode)
    pos, edge_index = graph(num_nodes=8)
    x, edge_vec = torch.randn(8, 5), pos[edge_index[0]] - pos[edge_index[1]]
    out = kernel.convolve(x, edge_index, edge_vec, 8)  # builds and loads the native kernels
    buffer = io.BytesIO()
    torch.save(kernel, buffer)
    buffer.seek(0)
    for other in (copy.deepcopy(kernel), torch.load(buffer, weights_only=False)):
        assert torch.equal(other.convolve(x, edge_index, edge_vec, 8), out)


@needs_native
def test_convolve_rejects_what_would_write_out_of_bounds():
    """Kernel.convolve checks what the engines index (the engines do not check again)."""
    kernel = make_kernel("2x0e+1x1o", "2x0e+1x1o", None, engine="native")
    pos, edge_index = graph(num_nodes=8)
    x, edge_vec = torch.randn(8, 5), pos[edge_index[0]] - pos[edge_index[1]]
    top = int(edge_index[1].max())
    with pytest.raises(IndexError, match=f"target node {top} out of range"):
        kernel.convolve(x, edge_index, edge_vec, top)  # fewer targets than the graph has
    outside = edge_index.clone()
    outside[0, 0] = 8
    with pytest.raises(IndexError, match="source node 8 out of range"):
        kernel.convolve(x, outside, edge_vec, 8)
    pairing = pair_edges(torch.tensor([[0, 9], [9, 0]]))  # rows of another graph
    with pytest.raises(IndexError, match="the pairing has a node out of range"):
        kernel.convolve(x, edge_index, edge_vec, 8, pairing=pairing)
    with pytest.raises(TypeError, match=r"node features \(torch\.float64 on cpu\) must match"):
        kernel.convolve(x.double(), edge_index, edge_vec, 8)  # features of another dtype

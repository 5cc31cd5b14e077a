"""The native convolution operators (torch.library): opcheck (schema, fake kernel,
autograd registration), every order of gradients against the reference engine, and the
operators in a fresh process built from the layout's tensors alone."""

import subprocess
import sys

import pytest
import torch
from test_engines import graph, make_kernel, max_relative

from e3nn_pyg.tensor_product import native
from e3nn_pyg.tensor_product.fused import pair_edges
from e3nn_pyg.tensor_product.native.layout import HEADER_SIZE

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler")


def operator_inputs(mode, dtype=torch.float64, seed=0):
    """The arguments of ``native_conv`` for a small kernel on a graph with pairs, a single
    edge and a self-loop."""
    kernel = make_kernel("2x0e+1x1o", "2x0e+1x1o+1x2e", None, mode=mode).to(dtype)
    kernels = kernel.engine_impl.kernels
    layout = kernels.layout
    pos, edge_index = graph(num_nodes=10, seed=seed)
    pos = pos.to(dtype)
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    pairing = pair_edges(edge_index, edge_vec)
    generator = torch.Generator().manual_seed(seed)
    rows = pairing.num_rows
    weights = torch.randn(rows, layout.weight_width, generator=generator, dtype=dtype)
    sh = torch.randn(rows, layout.sh_width, generator=generator, dtype=dtype)
    x = torch.randn(10, layout.x_width, generator=generator, dtype=dtype)
    args = (weights, sh, x, pairing.src, pairing.dst, torch.tensor(pairing.num_paired), 10,
            layout.out_width, layout.table, layout.ijk, layout.coefficients)  # fmt: skip
    return args, pairing


@pytest.mark.parametrize("mode", ["channelwise", "full"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_of_the_three_operators(mode, dtype):
    args, _ = operator_inputs(mode, dtype)
    weights, sh, x, src, dst, paired, num_dst, width, table, ijk, coefficients = args
    differentiable = [t.clone().requires_grad_() for t in (weights, sh, x)]
    torch.library.opcheck(torch.ops.e3nn_pyg.native_conv.default, (*differentiable, *args[3:]))
    grad = torch.randn(num_dst, width, dtype=dtype)
    backward_args = (weights, sh, x, grad, src, dst, paired, [True, False, True], table, ijk,
                     coefficients)  # fmt: skip
    torch.library.opcheck(torch.ops.e3nn_pyg.native_conv_backward.default, backward_args)
    cotangents = [torch.randn_like(t) for t in (weights, sh, x)]
    double_args = (weights, sh, x, grad, cotangents, src, dst, paired, [True, True, True, True],
                   table, ijk, coefficients)  # fmt: skip
    torch.library.opcheck(torch.ops.e3nn_pyg.native_conv_double_backward.default, double_args)


@pytest.mark.parametrize("mode", ["channelwise", "full"])
def test_operator_gradients_pass_gradcheck_to_third_order(mode):
    args, _ = operator_inputs(mode)
    weights, sh, x = (t[:, :] for t in args[:3])

    def conv(weights, sh, x):
        return torch.ops.e3nn_pyg.native_conv(weights, sh, x, *args[3:])

    inputs = tuple(t.clone().requires_grad_() for t in (weights, sh, x))
    assert torch.autograd.gradcheck(conv, inputs)
    assert torch.autograd.gradgradcheck(conv, inputs)

    def gradient(weights, sh, x):  # a gradient, so that gradgradcheck checks the third order
        value = conv(weights, sh, x).pow(2).sum()
        return torch.autograd.grad(value, (sh, x), create_graph=True)

    assert torch.autograd.gradgradcheck(gradient, inputs)


def test_the_double_backward_operator_equals_the_composed_one():
    """The one-pass C loop (channel-wise) against sums of forwards and backwards."""
    args, _ = operator_inputs("channelwise")
    weights, sh, x, src, dst, paired, num_dst, width, table, ijk, coefficients = args
    grad = torch.randn(num_dst, width, dtype=x.dtype)
    cotangents = [torch.randn_like(t) for t in (weights, sh, x)]
    call = (weights, sh, x, grad, cotangents, src, dst, paired, [True] * 4, table, ijk,
            coefficients)  # fmt: skip
    one_pass = torch.ops.e3nn_pyg.native_conv_double_backward(*call)
    composed = native.ops._composed_double(
        weights, sh, x, grad, cotangents, [True] * 4, (src, dst, paired, table, ijk, coefficients)
    )
    for a, b in zip(one_pass, composed, strict=True):
        assert max_relative(b, a) < 1e-12


def test_the_operator_rejects_inputs_that_do_not_fit_its_layout():
    args, _ = operator_inputs("channelwise")
    weights, sh, x = args[:3]
    with pytest.raises(ValueError, match=r"weights are torch.float64 \(\d+, \d+\)"):
        torch.ops.e3nn_pyg.native_conv(weights[:, 1:], sh, x, *args[3:])
    with pytest.raises(ValueError, match=r"harmonics are torch\.float32"):
        torch.ops.e3nn_pyg.native_conv(weights, sh.float(), x, *args[3:])


def test_the_operators_refuse_rows_out_of_range_and_forged_layouts():
    """The C loops index raw memory: the operators check what they are given."""
    args, _ = operator_inputs("channelwise")
    weights, sh, x, src, dst, paired, num_dst, width, table, ijk, coefficients = args
    conv = torch.ops.e3nn_pyg.native_conv
    outside = src.clone()
    outside[-1] = 10
    with pytest.raises(IndexError, match="source node 10 out of range"):
        conv(weights, sh, x, outside, dst, paired, num_dst, width, table, ijk, coefficients)
    top = int(src[: int(paired)].max())  # a paired row's source is also a target
    with pytest.raises(IndexError, match=f"target node.* {top} out of range"):
        conv(weights, sh, x, src, dst, paired, top, width, table, ijk, coefficients)
    with pytest.raises(ValueError, match="num_paired must count rows"):
        conv(weights, sh, x, src, dst, torch.tensor(src.shape[0] + 1), num_dst, width, table,
             ijk, coefficients)  # fmt: skip
    with pytest.raises(ValueError, match="src and dst must be int64"):
        conv(weights, sh, x, src.int(), dst, paired, num_dst, width, table, ijk, coefficients)
    with pytest.raises(ValueError, match="out_width"):
        conv(weights, sh, x, src, dst, paired, num_dst, width + 1, table, ijk, coefficients)
    forged = table.clone()
    forged[0] += 1  # another key: a layout the process has not built
    forged[HEADER_SIZE + 1] = 10_000  # the first path's input offset
    with pytest.raises(ValueError, match="path 0 of the layout is out of bounds"):
        conv(weights, sh, x, src, dst, paired, num_dst, width, forged, ijk, coefficients)
    with pytest.raises(ValueError, match="not the tensors of a NativeLayout"):
        conv(weights, sh, x, src, dst, paired, num_dst, width, forged[:-1], ijk, coefficients)


FRESH_PROCESS = """
import sys
import torch, e3nn_pyg
args, expected = torch.load(sys.argv[1])
assert hasattr(torch.ops.e3nn_pyg, 'native_conv')
out = torch.ops.e3nn_pyg.native_conv(*args)
assert torch.equal(out, expected), (out - expected).abs().max()
"""


def test_a_fresh_process_builds_the_kernels_from_the_layout_tensors(tmp_path):
    """``import e3nn_pyg`` registers the operators; the kernels of a layout it never
    planned are generated from the tensors (a fresh cache: nothing built before)."""
    args, _ = operator_inputs("full")
    torch.save((args, torch.ops.e3nn_pyg.native_conv(*args)), tmp_path / "call.pt")
    env = {"E3NN_PYG_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "call.pt")],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert any((tmp_path / "cache").glob("channelwise-plan-*.so"))

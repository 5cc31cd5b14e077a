import pickle

import pytest
import torch

import e3nn_pyg.non_linearities as nl
from e3nn_pyg.non_linearities import GatedBlock, GatedBlockParity, rescaled_act
from e3nn_pyg.o3 import Rs
from e3nn_pyg.testing import assert_equivariant

F64 = torch.float64


def _randn(*shape, dtype=F64, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# -- GatedBlock -------------------------------------------------------------------------
def test_tutorial_numbers():
    Rs_out = [(4, 0), (4, 1), (4, 2)]
    sp = rescaled_act.Softplus(beta=5)
    gate = nl.gated_block.GatedBlock(Rs_out, sp, rescaled_act.sigmoid)
    assert gate.Rs_in == [(4, 0), (4, 1), (4, 2), (8, 0)]
    assert isinstance(gate.Rs_in, Rs) and isinstance(gate.Rs_out, Rs)
    assert gate.Rs_out == Rs_out
    assert (gate.Rs_in.dim, gate.Rs_out.dim) == (44, 36)
    for lead in [(), (7,), (2, 3)]:
        assert gate(torch.randn(*lead, 44)).shape == (*lead, 36)


def test_gated_block_values():
    # Rs_out = 1x0 + 2x1 + 1x0: input [s, v1(3), v2(3), t, g1, g2]
    gate = GatedBlock([(1, 0), (2, 1), (1, 0)], torch.tanh, torch.sigmoid)
    assert gate.Rs_in == [(1, 0), (2, 1), (1, 0), (2, 0)]
    x = _randn(5, 10)
    s, v1, v2, t, g1, g2 = x[:, :1], x[:, 1:4], x[:, 4:7], x[:, 7:8], x[:, 8:9], x[:, 9:10]
    expected = torch.cat(
        [torch.tanh(s), torch.sigmoid(g1) * v1, torch.sigmoid(g2) * v2, torch.tanh(t)], dim=-1
    )
    torch.testing.assert_close(gate(x), expected, rtol=0, atol=0)


def test_gated_block_identity_scalars_and_only_scalars():
    gate = GatedBlock("3x0", None, rescaled_act.sigmoid)
    assert gate.Rs_in == "3x0"
    x = _randn(4, 3)
    torch.testing.assert_close(gate(x), x)
    empty = GatedBlock([], None, rescaled_act.sigmoid)
    assert empty(_randn(4, 0)).shape == (4, 0)


def test_gated_block_equivariance_rotation():
    gate = GatedBlock(
        [(4, 0), (4, 1), (4, 2), (1, 3)], rescaled_act.Softplus(5), rescaled_act.sigmoid
    )
    errors = assert_equivariant(gate, [_randn(6, gate.Rs_in.dim)], [gate.Rs_in], [gate.Rs_out])
    assert "parity" not in errors  # p = 0: parity is not defined


def test_gated_block_equivariance_parity():
    Rs_out = "2x0e + 2x1o + 1x0o + 2x2e + 1x1e"
    gate = GatedBlock(Rs_out, rescaled_act.tanh, rescaled_act.sigmoid)
    assert gate.Rs_in == Rs_out + Rs("5x0e")
    errors = assert_equivariant(gate, [_randn(6, gate.Rs_in.dim)], [gate.Rs_in], [gate.Rs_out])
    assert max(errors.values()) <= 1e-9 and "parity" in errors


def test_gated_block_gate_parity_follows_irreps():
    gate = GatedBlock("1x1 + 2x1o + 1x2e", None, rescaled_act.sigmoid)
    assert gate.Rs_in == "1x1 + 2x1o + 1x2e + 1x0 + 3x0e"


def test_equivariance_checker_catches_a_wrong_rs():
    gate = GatedBlock("2x0e + 2x1o", rescaled_act.relu, rescaled_act.sigmoid)
    x = _randn(6, gate.Rs_in.dim)
    with pytest.raises(AssertionError, match="parity"):
        assert_equivariant(gate, [x], [gate.Rs_in], ["2x0e + 2x1e"])


def test_gated_block_float32():
    gate = GatedBlock("4x0e + 4x1o + 2x2e", rescaled_act.tanh, rescaled_act.sigmoid)
    x = torch.randn(8, gate.Rs_in.dim)
    assert gate(x).dtype == torch.float32
    assert_equivariant(gate, [x], [gate.Rs_in], [gate.Rs_out])


def test_gated_block_odd_scalars():
    with pytest.raises(ValueError, match="neither"):
        GatedBlock("2x0o + 1x1o", rescaled_act.sigmoid, rescaled_act.sigmoid)
    with pytest.raises(ValueError, match="GatedBlockParity"):
        GatedBlock("2x0o + 1x1o", rescaled_act.absolute, rescaled_act.sigmoid)
    # even and parity-free scalars accept any activation
    GatedBlock("2x0e + 2x0 + 1x1", rescaled_act.sigmoid, rescaled_act.sigmoid)


def test_gated_block_bad_arguments():
    with pytest.raises(TypeError, match="gate_activation"):
        GatedBlock("1x1", None, None)
    with pytest.raises(TypeError, match="scalar_activation"):
        GatedBlock("1x0 + 1x1", "relu", rescaled_act.sigmoid)
    with pytest.raises(ValueError, match="Rs"):
        GatedBlock([(1, -1)], None, rescaled_act.sigmoid)


def test_bad_input():
    gate = GatedBlock([(4, 0), (4, 1), (4, 2)], rescaled_act.relu, rescaled_act.sigmoid)
    with pytest.raises(
        ValueError,
        match=r"input has shape \[3, 36\], expected \[\.\.\., 44\] for Rs_in 4x0\+4x1\+4x2\+8x0",
    ):
        gate(torch.randn(3, 36))
    with pytest.raises(TypeError, match="floating"):
        gate(torch.ones(3, 44, dtype=torch.long))
    with pytest.raises(TypeError, match="Tensor"):
        gate([0.0] * 44)


def test_gated_block_module_behaviour():
    gate = GatedBlock("2x0 + 1x1", rescaled_act.Softplus(beta=5), torch.sigmoid)
    assert repr(gate) == (
        "GatedBlock(Rs_out='2x0+1x1', scalar_activation=Softplus(beta=5.0), "
        "gate_activation=sigmoid)"
    )
    x = _randn(3, 6, dtype=torch.float32)
    restored = pickle.loads(pickle.dumps(gate))
    torch.testing.assert_close(restored(x), gate(x), rtol=0, atol=0)
    prelu = torch.nn.PReLU(init=0.3)
    learnable = GatedBlock("2x0 + 1x1", prelu, torch.sigmoid)
    assert list(learnable.parameters()) == [prelu.weight]
    with torch.no_grad():
        prelu.weight.fill_(0.9)
    learnable.reset_parameters()
    assert prelu.weight.item() == pytest.approx(0.3)  # PReLU resets to its init


def test_gradients_flow():
    gate = GatedBlock("2x0 + 2x1", rescaled_act.relu, rescaled_act.sigmoid)
    x = _randn(3, gate.Rs_in.dim).requires_grad_()
    (grad,) = torch.autograd.grad(gate(x).pow(2).sum(), x)
    assert torch.isfinite(grad).all() and grad[:, 8:].abs().sum() > 0  # gates get gradients


# -- GatedBlockParity --------------------------------------------------------------------
def test_parity_layout_and_values():
    gate = GatedBlockParity("2x0e", torch.relu, "1x0e + 1x0o", [torch.sigmoid, torch.tanh], "2x1o")
    assert gate.Rs_in == "2x0e + 1x0e + 1x0o + 2x1o"
    assert gate.Rs_out == "2x0e + 1x1o + 1x1e"  # tanh(odd gate) * 1o = 1e
    x = _randn(5, 10)
    s, g1, g2, v1, v2 = x[:, :2], x[:, 2:3], x[:, 3:4], x[:, 4:7], x[:, 7:10]
    expected = torch.cat([torch.relu(s), torch.sigmoid(g1) * v1, torch.tanh(g2) * v2], -1)
    torch.testing.assert_close(gate(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("p", "act", "p_out"),
    [
        (1, rescaled_act.sigmoid, 1),
        (1, rescaled_act.tanh, 1),
        (0, rescaled_act.relu, 0),
        (-1, rescaled_act.tanh, -1),
        (-1, rescaled_act.absolute, 1),
        (-1, None, -1),
        (-1, torch.sin, -1),
        (-1, torch.cos, 1),
    ],
)
def test_scalar_parity_rules(p, act, p_out):
    gate = GatedBlockParity([(3, 0, p)], act, [], rescaled_act.sigmoid, [])
    assert gate.Rs_out == [(3, 0, p_out)]


@pytest.mark.parametrize("act", [rescaled_act.sigmoid, rescaled_act.relu, rescaled_act.softplus])
def test_odd_scalar_needs_odd_or_even_activation(act):
    with pytest.raises(ValueError, match="odd or an even activation"):
        GatedBlockParity("1x0o", act, [], rescaled_act.sigmoid, [])
    with pytest.raises(ValueError, match="odd or an even activation"):
        GatedBlockParity([], None, "1x0o", act, "1x1o")


@pytest.mark.parametrize(
    ("gates", "act", "nonscalars", "out"),
    [
        ("1x0e", rescaled_act.sigmoid, "1x1o", "1x1o"),
        ("1x0o", rescaled_act.tanh, "1x1o", "1x1e"),
        ("1x0o", rescaled_act.absolute, "1x2o", "1x2o"),
        ("1x0o", rescaled_act.tanh, "1x2e", "1x2o"),
        ("1x0", rescaled_act.sigmoid, "1x3", "1x3"),
        ("1x0e + 1x0o + 1x0e", rescaled_act.tanh, "3x1o", "1x1o + 1x1e + 1x1o"),
        ("1x0o + 1x0o + 1x0e", rescaled_act.tanh, "3x1o", "2x1e + 1x1o"),
    ],
)
def test_gated_parity_rules(gates, act, nonscalars, out):
    gate = GatedBlockParity([], None, gates, act, nonscalars)
    assert gate.Rs_out == out


def test_gate_and_irrep_must_agree_on_having_parity():
    with pytest.raises(ValueError, match="both have a parity"):
        GatedBlockParity([], None, "1x0", rescaled_act.sigmoid, "1x1o")
    with pytest.raises(ValueError, match="both have a parity"):
        GatedBlockParity([], None, "1x0e", rescaled_act.sigmoid, "1x1")


def test_parity_block_argument_errors():
    with pytest.raises(ValueError, match=r"3 gates but .* 2 irreps"):
        GatedBlockParity([], None, "3x0e", rescaled_act.sigmoid, "2x1o")
    with pytest.raises(ValueError, match=r"Rs_scalars.*scalars only"):
        GatedBlockParity("1x1o", None, [], rescaled_act.sigmoid, [])
    with pytest.raises(ValueError, match=r"Rs_gates.*scalars only"):
        GatedBlockParity([], None, "1x1o", rescaled_act.sigmoid, "1x1o")
    with pytest.raises(ValueError, match="2 activations for the 1 entries"):
        GatedBlockParity("1x0e", [torch.relu, torch.relu], [], rescaled_act.sigmoid, [])
    with pytest.raises(TypeError, match="act_gates cannot be None"):
        GatedBlockParity([], None, "1x0e", None, "1x1o")
    with pytest.raises(TypeError, match=r"act_scalars\[1\]"):
        GatedBlockParity("1x0e + 1x0e", [None, 3], [], rescaled_act.sigmoid, [])


def test_parity_block_equivariance():
    gate = GatedBlockParity(
        "4x0e + 3x0o",
        [rescaled_act.silu, rescaled_act.tanh],
        "2x0e + 3x0o + 1x0e",
        [rescaled_act.sigmoid, rescaled_act.tanh, rescaled_act.absolute],
        "2x1o + 1x1e + 1x2e + 1x2o + 1x3o",
    )
    assert gate.Rs_out == "4x0e + 3x0o + 2x1o + 1x1o + 1x2o + 1x2e + 1x3o"
    errors = assert_equivariant(gate, [_randn(2, 3, gate.Rs_in.dim)], [gate.Rs_in], [gate.Rs_out])
    assert "parity" in errors


def test_parity_block_equivariance_float32():
    gate = GatedBlockParity("4x0e", rescaled_act.relu, "2x0o", rescaled_act.tanh, "1x1o + 1x2e")
    assert_equivariant(gate, [torch.randn(8, gate.Rs_in.dim)], [gate.Rs_in], [gate.Rs_out])


def test_parity_block_repr_and_bad_input():
    gate = GatedBlockParity("1x0e", torch.relu, "1x0e", rescaled_act.sigmoid, "1x1o")
    assert repr(gate) == (
        "GatedBlockParity(Rs_scalars='1x0e', act_scalars=[relu], Rs_gates='1x0e', "
        "act_gates=[Sigmoid()], Rs_nonscalars='1x1o')"
    )
    with pytest.raises(
        ValueError, match=r"\[2, 4\], expected \[\.\.\., 5\] for Rs_in 1x0e\+1x0e\+1x1o"
    ):
        gate(torch.randn(2, 4))


def test_parity_rules_match_e3nn():
    """e3nn 0.6's Gate works out the same output representation."""
    e3nn = pytest.importorskip("e3nn")
    from e3nn.nn import Gate

    gate = GatedBlockParity(
        "2x0e + 3x0o", [rescaled_act.silu, rescaled_act.absolute],
        "1x0e + 2x0o", [rescaled_act.sigmoid, rescaled_act.tanh],
        "1x1o + 2x2e",
    )  # fmt: skip
    reference = Gate(
        "2x0e + 3x0o", [torch.nn.functional.silu, torch.abs],
        "1x0e + 2x0o", [torch.sigmoid, torch.tanh],
        "1x1o + 2x2e",
    )  # fmt: skip
    assert str(gate.Rs_out.simplify()) == str(e3nn.o3.Irreps(reference.irreps_out).simplify())

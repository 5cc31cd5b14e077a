import pickle

import pytest
import torch

import e3nn_pyg.non_linearities as nl
from e3nn_pyg.non_linearities import NormActivation, rescaled_act
from e3nn_pyg.o3 import Rs
from e3nn_pyg.testing import assert_equivariant

F64 = torch.float64


def _randn(*shape, dtype=F64, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def test_tutorial_numbers():
    Rs_out = [(4, 0), (4, 1), (4, 2)]
    dimensionalities = [2 * L + 1 for mult, L in Rs_out for _ in range(mult)]
    act = nl.norm_activation.NormActivation(
        dimensionalities, rescaled_act.sigmoid, rescaled_act.sigmoid
    )
    assert act.Rs_in == Rs_out and act.Rs_out == Rs_out and isinstance(act.Rs_in, Rs)
    assert act.bias.shape == (8,)
    for lead in [(), (5,), (2, 3)]:
        assert act(torch.randn(*lead, 36)).shape == (*lead, 36)


def test_accepts_rs():
    act = NormActivation("2x0e + 1x1o", rescaled_act.sigmoid)
    assert act.Rs_in == "2x0e + 1x1o" and act.bias.shape == (1,)
    assert NormActivation([(1, 1), (2, 0)], rescaled_act.relu).Rs_in == [(1, 1), (2, 0)]


def test_values():
    # Rs = 1x0 + 2x1: s' = sigma_s(s), v' = sigma_t(|v|_eps - b) v / |v|_eps
    eps = 1e-3
    act = NormActivation([1, 3, 3], torch.sigmoid, torch.tanh, eps=eps).double()
    x = _randn(4, 7)
    s, v1, v2 = x[:, :1], x[:, 1:4], x[:, 4:7]
    b1, b2 = act.bias.tolist()
    n1 = (v1.pow(2).sum(-1, keepdim=True) + eps**2).sqrt()
    n2 = (v2.pow(2).sum(-1, keepdim=True) + eps**2).sqrt()
    expected = torch.cat(
        [torch.tanh(s), torch.sigmoid(n1 - b1) * v1 / n1, torch.sigmoid(n2 - b2) * v2 / n2], -1
    )
    torch.testing.assert_close(act(x), expected, rtol=1e-14, atol=1e-14)
    # scalars keep their sign: sigma_s is applied to s, not to |s|
    assert (act(x)[:, 0] * x[:, 0] > 0).all()


def test_new_norm_is_activated_norm():
    act = NormActivation("3x2", rescaled_act.softplus).double()
    x = _randn(10, 15)
    norms = x.unflatten(-1, (3, 5)).norm(dim=-1)  # [10, 3]
    new_norms = act(x).unflatten(-1, (3, 5)).norm(dim=-1)  # [10, 3]
    torch.testing.assert_close(
        new_norms, rescaled_act.softplus(norms - act.bias), atol=1e-10, rtol=0
    )


def test_equivariance_rotation():
    act = NormActivation([1, 1, 3, 3, 5, 7], rescaled_act.sigmoid, rescaled_act.sigmoid).double()
    assert_equivariant(act, [_randn(6, act.Rs_in.dim)], [act.Rs_in], [act.Rs_out])


def test_equivariance_parity():
    act = NormActivation("2x0e + 1x0o + 2x1o + 1x2e + 1x3o + 1x1e", rescaled_act.relu, torch.tanh)
    act = act.double()
    errors = assert_equivariant(act, [_randn(2, 4, act.Rs_in.dim)], [act.Rs_in], [act.Rs_out])
    assert "parity" in errors


def test_equivariance_float32():
    act = NormActivation("2x0e + 3x1o + 2x2e", rescaled_act.sigmoid, rescaled_act.tanh)
    x = torch.randn(8, act.Rs_in.dim)
    assert act(x).dtype == torch.float32
    assert_equivariant(act, [x], [act.Rs_in], [act.Rs_out])


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_finite_at_zero(dtype):
    act = NormActivation("2x0 + 2x1 + 1x2", rescaled_act.sigmoid, rescaled_act.sigmoid).to(dtype)
    for scale in [0.0, 1e-30, 1e-8]:
        x = (scale * _randn(3, act.Rs_in.dim, dtype=dtype)).requires_grad_()
        out = act(x)
        grad_x, grad_b = torch.autograd.grad(out.sum(), [x, act.bias])
        assert torch.isfinite(out).all()
        assert torch.isfinite(grad_x).all() and torch.isfinite(grad_b).all()
    # at v = 0 the output is 0 and its Jacobian is sigma_t(eps - b) / eps per copy
    zero = torch.zeros(3, dtype=F64)
    act = NormActivation([3], rescaled_act.sigmoid, eps=1e-2).double()
    jacobian = torch.autograd.functional.jacobian(act, zero)
    factor = rescaled_act.sigmoid(1e-2 - act.bias).item() / 1e-2
    torch.testing.assert_close(act(zero), zero)
    torch.testing.assert_close(jacobian, factor * torch.eye(3, dtype=F64))


def test_bias_initialisation():
    act = NormActivation([3] * 2000, rescaled_act.sigmoid, bias_min=-1.0, bias_max=0.25)
    bias = act.bias.detach()
    assert bias.shape == (2000,)
    assert bias.min() >= -1.0 and bias.max() <= 0.25
    assert bias.min() < -0.95 and bias.max() > 0.2  # spread over the whole interval
    assert abs(bias.mean().item() - (-0.375)) < 0.05
    default = NormActivation([3] * 200, rescaled_act.sigmoid).bias.detach()
    assert default.min() >= 0.5 and default.max() <= 2.0
    before = act.bias.detach().clone()
    act.reset_parameters()
    assert not torch.equal(before, act.bias.detach())
    assert act.bias.min() >= -1.0 and act.bias.max() <= 0.25
    fixed = NormActivation([3, 5], rescaled_act.sigmoid, bias_min=0.7, bias_max=0.7)
    assert fixed.bias.tolist() == pytest.approx([0.7, 0.7])


def test_odd_scalars_need_odd_scalar_act():
    NormActivation("1x0o + 1x1o", rescaled_act.sigmoid, rescaled_act.tanh)
    NormActivation("1x0o + 1x1o", rescaled_act.sigmoid, None)
    with pytest.raises(ValueError, match="neither"):
        NormActivation("1x0o + 1x1o", rescaled_act.sigmoid, rescaled_act.sigmoid)
    with pytest.raises(ValueError, match="odd scalar_act"):
        NormActivation("1x0o + 1x1o", rescaled_act.sigmoid, rescaled_act.absolute)
    # even scalars accept any activation, and a non-odd tensor_act is fine for 1o
    NormActivation("1x0e + 1x1o", rescaled_act.sigmoid, rescaled_act.sigmoid)


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd positive ints"):
        NormActivation([1, 2, 3], rescaled_act.sigmoid)
    with pytest.raises(ValueError, match="odd positive ints"):
        NormActivation([3, 0], rescaled_act.sigmoid)
    with pytest.raises(ValueError, match="eps"):
        NormActivation([3], rescaled_act.sigmoid, eps=0.0)
    with pytest.raises(ValueError, match="bias_min <= bias_max"):
        NormActivation([3], rescaled_act.sigmoid, bias_min=2.0, bias_max=1.0)
    with pytest.raises(TypeError, match="tensor_act"):
        NormActivation([3], None)
    with pytest.raises(TypeError, match="scalar_act"):
        NormActivation([1], rescaled_act.sigmoid, scalar_act=1.0)


def test_bad_input():
    act = NormActivation([1, 1, 3, 5], rescaled_act.sigmoid, rescaled_act.sigmoid)
    with pytest.raises(
        ValueError,
        match=r"NormActivation input has shape \[4, 9\], expected \[\.\.\., 10\] for Rs_in 2x0\+",
    ):
        act(torch.randn(4, 9))
    with pytest.raises(ValueError, match=r"has shape \[\], expected \[\.\.\., 10\]"):
        act(torch.tensor(1.0))
    with pytest.raises(TypeError, match="floating"):
        act(torch.ones(4, 10, dtype=torch.int32))


def test_module_behaviour():
    act = NormActivation([1, 3, 3], rescaled_act.sigmoid, torch.tanh)
    assert repr(act) == (
        "NormActivation(Rs='1x0+2x1', tensor_act=Sigmoid(), scalar_act=tanh, eps=1e-06, "
        "bias_min=0.5, bias_max=2.0)"
    )
    assert [name for name, _ in act.named_parameters()] == ["bias"]
    assert list(act.state_dict()) == ["bias"]
    x = torch.randn(2, 7)
    restored = pickle.loads(pickle.dumps(act))
    torch.testing.assert_close(restored(x), act(x), rtol=0, atol=0)


def test_an_eps_too_small_for_the_dtype_is_refused_and_zero_vectors_stay_finite():
    tiny = NormActivation("2x1o", rescaled_act.sigmoid, eps=1e-30)  # 1e-60 underflows in float32
    with pytest.raises(ValueError, match=r"too small for torch\.float32"):
        tiny(torch.zeros(1, 6))
    x = torch.zeros(1, 6, dtype=F64, requires_grad=True)  # float64 holds 1e-60
    out = tiny(x)
    (gradient,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(out).all() and torch.isfinite(gradient).all()

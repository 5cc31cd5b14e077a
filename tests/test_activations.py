import math
import pickle

import pytest
import torch
from scipy.integrate import quad
from scipy.special import expit

from e3nn_pyg.activations import second_moment
from e3nn_pyg.non_linearities import rescaled_act


def _softplus(x: float, beta: float) -> float:
    return (max(beta * x, 0.0) + math.log1p(math.exp(-abs(beta * x)))) / beta


# (activation, the same function written independently with the math module)
CASES = {
    "sigmoid": (rescaled_act.sigmoid, expit),
    "tanh": (rescaled_act.tanh, math.tanh),
    "relu": (rescaled_act.relu, lambda x: max(x, 0.0)),
    "silu": (rescaled_act.silu, lambda x: x * expit(x)),
    "softplus": (rescaled_act.softplus, lambda x: _softplus(x, 1.0)),
    "Softplus(5)": (rescaled_act.Softplus(beta=5), lambda x: _softplus(x, 5.0)),
    "Softplus(100)": (rescaled_act.Softplus(beta=100), lambda x: _softplus(x, 100.0)),
    "ShiftedSoftplus(1)": (
        rescaled_act.ShiftedSoftplus(),
        lambda x: _softplus(x, 1.0) - math.log(2.0),
    ),
    "ShiftedSoftplus(2.5)": (
        rescaled_act.ShiftedSoftplus(beta=2.5),
        lambda x: _softplus(x, 2.5) - math.log(2.0) / 2.5,
    ),
    "absolute": (rescaled_act.absolute, abs),
}


def _gaussian_moment(f) -> float:
    """E[f(z)^2] by scipy's QUADPACK, split at the kink of relu / abs."""

    def integrand(x: float) -> float:
        return f(x) ** 2 * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    return sum(
        quad(integrand, a, b, epsabs=1e-14, epsrel=1e-13, limit=500)[0]
        for a, b in [(-math.inf, 0.0), (0.0, math.inf)]
    )


@pytest.mark.parametrize("name", CASES)
def test_unit_second_moment(name):
    act, reference = CASES[name]
    assert act.scale**2 * _gaussian_moment(reference) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_values_are_scaled_function(name):
    act, reference = CASES[name]
    x = torch.linspace(-6, 6, 97, dtype=torch.float64)
    expected = torch.tensor([act.scale * reference(v) for v in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(act(x), expected, rtol=1e-12, atol=1e-12)


def test_known_constants():
    assert rescaled_act.relu.scale == pytest.approx(math.sqrt(2), abs=1e-13)
    assert rescaled_act.absolute.scale == pytest.approx(1.0, abs=1e-13)
    # Softplus(beta=5): E[f^2] = 0.50702416392868 (scipy quad, 1e-14)
    assert rescaled_act.Softplus(beta=5).scale == pytest.approx(0.50702416392868**-0.5, abs=1e-10)


def test_softplus_beta_5_values():
    sp = rescaled_act.Softplus(beta=5)
    x = torch.tensor([-1.0, 0.0, 0.3, 2.0], dtype=torch.float64)
    expected = sp.scale * torch.log1p(torch.exp(5 * x)) / 5
    torch.testing.assert_close(sp(x), expected, rtol=1e-12, atol=1e-14)
    assert sp(torch.zeros((), dtype=torch.float64)).item() == pytest.approx(
        1.40438334763187 * math.log(2) / 5, rel=1e-12
    )


def test_second_moment_closed_forms():
    assert second_moment(lambda x: x) == pytest.approx(1.0, abs=1e-13)
    assert second_moment(lambda x: x**2) == pytest.approx(3.0, abs=1e-12)  # E[z^4]
    # a jump away from every panel edge: P(z > 0.3) = 0.3820885778110474
    assert second_moment(lambda x: (x > 0.3).double()) == pytest.approx(0.38208857781105, abs=1e-12)


def test_second_moment_is_deterministic():
    torch.manual_seed(1)
    first = second_moment(torch.sigmoid)
    torch.manual_seed(2)
    torch.rand(100)
    assert second_moment(torch.sigmoid) == first


def test_second_moment_errors():
    with pytest.raises(TypeError, match="callable"):
        second_moment(3.0)
    with pytest.raises(ValueError, match="same shape"):
        second_moment(lambda x: x.sum())
    with pytest.raises(ValueError, match="non-finite"):
        second_moment(lambda x: 1 / x.abs().clamp(max=0))
    with pytest.raises(ValueError, match="tol"):
        second_moment(torch.tanh, tol=0.0)


def test_aliases_and_instances():
    assert rescaled_act.swish is rescaled_act.silu
    assert isinstance(rescaled_act.sigmoid, torch.nn.Module)
    assert rescaled_act.Softplus().scale == rescaled_act.softplus.scale


def test_module_behaviour():
    sp = rescaled_act.Softplus(beta=5)
    assert repr(sp) == "Softplus(beta=5.0)"
    assert repr(rescaled_act.ShiftedSoftplus(2)) == "ShiftedSoftplus(beta=2.0)"
    assert repr(rescaled_act.sigmoid) == "Sigmoid()"
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), sp, rescaled_act.sigmoid)
    x = torch.randn(5, 3)
    restored = pickle.loads(pickle.dumps(net))
    torch.testing.assert_close(restored(x), net(x), rtol=0, atol=0)
    assert restored[1].beta == 5.0


def test_float32_and_gradients():
    x = torch.randn(4, 7, requires_grad=True)
    for act, _ in CASES.values():
        y = act(x)
        assert y.dtype == torch.float32 and y.shape == x.shape
        (grad,) = torch.autograd.grad(y.sum(), x)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("beta", [0, -1.0, math.inf, math.nan])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        rescaled_act.Softplus(beta=beta)
    with pytest.raises(ValueError, match="beta"):
        rescaled_act.ShiftedSoftplus(beta=beta)


def test_beta_type():
    with pytest.raises(TypeError, match="beta"):
        rescaled_act.Softplus(beta="5")

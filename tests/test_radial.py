import math
from functools import partial

import numpy as np
import pytest
import torch
from torch.func import functional_call

from e3nn_pyg.radial import (
    BesselBasis,
    BesselRadialModel,
    CosineBasis,
    CosineBasisModel,
    GaussianBasis,
    GaussianRadialModel,
    PolynomialCutoff,
    RadialMLP,
    polynomial_cutoff,
)

MODELS = [CosineBasisModel, GaussianRadialModel, BesselRadialModel]
BASES = [CosineBasis, GaussianBasis, BesselBasis]
MAX_RADIUS = 3.0


def _unit_softplus():
    """softplus(beta=5) scaled to E[f(z)^2] = 1 for z ~ N(0, 1) (Gauss-Hermite quadrature)."""
    z, w = np.polynomial.hermite_e.hermegauss(100)
    second_moment = float(np.sum(w * (np.logaddexp(0.0, 5.0 * z) / 5.0) ** 2) / np.sum(w))
    scale = second_moment**-0.5

    def act(x):
        return scale * torch.nn.functional.softplus(x, beta=5.0)

    return act


ACT = _unit_softplus()


def _model(cls, out_dim=5, number_of_basis=4, h=16, L=2, seed=0):
    torch.manual_seed(seed)
    return cls(out_dim, MAX_RADIUS, number_of_basis, h=h, L=L, act=ACT)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("num_edges", [0, 1, 7])
def test_shapes_and_attributes(cls, num_edges):
    model = _model(cls, out_dim=5, number_of_basis=4, h=16, L=2)
    out = model(torch.rand(num_edges) * 4.0)
    assert out.shape == (num_edges, 5)
    assert out.dtype == torch.get_default_dtype()
    assert (model.out_dim, model.max_radius, model.number_of_basis) == (5, MAX_RADIUS, 4)
    assert (model.h, model.L) == (16, 2)
    assert isinstance(model.max_radius, float)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("L", [0, 1, 3])
def test_layer_shapes(cls, L):
    model = _model(cls, out_dim=3, number_of_basis=6, h=8, L=L)
    widths = [6] + [8] * L + [3]
    assert [tuple(w.shape) for w in model.weights] == list(zip(widths[1:], widths[:-1]))
    assert model(torch.linspace(0, 4, 11)).shape == (11, 3)


@pytest.mark.parametrize("cls", MODELS)
def test_double_precision_module(cls):
    model = _model(cls).double()
    assert model(torch.rand(4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("number_of_basis", [2, 3, 7])
def test_cosine_basis_partition_of_unity(float64, number_of_basis):
    basis = CosineBasis(MAX_RADIUS, number_of_basis)
    r = torch.linspace(0, MAX_RADIUS, 1001)
    torch.testing.assert_close(basis(r).sum(-1), torch.ones(1001), atol=1e-12, rtol=0)
    assert basis(r).min() >= 0
    # the last bump reaches past max_radius, by one step
    step = MAX_RADIUS / (number_of_basis - 1)
    outside = basis(torch.tensor([MAX_RADIUS + 0.5 * step, MAX_RADIUS + step]))
    assert outside[0, -1] == pytest.approx(0.5) and outside[1].abs().max() == 0


@pytest.mark.parametrize("number_of_basis", [2, 3, 10])
def test_cosine_basis_matches_tutorial_lambda(float64, number_of_basis):
    # verbatim from the tutorial ("Inside e3nn.radial.CosineBasisModel")
    radii = torch.linspace(0, MAX_RADIUS, steps=number_of_basis)
    step = radii[1] - radii[0]

    def basis(x):
        return x.div(step).add(1).relu().sub(2).neg().relu().add(1).mul(math.pi / 2).cos().pow(2)

    r = torch.linspace(0, 2 * MAX_RADIUS, 2001)
    expected = basis(r[:, None] - radii)  # [E, number_of_basis]
    torch.testing.assert_close(
        CosineBasis(MAX_RADIUS, number_of_basis)(r), expected, atol=1e-12, rtol=0
    )


def test_gaussian_and_bessel_basis_formulas(float64):
    r = torch.linspace(0.01, 2 * MAX_RADIUS, 301)
    centers = torch.linspace(0, MAX_RADIUS, 5)
    sigma = MAX_RADIUS / 4
    expected = torch.exp(-0.5 * ((r[:, None] - centers) / sigma) ** 2)
    torch.testing.assert_close(GaussianBasis(MAX_RADIUS, 5)(r), expected, atol=1e-13, rtol=0)

    n = torch.arange(1, 7)
    expected = math.sqrt(2 / MAX_RADIUS) * torch.sin(n * math.pi * r[:, None] / MAX_RADIUS)
    expected = expected / r[:, None]
    torch.testing.assert_close(BesselBasis(MAX_RADIUS, 6)(r), expected, atol=1e-12, rtol=1e-12)


def _sinc_series(y, derivative):
    """d^derivative/dy^derivative of sin(y)/y = sum_j (-1)^j y^(2j) / (2j+1)!, 12 terms."""
    total = torch.zeros_like(y)
    for j in range(12):
        power = 2 * j - derivative
        if power < 0:
            continue
        coefficient = (-1) ** j / math.factorial(2 * j + 1)
        coefficient *= math.factorial(2 * j) / math.factorial(power)
        total = total + coefficient * y**power
    return total


def test_bessel_basis_smooth_at_zero(float64):
    basis = BesselBasis(MAX_RADIUS, 6)
    k = torch.arange(1, 7) * math.pi / MAX_RADIUS
    prefactor = math.sqrt(2 / MAX_RADIUS)
    for r0 in [0.0, 1e-9, 1e-4, 0.3 / 6, 0.5]:  # k r crosses the series switch at 0.1
        r = torch.tensor([r0], requires_grad=True)
        b = basis(r)[0]
        first = torch.stack(
            [torch.autograd.grad(b[i], r, create_graph=True)[0][0] for i in range(6)]
        )
        second = torch.stack(
            [torch.autograd.grad(first[i], r, retain_graph=True)[0][0] for i in range(6)]
        )
        # B_n(r) = prefactor * k sinc(k r): d^j/dr^j B_n = prefactor * k^(j+1) sinc^(j)(k r)
        for order, value in enumerate([b, first, second]):
            expected = prefactor * k ** (order + 1) * _sinc_series(k * r0, order)
            torch.testing.assert_close(value, expected, atol=1e-9, rtol=1e-9)


def test_basis_rms():
    # cos^4 + sin^4 averages to 3/4 on every interval between two centres
    assert CosineBasis(MAX_RADIUS, 4).rms() == pytest.approx(math.sqrt(0.75), rel=1e-6)
    # int_0^rc 2/rc sin^2(n pi r/rc) / r^2 dr grows with n: check against scipy-free sums
    r = np.linspace(1e-9, MAX_RADIUS, 200001)
    values = [np.sin(n * np.pi * r / MAX_RADIUS) ** 2 / r**2 for n in (1, 2, 3)]
    expected = math.sqrt(2 / MAX_RADIUS * np.trapezoid(sum(values), r) / MAX_RADIUS)
    assert BesselBasis(MAX_RADIUS, 3).rms() == pytest.approx(expected, rel=1e-5)


def test_polynomial_cutoff_values_and_derivatives(float64):
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.999, 1.0, 1.5, 40.0], requires_grad=True)
    u = polynomial_cutoff(x, max_radius=1.0, p=6)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x)
    xd = x.detach().clamp(max=1)
    expected = 1 - 28 * xd**6 + 48 * xd**7 - 21 * xd**8
    torch.testing.assert_close(u.detach(), expected, atol=1e-14, rtol=0)
    torch.testing.assert_close(du.detach(), -168 * xd**5 * (1 - xd) ** 2, atol=1e-12, rtol=0)
    assert u[0] == 1 and du[0] == 0
    assert (u[5:] == 0).all() and (du[5:] == 0).all() and (d2u[5:] == 0).all()
    assert (u.detach().diff() <= 0).all()  # monotone
    torch.testing.assert_close(d2u, -168 * xd**4 * (1 - xd) * (5 - 7 * xd), atol=1e-10, rtol=0)
    torch.testing.assert_close(
        PolynomialCutoff(2.0, p=3)(torch.tensor([1.0])),
        polynomial_cutoff(torch.tensor([0.5]), 1.0, 3),
    )
    assert repr(PolynomialCutoff(2.0, p=3)) == "PolynomialCutoff(max_radius=2.0, p=3)"


@pytest.mark.parametrize("cls", MODELS)
def test_zero_value_and_derivative_at_and_beyond_cutoff(cls, float64):
    model = _model(cls, number_of_basis=5)
    r = torch.tensor([MAX_RADIUS, MAX_RADIUS * (1 + 1e-9), MAX_RADIUS + 0.7, 1e3])
    r.requires_grad_(True)
    out = model(r)
    assert (out == 0).all()
    for c in range(model.out_dim):
        (grad,) = torch.autograd.grad(out[:, c].sum(), r, retain_graph=True)
        assert (grad == 0).all()
    # continuity of the value and the derivative as r -> max_radius from below:
    # both go to 0 as (max_radius - r)^3 and (max_radius - r)^2
    inside = torch.tensor([1.0, MAX_RADIUS - 1e-2, MAX_RADIUS - 1e-3], requires_grad=True)
    out = model(inside)
    (grad,) = torch.autograd.grad(out.sum(), inside)
    scale = out[0].abs().max().item() + abs(grad[0].item())
    assert out[1].abs().max() < 1e-3 * scale and abs(grad[1]) < 1e-2 * scale
    assert out[2].abs().max() < 1e-6 * scale and abs(grad[2]) < 1e-4 * scale


@pytest.mark.parametrize("cls", MODELS)
def test_gradcheck_and_gradgradcheck(cls, float64):
    model = _model(cls, out_dim=3, number_of_basis=4, h=6, L=2, seed=1)
    generator = torch.Generator().manual_seed(2)
    r = torch.cat([torch.rand(6, generator=generator) * MAX_RADIUS, torch.tensor([3.4])])
    r = r.clamp(min=0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(model, (r,))
    assert torch.autograd.gradgradcheck(model, (r,))

    # mixed derivatives d/dW dR/dr (training on forces) through the parameters
    names = [name for name, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def func(r, *params):
        return functional_call(model, dict(zip(names, params)), (r,))

    assert torch.autograd.gradgradcheck(func, (r, *params))


@pytest.mark.parametrize("cls", MODELS)
def test_empty_input_backward(cls):
    model = _model(cls)
    r = torch.zeros(0, requires_grad=True)
    out = model(r)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert r.grad.shape == (0,)
    assert all(p.grad is not None and (p.grad == 0).all() for p in model.parameters())


def test_tutorial_partial_composition():
    torch.manual_seed(0)
    RadialModel = partial(
        CosineBasisModel, max_radius=MAX_RADIUS, number_of_basis=3, h=100, L=2, act=ACT
    )
    model = RadialModel(12)
    assert isinstance(model, CosineBasisModel)
    assert (model.out_dim, model.max_radius, model.number_of_basis, model.h, model.L) == (
        12,
        MAX_RADIUS,
        3,
        100,
        2,
    )
    assert model(torch.rand(10) * MAX_RADIUS).shape == (10, 12)
    assert model.act is ACT


def test_default_activation_is_rescaled_softplus():
    rescaled_act = pytest.importorskip("e3nn_pyg.non_linearities.rescaled_act")
    sp = rescaled_act.Softplus(beta=5)
    model = partial(CosineBasisModel, max_radius=MAX_RADIUS, number_of_basis=3, act=sp)(4)
    assert model(torch.rand(3)).shape == (3, 4)
    default = CosineBasisModel(4, MAX_RADIUS)
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(default.act(x), sp(x))


@pytest.mark.parametrize("cls", MODELS)
def test_determinism_and_reset_parameters(cls):
    a, b = _model(cls, seed=3), _model(cls, seed=3)
    r = torch.rand(9) * MAX_RADIUS
    assert torch.equal(a(r), b(r))
    before = a(r)
    torch.manual_seed(4)
    a.reset_parameters()
    assert not torch.equal(a(r), before)
    torch.manual_seed(3)
    a.reset_parameters()
    assert torch.equal(a(r), before)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("L", [0, 2])
def test_output_scale_is_order_one(cls, L, float64):
    # With N(0, 1) weights, the 1/rms and 1/sqrt(h) scales and a unit-second-moment
    # activation, the output before the envelope has second moment ~1 over r and weights,
    # and does depend on r (the 1/rms scale keeps sparse bases from vanishing).
    torch.manual_seed(0)
    model = cls(400, MAX_RADIUS, 10, h=100, L=L, act=ACT)
    r = torch.linspace(0, 0.9 * MAX_RADIUS, 200)
    out = model(r) / model.cutoff(r)[:, None]  # [E, out_dim]
    assert 0.6 < out.pow(2).mean().item() < 1.6
    assert out.std(0).pow(2).mean().sqrt().item() > 0.4


def test_radial_mlp_with_custom_basis_and_repr():
    torch.manual_seed(0)
    model = RadialMLP(7, GaussianBasis(2.0, 3), h=5, L=1, act=torch.tanh)
    assert model.max_radius == 2.0 and model.number_of_basis == 3
    assert model(torch.tensor([0.0, 1.0, 2.5])).shape == (3, 7)
    assert repr(model) == (
        "RadialMLP(out_dim=7, basis=GaussianBasis(max_radius=2.0, number_of_basis=3), "
        "h=5, L=1, act=torch.tanh)"
    )
    softplus = torch.nn.Softplus(beta=5)
    cosine = CosineBasisModel(4, 3.0, 3, h=100, L=2, act=softplus)
    assert repr(cosine) == (
        "CosineBasisModel(out_dim=4, max_radius=3.0, number_of_basis=3, h=100, L=2, "
        f"act={softplus!r})"
    )
    assert dict(cosine.named_children())["act"] is softplus


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"out_dim": 0}, ValueError, "out_dim"),
        ({"out_dim": 2.0}, TypeError, "out_dim"),
        ({"max_radius": 0.0}, ValueError, "max_radius"),
        ({"max_radius": -1.0}, ValueError, "max_radius"),
        ({"max_radius": float("inf")}, ValueError, "max_radius"),
        ({"max_radius": float("nan")}, ValueError, "max_radius"),
        ({"max_radius": "3"}, TypeError, "max_radius"),
        ({"number_of_basis": 0}, ValueError, "number_of_basis"),
        ({"number_of_basis": 3.0}, TypeError, "number_of_basis"),
        ({"h": 0}, ValueError, "h must"),
        ({"L": -1}, ValueError, "L must"),
        ({"L": True}, TypeError, "L must"),
        ({"act": "relu"}, TypeError, "act must be callable"),
    ],
)
def test_constructor_validation(cls, kwargs, error, match):
    arguments = {"out_dim": 2, "max_radius": 1.0, "number_of_basis": 3, "h": 4, "L": 1}
    arguments["act"] = ACT
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        cls(**arguments)


def test_cosine_needs_two_bumps_and_others_accept_one():
    with pytest.raises(ValueError, match="CosineBasis needs number_of_basis >= 2"):
        CosineBasisModel(2, 1.0, 1, act=ACT)
    for cls in (GaussianRadialModel, BesselRadialModel):
        assert cls(2, 1.0, 1, h=3, act=ACT)(torch.rand(4)).shape == (4, 2)


def test_other_validation():
    with pytest.raises(TypeError, match="RadialBasis"):
        RadialMLP(2, "cosine", act=ACT)
    with pytest.raises(ValueError, match="p must"):
        PolynomialCutoff(1.0, p=0)
    with pytest.raises(TypeError, match="floating"):
        polynomial_cutoff(torch.tensor([1, 2]), 1.0)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize(
    ("edge_length", "error", "match"),
    [
        (torch.tensor([1.0, -0.1]), ValueError, ">= 0"),
        (torch.tensor([1.0, math.nan]), ValueError, "negative or NaN"),
        (torch.ones(3, 1), ValueError, "1-D"),
        (torch.ones(()), ValueError, "1-D"),
        (torch.tensor([1, 2]), TypeError, "floating"),
        ([1.0, 2.0], TypeError, "torch.Tensor"),
    ],
)
def test_forward_validation(cls, edge_length, error, match):
    with pytest.raises(error, match=match):
        _model(cls)(edge_length)


@pytest.mark.parametrize("cls", MODELS)
def test_unchecked_cores_compute_what_the_checked_entries_do(cls, float64):
    """``evaluate`` and ``_hidden_features`` (what a kernel calls on lengths of checked
    vectors) skip only the check: same values as ``forward`` and ``hidden_features``."""
    model, r = _model(cls), torch.tensor([0.0, 0.3, 1.2, 2.9, 3.5])
    assert torch.equal(model.evaluate(r), model(r))
    for envelope in (True, False):
        assert torch.equal(
            model._hidden_features(r, envelope), model.hidden_features(r, envelope=envelope)
        )
    assert torch.equal(model.cutoff.evaluate(r), model.cutoff(r))
    assert torch.equal(model.basis.evaluate(r), model.basis(r))
    with pytest.raises(ValueError, match=">= 0"):
        model.hidden_features(-r - 1.0)
    with pytest.raises(TypeError, match="edge_length must be a floating-point tensor"):
        model.cutoff(torch.tensor([1, 2]))

"""Tests of e3nn_pyg.tensor_product.symmetric: the symmetric contraction engine module."""

import pytest
import torch

from e3nn_pyg.o3 import Rs, parity_matrix, rand_rotation, rs_representation, symmetric_coupling
from e3nn_pyg.tensor_product import SymmetricContraction, symmetric_contraction_reference

CASES = [
    ("3x0e+3x1o+3x2e", "3x0e+3x1o", 1, 3),
    ("3x0e+3x1o+3x2e", "3x0e+3x1o", 2, 3),
    ("2x0e+2x1o+2x2e+2x3o", "2x0e+2x1o", 3, 3),
    ("2x1o+2x0e", "2x1o+2x0e", 4, 2),
    ("11x0e+11x1o", "11x0e+11x1o", 3, 2),  # several steps of channels
    ("11x0e+11x1o+11x2e", "11x0e+11x1o", 3, 40),  # many species: the shared mode
]


def _module(Rs_in, Rs_out, correlation, num_species, seed=0):
    torch.manual_seed(seed)
    return SymmetricContraction(Rs_in, Rs_out, correlation, num_species).double()


def _inputs(module, n=6, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, module.Rs_in.dim, dtype=torch.float64, generator=generator)
    species = torch.randint(0, module.num_species, (n,), generator=generator)
    used = min(n, module.num_species)
    species[:used] = torch.arange(used)  # every species used (or as many as atoms)
    return x.requires_grad_(), species


def _force_training_grads(function, x, weights):
    """The first gradient (the forces), then the gradients of a force-training loss (a
    function of the first gradient) with respect to ``x`` and ``weights``."""
    energy_weights = torch.linspace(-1, 1, function(x).numel(), dtype=x.dtype)
    out = function(x)
    energy = (out.flatten() * energy_weights).sum()
    (force,) = torch.autograd.grad(energy, x, create_graph=True)
    loss = out.pow(2).sum() + force.pow(2).sum()
    return (force.detach(), *torch.autograd.grad(loss, [x, *weights]))


@pytest.mark.parametrize(("Rs_in", "Rs_out", "correlation", "num_species"), CASES)
def test_equals_the_reference_with_first_and_second_gradients(
    Rs_in, Rs_out, correlation, num_species
):
    module = _module(Rs_in, Rs_out, correlation, num_species)
    x, species = _inputs(module)
    weights = list(module.weights.values())

    def reference(features):
        return symmetric_contraction_reference(
            features, species, Rs_in, Rs_out, correlation, module.weights
        )

    assert (module(x, species) - reference(x)).abs().max() < 1e-12
    ours = _force_training_grads(lambda features: module(features, species), x, weights)
    oracle = _force_training_grads(reference, x, weights)
    for mine, theirs in zip(ours, oracle, strict=True):
        assert (mine - theirs).abs().max() < 1e-12 * max(1.0, theirs.abs().max())


def test_mode_is_the_one_with_fewer_products_per_atom():
    # per species: S (1 + 3) products per channel and atom; shared: sum(n_eta (2L+1)) = 33
    assert not SymmetricContraction("2x0e+2x1o+2x2e", "2x0e+2x1o", 3, 8)._shared
    assert SymmetricContraction("2x0e+2x1o+2x2e", "2x0e+2x1o", 3, 9)._shared


def test_every_order_and_output_irrep_has_its_weights():
    module = SymmetricContraction("4x0e+4x1o+4x2e+4x3o", "4x0e+4x1o", 3, 3)
    irreps = ["0e", "1o", "2e", "3o"]
    expected = {
        f"{out}_nu{nu}": (3, 4, symmetric_coupling(irreps, nu, out).num_couplings)
        for out in ("0e", "1o")
        for nu in (1, 2, 3)
    }
    assert {name: tuple(w.shape) for name, w in module.weights.items()} == expected
    assert set(module.state_dict()) == {f"weights.{name}" for name in expected}


@pytest.mark.parametrize("improper", [False, True])
def test_output_is_equivariant(improper):
    module = _module("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", 3, 2)
    x, species = _inputs(module, n=5)
    g = rand_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    if improper:
        g = g @ parity_matrix(torch.float64)
    D_in = rs_representation(module.Rs_in, g)
    D_out = rs_representation(module.Rs_out, g)
    rotated_first = module(x @ D_in.T, species)
    assert (rotated_first - module(x, species) @ D_out.T).abs().max() < 1e-10


def test_output_is_of_order_one_for_unit_inputs():
    torch.manual_seed(0)
    module = SymmetricContraction("16x0e+16x1o+16x2e+16x3o", "16x0e+16x1o", 3, 3)
    x = torch.randn(200, module.Rs_in.dim)
    out = module(x, torch.randint(0, 3, (200,)))
    second_moment = out.pow(2).mean().item()
    assert 0.2 < second_moment < 5


def test_float32_constants_are_the_float64_masters_rounded_once():
    single = SymmetricContraction("2x0e+2x1o+2x2e", "2x0e+2x1o", 3, 2)  # float32
    converted = SymmetricContraction("2x0e+2x1o+2x2e", "2x0e+2x1o", 3, 2).double()
    built = _module("2x0e+2x1o+2x2e", "2x0e+2x1o", 3, 2)
    names = [name for name, _ in built.named_buffers() if name.startswith("coupling_")]
    assert len(names) >= 2
    for name in names:
        exact = getattr(built, name)
        assert exact.dtype == torch.float64
        assert torch.equal(getattr(converted, name), exact)
        assert torch.equal(getattr(single, name), exact.float())
        assert torch.equal(getattr(built.float().double(), name), exact)
    # every coefficient of the couplings is placed exactly once
    for index, out in enumerate(["0e", "1o"]):
        placed = sum(getattr(built, name).pow(2).sum() for name in names if f"_{index}_" in name)
        couplings = [symmetric_coupling(["0e", "1o", "2e"], nu, out) for nu in (1, 2, 3)]
        assert torch.allclose(placed, sum(c.coefficients.pow(2).sum() for c in couplings))


def test_float32_agrees_with_float64():
    module = _module("4x0e+4x1o+4x2e+4x3o", "4x0e+4x1o", 3, 3)
    x, species = _inputs(module, n=8)
    exact = module(x, species)
    approximate = module.float()(x.float(), species)
    assert (approximate.double() - exact).abs().max() < 1e-4 * exact.abs().max()


def test_repr():
    module = SymmetricContraction("8x0e+8x1o", "8x0e", correlation=3, num_species=4)
    assert (
        repr(module) == "SymmetricContraction('8x0e+8x1o' -> '8x0e', correlation=3, num_species=4)"
    )


def test_reset_parameters_draws_new_weights_of_the_documented_scale():
    module = SymmetricContraction("32x0e+32x1o+32x2e", "32x0e", 3, 8)
    before = module.weights["0e_nu3"].detach().clone()
    module.reset_parameters()
    after = module.weights["0e_nu3"]
    assert not torch.equal(before, after)
    n_eta = after.shape[-1]
    expected_std = (1 / (3 * n_eta * 6)) ** 0.5
    assert abs(after.std().item() / expected_std - 1) < 0.2


@pytest.mark.parametrize("num_species", [2, 20])  # per-species and shared mode
def test_compiles_as_one_graph(num_species):
    module = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 3, num_species)
    assert module._shared == (num_species == 20)
    x, species = torch.randn(4, 8), torch.tensor([0, 1, 1, 0])
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(module)(x, species)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.parametrize(
    ("Rs_in", "Rs_out", "correlation", "num_species", "error", "match"),
    [
        ("4x0e+2x1o", "4x0e", 2, 1, ValueError, "same positive multiplicity"),
        ("4x0e+4x1o", "2x0e", 2, 1, ValueError, "same number of channels"),
        ("4x0e+4x0e", "4x0e", 2, 1, ValueError, "each irrep once"),
        ("4x0e+4x1o", "4x0e+4x0e", 2, 1, ValueError, "each irrep once"),
        ("", "4x0e", 2, 1, ValueError, "Rs_in must not be empty"),
        ("4x0e", "4x1o", 3, 1, ValueError, "1o cannot be reached"),
        ("4x1o", "4x1e", 3, 1, ValueError, "1e cannot be reached"),
        ("4x0e+4x1", "4x0e", 2, 1, ValueError, "all have a parity"),
        ("4x0e", "4x0e", 0, 1, ValueError, "correlation must be an int >= 1"),
        ("4x0e", "4x0e", 2, 0, ValueError, "num_species must be an int >= 1"),
        ("4x0e", "4x0e", 2.0, 1, TypeError, "correlation must be an int"),
    ],
)
def test_bad_construction_is_refused(Rs_in, Rs_out, correlation, num_species, error, match):
    with pytest.raises(error, match=match):
        SymmetricContraction(Rs_in, Rs_out, correlation, num_species)


def test_bad_inputs_are_refused():
    module = SymmetricContraction("2x0e+2x1o", "2x0e", 2, 3)
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"expected \[num_nodes, 8\]"):
        module(torch.randn(4, 7), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.long tensor, got torch\.int32 tensor of shape"):
        module(x, torch.zeros(4, dtype=torch.int32))
    with pytest.raises(TypeError, match="must match its weights"):
        module(x.double(), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="species has 3 entries for 4 atoms"):
        module(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(IndexError, match=r"species 3 out of range \[0, 3\)"):
        module(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(IndexError, match=r"species -1 out of range"):
        module(x, torch.tensor([0, -1, 2, 1]))


def test_no_atoms_give_an_empty_output():
    module = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 3, 2)
    out = module(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, Rs("2x0e+2x1o").dim)

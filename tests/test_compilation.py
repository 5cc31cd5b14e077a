"""torch.compile (one graph, no break) of the layers and models (torch.export:
tests/test_export.py).

The graph-break checks trace with Dynamo only (seconds); the checks that run Inductor's
code against eager values take about a minute each on 2 cores and are marked slow.
"""

from functools import partial

import pytest
import torch
from torch_geometric.data import Batch, Data

from e3nn_pyg.compilation import (
    DYNAMO_SETTINGS,
    INDUCTOR_SETTINGS,
    CompiledModel,
    compile_model,
    compile_settings,
    settings_applied,
)
from e3nn_pyg.conv import Convolution
from e3nn_pyg.kernel import Kernel
from e3nn_pyg.models import EquivariantNet, ManyBodyNet
from e3nn_pyg.non_linearities import GatedBlock, NormActivation, rescaled_act
from e3nn_pyg.radial import CosineBasisModel
from e3nn_pyg.tensor_product import native

SMALL = dict(hidden_Rs="8x0e + 4x1o + 2x2e", num_layers=2, cutoff=3.0, radial_hidden=16)
#: Every model of the zoo, small
MODELS = {
    "equivariant-net": (EquivariantNet, SMALL),
    "many-body": (ManyBodyNet, dict(num_channels=4, num_layers=2, cutoff=3.0, radial_hidden=8)),
}


def molecules(sizes: tuple[int, ...], seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    data = []
    for n in sizes:
        z = torch.tensor([1, 6, 7, 8, 9])[torch.randint(0, 5, (n,), generator=generator)]
        data.append(Data(z=z, pos=1.5 * torch.randn(n, 3, generator=generator)))
    return Batch.from_data_list(data)


def make_model(kind: str = "equivariant-net", **kwargs) -> EquivariantNet | ManyBodyNet:
    torch.manual_seed(0)
    model, arguments = MODELS[kind]
    return model(**{**arguments, **kwargs})


def graph_breaks(module, *args) -> list[str]:
    with compile_settings():
        explanation = torch._dynamo.explain(module)(*args)
    assert explanation.graph_count == 1 + explanation.graph_break_count
    return [reason.reason.splitlines()[0] for reason in explanation.break_reasons]


def conv_layer(mode: str) -> Convolution:
    radial = partial(CosineBasisModel, max_radius=3.0, number_of_basis=3, h=16, L=2, act=torch.relu)
    return Convolution(partial(Kernel, RadialModel=radial, mode=mode), "2x0e", "4x0e+4x1o+4x2e")


@pytest.mark.parametrize("mode", ["full", "channelwise"])
def test_convolution_traces_as_one_graph(mode):
    conv = conv_layer(mode)
    pos, x = torch.randn(12, 3), torch.randn(12, 2)
    batch = torch.tensor([0] * 5 + [1] * 7)
    assert graph_breaks(conv, x, pos, None, batch) == []  # builds its radius graph
    assert graph_breaks(conv, x, pos, torch.tensor([[0, 1, 2], [1, 2, 0]])) == []


def native_calls(module, *args) -> int:
    """How many native convolution operators the compiler's graph of ``module`` calls."""
    with compile_settings():
        explanation = torch._dynamo.explain(module)(*args)
    targets = [str(node.target) for g in explanation.graphs for node in g.graph.nodes]
    return sum(target.startswith("e3nn_pyg.native_conv") for target in targets)


@pytest.mark.skipif(not native.available(), reason="no C compiler")
@pytest.mark.parametrize("kind", MODELS)
def test_the_compiled_graph_keeps_the_native_operators(kind):
    """Every convolution of a compiled model is the native operator (not a per-edge path
    the compiler would fuse): one per layer's convolution, also with forces."""
    model = make_model(kind, derivative=True).train()
    batch = molecules((5, 7))
    convolutions = sum(isinstance(m, Convolution) for m in model.modules())
    pos = batch.pos.clone().requires_grad_()
    assert native_calls(model, batch.z, pos, batch.batch) == convolutions > 0
    assert native_calls(conv_layer("full"), torch.randn(12, 2), torch.randn(12, 3)) == 1


def test_nonlinearities_trace_as_one_graph():
    gate = GatedBlock("4x0e + 2x1o", rescaled_act.relu, rescaled_act.sigmoid)
    assert graph_breaks(gate, torch.randn(5, gate.Rs_in.dim)) == []
    norm = NormActivation("4x0e + 2x1o", rescaled_act.sigmoid)
    assert graph_breaks(norm, torch.randn(5, 10)) == []


@pytest.mark.parametrize(
    "kind, derivative, training",
    [("equivariant-net", derivative, training) for derivative in (False, True)
     for training in (False, True)]
    + [("many-body", False, False), ("many-body", True, True)],
)  # fmt: skip
def test_model_traces_as_one_graph(kind, derivative, training):
    model = make_model(kind, derivative=derivative).train(training)
    batch = molecules((5, 7))
    pos = batch.pos.clone().requires_grad_(derivative and training)  # a force training step
    assert graph_breaks(model, batch.z, pos, batch.batch) == []


def test_compiled_force_training_needs_positions_that_require_grad():
    compiled = compile_model(make_model(derivative=True).train())
    batch = molecules((4,))
    with pytest.raises(Exception, match=r"needs pos.requires_grad_\(\)"):
        compiled(batch.z, batch.pos, batch.batch)


def test_settings_applied_reads_the_compiler_configuration():
    assert not settings_applied(DYNAMO_SETTINGS, INDUCTOR_SETTINGS)  # torch's defaults
    with compile_settings():
        assert settings_applied(DYNAMO_SETTINGS, INDUCTOR_SETTINGS)
    assert settings_applied({}, {"cpp.enable_loop_tail_vec": True})  # a dotted name


def test_plain_torch_compile_asks_for_the_settings():
    """Without them the graph cannot be traced, or (CPU) its gradients would be wrong."""
    model = make_model()
    batch = molecules((4, 3))
    with pytest.raises(Exception, match=r"compile_model\(module\)"):
        torch.compile(model, fullgraph=True)(batch.z, batch.pos, batch.batch)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        with pytest.raises(Exception, match="vectorised loop tails"):
            torch.compile(model, fullgraph=True)(batch.z, batch.pos, batch.batch)


def test_compiled_model_shares_the_module_state():
    model = make_model()
    compiled = compile_model(model)
    assert isinstance(compiled, CompiledModel)
    assert list(compiled.parameters()) == list(model.parameters())
    assert compiled.state_dict().keys() == {f"module.{k}" for k in model.state_dict()}
    with pytest.raises(TypeError, match=r"nn\.Module"):
        compile_model(lambda x: x)


def parameter_grads(model) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


@pytest.mark.slow
@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("kind", MODELS)
def test_compiled_force_training_step_equals_eager(kind):
    """Energies, forces and the gradients of a force loss, two batch sizes (the second
    compiles the graph with a dynamic number of atoms)."""
    model = make_model(kind, derivative=True).train()
    compiled = compile_model(model)
    for sizes in [(5, 7), (6, 3, 8), (4, 9)]:
        batch = molecules(sizes, seed=len(sizes))
        results = []
        for run in (compiled, model):
            pos = batch.pos.clone().requires_grad_()
            energy, forces = run(batch.z, pos, batch.batch)
            (energy.pow(2).sum() + forces.pow(2).sum()).backward()
            results.append((energy.detach(), forces.detach(), parameter_grads(model)))
        (energy_c, forces_c, grads_c), (energy_e, forces_e, grads_e) = results
        torch.testing.assert_close(energy_c, energy_e, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(forces_c, forces_e, atol=1e-10, rtol=1e-10)
        assert grads_c.keys() == grads_e.keys()
        for name in grads_e:
            torch.testing.assert_close(grads_c[name], grads_e[name], atol=1e-9, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.usefixtures("float64")
def test_compiled_inference_equals_eager_and_checks_inputs():
    model = make_model(derivative=True).eval()
    compiled = compile_model(model)
    batch = molecules((5, 7))
    with torch.no_grad():
        energy, forces = compiled(batch.z, batch.pos, batch.batch)
    expected = model(batch.z, batch.pos, batch.batch)
    torch.testing.assert_close(energy, expected[0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(forces, expected[1], atol=1e-10, rtol=1e-10)
    bad = batch.z.clone()
    bad[2] = 500
    with pytest.raises(RuntimeError, match="z holds atomic number out of range"):
        compiled(bad, batch.pos, batch.batch)


@pytest.mark.parametrize(
    "kind, stress", [("equivariant-net", False), ("equivariant-net", True), ("many-body", True)]
)
def test_periodic_force_model_traces_as_one_graph(kind, stress):
    """The periodic graph is one custom op; the stress's strain derivative traces too."""
    model = make_model(kind, derivative=True).eval()
    batch = molecules((3, 2))
    cell = torch.stack([2.5 * torch.eye(3), 3.0 * torch.eye(3) + 0.2])  # smaller than 2 cutoffs
    pbc = torch.tensor([[True, True, True], [True, True, False]])
    forward = partial(model, stress=stress)
    assert graph_breaks(forward, batch.z, batch.pos, batch.batch, cell, pbc) == []

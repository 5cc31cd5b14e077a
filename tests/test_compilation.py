"""torch.compile (one graph, no break) and torch.export of the layers and models.

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
    export_model,
    settings_applied,
)
from e3nn_pyg.conv import Convolution
from e3nn_pyg.kernel import Kernel
from e3nn_pyg.models import EquivariantNet
from e3nn_pyg.non_linearities import GatedBlock, NormActivation, rescaled_act
from e3nn_pyg.radial import CosineBasisModel

SMALL = dict(hidden_Rs="8x0e + 4x1o + 2x2e", num_layers=2, cutoff=3.0, radial_hidden=16)


def molecules(sizes: tuple[int, ...], seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    data = []
    for n in sizes:
        z = torch.tensor([1, 6, 7, 8, 9])[torch.randint(0, 5, (n,), generator=generator)]
        data.append(Data(z=z, pos=1.5 * torch.randn(n, 3, generator=generator)))
    return Batch.from_data_list(data)


def make_model(**kwargs) -> EquivariantNet:
    torch.manual_seed(0)
    return EquivariantNet(**{**SMALL, **kwargs})


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


def test_nonlinearities_trace_as_one_graph():
    gate = GatedBlock("4x0e + 2x1o", rescaled_act.relu, rescaled_act.sigmoid)
    assert graph_breaks(gate, torch.randn(5, gate.Rs_in.dim)) == []
    norm = NormActivation("4x0e + 2x1o", rescaled_act.sigmoid)
    assert graph_breaks(norm, torch.randn(5, 10)) == []


@pytest.mark.parametrize("derivative", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_model_traces_as_one_graph(derivative, training):
    model = make_model(derivative=derivative).train(training)
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


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_exported_model_equals_the_model_for_any_size(tmp_path, dtype, tolerance):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = make_model()
    finally:
        torch.set_default_dtype(previous)
    path = tmp_path / "model.pt2"
    torch.export.save(export_model(model), path)
    loaded = torch.export.load(path).module()
    for sizes in [(5, 7), (3, 9, 4), (21,)]:
        batch = molecules(sizes, seed=1)
        pos = batch.pos.to(dtype)
        expected = model(batch.z, pos, batch.batch)
        out = loaded(batch.z, pos, batch.batch)
        torch.testing.assert_close(out, expected, atol=tolerance, rtol=tolerance)
    bad = pos.clone()
    bad[3, 0] = float("nan")  # the checks travel with the program, as graph assertions
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        loaded(batch.z, bad, batch.batch)


@pytest.mark.usefixtures("float64")
def test_exported_force_model_gives_the_energy_and_forces_by_autograd(tmp_path):
    model = make_model(derivative=True)
    path = tmp_path / "model.pt2"
    torch.export.save(export_model(model), path)
    loaded = torch.export.load(path).module()
    batch = molecules((6, 4), seed=2)
    energy, forces = model(batch.z, batch.pos, batch.batch)
    pos = batch.pos.clone().requires_grad_()
    exported_energy = loaded(batch.z, pos, batch.batch)
    (gradient,) = torch.autograd.grad(exported_energy.sum(), pos)
    torch.testing.assert_close(exported_energy, energy, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(-gradient, forces, atol=1e-12, rtol=1e-12)


def parameter_grads(model) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


@pytest.mark.slow
@pytest.mark.usefixtures("float64")
def test_compiled_force_training_step_equals_eager():
    """Energies, forces and the gradients of a force loss, two batch sizes (the second
    compiles the graph with a dynamic number of atoms)."""
    model = make_model(derivative=True).train()
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


@pytest.mark.parametrize("stress", [False, True])
def test_periodic_force_model_traces_as_one_graph(stress):
    """The periodic graph is one custom op; the stress's strain derivative traces too."""
    model = make_model(derivative=True).eval()
    batch = molecules((3, 2))
    cell = torch.stack([2.5 * torch.eye(3), 3.0 * torch.eye(3) + 0.2])  # smaller than 2 cutoffs
    pbc = torch.tensor([[True, True, True], [True, True, False]])
    forward = partial(model, stress=stress)
    assert graph_breaks(forward, batch.z, batch.pos, batch.batch, cell, pbc) == []

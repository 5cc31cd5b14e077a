"""torch.compile (one graph, no break) and torch.export of the layers and models.

The graph-break checks trace with Dynamo only (seconds); the checks that run Inductor's
code against eager values take about a minute each on 2 cores and are marked slow.
"""

import subprocess
import sys
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
from e3nn_pyg.models import EquivariantNet, ManyBodyNet
from e3nn_pyg.non_linearities import GatedBlock, NormActivation, rescaled_act
from e3nn_pyg.radial import CosineBasisModel

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


@pytest.mark.parametrize(
    "kind, dtype, tolerance",
    [("equivariant-net", torch.float32, 1e-6), ("equivariant-net", torch.float64, 1e-12),
     ("many-body", torch.float64, 1e-12)],  # (its float32 export: the fresh process)
)  # fmt: skip
def test_exported_model_equals_the_model_for_any_size(tmp_path, kind, dtype, tolerance):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = make_model(kind)
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


# What a fresh process that imports torch and e3nn_pyg alone gets of each exported program
# (argv: the .pt2 files, each with its inputs in <file>.in): energies, and forces by autograd.
FRESH_PROCESS = """
import sys
import torch, e3nn_pyg
for path in sys.argv[1:]:
    inputs = torch.load(path + ".in")
    pos = inputs[1].requires_grad_()
    energy = torch.export.load(path).module()(*inputs)
    forces = -torch.autograd.grad(energy.sum(), pos)[0]
    torch.save((energy.detach(), forces), path + ".out")
assert "e3nn_pyg.models" not in sys.modules  # the program needs no model code
"""


def copper_crystals(count: int) -> tuple[torch.Tensor, ...]:
    """``(z, pos, batch, cell, pbc)`` of rattled, strained fcc copper cells (4 atoms each,
    float64), the structures of an EMT data set."""
    from ase.build import bulk

    structures = []
    for i in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.set_cell(atoms.cell.array * (1 + 0.02 * i), scale_atoms=True)
        atoms.rattle(0.05, seed=i)
        structures.append(atoms)
    z = torch.cat([torch.as_tensor(atoms.numbers) for atoms in structures])  # [N]
    pos = torch.cat([torch.as_tensor(atoms.positions) for atoms in structures])  # [N, 3]
    batch = torch.arange(count).repeat_interleave(4)  # [N]
    cell = torch.stack([torch.as_tensor(atoms.cell.array) for atoms in structures])  # [G, 3, 3]
    pbc = torch.ones(count, 3, dtype=torch.bool)  # [G, 3]
    pbc[-1, 2] = False  # a slab too
    return z, pos, batch, cell, pbc


@pytest.fixture(scope="module")
def fresh_process_results(tmp_path_factory):
    """Force models of every kind exported here (molecules in float32 and float64, crystals
    in float64), loaded and called in one fresh process: ``{(kind, case): (expected, got)}``
    of ``(energy, forces)``."""
    folder = tmp_path_factory.mktemp("exported")
    batch = molecules((6, 4, 9), seed=2)
    cases = {}
    for (kind, case), dtype in [
        ((kind, case), dtype)
        for kind in MODELS
        for case, dtype in [
            ("float32", torch.float32),
            ("float64", torch.float64),
            ("crystal", None),
        ]
    ]:
        model = make_model(kind, derivative=True, cutoff=3.0).to(dtype or torch.float64)
        if dtype is None:
            inputs = copper_crystals(3)
        else:
            inputs = (batch.z, batch.pos.to(dtype), batch.batch)
        path = folder / f"{kind}-{case}.pt2"
        torch.export.save(export_model(model, periodic=dtype is None), path)
        torch.save(inputs, f"{path}.in")
        cases[kind, case] = (path, model(*inputs))
    script = [sys.executable, "-c", FRESH_PROCESS, *(str(path) for path, _ in cases.values())]
    result = subprocess.run(script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {case: (expected, torch.load(f"{path}.out")) for case, (path, expected) in cases.items()}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("case, tolerance", [("float32", 1e-6), ("float64", 1e-12)])
def test_exported_molecule_model_loads_in_a_fresh_process(
    fresh_process_results, kind, case, tolerance
):
    (energy, forces), (exported_energy, exported_forces) = fresh_process_results[kind, case]
    assert exported_energy.dtype == energy.dtype == getattr(torch, case)
    torch.testing.assert_close(exported_energy, energy, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(exported_forces, forces, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("kind", MODELS)
def test_exported_periodic_model_takes_the_cell_in_a_fresh_process(fresh_process_results, kind):
    (energy, forces), (exported_energy, exported_forces) = fresh_process_results[kind, "crystal"]
    torch.testing.assert_close(exported_energy, energy, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(exported_forces, forces, atol=1e-12, rtol=1e-12)


def test_export_model_refuses_a_periodic_flag_that_is_not_a_bool():
    with pytest.raises(TypeError, match="periodic must be a bool"):
        export_model(make_model(), periodic="yes")


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

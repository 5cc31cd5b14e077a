"""torch.export programs and AOTInductor packages of the models (e3nn_pyg/export.py): equal
to the Python model in a fresh process that imports torch and e3nn_pyg alone, with their
metadata, and clear errors for bad arguments.

Exporting takes seconds per program; compiling an AOTInductor package takes a minute or
more on 2 cores, so the packages are checked by slow tests.
"""

import json
import subprocess
import sys
import zipfile

import pytest
import torch
from test_compilation import MODELS, molecules

import e3nn_pyg
from e3nn_pyg.export import (
    METADATA_FILE,
    export_model,
    export_traced,
    model_metadata,
    read_metadata,
    save_model,
)

TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


def make_model(kind: str = "equivariant-net", dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    model, arguments = MODELS[kind]
    return model(**{**arguments, **kwargs}).to(dtype).eval()


def copper_crystals(count: int, dtype) -> tuple[torch.Tensor, ...]:
    """``(z, pos, batch, cell, pbc)`` of rattled, strained fcc copper cells of 4 atoms, the
    last one a slab: cells of 3.6 Å, shorter than twice the cutoff, so that the periodic
    images of every atom are among its neighbours."""
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
    return z, pos.to(dtype), batch, cell.to(dtype), pbc


#: (kind, geometry, dtype) of the programs checked in a fresh process: each model, dtype
#: and geometry at least once in the fast suite (an export takes 5-10 s), the others slow
CASES = [("equivariant-net", "molecules", torch.float32),
         ("equivariant-net", "crystal", torch.float64),
         ("many-body", "crystal", torch.float32)]  # fmt: skip
SLOW_CASES = [(kind, geometry, dtype) for kind in MODELS for geometry in ("molecules", "crystal")
              for dtype in (torch.float32, torch.float64)
              if (kind, geometry, dtype) not in CASES]  # fmt: skip


def case_inputs(geometry: str, dtype) -> tuple[torch.Tensor, ...]:
    if geometry == "crystal":
        return copper_crystals(3, dtype)
    batch = molecules((6, 4, 9), seed=2)
    return batch.z, batch.pos.to(dtype), batch.batch


def run_fresh_process(script: str, paths: list) -> None:
    """Run ``script`` on the files ``paths`` (argv) in a new Python process."""
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# What a fresh process that imports torch and e3nn_pyg alone gets of each program (argv:
# the files, each with its inputs in <file>.in): its outputs, in <file>.out.
FRESH_PROCESS = """
import sys
import torch, e3nn_pyg
for path in sys.argv[1:]:
    outputs = torch.export.load(path).module()(*torch.load(path + ".in"))
    torch.save(tuple(outputs), path + ".out")
assert "e3nn_pyg.models" not in sys.modules  # the program needs no model code
"""

# The same with AOTInductor packages; their runtime metadata too.
FRESH_PROCESS_AOTI = """
import json, sys
import torch, e3nn_pyg
for path in sys.argv[1:]:
    package = torch._inductor.aoti_load_package(path)
    outputs = package(*torch.load(path + ".in"))
    torch.save((tuple(outputs), json.loads(package.get_metadata()["e3nn_pyg"])), path + ".out")
assert "e3nn_pyg.models" not in sys.modules
"""


def save_cases(folder, cases, aoti: bool) -> dict:
    """Force models of ``cases`` (kind, geometry, dtype) saved in ``folder`` with their
    inputs: ``{case: (path, expected outputs)}``."""
    saved = {}
    for kind, geometry, dtype in cases:
        model = make_model(kind, dtype, derivative=True)
        inputs = case_inputs(geometry, dtype)
        path = folder / f"{kind}-{geometry}-{str(dtype)[6:]}.pt2"
        save_model(model, path, periodic=geometry == "crystal", aoti=aoti)
        torch.save(inputs, f"{path}.in")
        expected = model(*inputs, stress=True) if geometry == "crystal" else model(*inputs)
        saved[kind, geometry, dtype] = (path, tuple(t.detach() for t in expected))
    return saved


def fresh_process_results(folder, cases: list, aoti: bool = False) -> dict:
    """``cases`` saved in ``folder`` and run in one fresh process: ``{case: (path,
    expected, got)}``, and for packages the metadata they give when loaded."""
    saved = save_cases(folder, cases, aoti=aoti)
    run_fresh_process(FRESH_PROCESS_AOTI if aoti else FRESH_PROCESS,
                      [path for path, _ in saved.values()])  # fmt: skip
    loaded = {case: torch.load(f"{path}.out") for case, (path, _) in saved.items()}
    return {case: (*saved[case], *(loaded[case] if aoti else (loaded[case],))) for case in saved}


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    return fresh_process_results(tmp_path_factory.mktemp("exported"), CASES)


def assert_equal_outputs(got, expected, dtype) -> None:
    assert len(got) == len(expected)
    for out, want in zip(got, expected):
        assert out.dtype == want.dtype == dtype
        torch.testing.assert_close(out, want, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


@pytest.mark.parametrize("kind, geometry, dtype", CASES)
def test_saved_program_equals_the_model_in_a_fresh_process(programs, kind, geometry, dtype):
    """Energy and forces (and the stress of crystals) at 1e-6 in float32, 1e-12 in float64."""
    _, expected, got = programs[kind, geometry, dtype]
    assert len(got) == (3 if geometry == "crystal" else 2)
    assert_equal_outputs(got, expected, dtype)


@pytest.mark.slow
def test_every_other_saved_program_equals_the_model_in_a_fresh_process(tmp_path):
    for (_, expected, got), (_, _, dtype) in zip(
        fresh_process_results(tmp_path, SLOW_CASES).values(), SLOW_CASES
    ):
        assert_equal_outputs(got, expected, dtype)


@pytest.mark.parametrize("kind, dtype", [case[::2] for case in CASES if case[1] == "crystal"])
def test_periodic_program_takes_the_cell(programs, kind, dtype):
    """The crystals' periodic images change every energy far beyond the tolerance (a
    program that dropped the cell would compute the cell's atoms as a molecule, and fail
    the test above)."""
    z, pos, batch, _, _ = case_inputs("crystal", dtype)
    molecule_energy = make_model(kind, dtype, derivative=True)(z, pos, batch)[0]
    crystal_energy = programs[kind, "crystal", dtype][2][0]
    assert (crystal_energy - molecule_energy).abs().min() > 100 * TOLERANCE[dtype]


@pytest.mark.parametrize("kind, geometry, dtype", CASES)
def test_saved_program_carries_its_metadata(programs, kind, geometry, dtype):
    metadata = read_metadata(programs[kind, geometry, dtype][0])
    assert metadata == json.loads(json.dumps(metadata))  # plain JSON values
    assert metadata["model"] == MODELS[kind][0].__name__ and metadata["format"] == "torch.export"
    assert metadata["cutoff"] == 3.0 and metadata["species"] is None
    assert metadata["allow_unseen_elements"] is False and metadata["checks_inputs"] is True
    assert metadata["dtype"] == str(dtype)[6:]
    assert metadata["periodic"] is (geometry == "crystal")
    periodic = ["cell", "pbc"] if geometry == "crystal" else []
    assert metadata["inputs"] == ["z", "pos", "batch", *periodic]
    stress = ["stress"] if geometry == "crystal" else []
    assert metadata["outputs"] == ["energy", "forces", *stress]
    units = {"length": "Å", "energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3"}
    assert metadata["units"] == {key: units[key] for key in ["length", *metadata["outputs"]]}
    assert metadata["config"]["num_layers"] == 2 and metadata["config"]["derivative"] is True
    assert metadata["e3nn_pyg"] == e3nn_pyg.__version__ and metadata["torch"] == torch.__version__
    assert metadata["signature"].startswith(f"module(z [N] int64, pos [N, 3] {str(dtype)[6:]}, ")


@pytest.mark.parametrize(
    "kind, dtype", [("equivariant-net", torch.float64), ("many-body", torch.float32)]
)
def test_exported_property_model_equals_the_model_for_any_size(kind, dtype):
    model = make_model(kind, dtype, species=[1, 6, 7, 8, 9])
    program = export_model(model).module()
    for sizes in [(5, 7), (3, 9, 4), (21,)]:
        batch = molecules(sizes, seed=1)
        pos = batch.pos.to(dtype)
        expected = model(batch.z, pos, batch.batch)
        out = program(batch.z, pos, batch.batch)
        tolerance = TOLERANCE[dtype]
        torch.testing.assert_close(out, expected, atol=tolerance, rtol=tolerance)
    bad = pos.clone()
    bad[3, 0] = float("nan")  # the checks travel with the program, as graph assertions
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        program(batch.z, bad, batch.batch)
    metadata = model_metadata(model, False, {"name": "U0", "unit": "eV"})
    assert metadata["outputs"] == ["U0"] and metadata["units"]["U0"] == "eV"
    assert metadata["species"] == [1, 6, 7, 8, 9] and not metadata["periodic"]
    assert metadata["signature"].endswith(") -> U0 [num_graphs, 1]")
    assert not metadata["allow_unseen_elements"]
    model.allow_unseen_elements = True  # (e3nn-pyg export --allow-unseen-elements)
    assert model_metadata(model, False)["allow_unseen_elements"]


def test_export_traced_holds_the_backward_pass():
    """A module calling autograd.grad, exported: its gradient is an output of the program."""

    class Gradient(torch.nn.Module):
        def forward(self, x):
            x = x.detach().requires_grad_()
            return torch.autograd.grad(x.sin().sum(), x)[0]

    x = torch.randn(5, dtype=torch.float64)
    program = export_traced(Gradient(), (x,), ({0: torch.export.Dim("n", min=2)},)).module()
    y = torch.randn(9, dtype=torch.float64)
    torch.testing.assert_close(program(y), y.cos(), atol=1e-15, rtol=1e-15)


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    model = make_model()
    with pytest.raises(TypeError, match="model of the zoo"):
        export_model(torch.nn.Linear(3, 1))
    with pytest.raises(TypeError, match="periodic must be a bool"):
        export_model(model, periodic="yes")
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        save_model(model, 3)
    with pytest.raises(ValueError, match=r"must end in \.pt2"):
        save_model(model, tmp_path / "model.txt")
    with pytest.raises(ValueError, match="existing folder"):
        save_model(model, tmp_path / "missing" / "model.pt2")
    (tmp_path / "folder.pt2").mkdir()
    with pytest.raises(ValueError, match="existing folder"):
        save_model(model, tmp_path / "folder.pt2")
    with pytest.raises(TypeError, match="aoti must be a bool"):
        save_model(model, tmp_path / "model.pt2", aoti="yes")
    with pytest.raises(TypeError, match="target must be"):
        save_model(model, tmp_path / "model.pt2", target={"name": "U0"})
    assert list(tmp_path.iterdir()) == [tmp_path / "folder.pt2"]  # nothing written


def test_read_metadata_refuses_what_is_not_a_saved_model(tmp_path):
    with pytest.raises(TypeError, match="path must be"):
        read_metadata(None)
    with pytest.raises(FileNotFoundError, match="no file"):
        read_metadata(tmp_path / "missing.pt2")
    (tmp_path / "text.pt2").write_text("not an archive")
    with pytest.raises(ValueError, match=r"not a \.pt2 archive"):
        read_metadata(tmp_path / "text.pt2")
    with zipfile.ZipFile(tmp_path / "plain.pt2", "w") as archive:  # torch.export.save's
        archive.writestr("plain/models/model.json", "{}")  # layout, without our metadata
    with pytest.raises(ValueError, match="holds no e3nn_pyg metadata"):
        read_metadata(tmp_path / "plain.pt2")
    with zipfile.ZipFile(tmp_path / "ours.pt2", "w") as archive:
        archive.writestr(f"ours/extra/{METADATA_FILE}", '{"cutoff": 4.0}')
    assert read_metadata(tmp_path / "ours.pt2") == {"cutoff": 4.0}


# -- AOTInductor packages ------------------------------------------------------------------
@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    return fresh_process_results(tmp_path_factory.mktemp("aoti"), CASES, aoti=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind, geometry, dtype", CASES)
def test_aoti_package_equals_the_model_in_a_fresh_process(packages, kind, geometry, dtype):
    """Each model, dtype and geometry once (a package compiles for a minute or more)."""
    path, expected, got, runtime_metadata = packages[kind, geometry, dtype]
    assert_equal_outputs(got, expected, dtype)
    metadata = read_metadata(path)  # without loading it
    assert metadata == runtime_metadata and metadata["format"] == "aoti"
    assert metadata["periodic"] == (geometry == "crystal")
    assert metadata["dtype"] == str(dtype)[6:]

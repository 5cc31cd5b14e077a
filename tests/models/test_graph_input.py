"""The graph-input interface (e3nn_pyg.models.graph_input): the model's numbers on the
model's own graph (molecules and crystals), equivariance, per-pair forces that sum to the
forces, edges beyond the cutoff, bad inputs, and the exported program in a fresh process."""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch_geometric.nn.models import SchNet

from e3nn_pyg.export import read_metadata
from e3nn_pyg.graph import cartesian_shifts, periodic_radius_graph, radius_graph
from e3nn_pyg.models import EquivariantNet, GraphPotential, ManyBodyNet
from e3nn_pyg.models.graph_input import AtomEnergies, edge_vectors, save_graph_potential
from e3nn_pyg.o3 import rand_rotation

pytestmark = pytest.mark.usefixtures("float64")

CUTOFF = 3.5
CELL = [[3.1, 0.0, 0.0], [0.7, 2.9, 0.0], [-0.4, 0.5, 3.3]]  # smaller than the cutoff
MODELS = {
    "EquivariantNet": lambda: EquivariantNet(
        "8x0e + 4x1o + 2x2e", num_layers=2, cutoff=CUTOFF, num_basis=6, radial_hidden=16,
        mean=-3.0, species=[1, 6, 8], derivative=True,
    ),
    "ManyBodyNet": lambda: ManyBodyNet(
        num_channels=4, lmax=2, num_layers=2, cutoff=CUTOFF, radial_hidden=8,
        readout_hidden=4, species=[1, 6, 8], derivative=True,
    ),
}  # fmt: skip


def make_model(name: str = "EquivariantNet", seed: int = 0):
    torch.manual_seed(seed)
    return MODELS[name]().double()


def molecule(num_atoms: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z = torch.tensor([1, 6, 8])[torch.randint(0, 3, (num_atoms,), generator=generator)]
    return z, 1.3 * torch.randn(num_atoms, 3, generator=generator)


def crystal(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four atoms in a triclinic cell smaller than the cutoff (several images of each)."""
    generator = torch.Generator().manual_seed(seed)
    cell = torch.tensor(CELL)
    pos = torch.rand(4, 3, generator=generator) @ cell  # [4, 3]
    return torch.tensor([6, 6, 8, 1]), pos, cell


def crystal_edges(pos, cell, r=CUTOFF):
    edge_index, shifts = periodic_radius_graph(pos, r, cell, True)
    return edge_index, cartesian_shifts(shifts, cell, edge_index)


def lammps_forces(pair_forces, edge_index, num_atoms):
    """The forces as LAMMPS's update_pair_forces accumulates them, pair by pair:
    f[i] += fij, f[j] -= fij with i = pair_i (our target), j = pair_j (our source)."""
    forces = torch.zeros(num_atoms, 3)
    for (j, i), fij in zip(edge_index.T.tolist(), pair_forces):
        forces[i] += fij
        forces[j] -= fij
    return forces


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_molecule_gives_the_model_numbers(name):
    model, (z, pos) = make_model(name), molecule()
    edge_index = radius_graph(pos, CUTOFF)
    out = GraphPotential(model)(z, pos, edge_index)
    energy, forces = model(z, pos)
    torch.testing.assert_close(out.energy, energy[0, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.forces, forces, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.atom_energy.sum(), out.energy, rtol=0, atol=1e-12)
    lammps = lammps_forces(out.pair_forces, edge_index, len(z))
    torch.testing.assert_close(lammps, forces, rtol=0, atol=1e-12)
    assert out.atom_energy.shape == (len(z),) and out.pair_forces.shape == (edge_index.shape[1], 3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_crystal_gives_the_model_numbers_and_stress(name):
    model, (z, pos, cell) = make_model(name), crystal()
    edge_index, edge_shift = crystal_edges(pos, cell)
    out = GraphPotential(model)(z, pos, edge_index, edge_shift)
    energy, forces, stress = model(z, pos, cell=cell, stress=True)
    torch.testing.assert_close(out.energy, energy[0, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.forces, forces, rtol=0, atol=1e-12)
    lammps = lammps_forces(out.pair_forces, edge_index, len(z))
    torch.testing.assert_close(lammps, forces, rtol=0, atol=1e-12)
    # the virial of the module docstring: dE/d(strain) = sum_e r_e^T g_e
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]] + edge_shift  # [E, 3]
    virial = edge_vec.T @ out.pair_forces / torch.linalg.det(cell).abs()
    torch.testing.assert_close(virial, stress[0], rtol=0, atol=1e-12)
    assert stress.abs().max() > 1e-4  # (a stress to compare)


def test_pair_forces_are_the_gradient_of_the_energy_by_edge_vector():
    """Finite differences of the energy in one edge's shift give its pair force."""
    model, (z, pos, cell) = make_model(), crystal()
    edge_index, edge_shift = crystal_edges(pos, cell)
    potential = GraphPotential(model)
    out = potential(z, pos, edge_index, edge_shift)
    edge, step = 7, 1e-5
    for axis in range(3):
        moved = [edge_shift.clone(), edge_shift.clone()]
        moved[0][edge, axis] += step
        moved[1][edge, axis] -= step
        up, down = (potential(z, pos, edge_index, s).energy for s in moved)
        assert abs((up - down) / (2 * step) - out.pair_forces[edge, axis]) < 1e-7


@pytest.mark.parametrize("name", sorted(MODELS))
def test_equivariance(name):
    """Rotations with inversion, translations, permutations of atoms and of edges."""
    model, (z, pos, cell) = make_model(name), crystal()
    edge_index, edge_shift = crystal_edges(pos, cell)
    potential = GraphPotential(model)
    out = potential(z, pos, edge_index, edge_shift)
    rotation = -rand_rotation()  # [3, 3] (an improper one)
    turned = potential(z, (pos + 0.7) @ rotation.T, edge_index, edge_shift @ rotation.T)
    torch.testing.assert_close(turned.atom_energy, out.atom_energy, rtol=0, atol=1e-9)
    torch.testing.assert_close(turned.forces, out.forces @ rotation.T, rtol=0, atol=1e-9)
    pair_forces = out.pair_forces @ rotation.T
    torch.testing.assert_close(turned.pair_forces, pair_forces, rtol=0, atol=1e-9)
    atoms = torch.tensor([2, 0, 3, 1])  # new atom a is old atoms[a]
    relabel = torch.argsort(atoms)  # old index -> new index
    edges = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = potential(z[atoms], pos[atoms], relabel[edge_index[:, edges]], edge_shift[edges])
    torch.testing.assert_close(shuffled.atom_energy, out.atom_energy[atoms], rtol=0, atol=1e-12)
    torch.testing.assert_close(shuffled.forces, out.forces[atoms], rtol=0, atol=1e-12)
    torch.testing.assert_close(shuffled.pair_forces, out.pair_forces[edges], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_edges_beyond_the_cutoff_contribute_exactly_zero(name):
    """A Verlet list (cutoff + skin) gives the numbers of the exact list, and its extra
    edges get pair forces of exactly zero."""
    model, (z, pos, cell) = make_model(name), crystal()
    potential = GraphPotential(model)
    exact = potential(z, pos, *crystal_edges(pos, cell))
    edge_index, edge_shift = crystal_edges(pos, cell, CUTOFF + 1.0)
    out = potential(z, pos, edge_index, edge_shift)
    length = (pos[edge_index[0]] - pos[edge_index[1]] + edge_shift).norm(dim=1)  # [E]
    assert (length >= CUTOFF).sum() > 10
    assert torch.equal(out.pair_forces[length >= CUTOFF], torch.zeros((length >= CUTOFF).sum(), 3))
    torch.testing.assert_close(out.atom_energy, exact.atom_energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.forces, exact.forces, rtol=0, atol=1e-12)


def test_an_atom_without_edges_and_a_graph_without_edges():
    model, (z, pos) = make_model(), molecule(3)
    potential = GraphPotential(model)
    out = potential(z, pos, torch.zeros(2, 0, dtype=torch.long))
    assert out.pair_forces.shape == (0, 3) and torch.equal(out.forces, torch.zeros(3, 3))
    energy = model.energy(z, pos + torch.tensor([[0.0, 0.0, 0.0], [9.0, 0, 0], [-9.0, 0, 0]]))
    torch.testing.assert_close(out.energy, energy[0, 0], rtol=0, atol=1e-12)  # isolated atoms


def test_a_model_without_its_own_forces_gives_the_same_numbers():
    """derivative=False: the graph potential differentiates the same atom energies."""
    model, (z, pos) = make_model(), molecule()
    energy_model = EquivariantNet(**{**model.config(), "derivative": False}).double()
    energy_model.load_state_dict(model.state_dict())
    edge_index = radius_graph(pos, CUTOFF)
    expected = GraphPotential(model)(z, pos, edge_index)
    for value, reference in zip(GraphPotential(energy_model)(z, pos, edge_index), expected):
        torch.testing.assert_close(value, reference, rtol=0, atol=1e-12)


def test_the_outputs_are_detached_and_the_model_is_not_copied():
    model, (z, pos) = make_model(), molecule()
    potential = GraphPotential(model)
    assert potential.model is model and potential.cutoff == CUTOFF
    out = potential(z, pos.requires_grad_(), radius_graph(pos.detach(), CUTOFF))
    assert not any(t.requires_grad for t in out)
    assert repr(potential).startswith("GraphPotential(EquivariantNet(")


def bad_inputs():
    z, pos = molecule(4)
    edge_index = radius_graph(pos, CUTOFF)
    shift = torch.zeros(edge_index.shape[1], 3)
    nan = pos.clone()
    nan[1, 2] = float("nan")
    inf_shift = shift.clone()
    inf_shift[0, 0] = float("inf")
    far = edge_index.clone()
    far[1, 0] = 4
    return {
        "float z": ((z.double(), pos, edge_index, None), TypeError, "torch.long"),
        "unknown element": ((z.clone().fill_(79), pos, edge_index, None), ValueError, "79"),
        "atoms and positions": ((z[:3], pos, edge_index, None), ValueError, "3 atoms but pos"),
        "NaN position": ((z, nan, edge_index, None), ValueError, "NaN"),
        "float32 positions": ((z, pos.float(), edge_index, None), TypeError, "float32"),
        "edge out of range": ((z, pos, far, None), IndexError, "target node 4 out of range"),
        "float edges": ((z, pos, edge_index.double(), None), TypeError, "integer"),
        "edges [E, 2]": ((z, pos, edge_index.T, None), ValueError, r"\[2, num_edges\]"),
        "shift shape": ((z, pos, edge_index, shift[:-1]), ValueError, "edge_shift must have"),
        "shift dtype": ((z, pos, edge_index, shift.float()), TypeError, "edge_shift"),
        "shift inf": ((z, pos, edge_index, inf_shift), ValueError, "NaN or inf"),
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(bad_inputs()))
def test_bad_inputs_are_refused_with_a_clear_error(case):
    arguments, error, message = bad_inputs()[case]
    with pytest.raises(error, match=message):
        GraphPotential(make_model())(*arguments)


def test_saving_refuses_a_bad_path_before_exporting(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.pt2"):
        save_graph_potential(make_model(), tmp_path / "graph.pt")
    with pytest.raises(TypeError, match="needs a model of the zoo"):
        save_graph_potential(SchNet(), tmp_path / "graph.pt2")
    with pytest.raises(TypeError, match="aoti must be a bool"):
        save_graph_potential(make_model(), tmp_path / "graph.pt2", aoti="yes")
    assert not (tmp_path / "graph.pt2").exists()


def test_only_potentials_of_atom_energies_are_accepted():
    with pytest.raises(TypeError, match=r"needs a model of the zoo .* got SchNet"):
        GraphPotential(SchNet())
    with pytest.raises(ValueError, match="out_channels=2: a potential predicts one energy"):
        GraphPotential(EquivariantNet("4x0e", num_layers=1, out_channels=2))
    with pytest.raises(ValueError, match="readout='mean': per-atom energies need readout='add'"):
        AtomEnergies(EquivariantNet("4x0e", num_layers=1, readout="mean"))


FRESH_PROCESS = """
import sys
import torch, e3nn_pyg

inputs = torch.load(sys.argv[2])
program = torch.export.load(sys.argv[1]).module()
outputs = program(inputs["z"], inputs["edge_vec"], inputs["edge_index"])
torch.save(outputs, sys.argv[3])
"""


@pytest.mark.parametrize(
    "dtype", [torch.float64, pytest.param(torch.float32, marks=pytest.mark.slow)]
)
def test_the_exported_program_runs_in_a_fresh_process(tmp_path, dtype):
    """Exported on a small complete graph and saved with its metadata, called on a crystal
    of another size, in a process that imports torch and e3nn_pyg only: the model's
    numbers to 1e-12 (float64) and 1e-6 (float32, relative to the size of the numbers)."""
    model, (z, pos, cell) = make_model(), crystal()
    model, pos, cell = model.to(dtype), pos.to(dtype), cell.to(dtype)
    edge_index, edge_shift = crystal_edges(pos, cell)
    save_graph_potential(model, tmp_path / "graph.pt2")
    metadata = read_metadata(tmp_path / "graph.pt2")
    assert metadata["interface"] == "graph" and metadata["cutoff"] == CUTOFF
    assert metadata["checks_inputs"] is False
    assert metadata["species"] == [1, 6, 8] and metadata["dtype"] == str(dtype)[6:]
    assert metadata["inputs"] == ["z", "edge_vec", "edge_index"]
    assert metadata["outputs"] == ["atom_energy", "energy", "forces", "pair_forces"]
    edge_vec = edge_vectors(pos, edge_index, edge_shift)
    torch.save(dict(z=z, edge_vec=edge_vec, edge_index=edge_index), tmp_path / "inputs.pt")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(FRESH_PROCESS))
    paths = [str(tmp_path / name) for name in ("graph.pt2", "inputs.pt", "outputs.pt")]
    subprocess.run([sys.executable, str(script), *paths], check=True, timeout=300)
    outputs = torch.load(paths[2])
    energy, forces, stress = model(z, pos, cell=cell, stress=True)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-6
    expected = GraphPotential(model)(z, pos, edge_index, edge_shift)
    for value, reference in zip(outputs, expected):
        assert_close_relative(value, reference, tolerance)
    assert_close_relative(outputs[1], energy[0, 0], tolerance)
    assert_close_relative(outputs[2], forces, tolerance)
    virial = edge_vec.T @ outputs[3] / torch.linalg.det(cell).abs()
    assert_close_relative(virial, stress[0], tolerance)


def assert_close_relative(actual, expected, tolerance):
    """Equal to ``tolerance`` times the largest magnitude of ``expected``."""
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(actual, expected, rtol=0, atol=tolerance * scale)

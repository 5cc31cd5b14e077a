"""The ASE calculator (e3nn_pyg.ase): the model's numbers, forces and stress as derivatives
of the energy, reuse between steps (the Verlet list gives the graph of a new search),
checkpoints, errors, energy conservation, and the molecular-dynamics example."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import SchNet

ase = pytest.importorskip("ase")
from ase import Atoms, units  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from ase.calculators.fd import calculate_numerical_stress  # noqa: E402
from ase.io import read, write  # noqa: E402
from ase.md.velocitydistribution import Stationary, ZeroRotation  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from e3nn_pyg.ase import Calculator  # noqa: E402
from e3nn_pyg.datasets.ase_data import ethanol_paths  # noqa: E402
from e3nn_pyg.export import METADATA_FILE, save_model  # noqa: E402
from e3nn_pyg.graph import periodic_radius_graph  # noqa: E402
from e3nn_pyg.models import (  # noqa: E402
    EnergyForces,
    EquivariantNet,
    ManyBodyNet,
    SchNetInteractionGraph,
    VerletInteractionGraph,
)
from e3nn_pyg.models.graph_input import save_graph_potential  # noqa: E402
from e3nn_pyg.training import (  # noqa: E402
    ConfigError,
    TrainConfig,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    train,
)

F64 = torch.float64
EXAMPLE = Path(__file__).parents[1] / "examples" / "md_ethanol.py"


def small_net(derivative=True, seed=0, **overrides) -> EquivariantNet:
    """A small, smooth (untrained) float64 potential; a mean per atom sets a realistic
    total energy (a few hundred eV)."""
    torch.manual_seed(seed)
    arguments = dict(hidden_Rs="8x0e + 4x1o + 2x2e", num_layers=2, cutoff=4.0, num_basis=6,
                     radial_hidden=16, mean=-30.0, derivative=derivative)  # fmt: skip
    return EquivariantNet(**{**arguments, **overrides}).to(F64)


def ethanol(index=0) -> Atoms:
    atoms = read(ethanol_paths().train, index=index)
    atoms.pbc = False
    return atoms


def crystal(pbc=True) -> Atoms:
    """Four atoms in a triclinic cell smaller than the cutoff (several images of each atom)."""
    cell = np.array([[3.1, 0.0, 0.0], [0.7, 2.9, 0.0], [-0.4, 0.5, 3.3]])
    rng = np.random.default_rng(1)
    positions = rng.uniform(0, 1, (4, 3)) @ cell
    return Atoms("CuCuAuH", positions=positions, cell=cell, pbc=pbc)


def as_tensors(atoms: Atoms, dtype=F64, device="cpu"):
    z = torch.tensor(atoms.numbers, device=device)
    pos = torch.tensor(atoms.positions, dtype=dtype, device=device)
    return z, pos


# -- the numbers of the model -------------------------------------------------------------------
@pytest.mark.parametrize("derivative", [True, False])
def test_energy_and_forces_are_the_models(derivative, device):
    model = small_net(derivative).eval()
    atoms = ethanol()
    atoms.calc = Calculator(model, device=device)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    z, pos = as_tensors(atoms)
    if derivative:
        expected_energy, expected_forces = model(z, pos)
    else:
        pos.requires_grad_(True)
        expected_energy = model(z, pos)
        expected_forces = -torch.autograd.grad(expected_energy.sum(), pos)[0]
    assert isinstance(energy, float) and energy < -100
    assert atoms.get_potential_energy(force_consistent=True) == energy  # free energy
    assert forces.dtype == np.float64 and forces.shape == (9, 3)
    assert energy == pytest.approx(expected_energy.item(), abs=1e-11)
    np.testing.assert_allclose(forces, expected_forces.detach().numpy(), rtol=0, atol=1e-12)


def test_energy_models_of_other_kinds():
    torch.manual_seed(0)
    schnet = SchNet(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=8,
                    cutoff=4.0, interaction_graph=SchNetInteractionGraph(4.0)).to(F64)  # fmt: skip
    atoms = ethanol()
    z, pos = as_tensors(atoms)
    expected_energy, expected_forces = EnergyForces(schnet).eval()(z, pos)
    for model in (schnet, EnergyForces(schnet)):  # forces by the calculator, by the model
        atoms.calc = Calculator(model)
        assert atoms.get_potential_energy() == pytest.approx(expected_energy.item(), abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), expected_forces.numpy(), atol=1e-12)
        assert atoms.calc.neighbor_list_builds == 0  # SchNet builds its own graph


def test_forces_are_finite_differences_of_the_energy():
    atoms = ethanol(3)
    atoms.calc = Calculator(small_net())
    forces, step = atoms.get_forces(), 1e-5
    assert np.abs(forces).max() > 0.05
    probe = atoms.copy()
    probe.calc = atoms.calc
    for direction in np.random.default_rng(0).normal(size=(3, 9, 3)):  # random displacements
        energies = []
        for sign in (1, -1):
            probe.positions = atoms.positions + sign * step * direction
            energies.append(probe.get_potential_energy())
        slope = (energies[0] - energies[1]) / (2 * step)  # dE/dt along x + t d
        assert slope == pytest.approx(-(forces * direction).sum(), abs=1e-8)


@pytest.mark.parametrize("pbc", [True, [True, False, True]])
def test_stress_is_the_strain_derivative_of_the_energy(pbc):
    model = small_net().eval()
    atoms = crystal(pbc)
    atoms.calc = Calculator(model)
    stress = atoms.get_stress()  # Voigt xx, yy, zz, yz, xz, xy
    numerical = calculate_numerical_stress(atoms, eps=1e-5)  # ASE's own convention
    assert stress.shape == (6,) and np.abs(stress).max() > 1e-3
    np.testing.assert_allclose(stress, numerical, rtol=0, atol=1e-8)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), atoms.get_stress(voigt=False).T)
    z, pos = as_tensors(atoms)
    cell = torch.tensor(atoms.cell.array)
    energy, forces, expected = model(z, pos, cell=cell, pbc=torch.tensor(atoms.pbc), stress=True)
    assert atoms.get_potential_energy() == pytest.approx(energy.item(), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), expected[0].numpy(), atol=1e-12)


@pytest.mark.parametrize("derivative", [True, False])
def test_a_many_body_model_gives_its_energy_forces_and_stress(derivative):
    """ManyBodyNet through the calculator: its numbers, the stress against ASE's finite
    differences, and the Verlet list's dynamics bit for bit those of a new search."""
    torch.manual_seed(0)
    model = ManyBodyNet(num_channels=4, cutoff=4.0, radial_hidden=8, mean=-30.0,
                        derivative=derivative).to(F64).eval()  # fmt: skip
    atoms = crystal()
    atoms.calc = Calculator(model)
    z, pos = as_tensors(atoms)
    cell, pbc = torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc)
    energy = model.energy(z, pos, cell=cell, pbc=pbc)
    assert atoms.get_potential_energy() == pytest.approx(energy.item(), abs=1e-12)
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_stress(), numerical, rtol=0, atol=1e-8)
    energies = []
    for skin in (0.3, 0.0):
        moving = crystal()
        moving.set_momenta(np.random.default_rng(0).normal(0, 0.5, (len(moving), 3)))
        moving.calc = Calculator(model, skin=skin)
        dynamics = VelocityVerlet(moving, timestep=1.0 * units.fs)
        dynamics.attach(lambda m=moving: energies.append(m.get_potential_energy()))
        dynamics.run(6)
    assert energies[:7] == energies[7:]  # (the first call and 6 steps, each run)


def test_stress_of_a_model_without_its_own_forces():
    atoms = crystal()
    atoms.calc = Calculator(small_net(derivative=False))
    np.testing.assert_allclose(
        atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=1e-8
    )


def test_float32_on_a_copy_of_the_model():
    model = small_net()
    atoms = ethanol()
    atoms.calc = Calculator(model, dtype="float32")
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert forces.dtype == np.float64
    assert atoms.calc.model.std.dtype == torch.float32
    assert model.std.dtype == F64 and model.training  # the module passed in is unchanged
    reference = ethanol()
    reference.calc = Calculator(model)
    assert energy == pytest.approx(reference.get_potential_energy(), abs=1e-3)
    np.testing.assert_allclose(forces, reference.get_forces(), atol=1e-4)


# -- reuse between steps ------------------------------------------------------------------------
def test_the_model_runs_once_per_state():
    atoms = ethanol()
    atoms.calc = calculator = Calculator(small_net())
    calls = []
    calculator.model.register_forward_hook(lambda *_: calls.append(1))
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_potential_energy()
    assert len(calls) == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert len(calls) == 2
    atoms.numbers[8] = 9  # a hydrogen becomes fluorine: the cached numbers follow
    z, pos = as_tensors(atoms)
    assert atoms.get_potential_energy() == pytest.approx(
        calculator.model(z, pos)[0].item(), abs=1e-12
    )
    assert len(calls) == 4


@pytest.mark.parametrize("periodic", [False, True])
def test_dynamics_with_the_verlet_list_are_the_dynamics_without(periodic):
    model = small_net(hidden_Rs="4x0e + 2x1o")
    runs = []
    for skin in (0.3, 0.0):
        atoms = crystal() if periodic else ethanol()
        atoms.set_momenta(np.random.default_rng(0).normal(0, 0.5, (len(atoms), 3)))
        atoms.calc = Calculator(model, skin=skin)
        dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
        records = []

        def record(atoms=atoms, records=records):
            stress = atoms.get_stress() if periodic else None
            records.append((atoms.get_potential_energy(), atoms.get_forces(), stress))

        dynamics.attach(record)
        dynamics.run(16)
        runs.append((records, atoms.calc.neighbor_list_builds))
    (with_list, builds), (without, no_builds) = runs
    assert 1 < builds < 16 and no_builds == 0
    for (e1, f1, s1), (e2, f2, s2) in zip(with_list, without, strict=True):
        assert e1 == e2 and np.array_equal(f1, f2)  # bit for bit
        assert s1 is None or np.array_equal(s1, s2)


def test_a_graph_of_the_user_is_used_and_a_verlet_graph_kept():
    def periodic_only(pos, batch, cell, pbc):  # a user's graph (the public search)
        return periodic_radius_graph(pos, 4.0, cell, pbc, batch)

    atoms = crystal()
    atoms.calc = Calculator(small_net())
    expected = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    for graph in (periodic_only, VerletInteractionGraph(4.0, skin=0.2)):
        atoms.calc = Calculator(small_net(interaction_graph=graph))
        assert atoms.get_potential_energy() == pytest.approx(expected[0], abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), expected[1], atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), expected[2], atol=1e-12)
    assert atoms.calc.neighbor_list_builds == 1  # the user's Verlet graph, on the copy
    assert graph.builds == 0  # the model passed in is unchanged


# -- elements unseen in training -----------------------------------------------------------------
TRAINED = [1, 6, 8]
TRAINED_NAMES = r"H \(Z=1\), C \(Z=6\), O \(Z=8\)"


def schnet_potential(species):
    torch.manual_seed(0)
    schnet = SchNet(hidden_channels=8, num_filters=8, num_interactions=1, num_gaussians=4,
                    cutoff=4.0, interaction_graph=SchNetInteractionGraph(4.0)).to(F64)  # fmt: skip
    return EnergyForces(schnet, species=species)


def chlorinated_ethanol() -> Atoms:
    atoms = ethanol()
    atoms.numbers[-1] = 17  # a hydrogen becomes chlorine
    return atoms


#: (model, atoms, the elements named)
UNSEEN = {
    "force model, molecule": (lambda: small_net(species=TRAINED), chlorinated_ethanol,
                              r"Cl \(Z=17\)"),
    "energy model, molecule": (lambda: small_net(False, species=TRAINED), chlorinated_ethanol,
                               r"Cl \(Z=17\)"),
    "force model, crystal": (lambda: small_net(species=TRAINED), crystal,
                             r"Cu \(Z=29\), Au \(Z=79\)"),
    "SchNet, molecule": (lambda: schnet_potential(TRAINED), chlorinated_ethanol,
                         r"Cl \(Z=17\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", UNSEEN)
def test_elements_unseen_in_training_are_refused(case):
    build, structure, named = UNSEEN[case]
    atoms = structure()
    atoms.calc = Calculator(build())
    with pytest.raises(
        ValueError, match=f"not trained on: {named}; it was trained on {TRAINED_NAMES}"
    ):
        atoms.get_potential_energy()
    atoms.calc = Calculator(build(), allow_unseen_elements=True)
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()
    assert atoms.calc.parameters["allow_unseen_elements"] is True


def test_trained_elements_pass_and_the_opt_in_must_be_a_bool():
    atoms = ethanol()
    atoms.calc = Calculator(small_net(species=TRAINED))
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(TypeError, match="allow_unseen_elements must be a bool"):
        Calculator(small_net(), allow_unseen_elements="yes")


# -- errors ---------------------------------------------------------------------------------------
def test_stress_of_a_molecule_is_not_implemented():
    atoms = ethanol()
    atoms.calc = Calculator(small_net())
    with pytest.raises(PropertyNotImplementedError, match="periodic systems only"):
        atoms.get_stress()


def test_periodic_systems_need_an_equivariant_net():
    torch.manual_seed(0)
    atoms = crystal()
    schnet = SchNet(hidden_channels=8, num_filters=8, num_gaussians=4,
                    interaction_graph=SchNetInteractionGraph(4.0))  # fmt: skip
    atoms.calc = Calculator(schnet)
    with pytest.raises(ValueError, match=r"need a model of the zoo .*; SchNet takes no cell"):
        atoms.get_potential_energy()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"torch\.nn\.Module or the path of a checkpoint"):
        Calculator(3)
    with pytest.raises(ValueError, match="out_channels=2"):
        Calculator(EquivariantNet("4x0e", num_layers=1, out_channels=2))
    for dtype in ("float16", torch.int64, "double"):
        with pytest.raises(ValueError, match=r"dtype must be torch\.float32 or torch\.float64"):
            Calculator(small_net(), dtype=dtype)
    with pytest.raises(ValueError, match="device must be"):
        Calculator(small_net(), device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Calculator(small_net(), device="cuda")
    for skin in (-0.1, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="skin must be a number >= 0"):
            Calculator(small_net(), skin=skin)
    with pytest.raises(ConfigError, match="does not exist"):
        Calculator(tmp_path / "missing.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        Calculator(str(tmp_path / "notes.pt"))


def test_bad_models_and_atoms_are_refused():
    class Pairs(torch.nn.Module):  # two numbers per structure: not an energy
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones((), dtype=F64))

        def forward(self, z, pos, batch):
            return (self.scale * pos.sum()).expand(1, 2)

    class EnergyOnly(Pairs):  # a tuple without the forces
        def forward(self, z, pos, batch):
            return (self.scale * pos.sum()).reshape(1, 1), None

    atoms = ethanol()
    atoms.calc = Calculator(Pairs())
    with pytest.raises(ValueError, match=r"energy of one structure as \[1, 1\].*got \[1, 2\]"):
        atoms.get_potential_energy()
    atoms.calc = Calculator(EnergyOnly())
    with pytest.raises(ValueError, match=r"must return forces \[9, 3\], got NoneType"):
        atoms.get_potential_energy()
    empty = Atoms()
    empty.calc = Calculator(small_net())
    with pytest.raises(ValueError, match="at least one atom"):
        empty.get_potential_energy()


# -- checkpoints ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def potential(tmp_path_factory):
    """The best.pt of a potential trained for two epochs on 16 ethanol structures (float32)."""
    folder = tmp_path_factory.mktemp("potential")
    write(folder / "train.xyz", read(ethanol_paths().train, index=":16"))
    config = TrainConfig.from_dict({
        "data": str(folder / "train.xyz"), "data_root": str(folder / "cache"),
        "out": str(folder / "run"), "epochs": 2, "batch_size": 8, "progress": False,
        "model": {"hidden_Rs": "4x0e + 2x1o", "num_layers": 2, "cutoff": 4.0, "num_basis": 4,
                  "radial_hidden": 8},
    })  # fmt: skip
    train(config, log=lambda _: None)
    return folder / "run" / "equivariant_net" / "best.pt"


def test_a_checkpoint_path(potential):
    model = model_from_checkpoint(load_checkpoint(potential), potential).eval()
    atoms = ethanol(5)
    atoms.calc = Calculator(str(potential))
    assert atoms.calc.dtype == torch.float32  # as trained
    energy, forces = model(*as_tensors(atoms, torch.float32))
    assert atoms.get_potential_energy() == pytest.approx(energy.item(), rel=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-5)
    atoms.calc = Calculator(potential, dtype=torch.float64)  # a PathLike, converted
    energy, forces = model.double()(*as_tensors(atoms))
    assert atoms.get_potential_energy() == pytest.approx(energy.item(), abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-10)


def test_a_checkpoint_knows_the_elements_it_was_trained_on(potential):
    atoms = chlorinated_ethanol()
    atoms.calc = Calculator(potential)
    with pytest.raises(
        ValueError, match=rf"not trained on: Cl \(Z=17\); it was trained on {TRAINED_NAMES}"
    ):
        atoms.get_potential_energy()
    atoms.calc = Calculator(potential, allow_unseen_elements=True)
    assert np.isfinite(atoms.get_potential_energy())


def test_a_checkpoint_of_a_qm9_property_is_refused(potential, tmp_path):
    payload = load_checkpoint(potential)
    payload.pop("format"), payload.pop("format_version")
    payload["target"] = {"name": "homo", "index": 2, "unit": "eV", "report_unit": "meV",
                         "report_scale": 1000.0}  # what a QM9 run records  # fmt: skip
    save_checkpoint(tmp_path / "homo.pt", payload)
    with pytest.raises(ConfigError, match="predicts homo of QM9 molecules, not a potential"):
        Calculator(tmp_path / "homo.pt")


# -- exported programs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """A small potential and its periodic program (``save_model``: exported once, seconds)."""
    model = small_net(species=[1, 6, 8, 29, 79]).eval()
    path = save_model(model, tmp_path_factory.mktemp("export") / "crystal.pt2", periodic=True)
    return model, path


def test_a_program_gives_the_numbers_of_its_model(program):
    """Energy, forces and stress of a crystal (all axes periodic, and a slab), and a few
    steps of dynamics, equal to those of the calculator on the model."""
    model, path = program
    exported = Calculator(path)  # (loading a program takes seconds)
    for pbc in (True, [True, False, True]):
        atoms = crystal(pbc)
        atoms.calc = Calculator(model)
        expected = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = exported
        assert atoms.get_potential_energy() == pytest.approx(expected[0], abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), expected[1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), expected[2], rtol=0, atol=1e-12)
        assert np.abs(expected[2]).max() > 1e-3
    expected_positions = verlet_positions(Calculator(model, skin=0.0))
    np.testing.assert_allclose(verlet_positions(exported), expected_positions, rtol=0, atol=1e-10)
    assert repr(exported) == f"Calculator('{path}', device=cpu, dtype=torch.float64, skin=0.5)"
    assert exported.neighbor_list_builds == 0  # the program searches its own graph


def verlet_positions(calculator) -> np.ndarray:
    """The crystal's positions after three velocity-Verlet steps from fixed momenta."""
    moving = crystal()
    moving.set_momenta(np.random.default_rng(0).normal(0, 0.5, (len(moving), 3)))
    moving.calc = calculator
    VelocityVerlet(moving, timestep=1.0 * units.fs).run(3)
    return moving.positions


@pytest.fixture(scope="module")
def graph_program(tmp_path_factory):
    """A small potential and its graph program (``save_graph_potential``)."""
    model = small_net(species=[1, 6, 8, 29, 79]).eval()
    path = save_graph_potential(model, tmp_path_factory.mktemp("export") / "graph.pt2")
    return model, path


def test_a_graph_program_runs_on_the_verlet_list(graph_program):
    """The graph program computes molecules and crystals (energy, forces, stress from the
    pair forces) as the model does, on the calculator's Verlet list."""
    model, path = graph_program
    exported = Calculator(path, skin=0.3)
    for atoms in (crystal(), crystal([True, False, True]), ethanol()):
        atoms.calc = Calculator(model)
        expected = atoms.get_potential_energy(), atoms.get_forces()
        stress = atoms.get_stress() if atoms.pbc.any() else None
        atoms.calc = exported
        assert atoms.get_potential_energy() == pytest.approx(expected[0], abs=1e-11)
        np.testing.assert_allclose(atoms.get_forces(), expected[1], rtol=0, atol=1e-12)
        if stress is not None:
            np.testing.assert_allclose(atoms.get_stress(), stress, rtol=0, atol=1e-12)
    assert exported.neighbor_list_builds == 3  # (a new structure each)
    expected_positions = verlet_positions(Calculator(model, skin=0.0))
    np.testing.assert_allclose(verlet_positions(exported), expected_positions, rtol=0, atol=1e-10)
    assert 3 < exported.neighbor_list_builds < 3 + 4  # (searched once, kept for a step)


def test_a_graph_program_checks_the_elements_itself(graph_program):
    model, path = graph_program
    atoms = crystal()
    atoms.numbers[0] = 26  # iron
    atoms.calc = Calculator(path)
    with pytest.raises(ValueError, match=r"not trained on: Fe \(Z=26\)"):
        atoms.get_potential_energy()
    atoms.calc = Calculator(path, allow_unseen_elements=True)  # (the program does not check)
    energy = atoms.get_potential_energy()
    atoms.calc = Calculator(model, allow_unseen_elements=True)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-11)


def fake_program(path, **metadata):
    """A ``.pt2`` file of a trivial program with the given metadata (the calculator reads
    it before it runs the program)."""
    metadata = {"format": "torch.export", "outputs": ["energy", "forces"], "periodic": False,
                "dtype": "float64", "species": None, "config": {"max_z": 100},
                **metadata}  # fmt: skip
    program = torch.export.export(torch.nn.Identity(), (torch.zeros(2),))
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(metadata)})
    return path


def test_programs_and_structures_the_calculator_refuses(program, tmp_path):
    path = program[1]
    with pytest.raises(ValueError, match=r"exported in torch\.float64, not torch\.float32"):
        Calculator(path, dtype="float32")
    with pytest.raises(ValueError, match=r"allow_unseen_elements=True cannot apply"):
        Calculator(path, allow_unseen_elements=True)
    atoms = ethanol()
    atoms.calc = calculator = Calculator(path)
    with pytest.raises(ValueError, match="exported for periodic structures"):
        atoms.get_potential_energy()
    atoms = crystal()
    atoms.numbers[0] = 26  # iron
    atoms.calc = calculator
    with pytest.raises(ValueError, match=r"not trained on: Fe \(Z=26\)"):
        atoms.get_potential_energy()
    molecular = fake_program(tmp_path / "molecule.pt2")
    atoms = crystal()
    atoms.calc = Calculator(molecular)
    with pytest.raises(ValueError, match=r"exported for molecules \(it takes no cell\)"):
        atoms.get_potential_energy()
    unchecked = fake_program(tmp_path / "any.pt2", species=[1, 8], allow_unseen_elements=True)
    assert Calculator(unchecked, allow_unseen_elements=True).model.known_species is None
    with pytest.raises(ValueError, match="not a potential"):
        Calculator(fake_program(tmp_path / "u0.pt2", outputs=["U0"]))
    with pytest.raises(ValueError, match="is an AOTInductor package"):
        Calculator(fake_program(tmp_path / "aoti.pt2", format="aoti"))
    with pytest.raises(FileNotFoundError, match="no file"):
        Calculator(tmp_path / "missing.pt2")


# -- the example ---------------------------------------------------------------------------------
def example():
    spec = importlib.util.spec_from_file_location("md_ethanol", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_refuses_to_run_without_a_checkpoint(capsys):
    with pytest.raises(SystemExit) as exit_info:
        example().main([])
    assert exit_info.value.code == 2
    assert "--checkpoint runs/ethanol/many_body/best.pt" in capsys.readouterr().err


def test_the_example_runs_on_a_checkpoint(potential, capsys):
    status = example().main(["--checkpoint", str(potential), "--steps", "4",
                             "--print-every", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    summary = out.strip().splitlines()[-1]
    assert "4 Langevin + 4 NVE steps" in summary and "steps/s" in summary
    assert summary.endswith("stable")
    assert example().main(["--checkpoint", str(potential.parent / "nothing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_molecule_check_finds_a_broken_bond():
    module = example()
    atoms = ethanol()
    check = module.MoleculeCheck(atoms)
    assert len(check.bonds) == 8  # C-C, C-O, O-H and five C-H
    check.update(atoms)
    assert check.stable and check.max_distance < 4.0
    hydrogen = int(check.bonds[np.argmax(atoms.numbers[check.bonds[:, 1]] == 1), 1])
    atoms.positions[hydrogen] += 2.0  # torn away from its carbon or oxygen
    check.update(atoms)
    assert not check.stable and check.longest_ratio > 1.5


# -- energy conservation ------------------------------------------------------------------------
@pytest.mark.slow
def test_nve_conserves_the_energy():
    """Velocity Verlet over 0.1 ps from 300 K with a smooth float64 potential: the total
    energy stays within 3e-5 eV/atom of its start at 0.25 fs (measured: 1.4e-5, while the
    potential energy swings over 0.43 eV), and its error shrinks as the time step squared
    (measured: 5.6e-5 eV/atom at 0.5 fs), the mark of forces that are the energy's gradient.
    """
    model = small_net()
    deviations = {}
    for timestep, steps in ((0.25, 400), (0.5, 200)):
        atoms = ethanol()
        atoms.calc = Calculator(model)
        rng = np.random.default_rng(0)
        scale = np.sqrt(atoms.get_masses() * units.kB * 300.0)[:, None]  # [9, 1]
        atoms.set_momenta(rng.normal(0.0, 1.0, (9, 3)) * scale)
        Stationary(atoms)
        ZeroRotation(atoms)
        dynamics = VelocityVerlet(atoms, timestep=timestep * units.fs)
        total, potential = [], []
        dynamics.attach(lambda a=atoms, t=total, p=potential: (
            t.append(a.get_total_energy()), p.append(a.get_potential_energy())))  # fmt: skip
        dynamics.run(steps)
        total, potential = np.array(total), np.array(potential)
        deviations[timestep] = np.abs(total - total[0]).max() / len(atoms)  # eV/atom
        assert np.ptp(potential) > 200 * np.ptp(total)  # energy flows, the sum stays
    print(f"NVE: largest deviation of the total energy {deviations} eV/atom")
    assert deviations[0.25] < 3e-5
    assert 3.0 < deviations[0.5] / deviations[0.25] < 5.0  # second order: 4

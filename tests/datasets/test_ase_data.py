"""Structures read with ASE: the shipped ethanol files against their text, periodic EMT data
(energy, forces, stress read back exactly), weights and config types, mixed batches, the
cache (reuse, stale source, damaged files), seeded splits and the errors."""

import os
import re
import time
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from e3nn_pyg.datasets import (
    ETHANOL_DIR,
    ASEDataset,
    align_fields,
    atoms_to_data,
    ethanol_paths,
    random_split,
    read_structures,
)

SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8}


def parse_extxyz(path):
    """The frames of an extended XYZ file with Properties species:pos[:forces], read as text:
    (z, positions, forces or None, energy, config_type) per frame."""
    lines = open(path).read().splitlines()
    frames, i = [], 0
    while i < len(lines):
        n, header = int(lines[i]), lines[i + 1]
        energy = float(re.search(r"(?:^|\s)energy=(\S+)", header).group(1))
        config_type = re.search(r"config_type=(\S+)", header).group(1)
        rows = [line.split() for line in lines[i + 2 : i + 2 + n]]
        z = [SYMBOL_TO_Z[r[0]] for r in rows]
        pos = [[float(v) for v in r[1:4]] for r in rows]
        forces = [[float(v) for v in r[4:7]] for r in rows] if len(rows[0]) == 7 else None
        frames.append((z, pos, forces, energy, config_type))
        i += n + 2
    return frames


def test_ethanol_files_are_shipped_with_license_and_attribution():
    paths = ethanol_paths()
    assert [p.name for p in paths] == ["train.xyz", "test_MD.xyz", "isolated_atoms.xyz"]
    assert all(p.parent == ETHANOL_DIR and p.is_file() for p in paths)
    assert (ETHANOL_DIR / "LICENSE").read_text().startswith("MIT License")
    assert "Christensen" in (ETHANOL_DIR / "README.md").read_text()


@pytest.mark.parametrize("which", ["train", "test"])
def test_ethanol_matches_the_file_text(which):
    path = getattr(ethanol_paths(), which)
    structures = read_structures(path)
    frames = parse_extxyz(path)
    assert len(structures) == len(frames) == 1000
    for data, (z, pos, forces, energy, config_type) in zip(structures, frames):
        assert data.z.dtype == torch.long and data.z.tolist() == z
        assert data.pos.dtype == torch.float64 and data.pos.tolist() == pos
        assert data.forces.tolist() == forces
        assert data.energy.dtype == torch.float64 and data.energy.tolist() == [energy]
        assert data.config_type == config_type


def test_first_training_structure():
    first = read_structures(ethanol_paths().train, index=0)[0]
    assert first.z.tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    assert first.energy.item() == -4209.4657843064815  # eV, the first header of train.xyz
    assert first.forces[0].tolist() == [-4.15950961, 0.10729389, 3.61777644]  # eV/Å
    # molecules in a 50 Å box that is not periodic; every force labelled, weight 1
    assert torch.equal(first.cell, 50.0 * torch.eye(3, dtype=torch.float64)[None])
    assert first.pbc.tolist() == [[False, False, False]]
    assert first.weight.tolist() == [1.0] and first.forces_weight.tolist() == [1.0]
    assert "stress" not in first


def test_ethanol_test_set_reads_fast():
    read_structures(ethanol_paths().isolated_atoms)  # ASE's imports out of the timing
    start = time.perf_counter()
    structures = read_structures(ethanol_paths().test)
    seconds = time.perf_counter() - start
    assert len(structures) == 1000 and seconds < 2.0, seconds


def test_isolated_atoms_file():
    structures = read_structures(ethanol_paths().isolated_atoms)
    assert [d.z.tolist() for d in structures] == [[1], [6], [8], [7]]
    assert [d.config_type for d in structures] == ["isolated_atom"] * 4
    assert structures[0].energy.item() == -13.568422383046626
    for data in structures:  # no cell in the file: a zero cell, not periodic, no forces
        assert torch.equal(data.cell, torch.zeros(1, 3, 3, dtype=torch.float64))
        assert not data.pbc.any() and "forces" not in data and "forces_weight" not in data


def test_index_and_dtype():
    path = ethanol_paths().train
    every_100th = read_structures(path, index="::100")
    last = read_structures(path, index=-1)
    everything = read_structures(path)
    assert len(every_100th) == 10 and len(last) == 1
    assert torch.equal(every_100th[3].pos, everything[300].pos)
    assert torch.equal(last[0].energy, everything[-1].energy)
    single = read_structures(path, index=0, dtype=torch.float32)[0]
    assert single.pos.dtype == single.forces.dtype == single.cell.dtype == torch.float32
    assert single.energy.dtype == torch.float64  # totals keep their meV
    assert torch.equal(single.pos, everything[0].pos.float())


def cu_structures(count=4, seed=0):
    """Strained and displaced fcc copper (a triclinic primitive cell, 8 atoms) with EMT."""
    rng = np.random.default_rng(seed)
    structures = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
        strain = np.eye(3) + 0.02 * rng.normal(size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += 0.1 * rng.normal(size=atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.get_stress()
        if k % 2:
            atoms.info["weight"] = 2.5
            atoms.info["config_type"] = "strained"
        structures.append(atoms)
    return structures


def test_periodic_emt_data_read_back_exactly(tmp_path):
    structures = cu_structures()
    path = tmp_path / "cu.xyz"
    write(path, structures, format="extxyz")
    reread = read(path, index=":")
    data_list = read_structures(path)
    assert len(data_list) == 4
    for data, atoms, original in zip(data_list, reread, structures):
        assert data.z.tolist() == [29] * 8
        assert data.pbc.tolist() == [[True, True, True]]
        # exactly what ASE reads from the file ...
        assert torch.equal(data.pos, torch.from_numpy(atoms.positions))
        assert torch.equal(data.cell[0], torch.from_numpy(atoms.cell.array))
        assert data.energy.item() == atoms.get_potential_energy()
        assert torch.equal(data.forces, torch.from_numpy(atoms.get_forces()))
        assert torch.equal(data.stress[0], torch.from_numpy(atoms.get_stress(voigt=False)))
        # ... which is EMT's result (energy, cell and stress in full, forces to 8 decimals)
        assert data.energy.item() == original.get_potential_energy()
        assert torch.equal(data.cell[0], torch.from_numpy(original.cell.array))
        expected_stress = torch.from_numpy(original.get_stress(voigt=False))
        assert torch.equal(data.stress[0], expected_stress)
        assert torch.equal(data.stress[0], data.stress[0].T)
        forces = torch.from_numpy(original.get_forces())
        torch.testing.assert_close(data.forces, forces, atol=5e-9, rtol=0)
        assert data.stress_weight.tolist() == [1.0]
    assert [d.weight.item() for d in data_list] == [1.0, 2.5, 1.0, 2.5]
    assert [d.config_type for d in data_list] == ["Default", "strained"] * 2


def test_custom_keys_and_voigt_stress(tmp_path):
    atoms = cu_structures(1)[0]
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    stress = atoms.get_stress()  # Voigt: xx yy zz yz xz xy
    labelled = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    labelled.info.update(REF_energy=energy, REF_stress=stress, REF_w=0.5, REF_type="md")
    labelled.arrays["REF_forces"] = forces
    path = tmp_path / "ref.xyz"
    write(path, labelled, format="extxyz")
    keys = dict(energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress")
    data = read_structures(path, **keys, weight_key="REF_w", config_type_key="REF_type")[0]
    assert data.energy.item() == energy
    torch.testing.assert_close(data.forces, torch.from_numpy(forces), atol=5e-9, rtol=0)
    full = torch.from_numpy(atoms.get_stress(voigt=False))
    torch.testing.assert_close(data.stress[0], full, atol=1e-15, rtol=0)
    assert data.weight.item() == 0.5 and data.config_type == "md"
    # the default names find nothing there
    with pytest.raises(ValueError, match=r"no energy 'energy'.*found: REF_energy"):
        read_structures(path)
    # a key of None skips a property
    bare = read_structures(path, **{**keys, "forces_key": None, "stress_key": None})[0]
    assert "forces" not in bare and "stress" not in bare and "energy" in bare


def test_atoms_to_data_reads_a_single_point_calculator():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    forces = np.arange(9.0).reshape(3, 3)
    atoms.calc = SinglePointCalculator(atoms, energy=-14.5, forces=forces)
    data = atoms_to_data(atoms)
    assert data.energy.tolist() == [-14.5] and data.forces.tolist() == forces.tolist()
    assert data.z.tolist() == [1, 1, 8] and data.config_type == "Default"
    assert "stress" not in data and "forces_weight" not in data
    unlabelled = atoms_to_data(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]]), energy_key=None)
    assert "energy" not in unlabelled and unlabelled.pos.shape == (2, 3)


def test_partial_labels_get_zeros_and_zero_weights(tmp_path):
    crystals = cu_structures(2)
    unlabelled = crystals[1].copy()  # energy only: no forces, no stress
    unlabelled.calc = SinglePointCalculator(unlabelled, energy=1.25)
    path = tmp_path / "mixed.xyz"
    write(path, [crystals[0], unlabelled], format="extxyz")
    first, second = read_structures(path)
    assert first.forces_weight.tolist() == [1.0] and first.stress_weight.tolist() == [1.0]
    assert second.forces_weight.tolist() == [0.0] and second.stress_weight.tolist() == [0.0]
    assert torch.equal(second.forces, torch.zeros(8, 3, dtype=torch.float64))
    assert torch.equal(second.stress, torch.zeros(1, 3, 3, dtype=torch.float64))
    assert second.energy.item() == 1.25


def test_molecules_and_crystals_batch_together(tmp_path):
    path = tmp_path / "cu.xyz"
    write(path, cu_structures(2), format="extxyz")
    molecules = read_structures(ethanol_paths().train, index=":2")
    atoms = read_structures(ethanol_paths().isolated_atoms, index=":2")
    crystals = read_structures(path)
    mixed = align_fields(molecules + atoms + crystals)
    assert "forces_weight" not in atoms[0]  # the inputs are left as they are
    batch = Batch.from_data_list(mixed)
    assert batch.num_graphs == 6 and batch.num_nodes == 9 + 9 + 1 + 1 + 8 + 8
    assert batch.cell.shape == (6, 3, 3) and batch.pbc.shape == (6, 3)
    assert batch.pbc.tolist() == [[False] * 3] * 4 + [[True] * 3] * 2
    assert batch.energy.shape == (6,) and batch.forces.shape == (batch.num_nodes, 3)
    assert batch.forces_weight.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert batch.stress_weight.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert batch.stress.shape == (6, 3, 3)
    assert torch.equal(batch.stress[4], crystals[0].stress[0])
    expected = ["Training_set"] * 2 + ["isolated_atom"] * 2 + ["Default", "strained"]
    assert batch.config_type == expected
    # one structure at a time gives the same rows
    assert torch.equal(batch.get_example(5).forces, crystals[1].forces)


@pytest.fixture
def cu_file(tmp_path):
    path = tmp_path / "data" / "cu.xyz"
    path.parent.mkdir()
    write(path, cu_structures(6), format="extxyz")
    return path


def assert_same_structures(dataset, structures):
    assert len(dataset) == len(structures)
    for a, b in zip(dataset, structures):
        assert a.keys() == b.keys()
        for key in a.keys():
            value = a[key]
            assert torch.equal(value, b[key]) if torch.is_tensor(value) else value == b[key]


def test_dataset_equals_the_reader_and_reuses_its_cache(cu_file, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    dataset = ASEDataset(cu_file, root=root, log=False)
    assert_same_structures(dataset, read_structures(cu_file))
    assert repr(dataset) == f"ASEDataset(6, path={str(cu_file)!r})"
    assert os.path.basename(dataset.processed_dir).startswith("cu_")
    assert sorted(os.listdir(dataset.processed_dir)) == [
        "data.pt", "data.source.json", "pre_filter.pt", "pre_transform.pt",
    ]  # fmt: skip

    def fail(self):
        raise AssertionError("read again")

    monkeypatch.setattr(ASEDataset, "read_source", fail)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = ASEDataset(cu_file, root=root, log=False)
    assert_same_structures(again, read_structures(cu_file))
    # a touched file with the same content keeps its cache
    os.utime(cu_file, ns=(1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ASEDataset(cu_file, root=root, log=False)
    # other options are another cache
    with pytest.raises(AssertionError, match="read again"):
        ASEDataset(cu_file, root=root, stress_key=None, log=False)
    with pytest.raises(AssertionError, match="read again"):
        ASEDataset(cu_file, root=root, force_reload=True, log=False)


def test_dataset_rebuilds_when_the_file_changes(cu_file, tmp_path):
    root = tmp_path / "cache"
    assert len(ASEDataset(cu_file, root=root, log=False)) == 6
    write(cu_file, cu_structures(3, seed=1), format="extxyz")
    with pytest.warns(UserWarning, match="changed since the cache was built"):
        dataset = ASEDataset(cu_file, root=root, log=False)
    assert_same_structures(dataset, read_structures(cu_file))
    # same size, new modification time and other content: the hash tells
    text = cu_file.read_text()
    size = os.stat(cu_file).st_size
    cu_file.write_text(text.replace("config_type=strained", "config_type=Strained"))
    os.utime(cu_file, ns=(1, 1))
    assert os.stat(cu_file).st_size == size
    with pytest.warns(UserWarning, match="changed since the cache was built"):
        dataset = ASEDataset(cu_file, root=root, log=False)
    assert dataset[1].config_type == "Strained"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: open(d.processed_paths[0], "wb").write(b"garbage" * 100), "changed since"),
        (lambda d: os.truncate(d.processed_paths[0], 100), "changed since"),
        (lambda d: os.remove(d.record_path), "missing or unreadable"),
        (lambda d: open(d.record_path, "w").write("{not json"), "missing or unreadable"),
        (lambda d: open(d.record_path, "w").write('{"cache": 1, "sources": 2}'), "malformed"),
        (
            lambda d: open(os.path.join(d.processed_dir, "pre_transform.pt"), "wb").write(b"x"),
            "pre_transform.pt cannot be read",
        ),
    ],
)
def test_dataset_rebuilds_a_damaged_cache(cu_file, tmp_path, damage, reason):
    root = tmp_path / "cache"
    damage(ASEDataset(cu_file, root=root, log=False))
    with pytest.warns(UserWarning, match=reason):
        dataset = ASEDataset(cu_file, root=root, log=False)
    assert_same_structures(dataset, read_structures(cu_file))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ASEDataset(cu_file, root=root, log=False)  # and the rebuilt cache is trusted


def test_dataset_rebuilds_a_cache_that_does_not_load(cu_file, tmp_path):
    # a truncated cache that its record describes (damaged before the record was written)
    root = tmp_path / "cache"
    dataset = ASEDataset(cu_file, root=root, log=False)
    os.truncate(dataset.processed_paths[0], os.path.getsize(dataset.processed_paths[0]) // 2)
    dataset._write_record()
    with pytest.warns(UserWarning, match=r"torch.load fails on it \(\w+Error\)"):
        rebuilt = ASEDataset(cu_file, root=root, log=False)
    assert_same_structures(rebuilt, read_structures(cu_file))


def test_dataset_split_is_seeded(cu_file, tmp_path):
    dataset = ASEDataset(cu_file, root=tmp_path / "cache", log=False)
    train, val, test = random_split(dataset, [4, 1, 1], seed=0)
    again = random_split(dataset, [4, 1, 1], seed=0)
    other = random_split(dataset, [4, 1, 1], seed=1)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again))
    assert not all(torch.equal(a, b) for a, b in zip((train, val, test), other))
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(6))
    subset = dataset[train]
    assert [d.energy.item() for d in subset] == [dataset[i].energy.item() for i in train]
    batch = next(iter(DataLoader(subset, batch_size=4)))
    assert batch.num_graphs == 4 and batch.stress.shape == (4, 3, 3)


def test_dataset_pre_filter_and_transform(cu_file, tmp_path):
    dataset = ASEDataset(
        cu_file,
        root=tmp_path / "cache",
        pre_filter=lambda d: d.config_type == "strained",
        transform=lambda d: d.update({"energy_per_atom": d.energy / d.num_nodes}),
        log=False,
    )
    assert len(dataset) == 3 and all(d.weight.item() == 2.5 for d in dataset)
    assert dataset[0].energy_per_atom.item() == dataset[0].energy.item() / 8
    with pytest.raises(ValueError, match="no structure left"):
        ASEDataset(cu_file, root=tmp_path / "empty", pre_filter=lambda d: False, log=False)


def write_text(tmp_path, text, name="bad.xyz"):
    path = tmp_path / name
    path.write_text(text)
    return path


HEADER = 'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 pbc="T T T"'
ROW = "H 0.0 0.0 0.0 0.1 0.2 0.3\n"


@pytest.mark.parametrize(
    ("text", "error", "pieces"),
    [
        ("", ValueError, ["ASE cannot read", "Empty file"]),
        ("hello\nworld\n", ValueError, ["ASE cannot read", "XYZError"]),
        (f"2\n{HEADER} energy=1.0\n{ROW}", ValueError, ["ASE cannot read"]),  # truncated
        (f"1\n{HEADER}\n{ROW}", ValueError, ["structure 0 has no energy 'energy'"]),
        (f"1\n{HEADER} energy=nan\n{ROW}", ValueError, ["structure 0: energy", "NaN"]),
        (f"1\n{HEADER} energy=abc\n{ROW}", ValueError, ["energy", "not numeric"]),
        (f"1\n{HEADER} energy=1.0\nH 0 0 0 nan 0 0\n", ValueError, ["forces", "NaN"]),
        (f"1\n{HEADER} energy=1.0\nH inf 0 0 0 0 0\n", ValueError, ["positions", "NaN"]),
        (f"1\n{HEADER} energy=1.0 weight=-1\n{ROW}", ValueError, ["weight must be one number"]),
        (
            f'1\n{HEADER} energy=1.0 stress="1 2 3 4"\n{ROW}',
            ValueError,
            ["ASE cannot read", "stress"],
        ),
        (
            f"1\n{HEADER.replace('5 0 0 0 5 0 0 0 5', '5 0 0 0 0 0 0 0 5')} energy=1.0\n{ROW}",
            ValueError,
            ["periodic along", "zero or linearly dependent"],
        ),
    ],
)
def test_errors_name_the_problem(tmp_path, text, error, pieces):
    path = write_text(tmp_path, text)
    with pytest.raises(error) as info:
        read_structures(path)
    for piece in pieces:
        assert piece in str(info.value), (piece, str(info.value))
    assert str(path) in str(info.value)


def test_malformed_stress(tmp_path):
    path = write_text(tmp_path, f'1\n{HEADER} energy=1.0 my_stress="1 2 3 4"\n{ROW}')
    with pytest.raises(ValueError, match=r"my_stress must have 6 \(Voigt\) or 9 values"):
        read_structures(path, stress_key="my_stress")
    path = write_text(tmp_path, f'1\n{HEADER} energy=1.0 my_stress="1 2 nan 4 5 6"\n{ROW}')
    with pytest.raises(ValueError, match="my_stress holds NaN"):
        read_structures(path, stress_key="my_stress")


def test_wrong_force_shape(tmp_path):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]])
    atoms.info["energy_value"] = -1.0
    atoms.arrays["bad_forces"] = np.zeros((2, 2))
    path = tmp_path / "bad.xyz"
    write(path, atoms, format="extxyz")
    with pytest.raises(ValueError, match=r"bad_forces must have shape \[2, 3\].*got \[2, 2\]"):
        read_structures(path, energy_key="energy_value", forces_key="bad_forces")


def test_unreadable_files(tmp_path):
    binary = tmp_path / "binary.xyz"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"ASE cannot read .*UnicodeDecodeError"):
        read_structures(binary)
    unknown = write_text(tmp_path, "abc", name="data.unknownformat")
    with pytest.raises(ValueError, match=r"ASE cannot read .*guessed from the file"):
        read_structures(unknown)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_structures(tmp_path / "missing.xyz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_structures(tmp_path)  # a folder
    with pytest.raises(FileNotFoundError, match="no such file"):
        ASEDataset(tmp_path / "missing.xyz", root=tmp_path / "cache")
    with pytest.raises(ValueError, match="holds no structure"):
        read_structures(ethanol_paths().isolated_atoms, index="10:")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"index": True}, "index must be an int or a string"),
        ({"index": 1.5}, "index must be an int or a string"),
        ({"format": 3}, "format must be"),
        ({"energy_key": 3}, "energy_key must be a non-empty string or None"),
        ({"forces_key": ""}, "forces_key must be a non-empty string or None"),
        ({"weight_key": None}, "weight_key must be a non-empty string"),
        ({"dtype": torch.long}, "dtype must be a floating torch.dtype"),
        ({"dtype": "float32"}, "dtype must be a floating torch.dtype"),
    ],
)
def test_bad_options(tmp_path, options, match):
    path = ethanol_paths().isolated_atoms
    with pytest.raises(TypeError, match=match):
        read_structures(path, **options)
    with pytest.raises(TypeError, match=match):
        ASEDataset(path, root=tmp_path, **options)


def test_bad_atoms():
    with pytest.raises(ValueError, match="has no atoms"):
        atoms_to_data(Atoms(), energy_key=None)
    ghost = Atoms(numbers=[0, 1], positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(
        ValueError, match=r"atomic numbers must lie in 1\.\.99 \(below MAX_Z\), got \[0\]"
    ):
        atoms_to_data(ghost, energy_key=None)
    far = Atoms("H2", positions=[[0, 0, 0], [1e39, 0, 0]])
    assert atoms_to_data(far, energy_key=None).pos[1, 0].item() == 1e39  # fine in float64
    with pytest.raises(
        ValueError, match=r"positions overflows torch.float32 \(values up to 1e\+39"
    ):
        atoms_to_data(far, energy_key=None, dtype=torch.float32)
    with pytest.raises(TypeError, match="energy_key must be a non-empty string or None"):
        atoms_to_data(far, energy_key=5)
    with pytest.raises(TypeError, match="structures must be Data objects"):
        align_fields([Atoms("H")])


# -- partial labels: masked with weight 0, or a clear error ----------------------------------
LABELS = ("energy", "forces", "stress")


def labelled_structure(kind, labels, seed=0):
    """A periodic copper cell (``kind="crystal"``), a water molecule (``"molecule"``), a
    slab periodic along x and y with a vacuum vector (``"slab"``) or without (``"flat"``),
    carrying the labels named
    in ``labels`` (a stress only where periodic) with distinct values."""
    rng = np.random.default_rng(seed)
    if kind == "molecule":
        atoms = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    else:
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        if kind in ("slab", "flat"):  # a flat cell has no third vector, so no volume
            atoms.cell[2] = [0, 0, 20.0] if kind == "slab" else [0, 0, 0]
            atoms.pbc = [True, True, False]
    atoms.positions += 0.05 * rng.normal(size=atoms.positions.shape)
    results = {
        "energy": float(rng.normal()) - 10.0,
        "forces": rng.normal(size=(len(atoms), 3)),
        "stress": rng.normal(size=6),
    }
    chosen = {key: value for key, value in results.items() if key in labels}
    if chosen:
        atoms.calc = SinglePointCalculator(atoms, **chosen)
    return atoms


# (kind, labels) of each structure of a file; every file has an energy somewhere
PARTIAL_FILES = {
    "energy missing in the middle": [
        ("crystal", LABELS), ("crystal", ("forces", "stress")), ("crystal", LABELS),
    ],
    "energy only at the end": [("molecule", ("forces",))] * 3 + [("molecule", ("energy",))],
    "forces missing in one": [("molecule", ("energy", "forces")), ("molecule", ("energy",))],
    "forces only in one": [("crystal", ("energy",)), ("crystal", ("energy", "forces"))],
    "stress missing in one crystal": [("crystal", LABELS), ("crystal", ("energy", "forces"))],
    "molecules and crystals with stresses": [
        ("molecule", ("energy", "forces")), ("crystal", LABELS), ("slab", LABELS),
        ("molecule", ("energy", "forces")),
    ],
    "molecules and crystals without stresses": [
        ("crystal", ("energy", "forces")), ("molecule", ("energy", "forces")),
    ],
    "nothing but energies": [("molecule", ("energy",)), ("crystal", ("energy",))],
    "each structure lacks another label": [
        ("crystal", ("forces", "stress")), ("crystal", ("energy", "stress")),
        ("crystal", ("energy", "forces")),
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", list(PARTIAL_FILES))
@pytest.mark.parametrize("via", ["read_structures", "ASEDataset"])
def test_partial_labels_are_masked_with_weight_zero(tmp_path, name, via):
    spec = PARTIAL_FILES[name]
    atoms = [labelled_structure(kind, labels, seed=i) for i, (kind, labels) in enumerate(spec)]
    path = tmp_path / "partial.xyz"
    write(path, atoms, format="extxyz")
    if via == "read_structures":
        structures = read_structures(path)
    else:
        structures = list(ASEDataset(path, root=tmp_path / "cache", log=False))
    atoms = read(path, index=":")  # the values as the file holds them
    for label in LABELS:
        has = [label in labels and (label != "stress" or kind != "molecule")
               for kind, labels in spec]  # fmt: skip
        if not any(has):  # no structure has it: no field at all
            assert all(label not in data and f"{label}_weight" not in data for data in structures)
            continue
        for data, present, source in zip(structures, has, atoms, strict=True):
            assert data[f"{label}_weight"].tolist() == [float(present)], (label, data)
            value = data[label]
            if not present:
                assert not value.any()  # zeros, counted nowhere
                continue
            if label == "energy":
                assert value.tolist() == [source.get_potential_energy()]
            elif label == "forces":
                assert torch.equal(value, torch.from_numpy(source.get_forces()))
            else:
                assert torch.equal(value[0], torch.from_numpy(source.get_stress(voigt=False)))
    batch = Batch.from_data_list(structures)  # every structure has every field: they batch
    assert batch.num_graphs == len(spec)


def _no_energy_file(tmp_path):
    atoms = [labelled_structure("molecule", ("forces",), seed=i) for i in range(3)]
    path = tmp_path / "no_energy.xyz"
    write(path, atoms, format="extxyz")
    return path, {}


def _info_file(tmp_path, index, kind, key, value, **options):
    """Three labelled structures, the one at ``index`` with ``info[key] = value``."""
    atoms = [labelled_structure("crystal", LABELS, seed=i) for i in range(3)]
    atoms[index] = labelled_structure(kind, ("energy", "forces"), seed=index)
    atoms[index].info[key] = value
    path = tmp_path / "bad.xyz"
    write(path, atoms, format="extxyz")
    return path, options


def _forces_file(tmp_path, index, forces):
    atoms = [labelled_structure("molecule", ("energy",), seed=i) for i in range(3)]
    atoms[index].arrays["my_forces"] = forces
    path = tmp_path / "bad.xyz"
    write(path, atoms, format="extxyz")
    return path, {"forces_key": "my_forces"}


@pytest.mark.parametrize(
    ("make", "pieces"),
    [
        (_no_energy_file, ["structure 0 has no energy 'energy'", "found: forces",
                           "or to None", "no structure read has one"]),
        (lambda p: _info_file(p, 1, "molecule", "my_stress", np.arange(6.0),
                              stress_key="my_stress"),
         ["structure 1 has a stress 'my_stress' but is not periodic", "a molecule has no stress"]),
        (lambda p: _info_file(p, 2, "molecule", "my_stress", np.zeros(9), stress_key="my_stress"),
         ["structure 2 has a stress 'my_stress' but is not periodic"]),
        (lambda p: _info_file(p, 0, "flat", "my_stress", np.arange(6.0),
                              stress_key="my_stress"),
         ["structure 0 has a stress 'my_stress' but its cell has no volume"]),
        (lambda p: _info_file(p, 1, "crystal", "my_stress", np.arange(4.0),
                              stress_key="my_stress"),
         ["structure 1: my_stress must have 6 (Voigt) or 9 values, got shape [4]"]),
        (lambda p: _info_file(p, 1, "crystal", "my_stress", np.arange(12.0),
                              stress_key="my_stress"),
         ["structure 1: my_stress must have 6 (Voigt) or 9 values, got shape [12]"]),
        (lambda p: _info_file(p, 2, "crystal", "my_energy", np.arange(2.0),
                              energy_key="my_energy"),
         ["structure 2: my_energy must be one number"]),
        (lambda p: _info_file(p, 1, "crystal", "my_energy", float("nan"),
                              energy_key="my_energy"),
         ["structure 1: my_energy holds NaN"]),
        (lambda p: _forces_file(p, 1, np.zeros((3, 2))),
         ["structure 1: my_forces must have shape [3, 3]", "got [3, 2]"]),
        (lambda p: _forces_file(p, 2, np.zeros(3)),
         ["structure 2: my_forces must have shape [3, 3]", "got [3]"]),
        (lambda p: _forces_file(p, 0, np.full((3, 3), np.inf)),
         ["structure 0: my_forces holds NaN or infinite values"]),
    ],
    ids=["no energy at all", "Voigt stress on a molecule", "3x3 stress on a molecule",
         "stress without volume", "stress of 4 values", "stress of 12 values",
         "two energies", "NaN energy", "forces [3, 2]", "forces [3]", "infinite forces"],
)  # fmt: skip
@pytest.mark.parametrize("via", ["read_structures", "ASEDataset"])
def test_malformed_labels_name_file_and_structure(tmp_path, make, pieces, via):
    path, options = make(tmp_path)
    with pytest.raises(ValueError) as info:
        if via == "read_structures":
            read_structures(path, **options)
        else:
            ASEDataset(path, root=tmp_path / "cache", log=False, **options)
    for piece in [str(path), *pieces]:
        assert piece in str(info.value), (piece, str(info.value))


def test_without_energies_on_request(tmp_path):
    path, _ = _no_energy_file(tmp_path)
    structures = read_structures(path, energy_key=None)
    assert all("energy" not in data and "forces" in data for data in structures)


def test_align_fields_masks_energies_across_files():
    with_energy = atoms_to_data(labelled_structure("molecule", ("energy", "forces")))
    without = atoms_to_data(labelled_structure("crystal", ("forces",)), energy_key=None)
    first, second = align_fields([with_energy, without])
    assert first.energy_weight.tolist() == [1.0] and second.energy_weight.tolist() == [0.0]
    assert second.energy.dtype == torch.float64 and second.energy.tolist() == [0.0]
    assert "energy_weight" not in with_energy  # the inputs are left as they are


@pytest.mark.parametrize(
    ("index", "where"),
    [(":", "structure 2:"), ("1:", "structure 1 of index '1:'"), (2, "structure 0 of index 2"),
     ("::2", "structure 1 of index '::2'"), ("-1", "structure 0 of index '-1'")],
)  # fmt: skip
def test_errors_name_the_structure_within_the_selection(tmp_path, index, where):
    atoms = [labelled_structure("crystal", LABELS, seed=i) for i in range(3)]
    atoms[2].info["my_energy"] = "abc"
    for other in atoms[:2]:
        other.info["my_energy"] = 1.0
    path = tmp_path / "data.xyz"
    write(path, atoms, format="extxyz")
    with pytest.raises(ValueError, match="my_energy is not numeric") as info:
        read_structures(path, index=index, energy_key="my_energy")
    assert f"{path}: {where}" in str(info.value)

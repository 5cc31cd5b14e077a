"""Data of a run: the seeded split and the target offsets fitted on the training set; the
structures of a potential, with partial labels masked and missing labels or reference
energies refused before training."""

import pytest
import torch

from e3nn_pyg.datasets import QM9Pack
from e3nn_pyg.training import ConfigError, TrainConfig, fit_target_stats, load_data
from e3nn_pyg.training.data import average_degree, labelled, read_test_structures


def test_split_is_seeded_disjoint_and_sized(tiny_config):
    data = load_data(tiny_config(), log=False)
    assert (len(data.train), len(data.val), len(data.test)) == (32, 4, 4)
    together = torch.cat([data.train, data.val, data.test])
    assert len(set(together.tolist())) == 40
    again = load_data(tiny_config(), log=False)
    assert torch.equal(again.test, data.test)
    other = load_data(tiny_config(seed=1), log=False)
    assert not torch.equal(other.test, data.test)
    assert data.task.target.name == "U0" and data.task.report_unit == "meV"


def test_too_few_molecules_for_the_split(tiny_config):
    with pytest.raises(ConfigError, match="too few for split"):
        load_data(tiny_config(num_molecules=10, split=[0.8, 0.1, 0.05]), log=False)


def test_subset_larger_than_the_dataset(tiny_config):
    with pytest.raises(ConfigError, match="exceeds"):
        load_data(tiny_config(num_molecules=5000), log=False)


def test_extensive_offsets_beat_the_mean_and_keep_free_atom_references(tiny_config):
    data = load_data(tiny_config(num_molecules=200), log=False)
    stats = fit_target_stats(data, "add")
    assert stats.mean == 0.0 and stats.atomref.shape == (100, 1)
    y = data.targets("train")
    train = data.subset("train")
    fitted = torch.stack(
        [stats.atomref[train[i].z, 0].double().sum() for i in range(len(train))]
    )  # [M]
    fit_error = (fitted - y).abs().mean()
    assert fit_error < 0.05 * (y - y.mean()).abs().mean()
    assert stats.loss_scale == pytest.approx(float((fitted - y).pow(2).mean().sqrt()), rel=1e-4)
    # elements absent from the training set keep QM9's free-atom energies (0 beyond C H N O F)
    seen = set(torch.cat([train[i].z for i in range(len(train))]).tolist())
    free_atoms = QM9Pack.atomref("U0")
    absent = [z for z in range(100) if z not in seen]
    assert torch.equal(stats.atomref[absent], free_atoms[absent])
    assert stats.atomref[16, 0] == 0.0 and not torch.equal(stats.atomref[1], free_atoms[1])


def test_intensive_offsets_are_mean_and_std(tiny_config):
    data = load_data(tiny_config(target="gap"), log=False)
    stats = fit_target_stats(data, "mean")
    y = data.targets("train")
    assert stats.atomref is None
    assert stats.mean == pytest.approx(float(y.mean()))
    assert stats.std == pytest.approx(float(y.std()))


def test_average_degree(tiny_config):
    data = load_data(tiny_config(), log=False)
    degree = average_degree(data.subset("train"), 4.0)
    assert 5.0 < degree < 20.0
    assert average_degree(data.subset("train"), 0.5) == 1.0  # no edges: floor at 1


# -- potentials: partial labels masked, missing labels and reference energies refused ----------
ase_io = pytest.importorskip("ase.io")
SinglePointCalculator = pytest.importorskip("ase.calculators.singlepoint").SinglePointCalculator

SPLIT = [0.6, 0.2, 0.2]  # of 20 structures: 12, 4, 4


def ethanol(count=20, start=0):
    from e3nn_pyg.datasets import ETHANOL_DIR

    return ase_io.read(ETHANOL_DIR / "train.xyz", index=f"{start}:{start + count}")


def isolated(symbols="HCNO"):
    from e3nn_pyg.datasets import ETHANOL_DIR

    atoms = ase_io.read(ETHANOL_DIR / "isolated_atoms.xyz", index=":")
    return [a for a in atoms if a.get_chemical_symbols()[0] in symbols]


def relabel(atoms, keep):
    """``atoms`` with only the labels named in ``keep`` (energy, forces)."""
    results = {k: v for k, v in atoms.calc.results.items() if k in keep}
    atoms.calc = SinglePointCalculator(atoms, **results) if results else None
    return atoms


def substitute(atoms, old, new):
    atoms.numbers[atoms.numbers == old] = new
    return atoms


def potential_config(tmp_path, train, test=None, isolated_atoms=None, **overrides):
    files = {}
    for name, structures in (("train", train), ("test", test), ("e0s", isolated_atoms)):
        if structures is not None:
            files[name] = str(tmp_path / f"{name}.xyz")
            ase_io.write(files[name], structures, format="extxyz")
    values = {
        "data": files["train"], "test_data": files.get("test"),
        "isolated_atoms": files.get("e0s"), "split": SPLIT, "epochs": 1, "progress": False,
        "data_root": str(tmp_path / "cache"), "out": str(tmp_path / "run"), **overrides,
    }  # fmt: skip
    return TrainConfig.from_dict(values)


def split_of(tmp_path, **overrides):
    """The (train, val, test) indices load_data draws for 20 structures."""
    (tmp_path / "probe").mkdir(exist_ok=True)
    data = load_data(potential_config(tmp_path / "probe", ethanol(), **overrides), log=False)
    return data.train.tolist(), data.val.tolist(), data.test.tolist()


def test_structures_without_energy_are_masked_in_the_fit(tmp_path):
    structures = ethanol()
    missing = {1, 4, 9, 15}
    for i in missing:
        relabel(structures[i], keep=("forces",))
    data = load_data(potential_config(tmp_path, structures), log=False)
    train = data.subset("train")
    with_energy = labelled(train, "energy")
    expected = [i not in missing for i in data.train.tolist()]
    assert with_energy.tolist() == expected and not all(expected)
    stats = fit_target_stats(data, "add")
    # the stored 0 eV of a structure without energy would pull the fit by thousands of eV
    z = torch.cat([train[i].z for i in range(len(train))])
    batch = torch.arange(len(train)).repeat_interleave(9)
    fitted = stats.composition(z, batch, len(train))[with_energy]
    energies = data.targets("train")[with_energy]
    assert float((fitted - energies).abs().max()) < 1.0  # eV, a composition fit of ethanol


def test_isolated_atoms_give_an_element_no_energy_of_the_training_split_has(tmp_path):
    chosen = split_of(tmp_path)[0][0]  # a training structure
    structures = ethanol()
    relabel(substitute(structures[chosen], 8, 7), ("forces",))  # N, without energy
    config = potential_config(tmp_path, structures, isolated_atoms=isolated())
    data = load_data(config, log=False)  # the fit cannot give N's reference, the file does
    assert data.reference_energies[7, 0].item() == isolated("N")[0].get_potential_energy()
    stats = fit_target_stats(data, "add")
    assert stats.atomref[7, 0].item() == pytest.approx(data.reference_energies[7, 0].item())


def _only_val_has_energy(tmp_path):
    train, _, _ = split_of(tmp_path)
    return {"train": [relabel(a, ("forces",)) if i in train else a
                      for i, a in enumerate(ethanol())]}  # fmt: skip


def _element_only_in(split):
    def make(tmp_path):
        chosen = split_of(tmp_path)[["train", "val", "test"].index(split)][0]
        structures = ethanol()
        substitute(structures[chosen], 8, 7)
        if split == "train":  # in training, but without an energy: nothing to fit it on
            relabel(structures[chosen], ("forces",))
        return {"train": structures}

    return make


REFUSED = {
    "energies only on isolated atoms": (
        lambda p: {"train": [relabel(a, ("forces",)) for a in ethanol()] + isolated()},
        ["train.xyz: none of its 20 structures", "has an energy"],
    ),
    "no forces in the training file": (
        lambda p: {"train": [relabel(a, ("energy",)) for a in ethanol()]},
        ["train.xyz: none of its 20 structures", "has forces"],
    ),
    "only isolated atoms": (
        lambda p: {"train": isolated()},
        ["train.xyz holds no structure besides isolated-atom entries"],
    ),
    "no energy in the training split": (
        _only_val_has_energy,
        ["the training split of", "none of its 12 structures", "has an energy"],
    ),
    "no energy in the training file": (
        lambda p: {"train": [relabel(a, ("forces",)) for a in ethanol()]},
        ["cannot read structures from", "no structure read has one"],
    ),
    "no energy in the test file": (
        lambda p: {"train": ethanol(), "test": [relabel(a, ("forces",)) for a in ethanol(4)]},
        ["cannot read structures from", "test.xyz", "no structure read has one"],
    ),
    "only isolated atoms in the test file": (
        lambda p: {"train": ethanol(), "test": isolated()},
        ["test.xyz holds no structure besides isolated-atom entries"],
    ),
    "isolated-atoms file without O": (
        lambda p: {"train": ethanol(), "isolated_atoms": isolated("HCN")},
        ["e0s.xyz give no energy for O (Z=8) of the data"],
    ),
    "isolated-atoms file without O and H": (
        lambda p: {"train": ethanol(), "isolated_atoms": isolated("C")},
        ["e0s.xyz give no energy for H (Z=1), O (Z=8) of the data"],
    ),
    "isolated entries of the data without C": (
        lambda p: {"train": ethanol() + isolated("HNO")},
        ["the isolated-atom entries of", "train.xyz give no energy for C (Z=6)"],
    ),
    "N only in the test file, with isolated atoms": (
        lambda p: {
            "train": ethanol(),
            "isolated_atoms": isolated(),
            "test": [substitute(a, 8, 7) for a in ethanol(4)],
        },
        ["N (Z=7) occur in the test structures but in no training structure"],
    ),
    "N only in the test file": (
        lambda p: {"train": ethanol(), "test": [substitute(a, 8, 7) for a in ethanol(4)]},
        ["N (Z=7) occur in the test structures but in no training structure"],
    ),
    "N only in the validation split": (
        _element_only_in("val"),
        ["N (Z=7) occur in the val structures but in no training structure"],
    ),
    "N only in the test split": (
        _element_only_in("test"),
        ["N (Z=7) occur in the test structures but in no training structure"],
    ),
    "fitted, N only in a training structure without energy": (
        _element_only_in("train"),
        ["N (Z=7) occur only in training structures without an energy"],
    ),
    "isolated-atom entry without energy": (
        lambda p: {"train": ethanol() + [relabel(a, ()) for a in isolated("H")] + isolated("CO")},
        [
            "cannot read the isolated-atom energies",
            "isolated-atom entry 20 (H (Z=1)) has no energy",
        ],
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_potential_data_is_refused_before_training(tmp_path, case):
    make, pieces = REFUSED[case]
    files = make(tmp_path)
    config = potential_config(tmp_path, files["train"], test=files.get("test"),
                              isolated_atoms=files.get("isolated_atoms"))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_data(config, log=False)
    message = str(info.value)
    assert "\n" not in message
    for piece in pieces:
        assert piece in message, (piece, message)


@pytest.mark.parametrize(
    ("structures", "problem"),
    [
        (lambda: [relabel(a, ("energy",)) for a in ethanol(3)], None),  # energies only
        (lambda: isolated(), "holds no structure besides isolated-atom entries"),
        (lambda: [relabel(a, ("forces",)) for a in ethanol(3)], "no structure read has"),
        (lambda: ethanol(3) + isolated(), None),  # the isolated atoms are left out
        (lambda: [relabel(a, ("forces",)) for a in ethanol(2)] + ethanol(1), None),  # masked
        (lambda: [relabel(a, ("energy",)) for a in ethanol(2)] + ethanol(1), None),
    ],
)
def test_evaluation_files_are_checked(tmp_path, structures, problem):
    path = tmp_path / "eval.xyz"
    ase_io.write(path, structures(), format="extxyz")
    if problem is not None:
        with pytest.raises(ConfigError, match=problem):
            read_test_structures(path, str(tmp_path / "cache"))
        return
    dataset = read_test_structures(path, str(tmp_path / "cache"))
    assert len(dataset) == 3
    assert labelled(dataset, "energy").any()


def _weights(values):
    structures = ethanol()
    for atoms, value in zip(structures, values):
        atoms.info["weight"] = value
    return structures


@pytest.mark.parametrize(
    ("structures", "pieces"),
    [
        (lambda: [*ethanol(), *isolated("HC"), _two_atom_entry()],
         ["train.xyz: structure 22 has config_type 'isolated_atom'", "but 2 atoms"]),
        (lambda: _weights([0.0] * 20), ["every one of its 12 structures has weight 0"]),
    ],
    ids=["isolated-atom entry of two atoms", "every weight 0"],
)  # fmt: skip
def test_malformed_training_files(tmp_path, structures, pieces):
    with pytest.raises(ConfigError) as info:
        load_data(potential_config(tmp_path, structures()), log=False)
    for piece in pieces:
        assert piece in str(info.value), (piece, str(info.value))


def _two_atom_entry():
    atoms = ethanol(1)[0][:2]
    atoms.info["config_type"] = "isolated_atom"
    return atoms


def test_weights_zero_in_part_are_fine(tmp_path):
    data = load_data(potential_config(tmp_path, _weights([0.0] * 10 + [1.0] * 10)), log=False)
    assert len(data.train) == 12


@pytest.mark.parametrize(
    ("seed", "num_molecules", "refused"),
    [(0, 40, False), (0, 100, True), (1, 100, False), (2, 40, False)],
)
def test_qm9_elements_outside_the_training_split_are_refused(
    tiny_config, seed, num_molecules, refused
):
    config = tiny_config(seed=seed, num_molecules=num_molecules)
    if refused:  # fluorine, in a few molecules only, is in the test split alone
        with pytest.raises(ConfigError, match=r"F \(Z=9\) occur in the test structures.*--seed"):
            load_data(config, log=False)
        return
    data = load_data(config, log=False)
    seen = set(torch.cat([data.subset("train")[i].z for i in range(len(data.train))]).tolist())
    for split in ("val", "test"):
        view = data.subset(split)
        assert set(torch.cat([view[i].z for i in range(len(view))]).tolist()) <= seen

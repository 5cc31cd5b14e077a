"""Reference energies of isolated atoms (read and fitted) and the scale and shift of atomic
energies, on the shipped ethanol data and on synthetic structures with known answers."""

import pytest
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset

from e3nn_pyg.datasets import (
    atomic_energy_shift,
    atomic_energy_std,
    composition,
    ethanol_paths,
    fit_e0s,
    force_rms,
    isolated_atom_energies,
    isolated_atom_mask,
    read_structures,
    scale_shift,
)

# isolated_atoms.xyz of the ethanol set, eV
ETHANOL_E0 = {1: -13.568422383046626, 6: -1025.2770951782686, 8: -2035.5709809589698}
ETHANOL_E0[7] = -1479.0665594928669


def structure(z, energy, config_type="Default", forces=None, forces_weight=None):
    z = torch.as_tensor(z)
    data = Data(z=z, pos=torch.randn(len(z), 3, dtype=torch.float64))
    data.energy = torch.tensor([energy], dtype=torch.float64)
    data.config_type = config_type
    if forces is not None:
        data.forces = forces
        data.forces_weight = torch.tensor([forces_weight], dtype=torch.float64)
    return data


class Stored(InMemoryDataset):
    """An InMemoryDataset holding the given structures (collated, as a cache holds them)."""

    def __init__(self, structures):
        super().__init__()
        self.data, self.slices = self.collate(structures)


def synthetic(e0s, count=40, seed=0, per_atom=0.0):
    """Molecules of H, C, N, O of random composition whose energy is the sum of ``e0s`` over
    their atoms plus ``per_atom`` per atom."""
    generator = torch.Generator().manual_seed(seed)
    elements = torch.tensor([1, 6, 7, 8])
    out = []
    for _ in range(count):
        n = int(torch.randint(2, 12, (1,), generator=generator))
        z = elements[torch.randint(0, 4, (n,), generator=generator)]
        out.append(structure(z, float(e0s[z].sum()) + per_atom * n))
    return out


def known_e0s():
    e0s = torch.zeros(100, dtype=torch.float64)
    e0s[[1, 6, 7, 8]] = torch.tensor([-13.6, -1025.3, -1479.1, -2035.6], dtype=torch.float64)
    return e0s


def test_isolated_atom_energies_of_the_ethanol_file():
    isolated = read_structures(ethanol_paths().isolated_atoms)
    e0s = isolated_atom_energies(isolated, elements=[1, 6, 8])
    assert e0s.dtype == torch.float64 and e0s.shape == (100,)
    assert {z: e0s[z].item() for z in ETHANOL_E0} == ETHANOL_E0  # exactly the file's values
    assert e0s.count_nonzero() == 4
    assert isolated_atom_energies(isolated, max_z=10).shape == (10,)
    with pytest.raises(ValueError, match=r"no isolated-atom entry for F \(Z=9\), S \(Z=16\)"):
        isolated_atom_energies(isolated, elements=[1, 9, 16])


def test_isolated_atoms_among_other_structures():
    molecules = read_structures(ethanol_paths().train, index=":3")
    isolated = read_structures(ethanol_paths().isolated_atoms)
    mixed = [molecules[0], *isolated[:2], *molecules[1:]]
    mixed += [structure([9], -2700.0, "IsolatedAtom"), structure([16], -1.0, "ISOLATED_ATOM")]
    mask = isolated_atom_mask(mixed[:3] + mixed[5:])
    assert mask.tolist() == [False, True, True, True, True]
    e0s = isolated_atom_energies(mixed[:3] + mixed[5:])
    assert e0s[9].item() == -2700.0 and e0s[16].item() == -1.0
    assert e0s[1].item() == ETHANOL_E0[1] and e0s[8].item() == 0.0


def test_isolated_atom_rules():
    # a one-atom structure without the mark is not an isolated atom (a primitive crystal)
    plain = [structure([29], -3.0), structure([1, 1], -31.0)]
    assert isolated_atom_mask(plain).tolist() == [False, False]
    with pytest.raises(ValueError, match=r"no isolated-atom entry .* fit_e0s"):
        isolated_atom_energies(plain)
    with pytest.raises(ValueError, match=r"structure 1 has config_type 'IsolatedAtom'.* 2 atoms"):
        isolated_atom_mask([structure([1], -13.6), structure([1, 1], -31.0, "IsolatedAtom")])
    twice = [structure([1], -13.6, "IsolatedAtom"), structure([1], -13.7, "IsolatedAtom")]
    with pytest.raises(ValueError, match=r"two isolated-atom entries of H \(Z=1\) disagree"):
        isolated_atom_energies(twice)
    same = [structure([1], -13.6, "IsolatedAtom"), structure([1], -13.6, "isolated_atom")]
    assert isolated_atom_energies(same)[1].item() == -13.6


def test_fit_recovers_known_e0s():
    e0s = known_e0s()
    structures = synthetic(e0s)
    fitted = fit_e0s(structures)
    assert fitted.dtype == torch.float64 and fitted.shape == (100,)
    torch.testing.assert_close(fitted, e0s, atol=1e-8, rtol=0)
    # the same from a cached dataset, a slice of one, and a batch
    stored = Stored(structures)
    torch.testing.assert_close(fit_e0s(stored), e0s, atol=1e-8, rtol=0)
    half = torch.arange(0, 40, 2)
    torch.testing.assert_close(fit_e0s(stored[half]), fit_e0s(structures[::2]), atol=0, rtol=0)
    torch.testing.assert_close(fit_e0s(Batch.from_data_list(structures)), fitted, atol=0, rtol=0)


def test_fit_of_one_composition_is_the_minimum_norm_solution():
    train = read_structures(ethanol_paths().train)  # every structure is C2H6O
    fitted = fit_e0s(train)
    assert fitted.count_nonzero() == 3
    counts = torch.zeros(100, dtype=torch.float64)
    counts[[1, 6, 8]] = torch.tensor([6.0, 2.0, 1.0], dtype=torch.float64)
    mean = torch.cat([d.energy for d in train]).mean()
    torch.testing.assert_close(counts @ fitted, mean, atol=1e-9, rtol=0)
    # the minimum-norm solution is proportional to the composition
    torch.testing.assert_close(fitted, counts * (mean / counts.pow(2).sum()), atol=1e-9, rtol=0)


def test_composition():
    structures = [structure([1, 1, 8], -1.0), structure([6, 1, 6, 6], -2.0)]
    counts = composition(structures, max_z=10)
    assert counts.shape == (2, 10) and counts.dtype == torch.float64
    assert counts[0, [1, 8]].tolist() == [2.0, 1.0] and counts[0].sum() == 3
    assert counts[1, [1, 6]].tolist() == [1.0, 3.0] and counts[1].sum() == 4
    assert torch.equal(composition(Stored(structures)[[1]], max_z=10), counts[[1]])
    with pytest.raises(ValueError, match="atomic number 8 is not below max_z = 8"):
        composition(structures, max_z=8)


def test_shift_and_energy_std():
    e0s = known_e0s()
    structures = synthetic(e0s, per_atom=0.25)
    shift = atomic_energy_shift(structures, e0s)
    assert shift.dtype == torch.float64 and shift.dim() == 0
    torch.testing.assert_close(shift, torch.tensor(0.25, dtype=torch.float64), atol=1e-10, rtol=0)
    assert atomic_energy_std(structures, e0s).item() < 1e-10
    # per-atom energies of 1 and 3 (after the E0s): mean 2, standard deviation 1
    two = [structure([1, 1], 2 * e0s[1].item() + 2.0), structure([8], e0s[8].item() + 3.0)]
    assert atomic_energy_shift(two, e0s).item() == pytest.approx(2.0, abs=1e-12)
    assert atomic_energy_std(two, e0s).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="atomic number 8 has no entry in e0s"):
        atomic_energy_shift(two, e0s[:5])
    with pytest.raises(TypeError, match="e0s must be a 1-D tensor"):
        atomic_energy_shift(two, [0.0] * 100)


def test_force_rms_counts_labelled_structures_only():
    forces = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, -3.0]], dtype=torch.float64)
    unlabelled = torch.full((1, 3), 100.0, dtype=torch.float64)
    structures = [
        structure([1, 1], -27.0, forces=forces, forces_weight=1.0),
        structure([1], -13.0, forces=unlabelled, forces_weight=0.0),
    ]
    # components 3, 0, 0, 0, 0, -3: mean square 3
    assert force_rms(structures).item() == pytest.approx(3.0**0.5, abs=1e-15)
    assert force_rms(Stored(structures)).item() == force_rms(structures).item()
    # in a list, a structure without forces counts as unlabelled
    assert force_rms([structures[0], structure([8], -2035.0)]).item() == force_rms(structures)
    with pytest.raises(ValueError, match="every forces_weight is 0"):
        force_rms(structures[1:])
    with pytest.raises(ValueError, match="have no forces"):
        force_rms([structure([1], -13.0)])


def test_scale_shift_of_ethanol():
    train = read_structures(ethanol_paths().train)
    e0s = isolated_atom_energies(read_structures(ethanol_paths().isolated_atoms))
    scale, shift = scale_shift(train, e0s)
    assert scale.item() == force_rms(train).item()
    assert shift.item() == atomic_energy_shift(train, e0s).item()
    # every structure is C2H6O: the shift is the mean energy less the E0s, per atom
    mean = torch.cat([d.energy for d in train]).mean()
    reference = 2 * e0s[6] + 6 * e0s[1] + e0s[8]
    assert shift.item() == pytest.approx(((mean - reference) / 9).item(), abs=1e-10)
    forces = torch.cat([d.forces for d in train])
    assert scale.item() == pytest.approx(forces.pow(2).mean().sqrt().item(), abs=1e-12)
    energy_scale, _ = scale_shift(train, e0s, scale="energy_std")
    assert energy_scale.item() == atomic_energy_std(train, e0s).item() > 0
    with pytest.raises(ValueError, match="scale must be 'force_rms' or 'energy_std'"):
        scale_shift(train, e0s, scale="rms")
    resting = torch.zeros(2, 3, dtype=torch.float64)
    still = [structure([1, 1], -27.0, forces=resting, forces_weight=1.0)]
    with pytest.raises(ValueError, match=r"the force_rms of these structures is 0\.0"):
        scale_shift(still, e0s)


@pytest.mark.parametrize(
    ("structures", "error", "match"),
    [
        ([], ValueError, "no structures given"),
        ("abc", TypeError, "must be a list of Data"),
        (42, TypeError, "must be a list of Data"),
        ([torch.zeros(3)], TypeError, "must be Data objects"),
    ],
)
def test_bad_structures(structures, error, match):
    with pytest.raises(error, match=match):
        fit_e0s(structures)


def test_missing_energy_and_bad_max_z():
    unlabelled = [Data(z=torch.tensor([1, 1]), pos=torch.zeros(2, 3))]
    with pytest.raises(ValueError, match="no structure has an energy"):
        fit_e0s(unlabelled)
    # a structure without energy is left out of the fit, as if it were not there
    labelled = [structure([1], -13.6), structure([1, 1], -27.0)]
    assert torch.equal(fit_e0s([*labelled, *unlabelled]), fit_e0s(labelled))
    with pytest.raises(ValueError, match="max_z must be an int >= 2"):
        fit_e0s(synthetic(known_e0s()), max_z=1.5)


# -- structures without an energy: left out of every energy statistic ------------------------
def _unlabelled(data, garbage=1e6):
    """``data`` without its energy: a garbage value with energy_weight 0 (as align_fields
    leaves it but not zero, so that counting it shows)."""
    data = data.clone()
    data.energy = torch.tensor([garbage], dtype=torch.float64)
    data.energy_weight = torch.tensor([0.0], dtype=torch.float64)
    return data


def _as_form(structures, form):
    if form == "list":
        return structures
    if form == "batch":
        return Batch.from_data_list(structures)
    if form == "dataset":
        return Stored(structures)
    return Stored(structures + structures[:2])[torch.arange(len(structures))]  # a view


def _with_weights(structures):
    """Every structure with an explicit energy_weight 1, as read_structures gives them."""
    out = []
    for data in structures:
        data = data.clone()
        data.energy_weight = torch.tensor([1.0], dtype=torch.float64)
        out.append(data)
    return out


@pytest.mark.parametrize("form", ["list", "batch", "dataset", "view"])
@pytest.mark.parametrize("missing", [[0], [3, 7, 8], list(range(1, 40, 2)), list(range(39))])
def test_statistics_skip_structures_without_energy(form, missing):
    e0s = known_e0s()
    structures = _with_weights(synthetic(e0s, per_atom=0.25))
    for i in range(len(structures)):
        structures[i].forces = torch.randn(structures[i].num_nodes, 3, dtype=torch.float64)
        structures[i].forces_weight = torch.tensor([1.0], dtype=torch.float64)
    kept = [d for i, d in enumerate(structures) if i not in missing]
    mixed = [_unlabelled(d) if i in missing else d for i, d in enumerate(structures)]
    given = _as_form(mixed, form)
    assert torch.allclose(fit_e0s(given), fit_e0s(kept), atol=1e-9)
    assert atomic_energy_shift(given, e0s).item() == pytest.approx(0.25, abs=1e-9)
    assert atomic_energy_std(given, e0s).item() == pytest.approx(
        atomic_energy_std(kept, e0s).item(), abs=1e-9
    )
    # the forces of a structure without energy still count
    assert force_rms(given).item() == pytest.approx(force_rms(structures).item(), rel=1e-12)
    _, shift = scale_shift(given, e0s)
    assert shift.item() == pytest.approx(0.25, abs=1e-9)


@pytest.mark.parametrize("form", ["list", "batch", "dataset", "view"])
def test_no_energy_anywhere_is_refused(form):
    structures = [_unlabelled(d) for d in _with_weights(synthetic(known_e0s(), count=5))]
    given = _as_form(structures, form)
    for statistic in (fit_e0s, lambda s: atomic_energy_shift(s, known_e0s())):
        with pytest.raises(ValueError, match="no structure has an energy"):
            statistic(given)


@pytest.mark.parametrize("form", ["list", "batch", "dataset", "view"])
@pytest.mark.parametrize("entry", [0, 2])
def test_isolated_atom_entry_without_energy_is_refused(form, entry):
    entries = _with_weights([structure([z], ETHANOL_E0[z], "isolated_atom") for z in (1, 6, 7, 8)])
    entries[entry] = _unlabelled(entries[entry])
    symbol = {0: "H (Z=1)", 2: "N (Z=7)"}[entry]
    with pytest.raises(ValueError) as info:
        isolated_atom_energies(_as_form(entries, form))
    assert f"isolated-atom entry {entry} ({symbol}) has no energy" in str(info.value)

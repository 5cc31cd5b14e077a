"""Data of a run: the seeded split and the target offsets fitted on the training set."""

import pytest
import torch

from e3nn_pyg.datasets import QM9Pack
from e3nn_pyg.training import ConfigError, fit_target_stats, load_data
from e3nn_pyg.training.data import average_degree


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

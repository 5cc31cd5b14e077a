"""Reading the collated storage of an InMemoryDataset: whole datasets, views in any order,
a dataset of one structure (stored without slices), fields of strings, and the errors."""

import pytest
import torch
from torch_geometric.data import Data, InMemoryDataset

from e3nn_pyg.datasets import atom_values, collated, row_counts, structure_values, view_indices


class Stored(InMemoryDataset):
    def __init__(self, structures):
        super().__init__()
        self.data, self.slices = self.collate(structures)


def structures(count):
    return [
        Data(
            z=torch.arange(1, i + 2),  # i + 1 atoms
            pos=torch.randn(i + 1, 3),
            energy=torch.tensor([float(i)], dtype=torch.float64),
            cell=torch.full((1, 3, 3), float(i)),
            name=f"s{i}",
        )
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "index",
    [None, [0, 1, 2, 3, 4], [4, 0, 2], [3], [], torch.tensor([1, 1, 0]), slice(1, None, 2)],
)
def test_views_read_what_their_structures_hold(index):
    items = structures(5)
    dataset = Stored(items)
    view = dataset if index is None else dataset[index]
    chosen = [items[i] for i in view_indices(view).tolist()]
    assert len(chosen) == len(view)
    assert [d.name for d in chosen] == [view[i].name for i in range(len(view))]
    assert structure_values(view, "energy").tolist() == [d.energy.item() for d in chosen]
    assert structure_values(view, "cell").shape == (len(chosen), 3, 3)
    assert structure_values(view, "name") == [d.name for d in chosen]
    expected_z = torch.cat([d.z for d in chosen]) if chosen else torch.zeros(0, dtype=torch.long)
    assert torch.equal(atom_values(view, "z"), expected_z)
    assert row_counts(view, "z").tolist() == [d.num_nodes for d in chosen]
    assert collated(view) is collated(dataset)


def test_a_dataset_of_one_structure_has_no_slices():
    (item,) = structures(1)
    dataset = Stored([item])
    assert dataset.slices is None
    for view in (dataset, dataset[[0]]):
        assert structure_values(view, "energy").tolist() == [0.0]
        assert structure_values(view, "name") == ["s0"]
        assert torch.equal(atom_values(view, "pos"), item.pos)
        assert row_counts(view, "z").tolist() == [1]


@pytest.mark.parametrize("reader", [collated, view_indices])
@pytest.mark.parametrize("value", [structures(2), structures(2)[0], None, "data.pt"])
def test_only_in_memory_datasets(reader, value):
    with pytest.raises(TypeError, match="expected an InMemoryDataset or a view of one"):
        reader(value)


@pytest.mark.parametrize("reader", [structure_values, atom_values, row_counts])
def test_a_missing_field_is_named(reader):
    with pytest.raises(KeyError, match="no field 'forces'"):
        reader(Stored(structures(3)), "forces")


def test_per_atom_field_is_not_per_structure():
    with pytest.raises(ValueError, match="'pos' does not have one row per structure"):
        structure_values(Stored(structures(3)), "pos")

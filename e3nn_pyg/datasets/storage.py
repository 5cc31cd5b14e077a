r"""The collated storage of an :class:`~torch_geometric.data.InMemoryDataset`, read in one
place.

An :class:`~torch_geometric.data.InMemoryDataset` keeps all its structures in one collated
:class:`~torch_geometric.data.Data` (every field concatenated along its first dimension) and
``slices`` (where each structure's rows start); ``dataset[index]`` is a view that shares that
storage and keeps the indices. Reading a field of many structures from the storage is one
indexing operation, where ``dataset[i]`` for each would build a :class:`Data` per structure.
PyG keeps the storage in the private attribute ``_data``; these functions are the only code
of the package that touches it:

- :func:`collated`: the storage itself (``"energy" in collated(dataset)``);
- :func:`view_indices`: the storage indices of the structures of a view, ``[M]``;
- :func:`structure_values`: a field with one row per structure (``energy``, ``cell``,
  ``y``, ...), ``[M, ...]``, in the view's order;
- :func:`atom_values`: a field with one row per atom (``z``, ``forces``, ...), ``[N, ...]``;
- :func:`row_counts`: how many rows of a field each structure has (its atoms for ``z``).

>>> from e3nn_pyg.datasets import ASEDataset, ethanol_paths
>>> import tempfile
>>> dataset = ASEDataset(ethanol_paths().isolated_atoms, root=tempfile.mkdtemp(), log=False)
>>> view = dataset[[3, 0]]
>>> view_indices(view).tolist(), atom_values(view, "z").tolist()
([3, 0], [7, 1])
>>> structure_values(view, "energy").shape, row_counts(view, "z").tolist()
(torch.Size([2]), [1, 1])
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

__all__ = ["atom_values", "collated", "row_counts", "structure_values", "view_indices"]


def _require_dataset(dataset: object) -> InMemoryDataset:
    if not isinstance(dataset, InMemoryDataset):
        raise TypeError(
            "expected an InMemoryDataset or a view of one (dataset[index]), got "
            f"{type(dataset).__name__}"
        )
    return dataset


def collated(dataset: InMemoryDataset) -> Data:
    """The collated :class:`~torch_geometric.data.Data` of all the structures of an
    :class:`~torch_geometric.data.InMemoryDataset` (of the whole dataset, also for a view
    ``dataset[index]``, whose structures are :func:`view_indices` of it).

    Raises:
        TypeError: for anything but an :class:`~torch_geometric.data.InMemoryDataset`.
    """
    return _require_dataset(dataset)._data


def view_indices(dataset: InMemoryDataset) -> Tensor:
    """The storage indices of the structures of a dataset or view, in its order, ``[M]``
    long."""
    return torch.as_tensor(_require_dataset(dataset).indices(), dtype=torch.long)


def _row_slices(dataset: InMemoryDataset, key: str) -> Tensor:
    """Where the rows of ``key`` start for each stored structure, ``[num_stored + 1]``."""
    data = collated(dataset)
    if key not in data:
        raise KeyError(f"the dataset has no field {key!r} (it has {', '.join(data.keys())})")
    if dataset.slices is None:  # PyG stores a single structure without slices
        value = data[key]
        return torch.tensor([0, len(value) if isinstance(value, Tensor) else 1])
    return dataset.slices[key]


def structure_values(dataset: InMemoryDataset, key: str) -> Tensor | list:
    """The field ``key`` of every structure of a dataset or view, one row per structure
    (``energy`` ``[M]``, ``cell`` ``[M, 3, 3]``, QM9's ``y`` ``[M, 19]``; a list for a field
    of strings such as ``config_type``).

    Raises:
        KeyError: when no structure has the field.
        ValueError: when the field does not have one row per structure (a per-atom field:
            use :func:`atom_values`).
    """
    data, index = collated(dataset), view_indices(dataset)
    slices = _row_slices(dataset, key)
    value = data[key]
    if not isinstance(value, Tensor):  # strings, collated into a list of one per structure
        values = value if dataset.slices is not None else [value]
        return [values[i] for i in index.tolist()]
    if not bool((slices[1:] - slices[:-1] == 1).all()):
        raise ValueError(f"the field {key!r} does not have one row per structure")
    return value[slices[index]]


def atom_values(dataset: InMemoryDataset, key: str) -> Tensor:
    """The rows of the per-atom field ``key`` (``z``, ``pos``, ``forces``, ...) of the
    structures of a dataset or view, structure after structure in its order, ``[N, ...]``.

    Raises:
        KeyError: when no structure has the field.
    """
    data, index = collated(dataset), view_indices(dataset)
    slices = _row_slices(dataset, key)
    start = slices[index]  # [M]
    count = slices[index + 1] - start  # [M]
    owner = torch.repeat_interleave(torch.arange(len(index)), count)  # [N] structure of a row
    first = torch.cumsum(count, 0) - count  # [M] position of each structure's first row
    rows = start[owner] + torch.arange(len(owner)) - first[owner]  # [N]
    return data[key][rows]


def row_counts(dataset: InMemoryDataset, key: str) -> Tensor:
    """How many rows of the field ``key`` each structure of a dataset or view has, ``[M]``
    long: the number of atoms for a per-atom field such as ``z``.

    Raises:
        KeyError: when no structure has the field.
    """
    slices, index = _row_slices(dataset, key), view_indices(dataset)
    return slices[index + 1] - slices[index]  # [M]

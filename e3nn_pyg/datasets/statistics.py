r"""Statistics of a training set of an interatomic potential: the reference energies of the
isolated atoms (E0s), and the shift and scale of the atomic energies.

A potential predicts the total energy of a structure as a sum of atomic energies,

.. math::
    E = \sum_i \bigl(\sigma\, h_i + \mu + E^0_{z_i}\bigr),

where :math:`h_i` is the network's output for atom :math:`i` (of order 1 at initialization).
:class:`~e3nn_pyg.models.EquivariantNet` takes :math:`\mu` as ``mean``, :math:`\sigma` as
``std`` and :math:`E^0` as ``atomref`` (``e0s[:, None]``). The functions here give them from
the training structures, as MACE and NequIP do:

- :math:`E^0_z`, the isolated-atom energies: read from the file's isolated-atom entries
  (:func:`isolated_atom_energies`), or fitted by least squares of the total energies on the
  composition (:func:`fit_e0s`);
- :math:`\mu`, the shift: the mean energy per atom left after subtracting the E0s
  (:func:`atomic_energy_shift`). A shift per element is :func:`fit_e0s` of those residual
  energies, i.e. :func:`fit_e0s` of the total energies when the E0s are fitted too;
- :math:`\sigma`, the scale: the root mean square of the force components
  (:func:`force_rms`, MACE's and NequIP's choice when forces are trained: the network's
  gradients then start at the size of the forces), or, without forces, the standard
  deviation of that per-atom energy (:func:`atomic_energy_std`).

Every function takes the structures as a list of :class:`~torch_geometric.data.Data` (with
the fields of :func:`~e3nn_pyg.datasets.read_structures`; only ``z``, ``energy``,
``energy_weight``, ``forces``, ``forces_weight`` and ``config_type`` are read, so structures
of different files mix), a :class:`~torch_geometric.data.Batch`, or an
:class:`~torch_geometric.data.InMemoryDataset` or a slice of one (``dataset[train]``, read
without its ``transform``), and returns float64 tensors. The statistics are unweighted
(``weight`` is ignored); energies count only where ``energy_weight`` is not 0 and forces
only where ``forces_weight`` is not 0 (in a list, a structure without the label counts as
unlabelled); an isolated-atom entry without an energy is an error.

An **isolated-atom entry** is a structure whose ``config_type`` is ``"IsolatedAtom"`` (MACE's
spelling) or ``"isolated_atom"`` (that of the shipped ethanol data), in any case and with or
without the underscore. One-atom structures without that mark are not taken for isolated
atoms: a one-atom periodic cell (a primitive fcc crystal) is a bulk structure.

>>> from e3nn_pyg.datasets import ethanol_paths, read_structures
>>> e0s = isolated_atom_energies(read_structures(ethanol_paths().isolated_atoms))
>>> round(e0s[6].item(), 4)  # eV, carbon
-1025.2771
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data, InMemoryDataset

from ..checks import is_int
from ..elements import MAX_Z, element_names
from .storage import atom_values, collated, row_counts, structure_values, view_indices

__all__ = [
    "atomic_energy_shift",
    "atomic_energy_std",
    "composition",
    "fit_e0s",
    "force_rms",
    "isolated_atom_energies",
    "isolated_atom_mask",
    "scale_shift",
]

Structures = Sequence[Data] | Batch | InMemoryDataset
"""The forms of a set of structures these functions accept."""

_ISOLATED_ATOM = "isolatedatom"  # config_type lower-cased, without underscores


@dataclass
class _Table:
    """The fields of a set of structures that the statistics read, flat over the atoms."""

    z: Tensor  # [N] long
    batch: Tensor  # [N] structure of each atom
    num_atoms: Tensor  # [M] long
    energy: Tensor | None  # [M] float64
    energy_weight: Tensor | None  # [M] float64, 0 where a structure has no energy
    forces: Tensor | None  # [N, 3] float64
    forces_weight: Tensor | None  # [M] float64, 0 where a structure has no forces
    config_type: list[str]  # [M]


def _table(structures: Structures) -> _Table:
    if isinstance(structures, InMemoryDataset):
        return _dataset_table(structures)
    if isinstance(structures, Batch):
        return _batch_table(structures)
    if isinstance(structures, (str, bytes)) or not isinstance(structures, Sequence):
        raise TypeError(
            "structures must be a list of Data, a Batch or an InMemoryDataset, "
            f"got {type(structures).__name__}"
        )
    if len(structures) == 0:
        raise ValueError("no structures given")
    if not all(isinstance(d, Data) for d in structures):
        raise TypeError("structures must be Data objects")
    return _list_table(structures)


def _batch_table(batch: Batch) -> _Table:
    config_type = batch.get("config_type")
    return _Table(
        z=batch.z.cpu(),
        batch=batch.batch.cpu(),
        num_atoms=torch.bincount(batch.batch.cpu(), minlength=batch.num_graphs),
        energy=_float64(batch.get("energy")),
        energy_weight=_float64(batch.get("energy_weight")),
        forces=_float64(batch.get("forces")),
        forces_weight=_float64(batch.get("forces_weight")),
        config_type=list(config_type) if config_type is not None else [""] * batch.num_graphs,
    )


def _list_label(
    structures: Sequence[Data], key: str, rows: list[int]
) -> tuple[Tensor | None, Tensor | None]:
    """The label ``key`` of structures that may come from different sources, concatenated,
    and its weight per structure: a structure without it counts as unlabelled (zeros with
    weight 0, as in :func:`~e3nn_pyg.datasets.align_fields`)."""
    if not any(key in d for d in structures):
        return None, None
    values = [
        _float64(d[key]).reshape(n, -1) if key in d else torch.zeros(n, 0, dtype=torch.float64)
        for d, n in zip(structures, rows)
    ]
    width = max(value.shape[1] for value in values)
    values = [value if value.shape[1] else value.new_zeros(len(value), width) for value in values]
    weight = [float(d[f"{key}_weight"]) if f"{key}_weight" in d else 1.0 for d in structures]
    present = [key in d for d in structures]
    weight = torch.tensor([w if p else 0.0 for w, p in zip(weight, present)])  # [M]
    return torch.cat(values).squeeze(1), weight.double()


def _list_table(structures: Sequence[Data]) -> _Table:
    """The table of structures that may come from different sources (other fields)."""
    num_atoms = torch.tensor([d.z.numel() for d in structures])  # [M]
    energy, energy_weight = _list_label(structures, "energy", [1] * len(structures))  # [M]
    forces, forces_weight = _list_label(structures, "forces", num_atoms.tolist())  # [N, 3]
    return _Table(
        z=torch.cat([d.z.cpu() for d in structures]),
        batch=torch.repeat_interleave(torch.arange(len(structures)), num_atoms),
        num_atoms=num_atoms,
        energy=energy,
        energy_weight=energy_weight,
        forces=forces,
        forces_weight=forces_weight,
        config_type=[d.get("config_type", "") for d in structures],
    )


def _float64(value: Tensor | None) -> Tensor | None:
    return None if value is None else value.detach().to("cpu", torch.float64)


def _dataset_table(dataset: InMemoryDataset) -> _Table:
    """The table of a (view of an) InMemoryDataset, read from its collated storage."""
    index = view_indices(dataset)  # [M]
    if len(index) == 0:
        raise ValueError("no structures given")
    stored = collated(dataset)

    def per_structure(key: str) -> Tensor | None:
        return _float64(structure_values(dataset, key)) if key in stored else None

    z = atom_values(dataset, "z")  # [N]
    num_atoms = row_counts(dataset, "z")  # [M]
    types = structure_values(dataset, "config_type") if "config_type" in stored else None
    return _Table(
        z=z,
        batch=torch.repeat_interleave(torch.arange(len(index)), num_atoms),
        num_atoms=num_atoms,
        energy=per_structure("energy"),
        energy_weight=per_structure("energy_weight"),
        forces=_float64(atom_values(dataset, "forces")) if "forces" in stored else None,
        forces_weight=per_structure("forces_weight"),
        config_type=list(types) if types is not None else [""] * len(index),
    )


def _check_max_z(max_z: object, z: Tensor) -> None:
    if not is_int(max_z) or max_z < 2:
        raise ValueError(f"max_z must be an int >= 2, got {max_z!r}")
    if z.numel() and int(z.max()) >= max_z:
        raise ValueError(f"atomic number {int(z.max())} is not below max_z = {max_z}")


def _labelled_energies(table: _Table) -> tuple[Tensor, Tensor]:
    """The energies ``[M]`` and which structures have one (``energy_weight`` not 0) ``[M]``
    bool; a ValueError when none has."""
    if table.energy is None:
        raise ValueError("no structure has an energy")
    if table.energy_weight is None:
        return table.energy, torch.ones(len(table.energy), dtype=torch.bool)
    labelled = table.energy_weight != 0  # [M]
    if not labelled.any():
        raise ValueError("no structure has an energy (every energy_weight is 0)")
    return table.energy, labelled


def _composition(table: _Table, max_z: int) -> Tensor:
    counts = torch.zeros(len(table.num_atoms), max_z, dtype=torch.float64)  # [M, max_z]
    ones = torch.ones(len(table.z), dtype=torch.float64)  # [N]
    counts.index_put_((table.batch, table.z), ones, accumulate=True)
    return counts


def composition(structures: Structures, max_z: int = MAX_Z) -> Tensor:
    r"""How many atoms of each element every structure holds.

    Args:
        structures: The structures (see the module docstring).
        max_z (int, optional): Atomic numbers must lie below it. (default:
            :obj:`~e3nn_pyg.elements.MAX_Z`, 100)

    Returns:
        ``[num_structures, max_z]`` float64: entry :math:`(s, z)` counts the atoms of
        atomic number :math:`z` in structure :math:`s`.
    """
    table = _table(structures)
    _check_max_z(max_z, table.z)
    return _composition(table, max_z)


def isolated_atom_mask(structures: Structures) -> Tensor:
    """Which structures are isolated-atom entries (see the module docstring).

    Returns:
        ``[num_structures]`` bool.

    Raises:
        ValueError: when a structure marked as an isolated atom has more than one atom.
    """
    return _isolated_atom_mask(_table(structures))


def _isolated_atom_mask(table: _Table) -> Tensor:
    marked = [c.replace("_", "").lower() == _ISOLATED_ATOM for c in table.config_type]
    mask = torch.tensor(marked, dtype=torch.bool)  # [M]
    crowded = mask & (table.num_atoms != 1)
    if crowded.any():
        s = int(crowded.nonzero()[0, 0])
        raise ValueError(
            f"structure {s} has config_type {table.config_type[s]!r} (an isolated atom) but "
            f"{int(table.num_atoms[s])} atoms"
        )
    return mask


def isolated_atom_energies(
    structures: Structures, max_z: int = MAX_Z, elements: Iterable[int] | None = None
) -> Tensor:
    r"""The energies :math:`E^0_z` of the isolated-atom entries among ``structures``.

    Args:
        structures: The structures (see the module docstring); entries that are not isolated
            atoms are ignored.
        max_z (int, optional): Length of the result. (default:
            :obj:`~e3nn_pyg.elements.MAX_Z`, 100)
        elements (iterable of int, optional): Atomic numbers that must have an entry, e.g.
            those of the training set. (default: :obj:`None`)

    Returns:
        ``[max_z]`` float64 indexed by atomic number, 0 for elements without entry.

    Raises:
        ValueError: when there is no isolated-atom entry, two entries of one element
            disagree, or an element of ``elements`` has no entry.
    """
    table = _table(structures)
    _check_max_z(max_z, table.z)
    mask = _isolated_atom_mask(table)
    if not mask.any():
        raise ValueError(
            "no isolated-atom entry (config_type 'IsolatedAtom' or 'isolated_atom'); "
            "fit the E0s with fit_e0s instead"
        )
    atom_of = torch.zeros(len(mask), dtype=torch.long).index_copy_(
        0, table.batch, torch.arange(len(table.z))
    )  # [M] the (last) atom of each structure: the only one for isolated atoms
    energy = _isolated_energies(table, mask, atom_of)  # [M]
    e0s = torch.zeros(max_z, dtype=torch.float64)  # [max_z]
    found: dict[int, float] = {}
    for s in mask.nonzero()[:, 0].tolist():
        z, value = int(table.z[atom_of[s]]), float(energy[s])
        if z in found and found[z] != value:
            raise ValueError(
                f"two isolated-atom entries of {element_names([z])} disagree: {found[z]} and "
                f"{value}"
            )
        found[z] = value
        e0s[z] = value
    if elements is not None:
        missing = {int(z) for z in elements} - set(found)
        if missing:
            raise ValueError(
                f"no isolated-atom entry for {element_names(missing)} (entries for "
                f"{element_names(found)}); add them or fit the E0s with fit_e0s"
            )
    return e0s


def _isolated_energies(table: _Table, mask: Tensor, atom_of: Tensor) -> Tensor:
    """The energies of the structures ``[M]``, refusing an isolated-atom entry without
    one."""
    if table.energy is None:
        raise ValueError("the isolated-atom entries have no energy")
    labelled = (
        table.energy_weight != 0
        if table.energy_weight is not None
        else torch.ones(len(mask), dtype=torch.bool)
    )  # [M]
    unlabelled = mask & ~labelled
    if unlabelled.any():
        s = int(unlabelled.nonzero()[0, 0])
        raise ValueError(
            f"isolated-atom entry {s} ({element_names([int(table.z[atom_of[s]])])}) has no "
            f"energy ({int(unlabelled.sum())} of the {int(mask.sum())} entries have none)"
        )
    return table.energy


def fit_e0s(structures: Structures, max_z: int = MAX_Z) -> Tensor:
    r"""Reference energies fitted by least squares of the total energies on the composition,

    .. math::
        E^0 = \operatorname*{arg\,min}_{e} \sum_s \Bigl(E_s - \sum_z n_{sz}\, e_z\Bigr)^2,

    over the elements present. When the compositions do not determine every element's
    :math:`E^0` (all structures are one molecule, like the ethanol set), the solution of
    smallest norm: the fitted sum over any training composition is still the least-squares
    one.

    Args:
        structures: The training structures (see the module docstring).
        max_z (int, optional): Length of the result. (default:
            :obj:`~e3nn_pyg.elements.MAX_Z`, 100)

    Returns:
        ``[max_z]`` float64 indexed by atomic number, 0 for elements absent from the
        structures with an energy (``energy_weight`` not 0).

    Raises:
        ValueError: when no structure has an energy.
    """
    table = _table(structures)
    _check_max_z(max_z, table.z)
    energy, labelled = _labelled_energies(table)  # [M], [M]
    energy = energy[labelled]  # [M']
    counts = _composition(table, max_z)[labelled]  # [M', max_z]
    present = counts.sum(0) > 0  # [max_z]
    e0s = torch.zeros(max_z, dtype=torch.float64)  # [max_z]
    fit = torch.linalg.lstsq(counts[:, present], energy[:, None], driver="gelsd")
    e0s[present] = fit.solution[:, 0]
    return e0s


def _atomic_energies(table: _Table, e0s: Tensor) -> Tensor:
    """:math:`(E_s - \\sum_i E^0_{z_i}) / N_s` per structure with an energy, ``[M']``."""
    if not isinstance(e0s, Tensor) or e0s.dim() != 1:
        raise TypeError("e0s must be a 1-D tensor indexed by atomic number")
    if table.z.numel() and int(table.z.max()) >= len(e0s):
        raise ValueError(f"atomic number {int(table.z.max())} has no entry in e0s ({len(e0s)})")
    reference = torch.zeros(len(table.num_atoms), dtype=torch.float64).index_add_(
        0, table.batch, e0s.detach().to("cpu", torch.float64)[table.z]
    )  # [M]
    energy, labelled = _labelled_energies(table)
    return ((energy - reference) / table.num_atoms)[labelled]  # [M']


def atomic_energy_shift(structures: Structures, e0s: Tensor) -> Tensor:
    r"""The shift :math:`\mu`: the mean over structures of the energy per atom after
    subtracting the reference energies, :math:`\langle (E_s - \sum_i E^0_{z_i}) / N_s\rangle`.

    Args:
        structures: The training structures (see the module docstring).
        e0s (Tensor): Reference energies ``[max_z]`` (:func:`isolated_atom_energies` or
            :func:`fit_e0s`).

    Returns:
        A float64 scalar.
    """
    return _atomic_energies(_table(structures), e0s).mean()


def atomic_energy_std(structures: Structures, e0s: Tensor) -> Tensor:
    r"""The standard deviation over structures of the energy per atom after subtracting the
    reference energies (the scale when no forces are trained).

    Args:
        structures: The training structures (see the module docstring).
        e0s (Tensor): Reference energies ``[max_z]``.

    Returns:
        A float64 scalar (0 for a single structure).
    """
    return _atomic_energies(_table(structures), e0s).std(correction=0)


def force_rms(structures: Structures) -> Tensor:
    r"""The root mean square of the force components,
    :math:`\sqrt{\langle F_{i\alpha}^2\rangle}`, over the atoms of the structures whose
    ``forces_weight`` is not 0.

    Returns:
        A float64 scalar.

    Raises:
        ValueError: when no structure has forces.
    """
    return _force_rms(_table(structures))


def _force_rms(table: _Table) -> Tensor:
    if table.forces is None:
        raise ValueError("the structures have no forces")
    forces = table.forces  # [N, 3]
    if table.forces_weight is not None:
        forces = forces[table.forces_weight[table.batch] != 0]
    if len(forces) == 0:
        raise ValueError("no structure has forces (every forces_weight is 0)")
    return forces.pow(2).mean().sqrt()


def scale_shift(
    structures: Structures, e0s: Tensor, scale: str = "force_rms"
) -> tuple[Tensor, Tensor]:
    r"""The scale :math:`\sigma` and shift :math:`\mu` of the atomic energies (module
    docstring).

    Args:
        structures: The training structures (see the module docstring).
        e0s (Tensor): Reference energies ``[max_z]``.
        scale (str, optional): ``"force_rms"`` (:func:`force_rms`) or ``"energy_std"``
            (:func:`atomic_energy_std`). (default: ``"force_rms"``)

    Returns:
        ``(scale, shift)``, float64 scalars.

    Raises:
        ValueError: for an unknown ``scale``, or a scale of 0 (it would silence the network).
    """
    if scale not in ("force_rms", "energy_std"):
        raise ValueError(f"scale must be 'force_rms' or 'energy_std', got {scale!r}")
    table = _table(structures)
    atomic = _atomic_energies(table, e0s)  # [M]
    value = _force_rms(table) if scale == "force_rms" else atomic.std(correction=0)
    if not value > 0:
        raise ValueError(f"the {scale} of these structures is {float(value)}: no scale to use")
    return value, atomic.mean()

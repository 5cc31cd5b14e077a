"""Datasets: QM9 read offline from the ``qm9pack`` package with a small committed fixture;
structures with energies, forces and stresses from any file ASE reads, with the ethanol set
shipped; seeded splits; the reference energies and scale/shift of interatomic potentials;
reading the collated storage of a dataset (:mod:`~e3nn_pyg.datasets.storage`).

This subpackage imports torch and torch_geometric only (no other part of e3nn_pyg but its
argument checks, element table and progress bars); ASE is imported when a file is read.
"""

from .ase_data import (
    DEFAULT_CONFIG_TYPE,
    ETHANOL_DIR,
    ASEDataset,
    EthanolPaths,
    align_fields,
    atoms_to_data,
    ethanol_paths,
    read_structures,
)
from .cache import CachedInMemoryDataset, DatasetCacheError, cache_root
from .fixture import FIXTURE_PATH, make_fixture
from .pyg_export import write_pyg_raw
from .qm9 import QM9Pack, default_root
from .qm9_targets import (
    HARTREE_TO_EV,
    HARTREE_TO_KCALMOL,
    KCALMOL_TO_EV,
    QM9_TARGET_INFO,
    QM9_TARGETS,
    QM9Target,
    target_index,
)
from .split import random_split
from .statistics import (
    atomic_energy_shift,
    atomic_energy_std,
    composition,
    fit_e0s,
    force_rms,
    isolated_atom_energies,
    isolated_atom_mask,
    scale_shift,
)
from .storage import atom_values, collated, row_counts, structure_values, view_indices

__all__ = [
    "DEFAULT_CONFIG_TYPE",
    "ETHANOL_DIR",
    "FIXTURE_PATH",
    "HARTREE_TO_EV",
    "HARTREE_TO_KCALMOL",
    "KCALMOL_TO_EV",
    "QM9_TARGETS",
    "QM9_TARGET_INFO",
    "ASEDataset",
    "CachedInMemoryDataset",
    "DatasetCacheError",
    "EthanolPaths",
    "QM9Pack",
    "QM9Target",
    "align_fields",
    "atom_values",
    "atomic_energy_shift",
    "atomic_energy_std",
    "atoms_to_data",
    "cache_root",
    "collated",
    "composition",
    "default_root",
    "ethanol_paths",
    "fit_e0s",
    "force_rms",
    "isolated_atom_energies",
    "isolated_atom_mask",
    "make_fixture",
    "random_split",
    "read_structures",
    "row_counts",
    "scale_shift",
    "structure_values",
    "target_index",
    "view_indices",
    "write_pyg_raw",
]

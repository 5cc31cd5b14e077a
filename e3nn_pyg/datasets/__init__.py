"""Datasets: QM9 read offline from the ``qm9pack`` package, and a small committed fixture.

This subpackage imports torch and torch_geometric only (no other part of e3nn_pyg).
"""

from .qm9 import (
    FIXTURE_PATH,
    HARTREE_TO_EV,
    HARTREE_TO_KCALMOL,
    KCALMOL_TO_EV,
    QM9_TARGET_INFO,
    QM9_TARGETS,
    QM9Pack,
    QM9Target,
    default_root,
    make_fixture,
    random_split,
    target_index,
    write_pyg_raw,
)

__all__ = [
    "FIXTURE_PATH",
    "HARTREE_TO_EV",
    "HARTREE_TO_KCALMOL",
    "KCALMOL_TO_EV",
    "QM9_TARGETS",
    "QM9_TARGET_INFO",
    "QM9Pack",
    "QM9Target",
    "default_root",
    "make_fixture",
    "random_split",
    "target_index",
    "write_pyg_raw",
]

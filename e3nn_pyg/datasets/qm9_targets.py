"""The 19 regression targets of QM9: their order in ``data.y``, units and names.

The order and units are those of :class:`torch_geometric.datasets.QM9`, so that a model
trained on :class:`~e3nn_pyg.datasets.QM9Pack` reads PyG's ``QM9`` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HARTREE_TO_EV",
    "HARTREE_TO_KCALMOL",
    "KCALMOL_TO_EV",
    "QM9_TARGETS",
    "QM9_TARGET_INFO",
    "QM9Target",
    "target_index",
]

HARTREE_TO_EV = 27.211386246
"""eV per Hartree (CODATA 2018), the factor of PyG's QM9."""
KCALMOL_TO_EV = 0.04336414
"""eV per kcal/mol, the factor PyG applies to DeepChem's atomization energies."""
HARTREE_TO_KCALMOL = 627.509
"""kcal/mol per Hartree used by DeepChem's ``gdb9.sdf.csv`` for the atomization energies."""


@dataclass(frozen=True)
class QM9Target:
    r"""One regression target of QM9.

    Args:
        index (int): Column of ``data.y``.
        name (str): Short name, as in :data:`QM9_TARGETS`.
        description (str): What the column holds.
        unit (str): Unit of ``data.y[:, index]`` (the unit of PyG's ``QM9``).
        report_unit (str): Unit for reporting errors (meV for energies).
        report_scale (float): Factor from ``unit`` to ``report_unit``.
    """

    index: int
    name: str
    description: str
    unit: str
    report_unit: str
    report_scale: float


def _target(index: int, name: str, description: str, unit: str) -> QM9Target:
    if unit == "eV":
        return QM9Target(index, name, description, unit, "meV", 1000.0)
    return QM9Target(index, name, description, unit, unit, 1.0)


QM9_TARGET_INFO: tuple[QM9Target, ...] = (
    _target(0, "mu", "dipole moment", "D"),
    _target(1, "alpha", "isotropic polarizability", "a0^3"),
    _target(2, "homo", "energy of the highest occupied molecular orbital", "eV"),
    _target(3, "lumo", "energy of the lowest unoccupied molecular orbital", "eV"),
    _target(4, "gap", "gap between lumo and homo", "eV"),
    _target(5, "r2", "electronic spatial extent <R^2>", "a0^2"),
    _target(6, "zpve", "zero point vibrational energy", "eV"),
    _target(7, "U0", "internal energy at 0 K", "eV"),
    _target(8, "U", "internal energy at 298.15 K", "eV"),
    _target(9, "H", "enthalpy at 298.15 K", "eV"),
    _target(10, "G", "free energy at 298.15 K", "eV"),
    _target(11, "cv", "heat capacity at 298.15 K", "cal/(mol K)"),
    _target(12, "U0_atom", "atomization energy at 0 K", "eV"),
    _target(13, "U_atom", "atomization energy at 298.15 K", "eV"),
    _target(14, "H_atom", "atomization enthalpy at 298.15 K", "eV"),
    _target(15, "G_atom", "atomization free energy at 298.15 K", "eV"),
    _target(16, "A", "rotational constant A", "GHz"),
    _target(17, "B", "rotational constant B", "GHz"),
    _target(18, "C", "rotational constant C", "GHz"),
)
"""The 19 targets of ``data.y`` in column order, with units (those of PyG's ``QM9``)."""

QM9_TARGETS: tuple[str, ...] = tuple(t.name for t in QM9_TARGET_INFO)
"""Target names in column order: ``("mu", "alpha", ..., "A", "B", "C")``."""

_TARGET_BY_NAME = {t.name.lower(): t.index for t in QM9_TARGET_INFO}


def target_index(target: int | str) -> int:
    r"""Column of ``data.y`` for a target given by name (case-insensitive) or by index.

    >>> target_index("U0"), target_index("u0_atom"), target_index(4)
    (7, 12, 4)

    Args:
        target (int or str): A name of :data:`QM9_TARGETS` or an index in ``0..18``.
    """
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        raise TypeError(f"target must be a name or an int, got {type(target).__name__}")
    if isinstance(target, int):
        if not 0 <= target < len(QM9_TARGETS):
            raise ValueError(
                f"target index {target} out of range 0..{len(QM9_TARGETS) - 1}; "
                f"valid names: {', '.join(QM9_TARGETS)}"
            )
        return target
    try:
        return _TARGET_BY_NAME[target.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown QM9 target {target!r}; valid names: {', '.join(QM9_TARGETS)}"
        ) from None

"""The CSV format of the ``qm9pack`` package: where its files are, and how a row parses.

One row holds one molecule: its 1-based QM9 index, element symbols, positions in Å and the
15 properties of the QM9 paper in its units (Hartree, Debye, ...). Shared by the dataset
(:class:`~e3nn_pyg.datasets.QM9Pack`), the PyG export and the fixture maker.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..elements import atomic_number
from .qm9_targets import HARTREE_TO_EV, HARTREE_TO_KCALMOL

__all__ = [
    "ATOM_ENERGY_HARTREE",
    "COLUMNS",
    "NUM_MOLECULES_QM9",
    "NUM_UNCHARACTERIZED",
    "PROPERTY_COLUMNS",
    "QM9PACK_FILES",
    "Molecule",
    "iter_rows",
    "parse_row",
    "qm9pack_data_dir",
]

NUM_MOLECULES_QM9 = 133_885
"""Molecules of the QM9 paper, uncharacterized ones included."""
NUM_UNCHARACTERIZED = 3_054
"""Molecules whose geometry optimization changed their connectivity (not in ``qm9pack``)."""

QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
"""The data files of ``qm9pack``, in QM9 order."""

# The property columns of qm9pack's CSV files, in the order of ``data.y`` without the four
# atomization energies (columns 12..15), and the factors to PyG's units.
PROPERTY_COLUMNS = (
    ("Dipole_debye", 1.0),
    ("Polarizability_bohr3", 1.0),
    ("HOMO_au", HARTREE_TO_EV),
    ("LUMO_au", HARTREE_TO_EV),
    ("HOMO_LUMO_gap_au", HARTREE_TO_EV),
    ("R2_bohr2", 1.0),
    ("ZPVE_au", HARTREE_TO_EV),
    ("InternalEnergy_0K_au", HARTREE_TO_EV),
    ("InternalEnergy_298K_au", HARTREE_TO_EV),
    ("Enthalphy_298K_au", HARTREE_TO_EV),
    ("GibbsFreeEnergy_298K_au", HARTREE_TO_EV),
    ("Heatcapacity_Cv_cal_mol_K", 1.0),
    ("RotA_GHz", 1.0),
    ("RotB_GHz", 1.0),
    ("RotC_GHz", 1.0),
)
_ENERGY_COLUMNS = slice(7, 11)  # U0, U, H, G in Hartree among the property columns
COLUMNS = ("Index", "Elements", "XYZ_Ang", *(name for name, _ in PROPERTY_COLUMNS))
"""The columns read from a qm9pack CSV file (the fixture keeps only these)."""

# Free-atom energies of the QM9 paper (atomref.txt), B3LYP/6-31G(2df,p), in Hartree:
# U0, U (298.15 K), H (298.15 K), G (298.15 K).
ATOM_ENERGY_HARTREE = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}


@dataclass(frozen=True)
class Molecule:
    """One molecule as read from a CSV row, in the units of the file."""

    index: int  # 1-based QM9 index
    z: tuple[int, ...]
    pos: tuple[tuple[float, float, float], ...]  # Å
    properties: tuple[float, ...]  # the values of PROPERTY_COLUMNS

    def atomization_kcalmol(self) -> list[float]:
        """U0, U, H, G minus the free-atom energies, in kcal/mol (DeepChem's columns)."""
        energies = self.properties[_ENERGY_COLUMNS]
        out = []
        for k, energy in enumerate(energies):
            reference = math.fsum(ATOM_ENERGY_HARTREE[z][k] for z in self.z)
            out.append((energy - reference) * HARTREE_TO_KCALMOL)
        return out


def qm9pack_data_dir() -> str:
    """The folder of the installed ``qm9pack``'s CSV files.

    Raises:
        ModuleNotFoundError: when ``qm9pack`` is not installed.
        FileNotFoundError: when it lacks one of :data:`QM9PACK_FILES`.
    """
    # ``import qm9pack`` fails with recent setuptools (it imports pkg_resources), so locate the
    # package without executing it.
    spec = importlib.util.find_spec("qm9pack")
    if spec is None:
        raise ModuleNotFoundError(
            "QM9Pack(source='qm9pack') needs the qm9pack package: "
            "pip install 'e3nn_pyg[qm9]' (or use source='fixture')"
        )
    if spec.submodule_search_locations:
        package_dir = next(iter(spec.submodule_search_locations))
    else:
        package_dir = os.path.dirname(spec.origin or "")
    data_dir = os.path.join(package_dir, "data")
    missing = [f for f in QM9PACK_FILES if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise FileNotFoundError(f"qm9pack at {package_dir} lacks its data files {missing}")
    return data_dir


def iter_rows(paths: Sequence[str]) -> Iterator[dict[str, str]]:
    """The rows of qm9pack-format CSV files, restricted to :data:`COLUMNS`."""
    csv.field_size_limit(sys.maxsize)
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{path} lacks the columns {missing}")
            where = [header.index(c) for c in COLUMNS]
            for row in reader:
                yield {c: row[i] for c, i in zip(COLUMNS, where)}


def parse_row(row: dict[str, str]) -> Molecule:
    """The molecule of one row of :func:`iter_rows`."""
    index = int(row["Index"])
    try:
        z = tuple(atomic_number(s.strip(" '\"")) for s in row["Elements"].strip("[]").split(","))
    except KeyError as error:
        raise ValueError(f"molecule {index}: unknown element {error}") from None
    xyz = [float(v) for v in row["XYZ_Ang"].replace("[", "").replace("]", "").split(",")]
    if len(xyz) != 3 * len(z):
        raise ValueError(f"molecule {index}: {len(z)} elements but {len(xyz)} coordinates")
    pos = tuple(zip(xyz[0::3], xyz[1::3], xyz[2::3]))
    properties = tuple(float(row[name]) for name, _ in PROPERTY_COLUMNS)
    return Molecule(index, z, pos, properties)

r"""QM9, offline: the 130,831 molecules shipped by the ``qm9pack`` package as a PyG dataset.

`QM9 <https://doi.org/10.1038/sdata.2014.22>`_ holds 133,885 small organic molecules (up to
9 heavy atoms C, N, O, F) with their B3LYP/6-31G(2df,p) equilibrium geometry and properties.
3,054 of them are *uncharacterized*: their geometry optimization changed the molecule's
connectivity. ``qm9pack`` (``pip install e3nn_pyg[qm9]``) ships the other 130,831 as CSV files
inside the package, which is exactly the set :class:`torch_geometric.datasets.QM9` keeps: the
missing indices are those of the QM9 paper's ``uncharacterized.txt`` (same count; the first
100 and the last 20 compared with the published list). So :class:`QM9Pack` needs no network and no
RDKit, and there is nothing left to skip.

Every :class:`~torch_geometric.data.Data` carries the fields it shares with PyG's ``QM9``:

- ``z``: atomic numbers, ``[num_atoms]`` long;
- ``pos``: positions in Å, ``[num_atoms, 3]`` float32, at the full precision of the QM9 files
  (PyG reads them from an SDF file rounded to 4 decimals, so the two differ by up to
  :math:`5 \cdot 10^{-5}` Å);
- ``y``: the 19 targets of :data:`QM9_TARGETS`, ``[1, 19]`` float32, same order and units as PyG;
- ``name``: ``"gdb_<index>"`` with the 1-based QM9 index, e.g. ``"gdb_1"`` for methane;
- ``idx``: the 0-based position in the full 133,885-molecule list (``index - 1``), as in PyG.

PyG's RDKit features ``x``, ``edge_index``, ``edge_attr`` and ``smiles`` are not built: the
models of this package only read ``z`` and ``pos``.

The targets are computed the way PyG computes them from DeepChem's ``gdb9.sdf.csv``: energies in
Hartree are multiplied by :math:`27.211386246` (eV per Hartree) in float32, and the atomization
energies are

.. math::
    E^{\text{ATOM}} = \Bigl(E - \sum_{a} E^{\text{ref}}_{Z_a}\Bigr)
    \cdot 627.509\,\tfrac{\text{kcal/mol}}{\text{Ha}}
    \cdot 0.04336414\,\tfrac{\text{eV}}{\text{kcal/mol}}

with the free-atom reference energies :math:`E^{\text{ref}}` of the QM9 paper (``atomref.txt``),
rounded to float32 in kcal/mol before the conversion to eV, as PyG does.

The fixture shipped with the package (297 molecules, methane first), cached under
:func:`default_root`:

>>> dataset = QM9Pack(source="fixture", log=False)
>>> dataset[0]
Data(y=[1, 19], pos=[5, 3], z=[5], name='gdb_1', idx=[1])
>>> round(dataset[0].y[0, target_index("U0")].item(), 4)  # eV
-1101.4878
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from ..checks import is_int
from ..progress import tqdm_if_installed

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

HARTREE_TO_EV = 27.211386246
"""eV per Hartree (CODATA 2018), the factor of PyG's QM9."""
KCALMOL_TO_EV = 0.04336414
"""eV per kcal/mol, the factor PyG applies to DeepChem's atomization energies."""
HARTREE_TO_KCALMOL = 627.509
"""kcal/mol per Hartree used by DeepChem's ``gdb9.sdf.csv`` for the atomization energies."""

FIXTURE_PATH = Path(__file__).parent / "fixtures" / "qm9_fixture.csv"
"""297 molecules in ``qm9pack``'s CSV format (see :func:`make_fixture`)."""

_NUM_MOLECULES_QM9 = 133_885
_NUM_UNCHARACTERIZED = 3_054


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


# The property columns of qm9pack's CSV files, in the order of ``data.y`` without the four
# atomization energies (columns 12..15), and the factors to PyG's units.
_PROPERTY_COLUMNS = (
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
_COLUMNS = ("Index", "Elements", "XYZ_Ang", *(name for name, _ in _PROPERTY_COLUMNS))

# Free-atom energies of the QM9 paper (atomref.txt), B3LYP/6-31G(2df,p), in Hartree:
# U0, U (298.15 K), H (298.15 K), G (298.15 K).
_ATOM_ENERGY_HARTREE = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
_SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_Z_TO_SYMBOL = {z: s for s, z in _SYMBOL_TO_Z.items()}

_SOURCES = {
    "qm9pack": ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"),
    "fixture": (FIXTURE_PATH.name,),
}


@dataclass(frozen=True)
class _Molecule:
    """One molecule as read from a CSV row, in the units of the file."""

    index: int  # 1-based QM9 index
    z: tuple[int, ...]
    pos: tuple[tuple[float, float, float], ...]  # Å
    properties: tuple[float, ...]  # the values of _PROPERTY_COLUMNS

    def atomization_kcalmol(self) -> list[float]:
        """U0, U, H, G minus the free-atom energies, in kcal/mol (DeepChem's columns)."""
        energies = self.properties[_ENERGY_COLUMNS]
        out = []
        for k, energy in enumerate(energies):
            reference = math.fsum(_ATOM_ENERGY_HARTREE[z][k] for z in self.z)
            out.append((energy - reference) * HARTREE_TO_KCALMOL)
        return out


def default_root() -> str:
    """Default cache folder: ``$XDG_CACHE_HOME/e3nn_pyg/qm9`` (``~/.cache/e3nn_pyg/qm9``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "e3nn_pyg", "qm9")


def _qm9pack_data_dir() -> str:
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
    missing = [f for f in _SOURCES["qm9pack"] if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise FileNotFoundError(f"qm9pack at {package_dir} lacks its data files {missing}")
    return data_dir


def _source_dir(source: str) -> str:
    return _qm9pack_data_dir() if source == "qm9pack" else str(FIXTURE_PATH.parent)


def _iter_rows(paths: Sequence[str]) -> Iterator[dict[str, str]]:
    """The rows of qm9pack-format CSV files, restricted to the columns we read."""
    csv.field_size_limit(sys.maxsize)
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            missing = [c for c in _COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{path} lacks the columns {missing}")
            where = [header.index(c) for c in _COLUMNS]
            for row in reader:
                yield {c: row[i] for c, i in zip(_COLUMNS, where)}


def _parse_row(row: dict[str, str]) -> _Molecule:
    index = int(row["Index"])
    try:
        z = tuple(_SYMBOL_TO_Z[s.strip(" '\"")] for s in row["Elements"].strip("[]").split(","))
    except KeyError as error:
        raise ValueError(f"molecule {index}: unknown element {error}") from None
    xyz = [float(v) for v in row["XYZ_Ang"].replace("[", "").replace("]", "").split(",")]
    if len(xyz) != 3 * len(z):
        raise ValueError(f"molecule {index}: {len(z)} elements but {len(xyz)} coordinates")
    pos = tuple(zip(xyz[0::3], xyz[1::3], xyz[2::3]))
    properties = tuple(float(row[name]) for name, _ in _PROPERTY_COLUMNS)
    return _Molecule(index, z, pos, properties)


def _progress(items: Iterable, total: int | None, enabled: bool) -> Iterator:
    """Iterate with a tqdm bar if tqdm is installed, else with a printed percentage."""
    if not enabled:
        yield from items
        return
    bars = tqdm_if_installed()
    if bars is not None:
        yield from bars(items, total=total, desc="QM9", unit="mol")
        return
    step = max(1, (total or 10_000) // 10)
    for i, item in enumerate(items):
        if i % step == 0:
            done = f"{100 * i // total}%" if total else f"{i}"
            print(f"QM9: {done} molecules read", file=sys.stderr, flush=True)
        yield item


def _y(molecules: Sequence[_Molecule]) -> Tensor:
    """The targets ``[num_molecules, 19]`` in PyG's order and units, computed as PyG does."""
    factors = [f for _, f in _PROPERTY_COLUMNS]
    factors = factors[:12] + [KCALMOL_TO_EV] * 4 + factors[12:]
    rows = [
        m.properties[:12] + tuple(m.atomization_kcalmol()) + m.properties[12:] for m in molecules
    ]
    y = torch.tensor(rows, dtype=torch.float64).reshape(-1, 19).float()  # [M, 19] source units
    return y * torch.tensor(factors, dtype=torch.float32)  # [M, 19]


def _to_data(molecule: _Molecule, y: Tensor) -> Data:
    return Data(
        z=torch.tensor(molecule.z, dtype=torch.long),  # [N]
        pos=torch.tensor(molecule.pos, dtype=torch.float64).float(),  # [N, 3]
        y=y.view(1, -1),  # [1, 19]
        name=f"gdb_{molecule.index}",
        idx=molecule.index - 1,
    )


class QM9Pack(InMemoryDataset):
    r"""QM9 read offline from ``qm9pack`` (130,831 molecules), with PyG's fields and units.

    Processes the CSV files once into ``root/processed/`` (a progress bar shows while it runs)
    and loads that cache afterwards. ``data.y`` has the columns of :data:`QM9_TARGETS`
    (:func:`target_index` maps names to columns; :data:`QM9_TARGET_INFO` gives the units):

    .. math::
        \mathbf{y} = (\mu, \alpha, \epsilon_{\text{HOMO}}, \epsilon_{\text{LUMO}},
        \Delta\epsilon, \langle R^2\rangle, \text{ZPVE}, U_0, U, H, G, c_v,
        U_0^{\text{ATOM}}, U^{\text{ATOM}}, H^{\text{ATOM}}, G^{\text{ATOM}}, A, B, C).

    Only ``z``, ``pos``, ``y``, ``name`` and ``idx`` are stored (see the module docstring for
    how they relate to :class:`torch_geometric.datasets.QM9`, which also builds RDKit features).

    .. code-block:: python

        dataset = QM9Pack()                                 # all 130,831 molecules
        small = QM9Pack(subset=1000)                        # the first 1,000 (by QM9 index)
        sample = QM9Pack(subset=1000, subset_seed=0)        # 1,000 drawn at random, seed 0
        train, val, test = random_split(dataset, [110_000, 10_000, 10_831], seed=0)
        loader = DataLoader(dataset[train], batch_size=32, shuffle=True)

    Args:
        root (str, optional): Cache folder; :func:`default_root` if :obj:`None`.
            (default: :obj:`None`)
        subset (int, optional): Keep only this many molecules. (default: :obj:`None`: all)
        subset_seed (int, optional): With :obj:`None`, :obj:`subset` keeps the first
            molecules in QM9 order; with a seed, a uniformly random subset drawn with
            ``torch.randperm`` seeded by it, kept in QM9 order. (default: :obj:`None`)
        source (str, optional): ``"qm9pack"`` (the installed package) or ``"fixture"`` (the
            297 molecules of :data:`FIXTURE_PATH` shipped with e3nn_pyg, for tests).
            (default: ``"qm9pack"``)
        transform (callable, optional): Applied to each :class:`Data` at access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Applied to each :class:`Data` before caching.
            (default: :obj:`None`)
        pre_filter (callable, optional): Keeps a :class:`Data` in the cache if it returns
            :obj:`True`. (default: :obj:`None`)
        force_reload (bool, optional): Process again even if a cache exists.
            (default: :obj:`False`)
        log (bool, optional): Show progress while processing. (default: :obj:`True`)
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        subset: int | None = None,
        subset_seed: int | None = None,
        source: str = "qm9pack",
        transform: Callable[[Data], Data] | None = None,
        pre_transform: Callable[[Data], Data] | None = None,
        pre_filter: Callable[[Data], bool] | None = None,
        force_reload: bool = False,
        log: bool = True,
    ) -> None:
        if source not in _SOURCES:
            raise ValueError(f"source must be one of {sorted(_SOURCES)}, got {source!r}")
        if subset is not None and (not is_int(subset)):
            raise TypeError(f"subset must be an int or None, got {type(subset).__name__}")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be >= 1, got {subset}")
        if subset_seed is not None and (not is_int(subset_seed)):
            raise TypeError(f"subset_seed must be an int or None, got {subset_seed!r}")
        if subset_seed is not None and subset is None:
            raise ValueError("subset_seed needs a subset size")
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path or None, got {type(root).__name__}")
        self.source = source
        self.subset = subset
        self.subset_seed = subset_seed
        root = os.fspath(root) if root is not None else default_root()
        super().__init__(root, transform, pre_transform, pre_filter, log, force_reload)
        self.load(self.processed_paths[0])

    @property
    def raw_dir(self) -> str:
        return _source_dir(self.source)

    @property
    def raw_file_names(self) -> list[str]:
        return list(_SOURCES[self.source])

    @property
    def processed_file_names(self) -> str:
        if self.subset is None:
            selection = "all"
        elif self.subset_seed is None:
            selection = f"first{self.subset}"
        else:
            selection = f"random{self.subset}_seed{self.subset_seed}"
        return f"{self.source}_{selection}_v1.pt"

    def _molecules(self) -> list[_Molecule]:
        """Read and parse the selected molecules from the CSV files."""
        paths = self.raw_paths
        if self.subset is None:
            rows, total = _iter_rows(paths), None
        elif self.subset_seed is None:
            rows = (row for _, row in zip(range(self.subset), _iter_rows(paths)))
            total = self.subset
        else:
            num_rows = sum(1 for _ in _iter_rows(paths))
            if self.subset > num_rows:
                raise ValueError(f"subset={self.subset} exceeds the {num_rows} molecules")
            generator = torch.Generator().manual_seed(self.subset_seed)
            chosen = set(torch.randperm(num_rows, generator=generator)[: self.subset].tolist())
            rows = (row for i, row in enumerate(_iter_rows(paths)) if i in chosen)
            total = self.subset
        if total is None and self.source == "qm9pack":
            total = _NUM_MOLECULES_QM9 - _NUM_UNCHARACTERIZED
        show = self.log and "PYTEST_CURRENT_TEST" not in os.environ
        molecules = [_parse_row(row) for row in _progress(rows, total, show)]
        if self.subset is not None and len(molecules) < self.subset:
            raise ValueError(f"subset={self.subset} exceeds the {len(molecules)} molecules")
        return molecules

    def process(self) -> None:
        molecules = self._molecules()
        y = _y(molecules)  # [M, 19]
        data_list = [_to_data(m, y[i]) for i, m in enumerate(molecules)]
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])

    def _targets(self) -> Tensor:
        return self._data.y[torch.as_tensor(self.indices(), dtype=torch.long)]  # [M, 19]

    def mean(self, target: int | str) -> float:
        """Mean of a target over the molecules of this dataset (or slice of it)."""
        return float(self._targets()[:, target_index(target)].double().mean())

    def std(self, target: int | str) -> float:
        """Standard deviation (unbiased) of a target over the molecules of this dataset."""
        return float(self._targets()[:, target_index(target)].double().std())

    @staticmethod
    def atomref(target: int | str) -> Tensor | None:
        r"""Free-atom energies in eV, ``[100, 1]`` indexed by Z, for ``U0``, ``U``, ``H``, ``G``.

        :obj:`None` for the other targets. For a molecule,
        :math:`E - \sum_a \text{atomref}[Z_a] \approx E^{\text{ATOM}}` (equal up to float32
        rounding of :math:`E`, about 1 meV, and the slightly different Hartree-to-eV route of
        the atomization columns, below :math:`10^{-5}` eV). Pass it to models that add a
        per-element offset, e.g. :class:`torch_geometric.nn.models.SchNet`.
        """
        column = target_index(target) - 7
        if not 0 <= column < 4:
            return None
        out = torch.zeros(100, 1)  # [100, 1]
        for z, energies in _ATOM_ENERGY_HARTREE.items():
            out[z, 0] = energies[column] * HARTREE_TO_EV
        return out

    def __repr__(self) -> str:
        selection = "" if self.subset is None else f", subset={self.subset}"
        if self.subset_seed is not None:
            selection += f", subset_seed={self.subset_seed}"
        return f"{self.__class__.__name__}({len(self)}, source={self.source!r}{selection})"


def random_split(
    dataset: Sized | int, sizes: Sequence[int] | Sequence[float], seed: int = 0
) -> tuple[Tensor, ...]:
    r"""Disjoint random index sets, reproducible from a seed.

    A permutation of ``range(n)`` drawn by ``torch.randperm`` with a generator seeded by
    ``seed`` is cut into consecutive pieces. Sizes are either counts (ints, summing to at
    most ``n``) or fractions (floats in :math:`[0, 1]` summing to at most 1); fraction
    boundaries are :math:`\lfloor n \sum_{j \le i} f_j \rfloor`, so fractions summing to 1
    use every index. Index a PyG dataset with the results: ``dataset[train]``.

    >>> train, val, test = random_split(10, [0.8, 0.1, 0.1], seed=0)
    >>> len(train), len(val), len(test)
    (8, 1, 1)

    Args:
        dataset (Sized or int): A dataset (its ``len``) or the number of items ``n``.
        sizes (sequence of int or float): Size of each piece.
        seed (int, optional): Seed of the permutation. (default: :obj:`0`)

    Returns:
        One ``long`` tensor of indices per entry of ``sizes``.
    """
    if isinstance(dataset, bool):
        raise TypeError("dataset must be a sized dataset or an int, got bool")
    if isinstance(dataset, int):
        n = dataset
    elif isinstance(dataset, Sized):
        n = len(dataset)
    else:
        raise TypeError(f"dataset must be a sized dataset or an int, got {type(dataset).__name__}")
    if n < 0:
        raise ValueError(f"dataset size must be >= 0, got {n}")
    if not is_int(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) == 0:
        raise TypeError(f"sizes must be a non-empty sequence of ints or floats, got {sizes!r}")
    if all(is_int(s) for s in sizes):
        if any(s < 0 for s in sizes) or sum(sizes) > n:
            raise ValueError(f"sizes {list(sizes)} must be >= 0 and sum to at most {n}")
        bounds = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    elif all(isinstance(s, float) for s in sizes):
        if any(not 0.0 <= s <= 1.0 for s in sizes) or math.fsum(sizes) > 1.0 + 1e-9:
            raise ValueError(f"fractions {list(sizes)} must be in [0, 1] and sum to at most 1")
        bounds = [
            min(n, math.floor(n * math.fsum(sizes[: i + 1]) + 1e-9)) for i in range(len(sizes))
        ]
    else:
        raise TypeError(f"sizes must be all ints or all floats, got {list(sizes)}")
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # [n]
    starts = [0, *bounds[:-1]]
    return tuple(permutation[a:b] for a, b in zip(starts, bounds))


def write_pyg_raw(dataset: QM9Pack, root: str | os.PathLike, format: str = "auto") -> list[str]:
    r"""Write the raw files of :class:`torch_geometric.datasets.QM9` for the molecules of
    ``dataset``, so that ``torch_geometric.datasets.QM9(root)`` processes them offline.

    PyG's ``QM9`` reads different raw files depending on RDKit: with RDKit, ``gdb9.sdf``,
    ``gdb9.sdf.csv`` and ``uncharacterized.txt`` (``format="sdf"``); without, a pre-processed
    list of dicts ``qm9_v3.pt`` (``format="pt"``). With missing files it downloads them, so
    this function is what makes it work without network. ``"auto"`` picks what the installed
    PyG will look for.

    - ``"pt"`` stores this dataset's own ``z``, ``pos``, ``y``, ``name``, ``idx``; PyG's
      ``QM9`` then has no ``x``, ``edge_index``, ``edge_attr``, ``smiles``.
    - ``"sdf"`` (needs RDKit) writes the molecules from the source CSV: positions rounded to
      4 decimals by the SDF format, bonds perceived by RDKit's ``DetermineBonds`` (single bonds
      by distance where that fails), the 19 properties in DeepChem's order and units. PyG
      takes ``idx`` from the position in the SDF file, so every QM9 index below the largest
      one gets an entry: missing ones are one-atom placeholders listed in
      ``uncharacterized.txt``, which PyG skips. This requires a dataset made of a first-N
      subset (or all) of qm9pack or of the fixture: at most 3,054 placeholders.

    Args:
        dataset (QM9Pack): The molecules to write (a slice of a :class:`QM9Pack` works).
        root (str): Root folder of the PyG dataset; the files go to ``root/raw``.
        format (str, optional): ``"auto"``, ``"sdf"`` or ``"pt"``. (default: ``"auto"``)

    Returns:
        The paths written.
    """
    if not isinstance(dataset, QM9Pack):
        raise TypeError(f"dataset must be a QM9Pack, got {type(dataset).__name__}")
    if format not in ("auto", "sdf", "pt"):
        raise ValueError(f"format must be 'auto', 'sdf' or 'pt', got {format!r}")
    has_rdkit = importlib.util.find_spec("rdkit") is not None
    if format == "auto":
        format = "sdf" if has_rdkit else "pt"
    if format == "sdf" and not has_rdkit:
        raise ModuleNotFoundError("write_pyg_raw(format='sdf') needs RDKit: pip install rdkit")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: nothing to write")
    raw_dir = os.path.join(os.fspath(root), "raw")
    os.makedirs(raw_dir, exist_ok=True)
    stored = [dataset.get(i) for i in dataset.indices()]
    if format == "pt":
        path = os.path.join(raw_dir, "qm9_v3.pt")
        keys = ("z", "pos", "y", "name", "idx")
        torch.save([{k: d[k] for k in keys} for d in stored], path)
        return [path]
    wanted = {int(d.idx) + 1 for d in stored}
    placeholders = sorted(set(range(1, max(wanted) + 1)) - wanted)
    if len(placeholders) > _NUM_UNCHARACTERIZED:
        raise ValueError(
            f"format='sdf' needs a first-N subset: these {len(wanted)} molecules leave "
            f"{len(placeholders)} gaps in the QM9 indices (at most {_NUM_UNCHARACTERIZED}); "
            "use format='pt'"
        )
    rows = (row for row in _iter_rows(dataset.raw_paths) if int(row["Index"]) in wanted)
    molecules = {m.index: m for m in map(_parse_row, rows)}
    return _write_sdf_raw(raw_dir, [molecules.get(i) for i in range(1, max(wanted) + 1)])


def _write_sdf_raw(raw_dir: str, molecules: Sequence[_Molecule | None]) -> list[str]:
    """gdb9.sdf, gdb9.sdf.csv and uncharacterized.txt; ``None`` entries are placeholders."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds

    RDLogger.DisableLog("rdApp.*")
    paths = [os.path.join(raw_dir, f) for f in ("gdb9.sdf", "gdb9.sdf.csv", "uncharacterized.txt")]
    header = "mol_id,A,B,C,mu,alpha,homo,lumo,gap,r2,zpve,u0,u298,h298,g298,cv"
    header += ",u0_atom,u298_atom,h298_atom,g298_atom\n"
    skipped = []
    writer = Chem.SDWriter(paths[0])
    with open(paths[1], "w") as table:
        table.write(header)
        for i, molecule in enumerate(molecules, start=1):
            if molecule is None:
                skipped.append(i)
                z, pos, values = (1,), ((0.0, 0.0, 0.0),), [0.0] * 19
            else:
                z, pos = molecule.z, molecule.pos
                p = molecule.properties
                values = [*p[12:], *p[:12], *molecule.atomization_kcalmol()]
            xyz = f"{len(z)}\n\n" + "".join(
                f"{_Z_TO_SYMBOL[a]} {x:.10f} {y:.10f} {w:.10f}\n" for a, (x, y, w) in zip(z, pos)
            )
            mol = Chem.Mol(Chem.MolFromXYZBlock(xyz))
            try:
                rdDetermineBonds.DetermineBonds(mol, charge=0)
            except (ValueError, RuntimeError):
                mol = Chem.Mol(Chem.MolFromXYZBlock(xyz))
                rdDetermineBonds.DetermineConnectivity(mol)
            mol.SetProp("_Name", f"gdb_{i}")
            writer.write(mol)
            table.write(f"gdb_{i}," + ",".join(repr(v) for v in values) + "\n")
    writer.close()
    with open(paths[2], "w") as f:
        # PyG reads the lines between 9 header lines and a footer line (with the final '\n').
        f.write("Placeholders for QM9 indices without molecule, written by e3nn_pyg.\n")
        f.write("Format of the QM9 paper's list of uncharacterized molecules:\n")
        f.write("the first column of each line below the header is the 1-based index.\n")
        f.write("\n" * 3)
        f.write("=" * 40 + "\n" + "#   Index\n" + "=" * 40 + "\n")
        f.write("".join(f"{i:8d}\n" for i in skipped))
        f.write("=" * 40 + "\n")
    return paths


def make_fixture(
    output: str | os.PathLike = FIXTURE_PATH,
    num_first: int = 100,
    num_random: int = 200,
    seed: int = 0,
) -> int:
    r"""Write a small fixture from qm9pack: the molecules with QM9 index up to ``num_first``
    (methane ``gdb_1`` first; 3 of the first 100 are uncharacterized) and ``num_random``
    more drawn from the rest with ``torch.randperm`` seeded by ``seed``, in QM9 order, as
    qm9pack-format CSV (its columns that :class:`QM9Pack` reads, values copied verbatim).

    Args:
        output (str, optional): Path of the CSV. (default: :data:`FIXTURE_PATH`)
        num_first (int, optional): Largest QM9 index of the leading block. (default: :obj:`100`)
        num_random (int, optional): Number of random molecules after it. (default: :obj:`200`)
        seed (int, optional): Seed of the random draw. (default: :obj:`0`)

    Returns:
        The number of molecules written.
    """
    for name, value in (("num_first", num_first), ("num_random", num_random), ("seed", seed)):
        if not is_int(value) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    data_dir = _qm9pack_data_dir()
    rows = list(_iter_rows([os.path.join(data_dir, f) for f in _SOURCES["qm9pack"]]))
    first = [row for row in rows if int(row["Index"]) <= num_first]
    rest = rows[len(first) :]
    if num_random > len(rest):
        raise ValueError(f"num_random={num_random} exceeds the {len(rest)} remaining molecules")
    generator = torch.Generator().manual_seed(seed)
    chosen = sorted(torch.randperm(len(rest), generator=generator)[:num_random].tolist())
    selected = first + [rest[i] for i in chosen]
    with open(output, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(_COLUMNS)
        writer.writerows([row[c] for c in _COLUMNS] for row in selected)
    return len(selected)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m e3nn_pyg.datasets``: build the fixture or the full cache."""
    parser = argparse.ArgumentParser(prog="python -m e3nn_pyg.datasets", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--make-fixture", action="store_true", help="write the test fixture")
    action.add_argument("--process", action="store_true", help="process QM9 into the cache")
    parser.add_argument("--output", default=str(FIXTURE_PATH), help="fixture path")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixture's draw")
    parser.add_argument("--root", default=None, help=f"cache folder (default: {default_root()})")
    parser.add_argument("--subset", type=int, default=None, help="first N molecules only")
    args = parser.parse_args(argv)
    if args.make_fixture:
        count = make_fixture(args.output, seed=args.seed)
        size = os.path.getsize(args.output)
        print(f"wrote {count} molecules to {args.output} ({size / 1e3:.0f} kB)")
        return
    start = time.perf_counter()
    dataset = QM9Pack(args.root, subset=args.subset, force_reload=True)
    seconds = time.perf_counter() - start
    path = dataset.processed_paths[0]
    size = os.path.getsize(path) / 1e6
    print(f"processed {len(dataset)} molecules in {seconds:.1f} s into {path} ({size:.1f} MB)")

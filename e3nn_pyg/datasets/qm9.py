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

The cache is checked before it is used (see :class:`~e3nn_pyg.datasets.CachedInMemoryDataset`):
a changed source, a replaced or damaged cache file are rebuilt. The fixture shipped with the
package (297 molecules, methane first, :data:`~e3nn_pyg.datasets.FIXTURE_PATH`), cached under
:func:`default_root`:

>>> dataset = QM9Pack(source="fixture", log=False)
>>> dataset[0]
Data(y=[1, 19], pos=[5, 3], z=[5], name='gdb_1', idx=[1])
>>> round(dataset[0].y[0, target_index("U0")].item(), 4)  # eV
-1101.4878
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..checks import is_int
from ..elements import MAX_Z
from ..progress import tqdm_if_installed
from .cache import CachedInMemoryDataset, cache_root
from .fixture import FIXTURE_PATH
from .qm9_csv import (
    ATOM_ENERGY_HARTREE,
    NUM_MOLECULES_QM9,
    NUM_UNCHARACTERIZED,
    PROPERTY_COLUMNS,
    QM9PACK_FILES,
    Molecule,
    iter_rows,
    parse_row,
    qm9pack_data_dir,
)
from .qm9_targets import HARTREE_TO_EV, KCALMOL_TO_EV, target_index
from .split import require_seed
from .storage import structure_values

__all__ = ["QM9Pack", "default_root"]

_SOURCES = {"qm9pack": QM9PACK_FILES, "fixture": (FIXTURE_PATH.name,)}


def default_root() -> str:
    """Default cache folder: ``$XDG_CACHE_HOME/e3nn_pyg/qm9`` (``~/.cache/e3nn_pyg/qm9``)."""
    return os.path.join(cache_root(), "qm9")


def _source_dir(source: str) -> str:
    return qm9pack_data_dir() if source == "qm9pack" else str(FIXTURE_PATH.parent)


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


def _y(molecules: Sequence[Molecule]) -> Tensor:
    """The targets ``[num_molecules, 19]`` in PyG's order and units, computed as PyG does."""
    factors = [f for _, f in PROPERTY_COLUMNS]
    factors = factors[:12] + [KCALMOL_TO_EV] * 4 + factors[12:]
    rows = [
        m.properties[:12] + tuple(m.atomization_kcalmol()) + m.properties[12:] for m in molecules
    ]
    y = torch.tensor(rows, dtype=torch.float64).reshape(-1, 19).float()  # [M, 19] source units
    return y * torch.tensor(factors, dtype=torch.float32)  # [M, 19]


def _to_data(molecule: Molecule, y: Tensor) -> Data:
    return Data(
        z=torch.tensor(molecule.z, dtype=torch.long),  # [N]
        pos=torch.tensor(molecule.pos, dtype=torch.float64).float(),  # [N, 3]
        y=y.view(1, -1),  # [1, 19]
        name=f"gdb_{molecule.index}",
        idx=molecule.index - 1,
    )


class QM9Pack(CachedInMemoryDataset):
    r"""QM9 read offline from ``qm9pack`` (130,831 molecules), with PyG's fields and units.

    Processes the CSV files once into ``root/processed/`` (a progress bar shows while it runs)
    and loads that cache afterwards, rebuilding it when its source changed or the cache file
    is damaged (with a warning). ``data.y`` has the columns of :data:`QM9_TARGETS`
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
        subset_seed (int, optional): With :obj:`None`, ``subset`` keeps the first
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
        if subset_seed is not None:
            require_seed(subset_seed, "subset_seed")
        if subset_seed is not None and subset is None:
            raise ValueError("subset_seed needs a subset size")
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path or None, got {type(root).__name__}")
        self.source = source
        self.subset = subset
        self.subset_seed = subset_seed
        root = os.fspath(root) if root is not None else default_root()
        self.open_cache(root, transform, pre_transform, pre_filter, log, force_reload)

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

    def _molecules(self) -> list[Molecule]:
        """Read and parse the selected molecules from the CSV files."""
        paths = self.raw_paths
        if self.subset is None:
            rows, total = iter_rows(paths), None
        elif self.subset_seed is None:
            rows = (row for _, row in zip(range(self.subset), iter_rows(paths)))
            total = self.subset
        else:
            num_rows = sum(1 for _ in iter_rows(paths))
            if self.subset > num_rows:
                raise ValueError(f"subset={self.subset} exceeds the {num_rows} molecules")
            generator = torch.Generator().manual_seed(self.subset_seed)
            chosen = set(torch.randperm(num_rows, generator=generator)[: self.subset].tolist())
            rows = (row for i, row in enumerate(iter_rows(paths)) if i in chosen)
            total = self.subset
        if total is None and self.source == "qm9pack":
            total = NUM_MOLECULES_QM9 - NUM_UNCHARACTERIZED
        molecules = [parse_row(row) for row in _progress(rows, total, self.log)]
        if self.subset is not None and len(molecules) < self.subset:
            raise ValueError(f"subset={self.subset} exceeds the {len(molecules)} molecules")
        return molecules

    def source_files(self) -> list[str] | None:
        try:
            return self.raw_paths
        except (ModuleNotFoundError, FileNotFoundError):  # qm9pack uninstalled since caching
            return None

    def read_source(self) -> list[Data]:
        molecules = self._molecules()
        y = _y(molecules)  # [M, 19]
        return [_to_data(m, y[i]) for i, m in enumerate(molecules)]

    def _targets(self) -> Tensor:
        return structure_values(self, "y")  # [M, 19]

    def mean(self, target: int | str) -> float:
        """Mean of a target over the molecules of this dataset (or slice of it)."""
        return float(self._targets()[:, target_index(target)].double().mean())

    def std(self, target: int | str) -> float:
        """Standard deviation (unbiased) of a target over the molecules of this dataset."""
        return float(self._targets()[:, target_index(target)].double().std())

    @staticmethod
    def atomref(target: int | str) -> Tensor | None:
        r"""Free-atom energies in eV, ``[MAX_Z, 1]`` indexed by Z, for ``U0``, ``U``, ``H``,
        ``G``.

        :obj:`None` for the other targets. For a molecule,
        :math:`E - \sum_a \text{atomref}[Z_a] \approx E^{\text{ATOM}}` (equal up to float32
        rounding of :math:`E`, about 1 meV, and the slightly different Hartree-to-eV route of
        the atomization columns, below :math:`10^{-5}` eV). Pass it to models that add a
        per-element offset, e.g. :class:`torch_geometric.nn.models.SchNet`.
        """
        column = target_index(target) - 7
        if not 0 <= column < 4:
            return None
        out = torch.zeros(MAX_Z, 1)  # [MAX_Z, 1]
        for z, energies in ATOM_ENERGY_HARTREE.items():
            out[z, 0] = energies[column] * HARTREE_TO_EV
        return out

    def __repr__(self) -> str:
        selection = "" if self.subset is None else f", subset={self.subset}"
        if self.subset_seed is not None:
            selection += f", subset_seed={self.subset_seed}"
        return f"{self.__class__.__name__}({len(self)}, source={self.source!r}{selection})"

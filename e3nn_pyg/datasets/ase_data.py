r"""Structures with energies, forces and stresses from any file ASE reads, as PyG data.

:func:`read_structures` reads a file with :func:`ase.io.read` (extended XYZ, the format of
most interatomic-potential data sets, but also VASP ``OUTCAR``, ``.traj``, CIF, ...) and turns
each structure into a :class:`~torch_geometric.data.Data`; :class:`ASEDataset` caches the
result like :class:`~e3nn_pyg.datasets.QM9Pack`. Units are those of the file (ASE's are eV, Å,
eV/Å and eV/Å³).

Every structure carries:

- ``z``: atomic numbers, ``[num_atoms]`` long;
- ``pos``: positions, ``[num_atoms, 3]``;
- ``energy``: the total energy, ``[1]`` float64 (float32 would round a total energy of a few
  thousand eV to about 0.2 meV), with ``energy_weight`` ``[1]`` float64 (some structure of
  the file must have an energy, unless ``energy_key`` is :obj:`None`);
- ``cell``: the cell vectors as rows, ``[1, 3, 3]``, and ``pbc``: the periodic directions,
  ``[1, 3]`` bool. Every structure has both, so that molecules and crystals batch together:
  a structure without cell (a molecule from a plain XYZ file) gets a zero cell, and
  directions with ``pbc`` false are not periodic whatever their cell vector (the ethanol
  files give molecules a 50 Å box with ``pbc="F F F"``);
- ``weight``: the structure's weight in a loss, ``[1]`` float64 (1 when the file gives none);
- ``config_type``: a string, ``"Default"`` when the file gives none;

and, when the file holds them:

- ``forces``: ``[num_atoms, 3]``, with ``forces_weight`` ``[1]`` float64;
- ``stress``: ``[1, 3, 3]`` in ASE's convention (:math:`\sigma = \frac{1}{V}
  \partial E / \partial \varepsilon`, positive under tension), from a 3×3 matrix, 9 values or
  ASE's Voigt order :math:`(xx, yy, zz, yz, xz, xy)`, with ``stress_weight`` ``[1]``. Only
  a periodic structure whose cell has a volume can have one: a stress on a molecule
  (``pbc`` false everywhere) is an error, not a label to drop.

A file in which only some structures have an energy (forces, a stress) gives every
structure the field: zeros with ``energy_weight = 0`` (``forces_weight``, ``stress_weight``)
where the file has none, weight 1 where it has them, as MACE does; a file in which none has
forces (a stress) gives no such field (:func:`align_fields` does the same for structures of
several files). Whatever reads these labels (the losses and metrics of
:class:`~e3nn_pyg.training.tasks.PotentialTask`, the statistics of
:mod:`~e3nn_pyg.datasets.statistics`) counts a label only where its weight is not 0. Batches of
these structures (:class:`~torch_geometric.loader.DataLoader`) concatenate ``energy``,
``weight``, ``cell``, ``pbc`` and ``stress`` along the first dimension, one row per structure.

Where a value is looked up: the energy and stress in ``atoms.info[key]`` and then in the
results of the calculator ASE attaches to what it read (extended XYZ moves ``energy``,
``forces``, ``stress`` and the other calculator properties there); the forces in
``atoms.arrays[key]`` and then in those results. The keys are arguments (``energy_key`` ...)
as in MACE and NequIP, for files that store reference values under other names
(``REF_energy``, ``DFT_forces``, ...); a key of :obj:`None` skips that property.

The ethanol set of the revised MD17 (PBE/def2-SVP, eV and Å, MIT license, see
``ETHANOL_DIR/README.md`` and ``LICENSE``) ships with the package: 1,000 training and 1,000
test configurations and the isolated-atom energies (:func:`ethanol_paths`).

>>> paths = ethanol_paths()
>>> first = read_structures(paths.train, index=0)[0]
>>> first.z.tolist(), first.config_type
([6, 6, 8, 1, 1, 1, 1, 1, 1], 'Training_set')
>>> round(first.energy.item(), 4), first.forces.shape  # eV, eV/Å
(-4209.4658, torch.Size([9, 3]))
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from ..elements import MAX_Z
from .cache import CachedInMemoryDataset, cache_root

__all__ = [
    "DEFAULT_CONFIG_TYPE",
    "ETHANOL_DIR",
    "ASEDataset",
    "EthanolPaths",
    "align_fields",
    "atoms_to_data",
    "ethanol_paths",
    "read_structures",
]

DEFAULT_CONFIG_TYPE = "Default"
"""``config_type`` of a structure whose file gives none (MACE's name for it)."""

ETHANOL_DIR = Path(__file__).parent / "ethanol"
"""Folder of the ethanol data shipped with the package (with its README and LICENSE)."""


class EthanolPaths(NamedTuple):
    """The files of the shipped ethanol set (extended XYZ, eV and Å)."""

    train: Path  # 1,000 configurations of rMD17, with energies and forces
    test: Path  # 1,000 other configurations of rMD17 (test_MD.xyz)
    isolated_atoms: Path  # one-atom entries of H, C, O, N (config_type isolated_atom)


def ethanol_paths() -> EthanolPaths:
    """The paths of the ethanol files shipped with the package.

    Raises:
        FileNotFoundError: when the installation lacks them.
    """
    paths = EthanolPaths(
        ETHANOL_DIR / "train.xyz", ETHANOL_DIR / "test_MD.xyz", ETHANOL_DIR / "isolated_atoms.xyz"
    )
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the ethanol data of e3nn_pyg is not installed: {missing}")
    return paths


def _lookup(atoms: Any, key: str, arrays: bool) -> Any:
    """``atoms.info[key]`` (or ``atoms.arrays[key]``), else the calculator's result, else None."""
    store = atoms.arrays if arrays else atoms.info
    if key in store:
        return store[key]
    results = getattr(atoms.calc, "results", None) or {}
    return results.get(key)


def _floats(value: Any, what: str) -> np.ndarray:
    """``value`` as a finite float64 array; ``what`` names it in the errors."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not numeric: {str(value)[:60]!r}") from None
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return array


def _stress_matrix(value: Any, what: str) -> np.ndarray:
    """A stress given as 3×3, 9 values or Voigt 6 values, as a 3×3 matrix."""
    stress = _floats(value, what)
    if stress.shape == (6,):  # ASE's Voigt order xx, yy, zz, yz, xz, xy
        xx, yy, zz, yz, xz, xy = stress
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if stress.size == 9:
        return stress.reshape(3, 3)
    raise ValueError(f"{what} must have 6 (Voigt) or 9 values, got shape {list(stress.shape)}")


def atoms_to_data(
    atoms: Any,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = "stress",
    weight_key: str = "weight",
    config_type_key: str = "config_type",
    dtype: torch.dtype = torch.float64,
    where: str = "structure",
) -> Data:
    r"""One :class:`ase.Atoms` as a :class:`~torch_geometric.data.Data` with the fields of the
    module docstring (``forces`` and ``stress`` only when it has them, without weights).

    Args:
        atoms (ase.Atoms): The structure.
        energy_key (str, optional): Name of the total energy; :obj:`None` reads none.
            (default: ``"energy"``)
        forces_key (str, optional): Name of the forces; :obj:`None` reads none.
            (default: ``"forces"``)
        stress_key (str, optional): Name of the stress; :obj:`None` reads none.
            (default: ``"stress"``)
        weight_key (str, optional): Name of the weight in ``atoms.info``.
            (default: ``"weight"``)
        config_type_key (str, optional): Name of the configuration type in ``atoms.info``.
            (default: ``"config_type"``)
        dtype (torch.dtype, optional): Floating type of ``pos``, ``forces``, ``cell`` and
            ``stress`` (``energy`` and ``weight`` are float64). (default: ``torch.float64``)
        where (str, optional): How errors name the structure. (default: ``"structure"``)

    Raises:
        ValueError: for a missing energy, values that are not finite (or overflow ``dtype``),
            forces that are not ``[num_atoms, 3]``, a malformed stress or one on a structure
            that is not periodic (or whose cell has no volume), unknown elements, or a
            periodic direction without a cell vector.
    """
    keys = _checked_keys(energy_key, forces_key, stress_key, weight_key, config_type_key, dtype)
    data = _atoms_to_data(atoms, **keys, dtype=dtype, where=where)
    if energy_key is not None and "energy" not in data:
        raise ValueError(_missing_energy(atoms, energy_key, config_type_key, where))
    return data


def _tensor(array: np.ndarray, dtype: torch.dtype, what: str) -> Tensor:
    """``array`` (finite float64) in ``dtype``, refusing values that overflow it."""
    tensor = torch.from_numpy(array).to(dtype)
    if not torch.isfinite(tensor).all():
        largest = float(np.abs(array).max())
        raise ValueError(f"{what} overflows {dtype} (values up to {largest:.3g})")
    return tensor


def _numbers(atoms: Any, where: str) -> np.ndarray:
    """The atomic numbers of a structure, checked: at least one, each in ``1..MAX_Z - 1``."""
    numbers = np.asarray(atoms.numbers)
    if numbers.size == 0:
        raise ValueError(f"{where} has no atoms")
    unknown = numbers[(numbers < 1) | (numbers >= MAX_Z)]
    if unknown.size:
        raise ValueError(
            f"{where}: atomic numbers must lie in 1..{MAX_Z - 1} (below MAX_Z), got "
            f"{sorted(set(unknown.tolist()))}"
        )
    return numbers


def _geometry(atoms: Any, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(positions [N, 3], cell [3, 3], pbc [3])`` of a structure, checked."""
    positions = _floats(atoms.positions, f"{where}: positions")
    cell = _floats(atoms.cell.array, f"{where}: cell")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and np.linalg.matrix_rank(cell[pbc]) < pbc.sum():
        raise ValueError(
            f"{where}: periodic along {pbc.tolist()} but the cell vectors of these directions "
            f"are zero or linearly dependent: {cell.tolist()}"
        )
    return positions, cell, pbc


def _missing_energy(atoms: Any, energy_key: str, config_type_key: str, where: str) -> str:
    """Why no energy was found, with the names the structure has instead."""
    found = {*atoms.info, *(getattr(atoms.calc, "results", None) or {})} - {config_type_key}
    return (
        f"{where} has no energy {energy_key!r} (looked in atoms.info and the calculator "
        f"results; found: {', '.join(sorted(found)) or 'nothing'}); set energy_key to the "
        "name the file uses"
    )


def _energy(atoms: Any, key: str, where: str) -> Tensor | None:
    """The total energy ``[1]`` float64, or None when the structure has none."""
    energy = _lookup(atoms, key, arrays=False)
    if energy is None:
        return None
    energy = _floats(energy, f"{where}: {key}")
    if energy.size != 1:
        raise ValueError(f"{where}: {key} must be one number, got {energy.tolist()}")
    return torch.tensor([energy.item()], dtype=torch.float64)  # [1]


def _forces(atoms: Any, key: str, n: int, dtype: torch.dtype, where: str) -> Tensor | None:
    """The forces ``[N, 3]``, or None when the structure has none."""
    forces = _lookup(atoms, key, arrays=True)
    if forces is None:
        return None
    forces = _floats(forces, f"{where}: {key}")
    if forces.shape != (n, 3):
        raise ValueError(
            f"{where}: {key} must have shape [{n}, 3] (one row per atom), got {list(forces.shape)}"
        )
    return _tensor(forces, dtype, f"{where}: {key}")  # [N, 3]


def _stress(
    atoms: Any, key: str, cell: np.ndarray, pbc: np.ndarray, dtype: torch.dtype, where: str
) -> Tensor | None:
    """The stress ``[1, 3, 3]``, or None when the structure has none. A stress is a
    derivative by the strain of a periodic cell, divided by its volume: a structure that is
    not periodic, or whose cell has no volume, cannot have one."""
    stress = _lookup(atoms, key, arrays=False)
    if stress is None:
        return None
    if not pbc.any():
        raise ValueError(
            f"{where} has a stress {key!r} but is not periodic (pbc {pbc.tolist()}): a "
            "molecule has no stress; remove it from the file, or give the structure its "
            "periodic cell and pbc"
        )
    if np.linalg.matrix_rank(cell) < 3:
        raise ValueError(
            f"{where} has a stress {key!r} but its cell has no volume (cell {cell.tolist()}): "
            "a stress needs three independent cell vectors"
        )
    matrix = _stress_matrix(stress, f"{where}: {key}")
    return _tensor(matrix, dtype, f"{where}: {key}").view(1, 3, 3)  # [1, 3, 3]


def _atoms_to_data(
    atoms: Any,
    energy_key: str | None,
    forces_key: str | None,
    stress_key: str | None,
    weight_key: str,
    config_type_key: str,
    dtype: torch.dtype,
    where: str,
) -> Data:
    """:func:`atoms_to_data` after its argument checks; a label the structure lacks (energy,
    forces, stress) is left out."""
    numbers = _numbers(atoms, where)
    positions, cell, pbc = _geometry(atoms, where)
    weight = _floats(atoms.info.get(weight_key, 1.0), f"{where}: {weight_key}")
    if weight.size != 1 or weight.item() < 0:
        raise ValueError(f"{where}: {weight_key} must be one number >= 0, got {weight.tolist()}")
    labels = {
        "energy": None if energy_key is None else _energy(atoms, energy_key, where),
        "forces": None if forces_key is None else _forces(atoms, forces_key, len(numbers),
                                                          dtype, where),
        "stress": None if stress_key is None else _stress(atoms, stress_key, cell, pbc, dtype,
                                                          where),
    }  # fmt: skip
    data = Data(
        z=torch.from_numpy(numbers.astype(np.int64)),  # [N]
        pos=_tensor(positions, dtype, f"{where}: positions"),  # [N, 3]
        cell=_tensor(cell, dtype, f"{where}: cell").view(1, 3, 3),  # [1, 3, 3]
        pbc=torch.from_numpy(pbc).view(1, 3),  # [1, 3]
        weight=torch.tensor([weight.item()], dtype=torch.float64),  # [1]
        config_type=str(atoms.info.get(config_type_key, DEFAULT_CONFIG_TYPE)),
    )
    for key, value in labels.items():
        if value is not None:
            data[key] = value
    return data


def _check_options(index: object, format: object) -> None:
    """Type checks of which structures of a file are read and how, before any is read."""
    if not isinstance(index, (int, str)) or isinstance(index, bool):
        raise TypeError(f"index must be an int or a string such as ':', got {index!r}")
    if format is not None and not isinstance(format, str):
        raise TypeError(f"format must be ASE's name of a format or None, got {format!r}")


def _checked_keys(
    energy_key: object,
    forces_key: object,
    stress_key: object,
    weight_key: object,
    config_type_key: object,
    dtype: object,
) -> dict[str, str | None]:
    """The names of the fields to read, as keyword arguments of :func:`_atoms_to_data`, after
    type checks of them and of ``dtype``."""
    keys = {
        "energy_key": energy_key,
        "forces_key": forces_key,
        "stress_key": stress_key,
        "weight_key": weight_key,
        "config_type_key": config_type_key,
    }
    for name, key in keys.items():
        optional = name in ("energy_key", "forces_key", "stress_key")
        if not (isinstance(key, str) and key) and not (optional and key is None):
            kind = "a non-empty string or None" if optional else "a non-empty string"
            raise TypeError(f"{name} must be {kind}, got {key!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return keys


_LABELS = {"energy": False, "forces": True, "stress": False}
"""The labels a structure may lack, and whether each has one row per atom (else one row)."""


def align_fields(structures: Sequence[Data]) -> list[Data]:
    r"""The structures with the labels that some of them have given to all, so that
    structures read from different files batch together.

    A structure without ``energy`` (``forces``, ``stress``) that others have gets zeros and
    ``energy_weight = 0`` (``forces_weight``, ``stress_weight``); one that has them keeps
    its weight, or gets 1. :func:`read_structures` does this within a file.

    .. code-block:: python

        mixed = align_fields(read_structures("molecules.xyz") + read_structures("bulk.xyz"))
        batch = Batch.from_data_list(mixed)

    Args:
        structures (sequence of Data): Structures with the fields of :func:`read_structures`.

    Returns:
        New :class:`~torch_geometric.data.Data` objects (shallow copies; the inputs are left
        as they are).
    """
    if not all(isinstance(data, Data) for data in structures):
        raise TypeError("structures must be Data objects")
    aligned = [copy.copy(data) for data in structures]
    for key, per_atom in _LABELS.items():
        template = next((data[key] for data in aligned if key in data), None)
        if template is None:
            continue
        for data in aligned:
            present = key in data
            if not present:
                rows = data.num_nodes if per_atom else 1
                data[key] = torch.zeros(rows, *template.shape[1:], dtype=template.dtype)
            if f"{key}_weight" not in data or not present:
                data[f"{key}_weight"] = torch.tensor([float(present)], dtype=torch.float64)
    return aligned


def _read_atoms(path: str, index: int | str, format: str | None) -> list:
    """The :class:`ase.Atoms` of a file, with one :class:`ValueError` for what ASE cannot
    read."""
    from ase.io import read

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        read_atoms = read(path, index=index, format=format)
    # ASE's readers raise what their parsers meet (XYZError, UnicodeDecodeError,
    # UnknownFileTypeError, StopIteration, IndexError, ...): each means "not readable".
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ValueError(
            f"ASE cannot read {path} (format {format or 'guessed from the file'}): "
            f"{type(error).__name__}: {reason}"
        ) from error
    atoms_list = read_atoms if isinstance(read_atoms, list) else [read_atoms]
    if not atoms_list:
        raise ValueError(f"{path} holds no structure (index {index!r})")
    return atoms_list


def read_structures(
    path: str | os.PathLike,
    index: int | str = ":",
    format: str | None = None,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = "stress",
    weight_key: str = "weight",
    config_type_key: str = "config_type",
    dtype: torch.dtype = torch.float64,
) -> list[Data]:
    r"""Read the structures of a file with ASE into :class:`~torch_geometric.data.Data`
    objects with the fields of the module docstring.

    .. code-block:: python

        structures = read_structures("train.xyz")
        structures = read_structures("data.xyz", energy_key="REF_energy",
                                     forces_key="REF_forces", stress_key="REF_stress")
        batch = Batch.from_data_list(structures)  # molecules and crystals together

    Args:
        path (str): The file.
        index (int or str, optional): Which structures, in ASE's syntax: ``":"`` all,
            ``"::10"`` every tenth, ``-1`` the last. (default: ``":"``)
        format (str, optional): ASE's name of the format; :obj:`None` guesses it from the
            file. (default: :obj:`None`)
        energy_key, forces_key, stress_key, weight_key, config_type_key, dtype: as for
            :func:`atoms_to_data`.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when ASE cannot read the file, it holds no structure, no structure has an
            energy (unless ``energy_key`` is :obj:`None`), or a structure is invalid (see
            :func:`atoms_to_data`); the message names the file and structure.
    """
    _check_options(index, format)
    keys = _checked_keys(energy_key, forces_key, stress_key, weight_key, config_type_key, dtype)
    path = os.fspath(path)
    atoms_list = _read_atoms(path, index, format)
    # structure i of the selection: of the file itself when every structure is read
    selection = "" if index == ":" else f" of index {index!r}"
    data_list = [
        _atoms_to_data(atoms, **keys, dtype=dtype, where=f"{path}: structure {i}{selection}")
        for i, atoms in enumerate(atoms_list)
    ]
    if energy_key is not None and not any("energy" in data for data in data_list):
        where = f"{path}: structure 0{selection}"
        raise ValueError(
            _missing_energy(atoms_list[0], energy_key, config_type_key, where)
            + ", or to None to read structures without energies (no structure read has one)"
        )
    return align_fields(data_list)


class ASEDataset(CachedInMemoryDataset):
    r"""The structures of a file ASE reads (:func:`read_structures`), cached.

    The first use reads the file into ``root/<name>_<key>/data.pt``, where ``<key>`` hashes
    the file's absolute path and the reading options; later uses load that cache, unless the
    file changed since (size and modification time, or else SHA-256, differ) or the cache is
    damaged: then it is read again, with a warning. The structures keep the file's order;
    split them with :func:`~e3nn_pyg.datasets.random_split`:

    .. code-block:: python

        dataset = ASEDataset("train.xyz")
        train, val = random_split(dataset, [0.95, 0.05], seed=0)
        loader = DataLoader(dataset[train], batch_size=5, shuffle=True)

    Args:
        path (str): The file.
        root (str, optional): Cache folder; ``$XDG_CACHE_HOME/e3nn_pyg/ase`` if :obj:`None`.
            (default: :obj:`None`)
        index, format, energy_key, forces_key, stress_key, weight_key, config_type_key, dtype:
            as for :func:`read_structures`.
        transform (callable, optional): Applied to each :class:`Data` at access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Applied to each :class:`Data` before caching.
            (default: :obj:`None`)
        pre_filter (callable, optional): Keeps a :class:`Data` in the cache if it returns
            :obj:`True`. (default: :obj:`None`)
        force_reload (bool, optional): Read the file again even if a cache exists.
            (default: :obj:`False`)
        log (bool, optional): Let PyG print while processing. (default: :obj:`True`)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        index: int | str = ":",
        format: str | None = None,
        energy_key: str | None = "energy",
        forces_key: str | None = "forces",
        stress_key: str | None = "stress",
        weight_key: str = "weight",
        config_type_key: str = "config_type",
        dtype: torch.dtype = torch.float64,
        transform: Callable[[Data], Data] | None = None,
        pre_transform: Callable[[Data], Data] | None = None,
        pre_filter: Callable[[Data], bool] | None = None,
        force_reload: bool = False,
        log: bool = True,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a path, got {type(path).__name__}")
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path or None, got {type(root).__name__}")
        _check_options(index, format)
        keys = _checked_keys(energy_key, forces_key, stress_key, weight_key, config_type_key, dtype)
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        self.options = {"index": index, "format": format, **keys, "dtype": dtype}
        root = os.fspath(root) if root is not None else os.path.join(cache_root(), "ase")
        self.open_cache(root, transform, pre_transform, pre_filter, log, force_reload)

    @property
    def processed_dir(self) -> str:
        # one folder per file and options: PyG keeps its pre_transform record per folder
        text = json.dumps([self.path, {k: str(v) for k, v in self.options.items()}, "v2"])
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        return os.path.join(self.root, f"{Path(self.path).stem}_{key}")

    @property
    def processed_file_names(self) -> str:
        return "data.pt"

    def source_files(self) -> list[str]:
        return [self.path]

    def read_source(self) -> list[Data]:
        return read_structures(self.path, **self.options)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, path={self.path!r})"

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
  thousand eV to about 0.2 meV);
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
  ASE's Voigt order :math:`(xx, yy, zz, yz, xz, xy)`, with ``stress_weight`` ``[1]``.

A file in which only some structures have forces (or stresses) gives every structure the
field: zeros with ``forces_weight = 0`` where the file has none, ``forces_weight = 1`` where
it has them, as MACE does; a file in which none has them gives no such field
(:func:`align_fields` does the same for structures of several files). Batches of
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

_MAX_Z = 118  # the heaviest element named


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
            forces that are not ``[num_atoms, 3]``, a malformed stress, unknown elements, or
            a periodic direction without a cell vector.
    """
    keys = {
        "energy_key": energy_key,
        "forces_key": forces_key,
        "stress_key": stress_key,
        "weight_key": weight_key,
        "config_type_key": config_type_key,
    }
    _check_keys(keys, dtype)
    return _atoms_to_data(atoms, **keys, dtype=dtype, where=where)


def _tensor(array: np.ndarray, dtype: torch.dtype, what: str) -> Tensor:
    """``array`` (finite float64) in ``dtype``, refusing values that overflow it."""
    tensor = torch.from_numpy(array).to(dtype)
    if not torch.isfinite(tensor).all():
        largest = float(np.abs(array).max())
        raise ValueError(f"{what} overflows {dtype} (values up to {largest:.3g})")
    return tensor


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
    """:func:`atoms_to_data` after its argument checks."""
    numbers = np.asarray(atoms.numbers)
    if numbers.size == 0:
        raise ValueError(f"{where} has no atoms")
    unknown = numbers[(numbers < 1) | (numbers > _MAX_Z)]
    if unknown.size:
        raise ValueError(
            f"{where}: atomic numbers must lie in 1..{_MAX_Z}, got {sorted(set(unknown.tolist()))}"
        )
    n = len(numbers)
    positions = _floats(atoms.positions, f"{where}: positions")
    cell = _floats(atoms.cell.array, f"{where}: cell")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if np.linalg.matrix_rank(cell[pbc]) < pbc.sum():
        raise ValueError(
            f"{where}: periodic along {pbc.tolist()} but the cell vectors of these directions "
            f"are zero or linearly dependent: {cell.tolist()}"
        )
    weight = _floats(atoms.info.get(weight_key, 1.0), f"{where}: {weight_key}")
    if weight.size != 1 or weight.item() < 0:
        raise ValueError(f"{where}: {weight_key} must be one number >= 0, got {weight.tolist()}")
    config_type = atoms.info.get(config_type_key, DEFAULT_CONFIG_TYPE)
    data = Data(
        z=torch.from_numpy(numbers.astype(np.int64)),  # [N]
        pos=_tensor(positions, dtype, f"{where}: positions"),  # [N, 3]
    )
    if energy_key is not None:
        energy = _lookup(atoms, energy_key, arrays=False)
        if energy is None:
            available = sorted(
                {*atoms.info, *(getattr(atoms.calc, "results", None) or {})} - {config_type_key}
            )
            raise ValueError(
                f"{where} has no energy {energy_key!r} (looked in atoms.info and the "
                f"calculator results; found: {', '.join(available) or 'nothing'}); "
                "set energy_key to the name the file uses"
            )
        energy = _floats(energy, f"{where}: {energy_key}")
        if energy.size != 1:
            raise ValueError(f"{where}: {energy_key} must be one number, got {energy.tolist()}")
        data.energy = torch.tensor([energy.item()], dtype=torch.float64)  # [1]
    data.cell = _tensor(cell, dtype, f"{where}: cell").view(1, 3, 3)  # [1, 3, 3]
    data.pbc = torch.from_numpy(pbc).view(1, 3)  # [1, 3]
    data.weight = torch.tensor([weight.item()], dtype=torch.float64)  # [1]
    data.config_type = str(config_type)
    if forces_key is not None:
        forces = _lookup(atoms, forces_key, arrays=True)
        if forces is not None:
            forces = _floats(forces, f"{where}: {forces_key}")
            if forces.shape != (n, 3):
                raise ValueError(
                    f"{where}: {forces_key} must have shape [{n}, 3] (one row per atom), "
                    f"got {list(forces.shape)}"
                )
            data.forces = _tensor(forces, dtype, f"{where}: {forces_key}")  # [N, 3]
    if stress_key is not None:
        stress = _lookup(atoms, stress_key, arrays=False)
        if stress is not None:
            matrix = _stress_matrix(stress, f"{where}: {stress_key}")
            stress = _tensor(matrix, dtype, f"{where}: {stress_key}")
            data.stress = stress.view(1, 3, 3)  # [1, 3, 3]
    return data


def _check_options(index: object, format: object, keys: dict[str, object], dtype: object) -> None:
    """Type checks of the reading options, before any file is read."""
    if not isinstance(index, (int, str)) or isinstance(index, bool):
        raise TypeError(f"index must be an int or a string such as ':', got {index!r}")
    if format is not None and not isinstance(format, str):
        raise TypeError(f"format must be ASE's name of a format or None, got {format!r}")
    _check_keys(keys, dtype)


def _check_keys(keys: dict[str, object], dtype: object) -> None:
    for name, key in keys.items():
        optional = name in ("energy_key", "forces_key", "stress_key")
        if not (isinstance(key, str) and key) and not (optional and key is None):
            kind = "a non-empty string or None" if optional else "a non-empty string"
            raise TypeError(f"{name} must be {kind}, got {key!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")


def align_fields(structures: Sequence[Data]) -> list[Data]:
    r"""The structures with the optional labels that some of them have given to all, so that
    structures read from different files batch together.

    A structure without ``forces`` (or ``stress``) that others have gets zeros and
    ``forces_weight = 0`` (``stress_weight = 0``); one that has them keeps its weight, or
    gets 1. :func:`read_structures` does this within a file.

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
    for key, shape in (("forces", lambda d: (d.num_nodes, 3)), ("stress", lambda d: (1, 3, 3))):
        if not any(key in data for data in aligned):
            continue
        for data in aligned:
            present = key in data
            if not present:
                data[key] = torch.zeros(shape(data), dtype=data.pos.dtype)
            if f"{key}_weight" not in data or not present:
                data[f"{key}_weight"] = torch.tensor([float(present)], dtype=torch.float64)
    return aligned


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
        ValueError: when ASE cannot read the file, it holds no structure, or a structure is
            invalid (see :func:`atoms_to_data`); the message names the file and structure.
    """
    from ase.io import read

    keys = {
        "energy_key": energy_key,
        "forces_key": forces_key,
        "stress_key": stress_key,
        "weight_key": weight_key,
        "config_type_key": config_type_key,
    }
    _check_options(index, format, keys, dtype)
    path = os.fspath(path)
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
    data_list = [
        _atoms_to_data(atoms, **keys, dtype=dtype, where=f"{path}: structure {i}")
        for i, atoms in enumerate(atoms_list)
    ]
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
        keys = {
            "energy_key": energy_key,
            "forces_key": forces_key,
            "stress_key": stress_key,
            "weight_key": weight_key,
            "config_type_key": config_type_key,
        }
        _check_options(index, format, keys, dtype)
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        self.options = {"index": index, "format": format, **keys, "dtype": dtype}
        root = os.fspath(root) if root is not None else os.path.join(cache_root(), "ase")
        self.open_cache(root, transform, pre_transform, pre_filter, log, force_reload)

    @property
    def processed_dir(self) -> str:
        # one folder per file and options: PyG keeps its pre_transform record per folder
        text = json.dumps([self.path, {k: str(v) for k, v in self.options.items()}, "v1"])
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

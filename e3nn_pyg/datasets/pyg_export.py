"""Raw files of :class:`torch_geometric.datasets.QM9` written from a :class:`QM9Pack`, so that
PyG's own ``QM9`` processes the same molecules without network."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import torch

from ..elements import CHEMICAL_SYMBOLS
from .qm9 import QM9Pack
from .qm9_csv import NUM_UNCHARACTERIZED, Molecule, iter_rows, parse_row

__all__ = ["write_pyg_raw"]


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
    if len(placeholders) > NUM_UNCHARACTERIZED:
        raise ValueError(
            f"format='sdf' needs a first-N subset: these {len(wanted)} molecules leave "
            f"{len(placeholders)} gaps in the QM9 indices (at most {NUM_UNCHARACTERIZED}); "
            "use format='pt'"
        )
    rows = (row for row in iter_rows(dataset.raw_paths) if int(row["Index"]) in wanted)
    molecules = {m.index: m for m in map(parse_row, rows)}
    return _write_sdf_raw(raw_dir, [molecules.get(i) for i in range(1, max(wanted) + 1)])


def _write_sdf_raw(raw_dir: str, molecules: Sequence[Molecule | None]) -> list[str]:
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
            lines = [
                f"{CHEMICAL_SYMBOLS[a]} {x:.10f} {y:.10f} {w:.10f}\n"
                for a, (x, y, w) in zip(z, pos)
            ]
            xyz = f"{len(z)}\n\n" + "".join(lines)
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

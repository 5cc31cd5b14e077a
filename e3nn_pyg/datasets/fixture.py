"""The QM9 fixture shipped with the package: 297 molecules of ``qm9pack``, for tests and demos.

:func:`make_fixture` writes it from an installed ``qm9pack``; ``python -m e3nn_pyg.datasets
--make-fixture`` runs it. :class:`~e3nn_pyg.datasets.QM9Pack` reads it with
``source="fixture"``, without ``qm9pack``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from ..checks import is_int
from .qm9_csv import COLUMNS, QM9PACK_FILES, iter_rows, qm9pack_data_dir
from .split import require_seed

__all__ = ["FIXTURE_PATH", "make_fixture"]

FIXTURE_PATH = Path(__file__).parent / "fixtures" / "qm9_fixture.csv"
"""297 molecules in ``qm9pack``'s CSV format (see :func:`make_fixture`)."""


def make_fixture(
    output: str | os.PathLike = FIXTURE_PATH,
    num_first: int = 100,
    num_random: int = 200,
    seed: int = 0,
) -> int:
    r"""Write a small fixture from qm9pack: the molecules with QM9 index up to ``num_first``
    (methane ``gdb_1`` first; 3 of the first 100 are uncharacterized) and ``num_random``
    more drawn from the rest with ``torch.randperm`` seeded by ``seed``, in QM9 order, as
    qm9pack-format CSV (its columns that :class:`~e3nn_pyg.datasets.QM9Pack` reads, values
    copied verbatim).

    Args:
        output (str, optional): Path of the CSV. (default: :data:`FIXTURE_PATH`)
        num_first (int, optional): Largest QM9 index of the leading block. (default: :obj:`100`)
        num_random (int, optional): Number of random molecules after it. (default: :obj:`200`)
        seed (int, optional): Seed of the random draw. (default: :obj:`0`)

    Returns:
        The number of molecules written.
    """
    for name, value in (("num_first", num_first), ("num_random", num_random)):
        if not is_int(value) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    require_seed(seed)
    data_dir = qm9pack_data_dir()
    rows = list(iter_rows([os.path.join(data_dir, f) for f in QM9PACK_FILES]))
    first = [row for row in rows if int(row["Index"]) <= num_first]
    rest = rows[len(first) :]
    if num_random > len(rest):
        raise ValueError(f"num_random={num_random} exceeds the {len(rest)} remaining molecules")
    generator = torch.Generator().manual_seed(seed)
    chosen = sorted(torch.randperm(len(rest), generator=generator)[:num_random].tolist())
    selected = first + [rest[i] for i in chosen]
    with open(output, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([row[c] for c in COLUMNS] for row in selected)
    return len(selected)

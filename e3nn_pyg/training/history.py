r"""The per-epoch records of a model's training, in standard logging formats.

``history.csv`` (one row per epoch, rewritten whole after every epoch, so that a resumed
run continues it without duplicates; a column for every metric of some epoch, empty where
an epoch has none) next to the model's checkpoints, and TensorBoard event
files in ``tensorboard/`` when the ``tensorboard`` package is installed
(``tensorboard --logdir <out>``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

__all__ = ["HistoryWriter"]


class HistoryWriter:
    """Writes the epoch records of one model (nothing when not ``enabled``).

    Args:
        directory (Path): the model's folder.
        enabled (bool, optional): write (rank 0 of a run). (default: ``True``)
    """

    def __init__(self, directory: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(directory) / "history.csv"
        self.enabled = enabled
        self._board = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self._board = SummaryWriter(str(Path(directory) / "tensorboard"))

    def write(self, history: list[dict[str, Any]]) -> None:
        """Record the epochs of ``history`` (the last one is new)."""
        if not self.enabled or not history:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", newline="") as f:
            # a metric without labelled items in some epoch is absent there: an empty cell
            columns = list(dict.fromkeys(key for record in history for key in record))
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(history)
        os.replace(temporary, self.path)
        if self._board is not None:
            record = history[-1]
            for key, value in record.items():
                if key != "epoch":
                    self._board.add_scalar(key, value, record["epoch"])
            self._board.flush()

    def close(self) -> None:
        if self._board is not None:
            self._board.close()

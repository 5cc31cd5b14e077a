r"""Where a run executes: its device and dtype, and the processes it spans.

One process (``e3nn-pyg train ...``) or several started by ``torchrun``
(``torchrun --nproc_per_node=N -m e3nn_pyg.cli train ...``, which sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``): every process trains a replica, wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged), on its share of
every batch. ``batch_size`` is the global batch: batch :math:`k` of an epoch holds the same
molecules whatever the number of processes, rank :math:`r` takes its molecules
:math:`r, r + W, r + 2W, \dots`, and each rank's loss is weighted by its share, so that the
averaged gradient is the gradient of the whole batch's mean loss: :math:`W` processes take
the same steps as one (up to rounding). Every process needs data: a global batch or a
training or validation split with fewer structures than processes is refused before
training (:meth:`Runtime.require_data`). The named sums of the metrics are added over the
ranks in one collective; rank 0 alone logs and writes files, and its clock decides when the
time budget is spent.

NCCL joins the processes on GPUs, Gloo on CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .config import ConfigError

__all__ = ["Runtime", "default_dtype", "setup_runtime"]


@dataclass(frozen=True)
class Runtime:
    """The device, dtype and process group of a run."""

    device: torch.device
    dtype: torch.dtype
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def logger(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log`` on rank 0; on the other ranks a log that prints nothing."""
        return log if self.is_main else _silent

    def share(self, indices: Tensor) -> Tensor:
        """This rank's part of a batch of molecule indices (every ``world_size``-th)."""
        return indices[self.rank :: self.world_size]

    def sum(self, values: Mapping[str, float]) -> dict[str, float]:
        """Named ``values`` summed over the ranks (float64), in one collective; every rank
        passes the same names."""
        names = sorted(values)
        if not self.distributed:
            return {name: float(values[name]) for name in names}
        total = torch.tensor(
            [float(values[name]) for name in names],
            dtype=torch.float64,
            device=self._collective_device,
        )
        dist.all_reduce(total)
        return dict(zip(names, total.tolist(), strict=True))

    def require_data(self, batch_size: int, splits: Mapping[str, int] | None = None) -> None:
        """Raise :class:`ConfigError` when a process would be left without data: a global
        batch of fewer structures than processes (every batch would be left out), or a
        split (name -> number of structures, the training and validation sets) smaller than
        the number of processes."""
        world = self.world_size
        if batch_size < world:
            raise ConfigError(
                f"batch_size {batch_size} is smaller than the {world} processes: every "
                f"process needs a structure of each batch; use batch_size >= {world} or "
                "fewer processes"
            )
        for name, size in (splits or {}).items():
            if size < world:
                raise ConfigError(
                    f"the {name} split holds {size} structures, fewer than the {world} "
                    "processes: every process needs some; use more structures, a larger "
                    f"{name} fraction, or at most {size} processes"
                )

    def from_main(self, values: list[float]) -> list[float]:
        """Rank 0's ``values``, on every rank: times read from rank 0's clock and its
        Ctrl-C, so that every rank takes the same decisions (time budget, learning-rate
        schedule, where to stop)."""
        if not self.distributed:
            return values
        shared = torch.tensor(values, dtype=torch.float64, device=self._collective_device)
        dist.broadcast(shared, src=0)
        return shared.tolist()

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. after rank 0 wrote a file)."""
        if self.distributed:
            dist.barrier()

    @property
    def _collective_device(self) -> torch.device:
        # NCCL exchanges CUDA tensors, Gloo CPU ones
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _silent(line: str) -> None:
    """Prints nothing (the log of ranks other than 0)."""


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA device is available: use cpu")
    if name in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_runtime(device: str, dtype: str) -> Runtime:
    """The runtime of this process: the device named by ``device`` (``"auto"``: CUDA when
    present), the dtype named by ``dtype`` (``"float32"`` or ``"float64"``), and the
    process group when started by ``torchrun`` (joined here, once)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = _device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return Runtime(target, getattr(torch, dtype), rank, world_size)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build modules in ``dtype`` (constants computed in it, not rounded through float32)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)

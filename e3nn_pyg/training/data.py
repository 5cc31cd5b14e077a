r"""Data of a training run: the dataset, its seeded split, and the target's statistics.

**Target references.** A model predicts per atom and sums (or averages) over the molecule,
:math:`y_G = \bigoplus_{i \in G} (\sigma h_i + \mu + a_{z_i})`
(:class:`~e3nn_pyg.models.EquivariantNet` and PyG's SchNet share this form). The offsets are
fitted on the training molecules only:

- extensive targets (``readout="add"``, e.g. :math:`U_0`): the per-element references
  :math:`a_z` are the least-squares fit :math:`y_G \approx \sum_z n_{G z} a_z` on the
  element counts (:math:`\mu = 0`), starting from QM9's free-atom energies for
  :math:`U_0, U, H, G` (which elements missing from the training set keep), and
  :math:`\sigma^2` is the mean of :math:`r_G^2 / N_G` over the residuals :math:`r_G`, so
  that :math:`N_G` unit-variance atomic outputs match the residual's scale;
- intensive targets (``readout="mean"``): :math:`\mu` and :math:`\sigma` are the mean and
  standard deviation of :math:`y`, no references.

The fitted composition model is also reported as a baseline, next to the mean predictor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader

from ..datasets import QM9_TARGET_INFO, QM9Pack, QM9Target, random_split, target_index
from ..graph import radius_graph
from .config import ConfigError, TrainConfig

__all__ = ["RunData", "TargetStats", "average_degree", "fit_target_stats", "load_data"]

MAX_Z = 100


@dataclass
class TargetStats:
    """Offsets of a target fitted on the training set (see the module docstring)."""

    readout: str
    mean: float
    std: float
    atomref: Tensor | None  # [MAX_Z, 1] or None
    loss_scale: float  # typical |error| of the offsets alone, scales the loss
    train_mean: float  # mean of y, the mean predictor

    def to_dict(self) -> dict:
        return {
            "readout": self.readout,
            "mean": self.mean,
            "std": self.std,
            "atomref": self.atomref,
            "loss_scale": self.loss_scale,
            "train_mean": self.train_mean,
        }

    @classmethod
    def from_dict(cls, values: dict) -> TargetStats:
        return cls(**values)

    def composition(self, z: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """The prediction of the offsets alone, ``[num_graphs]``."""
        if self.atomref is None:
            return torch.full((num_graphs,), self.mean, dtype=torch.float64)
        per_atom = self.atomref[z, 0].double() + self.mean  # [N]
        return torch.zeros(num_graphs, dtype=torch.float64).index_add_(0, batch, per_atom)


@dataclass
class RunData:
    """The dataset of a run, its split and its target."""

    dataset: Dataset
    train: Tensor  # indices
    val: Tensor
    test: Tensor
    target: QM9Target

    @property
    def column(self) -> int:
        return self.target.index

    def subset(self, name: str) -> Dataset:
        return self.dataset[getattr(self, name)]

    def targets(self, name: str) -> Tensor:
        """``y`` of the target for a split, float64 ``[M]``."""
        return _column(self.subset(name), self.column)


def _column(dataset: Dataset, column: int) -> Tensor:
    y = dataset._data.y[torch.as_tensor(dataset.indices(), dtype=torch.long)]  # [M, 19]
    return y[:, column].double()


def load_data(config: TrainConfig, log: bool = True) -> RunData:
    """Load (processing on first use) the dataset of ``config`` and split it.

    Raises:
        ConfigError: when the dataset cannot be provided (``qm9pack`` missing, a subset
            larger than the dataset, too few molecules for the split).
    """
    source = "qm9pack" if config.dataset == "qm9" else "fixture"
    try:
        dataset = QM9Pack(
            config.data_root,
            subset=config.num_molecules,
            subset_seed=None if config.num_molecules is None else config.seed,
            source=source,
            log=log,
        )
    except ModuleNotFoundError as error:
        raise ConfigError(f"{error}") from None
    except ValueError as error:  # e.g. a subset larger than the dataset
        raise ConfigError(f"cannot build the {config.dataset} dataset: {error}") from None
    sizes = [math.floor(f * len(dataset)) for f in config.split]
    if min(sizes) < 1 or sizes[0] < 2:
        raise ConfigError(
            f"{len(dataset)} molecules are too few for split {config.split}: use more "
            "molecules (--num-molecules) or larger fractions"
        )
    train, val, test = random_split(dataset, sizes, seed=config.seed)
    target = QM9_TARGET_INFO[target_index(config.target)]
    return RunData(dataset, train, val, test, target)


def fit_target_stats(data: RunData, readout: str) -> TargetStats:
    """Fit the offsets of the model on the training molecules (module docstring)."""
    train = data.subset("train")
    y = data.targets("train")  # [M]
    train_mean = float(y.mean())
    if readout == "mean":
        std = float(y.std()) if len(y) > 1 else 1.0
        return TargetStats(readout, train_mean, std or 1.0, None, std or 1.0, train_mean)
    store = train._data
    slices = train.slices["z"]
    index = torch.as_tensor(train.indices(), dtype=torch.long)
    counts = torch.zeros(len(index), MAX_Z, dtype=torch.float64)  # [M, MAX_Z]
    for row, i in enumerate(index.tolist()):
        z = store.z[slices[i] : slices[i + 1]]
        counts[row].index_add_(0, z, torch.ones(len(z), dtype=torch.float64))
    # Start from the free-atom energies where QM9 has them (U0, U, H, G), so that elements
    # absent from the training set still get a physical reference.
    free_atoms = QM9Pack.atomref(data.target.index)
    atomref = torch.zeros(MAX_Z, 1, dtype=torch.float64)
    if free_atoms is not None:
        atomref += free_atoms.double()
    present = counts.sum(0) > 0  # elements seen in training
    residual = y - counts @ atomref[:, 0]  # [M]
    atomref[present] += torch.linalg.lstsq(counts[:, present], residual[:, None]).solution
    residual = y - counts @ atomref[:, 0]  # [M]
    num_atoms = counts.sum(1)  # [M]
    std = math.sqrt(float((residual.pow(2) / num_atoms).mean())) or 1.0
    loss_scale = math.sqrt(float(residual.pow(2).mean())) or 1.0
    return TargetStats(readout, 0.0, std, atomref.float(), loss_scale, train_mean)


def average_degree(dataset: Dataset, cutoff: float, max_molecules: int = 2000) -> float:
    """Mean number of neighbours within ``cutoff`` over (up to) the first molecules."""
    edges = atoms = 0
    subset = dataset[: min(len(dataset), max_molecules)]
    for batch in DataLoader(subset, batch_size=500):
        edges += radius_graph(batch.pos, cutoff, batch.batch).shape[1]
        atoms += batch.num_nodes
    return max(edges / max(atoms, 1), 1.0)

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

For an interatomic potential (energies and forces from a file, :class:`PotentialTask`), the
references :math:`a_z` start from the isolated-atom energies (E0s: the ``isolated_atoms``
file, or the isolated-atom entries of the data, which are then left out of the split) and
are fitted as above; :math:`\sigma` and the loss scale are the root mean square of
the training forces (the forces are :math:`\sigma` times gradients of the model's
unit-variance outputs).

The fitted composition model is also reported as a baseline, next to the mean predictor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader

from ..datasets import (
    QM9_TARGET_INFO,
    ASEDataset,
    QM9Pack,
    composition,
    force_rms,
    isolated_atom_energies,
    isolated_atom_mask,
    random_split,
    target_index,
)
from ..graph import radius_graph
from .config import ConfigError, TrainConfig
from .tasks import PotentialTask, PropertyTask

__all__ = [
    "RunData",
    "TargetStats",
    "average_degree",
    "fit_target_stats",
    "load_data",
    "read_structures_file",
    "without_isolated_atoms",
]

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
    """The dataset of a run, its split and its task.

    ``train``, ``val`` and ``test`` index ``dataset``; with a ``test_dataset`` (a separate
    test file), ``test`` indexes that one.
    """

    dataset: Dataset
    train: Tensor  # indices
    val: Tensor
    test: Tensor
    task: PropertyTask | PotentialTask
    test_dataset: Dataset | None = None
    #: free-atom energies per atomic number ``[MAX_Z]`` (QM9's, or the data's E0s), or None
    reference_energies: Tensor | None = None

    def subset(self, name: str) -> Dataset:
        if name == "test" and self.test_dataset is not None:
            return self.test_dataset[self.test]
        return self.dataset[getattr(self, name)]

    def targets(self, name: str) -> Tensor:
        """The target (the energy of a potential) of every structure of a split, float64
        ``[M]``."""
        return self.task.values(self.subset(name))

    @property
    def periodic(self) -> bool:
        """Whether some structure is periodic (``pbc`` true along some axis)."""
        stores = [self.dataset] + ([self.test_dataset] if self.test_dataset is not None else [])
        return any("pbc" in store._data and bool(store._data.pbc.any()) for store in stores)

    @property
    def num_structures(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)

    def target_record(self) -> dict:
        """The target's name and units, as checkpoints keep them."""
        task = self.task
        if isinstance(task, PropertyTask):
            target = task.target
            return {
                "name": target.name,
                "index": target.index,
                "unit": target.unit,
                "report_unit": target.report_unit,
                "report_scale": target.report_scale,
            }
        return {
            "name": "energy",
            "index": -1,
            "unit": "eV",
            "report_unit": "meV",
            "report_scale": task.report_scale,
            "forces": True,
        }


def load_data(config: TrainConfig, log: bool = True) -> RunData:
    """Load (processing on first use) the dataset of ``config`` and split it: QM9 (a
    property per molecule), or the structures of ``config.data`` (energies and forces).

    Raises:
        ConfigError: when the dataset cannot be provided (``qm9pack`` missing, an unreadable
            file, a subset larger than the dataset, too few structures for the split).
    """
    if config.data is not None:
        return _load_structures(config, log)
    source = "qm9pack" if config.resolved_dataset == "qm9" else "fixture"
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
        raise ConfigError(f"cannot build the {source} dataset: {error}") from None
    train, val, test = _split(len(dataset), config.split, config)
    target = QM9_TARGET_INFO[target_index(config.target)]
    free_atoms = QM9Pack.atomref(target.index)
    return RunData(dataset, train, val, test, PropertyTask(target, config.loss),
                   reference_energies=free_atoms)  # fmt: skip


def _split(count: int, fractions: list[float], config: TrainConfig) -> tuple[Tensor, ...]:
    sizes = [math.floor(f * count) for f in fractions]
    if min(sizes) < 1 or sizes[0] < 2:
        raise ConfigError(
            f"{count} structures are too few for split {fractions}: use more structures "
            "(--num-molecules) or larger fractions"
        )
    return random_split(count, sizes, seed=config.seed)


def read_structures_file(path, data_root: str | None = None, log: bool = False) -> Dataset:
    """The structures of a file ASE reads, with :class:`ConfigError` when it cannot be
    read."""
    try:
        return ASEDataset(path, root=data_root, log=log)
    except (OSError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"cannot read structures from {path}: {error}") from None


def without_isolated_atoms(dataset: Dataset) -> Dataset:
    """The structures of a dataset that are not isolated-atom entries (those give the E0s,
    they are neither trained nor tested on)."""
    isolated = isolated_atom_mask(dataset)  # [M]
    return dataset[(~isolated).nonzero()[:, 0]] if isolated.any() else dataset


def _load_structures(config: TrainConfig, log: bool) -> RunData:
    """The structures of ``config.data`` split into train, val and test (or train and val,
    with the test set from ``config.test_data``)."""
    dataset = read_structures_file(config.data, config.data_root, log)
    missing = [key for key in ("energy", "forces") if key not in dataset._data]
    if missing:
        raise ConfigError(
            f"{config.data} lacks {' and '.join(missing)}: training a potential needs the "
            "energy and the forces of every structure"
        )
    isolated = isolated_atom_mask(dataset)  # [M] isolated-atom entries give the E0s only
    references = None
    try:
        if config.isolated_atoms is not None:
            atoms = read_structures_file(config.isolated_atoms, config.data_root, log)
            references = isolated_atom_energies(atoms, MAX_Z)
        elif isolated.any():
            references = isolated_atom_energies(dataset, MAX_Z)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"cannot read the isolated-atom energies: {error}") from None
    dataset = without_isolated_atoms(dataset)
    count = len(dataset)
    if config.num_molecules is not None:
        if config.num_molecules > count:
            raise ConfigError(
                f"--num-molecules {config.num_molecules} exceeds the {count} structures of "
                f"{config.data}"
            )
        count = config.num_molecules
    test_dataset = None
    if config.test_data is None:
        train, val, test = _split(count, config.split, config)
    else:  # a test file: the training file gives the validation set
        val_fraction = config.split[1]
        train, val = _split(count, [1.0 - val_fraction, val_fraction], config)
        test_dataset = read_structures_file(config.test_data, config.data_root, log)
        test_dataset = without_isolated_atoms(test_dataset)
        test = torch.arange(len(test_dataset))
    task = PotentialTask(
        config.energy_weight, config.forces_weight, config.loss, config.stress_weight
    )
    return RunData(
        dataset, train, val, test, task, test_dataset=test_dataset,
        reference_energies=None if references is None else references[:, None],
    )  # fmt: skip


def fit_target_stats(data: RunData, readout: str) -> TargetStats:
    """Fit the offsets of the model on the training structures (module docstring)."""
    train = data.subset("train")
    y = data.targets("train")  # [M]
    train_mean = float(y.mean())
    if readout == "mean":
        std = float(y.std()) if len(y) > 1 else 1.0
        return TargetStats(readout, train_mean, std or 1.0, None, std or 1.0, train_mean)
    counts = composition(train, MAX_Z)  # [M, MAX_Z]
    # Start from the free-atom energies where the data has them (QM9's U0, U, H, G; the
    # isolated atoms of a file), so that elements absent from the training set still get a
    # physical reference.
    atomref = torch.zeros(MAX_Z, 1, dtype=torch.float64)
    if data.reference_energies is not None:
        atomref += data.reference_energies.double()
    present = counts.sum(0) > 0  # elements seen in training
    residual = y - counts @ atomref[:, 0]  # [M]
    atomref[present] += torch.linalg.lstsq(counts[:, present], residual[:, None]).solution
    residual = y - counts @ atomref[:, 0]  # [M]
    num_atoms = counts.sum(1)  # [M]
    if data.task.forces:
        try:
            scale = float(force_rms(train))
        except ValueError as error:  # no forces at all
            raise ConfigError(f"cannot train a potential on these structures: {error}") from None
        return TargetStats(readout, 0.0, scale or 1.0, atomref.float(), scale or 1.0, train_mean)
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

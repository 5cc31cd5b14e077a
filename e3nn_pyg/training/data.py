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

**Partial labels.** A structure of a potential's file may lack its energy, forces or
stress: it gets zeros with a weight 0 for that label
(:func:`~e3nn_pyg.datasets.read_structures`), which the loss, the metrics and the fit
above skip. Refused before any
training, each with one line naming the file: a training file (or training split) with no
energy or no forces at all, a test file likewise, a file of isolated atoms only, and
an element of the validation or test structures that no training structure holds (the
model would never learn it, and refuses it at inference), and reference energies that leave
an element of the data without a value: isolated-atom energies (``--isolated-atoms`` or the
file's entries) that miss one, or, fitted, an element that only training structures without
an energy hold (isolated-atom energies define it). Elements are named by symbol and atomic
number.

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
    atom_values,
    collated,
    composition,
    force_rms,
    isolated_atom_energies,
    isolated_atom_mask,
    random_split,
    structure_values,
    target_index,
)
from ..elements import MAX_Z, element_names
from ..graph import radius_graph
from .config import ConfigError, TrainConfig
from .tasks import PotentialTask, PropertyTask

__all__ = [
    "RunData",
    "TargetStats",
    "average_degree",
    "fit_target_stats",
    "labelled",
    "load_data",
    "read_structures_file",
    "read_test_structures",
    "species_of",
    "without_isolated_atoms",
]


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
        return any("pbc" in collated(store) and bool(collated(store).pbc.any()) for store in stores)

    @property
    def num_structures(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)


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
    data = RunData(dataset, train, val, test, PropertyTask(target, config.loss),
                   reference_energies=free_atoms)  # fmt: skip
    _check_unseen(data)
    return data


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


def _isolated_mask(dataset: Dataset, where: str) -> Tensor:
    """Which structures are isolated-atom entries ``[M]``, with :class:`ConfigError` for a
    malformed one (marked isolated but of several atoms)."""
    try:
        return isolated_atom_mask(dataset)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def without_isolated_atoms(dataset: Dataset, where: str = "the data") -> Dataset:
    """The structures of a dataset that are not isolated-atom entries (those give the E0s,
    they are neither trained nor tested on); ``where`` names the dataset in errors."""
    isolated = _isolated_mask(dataset, where)  # [M]
    return dataset[(~isolated).nonzero()[:, 0]] if isolated.any() else dataset


def labelled(dataset: Dataset, label: str) -> Tensor:
    """Which structures of a dataset view carry ``label`` (``"energy"``, ``"forces"``,
    ``"stress"``): the file gave it (its ``<label>_weight`` is not 0), ``[M]`` bool."""
    stored = collated(dataset)
    if label not in stored:
        return torch.zeros(len(dataset), dtype=torch.bool)
    if f"{label}_weight" not in stored:
        return torch.ones(len(dataset), dtype=torch.bool)
    return structure_values(dataset, f"{label}_weight") != 0


def species_of(dataset: Dataset) -> set[int]:
    """The atomic numbers that occur in a dataset (view)."""
    return set(atom_values(dataset, "z").unique().tolist()) if len(dataset) else set()


def _require_labels(dataset: Dataset, where: str, either: bool = False) -> None:
    """Refuse structures without the labels a potential is trained on: some structure
    with an energy, some with forces (``either``, for test data: some with one of them).
    Partial labels are fine (a structure without a label has weight 0 for it), and so is
    a file without stresses (the stress term applies to the structures that have one)."""
    if len(dataset) == 0:
        raise ConfigError(f"{where} holds no structure besides isolated-atom entries")
    labels = (("energy", "an energy"), ("forces", "forces"))
    missing = [what for label, what in labels if not labelled(dataset, label).any()]
    if len(missing) == 2 or (missing and not either):
        raise ConfigError(
            f"{where}: none of its {len(dataset)} structures (isolated-atom entries aside) "
            f"has {' or '.join(missing)}; a potential is "
            + ("tested on energies or forces" if either else "trained on energies and forces")
        )


def read_test_structures(path, data_root: str | None = None, log: bool = False) -> Dataset:
    """The structures of a test (or evaluation) file: read, without its isolated-atom
    entries, and checked to carry energies or forces (:class:`ConfigError` otherwise; the
    metrics of a label that no structure carries are left out)."""
    dataset = without_isolated_atoms(read_structures_file(path, data_root, log), str(path))
    _require_labels(dataset, str(path), either=True)
    return dataset


def _reference_energies(config: TrainConfig, dataset: Dataset, log: bool):
    """The isolated-atom energies ``[MAX_Z]`` (``--isolated-atoms``, else the isolated-atom
    entries of the data), the elements they are given for, and where they come from; or
    ``(None, set(), None)`` when the data has none (then they are fitted)."""
    if config.isolated_atoms is not None:
        source = config.isolated_atoms
        atoms = read_structures_file(source, config.data_root, log)
    elif _isolated_mask(dataset, config.data).any():
        source, atoms = f"the isolated-atom entries of {config.data}", dataset
    else:
        return None, set(), None
    try:
        references = isolated_atom_energies(atoms, MAX_Z)  # [MAX_Z]
    except ValueError as error:
        raise ConfigError(f"cannot read the isolated-atom energies of {source}: {error}") from None
    isolated = _isolated_mask(atoms, source).nonzero()[:, 0]
    return references, species_of(atoms[isolated]), source


def _check_unseen(data: RunData) -> set[int]:
    """The elements of the training split; :class:`ConfigError` when the validation or test
    structures hold another (the model would never learn it, and refuses it at
    inference)."""
    views = {name: data.subset(name) for name in ("train", "val", "test")}
    trained = species_of(views["train"])
    unseen = set().union(*(species_of(view) for view in views.values())) - trained
    if unseen:
        where = [name for name, view in views.items() if species_of(view) & unseen]
        from_split = data.test_dataset is None or "val" in where  # not only a test file's
        raise ConfigError(
            f"{element_names(unseen)} occur in the {' and '.join(where)} structures but in no "
            "training structure: the model would never learn them (and refuses them at "
            "inference); put structures with them into the training data, or leave them out"
            + (" (another --seed or --split changes which structures train)" if from_split else "")
        )
    return trained


def _check_references(data: RunData, given: set[int], source: str | None) -> None:
    """Refuse data with an element the model would never learn (absent from the training
    split: the model refuses it at inference), or whose reference energy is neither given
    (isolated atoms) nor fitted (in a training structure with an energy)."""
    trained = _check_unseen(data)
    if source is not None:
        missing = trained - given
        if missing:
            raise ConfigError(
                f"{source} give no energy for {element_names(missing)} of the data: add their "
                "isolated atoms, or leave out the isolated atoms to fit every reference energy "
                "on the training structures"
            )
        return
    train = data.subset("train")
    missing = trained - species_of(train[labelled(train, "energy").nonzero()[:, 0]])
    if missing:
        raise ConfigError(
            f"{element_names(missing)} occur only in training structures without an energy: "
            "their reference energies cannot be fitted; give isolated-atom energies "
            "(--isolated-atoms)"
        )


def _split_structures(config: TrainConfig, count: int, log: bool):
    """``(train, val, test, test_dataset)``: the split of the first ``count`` structures,
    the test set from ``config.test_data`` when it is given."""
    if config.test_data is None:
        return (*_split(count, config.split, config), None)
    val_fraction = config.split[1]  # a test file: the training file gives the validation set
    train, val = _split(count, [1.0 - val_fraction, val_fraction], config)
    test_dataset = read_test_structures(config.test_data, config.data_root, log)
    return train, val, torch.arange(len(test_dataset)), test_dataset


def _load_structures(config: TrainConfig, log: bool) -> RunData:
    """The structures of ``config.data`` split into train, val and test (or train and val,
    with the test set from ``config.test_data``), checked before any training: the labels
    the loss needs, and a reference energy for every element."""
    dataset = read_structures_file(config.data, config.data_root, log)
    references, given, source = _reference_energies(config, dataset, log)
    dataset = without_isolated_atoms(dataset, config.data)  # entries that give the E0s only
    _require_labels(dataset, config.data)
    count = len(dataset)
    if config.num_molecules is not None:
        if config.num_molecules > count:
            raise ConfigError(
                f"--num-molecules {config.num_molecules} exceeds the {count} structures of "
                f"{config.data}"
            )
        count = config.num_molecules
    train, val, test, test_dataset = _split_structures(config, count, log)
    task = PotentialTask(
        config.energy_weight, config.forces_weight, config.loss, config.stress_weight
    )
    data = RunData(
        dataset, train, val, test, task, test_dataset=test_dataset,
        reference_energies=None if references is None else references[:, None],
    )  # fmt: skip
    train_view = data.subset("train")
    _require_labels(train_view, f"the training split of {config.data}")
    if not bool((structure_values(train_view, "weight") > 0).any()):
        raise ConfigError(
            f"the training split of {config.data}: every one of its {len(train_view)} "
            "structures has weight 0, so the loss is 0: give some of them a weight > 0"
        )
    _check_references(data, given, source)
    return data


def fit_target_stats(data: RunData, readout: str) -> TargetStats:
    """Fit the offsets of the model on the training structures (module docstring)."""
    all_train = train = data.subset("train")
    y = data.targets("train")  # [M]
    if data.task.forces:  # a potential: the energies of the structures that have one
        with_energy = labelled(train, "energy")  # [M]
        train, y = train[with_energy.nonzero()[:, 0]], y[with_energy]  # [M']
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
            scale = float(force_rms(all_train))  # every structure with forces
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

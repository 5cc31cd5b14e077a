r"""What a model learns: a property of each molecule (a QM9 target), or an interatomic
potential (energies, forces and stresses of each structure).

A :class:`Task` knows its reference values, its loss, and its metrics. The training loop
(:mod:`~e3nn_pyg.training.loop`) and the run (:mod:`~e3nn_pyg.training.run`) ask it and stay
the same for every task: a training step returns the loss and named sums (a dictionary of
name -> sum), an evaluation returns named sums too, the sums are added over steps and over
processes (:meth:`~e3nn_pyg.training.distributed.Runtime.sum`, one collective), and the
metrics come from the added sums through the task's declared :class:`Metric` s. Each metric
is declared once, with its name, label, unit, and the sums it divides (a mean over the items
that carry its label, or the root of one); a metric with no such item is absent from the
metrics, never a division by zero.

**Property** (:class:`PropertyTask`), one value :math:`y_G` per molecule, errors divided by
the target's ``loss_scale`` :math:`s`:

.. math::
    \mathcal{L} = \frac{1}{|B|} \sum_{G \in B} \ell\Big(\frac{\hat y_G - y_G}{s}\Big)

**Potential** (:class:`PotentialTask`), energy :math:`E_G`, forces :math:`\mathbf{F}_i` and
(periodic structures) stress :math:`\sigma_G`, divided by the root mean square
:math:`\sigma_F` of the training forces (the scale of the model's atomic energies), the
energy and the virial per atom:

.. math::
    \mathcal{L} = \frac{1}{|B|} \sum_{G \in B} w_G \Big[
        \lambda_E\, w^E_G\, \ell\Big(\frac{\hat E_G - E_G}{N_G\, \sigma_F}\Big)
        + \frac{\lambda_F\, w^F_G}{3 N_G} \sum_{i \in G,\, c} \ell\Big(
            \frac{\hat F_{ic} - F_{ic}}{\sigma_F}\Big)
        + \frac{\lambda_\sigma\, w^\sigma_G}{9} \sum_{a b} \ell\Big(
            \frac{V_G (\hat\sigma_{G,ab} - \sigma_{G,ab})}{N_G\, \sigma_F}\Big) \Big]

with :math:`\ell(x) = |x|` (``loss="l1"``) or :math:`x^2` (``"mse"``), :math:`w_G` the
structure's ``weight``, :math:`w^E_G, w^F_G, w^\sigma_G` its ``energy_weight``,
``forces_weight`` and ``stress_weight`` (0 where the structure has no such label, 1 where the
data has no such field) and :math:`\lambda_E, \lambda_F, \lambda_\sigma` the weights of the
config. A structure without a label adds nothing to that term (its stored value is a
placeholder, never read), and the MAEs are over the labelled items only (structures, force
components, stress components). Every structure counts once in :math:`|B|`, whatever its
size and labels, so the loss of a batch shared out over processes is the weighted sum of
their losses (:mod:`~e3nn_pyg.training.distributed`). The stress term is trained on the
periodic structures of every batch, also of batches that mix them with molecules: the model
gives NaN stress rows for the molecules (their stress is not defined), which the term leaves
out with :func:`torch.where` like the structures without a stress label, so neither their
values nor their gradients reach the loss.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader

from ..datasets import QM9Target, atom_values, collated, structure_values
from .config import ConfigError

__all__ = [
    "EVAL_BATCH_SIZE",
    "Metric",
    "PotentialTask",
    "PropertyTask",
    "Task",
    "metric_values",
    "potential_outputs",
    "predict",
    "predict_potential",
]

EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class Metric:
    r"""One metric of a task, from named sums: ``scale`` times the mean
    :math:`\sum \text{total} / \sum \text{count}` (its square root with ``root``, an RMSE).

    Args:
        name (str): its key in the metrics and the history (``"forces_mae"``).
        label (str): its name in log lines (``"forces MAE"``).
        unit (str): the unit of its value (``"meV/Å"``; ``""`` for a number).
        total (str): the sum it averages.
        count (str): the sum that counts the items (the labelled ones).
        scale (float, optional): from the data's unit to ``unit``. (default: ``1.0``)
        root (bool, optional): the root of the mean. (default: ``False``)
    """

    name: str
    label: str
    unit: str
    total: str
    count: str
    scale: float = 1.0
    root: bool = False

    def value(self, sums: Mapping[str, float]) -> float | None:
        """The metric, or :obj:`None` when no item counts."""
        count = float(sums[self.count])
        if count <= 0:
            return None
        mean = float(sums[self.total]) / count
        return self.scale * (math.sqrt(mean) if self.root else mean)


def metric_values(metrics: Sequence[Metric], sums: Mapping[str, float]) -> dict[str, float]:
    """The values of the ``metrics`` defined by ``sums`` (those with counted items)."""
    values = {metric.name: metric.value(sums) for metric in metrics}
    return {name: value for name, value in values.items() if value is not None}


class Task(ABC):
    """What every task provides (the loop and the run use nothing else).

    Subclasses declare :attr:`kind` (``"property"`` or ``"potential"``: how a run reports
    and evaluates it, see :mod:`~e3nn_pyg.training.run`), :attr:`forces` (whether the model
    returns forces),
    :attr:`train_metric_specs` and :attr:`eval_metric_specs` (the :class:`Metric` s of
    training steps and of evaluations), :attr:`score_metric` (the evaluation metric that
    selects the best model, lower is better), and implement :meth:`values`, :meth:`step`,
    :meth:`eval_sums`, :meth:`check_labels`, :meth:`target_record` and :meth:`describe`.
    Every step's sums hold ``"loss"`` (the batch's mean loss times its number of
    structures) and ``"structures"`` (that number).
    """

    #: ``"property"`` or ``"potential"``: how a run reports and evaluates the task.
    kind: ClassVar[str]
    #: Whether the model returns forces.
    forces: ClassVar[bool]
    #: The metrics of training steps.
    train_metric_specs: tuple[Metric, ...]
    #: The metrics of evaluations.
    eval_metric_specs: tuple[Metric, ...]
    #: The evaluation metric that selects the best model (lower is better).
    score_metric: Metric

    @property
    def sum_names(self) -> tuple[str, ...]:
        """The names of the sums of a training step, in a fixed order."""
        names = ["loss", "structures"]
        for metric in self.train_metric_specs:
            names += [metric.total, metric.count]
        return tuple(dict.fromkeys(names))

    @property
    def score_name(self) -> str:
        return self.score_metric.label

    @property
    def report_unit(self) -> str:
        return self.score_metric.unit

    def train_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """The training metrics (``train_loss``, ...) from the summed step sums."""
        return metric_values(self.train_metric_specs, sums)

    def eval_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """The evaluation metrics from the summed :meth:`eval_sums`."""
        return metric_values(self.eval_metric_specs, sums)

    def score(self, metrics: Mapping[str, float]) -> float:
        """The validation number that selects the best model (lower is better)."""
        return metrics[self.score_metric.name]

    def format_metrics(self, metrics: Mapping[str, float]) -> str:
        """The evaluation metrics present in ``metrics``, for a log line."""
        return ", ".join(
            f"{metric.label} {metrics[metric.name]:.2f} {metric.unit}".rstrip()
            for metric in self.eval_metric_specs
            if metric.name in metrics
        )

    @abstractmethod
    def check_labels(self, dataset: Dataset, split: str) -> None:
        """Raise :class:`ConfigError` when no structure of ``dataset`` (the ``split``)
        carries the label of the score (no best model could be chosen)."""

    @abstractmethod
    def values(self, dataset: Dataset) -> Tensor:
        """The reference value of every structure of a dataset view, float64 ``[M]``."""

    @abstractmethod
    def step(self, model: nn.Module, batch, loss_scale: float) -> tuple[Tensor, dict]:
        """The mean loss of a batch and its named sums (0-dim tensors, :attr:`sum_names`)."""

    @abstractmethod
    def eval_sums(self, model: nn.Module, dataset: Dataset) -> dict[str, float]:
        """Sums over a dataset view from which :meth:`eval_metrics` computes the metrics
        (additive, so that processes can add theirs)."""

    @abstractmethod
    def target_record(self) -> dict[str, Any]:
        """The target's name and units, as checkpoints keep them."""

    @abstractmethod
    def describe(self, stats) -> str:
        """What is learnt, for the run's first log line (``stats``: the fitted offsets)."""


def _pointwise(error: Tensor, loss: str) -> Tensor:
    return error.abs() if loss == "l1" else error.pow(2)


def _model_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


@dataclass(frozen=True)
class PropertyTask(Task):
    """Learn one QM9 target, a value per molecule (see the module docstring).

    Args:
        target (QM9Target): the column of ``data.y`` and its units.
        loss (str): ``"l1"`` or ``"mse"``. (default: ``"l1"``)
    """

    target: QM9Target
    loss: str = "l1"

    kind = "property"
    forces = False

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def train_metric_specs(self) -> tuple[Metric, ...]:
        mae = Metric("train_mae", "train MAE", self.target.report_unit, "error", "structures",
                     self.target.report_scale)  # fmt: skip
        return (Metric("train_loss", "train loss", "", "loss", "structures"), mae)

    @property
    def score_metric(self) -> Metric:
        return Metric("mae", f"MAE of {self.target.name}", self.target.report_unit, "error",
                      "structures", self.target.report_scale)  # fmt: skip

    @property
    def eval_metric_specs(self) -> tuple[Metric, ...]:
        return (self.score_metric,)

    def values(self, dataset: Dataset) -> Tensor:
        """The target of every molecule of a dataset view, float64 ``[M]``."""
        return structure_values(dataset, "y")[:, self.target.index].double()

    def step(self, model: nn.Module, batch, loss_scale: float) -> tuple[Tensor, dict]:
        target = batch.y[:, self.target.index].to(batch.pos.dtype)  # [G]
        prediction = model(batch.z, batch.pos, batch.batch)[:, 0]  # [G]
        loss = _pointwise((prediction - target) / loss_scale, self.loss).mean()
        return loss, {
            "loss": loss.detach() * batch.num_graphs,
            "error": (prediction.detach() - target).abs().sum(),
            "structures": loss.new_tensor(float(batch.num_graphs)),
        }

    def check_labels(self, dataset: Dataset, split: str) -> None:
        """Every QM9 molecule carries every target: nothing to refuse."""

    def eval_sums(self, model: nn.Module, dataset: Dataset) -> dict[str, float]:
        error = (predict(model, dataset) - self.values(dataset)).abs()  # [M]
        return {"error": float(error.sum()), "structures": float(len(error))}

    def target_record(self) -> dict[str, Any]:
        target = self.target
        return {"name": target.name, "index": target.index, "unit": target.unit,
                "report_unit": target.report_unit, "report_scale": target.report_scale}  # fmt: skip

    def describe(self, stats) -> str:
        target = self.target
        return f"target {target.name} ({target.description}, {target.unit})"


_MEV = 1000.0  # eV -> meV


@dataclass(frozen=True)
class PotentialTask(Task):
    """Learn energies, forces and stresses (see the module docstring); the model returns
    ``(energy [G, 1], forces [N, 3])`` (and the stress ``[G, 3, 3]`` when asked). Energies
    in eV, forces in eV/Å, stresses in eV/Å³; errors are reported in meV, meV/Å, meV/Å³.

    Args:
        energy_weight (float): :math:`\\lambda_E`. (default: ``1.0``)
        forces_weight (float): :math:`\\lambda_F`. (default: ``1.0``)
        loss (str): ``"l1"`` or ``"mse"``. (default: ``"l1"``)
        stress_weight (float): :math:`\\lambda_\\sigma`, for periodic structures with a
            stress. (default: ``0.0``)
    """

    energy_weight: float = 1.0
    forces_weight: float = 1.0
    loss: str = "l1"
    stress_weight: float = 0.0

    kind = "potential"
    forces = True
    name = "energy and forces"
    report_scale = _MEV
    train_metric_specs = (
        Metric("train_loss", "train loss", "", "loss", "structures"),
        Metric("train_energy_mae_per_atom", "train energy MAE per atom", "meV/atom",
               "energy_error_per_atom", "energy_structures", _MEV),
        Metric("train_forces_mae", "train forces MAE", "meV/Å", "forces_error",
               "forces_components", _MEV),
        Metric("train_stress_mae", "train stress MAE", "meV/Å³", "stress_error",
               "stress_components", _MEV),
    )  # fmt: skip
    eval_metric_specs = (
        Metric("energy_mae", "energy MAE", "meV", "energy_error", "energy_structures", _MEV),
        Metric("energy_mae_per_atom", "energy MAE per atom", "meV/atom",
               "energy_error_per_atom", "energy_structures", _MEV),
        Metric("forces_mae", "forces MAE", "meV/Å", "forces_error", "forces_components", _MEV),
        Metric("forces_rmse", "forces RMSE", "meV/Å", "forces_squared_error",
               "forces_components", _MEV, root=True),
        Metric("stress_mae", "stress MAE", "meV/Å³", "stress_error", "stress_components", _MEV),
    )  # fmt: skip

    @property
    def score_metric(self) -> Metric:
        name = "forces_mae" if self.forces_weight > 0 else "energy_mae_per_atom"
        return next(metric for metric in self.eval_metric_specs if metric.name == name)

    def values(self, dataset: Dataset) -> Tensor:
        """The energy of every structure of a dataset view, float64 ``[M]`` (a placeholder
        where ``energy_weight`` is 0, 0 for data without energies)."""
        if "energy" not in collated(dataset):
            return torch.zeros(len(dataset), dtype=torch.float64)
        return structure_values(dataset, "energy").double()

    def check_labels(self, dataset: Dataset, split: str) -> None:
        quantity = "forces" if self.forces_weight > 0 else "energy"
        if len(dataset) and not bool(_labelled(dataset, f"{quantity}_weight").any()):
            raise ConfigError(
                f"no structure of the {split} split has {quantity}: the {self.score_name} "
                f"that selects the best model needs some; label {quantity} in the data, or "
                f"train on {'energies (forces_weight 0)' if quantity == 'forces' else 'forces'}"
            )

    def target_record(self) -> dict[str, Any]:
        return {"name": "energy", "index": -1, "unit": "eV", "report_unit": "meV",
                "report_scale": self.report_scale, "forces": True}  # fmt: skip

    def describe(self, stats) -> str:
        return f"energies and forces (force RMS {stats.std * _MEV:.0f} meV/Å)"

    def step(self, model: nn.Module, batch, loss_scale: float) -> tuple[Tensor, dict]:
        stress_on = self.stress_weight > 0 and "stress" in batch
        energy, forces, stress = potential_outputs(model, batch, stress_on)
        atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(energy.dtype)  # [G]
        energy_term, sums = self._energy_term(energy, batch, atoms, loss_scale)
        forces_term, forces_sums = self._forces_term(forces, batch, atoms, loss_scale)
        loss = self.energy_weight * energy_term + self.forces_weight * forces_term  # [G]
        if stress_on:
            stress_term, stress_sums = self._stress_term(stress, batch, atoms, loss_scale)
            loss = loss + self.stress_weight * stress_term
        else:
            zero = loss.new_zeros(())
            stress_sums = {"stress_error": zero, "stress_components": zero}
        weight = getattr(batch, "weight", None)  # the structure's weight in the loss
        if weight is not None:
            loss = loss * weight.to(loss.dtype)
        loss = loss.mean()
        sums.update(forces_sums, **stress_sums)
        sums["loss"] = loss.detach() * batch.num_graphs
        sums["structures"] = loss.new_tensor(float(batch.num_graphs))
        return loss, sums

    def _energy_term(self, energy: Tensor, batch, atoms: Tensor, loss_scale: float):
        """The energy term per structure ``[G]`` (0 where unlabelled) and its sums."""
        labelled, weight = _batch_labels(batch, "energy")  # [G]
        # the difference of two total energies in float64: float32 would round it to 0.2 meV
        error = (energy[:, 0].double() - batch.energy.double()).to(energy.dtype) / atoms  # [G]
        error = torch.where(labelled, error, torch.zeros_like(error))  # eV/atom
        term = _pointwise(error / loss_scale, self.loss)
        if weight is not None:
            term = term * weight.to(term.dtype)
        sums = {"energy_error_per_atom": error.detach().abs().sum(),
                "energy_structures": labelled.sum().to(error.dtype)}  # fmt: skip
        return term, sums

    def _forces_term(self, forces: Tensor, batch, atoms: Tensor, loss_scale: float):
        """The forces term per structure ``[G]`` (0 where unlabelled) and its sums."""
        labelled, weight = _batch_labels(batch, "forces")
        labelled = labelled[batch.batch][:, None]  # [N, 1]
        error = forces - batch.forces.to(forces.dtype)  # [N, 3]
        error = torch.where(labelled, error, torch.zeros_like(error))
        term = torch.zeros_like(atoms).index_add_(
            0, batch.batch, _pointwise(error / loss_scale, self.loss).sum(1)
        ) / (3 * atoms)  # [G]
        if weight is not None:
            term = term * weight.to(term.dtype)
        sums = {"forces_error": error.detach().abs().sum(),
                "forces_components": 3 * labelled.sum().to(error.dtype)}  # fmt: skip
        return term, sums

    def _stress_term(self, stress: Tensor, batch, atoms: Tensor, loss_scale: float):
        """The stress term per structure ``[G]`` (0 where unlabelled or not periodic: the
        NaN rows of ``stress``) and its sums: the virial per atom, an energy per atom like
        the energy term."""
        labelled, weight = _batch_labels(batch, "stress")
        labelled = labelled & _batch_periodic(batch)  # [G]
        volume = torch.linalg.det(batch.cell.to(stress.dtype)).abs()  # [G]
        error = stress - batch.stress.to(stress.dtype)  # [G, 3, 3]
        error = torch.where(labelled[:, None, None], error, torch.zeros_like(error))
        virial = error * (volume / atoms)[:, None, None] / loss_scale
        term = _pointwise(virial, self.loss).mean((1, 2))  # [G]
        if weight is not None:
            term = term * weight.to(term.dtype)
        sums = {"stress_error": error.detach().abs().sum(),
                "stress_components": 9 * labelled.sum().to(error.dtype)}  # fmt: skip
        return term, sums

    def errors(self, model: nn.Module, dataset: Dataset) -> dict[str, Tensor]:
        """The errors of a potential on a dataset view (float64, CPU): ``energy`` ``[M]``
        of every structure (prediction minus the stored energy, a placeholder where
        ``energy_labelled`` ``[M]`` is false) and ``atoms`` ``[M]``; ``forces`` ``[N, 3]``,
        the reference ``forces_reference`` ``[N, 3]`` and ``z`` ``[N]`` of the atoms of the
        structures with forces; ``stress`` ``[M', 3, 3]`` of the periodic structures with
        a stress (empty unless ``stress_weight > 0``)."""
        stress_on = self.stress_weight > 0 and "stress" in collated(dataset)
        energy, forces, atoms, stress = predict_potential(model, dataset, stress=stress_on)
        with_forces = _labelled(dataset, "forces_weight").repeat_interleave(atoms.long())  # [N]
        reference = forces[:0]  # [0, 3]: no atom with forces
        if bool(with_forces.any()):
            reference = atom_values(dataset, "forces").double()[with_forces]  # [N, 3]
        errors = {
            "energy": energy - self.values(dataset),  # [M]
            "energy_labelled": _labelled(dataset, "energy_weight"),  # [M]
            "atoms": atoms,
            "forces": forces[with_forces] - reference,
            "forces_reference": reference,
            "z": atom_values(dataset, "z")[with_forces],
            "stress": torch.zeros(0, 3, 3, dtype=torch.float64),
        }
        if stress is not None:
            stress_error = stress - structure_values(dataset, "stress").double()  # [M, 3, 3]
            with_stress = _labelled(dataset, "stress_weight") & _periodic(dataset)  # [M]
            errors["stress"] = stress_error[with_stress]
        return errors

    def eval_sums(self, model: nn.Module, dataset: Dataset) -> dict[str, float]:
        """Sums of the errors (:meth:`errors`) over the structures of a dataset view."""
        return self.error_sums(self.errors(model, dataset))

    @staticmethod
    def error_sums(errors: dict[str, Tensor]) -> dict[str, float]:
        """The sums of :attr:`~Task.eval_metric_specs` from :meth:`errors`."""
        labelled = errors["energy_labelled"]  # [M]
        energy, forces, stress = errors["energy"][labelled], errors["forces"], errors["stress"]
        return {
            "energy_error": float(energy.abs().sum()),
            "energy_error_per_atom": float((energy.abs() / errors["atoms"][labelled]).sum()),
            "energy_structures": float(len(energy)),
            "forces_error": float(forces.abs().sum()),
            "forces_squared_error": float(forces.pow(2).sum()),
            "forces_components": float(forces.numel()),
            "stress_error": float(stress.abs().sum()),
            "stress_components": float(stress.numel()),
        }


def _batch_periodic(batch) -> Tensor:
    """Which structures of a batch have a periodic axis, ``[G]`` bool."""
    if "pbc" not in batch:
        return torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.pos.device)
    return batch.pbc.any(dim=1)


def _batch_labels(batch, key: str) -> tuple[Tensor, Tensor | None]:
    """Which structures of a batch carry the label ``key`` ``[G]`` bool, and their
    ``{key}_weight`` ``[G]`` (:obj:`None` when the data has no such field: all labelled)."""
    weight = getattr(batch, f"{key}_weight", None)
    if weight is None:
        return torch.ones(batch.num_graphs, dtype=torch.bool, device=batch.pos.device), None
    return weight != 0, weight


def _labelled(dataset: Dataset, key: str) -> Tensor:
    """Which structures of a view carry the label of ``key`` (``"forces_weight"``: none
    when the data has no ``forces``, all when it has no weights, else a weight not 0),
    ``[M]``."""
    stored = collated(dataset)
    if key.removesuffix("_weight") not in stored:
        return torch.zeros(len(dataset), dtype=torch.bool)
    if key not in stored:
        return torch.ones(len(dataset), dtype=torch.bool)
    return structure_values(dataset, key) != 0


def _periodic(dataset: Dataset) -> Tensor:
    """Which structures of a view are periodic along some axis, ``[M]``."""
    if "pbc" not in collated(dataset):
        return torch.zeros(len(dataset), dtype=torch.bool)
    return structure_values(dataset, "pbc").any(dim=1)


def potential_outputs(model: nn.Module, batch, stress: bool = False) -> tuple:
    """``(energy [G, 1], forces [N, 3], stress [G, 3, 3] or None)`` of a potential for a
    batch; periodic structures (``pbc`` true somewhere) go in with their cells, and a batch
    that mixes molecules and crystals is called periodic (molecules have ``pbc`` false).
    With ``stress`` the stress rows of the structures without periodic axis are NaN (all
    of them in a batch of molecules, which the model is not asked for a stress)."""
    periodic = _batch_periodic(batch)  # [G]
    pos = batch.pos
    if torch.is_grad_enabled() and not pos.requires_grad:  # (a compiled model needs it)
        pos = pos.detach().requires_grad_()
    if not bool(periodic.any()):
        energy, forces = model(batch.z, pos, batch.batch)
        undefined = None
        if stress:
            undefined = energy.new_full((batch.num_graphs, 3, 3), math.nan)  # [G, 3, 3]
        return energy, forces, undefined
    cell = batch.cell.to(batch.pos.dtype)
    out = model(batch.z, pos, batch.batch, cell=cell, pbc=batch.pbc, stress=stress)
    return out if stress else (*out, None)


def predict(model: nn.Module, dataset: Dataset, batch_size: int = EVAL_BATCH_SIZE) -> Tensor:
    """Predictions of ``model`` for every molecule of ``dataset``, float64 ``[M]`` on the
    CPU (the batches go to the model's device and dtype); the energy of a potential."""
    model.eval()
    device, dtype = _model_dtype(model)
    out = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            batch = batch.to(device)
            prediction = model(batch.z, batch.pos.to(dtype), batch.batch)
            if isinstance(prediction, tuple):  # (energy, forces)
                prediction = prediction[0]
            out.append(prediction[:, 0].double().cpu())  # [G]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def predict_potential(
    model: nn.Module, dataset: Dataset, batch_size: int = EVAL_BATCH_SIZE, stress: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Energies ``[M]``, forces ``[N, 3]`` (float64, CPU) of a potential for every structure
    of ``dataset``, the number of atoms of each structure ``[M]``, and with ``stress`` the
    stresses ``[M, 3, 3]`` (NaN for the structures that are not periodic)."""
    model.eval()
    device, dtype = _model_dtype(model)
    energies, forces, atoms, stresses = [], [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = batch.to(device)
        batch.pos = batch.pos.to(dtype)
        energy, force, stress_out = potential_outputs(model, batch, stress)
        energies.append(energy[:, 0].detach().double().cpu())  # [G]
        forces.append(force.detach().double().cpu())  # [N, 3]
        atoms.append(torch.bincount(batch.batch, minlength=batch.num_graphs).double().cpu())
        if stress_out is not None:
            stresses.append(stress_out.detach().double().cpu())  # [G, 3, 3]
    if not energies:
        empty = torch.zeros(0, dtype=torch.float64)
        return empty, torch.zeros(0, 3, dtype=torch.float64), empty, None
    stress_all = torch.cat(stresses) if stresses else None
    return torch.cat(energies), torch.cat(forces), torch.cat(atoms), stress_all

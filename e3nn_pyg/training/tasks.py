r"""What a model learns: a property of each molecule (a QM9 target), or an interatomic
potential (energies and forces of each structure).

A task knows its reference values, its loss, and its metrics. The training loop
(:mod:`~e3nn_pyg.training.loop`) and the run (:mod:`~e3nn_pyg.training.run`) ask it and stay
the same for both.

**Property** (:class:`PropertyTask`), one value :math:`y_G` per molecule, errors divided by
the target's ``loss_scale`` :math:`s`:

.. math::
    \mathcal{L} = \frac{1}{|B|} \sum_{G \in B} \ell\Big(\frac{\hat y_G - y_G}{s}\Big)

**Potential** (:class:`PotentialTask`), energy :math:`E_G` and forces :math:`\mathbf{F}_i`,
both divided by the root mean square :math:`\sigma_F` of the training forces (the scale of
the model's atomic energies), the energy per atom:

.. math::
    \mathcal{L} = \frac{1}{|B|} \sum_{G \in B} w_G \Big[
        \lambda_E\, \ell\Big(\frac{\hat E_G - E_G}{N_G\, \sigma_F}\Big)
        + \frac{\lambda_F}{3 N_G} \sum_{i \in G,\, c} \ell\Big(
            \frac{\hat F_{ic} - F_{ic}}{\sigma_F}\Big) \Big]

with :math:`\ell(x) = |x|` (``loss="l1"``) or :math:`x^2` (``"mse"``), :math:`w_G` the
structure's ``weight`` (1 when the data has none), :math:`\lambda_E` and :math:`\lambda_F`
the ``energy_weight`` and ``forces_weight`` of the config. Every structure counts once,
whatever its size, so the loss of a batch shared out over processes is the weighted sum of
their losses (:mod:`~e3nn_pyg.training.distributed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader

from ..datasets import QM9Target

__all__ = [
    "EVAL_BATCH_SIZE",
    "PotentialTask",
    "PropertyTask",
    "atom_rows",
    "potential_outputs",
    "predict",
    "predict_potential",
]

EVAL_BATCH_SIZE = 256


def _indices(dataset: Dataset) -> Tensor:
    return torch.as_tensor(dataset.indices(), dtype=torch.long)


def _pointwise(error: Tensor, loss: str) -> Tensor:
    return error.abs() if loss == "l1" else error.pow(2)


def _model_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


@dataclass(frozen=True)
class PropertyTask:
    """Learn one QM9 target, a value per molecule (see the module docstring).

    Args:
        target (QM9Target): the column of ``data.y`` and its units.
        loss (str): ``"l1"`` or ``"mse"``.
    """

    target: QM9Target
    loss: str = "l1"

    forces = False
    #: the sums a training step returns (summed over an epoch and over processes)
    step_sums = ("loss", "abs_error", "molecules")
    count_sum = "molecules"  # the one that counts the structures

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def report_unit(self) -> str:
        return self.target.report_unit

    @property
    def score_name(self) -> str:
        return f"MAE of {self.target.name}"

    def values(self, dataset: Dataset) -> Tensor:
        """The target of every molecule of a dataset view, float64 ``[M]``."""
        return dataset._data.y[_indices(dataset), self.target.index].double()

    def step(self, model: nn.Module, batch, loss_scale: float) -> tuple[Tensor, Tensor]:
        """The loss of a batch and its step sums ``[3]`` (:attr:`step_sums`)."""
        target = batch.y[:, self.target.index].to(batch.pos.dtype)  # [G]
        prediction = model(batch.z, batch.pos, batch.batch)[:, 0]  # [G]
        loss = _pointwise((prediction - target) / loss_scale, self.loss).mean()
        error = (prediction.detach() - target).abs().sum()
        count = error.new_tensor(float(batch.num_graphs))
        return loss, torch.stack([loss.detach() * batch.num_graphs, error, count]).double()

    def train_metrics(self, sums: list[float]) -> dict[str, float]:
        loss, error, count = sums
        count = max(count, 1.0)
        return {"train_loss": loss / count, "train_mae": error / count * self.target.report_scale}

    def eval_sums(self, model: nn.Module, dataset: Dataset) -> list[float]:
        """Sums over a dataset view from which :meth:`eval_metrics` computes the metrics
        (additive, so that processes can add theirs)."""
        error = (predict(model, dataset) - self.values(dataset)).abs()
        return [float(error.sum()), float(len(error))]

    def eval_metrics(self, sums: list[float]) -> dict[str, float]:
        """The metrics (``"mae"``, in the report unit) from the summed :meth:`eval_sums`."""
        error, count = sums
        return {"mae": error / max(count, 1.0) * self.target.report_scale}

    def score(self, metrics: dict[str, float]) -> float:
        """The validation number that selects the best model (lower is better)."""
        return metrics["mae"]


@dataclass(frozen=True)
class PotentialTask:
    """Learn energies and forces (see the module docstring); the model returns
    ``(energy [G, 1], forces [N, 3])``. Energies in eV, forces in eV/Å; errors are reported
    in meV and meV/Å.

    Args:
        energy_weight (float): :math:`\\lambda_E`. (default: ``1.0``)
        forces_weight (float): :math:`\\lambda_F`. (default: ``1.0``)
        loss (str): ``"l1"`` or ``"mse"``. (default: ``"l1"``)
        stress_weight (float): :math:`\\lambda_\\sigma`, for structures with a stress.
            (default: ``0.0``)
    """

    energy_weight: float = 1.0
    forces_weight: float = 1.0
    loss: str = "l1"
    stress_weight: float = 0.0

    forces = True
    name = "energy and forces"
    report_unit = "meV/Å"
    report_scale = 1000.0  # eV -> meV
    step_sums = ("loss", "energy_abs_error_per_atom", "structures", "forces_abs_error",
                 "forces_components", "stress_abs_error", "stress_components")  # fmt: skip
    count_sum = "structures"

    @property
    def score_name(self) -> str:
        return "forces MAE" if self.forces_weight > 0 else "energy MAE per atom"

    def values(self, dataset: Dataset) -> Tensor:
        """The energy of every structure of a dataset view, float64 ``[M]``."""
        return dataset._data.energy[_indices(dataset)].double()

    def _trains_stress(self, batch) -> bool:
        return self.stress_weight > 0 and "stress" in batch and _all_periodic(batch)

    def step(self, model: nn.Module, batch, loss_scale: float) -> tuple[Tensor, Tensor]:
        stress_on = self._trains_stress(batch)
        energy, forces, stress = potential_outputs(model, batch, stress_on)
        num_graphs = batch.num_graphs
        atoms = torch.bincount(batch.batch, minlength=num_graphs).to(energy.dtype)  # [G]
        # the difference of two total energies in float64: float32 would round it to 0.2 meV
        energy_error = (energy[:, 0].double() - batch.energy.double()).to(energy.dtype)
        energy_error = energy_error / atoms  # [G] eV/atom
        forces_error = forces - batch.forces.to(forces.dtype)  # [N, 3]
        per_structure = torch.zeros_like(atoms).index_add_(
            0, batch.batch, _pointwise(forces_error / loss_scale, self.loss).sum(1)
        ) / (3 * atoms)  # [G]
        forces_weight = getattr(batch, "forces_weight", None)  # 0 where a file has none
        if forces_weight is not None:
            per_structure = per_structure * forces_weight.to(per_structure.dtype)
        loss = self.energy_weight * _pointwise(energy_error / loss_scale, self.loss)
        loss = loss + self.forces_weight * per_structure  # [G]
        stress_error = torch.zeros(0, 3, 3, dtype=loss.dtype, device=loss.device)
        if stress_on:
            # the virial per atom, an energy per atom like the energy term
            volume = torch.linalg.det(batch.cell.to(stress.dtype)).abs()  # [G]
            stress_error = stress - batch.stress.to(stress.dtype)  # [G, 3, 3]
            virial = stress_error * (volume / atoms)[:, None, None] / loss_scale
            term = _pointwise(virial, self.loss).mean((1, 2))  # [G]
            stress_weight = getattr(batch, "stress_weight", None)
            if stress_weight is not None:
                term = term * stress_weight.to(term.dtype)
            loss = loss + self.stress_weight * term
        weight = getattr(batch, "weight", None)  # the structure's weight in the loss
        if weight is not None:
            loss = loss * weight.to(loss.dtype)
        loss = loss.mean()
        sums = torch.stack([
            loss.detach() * num_graphs,
            energy_error.detach().abs().sum(),
            loss.new_tensor(float(num_graphs)),
            forces_error.detach().abs().sum(),
            loss.new_tensor(float(forces_error.numel())),
            stress_error.detach().abs().sum(),
            loss.new_tensor(float(stress_error.numel())),
        ])  # fmt: skip
        return loss, sums.double()

    def train_metrics(self, sums: list[float]) -> dict[str, float]:
        loss, energy, structures, forces, components, stress, stress_components = sums
        metrics = {
            "train_loss": loss / max(structures, 1.0),
            "train_energy_mae_per_atom": energy / max(structures, 1.0) * self.report_scale,
            "train_forces_mae": forces / max(components, 1.0) * self.report_scale,
        }
        if stress_components:
            metrics["train_stress_mae"] = stress / stress_components * self.report_scale
        return metrics

    def errors(self, model: nn.Module, dataset: Dataset) -> dict[str, Tensor]:
        """The errors of a potential on a dataset view (float64, CPU): ``energy`` ``[M]``
        and ``atoms`` ``[M]`` of every structure; ``forces`` ``[N, 3]``, the reference
        ``forces_reference`` ``[N, 3]`` and ``z`` ``[N]`` of the atoms of the structures that
        have forces (``forces_weight`` not 0); ``stress`` ``[M', 3, 3]`` of those that have a
        stress (empty unless ``stress_weight > 0``)."""
        stress_on = self.stress_weight > 0 and "stress" in dataset._data
        energy, forces, atoms, stress = predict_potential(model, dataset, stress=stress_on)
        with_forces = _labelled(dataset, "forces_weight", atoms).repeat_interleave(
            atoms.long()
        )  # [N] bool
        reference = atom_rows(dataset, "forces").double()[with_forces]  # [N, 3]
        errors = {
            "energy": energy - self.values(dataset),  # [M]
            "atoms": atoms,
            "forces": forces[with_forces] - reference,
            "forces_reference": reference,
            "z": atom_rows(dataset, "z")[with_forces],
            "stress": torch.zeros(0, 3, 3, dtype=torch.float64),
        }
        if stress is not None:
            stress_error = stress - dataset._data.stress[_indices(dataset)].double()  # [M, 3, 3]
            errors["stress"] = stress_error[_labelled(dataset, "stress_weight", atoms)]
        return errors

    def eval_sums(self, model: nn.Module, dataset: Dataset) -> list[float]:
        """Sums of the errors (:meth:`errors`) over the structures of a dataset view."""
        return self.error_sums(self.errors(model, dataset))

    @staticmethod
    def error_sums(errors: dict[str, Tensor]) -> list[float]:
        energy, forces, stress = errors["energy"], errors["forces"], errors["stress"]
        return [
            float(energy.abs().sum()),
            float((energy.abs() / errors["atoms"]).sum()),
            float(len(energy)),
            float(forces.abs().sum()),
            float(forces.pow(2).sum()),
            float(forces.numel()),
            float(stress.abs().sum()),
            float(stress.numel()),
        ]

    def eval_metrics(self, sums: list[float]) -> dict[str, float]:
        energy, energy_per_atom, structures, forces, forces_squared, components = sums[:6]
        stress, stress_components = sums[6:]
        structures, components = max(structures, 1.0), max(components, 1.0)
        metrics = {
            "energy_mae": energy / structures * self.report_scale,
            "energy_mae_per_atom": energy_per_atom / structures * self.report_scale,
            "forces_mae": forces / components * self.report_scale,
            "forces_rmse": math.sqrt(forces_squared / components) * self.report_scale,
        }
        if stress_components:  # meV/Å³
            metrics["stress_mae"] = stress / stress_components * self.report_scale
        return metrics

    def score(self, metrics: dict[str, float]) -> float:
        key = "forces_mae" if self.forces_weight > 0 else "energy_mae_per_atom"
        return metrics[key]


def _all_periodic(batch) -> bool:
    return bool(batch.pbc.any(dim=1).all()) if "pbc" in batch else False


def _labelled(dataset: Dataset, key: str, atoms: Tensor) -> Tensor:
    """Which structures of a view carry the label of ``key`` (a weight not 0), ``[M]``."""
    if key not in dataset._data:
        return torch.ones(len(atoms), dtype=torch.bool)
    return dataset._data[key][_indices(dataset)] != 0


def potential_outputs(model: nn.Module, batch, stress: bool = False) -> tuple:
    """``(energy [G, 1], forces [N, 3], stress [G, 3, 3] or None)`` of a potential for a
    batch; periodic structures (``pbc`` true somewhere) go in with their cells. A batch that
    mixes molecules and crystals is called periodic (molecules have ``pbc`` false), without
    stress unless every structure is periodic."""
    if "pbc" not in batch or not bool(batch.pbc.any()):
        energy, forces = model(batch.z, batch.pos, batch.batch)
        return energy, forces, None
    cell = batch.cell.to(batch.pos.dtype)
    stress = stress and _all_periodic(batch)
    out = model(batch.z, batch.pos, batch.batch, cell=cell, pbc=batch.pbc, stress=stress)
    return out if stress else (*out, None)


def atom_rows(dataset: Dataset, key: str) -> Tensor:
    """The per-atom tensor ``key`` (e.g. ``"forces"``) of the structures of a dataset view,
    in their order, ``[N, ...]``."""
    slices = dataset.slices[key]
    index = _indices(dataset).tolist()
    rows = [torch.arange(int(slices[i]), int(slices[i + 1])) for i in index]
    return dataset._data[key][torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)]


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
    stresses ``[M, 3, 3]`` (every structure must be periodic)."""
    model.eval()
    device, dtype = _model_dtype(model)
    energies, forces, atoms, stresses = [], [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = batch.to(device)
        batch.pos = batch.pos.to(dtype)
        if stress and not _all_periodic(batch):
            raise ValueError("stresses need periodic structures; this dataset has molecules")
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

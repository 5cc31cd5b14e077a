r"""Forces of any energy model: the negative gradient of its energy with respect to the
positions.

.. math::
    \mathbf{F}_i = -\frac{\partial}{\partial \mathbf{p}_i} \sum_G E_G

Molecules are independent, so one backward pass of the summed energy gives the forces of
every atom of the batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..elements import MAX_Z
from .species import check_model_atomic_numbers, register_species

__all__ = ["EnergyForces", "energy_gradients"]


def energy_gradients(energy: Tensor, inputs: list[Tensor], create_graph: bool) -> list[Tensor]:
    r"""The gradients :math:`\partial \sum_G E_G / \partial x` of the summed energy for each
    tensor of ``inputs`` (structures are independent: one backward pass serves them all), and
    zeros for an input the energy does not depend on (e.g. atoms without neighbours).

    Args:
        energy (torch.Tensor): the energies ``[num_graphs, 1]``.
        inputs (list of torch.Tensor): tensors that require grad, e.g. ``[pos]``.
        create_graph (bool): keep the graph of the gradients (for a loss on the forces).
    """
    gradients = [None] * len(inputs)
    if energy.requires_grad:
        gradients = torch.autograd.grad(
            energy.sum(), inputs, create_graph=create_graph, allow_unused=True
        )
    return [g if g is not None else torch.zeros_like(x) for g, x in zip(gradients, inputs)]


class _SettingsOptionalOnLoad(nn.Module):
    """A module whose ``_extra_state`` (the settings it compares on loading, see
    :meth:`~torch.nn.Module.set_extra_state`) may be missing from a ``state_dict``: one saved
    before the settings were recorded loads without that comparison."""

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )
        key = prefix + "_extra_state"
        if key in missing_keys:  # saved before the settings were recorded: nothing to compare
            missing_keys.remove(key)


class EnergyForces(_SettingsOptionalOnLoad):
    r"""Wraps a model ``energy_model(z, pos, batch) -> [num_graphs, 1]`` (e.g. PyG's
    :class:`~torch_geometric.nn.models.SchNet`) so that it returns the energy and the
    forces :math:`-\partial E / \partial \mathbf{p}`, as
    :class:`~e3nn_pyg.models.EquivariantNet` does with ``derivative=True``.

    Forces are computed also under :func:`torch.no_grad`; in training mode they keep their
    graph, so that a loss on the forces trains the energy model.

    Atomic numbers must lie in ``[0, max_z)``, with ``max_z`` that of the energy model, or
    :data:`~e3nn_pyg.elements.MAX_Z` (the size of SchNet's embedding) for a model without
    one. Given ``species`` (saved in the ``state_dict``), other elements are refused as by
    :class:`~e3nn_pyg.models.EquivariantNet`, unless the plain attribute
    ``allow_unseen_elements`` is set to ``True``.

    Args:
        energy_model (torch.nn.Module): the energy model.
        species (list of int, optional): the atomic numbers the model was trained on.
            (default: :obj:`None`: any element below ``max_z``)

    Shapes:
        - **input:** atomic numbers :math:`(|\mathcal{V}|)`, positions
          :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)` (optional)
        - **output:** energy :math:`(|\mathcal{G}|, 1)`, forces :math:`(|\mathcal{V}|, 3)`

    Example:
        >>> from torch_geometric.nn.models import SchNet
        >>> from e3nn_pyg.models import SchNetInteractionGraph
        >>> schnet = SchNet(hidden_channels=16, num_filters=16, num_gaussians=8,
        ...                 interaction_graph=SchNetInteractionGraph(10.0))
        >>> model = EnergyForces(schnet)
        >>> energy, forces = model(torch.tensor([8, 1, 1]), torch.randn(3, 3))
        >>> energy.shape, forces.shape
        (torch.Size([1, 1]), torch.Size([3, 3]))
    """

    def __init__(self, energy_model: nn.Module, species: list[int] | None = None) -> None:
        super().__init__()
        if not isinstance(energy_model, nn.Module):
            raise TypeError(f"energy_model must be a torch.nn.Module, got {type(energy_model)}")
        self.energy_model = energy_model
        self.max_z = getattr(energy_model, "max_z", MAX_Z)
        register_species(self, species, self.max_z)

    def reset_parameters(self) -> None:
        self.energy_model.reset_parameters()

    def get_extra_state(self) -> dict[str, Any]:
        """The ``species``, saved in the ``state_dict`` (key ``_extra_state``)."""
        return {"species": self.species}

    def set_extra_state(self, state: Any) -> None:
        """Refuse a ``state_dict`` saved with other ``species``."""
        saved = state.get("species") if isinstance(state, dict) else state
        if saved != self.species:
            raise ValueError(
                f"the state_dict was saved from an EnergyForces with species={saved!r} (this "
                f"model: {self.species!r}): build it with the saved species"
            )

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_model_atomic_numbers(self, z)
        grad_enabled = torch.is_grad_enabled()
        with torch.enable_grad():
            if not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            energy = self.energy_model(z, pos, batch)  # [G, 1]
            if energy.dim() != 2 or energy.shape[1] != 1:
                raise ValueError(
                    f"the energy model must return [num_graphs, 1], got {list(energy.shape)}"
                )
            (gradient,) = energy_gradients(energy, [pos], self.training and grad_enabled)
        if not (self.training and grad_enabled):
            energy, gradient = energy.detach(), gradient.detach()
        return energy, -gradient

    def __getattr__(self, name: str) -> Any:
        # attributes such as cutoff or max_z read through to the wrapped model
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("energy_model"), name)

    def __repr__(self) -> str:
        species = "" if self.species is None else f", species={self.species}"
        return f"{type(self).__name__}({self.energy_model!r}{species})"

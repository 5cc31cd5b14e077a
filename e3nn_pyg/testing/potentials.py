r"""Interatomic potentials as the checks see them, and their energy, forces and stress.

An interatomic potential is any callable ``potential(z, pos, batch)`` (and, for periodic
structures, ``potential(z, pos, batch, cell=cell, pbc=pbc)``) that returns the energy of
every structure ``[G]`` or ``[G, 1]``, or ``(energy, forces [N, 3])``, or
``(energy, forces, stress [G, 3, 3])``; PyG zoo models such as
:class:`~torch_geometric.nn.models.SchNet` and :class:`~e3nn_pyg.models.EquivariantNet` are
potentials as they are (:func:`model_potential`). What a potential does not return,
:func:`evaluate_potential` derives from the energy by autograd:

.. math::
    \mathbf{F}_i = -\frac{\partial E}{\partial \mathbf{p}_i}, \qquad
    \sigma_G = \frac{1}{V_G} \frac{\partial E_G}{\partial \varepsilon_G}\Big|_{\varepsilon
    = 0},

where the symmetric strain :math:`\varepsilon_G` deforms positions and lattice vectors
as :math:`x \mapsto (1 + \varepsilon_G)\, x` and :math:`V_G = |\det \text{cell}_G|`
(ASE's sign: a crystal whose energy grows when it is stretched has positive stress;
the pressure is :math:`-\operatorname{tr} \sigma / 3`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..checks import require_atomic_numbers
from ..graph import validate_batch, validate_pos

__all__ = ["Potential", "Structures", "evaluate_potential", "model_potential"]

#: ``potential(z, pos, batch[, cell=, pbc=])`` returning ``energy``, ``(energy, forces)`` or
#: ``(energy, forces, stress)``; see :func:`evaluate_potential`.
Potential = Callable[..., Tensor | tuple[Tensor, ...]]


class Structures(NamedTuple):
    r"""Atomic structures batched as PyG batches graphs; unpack it into a check, e.g.
    ``symmetry_error(potential, *structures)``.

    Attributes:
        z (torch.Tensor): atomic numbers ``[N]``, long.
        pos (torch.Tensor): positions ``[N, 3]``.
        batch (torch.Tensor): structure of every atom ``[N]``, sorted.
        cell (torch.Tensor, optional): lattice vectors as rows ``[G, 3, 3]``.
        pbc (torch.Tensor, optional): periodic axes ``[G, 3]``, bool.
    """

    z: Tensor
    pos: Tensor
    batch: Tensor
    cell: Tensor | None = None
    pbc: Tensor | None = None


def _structures(
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    periodic: bool = False,
) -> tuple[Structures, int]:
    """Validate a batch of structures; fill in ``batch``; return it with its size ``G``.
    ``periodic`` refuses molecules (a check that needs cells)."""
    require_atomic_numbers(z)
    validate_pos(pos)
    if pos.shape[0] != z.shape[0]:
        raise ValueError(f"z has {z.shape[0]} atoms but pos has {pos.shape[0]} rows")
    if z.numel() == 0:
        raise ValueError("the structures hold no atoms")
    if batch is None:
        batch = torch.zeros_like(z)
    validate_batch(batch, z.shape[0], pos.device)
    num_graphs = int(batch[-1]) + 1
    empty = torch.bincount(batch, minlength=num_graphs) == 0  # [G]
    if empty.any():
        raise ValueError(f"batch skips structure {int(empty.nonzero()[0])}: it has no atoms")
    if (cell is None) != (pbc is None):
        raise ValueError("give cell and pbc together (both None for molecules)")
    if cell is None:
        if periodic:
            raise ValueError("this check needs periodic structures: give cell and pbc")
        return Structures(z, pos, batch), num_graphs
    _check_cells(cell, pbc, pos.dtype, num_graphs)
    if periodic and not pbc.any():
        raise ValueError("this check needs periodic structures: pbc has no periodic axis")
    return Structures(z, pos, batch, cell, pbc), num_graphs


def _check_cells(cell: object, pbc: object, dtype: torch.dtype, num_graphs: int) -> None:
    """One finite cell ``[G, 3, 3]`` in the dtype of the positions and one bool row of
    periodic axes ``[G, 3]`` per structure."""
    if not isinstance(cell, Tensor) or cell.shape != (num_graphs, 3, 3):
        what = list(cell.shape) if isinstance(cell, Tensor) else type(cell).__name__
        raise ValueError(
            f"cell must be a tensor [num_graphs, 3, 3] = [{num_graphs}, 3, 3], got {what}"
        )
    if cell.dtype != dtype:
        raise ValueError(f"cell must have the dtype of pos ({dtype}), got {cell.dtype}")
    if not torch.isfinite(cell).all():
        raise ValueError("cell holds NaN or infinite entries")
    if not isinstance(pbc, Tensor) or pbc.dtype != torch.bool or pbc.shape != (num_graphs, 3):
        what = f"{pbc.dtype} {list(pbc.shape)}" if isinstance(pbc, Tensor) else type(pbc).__name__
        raise ValueError(
            f"pbc must be a bool tensor [num_graphs, 3] = [{num_graphs}, 3], got {what}"
        )


def _split(s: Structures, graph: int) -> Structures:
    """Structure ``graph`` of a batch, alone."""
    mask = s.batch == graph  # [N]
    one = Structures(s.z[mask], s.pos[mask], torch.zeros_like(s.z[mask]))
    if s.cell is None:
        return one
    return one._replace(cell=s.cell[graph : graph + 1], pbc=s.pbc[graph : graph + 1])


def _batched(parts: Sequence[Structures]) -> Structures:
    """One batch of single structures (the inverse of :func:`_split`)."""
    sizes = torch.tensor([len(part.z) for part in parts], device=parts[0].pos.device)
    batch = torch.repeat_interleave(torch.arange(len(parts), device=sizes.device), sizes)

    def cat(field: str) -> Tensor | None:
        values = [getattr(part, field) for part in parts]
        return None if values[0] is None else torch.cat(values)

    return Structures(cat("z"), cat("pos"), batch, cat("cell"), cat("pbc"))


def _call(potential: Potential, s: Structures):
    with torch.enable_grad():  # potentials may take their forces by autograd
        if s.cell is None:
            return potential(s.z, s.pos, s.batch)
        return potential(s.z, s.pos, s.batch, cell=s.cell, pbc=s.pbc)


def _parse(out, num_graphs: int, num_atoms: int) -> list[Tensor | None]:
    """``[energy [G], forces [N, 3] or None, stress [G, 3, 3] or None]`` of an output."""
    parts = list(out) if isinstance(out, (tuple, list)) else [out]
    if not 1 <= len(parts) <= 3 or not all(isinstance(p, Tensor) for p in parts):
        raise TypeError(
            "a potential returns energy, (energy, forces) or (energy, forces, stress) "
            f"tensors, got {type(out).__name__} of {[type(p).__name__ for p in parts]}"
        )
    shapes = [(num_graphs,), (num_atoms, 3), (num_graphs, 3, 3)]
    names = ["energy", "forces", "stress"]
    energy = parts[0]
    if energy.shape == (num_graphs, 1):
        parts[0] = energy = energy[:, 0]
    for name, part, shape in zip(names, parts, shapes):
        if part.shape != shape:
            raise ValueError(
                f"the potential's {name} has shape {list(part.shape)}, expected {list(shape)}"
                + (" or [G, 1]" if name == "energy" else "")
            )
    return parts + [None] * (3 - len(parts))


def _energy(potential: Potential, s: Structures, num_graphs: int) -> Tensor:
    return _parse(_call(potential, s), num_graphs, s.z.shape[0])[0].detach()  # [G]


def _strain(s: Structures, strain: Tensor) -> Structures:
    r"""Deform every structure by :math:`x \mapsto (1 + \varepsilon) x`, ``strain`` ``[3, 3]``
    or one per structure ``[G, 3, 3]`` (positions and cell rows are row vectors)."""
    strain = strain.expand(s.cell.shape)  # [G, 3, 3]
    pos = s.pos + torch.einsum("ni,nji->nj", s.pos, strain[s.batch])  # [N, 3]
    return s._replace(pos=pos, cell=s.cell + s.cell @ strain.transpose(1, 2))


def _volume(cell: Tensor) -> Tensor:
    volume = torch.linalg.det(cell).abs()  # [G]
    if not (volume > 0).all():
        raise ValueError("the stress needs cells of nonzero volume (three independent rows)")
    return volume


def evaluate_potential(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    stress: bool = False,
) -> dict[str, Tensor]:
    r"""Energy, forces (and stress) of a potential, whatever subset of them it returns; the
    rest are derivatives of the energy by autograd (see the module's description).

    Args:
        potential (callable): the potential.
        z (torch.Tensor): atomic numbers ``[N]``, long.
        pos (torch.Tensor): positions ``[N, 3]``.
        batch (torch.Tensor, optional): structure of every atom ``[N]``, sorted.
            (default: :obj:`None`, one structure)
        cell (torch.Tensor, optional): lattice vectors as rows ``[G, 3, 3]``, with ``pbc``.
            (default: :obj:`None`, molecules)
        pbc (torch.Tensor, optional): periodic axes ``[G, 3]``, bool. (default: :obj:`None`)
        stress (bool, optional): also return the stress (needs ``cell``); a potential that
            returns its forces must then return its stress too (its own autograd pass may
            have freed the graph the strain derivative needs). (default: :obj:`False`)

    Returns:
        ``{"energy": [G], "forces": [N, 3]}`` and ``"stress": [G, 3, 3]`` when asked for or
        returned, detached.
    """
    s, num_graphs = _structures(z, pos, batch, cell, pbc, periodic=stress)
    volume = _volume(s.cell) if stress else None  # [G]
    leaf = s.pos.detach().requires_grad_(True)
    inputs, strain = s._replace(pos=leaf), None
    with torch.enable_grad():
        if stress:  # zero strain: the same structures, differentiable with respect to it
            strain = torch.zeros_like(s.cell, requires_grad=True)  # [G, 3, 3]
            inputs = _strain(inputs, 0.5 * (strain + strain.transpose(1, 2)))
        energy, forces, stress_out = _parse(_call(potential, inputs), num_graphs, len(s.z))
        if stress and stress_out is None and forces is not None:
            raise ValueError(
                "the potential returns (energy, forces) but no stress: return (energy, forces, "
                "stress) (e.g. model_potential(model, stress=True)), or the energy alone so "
                "that the stress is its strain derivative"
            )
        wrt = {"forces": leaf} if forces is None else {}
        if stress and stress_out is None:
            wrt["stress"] = strain
        grads = _gradients(energy, wrt)
    out = {"energy": energy.detach(), "forces": -grads["forces"] if forces is None else forces}
    if "stress" in grads:
        out["stress"] = grads["stress"] / volume[:, None, None]  # [G, 3, 3]
    elif stress_out is not None:
        out["stress"] = stress_out
    return {key: value.detach() for key, value in out.items()}


def _gradients(energy: Tensor, wrt: dict[str, Tensor]) -> dict[str, Tensor]:
    """The gradient of the total energy with respect to each tensor of ``wrt`` (zeros where
    the energy does not depend on it)."""
    grads: Sequence[Tensor | None] = [None] * len(wrt)
    if wrt and energy.requires_grad:
        grads = torch.autograd.grad(energy.sum(), list(wrt.values()), allow_unused=True)
    return {
        name: torch.zeros_like(tensor) if grad is None else grad
        for (name, tensor), grad in zip(wrt.items(), grads)
    }


def model_potential(model: torch.nn.Module, stress: bool = False) -> Potential:
    r"""A zoo model ``model(z, pos, batch)`` (returning ``[G, 1]`` or ``(energy, forces)``,
    e.g. :class:`~torch_geometric.nn.models.SchNet`,
    ``EquivariantNet(derivative=True)``) as a :data:`Potential`.

    Molecules are passed as they are; periodic structures as ``model(z, pos, batch,
    cell=cell, pbc=pbc)``, and with ``stress=True`` as ``model(..., stress=True)``, which
    must return ``(energy, forces, stress)``. A model whose ``forward`` lacks these
    arguments is refused with an error naming it, not deep inside its ``forward``.

    Args:
        model (torch.nn.Module): the model, in the dtype of the positions it will get.
        stress (bool, optional): ask the model for its own stress on periodic structures.
            (default: :obj:`False`: the stress, where asked for, is the strain derivative of
            the energy, see :func:`evaluate_potential`)
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    parameters = inspect.signature(model.forward).parameters
    periodic = {"cell", "pbc"} <= set(parameters)
    name = type(model).__name__
    if stress and not (periodic and "stress" in parameters):
        raise TypeError(f"{name}.forward takes no cell, pbc and stress: it returns no stress")

    def potential(z, pos, batch, cell=None, pbc=None):
        if cell is None:
            return model(z, pos, batch)
        if not periodic:
            raise ValueError(f"{name}.forward takes no cell and pbc: it is not periodic")
        if stress:
            return model(z, pos, batch, cell=cell, pbc=pbc, stress=True)
        return model(z, pos, batch, cell=cell, pbc=pbc)

    return potential

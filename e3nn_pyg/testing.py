r"""The symmetry checker every layer of e3nn_pyg is tested with, and the contract of
interatomic potentials every zoo model is tested with.

A function :math:`f` is E(3)-equivariant when, for every element :math:`g` (rotation,
inversion, translation),

.. math::
    f(\rho_\text{in}(g)\, x) = \rho_\text{out}(g)\, f(x),

where positions transform as :math:`p \mapsto R p + t` and features of type ``Rs`` as
:math:`x \mapsto D^\text{Rs}(R)\, x` (translations leave features alone).

Example:
    >>> import torch
    >>> from e3nn_pyg.o3 import spherical_harmonics
    >>> vectors = torch.randn(10, 3, dtype=torch.float64)
    >>> errors = equivariance_error(
    ...     lambda v: spherical_harmonics([0, 1, 2], v), [vectors], ["1x1o"], ["0e+1o+2e"])
    >>> sorted(errors), max(errors.values()) < 1e-12
    (['parity', 'rotation', 'translation'], True)

An interatomic potential is any callable ``potential(z, pos, batch)`` (and, for periodic
structures, ``potential(z, pos, batch, cell=cell, pbc=pbc)``) that returns the energy of
every structure, optionally with the forces (see :func:`evaluate_potential`); PyG zoo
models such as :class:`~torch_geometric.nn.models.SchNet` and
:class:`~e3nn_pyg.models.EquivariantNet` are potentials as they are. The checks below
measure what every potential must satisfy (as NequIP's model test mixins do): symmetries,
forces and stress equal to finite differences of the energy, batches equal to their
structures one by one, continuity across the cutoff, additivity of far-apart fragments,
and for periodic cells the invariance under wrapping and the extensivity of supercells.
Each returns the measured errors (float64 arithmetic, max absolute values);
:func:`assert_below` turns them into an assertion, and :class:`PotentialContract` is the
test suite that runs them all on a model.

Example:
    >>> def pair(z, pos, batch):  # a Gaussian pair repulsion of every pair within a molecule
    ...     same = batch[:, None] == batch[None, :]
    ...     d2 = (pos[:, None] - pos[None, :]).pow(2).sum(-1)  # [N, N]
    ...     energy = torch.where(same, torch.exp(-d2), 0.0).sum(1) - 1.0  # [N] (minus self)
    ...     return torch.zeros(int(batch[-1]) + 1, dtype=pos.dtype).index_add(0, batch, energy)
    >>> z, pos = torch.tensor([1, 8, 1]), torch.randn(3, 3, dtype=torch.float64)
    >>> errors = symmetry_error(pair, z, pos)
    >>> sorted(errors)[:2], assert_below(errors, 1e-12) is errors
    (['energy/inversion', 'energy/permutation'], True)
    >>> assert_below(forces_fd_error(pair, z, pos), 1e-8)["forces"] < 1e-8
    True
"""

from __future__ import annotations

import inspect
import itertools
import math
import unittest
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .checks import is_int, is_real
from .graph import validate_batch, validate_pos
from .o3 import Rs, RsLike, rand_rotation, rs_representation

__all__ = [
    "POS",
    "Potential",
    "PotentialContract",
    "Structures",
    "assert_below",
    "assert_equivariant",
    "batch_error",
    "cutoff_jump",
    "equivariance_error",
    "evaluate_potential",
    "forces_fd_error",
    "isolated_atom_error",
    "model_potential",
    "separation_error",
    "stress_fd_error",
    "supercell_error",
    "symmetry_error",
    "wrapping_error",
]

#: Marks an argument or output as positions: rotated, inverted and translated.
POS = "pos"

Spec = RsLike | None


def _normalize_specs(specs: Sequence[Spec] | Spec, count: int, what: str) -> list:
    if count == 1 and (specs is None or specs == POS or isinstance(specs, (str, Rs))):
        specs = [specs]
    specs = list(specs)  # type: ignore[arg-type]
    if len(specs) != count:
        raise ValueError(f"{what}: {len(specs)} specs given for {count} tensors")
    return [spec if spec is None or spec == POS else Rs(spec) for spec in specs]


def _has_parity(specs: list) -> bool:
    return all(
        block.p != 0 for spec in specs if isinstance(spec, Rs) for block in spec if block.mul > 0
    )


def _transform(value, spec, matrix: Tensor, shift: Tensor):
    """Apply ``(matrix, shift)`` in float64 to one argument or output."""
    if spec is None:
        return value
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise TypeError(f"a tensor typed {spec!r} must be a floating tensor, got {type(value)}")
    wide = value.to(torch.float64)
    if spec == POS:
        if wide.shape[-1] != 3:
            raise ValueError(f"positions must have last dimension 3, got {tuple(value.shape)}")
        out = wide @ matrix.T + shift
    else:
        if wide.shape[-1] != spec.dim:
            raise ValueError(
                f"tensor of shape {tuple(value.shape)} does not match Rs {spec} (dim {spec.dim})"
            )
        out = wide @ rs_representation(spec, matrix).T
    return out.to(value.dtype)


def _as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def equivariance_error(
    func: Callable,
    args: Sequence,
    rs_in: Sequence[Spec] | Spec,
    rs_out: Sequence[Spec] | Spec,
    seed: int = 0,
) -> dict[str, float]:
    r"""Largest deviation from equivariance of ``func`` under a rotation, the inversion
    and a translation.

    Args:
        func (callable): called as ``func(*args)``; returns a tensor or a tuple of them.
        args (sequence): example inputs.
        rs_in (sequence): one spec per argument: an ``Rs`` (features on the last axis),
            :data:`POS` (``"pos"``: positions ``[..., 3]``), or ``None`` (left untouched,
            e.g. ``batch`` or ``edge_index``).
        rs_out (sequence): one spec per output, as for ``rs_in`` (one spec alone for one
            output). ``None`` outputs must be exactly invariant (compared unchanged).
        seed (int, optional): seed of the random rotation and translation. (default: ``0``)

    Returns:
        ``{"rotation": err, "translation": err, "parity": err}``: max absolute errors, the
        transformations applied in float64. ``"parity"`` is left out when some ``Rs`` has
        irreps without parity (``p = 0``), for which the inversion is not defined.
    """
    args = list(args)
    specs_in = _normalize_specs(rs_in, len(args), "rs_in")
    reference = _as_tuple(func(*args))
    specs_out = _normalize_specs(rs_out, len(reference), "rs_out")

    generator = torch.Generator().manual_seed(seed)
    identity = torch.eye(3, dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    elements = {
        "rotation": (rand_rotation(dtype=torch.float64, generator=generator), zero),
        "translation": (identity, torch.randn(3, dtype=torch.float64, generator=generator)),
    }
    if _has_parity(specs_in + specs_out):
        elements["parity"] = (-identity, zero)

    errors = {}
    for name, (matrix, shift) in elements.items():
        moved_args = [_transform(a, s, matrix, shift) for a, s in zip(args, specs_in)]
        moved_outputs = _as_tuple(func(*moved_args))
        error = 0.0
        for out, moved, spec in zip(reference, moved_outputs, specs_out):
            expected = _transform(out, spec, matrix, shift)
            if expected.numel():
                error = max(error, (moved.double() - expected.double()).abs().max().item())
        errors[name] = error
    return errors


def assert_equivariant(
    func: Callable,
    args: Sequence,
    rs_in: Sequence[Spec] | Spec,
    rs_out: Sequence[Spec] | Spec,
    atol: float | None = None,
    seed: int = 0,
) -> dict[str, float]:
    r"""Assert :func:`equivariance_error` is within tolerance; return the errors.

    The default tolerance follows docs/conventions.md: ``1e-9`` for float64 outputs and
    ``1e-4`` times the output scale (``max(1, max|out|)``) for lower precision.

    Raises:
        AssertionError: naming the transformation and the error.
    """
    errors = equivariance_error(func, args, rs_in, rs_out, seed=seed)
    if atol is None:
        outputs = [o for o in _as_tuple(func(*args)) if isinstance(o, Tensor)]
        if all(o.dtype == torch.float64 for o in outputs if o.is_floating_point()):
            atol = 1e-9
        else:
            scale = max([1.0] + [o.abs().max().item() for o in outputs if o.numel()])
            atol = 1e-4 * scale
    for name, error in errors.items():
        if not error <= atol:
            raise AssertionError(f"not equivariant under {name}: error {error:.3e} > {atol:.1e}")
    return errors


# -- interatomic potentials ------------------------------------------------------------------
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
    """Validate a batch of structures; fill in ``batch``; return it with its size ``G``."""
    if not isinstance(z, Tensor) or z.dtype != torch.long or z.dim() != 1:
        what = f"{z.dtype} tensor of shape {list(z.shape)}" if isinstance(z, Tensor) else z
        raise TypeError(f"z must be a 1-D torch.long tensor of atomic numbers, got {what}")
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
    if not isinstance(cell, Tensor) or cell.shape != (num_graphs, 3, 3):
        what = list(cell.shape) if isinstance(cell, Tensor) else type(cell).__name__
        raise ValueError(
            f"cell must be a tensor [num_graphs, 3, 3] = [{num_graphs}, 3, 3], got {what}"
        )
    if cell.dtype != pos.dtype:
        raise ValueError(f"cell must have the dtype of pos ({pos.dtype}), got {cell.dtype}")
    if not torch.isfinite(cell).all():
        raise ValueError("cell holds NaN or infinite entries")
    if not isinstance(pbc, Tensor) or pbc.dtype != torch.bool or pbc.shape != (num_graphs, 3):
        what = f"{pbc.dtype} {list(pbc.shape)}" if isinstance(pbc, Tensor) else type(pbc).__name__
        raise ValueError(
            f"pbc must be a bool tensor [num_graphs, 3] = [{num_graphs}, 3], got {what}"
        )
    if periodic and not pbc.any():
        raise ValueError("this check needs periodic structures: pbc has no periodic axis")
    return Structures(z, pos, batch, cell, pbc), num_graphs


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
    r"""Energy, forces (and stress) of a potential, whatever subset of them it returns.

    A potential is called as ``potential(z, pos, batch)`` on molecules and as
    ``potential(z, pos, batch, cell=cell, pbc=pbc)`` on periodic structures, and returns
    the energy ``[G]`` or ``[G, 1]``, or ``(energy, forces [N, 3])``, or
    ``(energy, forces, stress [G, 3, 3])``. What it does not return is derived from the
    energy by autograd:

    .. math::
        \mathbf{F}_i = -\frac{\partial E}{\partial \mathbf{p}_i}, \qquad
        \sigma_G = \frac{1}{V_G} \frac{\partial E_G}{\partial \varepsilon_G}\Big|_{\varepsilon
        = 0},

    where the symmetric strain :math:`\varepsilon_G` deforms positions and lattice vectors
    as :math:`x \mapsto (1 + \varepsilon_G)\, x` and :math:`V_G = |\det \text{cell}_G|`
    (ASE's sign: a crystal whose energy grows when it is stretched has positive stress;
    the pressure is :math:`-\operatorname{tr} \sigma / 3`).

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
        targets = [leaf] if forces is None else []
        targets += [strain] if stress and stress_out is None else []
        grads = [None] * len(targets)
        if targets and energy.requires_grad:
            grads = torch.autograd.grad(energy.sum(), targets, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, targets)]
    if forces is None:
        forces = -grads.pop(0)  # [N, 3]
    if stress and stress_out is None:
        stress_out = grads.pop(0) / volume[:, None, None]  # [G, 3, 3]
    out = {"energy": energy.detach(), "forces": forces.detach()}
    if stress_out is not None:
        out["stress"] = stress_out.detach()
    return out


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


def assert_below(errors: dict[str, float], atol: float, what: str = "") -> dict[str, float]:
    r"""Assert every error of a check is at most ``atol``; return the errors.

    Raises:
        AssertionError: naming every error above ``atol`` (or NaN) and its value.
    """
    if not is_real(atol) or not atol >= 0:
        raise ValueError(f"atol must be a number >= 0, got {atol!r}")
    bad = [f"{name} error {error:.3e}" for name, error in errors.items() if not error <= atol]
    if bad:
        raise AssertionError(f"{what + ': ' if what else ''}{', '.join(bad)} > {atol:.1e}")
    return errors


def _max_abs(a: Tensor, b: Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def _compare(errors: dict, name: str, got: dict, expected: dict) -> None:
    for key in ("energy", "forces"):
        error = _max_abs(got[key], expected[key])
        errors[f"{key}/{name}"] = max(errors.get(f"{key}/{name}", 0.0), error)


def _check_real(name: str, value: object) -> float:
    if not is_real(value) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _require_float64(pos: Tensor, what: str) -> None:
    if pos.dtype != torch.float64:
        raise ValueError(
            f"{what} need float64 positions (and a float64 potential, e.g. model.double()): "
            f"float32 rounding is larger than the differences, got {pos.dtype}"
        )


def symmetry_error(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    r"""Largest deviation of a potential from its symmetries: the energy invariant and the
    forces equivariant under a rotation :math:`R`, the inversion, a translation :math:`t`
    and a permutation :math:`\pi` of the atoms of each structure,

    .. math::
        E(\{R p_j + t\}) = E(\{p_j\}), \quad \mathbf{F}_i(\{R p_j + t\}) = R\, \mathbf{F}_i,
        \quad E(\{p_{\pi(j)}\}) = E, \quad \mathbf{F}_i(\{p_{\pi(j)}\}) = \mathbf{F}_{\pi(i)}.

    Lattice vectors are rotated (and inverted) with the positions.

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z`` to ``pbc``.
        seed (int, optional): seed of the rotation, translation and permutation.
            (default: :obj:`0`)

    Returns:
        ``{"energy/rotation": err, "forces/rotation": err, ...}`` for ``rotation``,
        ``inversion``, ``translation`` and ``permutation``: max absolute errors.
    """
    s, _ = _structures(z, pos, batch, cell, pbc)
    reference = evaluate_potential(potential, *s)
    generator = torch.Generator().manual_seed(seed)
    wide = s.pos.double()  # [N, 3] transformations applied in float64
    rotation = rand_rotation(dtype=torch.float64, generator=generator).to(pos.device)
    shift = torch.randn(3, dtype=torch.float64, generator=generator).to(pos.device)
    # sorting by (structure, random key) permutes atoms inside their structures only
    key = s.batch.cpu().double() + 0.5 * torch.rand(
        len(s.z), dtype=torch.float64, generator=generator
    )
    perm = torch.argsort(key).to(pos.device)  # [N]

    errors: dict[str, float] = {}
    for name, matrix in (("rotation", rotation), ("inversion", -torch.eye(3, dtype=torch.float64))):
        matrix = matrix.to(pos.device)
        moved = s._replace(pos=(wide @ matrix.T).to(pos.dtype))
        if s.cell is not None:
            moved = moved._replace(cell=(s.cell.double() @ matrix.T).to(s.cell.dtype))
        expected = {
            "energy": reference["energy"],
            "forces": reference["forces"].double() @ matrix.T,
        }
        _compare(errors, name, evaluate_potential(potential, *moved), expected)
    moved = s._replace(pos=(wide + shift).to(pos.dtype))
    _compare(errors, "translation", evaluate_potential(potential, *moved), reference)
    moved = s._replace(z=s.z[perm], pos=s.pos[perm])
    expected = {"energy": reference["energy"], "forces": reference["forces"][perm]}
    _compare(errors, "permutation", evaluate_potential(potential, *moved), expected)
    return errors


def forces_fd_error(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    h: float = 1e-5,
    components: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    r"""Largest difference between the forces and central finite differences of the energy,

    .. math::
        F_{ik} \approx -\frac{E(p + h\, e_{ik}) - E(p - h\, e_{ik})}{2h},

    whose own error is :math:`O(h^2)` plus the rounding of :math:`E` over :math:`h`.

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z`` to ``pbc``
            (float64 positions).
        h (float, optional): the step. (default: :obj:`1e-5`)
        components (int, optional): check this many ``(atom, axis)`` components, drawn at
            random, instead of all :math:`3N` (each costs two evaluations).
            (default: :obj:`None`, all)
        seed (int, optional): seed of the drawn components. (default: :obj:`0`)

    Returns:
        ``{"forces": max absolute error}``.
    """
    s, num_graphs = _structures(z, pos, batch, cell, pbc)
    _require_float64(s.pos, "finite differences")
    h = _check_real("h", h)
    count = 3 * len(s.z)
    if components is not None:
        if not is_int(components) or components < 1:
            raise ValueError(f"components must be None or an int >= 1, got {components!r}")
        count = min(count, components)
    forces = evaluate_potential(potential, *s)["forces"]  # [N, 3]
    chosen = torch.arange(count)  # [count] flat indices atom * 3 + axis
    if components is not None:
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(3 * len(s.z), generator=generator)[:count]
    error = 0.0
    for flat in chosen.tolist():
        atom, axis = divmod(flat, 3)
        step = torch.zeros_like(s.pos)
        step[atom, axis] = h
        graph = int(s.batch[atom])
        plus = _energy(potential, s._replace(pos=s.pos + step), num_graphs)[graph]
        minus = _energy(potential, s._replace(pos=s.pos - step), num_graphs)[graph]
        numeric = -(plus - minus).item() / (2 * h)
        error = max(error, abs(forces[atom, axis].item() - numeric))
    return {"forces": error}


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


def batch_error(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
) -> dict[str, float]:
    r"""Largest difference between a batch's energies and forces and those of its
    structures evaluated one by one (structures of a batch must not interact).

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z`` to ``pbc``.

    Returns:
        ``{"energy": err, "forces": err}``: max absolute errors.
    """
    s, num_graphs = _structures(z, pos, batch, cell, pbc)
    together = evaluate_potential(potential, *s)
    errors = {"energy": 0.0, "forces": 0.0}
    for graph in range(num_graphs):
        alone = evaluate_potential(potential, *_split(s, graph))
        errors["energy"] = max(
            errors["energy"], _max_abs(together["energy"][graph], alone["energy"][0])
        )
        errors["forces"] = max(
            errors["forces"], _max_abs(together["forces"][s.batch == graph], alone["forces"])
        )
    return errors


def cutoff_jump(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    atom: int,
    center: int,
    cutoff: float,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    delta: float | None = None,
) -> dict[str, float]:
    r"""The jump of the energy and the forces as atom ``atom`` crosses the cutoff sphere of
    atom ``center``.

    The atom is moved along the line from ``center`` through it, in steps of
    :math:`\delta/2` from :math:`r_c - \delta` to :math:`r_c + \delta` (the other atoms stay).
    Over a step across :math:`r_c`, a continuous function changes by its slope times the
    step, a discontinuous one also by its jump :math:`J`; the change over the steps of
    :math:`2\delta` and :math:`\delta` around :math:`r_c`, extrapolated to a zero step,

    .. math::
        J \approx 2\,\big(E(r_c + \tfrac{\delta}{2}) - E(r_c - \tfrac{\delta}{2})\big)
        - \big(E(r_c + \delta) - E(r_c - \delta)\big),

    leaves the jump alone (:math:`O(\delta^2)` for a function with a kink at :math:`r_c`,
    :math:`O(\delta^3)` for a smooth one), whatever the size of the slope. Likewise for
    every force component.

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z``, ``pos``,
            ``batch``, ``cell`` and ``pbc``.
        atom (int): the atom that is moved.
        center (int): the atom whose cutoff sphere it crosses (in the same structure).
        cutoff (float): the cutoff radius :math:`r_c` of the potential.
        delta (float, optional): :math:`\delta`. (default: :obj:`None`: ``1e-5 * cutoff``)

    Returns:
        ``{"energy": |J_E|, "forces": max |J_F|}`` (the energy of ``atom``'s structure,
        the forces of every atom).
    """
    s, _ = _structures(z, pos, batch, cell, pbc)
    cutoff = _check_real("cutoff", cutoff)
    delta = 1e-5 * cutoff if delta is None else _check_real("delta", delta)
    if not delta < cutoff:
        raise ValueError(f"delta must be smaller than the cutoff {cutoff}, got {delta}")
    for name, index in (("atom", atom), ("center", center)):
        if not is_int(index) or not 0 <= index < len(s.z):
            raise ValueError(f"{name} must be an atom index in [0, {len(s.z)}), got {index!r}")
    if atom == center or s.batch[atom] != s.batch[center]:
        raise ValueError(f"atom {atom} and center {center} must be two atoms of one structure")
    wide = s.pos.double()  # [N, 3]
    direction = wide[atom] - wide[center]  # [3]
    if not direction.norm() > 0:
        raise ValueError(f"atom {atom} sits on center {center}: no direction to move it along")
    direction = direction / direction.norm()
    energies, forces = [], []
    for offset in (-1.0, -0.5, 0.5, 1.0):
        moved = wide.clone()
        moved[atom] = wide[center] + (cutoff + offset * delta) * direction
        out = evaluate_potential(potential, *s._replace(pos=moved.to(s.pos.dtype)))
        energies.append(out["energy"][int(s.batch[atom])].double())
        forces.append(out["forces"].double())

    def jump(v: list[Tensor]) -> float:
        return (2 * (v[2] - v[1]) - (v[3] - v[0])).abs().max().item()

    return {"energy": jump(energies), "forces": jump(forces)}


def separation_error(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor,
    distance: float,
) -> dict[str, float]:
    r"""Largest deviation from additivity: the structures of a batch (molecules), placed
    ``distance`` apart along :math:`x` as one structure, against each alone,

    .. math::
        E(A \cup B) = E(A) + E(B), \qquad \mathbf{F}^{A \cup B}_i = \mathbf{F}^A_i
        \ (i \in A).

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z``, ``pos`` and
            ``batch`` (at least two structures).
        distance (float): the gap between the structures' extents along :math:`x`; larger
            than the range of the potential (its cutoff).

    Returns:
        ``{"energy": err, "forces": err}``: max absolute errors.
    """
    s, num_graphs = _structures(z, pos, batch)
    distance = _check_real("distance", distance)
    if num_graphs < 2:
        raise ValueError("separation_error needs a batch of at least two structures")
    parts = [evaluate_potential(potential, *_split(s, g)) for g in range(num_graphs)]
    x = s.pos[:, 0].double()  # [N]
    low = torch.full((num_graphs,), math.inf, dtype=torch.float64, device=x.device)
    low = low.scatter_reduce(0, s.batch, x, "amin")  # [G]
    high = torch.full_like(low, -math.inf).scatter_reduce(0, s.batch, x, "amax")  # [G]
    width = high - low + distance  # [G]
    start = torch.cumsum(width, 0) - width  # [G] where each structure begins
    moved = s.pos.double().clone()
    moved[:, 0] += (start - low)[s.batch]
    together = evaluate_potential(potential, s.z, moved.to(s.pos.dtype))
    energy = sum(part["energy"][0].double() for part in parts)
    forces = torch.cat([part["forces"] for part in parts])  # [N, 3]
    return {
        "energy": _max_abs(together["energy"][0], energy),
        "forces": _max_abs(together["forces"], forces),
    }


def isolated_atom_error(
    potential: Potential,
    z: Tensor,
    distance: float,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> dict[str, float]:
    r"""Isolated atoms: each alone (at a random position) feels no force, and together,
    ``distance`` apart, their energy is the sum of their energies alone (and no force).

    Args:
        potential (callable): see :func:`evaluate_potential`.
        z (torch.Tensor): atomic numbers ``[N]`` of the atoms, long.
        distance (float): the spacing of the atoms together; larger than the range of the
            potential (its cutoff).
        dtype (torch.dtype, optional): of the positions. (default: :obj:`torch.float64`)
        device (torch.device, optional): of the positions. (default: :obj:`None`, CPU)
        seed (int, optional): seed of the positions alone. (default: :obj:`0`)

    Returns:
        ``{"forces": max |F|, "energy": |E(together) - sum E(alone)|}``.
    """
    distance = _check_real("distance", distance)
    count = len(z) if isinstance(z, Tensor) and z.dim() == 1 else 0  # else refused below
    generator = torch.Generator().manual_seed(seed)
    pos = distance * torch.randn(count, 3, dtype=torch.float64, generator=generator)
    s, _ = _structures(z, pos.to(dtype=dtype, device=device), torch.arange(count, device=device))
    alone = evaluate_potential(potential, *s)  # one structure per atom
    line = torch.zeros_like(pos)
    line[:, 0] = distance * torch.arange(count, dtype=torch.float64)  # [N, 3]
    together = evaluate_potential(potential, s.z, line.to(dtype=dtype, device=device))
    forces = torch.cat([alone["forces"], together["forces"]])  # [2N, 3]
    return {
        "forces": forces.abs().max().item(),
        "energy": _max_abs(together["energy"][0], alone["energy"].double().sum()),
    }


def wrapping_error(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None,
    cell: Tensor,
    pbc: Tensor,
    seed: int = 0,
) -> dict[str, float]:
    r"""Largest change of the energy and forces of periodic structures when the atoms are
    wrapped into the cell (fractional coordinates in :math:`[0, 1)` along periodic axes)
    and when each is moved by random lattice vectors (up to 3 cells along each periodic
    axis): both describe the same crystal.

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z`` to ``pbc``.
        seed (int, optional): seed of the lattice vectors. (default: :obj:`0`)

    Returns:
        ``{"energy/wrapped", "forces/wrapped", "energy/unwrapped", "forces/unwrapped"}``:
        max absolute errors.
    """
    s, _ = _structures(z, pos, batch, cell, pbc, periodic=True)
    reference = evaluate_potential(potential, *s)
    wide = s.pos.double()  # [N, 3]
    lattice = s.cell.double()[s.batch]  # [N, 3, 3] every atom's lattice vectors (rows)
    periodic = s.pbc[s.batch]  # [N, 3]
    frac = torch.linalg.solve(lattice.transpose(1, 2), wide)  # [N, 3] pos = frac @ lattice
    cells = {"wrapped": -torch.where(periodic, frac.floor(), 0.0)}  # [N, 3] whole cells to add
    generator = torch.Generator().manual_seed(seed)
    random = torch.randint(-3, 4, wide.shape, generator=generator).to(wide)  # [N, 3]
    cells["unwrapped"] = torch.where(periodic, random, 0.0)
    errors: dict[str, float] = {}
    for name, n in cells.items():
        moved = wide + torch.einsum("ni,nij->nj", n, lattice)  # [N, 3]
        out = evaluate_potential(potential, *s._replace(pos=moved.to(s.pos.dtype)))
        _compare(errors, name, out, reference)
    return errors


def supercell_error(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None,
    cell: Tensor,
    pbc: Tensor,
    repeats: Sequence[int] = (2, 2, 2),
) -> dict[str, float]:
    r"""Extensivity: a supercell of :math:`n` copies of a periodic cell has :math:`n` times
    its energy, and every copy of an atom its force.

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z`` to ``pbc``.
        repeats (sequence of int, optional): copies along each lattice vector; axes that
            are not periodic in a structure are not repeated. (default: :obj:`(2, 2, 2)`)

    Returns:
        ``{"energy": max |E_super / n - E|, "forces": err}``: max absolute errors.
    """
    s, num_graphs = _structures(z, pos, batch, cell, pbc, periodic=True)
    repeats = list(repeats)
    if len(repeats) != 3 or not all(is_int(r) and r >= 1 for r in repeats):
        raise ValueError(f"repeats must be three ints >= 1, got {repeats!r}")
    reference = evaluate_potential(potential, *s)
    supercells, copies = [], []
    for graph in range(num_graphs):
        one = _split(s, graph)
        n = [r if periodic else 1 for r, periodic in zip(repeats, one.pbc[0].tolist())]
        grid = torch.tensor(list(itertools.product(*map(range, n))), dtype=torch.float64)
        offsets = grid.to(s.pos.device) @ one.cell[0].double()  # [copies, 3]
        pos = (one.pos.double()[None] + offsets[:, None]).reshape(-1, 3)  # [copies * n, 3]
        scale = torch.tensor(n, dtype=s.cell.dtype, device=s.cell.device)  # [3]
        supercells.append(
            Structures(
                one.z.repeat(len(grid)),
                pos.to(s.pos.dtype),
                one.batch.repeat(len(grid)),
                one.cell * scale[None, :, None],  # lattice vector a repeated n_a times
                one.pbc,
            )
        )
        copies.append(len(grid))
    out = evaluate_potential(potential, *_batched(supercells))
    expected = torch.cat(
        [reference["forces"][s.batch == g].repeat(copies[g], 1) for g in range(num_graphs)]
    )  # [sum of copies * n, 3]
    per_copy = out["energy"].double() / torch.tensor(copies, device=s.pos.device)  # [G]
    return {
        "energy": _max_abs(per_copy, reference["energy"]),
        "forces": _max_abs(out["forces"], expected),
    }


def stress_fd_error(
    potential: Potential,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None,
    cell: Tensor,
    pbc: Tensor,
    h: float = 1e-5,
) -> dict[str, float]:
    r"""Largest difference between the stress and central finite differences of the energy
    under a symmetric strain :math:`\varepsilon` of positions and lattice vectors,

    .. math::
        \sigma_{ab} \approx \frac{E(h S_{ab}) - E(-h S_{ab})}{2 h V}, \qquad
        S_{ab} = \tfrac{1}{2}(e_a e_b^\top + e_b e_a^\top).

    Args:
        potential (callable): see :func:`evaluate_potential`; so are ``z`` to ``pbc``
            (float64, cells of nonzero volume).
        h (float, optional): the step. (default: :obj:`1e-5`)

    Returns:
        ``{"stress": max absolute error}``.
    """
    s, num_graphs = _structures(z, pos, batch, cell, pbc, periodic=True)
    _require_float64(s.pos, "finite differences")
    h = _check_real("h", h)
    stress = evaluate_potential(potential, *s, stress=True)["stress"]  # [G, 3, 3]
    volume = _volume(s.cell)  # [G]
    numeric = torch.zeros_like(stress)
    for a, b in itertools.combinations_with_replacement(range(3), 2):
        strain = torch.zeros(3, 3, dtype=s.pos.dtype, device=s.pos.device)
        strain[a, b] += 0.5 * h
        strain[b, a] += 0.5 * h
        plus = _energy(potential, _strain(s, strain), num_graphs)  # [G]
        minus = _energy(potential, _strain(s, -strain), num_graphs)  # [G]
        numeric[:, a, b] = numeric[:, b, a] = (plus - minus) / (2 * h * volume)
    return {"stress": _max_abs(stress, numeric)}


# -- the contract as a test class ------------------------------------------------------------
_FCC_SITES = ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))


class PotentialContract:
    r"""The checks every interatomic potential must pass, as a pytest test class to inherit.

    A subclass gives the cutoff and the potential (and may change the sample structures
    and tolerances); pytest collects the inherited ``test_*`` methods:

    .. code-block:: python

        class TestMyModel(PotentialContract):
            cutoff = 3.0

            def potential(self):
                torch.manual_seed(0)
                return model_potential(MyModel(cutoff=3.0).double())

    To mark one check as a known failure of a model, override it:
    ``@pytest.mark.xfail(strict=True, reason=...)`` on ``def test_x(self):
    super().test_x()``. The periodic checks (wrapping, supercells, stress, and the
    symmetries, forces and batches of :meth:`crystals`) run only with ``periodic = True``
    and are skipped otherwise. Tolerances are absolute, in the units of the potential, and
    suit energies and forces of order one (a freshly initialized model); scale them for
    others.

    Attributes:
        cutoff (float): the cutoff radius of the potential (required).
        species (tuple of int): the atomic numbers of the samples. (default: ``(1, 6, 8)``)
        periodic (bool): whether the potential takes periodic cells. (default: :obj:`False`)
        dtype (torch.dtype): of the sample positions; the finite differences need float64.
            (default: :obj:`torch.float64`)
        atol (float): tolerance of the exact properties (symmetries, batches, additivity,
            wrapping, supercells), which only rounding breaks. (default: :obj:`1e-9`)
        fd_step (float): the step of the finite differences. (default: :obj:`1e-5`)
        fd_atol (float): tolerance of forces and stress against the finite differences.
            (default: :obj:`1e-6`)
        fd_components (int or None): force components checked per sample, drawn at random
            (two evaluations each); :obj:`None` checks all. (default: :obj:`12`)
        jump_atol (float): tolerance of the jumps at the cutoff (:func:`cutoff_jump`).
            (default: :obj:`1e-7`)
        seed (int): seed of the samples and of the checks. (default: :obj:`0`)
    """

    cutoff: float
    species: tuple[int, ...] = (1, 6, 8)
    periodic: bool = False
    dtype: torch.dtype = torch.float64
    atol: float = 1e-9
    fd_step: float = 1e-5
    fd_atol: float = 1e-6
    fd_components: int | None = 12
    jump_atol: float = 1e-7
    seed: int = 0

    def potential(self) -> Potential:
        """The potential under test (built in :attr:`dtype`)."""
        raise NotImplementedError(f"{type(self).__name__} must define potential()")

    def molecules(self) -> Structures:
        """Three molecules of 4, 6 and 5 atoms of :attr:`species`, drawn in cubes of side
        :attr:`cutoff` with no two atoms closer than a quarter of it."""
        generator = torch.Generator().manual_seed(self.seed)
        z, pos, batch = [], [], []
        for graph, size in enumerate((4, 6, 5)):
            points: list[Tensor] = []
            while len(points) < size:
                point = self.cutoff * torch.rand(3, dtype=torch.float64, generator=generator)
                if all((point - p).norm() >= self.cutoff / 4 for p in points):
                    points.append(point)
            pos += points
            batch += [graph] * size
            z += self._draw_species(size, generator)
        return Structures(torch.tensor(z), torch.stack(pos).to(self.dtype), torch.tensor(batch))

    def crystals(self) -> Structures:
        """Two triclinic cells of 4 atoms (perturbed fcc sites): one periodic along all
        axes with sides of 0.8 :attr:`cutoff` (atoms see several images of each other),
        one of sides 1.2 :attr:`cutoff`, periodic along its first two axes only."""
        generator = torch.Generator().manual_seed(self.seed)
        z, pos, cells = [], [], []
        for side in (0.8, 1.2):
            noise = torch.randn(3, 3, dtype=torch.float64, generator=generator)
            cell = side * self.cutoff * (torch.eye(3, dtype=torch.float64) + 0.15 * noise)
            frac = torch.tensor(_FCC_SITES, dtype=torch.float64)  # [4, 3]
            frac = frac + 0.05 * torch.randn(4, 3, dtype=torch.float64, generator=generator)
            pos.append(frac @ cell)
            cells.append(cell)
            z += self._draw_species(4, generator)
        return Structures(
            torch.tensor(z),
            torch.cat(pos).to(self.dtype),
            torch.tensor([0] * 4 + [1] * 4),
            torch.stack(cells).to(self.dtype),
            torch.tensor([[True, True, True], [True, True, False]]),
        )

    def _draw_species(self, count: int, generator: torch.Generator) -> list[int]:
        index = torch.randint(len(self.species), (count,), generator=generator)
        return [self.species[i] for i in index.tolist()]

    def _samples(self) -> Iterator[tuple[str, Structures]]:
        yield "molecules", self.molecules()
        if self.periodic:
            yield "crystals", self.crystals()

    def _require_periodic(self) -> None:
        if not self.periodic:
            raise unittest.SkipTest(f"{type(self).__name__} is not periodic (periodic = False)")

    def test_samples_are_not_trivial(self):
        # every check below passes trivially on a potential whose forces vanish
        potential = self.potential()
        for name, structures in self._samples():
            out = evaluate_potential(potential, *structures)
            assert torch.isfinite(out["energy"]).all() and torch.isfinite(out["forces"]).all()
            assert out["forces"].abs().max() > 1e-6, f"the forces on the {name} all vanish"

    def test_symmetries(self):
        potential = self.potential()
        for name, structures in self._samples():
            errors = symmetry_error(potential, *structures, seed=self.seed)
            assert_below(errors, self.atol, f"symmetries of the {name}")

    def test_forces_are_finite_differences(self):
        potential = self.potential()
        for name, structures in self._samples():
            errors = forces_fd_error(
                potential, *structures, h=self.fd_step, components=self.fd_components
            )
            assert_below(errors, self.fd_atol, f"finite differences on the {name}")

    def test_batch_equals_structures_one_by_one(self):
        potential = self.potential()
        for name, structures in self._samples():
            assert_below(batch_error(potential, *structures), self.atol, f"batch of {name}")

    def test_continuous_across_the_cutoff(self):
        potential = self.potential()
        r = self.cutoff
        # every species once at the center and once crossing
        for first, second in zip(self.species, self.species[1:] + self.species[:1]):
            # atom 2 crosses the cutoff sphere of atom 0; atom 1 is within reach of both
            z = torch.tensor([first, self.species[0], second])
            pos = torch.tensor([[0, 0, 0], [0.5, 0.4, 0.1], [0.5, 0, 0]], dtype=self.dtype) * r
            control = evaluate_potential(potential, z, pos)["forces"][2].abs().max()
            assert control > 1e-6, f"atom 2 ({second}) feels no force inside the cutoff"
            errors = cutoff_jump(potential, z, pos, atom=2, center=0, cutoff=r)
            assert_below(errors, self.jump_atol, f"jump at the cutoff of {first}-{second}")

    def test_separated_fragments_add_up(self):
        errors = separation_error(self.potential(), *self.molecules()[:3], 2 * self.cutoff)
        assert_below(errors, self.atol, "fragments 2 cutoffs apart")

    def test_isolated_atoms(self):
        errors = isolated_atom_error(
            self.potential(), torch.tensor(self.species), 2 * self.cutoff, self.dtype
        )
        assert_below(errors, self.atol, "isolated atoms")

    def test_wrapped_positions(self):
        self._require_periodic()
        errors = wrapping_error(self.potential(), *self.crystals(), seed=self.seed)
        assert_below(errors, self.atol, "wrapped and unwrapped positions")

    def test_supercell_is_extensive(self):
        self._require_periodic()
        errors = supercell_error(self.potential(), *self.crystals(), repeats=(2, 1, 2))
        assert_below(errors, self.atol, "supercells")

    def test_stress_is_finite_differences(self):
        self._require_periodic()
        errors = stress_fd_error(self.potential(), *self.crystals(), h=self.fd_step)
        assert_below(errors, self.fd_atol, "stress against finite differences")

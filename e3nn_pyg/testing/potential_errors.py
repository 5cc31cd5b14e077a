r"""The errors of an interatomic potential against what every potential must satisfy (as
NequIP's model test mixins check it): symmetries, forces equal to finite differences of the
energy, batches equal to their structures one by one, continuity across the cutoff, and
additivity of far-apart fragments and of isolated atoms. Each check returns the measured
errors (float64 arithmetic, max absolute values); :func:`assert_below` turns them into an
assertion. The checks of periodic cells are in :mod:`e3nn_pyg.testing.periodic_errors`.

The continuity across the cutoff (:func:`cutoff_jump`) is measured by moving an atom along
the line from a center atom through it, in steps of :math:`\delta/2` from
:math:`r_c - \delta` to :math:`r_c + \delta` (the other atoms stay). Over a step across
:math:`r_c`, a continuous function changes by its slope times the step, a discontinuous one
also by its jump :math:`J`; the change over the steps of :math:`2\delta` and :math:`\delta`
around :math:`r_c`, extrapolated to a zero step,

.. math::
    J \approx 2\,\big(E(r_c + \tfrac{\delta}{2}) - E(r_c - \tfrac{\delta}{2})\big)
    - \big(E(r_c + \delta) - E(r_c - \delta)\big),

leaves the jump alone (:math:`O(\delta^2)` for a function with a kink at :math:`r_c`,
:math:`O(\delta^3)` for a smooth one), whatever the size of the slope. Likewise for every
force component.

Example:
    >>> import torch
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

import math

import torch
from torch import Tensor

from ..checks import is_int, is_real, require_int, require_positive
from ..o3 import rand_rotation
from .equivariance import max_difference
from .potentials import Potential, Structures, _energy, _split, _structures, evaluate_potential

__all__ = [
    "assert_below",
    "batch_error",
    "cutoff_jump",
    "forces_fd_error",
    "isolated_atom_error",
    "separation_error",
    "symmetry_error",
]


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


def _compare(errors: dict, name: str, got: dict, expected: dict) -> None:
    for key in ("energy", "forces"):
        error = max_difference(got[key], expected[key])
        errors[f"{key}/{name}"] = max(errors.get(f"{key}/{name}", 0.0), error)


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
    h = require_positive(h, "h")
    count = 3 * len(s.z)
    if components is not None:
        count = min(count, require_int(components, "components", minimum=1))
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
        error = max(error, max_difference(forces[atom, axis], forces.new_tensor(numeric)))
    return {"forces": error}


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
            errors["energy"], max_difference(together["energy"][graph], alone["energy"][0])
        )
        errors["forces"] = max(
            errors["forces"], max_difference(together["forces"][s.batch == graph], alone["forces"])
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
    atom ``center``, extrapolated from four steps across it (see the module's description).

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
    cutoff = require_positive(cutoff, "cutoff")
    delta = 1e-5 * cutoff if delta is None else require_positive(delta, "delta")
    if not delta < cutoff:
        raise ValueError(f"delta must be smaller than the cutoff {cutoff}, got {delta}")
    direction = _direction(s, atom, center)  # [3]
    wide = s.pos.double()  # [N, 3]
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


def _direction(s: Structures, atom: object, center: object) -> Tensor:
    """The unit vector from atom ``center`` to atom ``atom`` of one structure ``[3]``."""
    for name, index in (("atom", atom), ("center", center)):
        if not is_int(index) or not 0 <= index < len(s.z):
            raise ValueError(f"{name} must be an atom index in [0, {len(s.z)}), got {index!r}")
    if atom == center or s.batch[atom] != s.batch[center]:
        raise ValueError(f"atom {atom} and center {center} must be two atoms of one structure")
    direction = s.pos[atom].double() - s.pos[center].double()  # [3]
    if not direction.norm() > 0:
        raise ValueError(f"atom {atom} sits on center {center}: no direction to move it along")
    return direction / direction.norm()


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
    distance = require_positive(distance, "distance")
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
        "energy": max_difference(together["energy"][0], energy),
        "forces": max_difference(together["forces"], forces),
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
    distance = require_positive(distance, "distance")
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
        "energy": max_difference(together["energy"][0], alone["energy"].double().sum()),
    }

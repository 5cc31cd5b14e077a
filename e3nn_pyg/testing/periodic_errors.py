r"""The errors of an interatomic potential on periodic cells: the invariance under wrapping
atoms into the cell or moving them by lattice vectors, the extensivity of supercells, and
the stress against finite differences of the energy under strain. Like the checks of
:mod:`e3nn_pyg.testing.potential_errors`, each returns the measured errors (float64
arithmetic, max absolute values).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from ..checks import is_int, require_positive
from .equivariance import max_difference
from .potential_errors import _compare, _require_float64
from .potentials import (
    Potential,
    Structures,
    _batched,
    _energy,
    _split,
    _strain,
    _structures,
    _volume,
    evaluate_potential,
)

__all__ = ["stress_fd_error", "supercell_error", "wrapping_error"]


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
        "energy": max_difference(per_copy, reference["energy"]),
        "forces": max_difference(out["forces"], expected),
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
    h = require_positive(h, "h")
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
    return {"stress": max_difference(stress, numeric)}

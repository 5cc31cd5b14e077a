"""The analytic pair potential the checks of e3nn_pyg.testing are tested with, its closed-form
forces and stress, the contract's samples at its cutoff, and potentials broken on purpose
(each breaks what one check is meant to catch)."""

import itertools
import math

import torch

from e3nn_pyg.testing import PotentialContract, Structures, evaluate_potential

CUTOFF = 2.5
LARGE = 1e-4  # what the breakages below cost, at the least; passing checks stay below 1e-9
F64 = torch.float64


# -- an analytic periodic pair potential -------------------------------------------------------
class PairPotential:
    r"""Morse pairs with a smooth envelope, summed over every periodic image by brute force:

    .. math::
        E = \frac{1}{2} \sum_{i, j, n} \phi_{z_i z_j}(|p_j + n\,\text{cell} - p_i|), \quad
        \phi(r) = D_{ij} \big(e^{-4(r - 1)} - 2 e^{-2(r - 1)}\big)\,
        \big(1 - (r / r_c)^2\big)^3 \ (r < r_c).

    The arguments switch on the bugs the checks must catch: ``envelope`` ``"linear"`` (the
    energy continuous at :math:`r_c`, the forces not) or ``"none"`` (a hard cut), ``wrap=False``
    (images counted for atoms inside the cell, used on atoms outside it), ``images="one"``
    (one image along each periodic axis, too few for cells under half the cutoff) and
    ``detach_cell`` (image shifts that do not follow a strain of the cell).
    """

    def __init__(self, cutoff=CUTOFF, envelope="smooth", wrap=True, images="enough",
                 detach_cell=False):  # fmt: skip
        self.cutoff, self.envelope, self.wrap = cutoff, envelope, wrap
        self.images, self.detach_cell = images, detach_cell

    def pair(self, r, zi, zj):
        x = r / self.cutoff
        depth = 0.1 * (zi * zj).to(r.dtype).sqrt()
        morse = depth * (torch.exp(-4 * (r - 1)) - 2 * torch.exp(-2 * (r - 1)))
        inside = (x < 1).to(r.dtype)
        envelope = {
            "smooth": (1 - x * x).clamp(min=0) ** 3,
            "linear": (1 - x).clamp(min=0),
            "none": inside,
        }[self.envelope]
        return morse * envelope * inside

    def vectors(self, pos, cell, pbc):
        """Every ``p_j + shift - p_i`` ``[n, n, S, 3]`` of one structure."""
        if cell is None:
            shifts = pos.new_zeros(1, 3)
        else:
            lattice = cell.detach() if self.detach_cell else cell
            if self.wrap:  # whole cells removed: floor has no gradient
                frac = torch.linalg.solve(cell.detach().T, pos.detach().T).T  # [n, 3]
                pos = pos - torch.where(pbc, frac.floor(), 0.0) @ lattice
            reach = self.cutoff * torch.linalg.inv(cell.detach()).norm(dim=0)  # [3]
            count = [
                (math.ceil(reach[a]) if self.images == "enough" else 1) if pbc[a] else 0
                for a in range(3)
            ]
            grid = torch.cartesian_prod(*[torch.arange(-c, c + 1) for c in count])  # [S, 3]
            shifts = grid.reshape(-1, 3).to(pos.dtype) @ lattice  # [S, 3]
        return pos[None, :, None] + shifts[None, None] - pos[:, None, None]

    def __call__(self, z, pos, batch, cell=None, pbc=None):
        energies = []
        for graph in range(int(batch[-1]) + 1):
            mask = batch == graph
            one_cell = None if cell is None else cell[graph]
            vec = self.vectors(pos[mask], one_cell, None if pbc is None else pbc[graph])
            square = vec.pow(2).sum(-1)  # [n, n, S]
            keep = square > 0  # not the atom itself
            r = torch.where(keep, square, 1.0).sqrt()
            zm = z[mask]
            phi = self.pair(r, zm[:, None, None], zm[None, :, None])
            energies.append(0.5 * torch.where(keep, phi, 0.0).sum())
        return torch.stack(energies)  # [G]


def closed_form(potential, z, pos, batch, cell, pbc):
    r"""Energy, forces and stress of a :class:`PairPotential` from the pair sums
    :math:`\mathbf{F}_i = \sum \phi'(r)\, \hat r`, :math:`\sigma = \frac{1}{2V} \sum \phi'(r)\,
    r \otimes r / r` (no autograd through the positions)."""
    energies, forces, stresses = [], [], []
    for graph in range(int(batch[-1]) + 1):
        mask = batch == graph
        vec = potential.vectors(pos[mask], cell[graph], pbc[graph]).detach()  # [n, n, S, 3]
        r = vec.norm(dim=-1)
        keep = r > 0
        r = torch.where(keep, r, 1.0).requires_grad_(True)
        zm = z[mask]
        phi = torch.where(keep, potential.pair(r, zm[:, None, None], zm[None, :, None]), 0.0)
        (slope,) = torch.autograd.grad(phi.sum(), r)  # phi'(r), elementwise
        unit = vec / r[..., None]
        energies.append(0.5 * phi.sum().detach())
        forces.append((slope[..., None] * unit).sum((1, 2)))
        virial = 0.5 * torch.einsum("ijs,ijsa,ijsb->ab", slope, unit, vec)
        stresses.append(virial / torch.linalg.det(cell[graph]).abs())
    return torch.stack(energies), torch.cat(forces), torch.stack(stresses)


class PairContract(PotentialContract):
    """The contract around the pair potential (not collected: its name has no Test)."""

    cutoff = CUTOFF
    periodic = True

    def potential(self):
        return PairPotential()


def crystals() -> Structures:
    return PairContract().crystals()


def molecules() -> Structures:
    return PairContract().molecules()


# -- potentials broken on purpose --------------------------------------------------------------
def plus(first, term):
    """``first`` plus an energy ``term(z, pos)`` of each structure alone."""

    def potential(z, pos, batch, cell=None, pbc=None):
        extra = [term(z[batch == g], pos[batch == g]) for g in range(int(batch[-1]) + 1)]
        return first(z, pos, batch, cell, pbc) + torch.stack(extra)

    return potential


def relative(pos):
    return pos[None, :] - pos[:, None]  # [n, n, 3] p_j - p_i


LEVI_CIVITA = torch.zeros(3, 3, 3, dtype=F64)
for order in itertools.permutations(range(3)):
    LEVI_CIVITA[order] = torch.linalg.det(torch.eye(3, dtype=F64)[list(order)])


def along_x(z, pos):  # invariant except under rotations
    r = relative(pos)
    return 0.1 * (r[..., 0].pow(2) * torch.exp(-r.pow(2).sum(-1))).sum()


def chirality(z, pos):  # a pseudoscalar: invariant except under the inversion
    r = relative(pos)  # [n, n, 3]
    length = r.norm(dim=-1)  # [n, n]
    triple = torch.einsum("ija,ikb,ilc,abc->ijkl", r, r, r, LEVI_CIVITA)  # [n, n, n, n]
    weight = length[:, :, None, None] * length[:, None, :, None] ** 2 * length[:, None, None] ** 3
    return 0.01 * (triple * weight).sum()


def trap(z, pos):  # a harmonic trap at the origin: breaks translations only
    return 0.1 * pos.pow(2).sum()


def by_index(z, pos):  # atoms weighted by their order: breaks permutations only
    distance = relative(pos).norm(dim=-1)  # [n, n]
    index = torch.arange(len(z), dtype=pos.dtype)
    return 0.1 * (index[:, None] * torch.exp(-distance)).sum()


def offset_forces(z, pos, batch, cell=None, pbc=None):  # forces that are not -dE/dp
    out = evaluate_potential(PairPotential(), z, pos, batch, cell, pbc)
    return out["energy"], out["forces"] + 1e-3


def crosstalk(z, pos, batch, cell=None, pbc=None):  # sees the centre of the whole batch
    energy = PairPotential()(z, pos, batch, cell, pbc)
    spread = (pos - pos.mean(0)).pow(2).sum(1)  # [N]
    return energy + 0.01 * torch.zeros_like(energy).index_add(0, batch, spread)


def per_atom(z, pos, batch, cell=None, pbc=None):  # intensive: the energy per atom
    return PairPotential()(z, pos, batch, cell, pbc) / torch.bincount(batch)


def coulomb(z, pos):  # no cutoff: far fragments still interact
    i, j = torch.triu_indices(len(z), len(z), 1)
    charge = z.to(pos.dtype) - 4
    return 0.1 * (charge[i] * charge[j] / (pos[j] - pos[i]).norm(dim=-1)).sum()


def silent(z, pos, batch, cell=None, pbc=None):  # no interaction at all
    return 0 * PairPotential()(z, pos, batch, cell, pbc)

r"""Molecular dynamics of ethanol with a trained potential: Langevin at 300 K, then NVE.

The potential comes from a checkpoint of ``e3nn-pyg train`` on the ethanol data shipped with
the package (revised MD17, PBE/def2-SVP; 1,000 training configurations):

.. code-block:: console

    $ e3nn-pyg train --data e3nn_pyg/datasets/ethanol/train.xyz \
          --test-data e3nn_pyg/datasets/ethanol/test_MD.xyz --model many-body --time-budget 1200 \
          --out runs/ethanol
    $ python examples/md_ethanol.py --checkpoint runs/ethanol/many_body/best.pt

The molecule starts from the first training configuration with Maxwell-Boltzmann velocities
at ``--temperature``, is thermalised by ``--steps`` steps of Langevin dynamics, then runs
``--steps`` steps of NVE (velocity Verlet), whose total energy a good potential conserves.
Every ``--print-every`` steps a line gives the temperature, the potential, kinetic and total
energies, the steps per second and the largest stretch of a bond (its length over the sum of
the covalent radii of its atoms). Every step is checked: the molecule stays physical while
no bond of the starting structure stretches beyond 1.5 times the sum of its covalent radii
and no two atoms are farther apart than 5 Å. The last line sums it up; the exit status is 1
when the molecule fell apart. ``--steps 10000 --timestep 0.5`` runs 5 ps in each phase,
10 ps in all.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.constraints import FixCom
from ase.data import covalent_radii
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from e3nn_pyg.ase import Calculator
from e3nn_pyg.datasets.ase_data import ethanol_paths
from e3nn_pyg.training import ConfigError

try:
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ASE < 3.29 names it after the distribution
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

BOND_FACTOR = 1.2  # atoms closer than this times the sum of covalent radii are bonded
BROKEN_FACTOR = 1.5  # a bond longer than this times the sum of covalent radii is broken
MAX_DISTANCE = 5.0  # Å: ethanol spans about 3.6 Å; farther atoms have left the molecule
EXAMPLE = "runs/ethanol/many_body/best.pt"
TRAINING_COMMAND = (
    "e3nn-pyg train --data e3nn_pyg/datasets/ethanol/train.xyz "
    "--test-data e3nn_pyg/datasets/ethanol/test_MD.xyz --out runs/ethanol"
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", metavar="PATH", help=f"best.pt of a potential, e.g. {EXAMPLE}"
    )
    parser.add_argument("--steps", type=int, default=1000, help="steps of each phase")
    parser.add_argument("--timestep", type=float, default=0.5, help="time step in fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="in K")
    parser.add_argument("--friction", type=float, default=0.01,
                        help="Langevin friction in 1/fs")  # fmt: skip
    parser.add_argument("--print-every", type=int, default=100, metavar="N")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="of the velocities and the noise")
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        parser.error(
            "a trained potential is needed (an untrained model gives no meaningful dynamics): "
            f"pass --checkpoint {EXAMPLE}, written by `{TRAINING_COMMAND}`"
        )
    for name in ("steps", "print_every", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("timestep", "temperature", "friction"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    return args


class MoleculeCheck:
    """The bonds of a starting structure, and how far they stretch during a run.

    Args:
        atoms (ase.Atoms): the starting structure (a molecule).
    """

    def __init__(self, atoms: Atoms) -> None:
        radii = covalent_radii[atoms.numbers]  # [N] Å
        self.covalent = radii[:, None] + radii[None, :]  # [N, N]
        first, second = np.triu_indices(len(atoms), k=1)
        distances = atoms.get_all_distances()  # [N, N]
        bonded = distances[first, second] < BOND_FACTOR * self.covalent[first, second]
        self.bonds = np.stack([first[bonded], second[bonded]], axis=1)  # [B, 2]
        self.symbols = atoms.get_chemical_symbols()
        self.longest_ratio = 0.0  # the most stretched bond: its length over its covalent one
        self.longest_bond = (0.0, "")  # its length (Å) and atoms
        self.max_distance = 0.0  # Å, between any two atoms

    def update(self, atoms: Atoms) -> None:
        """Record the bonds and distances of ``atoms`` (the same atoms as the start)."""
        distances = atoms.get_all_distances()  # [N, N]
        i, j = self.bonds[:, 0], self.bonds[:, 1]
        ratios = distances[i, j] / self.covalent[i, j]  # [B]
        k = int(np.argmax(ratios))
        if ratios[k] > self.longest_ratio:
            self.longest_ratio = float(ratios[k])
            name = f"{self.symbols[i[k]]}{i[k]}-{self.symbols[j[k]]}{j[k]}"
            self.longest_bond = (float(distances[i[k], j[k]]), name)
        self.max_distance = max(self.max_distance, float(distances.max()))

    def stretch(self, atoms: Atoms) -> float:
        """The largest ratio of a bond of ``atoms`` now to its covalent length."""
        i, j = self.bonds[:, 0], self.bonds[:, 1]
        return float((atoms.get_all_distances()[i, j] / self.covalent[i, j]).max())

    @property
    def stable(self) -> bool:
        return self.longest_ratio <= BROKEN_FACTOR and self.max_distance <= MAX_DISTANCE


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    atoms = read(ethanol_paths().train, index=0)
    atoms.pbc = False  # a molecule: the 50 Å box of the file is no cell
    calculator = Calculator(args.checkpoint, device=args.device, dtype=args.dtype)
    atoms.calc = calculator
    rng = np.random.default_rng(args.seed)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)  # no drift of the centre of mass
    ZeroRotation(atoms)  # no rotation of the whole molecule
    atoms.set_constraint(FixCom())  # the centre of mass stays (Langevin's noise moves it)
    check = MoleculeCheck(atoms)
    num_atoms = len(atoms)
    print(f"{calculator} on ethanol ({num_atoms} atoms, {len(check.bonds)} bonds), "
          f"{args.timestep} fs steps, {args.temperature} K")  # fmt: skip
    print(f"{'phase':>8} {'step':>6} {'t/ps':>7} {'T/K':>7} {'Epot/eV':>12} {'Ekin/eV':>8} "
          f"{'Etot/eV':>12} {'steps/s':>8} {'stretch':>7}")  # fmt: skip

    def observe(phase: str, dynamics, clock: list[float]) -> None:
        check.update(atoms)
        step = dynamics.nsteps
        if step % args.print_every == 0:
            now = time.perf_counter()
            rate = f"{args.print_every / (now - clock[0]):8.1f}" if step else f"{'-':>8}"
            clock[0] = now
            epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
            print(f"{phase:>8} {step:6d} {step * args.timestep / 1000:7.3f} "
                  f"{atoms.get_temperature():7.1f} {epot:12.4f} {ekin:8.4f} {epot + ekin:12.4f} "
                  f"{rate} {check.stretch(atoms):7.3f}")  # fmt: skip

    timestep = args.timestep * units.fs
    friction = args.friction / units.fs
    langevin = Langevin(atoms, timestep, temperature_K=args.temperature, friction=friction,
                        fixcm=False, rng=rng)  # fmt: skip
    phases = [("Langevin", langevin), ("NVE", VelocityVerlet(atoms, timestep=timestep))]
    seconds, steps, energies = 0.0, 0, []
    for phase, dynamics in phases:
        clock = [time.perf_counter()]
        dynamics.attach(observe, interval=1, phase=phase, dynamics=dynamics, clock=clock)
        if phase == "NVE":
            dynamics.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
        start = time.perf_counter()
        dynamics.run(args.steps)
        seconds += time.perf_counter() - start
        steps += dynamics.nsteps
        if not check.stable:
            break

    rate = steps / seconds
    drift = (max(energies) - min(energies)) / num_atoms if energies else float("nan")
    bond, name = check.longest_bond
    verdict = "stable" if check.stable else "UNSTABLE: the molecule fell apart"
    print(
        f"ethanol, {args.dtype} on {args.device}: {args.steps} Langevin + {args.steps} NVE steps "
        f"of {args.timestep} fs ({2 * args.steps * args.timestep / 1000:.2f} ps) at "
        f"{args.temperature:.0f} K, {rate:.1f} steps/s; NVE total energy spread "
        f"{drift * 1000:.3f} meV/atom; most stretched bond {name} {bond:.3f} Å "
        f"({check.longest_ratio:.2f} x covalent, limit {BROKEN_FACTOR}); largest distance "
        f"{check.max_distance:.2f} Å (limit {MAX_DISTANCE}): {verdict}"
    )
    return 0 if check.stable else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ConfigError as error:  # a missing or unsuitable checkpoint: one line, status 2
        print(f"md_ethanol.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

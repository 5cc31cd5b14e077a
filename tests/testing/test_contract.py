"""The contract of interatomic potentials (e3nn_pyg.testing.contract): the analytic pair
potential passes it, every check of it fails the potential broken on purpose for it, and the
zoo models (EquivariantNet and ManyBodyNet with their own forces, in float64 and float32, PyG's
SchNet with forces by autograd) pass it."""

import pytest
import torch
from pair_potential import (
    PairContract,
    PairPotential,
    along_x,
    chirality,
    coulomb,
    crosstalk,
    offset_forces,
    per_atom,
    plus,
    silent,
    trap,
)
from torch_geometric.nn.models import SchNet

from e3nn_pyg.models import EquivariantNet, ManyBodyNet, SchNetInteractionGraph
from e3nn_pyg.testing import PotentialContract, evaluate_potential, model_potential


class TestPairPotential(PairContract):
    fd_components = None  # cheap: all of them


class Broken(PairContract):
    """The contract around a given potential (not collected: its name has no Test)."""

    def __init__(self, potential):
        self.broken = potential

    def potential(self):
        return self.broken


@pytest.mark.parametrize(
    ("potential", "check", "match"),
    [
        (silent, "test_samples_are_not_trivial", "forces on the molecules all vanish"),
        (plus(PairPotential(), along_x), "test_symmetries", "molecules: energy/rotation"),
        (plus(PairPotential(), chirality), "test_symmetries", "energy/inversion"),
        (offset_forces, "test_forces_are_finite_differences", "molecules: forces error"),
        (crosstalk, "test_batch_equals_structures_one_by_one", "batch of molecules"),
        (PairPotential(envelope="none"), "test_continuous_across_the_cutoff", "energy error"),
        (
            PairPotential(envelope="linear"),
            "test_continuous_across_the_cutoff",
            "cutoff of 1-6: forces error",
        ),
        (silent, "test_continuous_across_the_cutoff", "feels no force inside the cutoff"),
        (plus(PairPotential(), coulomb), "test_separated_fragments_add_up", "fragments"),
        (plus(PairPotential(), trap), "test_isolated_atoms", "isolated atoms: forces"),
        (PairPotential(wrap=False), "test_wrapped_positions", "energy/unwrapped"),
        (per_atom, "test_supercell_is_extensive", "supercells: energy"),
        (PairPotential(detach_cell=True), "test_stress_is_finite_differences", "stress error"),
    ],
)
def test_the_contract_fails_broken_potentials(potential, check, match):
    with pytest.raises(AssertionError, match=match):
        getattr(Broken(potential), check)()


def make_schnet():
    torch.manual_seed(0)
    graph = SchNetInteractionGraph(3.0)
    return SchNet(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10,
                  cutoff=3.0, interaction_graph=graph).double()  # fmt: skip


class TestEquivariantNet(PotentialContract):
    cutoff = 3.0
    periodic = True

    def potential(self):
        torch.manual_seed(0)
        model = EquivariantNet("8x0e + 4x1o", num_layers=2, cutoff=3.0, radial_hidden=16,
                               derivative=True)  # fmt: skip
        return model_potential(model.double(), stress=True)


class TestSchNet(PotentialContract):
    cutoff = 3.0

    def potential(self):
        return model_potential(make_schnet())


def make_many_body(dtype):
    torch.manual_seed(0)
    model = ManyBodyNet(num_channels=4, num_layers=2, cutoff=3.0, radial_hidden=8,
                        readout_hidden=4, derivative=True)  # fmt: skip
    return model_potential(model.to(dtype), stress=True)


class TestManyBodyNet(PotentialContract):
    cutoff = 3.0
    periodic = True

    def potential(self):
        return make_many_body(torch.float64)


class TestManyBodyNetFloat32(PotentialContract):
    """float32: the exact properties to float32 rounding; the derivatives (finite
    differences need float64) as those of the same weights in float64."""

    cutoff = 3.0
    periodic = True
    dtype = torch.float32
    atol = 2e-5
    jump_atol = 1e-5

    def potential(self):
        return make_many_body(torch.float32)

    def _assert_derivatives_match_float64(self, structures, stress):
        widened = structures._replace(
            pos=structures.pos.double(),
            cell=None if structures.cell is None else structures.cell.double(),
        )
        exact = evaluate_potential(make_many_body(torch.float64), *widened, stress=stress)
        rounded = evaluate_potential(self.potential(), *structures, stress=stress)
        for key, value in rounded.items():
            torch.testing.assert_close(value.double(), exact[key], atol=1e-5, rtol=1e-5)

    def test_forces_are_finite_differences(self):
        for _, structures in self._samples():
            self._assert_derivatives_match_float64(structures, stress=False)

    def test_stress_is_finite_differences(self):
        self._assert_derivatives_match_float64(self.crystals(), stress=True)

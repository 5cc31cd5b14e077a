"""Interaction graphs: the protocol (pos, batch, cell, pbc) -> (edge_index, edge_shift) that
EquivariantNet always calls; the default radius graph, the Verlet graph (the graph of a new
search, bit for bit), a user's graph (the default's numbers; bad outputs refused), and the
adapter that drives PyG's SchNet."""

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import SchNet

from e3nn_pyg.graph import periodic_radius_graph, radius_graph
from e3nn_pyg.models import (
    EquivariantNet,
    RadiusInteractionGraph,
    SchNetInteractionGraph,
    VerletInteractionGraph,
)

SMALL = dict(hidden_Rs="8x0e + 4x1o + 2x2e", num_layers=2, cutoff=3.0, radial_hidden=16)
CUTOFF = SMALL["cutoff"]


def make_model(**kwargs) -> EquivariantNet:
    torch.manual_seed(0)
    return EquivariantNet(**{**SMALL, "derivative": True, **kwargs}).double()


def molecules():
    """Two molecules of 5 and 4 atoms: ``(z, pos, batch, cell, pbc)``."""
    generator = torch.Generator().manual_seed(0)
    z = torch.tensor([1, 6, 7, 8, 9, 6, 1, 1, 8])
    pos = 1.5 * torch.randn(9, 3, generator=generator, dtype=torch.float64)
    return z, pos, torch.tensor([0] * 5 + [1] * 4), None, None


def crystals():
    """A triclinic crystal smaller than the cutoff and a slab: ``(z, pos, batch, cell, pbc)``."""
    generator = torch.Generator().manual_seed(1)
    z = torch.tensor([29, 29, 79, 1, 6, 8, 1])
    triclinic = [[3.1, 0.0, 0.0], [0.7, 2.9, 0.0], [-0.4, 0.5, 3.3]]
    slab = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 9.0]]
    cell = torch.tensor([triclinic, slab], dtype=torch.float64)
    fractions = torch.rand(7, 3, generator=generator, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    pos = (fractions[:, None, :] @ cell[batch]).squeeze(1)  # [N, 3]
    pbc = torch.tensor([[True, True, True], [True, True, False]])
    return z, pos, batch, cell, pbc


STRUCTURES = {"molecules": molecules, "crystals": crystals}


def public_radius_graph(pos, batch, cell, pbc):
    """A user's graph: the public search functions, checked by the model on return."""
    if cell is None:
        return radius_graph(pos, CUTOFF, batch), None
    return periodic_radius_graph(pos, CUTOFF, cell, pbc, batch)


def reversed_edges(pos, batch, cell, pbc):
    """A user's graph returning the default edges in another order, as int32."""
    edge_index, shifts = RadiusInteractionGraph(CUTOFF)(pos, batch, cell, pbc)
    flip = torch.arange(edge_index.shape[1] - 1, -1, -1)
    return edge_index[:, flip].int(), None if shifts is None else shifts[flip]


class SubclassedGraph(RadiusInteractionGraph):
    """A user's subclass of the default: not trusted, its output is checked."""


USER_GRAPHS = {
    "public functions": lambda: public_radius_graph,
    "reordered int32 edges": lambda: reversed_edges,
    "subclass": lambda: SubclassedGraph(CUTOFF),
    "verlet": lambda: VerletInteractionGraph(CUTOFF, skin=0.3),
}


def outputs(model, structure):
    z, pos, batch, cell, pbc = structure
    return model(z, pos, batch, cell, pbc, stress=cell is not None)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("graph", USER_GRAPHS)
def test_a_user_graph_gives_the_numbers_of_the_default(structure, graph):
    data = STRUCTURES[structure]()
    expected = outputs(make_model(), data)
    got = outputs(make_model(interaction_graph=USER_GRAPHS[graph]()), data)
    assert len(got) == len(expected) == (3 if structure == "crystals" else 2)
    for value, reference in zip(got, expected):
        torch.testing.assert_close(value, reference, atol=1e-12, rtol=1e-12)


def test_the_default_graph_is_the_radius_graph_with_shifts():
    _, pos, batch, cell, pbc = crystals()
    graph = RadiusInteractionGraph(CUTOFF)
    edge_index, shifts = graph(pos, batch)
    assert shifts is None and torch.equal(edge_index, radius_graph(pos, CUTOFF, batch))
    edge_index, shifts = graph(pos, batch, cell, pbc)
    expected = periodic_radius_graph(pos, CUTOFF, cell, pbc, batch)
    assert torch.equal(edge_index, expected[0]) and torch.equal(shifts, expected[1])
    assert shifts.dtype == pos.dtype and edge_index.dtype == torch.long
    default = make_model().interaction_graph
    assert type(default) is RadiusInteractionGraph and default.cutoff == CUTOFF


def random_walk(start: torch.Tensor, steps: int, size: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    positions = start.clone()
    for _ in range(steps):
        positions = positions + size * torch.randn(positions.shape, generator=generator)
        yield positions


def cluster():
    """40 carbon atoms, more than the dense search takes: a cell-list or torch_cluster graph."""
    pos = torch.tensor(np.random.default_rng(2).uniform(0, 6.0, (40, 3)))
    return torch.full((40,), 6), pos, None, None, None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("structure", ["molecules", "crystals", "cluster"])
def test_the_verlet_graph_gives_the_graph_of_a_new_search(structure, dtype):
    _, start, batch, cell, pbc = {**STRUCTURES, "cluster": cluster}[structure]()
    cutoff, skin = 2.5, 0.4
    verlet, search = VerletInteractionGraph(cutoff, skin), RadiusInteractionGraph(cutoff)
    cell = None if cell is None else cell.to(dtype)
    crossings, previous = 0, None
    for pos in random_walk(start.to(dtype), 100, 0.04, seed=len(start)):
        edges, shifts = verlet(pos, batch, cell, pbc)  # atoms leave the cell: shifts follow
        expected = search(pos, batch, cell, pbc)
        assert torch.equal(edges, expected[0])
        assert shifts is None if cell is None else torch.equal(shifts, expected[1])
        crossings += previous is not None and previous != edges.shape[1]
        previous = edges.shape[1]
    assert crossings > 10  # pairs crossed the cutoff between searches
    assert 5 < verlet.builds < 50  # searches were reused, and redone as atoms moved
    builds = verlet.builds
    verlet(pos + 0.2, batch, cell, pbc)  # every atom moved by half the skin: a new search
    assert verlet.builds == builds + 1
    if cell is not None:
        verlet(pos + 0.2, batch, cell * 1.01, pbc)  # a strained cell: a new search
        assert verlet.builds == builds + 2


def test_a_verlet_graph_set_on_a_model_follows_a_trajectory():
    z, start, batch, cell, pbc = crystals()
    default, verlet = make_model(), make_model()
    verlet.interaction_graph = VerletInteractionGraph(CUTOFF, skin=0.5)
    for pos in random_walk(start, 8, 0.02, seed=3):
        got = verlet(z, pos, batch, cell, pbc, stress=True)
        expected = default(z, pos, batch, cell, pbc, stress=True)
        for value, reference in zip(got, expected):
            assert torch.equal(value, reference)  # bit for bit: the same graph
    assert verlet.interaction_graph.builds == 1


def shift_along_z(output):
    edge_index, shifts = output
    shifts = shifts.clone()
    shifts[-1, 2] += 1.0  # the slab (structure 1) is not periodic along z
    return edge_index, shifts


BAD_OUTPUTS = {
    "edges only": (False, lambda out: out[0], TypeError, r"must return \(edge_index, edge_shift\)"),
    "three values": (False, lambda out: (*out, None), TypeError, "must return"),
    "float edges": (False, lambda out: (out[0].double(), None), TypeError, "integer tensor"),
    "edge rows": (False, lambda out: (out[0][:1], None), ValueError, r"\[2, num_edges\]"),
    "source too large": (
        False, lambda out: (out[0].index_fill(1, torch.tensor([0]), 9), None), ValueError,
        "source node 9 out of range",
    ),
    "negative target": (
        False, lambda out: (out[0] - torch.tensor([[0], [1]]), None), ValueError,
        "target node -1 out of range",
    ),
    "edge between structures": (
        False, lambda out: (torch.cat([out[0], torch.tensor([[0], [8]])], 1), None), ValueError,
        "joins atoms of different structures: an edge from structure 0 to 1",
    ),
    "weights of SchNet's graph": (
        False, lambda out: (out[0], torch.ones(out[0].shape[1])), ValueError,
        "edge shifts for molecules",
    ),
    "no shifts": (True, lambda out: (out[0], None), ValueError, r"integer cell shifts \[num"),
    "shifts of two axes": (True, lambda out: (out[0], out[1][:, :2]), ValueError, "cell shifts"),
    "shifts of another dtype": (
        True, lambda out: (out[0], out[1].float()), TypeError, "dtype of pos",
    ),
    "long shifts": (True, lambda out: (out[0], out[1].long()), TypeError, "dtype of pos"),
    "fractional shifts": (
        True, lambda out: (out[0], out[1] + 0.5), ValueError, "whole numbers",
    ),
    "non-finite shifts": (
        True, lambda out: (out[0], out[1] / 0.0), ValueError, "whole numbers",
    ),
    "shift along a non-periodic axis": (True, shift_along_z, ValueError, "non-periodic axis"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_OUTPUTS)
def test_bad_outputs_of_a_user_graph_are_refused(case):
    periodic, corrupt, error, match = BAD_OUTPUTS[case]
    data = crystals() if periodic else molecules()

    def corrupted(pos, batch, cell, pbc):
        return corrupt(RadiusInteractionGraph(CUTOFF)(pos, batch, cell, pbc))

    model = make_model(interaction_graph=corrupted)
    with pytest.raises(error, match=match):
        outputs(model, data)


@pytest.mark.parametrize(
    "graph, match",
    [
        (SchNetInteractionGraph(CUTOFF), r"must take \(pos, batch, cell, pbc\)"),
        (lambda pos, batch: None, r"must take \(pos, batch, cell, pbc\)"),
        (3.0, "must be callable"),
    ],
)
def test_graphs_of_another_signature_are_refused_when_the_model_is_built(graph, match):
    with pytest.raises(TypeError, match=match):
        make_model(interaction_graph=graph)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: RadiusInteractionGraph(-1.0), ValueError, "positive"),
        (lambda: RadiusInteractionGraph(3.0, max_num_neighbors=0), ValueError, ">= 1"),
        (lambda: VerletInteractionGraph(3.0, skin=-0.1), ValueError, "skin must be"),
        (lambda: VerletInteractionGraph(float("nan")), ValueError, "positive"),
        (lambda: SchNetInteractionGraph(0.0), ValueError, "positive"),
    ],
)
def test_bad_settings_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("graph", [RadiusInteractionGraph, VerletInteractionGraph])
def test_a_graph_called_on_its_own_checks_its_inputs(graph):
    _, pos, batch, cell, pbc = crystals()
    with pytest.raises(ValueError, match="pbc was given without a cell"):
        graph(CUTOFF)(pos, batch, None, pbc)
    with pytest.raises(ValueError, match="NaN"):
        graph(CUTOFF)(pos * float("nan"), batch)
    with pytest.raises(ValueError, match="sorted"):
        graph(CUTOFF)(pos, batch.flip(0), cell, pbc)


def test_a_neighbour_cap_is_refused_for_periodic_structures():
    z, pos, batch, cell, pbc = crystals()
    with pytest.raises(ValueError, match="need max_num_neighbors=None"):
        make_model(max_num_neighbors=4)(z, pos, batch, cell, pbc)


def test_the_schnet_graph_drives_pyg_schnet():
    z, pos, batch, _, _ = molecules()
    torch.manual_seed(0)
    graph = SchNetInteractionGraph(CUTOFF)
    schnet = SchNet(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10,
                    cutoff=CUTOFF, interaction_graph=graph).double()  # fmt: skip
    pos = pos.clone().requires_grad_(True)
    out = schnet(z, pos, batch)
    out.sum().backward()
    assert out.shape == (2, 1) and pos.grad.abs().sum() > 0
    edge_index, weight = SchNetInteractionGraph(CUTOFF)(pos, batch)
    assert torch.equal(edge_index, radius_graph(pos, CUTOFF, batch))
    torch.testing.assert_close(weight, (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=1))

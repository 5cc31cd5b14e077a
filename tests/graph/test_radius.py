import math
import warnings

import pytest
import torch

import e3nn_pyg.graph.search as search
from e3nn_pyg.graph import NeighborTruncationWarning, radius_graph, validate_batch, validate_pos
from e3nn_pyg.o3 import rand_rotation

BACKENDS = ["torch", "torch_cluster"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "torch_cluster":
        pytest.importorskip("torch_cluster")
    return request.param


def brute_force(pos, r, batch=None, loop=False):
    """All pairs, O(N^2): edge (j -> i) for |pos_j - pos_i|^2 < r^2 in the same molecule."""
    if batch is None:
        batch = torch.zeros(len(pos), dtype=torch.long)
    diff = pos[:, None, :] - pos[None, :, :]  # [N, N, 3], [i, j] = pos_i - pos_j
    d2 = diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2
    mask = (d2 < r * r) & (batch[:, None] == batch[None, :])
    if not loop:
        mask.fill_diagonal_(False)
    target, source = mask.nonzero().t()  # row-major: sorted by target, then source
    return torch.stack([source, target])


def random_batch(sizes, scale=2.0, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    pos = torch.randn(len(batch), 3, generator=generator, dtype=dtype) * scale
    return pos, batch


def box(num_atoms, side, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_atoms, 3, generator=generator, dtype=dtype) * side


def edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


# -- correctness against the O(N^2) reference --------------------------------------------------
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize(
    "sizes",
    [[1], [2], [7], [5, 1, 9], [30, 1, 1, 12], [5, 0, 9, 0, 0, 3], [200], [40, 150, 3]],
    ids=lambda s: "x".join(map(str, s)),
)
def test_matches_brute_force(backend, sizes, loop):
    pos, batch = random_batch(sizes)
    expected = brute_force(pos, 2.5, batch, loop)
    out = radius_graph(pos, 2.5, batch, loop=loop, backend=backend)
    assert out.dtype == torch.long
    assert torch.equal(out, expected)


@pytest.mark.parametrize("sizes", [[7], [5, 1, 9], [200]], ids=lambda s: "x".join(map(str, s)))
def test_matches_brute_force_on_every_device(device, sizes):
    pos, batch = random_batch(sizes)
    out = radius_graph(pos.to(device), 2.5, batch.to(device))
    assert out.device.type == device.type
    assert torch.equal(out.cpu(), brute_force(pos, 2.5, batch))


def test_large_box_matches_brute_force(backend):
    """1,000 atoms in one molecule: the cell list of the torch backend."""
    pos = box(1000, 20.0)
    assert torch.equal(radius_graph(pos, 5.0, backend=backend), brute_force(pos, 5.0))


def test_small_chunks(monkeypatch):
    """Many target blocks and pair chunks give the same graph as one of each."""
    pos, batch = random_batch([300, 2, 50, 150], scale=3.0)
    expected = brute_force(pos, 3.0, batch, loop=True)
    monkeypatch.setattr(search, "_TARGET_BLOCK", 61)
    monkeypatch.setattr(search, "_PAIR_CHUNK", 500)
    assert torch.equal(radius_graph(pos, 3.0, batch, loop=True, backend="torch"), expected)


def test_dense_and_cell_list_agree(monkeypatch):
    """The two searches of the torch backend, on the same batch."""
    pos, batch = random_batch([20, 1, 90, 45], scale=3.0)
    monkeypatch.setattr(search, "_DENSE_MAX_ATOMS", 10**9)
    dense = radius_graph(pos, 3.0, batch, backend="torch")
    monkeypatch.setattr(search, "_DENSE_MAX_ATOMS", 0)
    cells = radius_graph(pos, 3.0, batch, backend="torch")
    assert torch.equal(dense, cells)
    assert torch.equal(dense, brute_force(pos, 3.0, batch))


def test_far_apart_atoms_and_many_molecules(monkeypatch):
    """Coordinates spanning 1e7 cutoffs, and a batch with gaps in the molecule indices."""
    monkeypatch.setattr(search, "_DENSE_MAX_ATOMS", 0)
    pos = torch.tensor(
        [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1e7, 0.0, 0.0], [1e7, 0.5, 0.0], [3.0, 3.0, 3.0]],
        dtype=torch.float64,
    )
    out = radius_graph(pos, 1.0, backend="torch")
    assert edge_set(out) == {(0, 1), (1, 0), (2, 3), (3, 2)}
    batch = torch.tensor([0, 0, 4, 4, 9])
    assert torch.equal(radius_graph(pos, 1.0, batch, backend="torch"), out)


def test_strict_cutoff(backend):
    """|p_i - p_j| = r exactly is not an edge; the comparison is strict like torch_cluster's."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert radius_graph(pos, 1.0, backend=backend).size(1) == 0
    assert edge_set(radius_graph(pos, 1.0001, backend=backend)) == {(0, 1), (1, 0)}


def test_sorted_and_symmetric(backend):
    pos, batch = random_batch([40, 25, 60])
    src, dst = radius_graph(pos, 2.0, batch, backend=backend)
    key = dst * len(pos) + src
    assert bool((key[1:] > key[:-1]).all())  # sorted by target, then source, no duplicates
    assert edge_set(torch.stack([src, dst])) == edge_set(torch.stack([dst, src]))


# -- the two backends ---------------------------------------------------------------------------
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_identical(loop, dtype):
    pytest.importorskip("torch_cluster")
    generator = torch.Generator().manual_seed(1)
    sizes = torch.randint(1, 30, (128,), generator=generator).tolist()
    cases = [
        random_batch(sizes, dtype=dtype, seed=2),
        random_batch([1, 150, 0, 1, 90], dtype=dtype, seed=3),
        (box(1000, 20.0, dtype=dtype), None),
    ]
    for pos, batch in cases:
        a = radius_graph(pos, 4.0, batch, loop=loop, backend="torch")
        b = radius_graph(pos, 4.0, batch, loop=loop, backend="torch_cluster")
        assert torch.equal(a, b)
        with pytest.warns(NeighborTruncationWarning):
            c = radius_graph(pos, 4.0, batch, loop=loop, max_num_neighbors=5, backend="torch")
        with pytest.warns(NeighborTruncationWarning):
            d = radius_graph(
                pos, 4.0, batch, loop=loop, max_num_neighbors=5, backend="torch_cluster"
            )
        assert torch.equal(c, d)


def test_torch_cluster_missing(monkeypatch):
    monkeypatch.setattr(search, "_torch_cluster", lambda: None)
    pos = box(300, 8.0)
    with pytest.raises(ImportError, match="pip install torch-cluster"):
        radius_graph(pos, 2.0, backend="torch_cluster")
    assert torch.equal(radius_graph(pos, 2.0, backend="auto"), brute_force(pos, 2.0))


def test_auto_rule(monkeypatch):
    pytest.importorskip("torch_cluster")
    calls = []
    original = search._radius_torch_cluster

    def spy(*args):
        calls.append(args[0].size(0))
        return original(*args)

    monkeypatch.setattr(search, "_radius_torch_cluster", spy)
    small = search.AUTO_TORCH_MAX_ATOMS
    pos, batch = random_batch([small, small])
    radius_graph(pos, 2.0, batch)
    assert calls == []
    pos, batch = random_batch([small + 1, 3])
    radius_graph(pos, 2.0, batch)
    assert calls == [small + 4]
    radius_graph(pos.half(), 2.0, batch)  # not float32 / float64: torch
    assert calls == [small + 4]


# -- options ------------------------------------------------------------------------------------
def test_loop(backend):
    pos, batch = random_batch([6, 1, 4])
    without = radius_graph(pos, 2.0, batch, backend=backend)
    with_loops = radius_graph(pos, 2.0, batch, loop=True, backend=backend)
    loops = {(i, i) for i in range(len(pos))}
    assert edge_set(with_loops) == edge_set(without) | loops
    assert not edge_set(without) & loops


def test_flow(backend):
    pos, batch = random_batch([12, 9])
    with pytest.warns(NeighborTruncationWarning):
        forward = radius_graph(pos, 2.0, batch, max_num_neighbors=3, backend=backend)
    with pytest.warns(NeighborTruncationWarning):
        backward = radius_graph(
            pos, 2.0, batch, max_num_neighbors=3, flow="target_to_source", backend=backend
        )
    assert torch.equal(backward, forward.flip(0))
    # The cap applies to the node that gathers: row 1 for source_to_target, row 0 otherwise.
    assert int(torch.bincount(backward[0]).max()) <= 3


def test_cap_keeps_nearest(backend):
    pos, batch = random_batch([50, 30], scale=1.5)
    full = brute_force(pos, 3.0, batch)
    cap = 4
    with pytest.warns(NeighborTruncationWarning, match=r"dropped edges of \d+ of 80 nodes"):
        out = radius_graph(pos, 3.0, batch, max_num_neighbors=cap, backend=backend)
    expected = set()
    for i in range(len(pos)):
        sources = full[0, full[1] == i]
        d = (pos[sources] - pos[i]).norm(dim=1)
        expected |= {(int(j), i) for j in sources[torch.argsort(d)[:cap]]}
    assert edge_set(out) == expected
    assert torch.equal(out[1], torch.sort(out[1])[0])


def test_cap_counts_truncated_nodes():
    # Node 0 has neighbours at distances 1, 2, 3; every other node has at most 2 neighbours.
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]])
    with pytest.warns(NeighborTruncationWarning, match="dropped edges of 1 of 4 nodes"):
        out = radius_graph(pos, 3.1, max_num_neighbors=2, backend="torch")
    assert edge_set(out) == {(1, 0), (2, 0), (0, 1), (2, 1), (0, 2), (1, 2), (0, 3)}


def test_cap_ties_and_self_loop():
    # Four sources at the same distance: the lower indices win; a self-loop counts and wins.
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    with pytest.warns(NeighborTruncationWarning):
        out = radius_graph(pos, 1.5, max_num_neighbors=2, backend="torch")
    assert out[0, out[1] == 0].tolist() == [1, 2]
    with pytest.warns(NeighborTruncationWarning):
        out = radius_graph(pos, 1.5, loop=True, max_num_neighbors=2, backend="torch")
    assert out[0, out[1] == 0].tolist() == [0, 1]


def test_no_warning_when_cap_not_reached(backend):
    pos, batch = random_batch([10, 8])
    exact = radius_graph(pos, 2.0, batch, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capped = radius_graph(pos, 2.0, batch, max_num_neighbors=10, backend=backend)
    assert torch.equal(exact, capped)


def test_default_is_exact(backend):
    """More than 32 neighbours (torch_cluster's default cap) are all kept."""
    pos = box(200, 3.0)
    out = radius_graph(pos, 10.0, backend=backend)
    assert out.size(1) == 200 * 199


# -- invariance ---------------------------------------------------------------------------------
def test_rotation_translation_invariance(backend):
    pos, batch = random_batch([60, 1, 40, 25], scale=2.0)
    generator = torch.Generator().manual_seed(5)
    rotation = rand_rotation(dtype=torch.float64, generator=generator)  # [3, 3]
    shift = torch.randn(3, dtype=torch.float64, generator=generator) * 10
    moved = pos @ rotation.T + shift
    for cap in (None, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NeighborTruncationWarning)
            a = radius_graph(pos, 2.0, batch, max_num_neighbors=cap, backend=backend)
            b = radius_graph(moved, 2.0, batch, max_num_neighbors=cap, backend=backend)
        assert torch.equal(a, b)


# -- small and degenerate inputs ----------------------------------------------------------------
def test_empty(backend):
    out = radius_graph(torch.empty(0, 3), 1.0, backend=backend)
    assert out.shape == (2, 0) and out.dtype == torch.long
    out = radius_graph(torch.empty(0, 3), 1.0, torch.empty(0, dtype=torch.long), loop=True)
    assert out.shape == (2, 0) and out.dtype == torch.long


def test_single_atom(backend):
    pos = torch.tensor([[1.0, 2.0, 3.0]])
    out = radius_graph(pos, 1.0, backend=backend)
    assert out.shape == (2, 0) and out.dtype == torch.long
    assert radius_graph(pos, 1.0, loop=True, backend=backend).tolist() == [[0], [0]]


def test_duplicate_positions(backend):
    pos = torch.zeros(3, 3)
    assert edge_set(radius_graph(pos, 0.1, backend=backend)) == {
        (j, i) for i in range(3) for j in range(3) if i != j
    }


def test_int32_batch_and_requires_grad():
    pos, batch = random_batch([5, 7])
    pos.requires_grad_(True)
    out = radius_graph(pos, 2.0, batch.int())
    assert torch.equal(out, brute_force(pos.detach(), 2.0, batch))
    assert not out.requires_grad


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pos, error, match",
    [
        ([[0.0, 0.0, 0.0]], TypeError, "torch.Tensor"),
        (torch.zeros(4, 3, dtype=torch.long), TypeError, "floating-point"),
        (torch.zeros(4, 2), ValueError, r"shape \[N, 3\]"),
        (torch.zeros(4), ValueError, r"shape \[N, 3\]"),
        (torch.zeros(2, 4, 3), ValueError, r"shape \[N, 3\]"),
        (torch.tensor([[0.0, 0.0, math.nan], [0.0, 0.0, 0.0]]), ValueError, "NaN or inf.* 1 of 2"),
        (torch.tensor([[0.0, 0.0, 0.0], [math.inf, 0.0, 0.0]]), ValueError, "NaN or inf"),
    ],
)
def test_bad_pos(pos, error, match):
    with pytest.raises(error, match=match):
        radius_graph(pos, 1.0)
    with pytest.raises(error, match=match):
        validate_pos(pos)


def test_validate_pos_name():
    with pytest.raises(ValueError, match=r"^edge_vec must have shape"):
        validate_pos(torch.zeros(2, 2), name="edge_vec")


@pytest.mark.parametrize(
    "batch, error, match",
    [
        ([0, 0, 1], TypeError, "torch.Tensor"),
        (torch.tensor([0.0, 0.0, 1.0]), TypeError, "integer tensor"),
        (torch.tensor([False, False, True]), TypeError, "integer tensor"),
        (torch.tensor([[0, 0, 1]]), ValueError, "1-D"),
        (torch.tensor([0, 0]), ValueError, "2 entries but there are 3 nodes"),
        (torch.tensor([0, 0, 1, 1]), ValueError, "4 entries but there are 3 nodes"),
        (torch.tensor([-1, 0, 0]), ValueError, "non-negative"),
        (torch.tensor([0, 1, 0]), ValueError, "sorted ascending"),
    ],
)
def test_bad_batch(batch, error, match):
    with pytest.raises(error, match=match):
        radius_graph(torch.zeros(3, 3), 1.0, batch)
    with pytest.raises(error, match=match):
        validate_batch(batch, 3)


def test_batch_device_mismatch():
    with pytest.raises(ValueError, match="batch is on cpu but pos is on meta"):
        validate_batch(torch.zeros(3, dtype=torch.long), 3, device=torch.device("meta"))
    with pytest.raises(ValueError, match="batch is on meta but pos is on cpu"):
        radius_graph(torch.zeros(3, 3), 1.0, torch.zeros(3, dtype=torch.long, device="meta"))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"r": 0.0}, ValueError, "positive and finite"),
        ({"r": -1.0}, ValueError, "positive and finite"),
        ({"r": math.inf}, ValueError, "positive and finite"),
        ({"r": math.nan}, ValueError, "positive and finite"),
        ({"r": "1.0"}, TypeError, "real number"),
        ({"r": True}, TypeError, "real number"),
        ({"r": 1.0, "max_num_neighbors": 0}, ValueError, "max_num_neighbors must be an int >= 1"),
        ({"r": 1.0, "max_num_neighbors": 2.0}, TypeError, "max_num_neighbors must be an int"),
        ({"r": 1.0, "backend": "kdtree"}, ValueError, "backend must be one of .*, got 'kdtree'"),
        ({"r": 1.0, "flow": "both"}, ValueError, "flow must be one of .*, got 'both'"),
        ({"r": 1.0, "loop": 1}, TypeError, "loop must be a bool"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        radius_graph(torch.zeros(3, 3), **kwargs)


def test_radius_as_tensor():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert radius_graph(pos, torch.tensor(1.5)).tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_opcheck_of_the_radius_search_operator(backend):
    """Schema, fake kernel (a data-dependent number of edges) and dispatch of the operator
    that torch.compile and torch.export keep in their graphs."""
    from e3nn_pyg.compilation import compile_settings

    pos = 3 * torch.rand(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = torch.tensor([0] * 5 + [1] * 7)
    with compile_settings():  # (its fake kernel refuses a compilation without them)
        torch.library.opcheck(
            torch.ops.e3nn_pyg.radius_search.default, (pos, batch, 2.0, False, None, backend)
        )

"""periodic_radius_graph against a brute-force image search, and its contract: symmetric,
exact, invariant under wrapping, batched over different cells, validated inputs."""

import math

import pytest
import torch

import e3nn_pyg.graph.search as search
from e3nn_pyg.graph import (
    cartesian_shifts,
    periodic_radius_graph,
    radius_graph,
    validate_cell,
)

ALL = [True, True, True]


def shift_vectors(shifts, cell):
    """``shifts @ cell`` summed in the order the graph documents (exact negation)."""
    return shifts[:, 0:1] * cell[0] + shifts[:, 1:2] * cell[1] + shifts[:, 2:3] * cell[2]


def brute_force(pos, r, cell, pbc, batch=None, loop=False):
    """Every (source, target, shift) with |p_j - p_i + s cell|^2 < r^2, shifts enumerated
    from an independent bound: |s cell| < r + |p_j - p_i|, and |s_k| <= |s cell| |b_k|."""
    if batch is None:
        batch = torch.zeros(len(pos), dtype=torch.long)
    cell = cell.expand(int(batch.max()) + 1, 3, 3) if cell.dim() == 2 else cell
    pbc = torch.as_tensor(pbc).expand(cell.shape[0], 3)
    r2 = torch.tensor(r * r, dtype=pos.dtype)
    sources, targets, shifts = [], [], []
    for g in range(cell.shape[0]):
        atoms = torch.nonzero(batch == g).squeeze(1)
        if len(atoms) == 0:
            continue
        p = pos[atoms]
        span = float((p[:, None] - p[None]).norm(dim=-1).max())
        rows = torch.where(pbc[g][:, None], cell[g], torch.eye(3, dtype=cell.dtype))
        reciprocal = torch.linalg.inv(rows.double()).norm(dim=0)  # [3]
        bound = [math.ceil((r + span) * float(reciprocal[k])) if pbc[g, k] else 0
                 for k in range(3)]  # fmt: skip
        grid = torch.cartesian_prod(*(torch.arange(-b, b + 1) for b in bound)).to(pos.dtype)
        for chunk in grid.split(max(1, 2**21 // len(atoms) ** 2)):  # [K, 3] shifts
            vec = (p[None, None, :, :] - p[None, :, None, :]) + shift_vectors(chunk, cell[g])[
                :, None, None, :
            ]  # [K, i, j, 3]
            d2 = vec[..., 0] * vec[..., 0] + vec[..., 1] * vec[..., 1] + vec[..., 2] * vec[..., 2]
            mask = d2 < r2  # [K, i, j]
            if not loop:
                mask &= ~((chunk == 0).all(1)[:, None, None] & torch.eye(len(atoms), dtype=bool))
            k, i, j = torch.nonzero(mask).t()
            sources.append(atoms[j])
            targets.append(atoms[i])
            shifts.append(chunk[k])
    source, target, shift = torch.cat(sources), torch.cat(targets), torch.cat(shifts)
    order = torch.arange(len(source))
    for column in (shift[:, 2], shift[:, 1], shift[:, 0], target * len(pos) + source):
        order = order[torch.argsort(column[order], stable=True)]
    return torch.stack([source[order], target[order]]), shift[order]


def random_cell(generator, low, high, dtype=torch.float64):
    """A triclinic cell: rows of lengths about U(low, high), tilted by up to half of them."""
    lengths = low + (high - low) * torch.rand(3, generator=generator, dtype=dtype)
    tilt = (torch.rand(3, 3, generator=generator, dtype=dtype) - 0.5) * lengths[:, None]
    return torch.diag(lengths) + tilt.triu(1) + 0.5 * tilt.tril(-1)


def random_structures(sizes, low, high, seed=0, dtype=torch.float64, frac_range=(0.0, 1.0)):
    """Random cells and pbc, atoms at fractional coordinates drawn in ``frac_range``."""
    generator = torch.Generator().manual_seed(seed)
    cells = torch.stack([random_cell(generator, low, high, dtype) for _ in sizes])
    pbc = torch.rand(len(sizes), 3, generator=generator) < 0.7
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    a, b = frac_range
    frac = a + (b - a) * torch.rand(len(batch), 3, generator=generator, dtype=dtype)
    pos = (frac[:, None, :] @ cells[batch]).squeeze(1)
    return pos, cells, pbc, batch


def edge_vectors(pos, edge_index, shifts, cell, batch=None):
    return (pos[edge_index[0]] - pos[edge_index[1]]) + cartesian_shifts(
        shifts, cell, edge_index, batch
    )


def assert_same(out, expected):
    assert torch.equal(out[0], expected[0])
    assert out[1].dtype == expected[1].dtype
    assert torch.equal(out[1], expected[1])


# -- against the brute-force image search ------------------------------------------------------
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize(
    "low, high", [(1.0, 2.0), (2.0, 4.0), (5.0, 9.0)], ids=["tiny", "small", "large"]
)
def test_matches_brute_force_on_random_triclinic_cells(low, high, loop):
    """Cells smaller than the cutoff (several images of one atom), about its size, larger;
    random mixed pbc; a batch of structures with different cells."""
    for seed in range(4):
        pos, cell, pbc, batch = random_structures([1, 4, 7, 2], low, high, seed=seed)
        out = periodic_radius_graph(pos, 3.0, cell, pbc, batch, loop=loop)
        assert_same(out, brute_force(pos, 3.0, cell, pbc, batch, loop=loop))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_brute_force_unwrapped_and_in_float32(dtype):
    """Atoms up to two cells outside their cell, in both dtypes (the comparison is made on
    the vector in the dtype of pos, as the models compute it)."""
    pos, cell, pbc, batch = random_structures(
        [3, 5, 1], 2.0, 5.0, seed=7, dtype=dtype, frac_range=(-2.0, 3.0)
    )
    out = periodic_radius_graph(pos, 3.5, cell, pbc, batch)
    assert out[0].dtype == torch.long and out[1].dtype == dtype
    assert_same(out, brute_force(pos, 3.5, cell, pbc, batch))


def test_bulk_cell_of_hundreds_of_atoms():
    """300 atoms in a 15 Å triclinic cell at a 5 Å cutoff: the cell list, against brute force."""
    generator = torch.Generator().manual_seed(3)
    cell = torch.tensor([[15.0, 0, 0], [3.0, 14.0, 0], [-2.0, 1.5, 15.5]], dtype=torch.float64)
    pos = torch.rand(300, 3, generator=generator, dtype=torch.float64) @ cell
    out = periodic_radius_graph(pos, 5.0, cell, ALL)
    assert out[0].shape[1] > 300 * 30  # about 45 neighbours per atom
    assert_same(out, brute_force(pos, 5.0, cell, torch.tensor(ALL)))


def test_matches_on_every_device(device):
    pos, cell, pbc, batch = random_structures([4, 6, 1], 1.5, 3.0, seed=3)
    expected = periodic_radius_graph(pos, 3.0, cell, pbc, batch)
    moved = [t.to(device) for t in (pos, cell, pbc, batch)]
    out = periodic_radius_graph(moved[0], 3.0, moved[1], moved[2], moved[3])
    assert out[0].device.type == device.type and out[1].device.type == device.type
    assert_same((out[0].cpu(), out[1].cpu()), expected)


def test_small_blocks_and_chunks(monkeypatch):
    """Many target blocks and pair chunks give the same graph as one of each."""
    pos, cell, pbc, batch = random_structures([6, 1, 9], 1.5, 4.0, seed=11)
    expected = periodic_radius_graph(pos, 3.0, cell, pbc, batch)
    monkeypatch.setattr(search, "_TARGET_BLOCK", 3)
    monkeypatch.setattr(search, "_PAIR_CHUNK", 40)
    assert_same(periodic_radius_graph(pos, 3.0, cell, pbc, batch), expected)


# -- cells smaller than the cutoff, mixed pbc ---------------------------------------------------
def test_one_atom_sees_its_own_images():
    """A simple cubic lattice of side 1 at r = 2.5: every lattice point closer than 2.5."""
    pos = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64)
    edge_index, shifts = periodic_radius_graph(pos, 2.5, torch.eye(3, dtype=torch.float64), ALL)
    grid = torch.cartesian_prod(*(torch.arange(-2, 3),) * 3)
    points = {tuple(s) for s in grid.tolist() if 0 < sum(x * x for x in s) < 6.25}
    assert edge_index.eq(0).all()
    assert {tuple(map(int, s)) for s in shifts.tolist()} == points and len(shifts) == len(points)
    with_loop = periodic_radius_graph(pos, 2.5, torch.eye(3, dtype=torch.float64), ALL, loop=True)
    assert len(with_loop[1]) == len(points) + 1 and not with_loop[1].abs().sum(1).min()


def test_mixed_pbc_takes_no_images_along_open_axes():
    """A slab periodic in x and y: no shift along z; ASE's zero third row is accepted and
    gives the same graph as any other third row."""
    generator = torch.Generator().manual_seed(5)
    cell = torch.tensor([[2.0, 0.0, 0.0], [0.8, 2.2, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    pos = torch.rand(5, 3, generator=generator, dtype=torch.float64) * torch.tensor([2, 2, 6])
    pbc = [True, True, False]
    edge_index, shifts = periodic_radius_graph(pos, 4.5, cell, pbc)
    assert shifts[:, 2].eq(0).all() and shifts[:, :2].abs().max() >= 2
    for third in ([0.0, 0.0, 7.0], [1.0, -3.0, 0.5]):
        other = cell.clone()
        other[2] = torch.tensor(third)
        assert_same(periodic_radius_graph(pos, 4.5, other, pbc), (edge_index, shifts))
    assert_same((edge_index, shifts), brute_force(pos, 4.5, cell, torch.tensor(pbc)))


def test_no_periodic_axis_is_the_radius_graph():
    pos, _, _, batch = random_structures([8, 5], 3.0, 5.0, seed=2)
    edge_index, shifts = periodic_radius_graph(
        pos, 2.5, torch.zeros(2, 3, 3, dtype=torch.float64), False, batch
    )
    assert torch.equal(edge_index, radius_graph(pos, 2.5, batch)) and not shifts.any()


# -- the contract ------------------------------------------------------------------------------
def test_symmetric_with_exactly_opposite_vectors():
    pos, cell, pbc, batch = random_structures([5, 3, 8], 1.5, 3.5, seed=4, frac_range=(-1, 2))
    edge_index, shifts = periodic_radius_graph(pos, 3.0, cell, pbc, batch)
    vec = edge_vectors(pos, edge_index, shifts, cell, batch)
    forward = {(j, i, *s): v for (j, i), s, v in
               zip(edge_index.t().tolist(), shifts.long().tolist(), vec.tolist())}  # fmt: skip
    assert len(forward) == edge_index.shape[1]  # no duplicate (source, target, shift)
    for (j, i, *s), v in forward.items():
        assert forward[(i, j, *(-x for x in s))] == [-x for x in v]
    assert (vec.norm(dim=1) < 3.0).all()


def test_wrapping_changes_the_shifts_not_the_edge_vectors():
    pos, cell, pbc, batch = random_structures([6, 4], 2.0, 4.0, seed=8)
    generator = torch.Generator().manual_seed(9)
    moves = torch.randint(-3, 4, pos.shape, generator=generator) * pbc[batch]  # [N, 3]
    moved = pos + (moves.double()[:, None, :] @ cell[batch]).squeeze(1)
    wrapped = periodic_radius_graph(pos, 3.0, cell, pbc, batch)
    unwrapped = periodic_radius_graph(moved, 3.0, cell, pbc, batch)
    # pos_j + s cell = moved_j + (s - m_j + m_i) cell: the same edges, shifted shifts
    src, dst = wrapped[0]
    expected = wrapped[1] - moves[src] + moves[dst]
    assert torch.equal(unwrapped[0], wrapped[0])
    order = lambda e, s: torch.tensor(sorted(zip(*e.tolist(), *s.long().t().tolist())))  # noqa: E731
    assert torch.equal(order(*unwrapped), order(wrapped[0], expected))
    torch.testing.assert_close(
        edge_vectors(moved, unwrapped[0], unwrapped[1], cell, batch).sort(0).values,
        edge_vectors(pos, *wrapped, cell, batch).sort(0).values, atol=1e-12, rtol=0,
    )  # fmt: skip


def test_batch_equals_structures_one_by_one():
    pos, cell, pbc, batch = random_structures([4, 1, 6], 1.5, 3.0, seed=6)
    edge_index, shifts = periodic_radius_graph(pos, 2.5, cell, pbc, batch)
    offset = 0
    for g in range(3):
        atoms = batch == g
        one = periodic_radius_graph(pos[atoms], 2.5, cell[g], pbc[g])
        mine = edge_index[1] - offset < int(atoms.sum())
        mine &= edge_index[1] >= offset
        assert torch.equal(edge_index[:, mine] - offset, one[0])
        assert torch.equal(shifts[mine], one[1])
        offset += int(atoms.sum())


def test_one_cell_for_every_structure_and_trailing_empty_structures():
    pos, cell, pbc, batch = random_structures([3, 5], 2.0, 4.0, seed=1)
    shared = periodic_radius_graph(pos, 3.0, cell[0], pbc[0], batch)
    assert_same(shared, periodic_radius_graph(pos, 3.0, cell[[0, 0]], pbc[[0, 0]], batch))
    padded = torch.cat([cell, torch.eye(3, dtype=torch.float64)[None]])  # a third, without atoms
    assert_same(
        periodic_radius_graph(pos, 3.0, padded, True, batch),
        periodic_radius_graph(pos, 3.0, cell, True, batch),
    )


def test_rotation_and_translation_keep_the_graph():
    pos, cell, pbc, batch = random_structures([5, 7], 2.0, 4.0, seed=12)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0),
                                           dtype=torch.float64))[0]  # fmt: skip
    edge_index, shifts = periodic_radius_graph(pos, 3.0, cell, pbc, batch)
    moved = periodic_radius_graph(pos @ rotation.T + 0.3, 3.0, cell @ rotation.T, pbc, batch)
    assert torch.equal(moved[0], edge_index) and torch.equal(moved[1], shifts)


def test_empty_and_detached():
    empty = periodic_radius_graph(torch.zeros(0, 3), 2.0, torch.eye(3), ALL)
    assert empty[0].shape == (2, 0) and empty[1].shape == (0, 3)
    pos = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    cell = 2 * torch.eye(3, dtype=torch.float64).requires_grad_()
    edge_index, shifts = periodic_radius_graph(pos, 2.5, cell, ALL)
    assert not shifts.requires_grad and edge_index.shape[1] > 0


def test_cartesian_shifts_carry_the_cell_gradient():
    cell = torch.tensor([[2.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.5, 4.0]], requires_grad=True)
    shifts = torch.tensor([[1.0, -2.0, 1.0], [-1.0, 2.0, -1.0]])
    out = cartesian_shifts(shifts, cell, torch.tensor([[0, 1], [1, 0]]))
    assert torch.equal(out[0], -out[1])
    torch.testing.assert_close(out[0], shifts[0] @ cell.detach())
    (gradient,) = torch.autograd.grad(out[0, 1], cell)
    assert torch.equal(gradient[:, 1], shifts[0]) and not gradient[:, [0, 2]].any()
    with pytest.raises(ValueError, match=r"\[E, 3\]"):
        cartesian_shifts(shifts[:, :2], cell, torch.tensor([[0, 1], [1, 0]]))


# -- validation --------------------------------------------------------------------------------
POS = torch.zeros(2, 3)


@pytest.mark.parametrize(
    "cell, pbc, batch, error, match",
    [
        ([[1.0, 0, 0]] * 3, ALL, None, TypeError, "torch.Tensor"),
        (torch.eye(3, dtype=torch.long), ALL, None, TypeError, "floating-point"),
        (torch.eye(2), ALL, None, ValueError, r"\[num_graphs, 3, 3\] or \[3, 3\]"),
        (torch.eye(3).double(), ALL, None, TypeError, "cell is torch.float64 but pos is"),
        (torch.eye(3).to("meta"), ALL, None, ValueError, "cell is on meta"),
        (torch.eye(3) * math.nan, ALL, None, ValueError, "NaN or infinite"),
        (torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]]), ALL, None, ValueError,
         r"structure 0 is singular.*linearly dependent"),
        (torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 1]]), ALL, None, ValueError, "singular"),
        (torch.eye(3), [1, 1, 1], None, TypeError, "bool tensor"),
        (torch.eye(3), "xyz", None, TypeError, "pbc must be a bool tensor"),
        (torch.eye(3), [True, True], None, ValueError, r"pbc must have shape"),
        (torch.eye(3).expand(2, 3, 3), torch.ones(3, 3, dtype=torch.bool), torch.tensor([0, 1]),
         ValueError, "cell holds 2 structures but pbc holds 3"),
        (torch.eye(3).expand(2, 3, 3), ALL, None, ValueError, "no batch was given"),
        (torch.eye(3).expand(1, 3, 3), ALL, torch.tensor([0, 1]), ValueError,
         "batch holds structure 1 but there are cells for 1 structures"),
    ],
)  # fmt: skip
def test_bad_cell_and_pbc(cell, pbc, batch, error, match):
    with pytest.raises(error, match=match):
        periodic_radius_graph(POS, 1.0, cell, pbc, batch)
    with pytest.raises(error, match=match):
        validate_cell(cell, pbc, POS, batch)


def test_a_singular_but_open_axis_is_fine():
    """Only the rows of periodic axes need to be independent."""
    cell = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]])
    periodic_radius_graph(POS, 1.0, cell, [True, True, False])


def test_bad_positions_radius_and_loop():
    with pytest.raises(ValueError, match="NaN or infinite"):
        periodic_radius_graph(torch.tensor([[0.0, math.nan, 0.0]]), 1.0, torch.eye(3), ALL)
    with pytest.raises(ValueError, match="positive and finite"):
        periodic_radius_graph(POS, -1.0, torch.eye(3), ALL)
    with pytest.raises(TypeError, match="loop must be a bool"):
        periodic_radius_graph(POS, 1.0, torch.eye(3), ALL, loop=1)
    with pytest.raises(ValueError, match="sorted"):
        periodic_radius_graph(torch.zeros(3, 3), 1.0, torch.eye(3), ALL, torch.tensor([1, 0, 1]))


def test_a_cell_far_smaller_than_the_cutoff_is_refused_before_the_search():
    """A cell given in nm where Å were meant: 2**26 images would not fit in memory."""
    with pytest.raises(ValueError, match=r"periodic images .* faces of a cell are 0.001 apart"):
        periodic_radius_graph(POS, 5.0, 1e-3 * torch.eye(3), ALL)


def test_opcheck_of_the_periodic_search_operator():
    """Schema, fake kernel (a data-dependent number of edges) and dispatch of the operator
    that torch.compile and torch.export keep in their graphs."""
    from e3nn_pyg.compilation import compile_settings

    pos = 3 * torch.rand(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = torch.tensor([0] * 5 + [1] * 7)
    cell = 3.0 * torch.eye(3, dtype=torch.float64).expand(2, 3, 3).contiguous()
    pbc = torch.tensor([[True, True, True], [True, False, True]])
    with compile_settings():  # (its fake kernel refuses a compilation without them)
        torch.library.opcheck(
            torch.ops.e3nn_pyg.periodic_radius_search.default, (pos, batch, cell, pbc, 2.0, False)
        )

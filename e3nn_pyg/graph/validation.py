r"""The input checks of the graph functions, shared with the convolution and the models.

:func:`validate_pos`, :func:`validate_batch` and :func:`validate_cell` check tensors (each
check of values is one host synchronisation eagerly, a graph assertion under
:func:`torch.compile`, see :mod:`e3nn_pyg.checks`); ``_validate_options`` checks the plain
options of a radius graph without reading any tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..checks import (
    require,
    require_bool,
    require_choice,
    require_floating,
    require_int,
    require_positive,
)
from .search import BACKENDS, _import_torch_cluster

__all__ = ["validate_batch", "validate_cell", "validate_pos"]

FLOWS = ("source_to_target", "target_to_source")
# Periodic cells whose lattice vectors span less than this fraction of the volume of
# orthogonal vectors of the same lengths are refused as singular.
_MIN_CELL_SINE = 1e-6
_SORTED_BATCH = (
    "sorted ascending (the nodes of each molecule contiguous, as in "
    "torch_geometric.data.Batch); sort the nodes by molecule first"
)


def validate_pos(pos: Tensor, name: str = "pos") -> None:
    r"""Check that ``pos`` holds ``N`` finite points of 3D space.

    Args:
        pos (torch.Tensor): positions, shape ``[N, 3]``, floating dtype.
        name (str, optional): how to call the tensor in error messages. (default: ``"pos"``)

    Raises:
        TypeError: if ``pos`` is not a floating-point tensor.
        ValueError: if its shape is not ``[N, 3]`` or it holds NaN or infinite values.
    """
    require_floating(pos, name)
    if pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {list(pos.shape)}")
    if pos.is_meta:  # no values to check
        return
    finite = torch.isfinite(pos)  # [N, 3]

    def detail() -> str:
        bad = int((~finite).any(dim=1).sum())
        return f"{name} holds NaN or infinite coordinates in {bad} of {len(pos)} rows"

    require(finite.all(), ValueError, f"{name} holds NaN or infinite coordinates", detail)


def validate_batch(batch: Tensor, num_nodes: int, device: torch.device | None = None) -> None:
    r"""Check a PyG ``batch`` vector: molecule index of every node, sorted ascending.

    Args:
        batch (torch.Tensor): shape ``[num_nodes]``, integer dtype, non-negative,
            non-decreasing (nodes of one molecule are contiguous, as PyG's ``Batch`` makes them).
        num_nodes (int): the number of nodes it must describe.
        device (torch.device, optional): the device it must live on, e.g. ``pos.device``.
            (default: :obj:`None`, not checked)

    Raises:
        TypeError: if ``batch`` is not an integer tensor.
        ValueError: for a wrong shape, a negative entry, a decreasing step or a wrong device.
    """
    if not isinstance(batch, Tensor):
        raise TypeError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
    if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
        raise TypeError(f"batch must be an integer tensor, got dtype {batch.dtype}")
    if batch.dim() != 1:
        raise ValueError(f"batch must be 1-D of shape [num_nodes], got {list(batch.shape)}")
    if batch.numel() != num_nodes:
        raise ValueError(f"batch has {batch.numel()} entries but there are {num_nodes} nodes")
    if device is not None:
        device = torch.device(device)
        if batch.device.type != device.type or device.index not in (None, batch.device.index):
            raise ValueError(f"batch is on {batch.device} but pos is on {device}")
    non_negative = (batch >= 0).all()
    ascending = (batch.cummax(0).values == batch).all()  # (no [1:] slice: size N - 1)

    def detail() -> str:
        if not bool(non_negative):
            return f"batch must be non-negative, got minimum {int(batch.min())}"
        return f"batch must be {_SORTED_BATCH}"

    # (one synchronisation for both checks)
    require(
        non_negative & ascending, ValueError, f"batch must be non-negative and {_SORTED_BATCH}",
        detail,
    )  # fmt: skip


def _validate_options(
    r: float, loop: bool, max_num_neighbors: int | None, backend: str, flow: str
) -> float:
    """Check the options of :func:`radius_graph` (no tensor values: no synchronisation);
    return ``r`` as a float."""
    r = require_positive(r, "r")
    require_bool(loop, "loop")
    if max_num_neighbors is not None:
        require_int(max_num_neighbors, "max_num_neighbors", minimum=1)
    require_choice(backend, "backend", BACKENDS)
    require_choice(flow, "flow", FLOWS)
    if backend == "torch_cluster":
        _import_torch_cluster()
    return r


def validate_cell(
    cell: Tensor, pbc: Tensor | Sequence[bool] | bool, pos: Tensor, batch: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Check the cells and periodic axes of structures, and give them per structure.

    The rows of a cell are its lattice vectors :math:`\mathbf{a}_1, \mathbf{a}_2,
    \mathbf{a}_3` (ASE's layout: ``atoms.cell``). Only the vectors of periodic axes are used:
    those must be linearly independent; the others may be anything finite (ASE stores zeros
    for the missing vectors of a slab or a molecule).

    Args:
        cell (torch.Tensor): ``[num_graphs, 3, 3]``, or ``[3, 3]`` for one cell shared by
            every structure; the dtype and device of ``pos``, finite.
        pbc (torch.Tensor or sequence of bool or bool): periodic axes, bool ``[num_graphs, 3]``,
            or ``[3]`` (or one bool) for every structure.
        pos (torch.Tensor): the (validated) positions ``[N, 3]``.
        batch (torch.Tensor, optional): the (validated) structure of every atom ``[N]``.
            (default: :obj:`None`, one structure)

    Returns:
        ``(cell, pbc)`` of shapes ``[num_graphs, 3, 3]`` and ``[num_graphs, 3]`` (bool, on the
        device of ``pos``); ``num_graphs`` is that of ``cell`` or ``pbc`` where they have one,
        else the number of structures in ``batch``.

    Raises:
        TypeError: for a ``cell`` that is not a floating tensor of the dtype of ``pos``, or
            a ``pbc`` that is not boolean.
        ValueError: for wrong shapes, a device other than that of ``pos``, NaN or infinite
            entries, periodic lattice vectors that are (nearly) linearly dependent, or atoms
            of a structure without a cell.
    """
    _check_cell_layout(cell, pos)
    pbc = _as_pbc(pbc, pos.device)
    num_graphs = _num_cells(cell, pbc, batch)
    cell, pbc = cell.expand(num_graphs, 3, 3), pbc.expand(num_graphs, 3)
    if not cell.is_meta:  # (a meta tensor has no values to check)
        _check_cell_values(cell, pbc)
    return cell, pbc


def _check_cell_layout(cell: Tensor, pos: Tensor) -> None:
    """The type, shape, dtype and device of ``cell`` (no values read)."""
    require_floating(cell, "cell")
    if cell.dim() not in (2, 3) or tuple(cell.shape[-2:]) != (3, 3):
        raise ValueError(
            f"cell must have shape [num_graphs, 3, 3] or [3, 3] (lattice vectors as rows), "
            f"got {list(cell.shape)}"
        )
    if cell.dtype != pos.dtype:
        raise TypeError(f"cell is {cell.dtype} but pos is {pos.dtype}: convert one of them")
    if cell.device != pos.device:
        raise ValueError(f"cell is on {cell.device} but pos is on {pos.device}")


def _num_cells(cell: Tensor, pbc: Tensor, batch: Tensor | None) -> int:
    """The number of structures that ``cell`` and ``pbc`` describe, checked against
    ``batch``."""
    if cell.dim() == 3 and pbc.dim() == 2 and cell.shape[0] != pbc.shape[0]:
        raise ValueError(f"cell holds {cell.shape[0]} structures but pbc holds {pbc.shape[0]}")
    if cell.dim() == 3:
        num_graphs = cell.shape[0]
    elif pbc.dim() == 2:
        num_graphs = pbc.shape[0]
    else:
        num_graphs = 1 if batch is None else torch.bincount(batch).shape[0]
    if batch is None:
        if num_graphs != 1:
            raise ValueError(
                f"cell and pbc describe {num_graphs} structures but no batch was given "
                "(one structure)"
            )
    else:
        require(
            (batch < num_graphs).all(), ValueError,
            "batch holds structure indices beyond the cells given",
            lambda: f"batch holds structure {int(batch.max())} but there are cells for "
            f"{num_graphs} structures",
        )  # fmt: skip
    return num_graphs


def _check_cell_values(cell: Tensor, pbc: Tensor) -> None:
    """Finite cells ``[G, 3, 3]`` whose periodic lattice vectors are independent."""
    require(torch.isfinite(cell).all(), ValueError, "cell holds NaN or infinite values")
    sine = _cell_sine(cell, pbc)  # [G]

    def detail() -> str:
        bad = int(torch.nonzero(~(sine > _MIN_CELL_SINE))[0, 0])
        return (
            f"the cell of structure {bad} is singular: its periodic lattice vectors "
            f"{cell[bad][pbc[bad]].tolist()} are (nearly) linearly dependent"
        )

    require(
        (sine > _MIN_CELL_SINE).all(), ValueError,
        "a cell is singular: its periodic lattice vectors are (nearly) linearly dependent",
        detail,
    )  # fmt: skip


def _as_pbc(pbc: Tensor | Sequence[bool] | bool, device: torch.device) -> Tensor:
    if isinstance(pbc, bool):
        pbc = [pbc] * 3
    if not isinstance(pbc, Tensor):
        try:
            pbc = torch.as_tensor(pbc)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"pbc must be a bool tensor of shape [num_graphs, 3] or [3], got {pbc!r}"
            ) from None
    if pbc.dtype != torch.bool:
        raise TypeError(f"pbc must be a bool tensor, got dtype {pbc.dtype}")
    if pbc.dim() not in (1, 2) or pbc.shape[-1] != 3:
        raise ValueError(f"pbc must have shape [num_graphs, 3] or [3], got {list(pbc.shape)}")
    return pbc.to(device)


def _cell_sine(cell: Tensor, pbc: Tensor) -> Tensor:
    """The volume spanned by the periodic lattice vectors over the product of their lengths
    ``[G]``: 1 for orthogonal ones (or none), 0 (or NaN) for dependent ones."""
    a = cell.detach().to(torch.float64)  # [G, 3, 3]
    both = pbc[:, :, None] & pbc[:, None, :]  # [G, 3, 3]
    eye = torch.eye(3, dtype=torch.float64, device=a.device)
    gram = torch.where(both, a @ a.mT, eye)  # [G, 3, 3], squared volume as determinant
    length2 = torch.where(pbc, (a * a).sum(-1), 1.0)  # [G, 3]
    return (torch.linalg.det(gram) / length2.prod(-1)).clamp(min=0).sqrt()  # [G]

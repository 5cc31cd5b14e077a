"""The models of the zoo as the model tests build them: small settings for every model kind
of the registry (``e3nn_pyg.training.registry.MODELS``), molecules of the elements each
kind's tests use, and random crystals (tests/models/test_atomistic.py runs the tests every
kind passes; test_equivariant_net.py and test_many_body.py those of one kind)."""

import torch
from torch_geometric.data import Batch, Data

from e3nn_pyg.models import AtomisticModel
from e3nn_pyg.training.registry import MODEL_KINDS

#: Small settings of every model kind of the registry (a few thousand parameters)
SMALL = {
    "equivariant-net": dict(hidden_Rs="8x0e + 4x1o + 2x2e", num_layers=2, cutoff=3.0,
                            radial_hidden=16),
    "many-body": dict(num_channels=4, lmax=2, num_layers=2, cutoff=3.0, radial_hidden=8,
                      readout_hidden=4),
}  # fmt: skip
#: The elements of each kind's test molecules (the many-body tests train on three species)
ELEMENTS = {"equivariant-net": (1, 6, 7, 8, 9), "many-body": (1, 6, 8)}


def make_model(kind: str, seed: int = 0, **kwargs) -> AtomisticModel:
    """A model of ``kind`` (the registry's name) with the small settings and ``kwargs``,
    its weights drawn with ``seed``."""
    torch.manual_seed(seed)
    return MODEL_KINDS[kind].build({**SMALL[kind], **kwargs})


def molecule(num_atoms: int, seed: int, elements: tuple[int, ...]) -> Data:
    """Random atoms of ``elements`` in a ball of a few Å (float64 under the float64
    fixture): a :class:`~torch_geometric.data.Data` with ``z`` and ``pos``."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.tensor(elements)[torch.randint(0, len(elements), (num_atoms,), generator=generator)]
    pos = 1.5 * torch.randn(num_atoms, 3, generator=generator)
    return Data(z=z, pos=pos)


def molecules(kind: str) -> Batch:
    """Three molecules of 5, 7 and 4 atoms of the elements of ``kind``'s tests."""
    sizes = (5, 7, 4)
    return Batch.from_data_list([molecule(n, seed, ELEMENTS[kind]) for seed, n in enumerate(sizes)])


def crystals(
    sizes: tuple[int, ...] = (3, 1, 4),
    seed: int = 0,
    side: tuple[float, float] = (2.0, 3.5),
    pbc: torch.Tensor | None = None,
) -> Batch:
    """Random triclinic cells, some smaller than the cutoff (3), atoms inside them."""
    generator = torch.Generator().manual_seed(seed)
    data = []
    for n in sizes:
        lengths = side[0] + (side[1] - side[0]) * torch.rand(3, generator=generator)
        cell = torch.diag(lengths) + 0.3 * (torch.rand(3, 3, generator=generator) - 0.5)
        z = torch.tensor([1, 6, 7, 8, 9])[torch.randint(0, 5, (n,), generator=generator)]
        pos = torch.rand(n, 3, generator=generator) @ cell
        periodic = torch.ones(1, 3, dtype=torch.bool) if pbc is None else pbc
        data.append(Data(z=z, pos=pos, cell=cell[None], pbc=periodic))
    return Batch.from_data_list(data)


def run(
    model: AtomisticModel,
    data: Batch,
    stress: bool = True,
    pos: torch.Tensor | None = None,
    cell: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """``model`` on the structures ``data`` (with ``pos`` or ``cell`` in place of theirs)."""
    pos = data.pos if pos is None else pos
    cell = data.cell if cell is None else cell
    return model(data.z, pos, data.batch, cell, data.pbc, stress=stress)

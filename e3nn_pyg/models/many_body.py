r"""A many-body (MACE-class) potential: atomic bases contracted with themselves up to a
correlation order, on the package's convolution and contraction engines.

The design is that of MACE (Batatia et al., "MACE: Higher Order Equivariant Message Passing
Neural Networks for Fast and Accurate Force Fields", NeurIPS 2022), written with this
package's layers: the atomic basis is a channel-wise
:class:`~e3nn_pyg.conv.Convolution`, the higher-order features are a
:class:`~e3nn_pyg.tensor_product.SymmetricContraction` of it with itself, whose generalized
Clebsch-Gordan coefficients :mod:`e3nn_pyg.o3.coupling` computes from the package's own
:func:`~e3nn_pyg.o3.wigner_3j`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..conv import Convolution
from ..elements import MAX_Z
from ..graph import Graph
from ..non_linearities import rescaled_act
from ..o3 import Rs
from ..tensor_product.symmetric import SymmetricContraction
from .atomistic import COMMON_INT_MINIMUMS, AtomisticModel, check_settings
from .interaction_graph import InteractionGraph
from .self_interaction import SelfInteraction, SpeciesSelfInteraction

__all__ = ["ManyBodyBlock", "ManyBodyNet", "natural_irreps"]

#: The lowest value of every integer setting (``max_num_neighbors`` may also be None); the
#: training command states them in its help (``e3nn_pyg.training.registry``)
INT_MINIMUMS = {"num_channels": 1, "lmax": 0, "hidden_lmax": 0, "correlation": 1,
                "num_layers": 1, "num_basis": 1, "radial_hidden": 1, "radial_layers": 0,
                "readout_hidden": 1, **COMMON_INT_MINIMUMS}  # fmt: skip


def natural_irreps(mul: int, lmax: int) -> Rs:
    r"""``mul`` copies of every irrep of natural parity :math:`(-1)^l` up to ``lmax``:
    the irreps of the spherical harmonics.

    Example:
        >>> natural_irreps(8, 3)
        Rs('8x0e+8x1o+8x2e+8x3o')
    """
    return Rs([(mul, l, (-1) ** l) for l in range(lmax + 1)])


class ManyBodyBlock(nn.Module):
    r"""One layer of :class:`ManyBodyNet`.

    .. math::
        A_i &= \frac{1}{\sqrt{n}} \sum_{j \in \mathcal{N}(i)} K(\mathbf{r}_{ij})\,
            W_\text{up} h_j \qquad \text{(channel-wise convolution, irreps of } Y) \\
        B_i &= \sum_{\nu=1}^{\text{correlation}} \sum_\eta w^{(\nu)}_{z_i, k \eta}
            \; C^{\nu, \eta} \cdot A_{i k}^{\otimes \nu}
            \qquad \text{(symmetric contraction per channel } k) \\
        h'_i &= W_\text{msg} B_i + W_\text{skip} h_i

    Args:
        Rs_in (Rs-like): the features :math:`h` it takes.
        Rs_basis (Rs-like): the atomic basis :math:`A` (``C`` copies of each irrep).
        Rs_out (Rs-like): the features :math:`h'` it gives (``C`` copies of each irrep).
        kernel (callable): ``kernel(Rs_in, Rs_out)`` builds the convolution's kernel.
        correlation (int): the largest power :math:`\nu` of :math:`A`.
        num_species (int): rows of the element-dependent weights.
        n_norm (float): the convolution's normalization (typical number of neighbours).
    """

    def __init__(
        self,
        Rs_in: Rs,
        Rs_basis: Rs,
        Rs_out: Rs,
        kernel: partial,
        correlation: int,
        num_species: int,
        n_norm: float,
        species_skip: bool = False,
        basis_mixing: bool = False,
    ) -> None:
        super().__init__()
        self.Rs_in, self.Rs_out = Rs(Rs_in), Rs(Rs_out)
        self.linear_up = SelfInteraction(self.Rs_in, self.Rs_in)
        self.conv = Convolution(kernel, self.Rs_in, Rs_basis, n_norm=n_norm)
        self.mixing = SelfInteraction(Rs_basis, Rs_basis, bias=False) if basis_mixing else None
        self.contraction = SymmetricContraction(Rs_basis, self.Rs_out, correlation, num_species)
        self.message = SelfInteraction(self.Rs_out, self.Rs_out)
        if species_skip:
            self.skip = SpeciesSelfInteraction(self.Rs_in, self.Rs_out, num_species)
        else:
            self.skip = SelfInteraction(self.Rs_in, self.Rs_out)

    def reset_parameters(self) -> None:
        for module in (self.linear_up, self.conv, self.mixing, self.contraction, self.message,
                       self.skip):  # fmt: skip
            if module is not None:
                module.reset_parameters()

    def forward(self, h: Tensor, slots: Tensor, pos: Tensor, graph: Graph) -> Tensor:
        basis = self.conv(self.linear_up(h), pos, graph)  # [N, dim(Rs_basis)]
        if self.mixing is not None:
            basis = self.mixing(basis)  # [N, dim(Rs_basis)]
        products = self.contraction(basis, slots)  # [N, dim(Rs_out)]
        if isinstance(self.skip, SpeciesSelfInteraction):
            skip = self.skip(h, slots)  # [N, dim(Rs_out)]
        else:
            skip = self.skip(h)  # [N, dim(Rs_out)]
        return self.message(products) + skip  # [N, dim(Rs_out)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.Rs_in}' -> '{self.Rs_out}')"


class ManyBodyNet(AtomisticModel):
    r"""A many-body equivariant potential (MACE-class) with the interface of
    :class:`~e3nn_pyg.models.EquivariantNet`: ``forward(z, pos, batch, cell=None, pbc=None,
    stress=False)``.

    .. math::
        h^{(0)}_i &= \mathrm{Embedding}(z_i) \quad (C \text{ even scalars}) \\
        h^{(t)}_i &= \mathrm{Block}^{(t)}(h^{(t-1)}, z, \mathbf{p})_i, \quad t = 1..T \\
        \phi_i &= \sum_{t < T} w^{(t)} \cdot h^{(t)}_{i, 0e}
            + \mathrm{MLP}(h^{(T)}_{i, 0e})

    with the blocks of :class:`ManyBodyBlock`: a channel-wise convolution builds the atomic
    basis :math:`A` (``num_channels`` copies of every irrep up to ``lmax``), the symmetric
    contraction raises it to the powers :math:`1..\nu` (``correlation``; a message then
    carries :math:`\nu + 1`-body information) with weights per element, and a linear update
    plus a skip connection give the next features (``num_channels`` copies of the irreps up
    to ``hidden_lmax``, scalars only after the last block). Every block's scalars are read
    out linearly, the last one's through a perceptron of ``readout_hidden`` units, and
    summed into the atomic output :math:`\phi_i`; the offsets, the readout, periodic cells,
    forces and stress are those of :class:`~e3nn_pyg.models.AtomisticModel` (see
    :class:`~e3nn_pyg.models.EquivariantNet` for the periodic inputs and the stress).

    **Elements.** The contraction's weights depend on the element. A model given ``species``
    keeps one row per species and one for every other element (untrained; used only when
    ``allow_unseen_elements`` is set); without ``species`` every atomic number below
    ``max_z`` has its row.

    Args:
        num_channels (int, optional): the copies :math:`C` of every irrep. (default: :obj:`32`)
        lmax (int, optional): the largest order of the spherical harmonics and of the atomic
            basis. (default: :obj:`2`)
        hidden_lmax (int, optional): the largest order of the features between blocks.
            (default: :obj:`1`)
        correlation (int, optional): the largest power :math:`\nu` of the atomic basis (body
            order :math:`\nu + 1`). (default: :obj:`3`)
        num_layers (int, optional): the number of blocks :math:`T`. (default: :obj:`2`)
        cutoff (float, optional): the cutoff radius of the graph and the radial functions.
            (default: :obj:`5.0`)
        max_num_neighbors (int, optional): cap on the neighbours of each atom in the default
            interaction graph (molecules only). (default: :obj:`None`, no cap)
        num_basis (int, optional): the number of Bessel functions of the radial model.
            (default: :obj:`8`)
        radial_hidden (int, optional): width of the radial perceptron. (default: :obj:`64`)
        radial_layers (int, optional): hidden layers of the radial perceptron.
            (default: :obj:`2`)
        readout_hidden (int, optional): hidden units of the last readout. (default: :obj:`16`)
        species_skip (bool, optional): the skip connection of every block has its own
            weights per element (:class:`~e3nn_pyg.models.SpeciesSelfInteraction`).
            (default: :obj:`False`)
        basis_mixing (bool, optional): mix the channels of the atomic basis linearly before
            the contraction. (default: :obj:`False`)
        avg_num_neighbors (float, optional): the convolution sums are divided by its square
            root; set it to the mean in-degree of the data. (default: :obj:`16.0`)
        readout (str, optional): ``"add"`` or ``"mean"`` over the atoms of a structure.
            (default: ``"add"``)
        mean (float or list, optional): :math:`\mu_y`, added per atom.
            (default: :obj:`None`: 0)
        std (float or list, optional): :math:`\sigma_y`, scales the per-atom output.
            (default: :obj:`None`: 1)
        atomref (torch.Tensor, optional): per-element references ``[max_z, out_channels]``
            added per atom (e.g. isolated-atom energies). (default: :obj:`None`: 0)
        out_channels (int, optional): outputs per structure. (default: :obj:`1`)
        max_z (int, optional): atomic numbers must lie in ``[0, max_z)``.
            (default: :obj:`e3nn_pyg.elements.MAX_Z`, 100)
        species (list of int, optional): the atomic numbers the model was trained on; other
            elements are refused. (default: :obj:`None`: any element below ``max_z``)
        interaction_graph (callable, optional): ``(pos, batch, cell, pbc) -> (edge_index,
            edge_shift)``. (default: :obj:`None`:
            :class:`~e3nn_pyg.models.RadiusInteractionGraph` of ``cutoff``)
        derivative (bool, optional): also return the forces (needs ``out_channels=1``).
            (default: :obj:`False`)

    Shapes:
        - **input:** atomic numbers :math:`(|\mathcal{V}|)` long, positions
          :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)` (optional), cell
          :math:`(|\mathcal{G}|, 3, 3)` or :math:`(3, 3)` (optional), pbc
          :math:`(|\mathcal{G}|, 3)` or :math:`(3)` bool (optional)
        - **output:** :math:`(|\mathcal{G}|, \text{out\_channels})`, and with
          ``derivative=True`` also forces :math:`(|\mathcal{V}|, 3)`, and with
          ``stress=True`` also the stress :math:`(|\mathcal{G}|, 3, 3)`

    Example:
        >>> model = ManyBodyNet(num_channels=8, num_layers=2, cutoff=3.0, species=[1, 8],
        ...                     derivative=True)
        >>> z = torch.tensor([8, 1, 1])
        >>> pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
        >>> energy, forces = model(z, pos)
        >>> energy.shape, forces.shape
        (torch.Size([1, 1]), torch.Size([3, 3]))
    """

    SETTINGS_ADDED_LATER: ClassVar[Mapping[str, Any]] = {
        "species_skip": False,
        "basis_mixing": False,
    }

    def __init__(
        self,
        num_channels: int = 32,
        lmax: int = 2,
        hidden_lmax: int = 1,
        correlation: int = 3,
        num_layers: int = 2,
        cutoff: float = 5.0,
        max_num_neighbors: int | None = None,
        num_basis: int = 8,
        radial_hidden: int = 64,
        radial_layers: int = 2,
        readout_hidden: int = 16,
        species_skip: bool = False,
        basis_mixing: bool = False,
        avg_num_neighbors: float = 16.0,
        readout: str = "add",
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        atomref: Tensor | None = None,
        out_channels: int = 1,
        max_z: int = MAX_Z,
        species: Sequence[int] | None = None,
        interaction_graph: InteractionGraph | None = None,
        derivative: bool = False,
    ) -> None:
        super().__init__()
        check_settings(
            INT_MINIMUMS, {}, num_channels=num_channels, lmax=lmax, hidden_lmax=hidden_lmax,
            correlation=correlation, num_layers=num_layers, num_basis=num_basis,
            radial_hidden=radial_hidden, radial_layers=radial_layers,
            readout_hidden=readout_hidden, out_channels=out_channels, max_z=max_z,
            max_num_neighbors=max_num_neighbors, cutoff=cutoff,
            avg_num_neighbors=avg_num_neighbors, readout=readout, derivative=derivative,
        )  # fmt: skip
        for name, flag in (("species_skip", species_skip), ("basis_mixing", basis_mixing)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        if hidden_lmax > lmax:
            raise ValueError(
                f"hidden_lmax = {hidden_lmax} must not exceed lmax = {lmax}: the features "
                "between blocks come from the atomic basis"
            )
        self.num_channels, self.lmax, self.hidden_lmax = num_channels, lmax, hidden_lmax
        self.correlation, self.num_layers = correlation, num_layers
        self.num_basis, self.radial_hidden = num_basis, radial_hidden
        self.radial_layers, self.readout_hidden = radial_layers, readout_hidden
        self.species_skip, self.basis_mixing = species_skip, basis_mixing
        self._setup(
            cutoff=cutoff, max_num_neighbors=max_num_neighbors,
            avg_num_neighbors=avg_num_neighbors, readout=readout, mean=mean, std=std,
            atomref=atomref, out_channels=out_channels, max_z=max_z, species=species,
            interaction_graph=interaction_graph, derivative=derivative,
        )  # fmt: skip

    def _register_slots(self) -> int:
        """The buffer ``element_slot`` ``[max_z]``: the row of every atomic number in the
        element-dependent weights (0 for the elements outside ``species``); returns the
        number of rows."""
        if self.species is None:
            slots = torch.arange(self.max_z)  # [max_z]
        else:
            slots = torch.zeros(self.max_z, dtype=torch.long)  # [max_z]
            slots[self.species] = torch.arange(1, len(self.species) + 1)
        self.register_buffer("element_slot", slots, persistent=False)
        return int(slots.max()) + 1

    def _build_layers(self) -> None:
        """The embedding, the blocks and their readouts."""
        num_slots = self._register_slots()
        kernel = self._kernel("channelwise")
        channels = self.num_channels
        self.embedding = nn.Embedding(num_slots, channels)
        basis = natural_irreps(channels, self.lmax)
        blocks, Rs_in = [], natural_irreps(channels, 0)
        for t in range(self.num_layers):
            last = t == self.num_layers - 1
            Rs_out = natural_irreps(channels, 0 if last else self.hidden_lmax)
            block = ManyBodyBlock(
                Rs_in, basis, Rs_out, kernel, self.correlation, num_slots, self.avg_num_neighbors,
                species_skip=self.species_skip, basis_mixing=self.basis_mixing,
            )  # fmt: skip
            blocks.append(block)
            Rs_in = Rs_out
        self.blocks = nn.ModuleList(blocks)
        self.readouts = nn.ModuleList(
            [nn.Linear(channels, self.out_channels) for _ in range(self.num_layers - 1)]
        )
        self.lin1 = nn.Linear(channels, self.readout_hidden)
        self.act = rescaled_act.silu
        self.lin2 = nn.Linear(self.readout_hidden, self.out_channels)

    def reset_parameters(self) -> None:
        r"""Re-initialize the learnable parameters (``mean``, ``std`` and ``atomref`` are
        kept)."""
        self.embedding.reset_parameters()
        for module in (*self.blocks, *self.readouts, self.lin1, self.lin2):
            module.reset_parameters()

    def _atom_outputs(self, z: Tensor, pos: Tensor, graph: Graph) -> Tensor:
        slots = self.element_slot[z]  # [N]
        h = self.embedding(slots)  # [N, C]
        out = []
        for block, readout in zip(self.blocks, self.readouts):
            h = block(h, slots, pos, graph)  # [N, dim(block.Rs_out)]
            out.append(readout(h[:, : self.num_channels]))  # [N, out_channels] (the 0e)
        h = self.blocks[-1](h, slots, pos, graph)  # [N, C]
        out.append(self.lin2(self.act(self.lin1(h))))  # [N, out_channels]
        return torch.stack(out).sum(0)  # [N, out_channels]

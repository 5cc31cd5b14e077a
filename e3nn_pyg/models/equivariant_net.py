r"""An E(3)-equivariant network for molecules with the interface of PyG's model zoo."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ..conv import Convolution
from ..elements import MAX_Z
from ..graph import Graph
from ..kernel import MODES as KERNEL_MODES
from ..kernel import Kernel
from ..non_linearities import GatedBlockParity, rescaled_act
from ..o3 import Rs, RsLike
from ..tensor_product.paths import selection_rule
from .atomistic import COMMON_INT_MINIMUMS, READOUTS, AtomisticModel, check_settings
from .interaction_graph import InteractionGraph
from .self_interaction import SelfInteraction

__all__ = ["READOUTS", "EquivariantNet", "layer_representations"]

EVEN_SCALAR = (0, 1)

#: The lowest value of every integer setting (``max_num_neighbors`` may also be None); the
#: training command states them in its help (``e3nn_pyg.training.registry``)
INT_MINIMUMS = {"num_layers": 1, "num_basis": 1, "radial_hidden": 1, "radial_layers": 0,
                "lmax": 0, **COMMON_INT_MINIMUMS}  # fmt: skip


def _connects(l_in: int, p_in: int, l_out: int, p_out: int, lmax: int) -> bool:
    return bool(selection_rule(l_in, p_in, l_out, p_out, lmax=lmax))


def layer_representations(hidden_Rs: RsLike, lmax: int, num_layers: int) -> list[Rs]:
    r"""The representation after every layer of :class:`EquivariantNet`.

    The network starts from even scalars (the atom embedding) and ends with even scalars
    (the invariant readout). Layer :math:`k < L` keeps the entries of ``hidden_Rs`` that a
    filter of order :math:`\le` ``lmax`` can reach from layer :math:`k - 1` *and* that can
    still reach the final scalars in the remaining :math:`L - k` layers; irreps that could
    not contribute to the output would only cost time. The last layer outputs the even
    scalars of ``hidden_Rs``.

    Example:
        >>> layer_representations("16x0e + 8x1o + 4x1e + 4x2e", lmax=2, num_layers=4)
        [Rs('16x0e+8x1o+4x2e'), Rs('16x0e+8x1o+4x1e+4x2e'), Rs('16x0e+8x1o+4x2e'), Rs('16x0e')]

    The pseudovectors ``1e`` first appear in layer 2 (``1o`` times a filter of order 1) and
    must be converted back (to ``1o``, then to ``0e``) before the readout, so they only live
    in layer 2; with ``num_layers=3`` they would never be used (a warning says so).
    """
    hidden = Rs(hidden_Rs)
    kinds = rs_kinds(hidden)
    reached = [{EVEN_SCALAR}]
    for _ in range(num_layers - 1):
        reached.append(
            {out for out in kinds if any(_connects(*src, *out, lmax) for src in reached[-1])}
        )
    needed = {EVEN_SCALAR}
    layers = [Rs([(hidden_scalars(hidden), 0, 1)])]
    for k in range(num_layers - 1, 0, -1):
        needed = {src for src in reached[k] if any(_connects(*src, *out, lmax) for out in needed)}
        layers.insert(0, Rs([(mul, l, p) for mul, l, p in hidden if mul and (l, p) in needed]))
    unused = [
        Rs([(1, l, p)]) for l, p in kinds if all((l, p) not in set(rs_kinds(rs)) for rs in layers)
    ]
    if unused:
        warnings.warn(
            f"hidden_Rs irreps {', '.join(map(str, unused))} are never used with lmax={lmax} "
            f"and num_layers={num_layers}: they cannot be reached from the atom embedding or "
            "cannot reach the invariant readout in time",
            UserWarning,
            stacklevel=3,
        )
    return layers


def rs_kinds(rs: Rs) -> list[tuple[int, int]]:
    """The ``(l, p)`` of every non-empty entry."""
    return [(l, p) for mul, l, p in rs if mul > 0]


def hidden_scalars(hidden: Rs) -> int:
    """The number of even scalars (``0e``) of a representation."""
    return sum(mul for mul, l, p in hidden if (l, p) == EVEN_SCALAR)


class InteractionBlock(nn.Module):
    r"""One layer of :class:`EquivariantNet`: convolution plus self-interaction, then a gate.

    .. math::
        \mathbf{x}'_i = \mathrm{Gate}\Big(\tfrac{1}{\sqrt 2}\big(
        \mathrm{Conv}(\mathbf{x}, \mathbf{p})_i + \mathrm{SI}(\mathbf{x}_i)\big)\Big)

    The convolution and the self-interaction both map ``Rs_in`` to the gate's input
    ``scalars + gates + nonscalars`` (one ``0e`` gate per copy of an ``l > 0`` irrep);
    scalars go through SiLU (even) or tanh (odd), gates through a sigmoid, all rescaled.

    Args:
        Rs_in (Rs-like): input representation.
        Rs_out (Rs-like): output representation (scalars and gated irreps).
        kernel (callable): ``kernel(Rs_in, Rs_out)`` builds the convolution's kernel.
        n_norm (float): the convolution's normalization (typical number of neighbours).
    """

    def __init__(
        self, Rs_in: RsLike, Rs_out: RsLike, kernel: Callable[..., Kernel], n_norm: float
    ) -> None:
        super().__init__()
        Rs_out = Rs(Rs_out)
        scalars = Rs([(mul, l, p) for mul, l, p in Rs_out if l == 0])
        nonscalars = Rs([(mul, l, p) for mul, l, p in Rs_out if l > 0])
        gates = Rs([(nonscalars.num_irreps, 0, 1)]) if nonscalars.num_irreps else Rs()
        self.gate = GatedBlockParity(
            scalars,
            [rescaled_act.silu if p == 1 else rescaled_act.tanh for _, _, p in scalars],
            gates,
            rescaled_act.sigmoid,
            nonscalars,
        )
        self.conv = Convolution(kernel, Rs_in, self.gate.Rs_in, n_norm=n_norm)
        self.self_interaction = SelfInteraction(Rs_in, self.gate.Rs_in)
        self.Rs_in, self.Rs_out = self.conv.Rs_in, self.gate.Rs_out

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        self.self_interaction.reset_parameters()
        self.gate.reset_parameters()

    def forward(self, x: Tensor, pos: Tensor, graph: Graph) -> Tensor:
        h = self.conv(x, pos, graph)  # [N, dim(gate.Rs_in)]
        h = h + self.self_interaction(x)
        return self.gate(h * math.sqrt(0.5))  # [N, dim(Rs_out)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.Rs_in}' -> '{self.Rs_out}')"


def _check_settings(hidden: Rs, **settings: Any) -> None:
    """Refuse constructor arguments of :class:`EquivariantNet` outside their limits."""
    if any(p == 0 for mul, _, p in hidden if mul):
        raise ValueError(
            f"hidden_Rs = '{hidden}' has irreps without parity: write each as e (even) or "
            "o (odd), e.g. '16x0e+8x1o+4x2e'"
        )
    if hidden_scalars(hidden) == 0:
        raise ValueError(
            f"hidden_Rs = '{hidden}' needs even scalars (0e) for the atom embedding and "
            "the readout, e.g. '16x0e+8x1o+4x2e'"
        )
    check_settings(INT_MINIMUMS, {"kernel_mode": KERNEL_MODES}, **settings)


class EquivariantNet(AtomisticModel):
    r"""An E(3)-equivariant network on molecules, a drop-in for PyG's
    :class:`~torch_geometric.nn.models.SchNet`: ``forward(z, pos, batch)`` returns one
    invariant prediction per molecule.

    .. math::
        \mathbf{x}^{(0)}_i &= \mathrm{Embedding}(z_i) \quad (\text{even scalars}) \\
        \mathbf{x}^{(k)}_i &= \mathrm{Gate}\Big(\tfrac{1}{\sqrt 2}\Big(
            \frac{1}{\sqrt{n}} \sum_{j \in \mathcal{N}(i)} K^{(k)}(\mathbf{p}_j - \mathbf{p}_i)\,
            \mathbf{x}^{(k-1)}_j + W^{(k)} \mathbf{x}^{(k-1)}_i \Big)\Big),
            \quad k = 1..L \\
        y_G &= \bigoplus_{i \in G} \Big(\sigma_y\, \mathrm{MLP}(\mathbf{x}^{(L)}_i) + \mu_y
            + \mathrm{atomref}(z_i)\Big)

    with :math:`K^{(k)}` the e3nn kernel (:class:`~e3nn_pyg.kernel.Kernel`: Bessel radial
    model with a smooth cutoff, spherical harmonics of order :math:`\le` ``lmax``),
    :math:`W^{(k)}` the :class:`~e3nn_pyg.models.SelfInteraction`, the gate
    :class:`~e3nn_pyg.non_linearities.GatedBlockParity`, and :math:`\bigoplus` the sum or
    mean over the atoms of molecule :math:`G` (``readout``). Hidden features have the type
    ``hidden_Rs`` (see :func:`layer_representations`); the last layer keeps its even scalars,
    so :math:`y_G` is invariant under rotations, inversion, translations and permutations
    of the atoms. ``mean``, ``std`` and ``atomref`` enter per atom as in SchNet: with
    ``readout="add"`` a molecule of :math:`N` atoms gets :math:`N \mu_y`.

    With ``derivative=True`` the forward also returns the forces
    :math:`\mathbf{F}_i = -\partial y_G / \partial \mathbf{p}_i` (as PyG's ViSNet); the edge
    vectors are always recomputed from ``pos``, so gradients reach the positions whatever
    graph is used.

    **The interaction graph.** Every call asks ``interaction_graph(pos, batch, cell, pbc)``
    for the edges and their integer cell shifts (the protocol of
    :mod:`e3nn_pyg.models.interaction_graph`); the edge vectors are
    :math:`\mathbf{p}_j - \mathbf{p}_i + \mathbf{s} C`. The default,
    :class:`~e3nn_pyg.models.RadiusInteractionGraph`, is the exact radius graph of
    ``cutoff``; :class:`~e3nn_pyg.models.VerletInteractionGraph` reuses it between the steps
    of a simulation. What another graph returns is checked.

    **Periodic structures.** ``forward(z, pos, batch, cell, pbc)`` treats the structures as
    crystals, slabs or wires: the default graph takes every periodic image of an atom within
    the cutoff (:func:`~e3nn_pyg.graph.periodic_radius_graph`: triclinic cells of any size,
    mixed ``pbc``, positions inside or outside the cell). With ``derivative=True`` and
    ``stress=True`` the forward also returns the stress, the derivative of the energy with
    respect to a homogeneous strain :math:`\varepsilon` (symmetric) of the positions and the
    cell, :math:`\mathbf{x} \to \mathbf{x}(I + \varepsilon)` for positions and lattice
    vectors as rows, per volume:

    .. math::
        \sigma_G = \frac{1}{V_G} \frac{\partial E_G}{\partial \varepsilon}
        \Big|_{\varepsilon = 0}, \qquad V_G = |\det C_G|,

    ASE's sign convention (positive under tension; energy per volume, e.g. eV/Å³), computed
    by autograd with the forces in one backward pass. Forces and stress are computed even
    under :func:`torch.no_grad`; in training mode they keep their graph for a force (and
    stress) loss. A batch may mix periodic structures and molecules (no periodic axis): the
    stress of a molecule is not defined, so its rows are NaN (a loss selects the periodic
    rows with :func:`torch.where`; the NaN rows then pass zero gradients), and the stress of
    every periodic structure is the one it has alone. ``stress=True`` is refused when no
    structure is periodic, and for a periodic structure whose cell has zero volume.

    **Elements.** Atomic numbers lie in ``[0, max_z)``; a model given ``species`` (the
    elements of its training data) refuses any other element with a ``ValueError`` naming
    it, unless its plain attribute ``allow_unseen_elements`` is set to ``True`` (not part
    of the config: a choice of the caller, see :mod:`e3nn_pyg.models.species`). Inputs are
    validated once, at the entry of :meth:`forward` and :meth:`energy`; the graph and the
    layers then skip their own checks.

    Args:
        hidden_Rs (Rs-like, optional): the hidden representation; every irrep needs a
            parity and it must hold even scalars ``0e``. (default: ``"32x0e+16x1o+8x2e"``)
        lmax (int, optional): the largest spherical-harmonic order of the filters.
            (default: :obj:`None`: the largest ``l`` of ``hidden_Rs``)
        num_layers (int, optional): the number of interaction blocks :math:`L`.
            (default: :obj:`3`)
        cutoff (float, optional): the cutoff radius of the graph and the radial functions,
            in the unit of ``pos`` (Å for QM9). (default: :obj:`5.0`)
        max_num_neighbors (int, optional): cap on the neighbours of each atom in the default
            interaction graph (molecules only); a cap that cuts breaks the exact symmetries.
            (default: :obj:`None`, no cap)
        num_basis (int, optional): the number of Bessel functions of the radial model.
            (default: :obj:`8`)
        radial_hidden (int, optional): width of the radial perceptron. (default: :obj:`64`)
        radial_layers (int, optional): hidden layers of the radial perceptron.
            (default: :obj:`1`)
        avg_num_neighbors (float, optional): the convolution sums are divided by its square
            root; set it to the mean in-degree of the data (QM9 at 5 Å: about 15.6).
            (default: :obj:`16.0`)
        readout (str, optional): ``"add"`` or ``"mean"`` over the atoms of a molecule.
            (default: ``"add"``)
        mean (float or list, optional): :math:`\mu_y`, added per atom.
            (default: :obj:`None`: 0)
        std (float or list, optional): :math:`\sigma_y`, scales the per-atom output.
            (default: :obj:`None`: 1)
        atomref (torch.Tensor, optional): per-element references ``[max_z, out_channels]``
            added per atom, e.g. :meth:`~e3nn_pyg.datasets.QM9Pack.atomref`.
            (default: :obj:`None`: 0)
        out_channels (int, optional): outputs per molecule. (default: :obj:`1`)
        max_z (int, optional): atomic numbers must lie in ``[0, max_z)``.
            (default: :obj:`e3nn_pyg.elements.MAX_Z`, 100)
        species (list of int, optional): the atomic numbers the model was trained on; other
            elements are refused. (default: :obj:`None`: any element below ``max_z``)
        interaction_graph (callable, optional): ``(pos, batch, cell, pbc) -> (edge_index,
            edge_shift)``, see above. (default: :obj:`None`:
            :class:`~e3nn_pyg.models.RadiusInteractionGraph` of ``cutoff`` and
            ``max_num_neighbors``)
        derivative (bool, optional): also return the forces :math:`-\partial y/\partial
            \mathbf{p}` (needs ``out_channels=1``). (default: :obj:`False`)
        kernel_mode (str, optional): ``"channelwise"`` (one radial weight per input channel
            and path, channels mixed once per atom: fast) or ``"full"`` (one radial weight
            per path, as in the e3nn tutorial). See :class:`~e3nn_pyg.kernel.Kernel`.
            (default: ``"channelwise"``)

    Shapes:
        - **input:** atomic numbers :math:`(|\mathcal{V}|)` long, positions
          :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)` (optional), cell
          :math:`(|\mathcal{G}|, 3, 3)` or :math:`(3, 3)` (optional), pbc
          :math:`(|\mathcal{G}|, 3)` or :math:`(3)` bool (optional)
        - **output:** :math:`(|\mathcal{G}|, \text{out\_channels})`, and with
          ``derivative=True`` also forces :math:`(|\mathcal{V}|, 3)`, and with
          ``stress=True`` also the stress :math:`(|\mathcal{G}|, 3, 3)`

    Example:
        >>> import torch
        >>> model = EquivariantNet("8x0e + 4x1o", num_layers=2, cutoff=3.0, species=[1, 8])
        >>> z = torch.tensor([8, 1, 1])
        >>> pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
        >>> model(z, pos).shape
        torch.Size([1, 1])
        >>> model(torch.tensor([8, 1, 17]), pos)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: z holds elements the model was not trained on: Cl (Z=17); it was ...
    """

    def __init__(
        self,
        hidden_Rs: RsLike = "32x0e + 16x1o + 8x2e",
        lmax: int | None = None,
        num_layers: int = 3,
        cutoff: float = 5.0,
        max_num_neighbors: int | None = None,
        num_basis: int = 8,
        radial_hidden: int = 64,
        radial_layers: int = 1,
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
        kernel_mode: str = "channelwise",
    ) -> None:
        super().__init__()
        hidden = Rs(hidden_Rs)
        lmax = hidden.lmax if lmax is None else lmax
        _check_settings(
            hidden, lmax=lmax, num_layers=num_layers, num_basis=num_basis,
            radial_hidden=radial_hidden, radial_layers=radial_layers,
            out_channels=out_channels, max_z=max_z, max_num_neighbors=max_num_neighbors,
            cutoff=cutoff, avg_num_neighbors=avg_num_neighbors, kernel_mode=kernel_mode,
            readout=readout, derivative=derivative,
        )  # fmt: skip
        self.hidden_Rs, self.lmax, self.num_layers = hidden, lmax, num_layers
        self.num_basis, self.radial_hidden = num_basis, radial_hidden
        self.radial_layers, self.kernel_mode = radial_layers, kernel_mode
        self._setup(
            cutoff=cutoff, max_num_neighbors=max_num_neighbors,
            avg_num_neighbors=avg_num_neighbors, readout=readout, mean=mean, std=std,
            atomref=atomref, out_channels=out_channels, max_z=max_z, species=species,
            interaction_graph=interaction_graph, derivative=derivative,
        )  # fmt: skip

    def _build_layers(self) -> None:
        """The embedding, the interaction blocks and the readout perceptron."""
        kernel = self._kernel(self.kernel_mode)
        num_scalars = hidden_scalars(self.hidden_Rs)
        self.embedding = nn.Embedding(self.max_z, num_scalars)
        blocks, Rs_in = [], Rs([(num_scalars, 0, 1)])
        for Rs_out in layer_representations(self.hidden_Rs, self.lmax, self.num_layers):
            blocks.append(InteractionBlock(Rs_in, Rs_out, kernel, self.avg_num_neighbors))
            Rs_in = blocks[-1].Rs_out
        self.interactions = nn.ModuleList(blocks)
        self.lin1 = nn.Linear(num_scalars, max(num_scalars // 2, 1))
        self.act = rescaled_act.silu
        self.lin2 = nn.Linear(self.lin1.out_features, self.out_channels)

    def reset_parameters(self) -> None:
        r"""Re-initialize the learnable parameters (``mean``, ``std`` and ``atomref`` are
        kept)."""
        self.embedding.reset_parameters()
        for block in self.interactions:
            block.reset_parameters()
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def _atom_outputs(self, z: Tensor, pos: Tensor, graph: Graph) -> Tensor:
        x = self.embedding(z)  # [N, num_scalars]
        for block in self.interactions:
            x = block(x, pos, graph)  # [N, dim(block.Rs_out)]
        return self.lin2(self.act(self.lin1(x)))  # [N, out_channels]

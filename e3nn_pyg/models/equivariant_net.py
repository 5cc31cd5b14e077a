r"""An E(3)-equivariant network for molecules with the interface of PyG's model zoo."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..checks import is_int, is_real, require, require_bool
from ..conv import Convolution
from ..elements import MAX_Z
from ..graph import (
    Graph,
    cartesian_shifts,
    prepare_graph,
    validate_batch,
    validate_pos,
)
from ..kernel import MODES as KERNEL_MODES
from ..kernel import Kernel
from ..non_linearities import GatedBlockParity, rescaled_act
from ..o3 import Rs, RsLike
from ..radial import BesselRadialModel
from ..tensor_product.paths import selection_rule
from .forces import _SettingsOptionalOnLoad, energy_gradients
from .interaction_graph import (
    TRUSTED_GRAPHS,
    InteractionGraph,
    RadiusInteractionGraph,
    check_interaction_graph,
    checked_graph_output,
    periodic_inputs,
)
from .self_interaction import SelfInteraction
from .species import check_model_atomic_numbers, register_species

__all__ = ["EquivariantNet", "layer_representations"]

EVEN_SCALAR = (0, 1)
READOUTS = ("add", "mean")


#: Constructor arguments that are not architecture settings (see EquivariantNet.config)
_NOT_CONFIG = ("mean", "std", "atomref", "interaction_graph")
#: The lowest value of every integer setting (``max_num_neighbors`` may also be None); the
#: training command states them in its help (``e3nn_pyg.training.registry``)
INT_MINIMUMS = {"num_layers": 1, "num_basis": 1, "radial_hidden": 1, "radial_layers": 0,
                "out_channels": 1, "max_z": 1, "lmax": 0, "max_num_neighbors": 1}  # fmt: skip


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


def _float_vector(
    name: str, value: float | Sequence[float] | Tensor | None, default: float, size: int
) -> Tensor:
    if value is None:
        return torch.full((size,), default)
    out = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().flatten().clone()
    if out.numel() == 1:
        out = out.expand(size).clone()
    if out.numel() != size or not torch.isfinite(out).all():
        raise ValueError(f"{name} must be a finite number or {size} numbers, got {value!r}")
    return out  # [size]


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
    for name, low in INT_MINIMUMS.items():
        value, nullable = settings[name], name == "max_num_neighbors"  # (None: no cap)
        if not (nullable and value is None) and (not is_int(value) or value < low):
            allowed = f"{'None or ' if nullable else ''}an int >= {low}"
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
    for name in ("cutoff", "avg_num_neighbors"):
        value = settings[name]
        if not is_real(value) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    for name, choices in (("kernel_mode", KERNEL_MODES), ("readout", READOUTS)):
        if settings[name] not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {settings[name]!r}")
    if settings["derivative"] and settings["out_channels"] != 1:
        raise ValueError("derivative=True needs out_channels=1 (forces of one energy)")


class EquivariantNet(_SettingsOptionalOnLoad):
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
        if interaction_graph is not None:
            check_interaction_graph(interaction_graph)
        self.hidden_Rs, self.lmax, self.num_layers = hidden, lmax, num_layers
        self.cutoff = float(cutoff)
        self.max_num_neighbors = max_num_neighbors
        self.num_basis, self.radial_hidden = num_basis, radial_hidden
        self.radial_layers = radial_layers
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.readout, self.out_channels, self.max_z = readout, out_channels, max_z
        register_species(self, species, max_z)  # species, allow_unseen_elements
        self.derivative, self.kernel_mode = derivative, kernel_mode
        if interaction_graph is None:
            interaction_graph = RadiusInteractionGraph(self.cutoff, max_num_neighbors)
        self.interaction_graph = interaction_graph
        self._build_layers()
        self._register_offsets(mean, std, atomref)
        self.reset_parameters()

    def _build_layers(self) -> None:
        """The embedding, the interaction blocks and the readout perceptron."""
        radial = partial(
            BesselRadialModel,
            max_radius=self.cutoff,
            number_of_basis=self.num_basis,
            h=self.radial_hidden,
            L=self.radial_layers,
        )
        kernel = partial(
            Kernel,
            RadialModel=radial,
            selection_rule=partial(selection_rule, lmax=self.lmax),
            mode=self.kernel_mode,
        )
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

    def _register_offsets(
        self, mean: float | Sequence[float] | None, std: float | Sequence[float] | None,
        atomref: Tensor | None,
    ) -> None:  # fmt: skip
        """The buffers ``mean``, ``std`` ``[out_channels]`` and ``atomref``
        ``[max_z, out_channels]``."""
        max_z, out_channels = self.max_z, self.out_channels
        self.register_buffer("mean", _float_vector("mean", mean, 0.0, out_channels))
        self.register_buffer("std", _float_vector("std", std, 1.0, out_channels))
        if atomref is None:
            atomref = torch.zeros(max_z, out_channels)
        atomref = torch.as_tensor(atomref, dtype=torch.get_default_dtype()).detach().clone()
        if atomref.dim() == 1:
            atomref = atomref[:, None]
        if atomref.shape != (max_z, out_channels):
            raise ValueError(
                f"atomref must have shape [max_z, out_channels] = [{max_z}, {out_channels}], "
                f"got {list(atomref.shape)}"
            )
        self.register_buffer("atomref", atomref)  # [max_z, out_channels]

    def reset_parameters(self) -> None:
        r"""Re-initialize the learnable parameters (``mean``, ``std`` and ``atomref`` are
        kept)."""
        self.embedding.reset_parameters()
        for block in self.interactions:
            block.reset_parameters()
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def config(self) -> dict[str, Any]:
        """The constructor arguments that define the architecture (plain Python values),
        read from the constructor's signature: the model records every argument as an
        attribute of the same name.

        ``mean``, ``std`` and ``atomref`` live in the buffers of the ``state_dict``;
        a custom ``interaction_graph`` is code, not part of the config.
        """
        keys = [key for key in inspect.signature(type(self)).parameters if key not in _NOT_CONFIG]
        values = {key: getattr(self, key) for key in keys}
        values["hidden_Rs"] = str(values["hidden_Rs"])
        return values

    def get_extra_state(self) -> dict[str, Any]:
        """The :meth:`config`, saved in the ``state_dict`` (key ``_extra_state``)."""
        return {"config": self.config()}

    def set_extra_state(self, state: Any) -> None:
        """Refuse a ``state_dict`` saved from a model of another architecture (a silent
        hybrid otherwise: e.g. weights trained at one cutoff evaluated at another).
        ``derivative`` may differ: the forces of an energy model are its gradient."""
        saved = state.get("config") if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            raise ValueError(
                f"the state_dict's _extra_state holds no EquivariantNet config: {state!r}"
            )
        mine = self.config()
        differences = [
            f"{key}={saved.get(key)!r} (this model: {mine[key]!r})"
            for key in mine
            if key != "derivative" and saved.get(key) != mine[key]
        ]
        if differences:
            raise ValueError(
                "the state_dict was saved from an EquivariantNet with "
                + ", ".join(differences)
                + ": build the model with the saved settings (state_dict()['_extra_state']"
                "['config'] holds them)"
            )

    def _check_inputs(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        cell: Tensor | None = None,
        pbc: Tensor | Sequence[bool] | bool | None = None,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Validate the inputs of a call, once for the whole network; return the cells and
        periodic axes per structure (``None`` for molecules)."""
        check_model_atomic_numbers(self, z)
        validate_pos(pos)
        if pos.shape[0] != z.shape[0]:
            raise ValueError(f"z has {z.shape[0]} atoms but pos has {pos.shape[0]} rows")
        if batch is not None:
            validate_batch(batch, z.shape[0], pos.device)
        if pos.dtype != self.std.dtype:
            raise TypeError(
                f"pos is {pos.dtype} but the model is {self.std.dtype}: convert one of them "
                "(model.double() or pos.float())"
            )
        return periodic_inputs(cell, pbc, pos, batch)

    def _edges(
        self, pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """The interaction graph of validated inputs ``[2, E]``, and the integer cell shift
        of every edge ``[E, 3]`` for periodic structures (``None`` otherwise)."""
        graph = self.interaction_graph
        if type(graph) in TRUSTED_GRAPHS:  # built from the validated inputs: no second check
            return graph.edges(pos, batch, cell, pbc)
        return checked_graph_output(graph(pos, batch, cell, pbc), pos, batch, pbc)

    def _energy(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        cell: Tensor | None,
        pbc: Tensor | None,
        displacement: Tensor | None = None,
    ) -> Tensor:
        r"""The prediction ``[G, out_channels]`` of validated inputs; ``displacement``
        ``[G, 3, 3]`` strains positions and cells, :math:`x \to x (I + \varepsilon)`
        with :math:`\varepsilon` its symmetric part (zero: a handle for the stress)."""
        edge_index, shifts = self._edges(pos, batch, cell, pbc)
        if displacement is not None:  # (zero: the graph of the strained inputs is the same)
            strain = 0.5 * (displacement + displacement.mT)  # [G, 3, 3]
            graph = batch if batch is not None else z.new_zeros(z.shape)  # [N]
            pos = pos + (pos[:, None, :] @ strain[graph]).squeeze(1)  # [N, 3]
            cell = cell + cell @ strain  # [G, 3, 3]
        edge_shift = None
        if cell is not None:
            edge_shift = cartesian_shifts(shifts, cell, edge_index, batch)  # [E, 3]
            num_graphs = cell.shape[0]
        elif batch is None:
            num_graphs = 1
        else:
            # (read from a count, not batch.max(), so that torch.compile needs no host value)
            num_graphs = torch.bincount(batch).shape[0]
        return self._predict(z, pos, batch, edge_index, edge_shift, num_graphs)

    def _predict(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        edge_index: Tensor,
        edge_shift: Tensor | None,
        num_graphs: int,
    ) -> Tensor:
        # one graph for the layers: sorted once, its geometry (pairing of the edges, their
        # lengths and harmonics) shared; the inputs were validated at the entry
        graph = prepare_graph(pos, edge_index, edge_shift, validate=False)
        x = self.embedding(z)  # [N, num_scalars]
        for block in self.interactions:
            x = block(x, pos, graph)  # [N, dim(block.Rs_out)]
        h = self.lin2(self.act(self.lin1(x)))  # [N, out_channels]
        h = h * self.std + self.mean + self.atomref[z]  # [N, out_channels]
        graph = batch if batch is not None else z.new_zeros(z.shape)  # [N]
        return scatter(h, graph, 0, dim_size=num_graphs, reduce=self.readout)  # [G, out]

    def energy(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | Sequence[bool] | bool | None = None,
    ) -> Tensor:
        """The prediction ``[num_graphs, out_channels]`` alone, also with ``derivative=True``
        (e.g. to export it: the forces are then its gradient, see
        :func:`~e3nn_pyg.compilation.export_model`); arguments as in :meth:`forward`."""
        cell, pbc = self._check_inputs(z, pos, batch, cell, pbc)
        return self._energy(z, pos, batch, cell, pbc)

    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | Sequence[bool] | bool | None = None,
        stress: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        r"""Predict one value per structure (and the forces with ``derivative=True``, and
        the stress with ``stress=True``; see the class docstring).

        Args:
            z (torch.Tensor): atomic numbers ``[N]``, long, in ``species`` when it is set.
            pos (torch.Tensor): positions ``[N, 3]``, the model's dtype.
            batch (torch.Tensor, optional): structure of every atom ``[N]``, sorted.
                (default: :obj:`None`, one structure)
            cell (torch.Tensor, optional): lattice vectors as rows, ``[num_graphs, 3, 3]``
                or ``[3, 3]`` for every structure, the model's dtype (see
                :func:`~e3nn_pyg.graph.validate_cell`). (default: :obj:`None`, molecules)
            pbc (torch.Tensor or sequence of bool or bool, optional): periodic axes, bool
                ``[num_graphs, 3]`` or ``[3]``. (default: :obj:`None`: all three periodic
                when a cell is given)
            stress (bool, optional): also return the stress (NaN rows for structures
                without periodic axis); needs ``derivative=True``, some periodic structure,
                and cells of non-zero volume for the periodic ones. (default: :obj:`False`)

        Returns:
            ``[num_graphs, out_channels]``; with ``derivative=True`` the tuple
            ``(energy [num_graphs, 1], forces [N, 3])``, and with ``stress=True``
            ``(energy [num_graphs, 1], forces [N, 3], stress [num_graphs, 3, 3])``.
            ``num_graphs`` is the number of cells when a cell per structure is given.
        """
        cell, pbc = self._check_inputs(z, pos, batch, cell, pbc)
        require_bool(stress, "stress")
        volume = self._stress_volume(cell, pbc) if stress else None  # [G]
        if not self.derivative:
            return self._energy(z, pos, batch, cell, pbc)
        return self._derivatives(z, pos, batch, cell, pbc, volume)

    def _derivatives(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None,
        cell: Tensor | None,
        pbc: Tensor | None,
        volume: Tensor | None,
    ) -> tuple[Tensor, ...]:
        """The energy, the forces and (given the volumes ``[G]``) the stress of validated
        inputs, by one backward pass."""
        grad_enabled = torch.is_grad_enabled()
        # torch.compile cannot return values differentiable through a leaf made inside it
        detach = not grad_enabled
        if not pos.requires_grad and torch.compiler.is_compiling():
            if self.training and grad_enabled:
                raise RuntimeError(
                    "a compiled force model in training mode needs pos.requires_grad_() "
                    "before the call (the forces' graph starts at pos)"
                )
            detach = True
        with torch.enable_grad():
            if not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            inputs = [pos]
            if volume is not None:
                displacement = pos.new_zeros(cell.shape).requires_grad_(True)  # [G, 3, 3]
                inputs.append(displacement)
            energy = self._energy(z, pos, batch, cell, pbc, *inputs[1:])  # [G, 1]
            gradients = energy_gradients(energy, inputs, self.training and grad_enabled)
        outputs = [energy, -gradients[0]]  # forces [N, 3]
        if volume is not None:  # NaN volume: a molecule (see _stress_volume)
            defined = ~volume.isnan()[:, None, None]  # [G, 1, 1]
            # divide by 1 where undefined, so that the NaN rows pass zero gradients
            stress = gradients[1] / torch.where(defined, volume[:, None, None], 1.0)
            outputs.append(torch.where(defined, stress, math.nan))  # [G, 3, 3]
        if detach:
            outputs = [t.detach() for t in outputs]
        return tuple(outputs)

    def _stress_volume(self, cell: Tensor | None, pbc: Tensor | None) -> Tensor:
        """The volumes ``[G]`` that divide the stress, NaN for the structures without a
        periodic axis (their stress is not defined), after checking that the stress of
        some structure is defined."""
        if not self.derivative:
            raise ValueError("stress=True needs a force model: build it with derivative=True")
        if cell is None:
            raise ValueError("stress=True needs periodic structures: pass their cell")
        volume = torch.linalg.det(cell).abs()  # [G]
        periodic = pbc.any(1)  # [G]
        require(
            periodic.any(), ValueError, "stress=True needs periodic structures: no structure "
            "has a periodic axis (pbc all False); the stress of a molecule is not defined",
        )  # fmt: skip
        require(
            ((volume > 0) | ~periodic).all(), ValueError,
            "stress=True needs cells of non-zero volume for periodic structures (for a slab, "
            "give the cell its vacuum vector along the non-periodic axis)",
            lambda: "stress=True needs cells of non-zero volume for periodic structures: "
            f"structure {int(torch.nonzero(periodic & (volume <= 0))[0, 0])} has a flat cell "
            "(for a slab, give the cell its vacuum vector along the non-periodic axis)",
        )  # fmt: skip
        return torch.where(periodic, volume, math.nan)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"{type(self).__name__}({arguments})"

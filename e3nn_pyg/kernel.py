r"""The equivariant filter :math:`W(r) = R(|r|)\, Y(\hat r)` coupled by Clebsch-Gordan.

A :class:`Kernel` is a radial model, spherical harmonics and a plan of paths (see
:mod:`e3nn_pyg.tensor_product.paths`). Composed the tutorial's way::

    RadialModel = partial(CosineBasisModel, max_radius=3.0, number_of_basis=3, h=100, L=2,
                          act=rescaled_act.Softplus(beta=5))
    K = partial(Kernel, RadialModel=RadialModel, sh=None)
    kernel = K([(2, 0)], [(4, 0), (4, 1), (4, 2)])  # 24 paths, [E, 36, 2] matrices
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .checks import (
    require,
    require_choice,
    require_edges,
    require_features,
    require_int,
    require_like,
)
from .constants import ExactConstants
from .o3 import Rs, RsLike, spherical_harmonics
from .radial import RadialMLP, edge_lengths
from .tensor_product.engines import ENGINES, Engine, RowGeometry, make_engine
from .tensor_product.fused import EdgePairing, FusedTensorProduct, pair_edges
from .tensor_product.paths import KernelPlan, SelectionRule, plan_kernel, selection_rule
from .tensor_product.reference import cg_lookup, full_weights, kernel_matrix

__all__ = ["ENGINES", "MODES", "Kernel", "edge_lengths"]

MODES = ("full", "channelwise")


class Kernel(ExactConstants):
    r"""The equivariant kernel of the e3nn point convolution.

    .. math::
        K(r)_{u m_o, v m_i} = \sqrt{\frac{2 l_o + 1}{N_o}} \sum_f R_{uvf}(|r|)
            \sum_{m_f} C^{(l_i, l_f, l_o)}_{m_i m_f m_o} Y^{l_f}_{m_f}(\hat r)

    for every path from input block :math:`(v, m_i)` to output block :math:`(u, m_o)`
    through filter order :math:`l_f` (docs/conventions.md: parity rule, radial weight layout,
    :math:`N_o` the number of paths into the output block).

    **Channel-wise mode** (``mode="channelwise"``, the kernel of NequIP and of e3nn's
    gate_points networks). The radial model gives one weight per input channel and path,
    :math:`R_{vf}(|r|)`, and a learned linear map :math:`L^{(o)}` per output block mixes
    the resulting channels afterwards:

    .. math::
        K(r)_{u m_o, v m_i} = \sqrt{\frac{2 l_o + 1}{N_o}} \sum_f L^{(o)}_{u, (i v f)}
            R_{vf}(|r|) \sum_{m_f} C^{(l_i, l_f, l_o)}_{m_i m_f m_o} Y^{l_f}_{m_f}(\hat r),

    i.e. the full kernel with :math:`R_{uvf} = L^{(o)}_{u, (i v f)} R_{vf}`: same
    normalization constants (``'norm'`` likewise), same variance when :math:`L` and
    :math:`R` have unit second moment. :math:`L^{(o)}` (``mix[o]``,
    ``[mul_o, N_o]``, drawn from :math:`\mathcal{N}(0, 1)`) has one column per intermediate
    channel :math:`(i, v, f)`: input blocks :math:`i` in ``Rs_in`` order, then
    :math:`v`, then the filter index fastest. The radial model is called with
    ``out_dim = sum over (output block, input block) of mul_i * n_filters``, laid out
    block after block (output blocks outer, input blocks inner), inside a block as
    ``[mul_i, n_filters]`` with the filter index fastest. A convolution sums the
    unmixed channels over the neighbours and mixes once per node (the map is linear, so
    this equals mixing every message).

    **Engines.** How the kernel is applied is an object chosen once, from the name in
    :attr:`engine` (:mod:`~e3nn_pyg.tensor_product.engines`; settable after construction):
    ``"reference"`` evaluates one block pair at a time with einsums (the tests' oracle);
    ``"fused"`` batches every path into a few matrix products per chunk of
    :attr:`chunk_size` rows (any device and dtype); ``"native"`` runs gather, sparse
    Clebsch-Gordan coupling, radial weights and the sum at the targets as one C loop
    compiled for this kernel's paths (:mod:`~e3nn_pyg.tensor_product.native`; CPU,
    float32 and float64, needs a C compiler at run time, built once per new kernel and
    cached on disk); ``"compiled"`` is ``"fused"`` through :func:`torch.compile`.
    ``"auto"`` (the default) is ``"native"`` where it can run and ``"fused"`` elsewhere
    (decided per call: a CUDA tensor goes to ``"fused"``). The fused and native engines
    evaluate the radial model once per undirected pair of edges (a
    :class:`~e3nn_pyg.radial.RadialMLP` produces the weights directly in the engine's
    layout) and recompute instead of storing per-edge intermediates; every order of
    their gradients runs on their own forward and backward kernels
    (:mod:`~e3nn_pyg.tensor_product.trilinear`). All engines give the same values and
    gradients of every order up to rounding; ``benchmarks/bench_conv.py`` times them.

    Args:
        Rs_in (Rs-like): input representation.
        Rs_out (Rs-like): output representation.
        RadialModel (callable): ``RadialModel(out_dim)`` builds the radial model, a module
            mapping edge lengths ``[E]`` to weights ``[E, out_dim]`` (any cutoff envelope
            belongs to it; rows must not interact: the engine may call it on subsets of
            the edges). Called with ``out_dim = n_path``.
        sh (callable, optional): ``sh(ls, vectors) -> [E, sum(2l+1)]``. ``None`` uses
            :func:`~e3nn_pyg.o3.spherical_harmonics` in the kernel's normalization.
            (default: ``None``)
        selection_rule (callable, optional): ``(l_in, p_in, l_out, p_out) -> [l_f]``; fix
            options with :func:`functools.partial` on
            :func:`~e3nn_pyg.tensor_product.paths.selection_rule`.
            (default: every allowed order)
        normalization (str, optional): ``"component"`` or ``"norm"``.
            (default: ``"component"``)
        mode (str, optional): ``"full"`` (one radial weight per path) or
            ``"channelwise"`` (see above). (default: ``"full"``)
        engine (str, optional): ``"auto"``, ``"reference"``, ``"fused"``, ``"native"`` or
            ``"compiled"``. (default: ``"auto"``)

    Shapes:
        - **forward:** edge vectors :math:`(E, 3)` → kernels :math:`(E, \dim_o, \dim_i)`
        - **apply:** edge vectors :math:`(E, 3)`, source features :math:`(E, \dim_i)` →
          :math:`(E, \dim_o)`
        - **convolve:** node features :math:`(N_s, \dim_i)`, edge indices :math:`(2, E)`,
          edge vectors :math:`(E, 3)` → :math:`(N_t, \dim_o)`

    Example:
        >>> from e3nn_pyg.radial import CosineBasisModel
        >>> RadialModel = partial(CosineBasisModel, max_radius=3.0, number_of_basis=3, h=100, L=2,
        ...                       act=torch.relu)
        >>> kernel = Kernel([(2, 0)], [(4, 0), (4, 1), (4, 2)], RadialModel)
        >>> kernel.n_path, tuple(kernel(torch.randn(5, 3)).shape)
        (24, (5, 36, 2))
    """

    def __init__(
        self,
        Rs_in: RsLike,
        Rs_out: RsLike,
        RadialModel: Callable[[int], nn.Module],
        sh: Callable[[list[int], Tensor], Tensor] | None = None,
        selection_rule: SelectionRule = selection_rule,
        normalization: str = "component",
        mode: str = "full",
        engine: str = "auto",
    ) -> None:
        super().__init__()
        require_choice(mode, "mode", MODES)
        self.plan: KernelPlan = plan_kernel(Rs_in, Rs_out, selection_rule, normalization)
        self.Rs_in: Rs = self.plan.rs_in
        self.Rs_out: Rs = self.plan.rs_out
        self.normalization = normalization
        self.mode = mode
        self.sh = (
            sh if sh is not None else partial(spherical_harmonics, normalization=normalization)
        )
        # kernels with equal keys compute equal harmonics of the same vectors (shareable)
        self.sh_key = None if sh is not None else ("spherical_harmonics", normalization)
        self.fused = FusedTensorProduct(self.plan, channelwise=mode == "channelwise")
        self._chunk_size = 1024
        self.engine = engine
        self.R = RadialModel(self.fused.num_weights)
        self._check_radial_model()
        self.mix = nn.ParameterList(
            nn.Parameter(torch.empty(mul, channels))
            for (mul, _, _), channels in zip(self.Rs_out, self.fused.mid_channels)
            if mode == "channelwise"
        )
        self._reset_mix()

    def _check_radial_model(self) -> None:
        """Refuse a radial model whose output does not fit the kernel, now rather than at
        the first convolution (a probe on two edge lengths)."""
        expected = (2, self.fused.num_weights)
        parameter = next(self.R.parameters(), None)
        like = {} if parameter is None else {"dtype": parameter.dtype, "device": parameter.device}
        try:
            with torch.no_grad():
                probe = self.R(torch.tensor([0.5, 1.0], **like))
        except Exception as error:
            raise ValueError(
                f"RadialModel(out_dim={expected[1]}) fails on edge lengths of shape [2]: "
                f"{type(error).__name__}: {error}"
            ) from error
        if not isinstance(probe, Tensor) or tuple(probe.shape) != expected:
            shape = list(probe.shape) if isinstance(probe, Tensor) else type(probe).__name__
            raise ValueError(
                f"RadialModel(out_dim={expected[1]}) maps 2 edge lengths to {shape}, expected "
                f"{list(expected)}: its output width must be the out_dim it is built with"
            )

    @property
    def engine(self) -> str:
        """The engine's name: one of :data:`ENGINES` (settable)."""
        return self._engine

    @engine.setter
    def engine(self, engine: str) -> None:
        self._engine_impl = make_engine(engine, self.fused, self._chunk_size)
        self._engine = engine

    @property
    def engine_impl(self) -> Engine:
        """The engine object that :attr:`engine` names (``"auto"`` resolved)."""
        return self._engine_impl

    @property
    def chunk_size(self) -> int:
        """Rows (edges or undirected pairs) per step of the fused convolution (settable).

        Bounds the fused engine's temporaries to O(chunk_size * n_path) and keeps them in
        cache (the default, 1024, is chosen with ``benchmarks/bench_chunk.py``, which times
        the chunk sizes on the kernels of ``benchmarks/bench_conv.py``; the radial weights
        of all rows are computed at once, O(rows * n_w), as autograd keeps them anyway);
        the static chunk of ``"compiled"``.
        """
        return self._chunk_size

    @chunk_size.setter
    def chunk_size(self, rows: int) -> None:
        self._chunk_size = require_int(rows, "chunk_size", minimum=1)
        self.engine = self._engine  # the engine's chunks (the compiled engine's static one)

    @property
    def n_path(self) -> int:
        """Number of radial weights per edge (the radial model's ``out_dim``)."""
        return self.fused.num_weights

    @property
    def max_radius(self) -> float | None:
        """The radial model's cutoff radius, when it has one."""
        return getattr(self.R, "max_radius", None)

    def _reset_mix(self) -> None:
        for weight in self.mix:
            nn.init.normal_(weight)

    def reset_parameters(self) -> None:
        """Re-initialize the radial model (and the mixing maps of a channel-wise kernel)."""
        if hasattr(self.R, "reset_parameters"):
            self.R.reset_parameters()
        self._reset_mix()

    def check_like_parameters(self, tensor: Tensor, what: str) -> None:
        """Raise ``TypeError`` unless ``tensor`` has the parameters' dtype and device."""
        parameter = next(self.parameters(), None)
        if parameter is not None:
            require_like(tensor, parameter, what, "the kernel's parameters")

    def _check_edge_vec(self, edge_vec: Tensor) -> None:
        """The check of the public entries: ``[E, 3]`` finite vectors like the parameters
        (one synchronisation; a convolution calls the unchecked cores on vectors of
        checked positions)."""
        if not isinstance(edge_vec, Tensor) or edge_vec.dim() != 2 or edge_vec.shape[1] != 3:
            shape = tuple(edge_vec.shape) if isinstance(edge_vec, Tensor) else type(edge_vec)
            raise ValueError(f"edge vectors must have shape [num_edges, 3], got {shape}")
        self.check_like_parameters(edge_vec, "edge vectors")
        require(
            torch.isfinite(edge_vec).all(), ValueError, "edge vectors hold NaN or infinite values"
        )

    def _radial(self, lengths: Tensor) -> Tensor:
        """The radial weights ``[E, n_path]`` at lengths of checked vectors (a
        :class:`~e3nn_pyg.radial.RadialMLP` skips its own check of them)."""
        if _is_radial_mlp(self.R):
            return self.R.evaluate(lengths)  # [E, n_path]
        return self.R(lengths)  # [E, n_path]

    def _edge_terms(self, edge_vec: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """:meth:`edge_terms` on checked edge vectors."""
        orders = self.plan.filter_orders
        weights = self._radial(edge_lengths(edge_vec))  # [E, n_path]
        y = self.sh(orders, edge_vec)  # [E, sum(2l_f+1)]
        return weights, dict(zip(orders, y.split([2 * l + 1 for l in orders], dim=-1)))

    def _engine_weights(self, lengths: Tensor) -> Tensor:
        """Radial weights ``[R, n_w]`` in the engine's layout.

        A :class:`~e3nn_pyg.radial.RadialMLP` produces them directly: the rows of its
        :attr:`~e3nn_pyg.radial.RadialMLP.output_weight` are permuted and applied to its
        :meth:`~e3nn_pyg.radial.RadialMLP.hidden_features` (the envelope multiplies
        whichever of the hidden features and the weights is narrower); any other radial
        model's output is permuted.
        """
        permutation = self.fused.weight_permutation
        model = self.R
        if not _is_radial_mlp(model):
            return model(lengths).index_select(1, permutation)  # [R, n_w]
        weight = model.output_weight.index_select(0, permutation)  # [n_w, h]
        if weight.shape[0] >= weight.shape[1]:
            return F.linear(model._hidden_features(lengths), weight)  # [R, n_w]
        # fewer weights than hidden features: the envelope multiplies the weights instead
        hidden = model._hidden_features(lengths, envelope=False)  # [R, h]
        envelope = model.cutoff.evaluate(lengths).unsqueeze(-1)  # [R, 1]
        return F.linear(hidden, weight) * envelope  # [R, n_w]

    def edge_terms(self, edge_vec: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """Radial weights ``[E, n_path]`` and spherical harmonics ``{l: [E, 2l+1]}``."""
        self._check_edge_vec(edge_vec)
        return self._edge_terms(edge_vec)

    def full_weights(self, weights: Tensor) -> Tensor:
        r"""The radial weights in the full kernel's layout ``[E, plan.n_path]``.

        The identity for ``mode="full"``; :math:`R_{uvf} = L^{(o)}_{u,(ivf)} R_{vf}` for a
        channel-wise kernel.
        """
        return full_weights(self.plan, weights, list(self.mix))

    def forward(self, edge_vec: Tensor) -> Tensor:
        """The kernel matrices ``[E, dim(Rs_out), dim(Rs_in)]`` (for inspection)."""
        weights, sh = self.edge_terms(edge_vec)
        return kernel_matrix(self.plan, self.full_weights(weights), sh, cg_lookup(weights))

    def apply(self, edge_vec: Tensor, x_source: Tensor) -> Tensor:
        r""":math:`K(r_e)\, x_e` for every edge ``[E, dim(Rs_out)]``, never building K."""
        self._check_edge_vec(edge_vec)
        require_features(x_source, self.Rs_in, "source features", rows=edge_vec.shape[0])
        return self._edge_messages(edge_vec, x_source)

    def _edge_messages(self, edge_vec: Tensor, x_source: Tensor) -> Tensor:
        """:meth:`apply` on checked inputs."""
        weights = self._engine_weights(edge_lengths(edge_vec))  # [E, n_w]
        sh = self.sh(self.plan.filter_orders, edge_vec)  # [E, n_Y]
        return self._engine_impl.messages(weights, sh, x_source, list(self.mix))  # [E, dim_out]

    def convolve(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        num_nodes: int,
        pairing: EdgePairing | None = None,
        geometry: RowGeometry | None = None,
    ) -> Tensor:
        r""":math:`\sum_{e:\, j \to i} K(r_e)\, x_j` for every target :math:`i`.

        Args:
            x (Tensor): source node features ``[N_s, dim(Rs_in)]``.
            edge_index (Tensor): ``[2, E]`` (source, target) indices.
            edge_vec (Tensor): ``[E, 3]`` edge vectors.
            num_nodes (int): the number of targets :math:`N_t`.
            pairing (EdgePairing, optional): rows of the fused engine, e.g. from
                :func:`~e3nn_pyg.tensor_product.fused.pair_edges` on a symmetric graph
                (both directions of a pair then share one radial-model evaluation; the
                gradient with respect to ``edge_vec`` lands on the pair's first edge,
                the gradient with respect to positions is unchanged). ``None``: one row
                per edge. Ignored by the reference engine. (default: ``None``)
            geometry (RowGeometry, optional): the rows' vectors, lengths and harmonics,
                shared by the kernels of a network that convolve on the same graph (its
                ``pairing`` is then the one used). (default: ``None``)

        Returns:
            Tensor ``[N_t, dim(Rs_out)]``.
        """
        self._check_edge_vec(edge_vec)
        require_features(x, self.Rs_in, "node features")
        self.check_like_parameters(x, "node features")
        if type(edge_index) is not Tensor:  # engines index raw memory
            raise TypeError(
                f"edge_index must be a plain tensor, got {type(edge_index).__name__} "
                "(convert an EdgeIndex with as_tensor())"
            )
        if edge_index.shape != (2, edge_vec.shape[0]):
            raise ValueError(
                f"edge_index has shape {tuple(edge_index.shape)}, expected [2, {edge_vec.shape[0]}]"
            )
        require_edges(edge_index, x.shape[0], num_nodes)
        if geometry is not None:
            pairing = geometry.pairing
        if pairing is None:
            pairing = pair_edges(edge_index, symmetric=False)
        else:
            _require_rows(pairing, x.shape[0], num_nodes)
        if geometry is None:
            geometry = RowGeometry(edge_vec, pairing)
        return self._convolve(x, edge_index, edge_vec, num_nodes, geometry)

    def _convolve(
        self, x: Tensor, edge_index: Tensor, edge_vec: Tensor, num_nodes: int, geometry: RowGeometry
    ) -> Tensor:
        """:meth:`convolve` on checked inputs (a plain ``edge_index``, indices in range)."""
        engine = self._engine_impl
        if not engine.takes_rows(x, edge_vec):  # the sum of the messages
            messages = self._edge_messages(edge_vec, x.index_select(0, edge_index[0]))
            out = messages.new_zeros(num_nodes, messages.shape[1])  # [N_t, dim_out]
            return out.index_add(0, edge_index[1], messages)
        weights = self._engine_weights(geometry.lengths)  # [rows, n_w]
        sh = geometry.sh(self.sh, self.plan.filter_orders, self.sh_key)  # [rows, n_Y]
        return engine.convolve(weights, sh, x, geometry.pairing, num_nodes, list(self.mix))

    def extra_repr(self) -> str:
        return (
            f"Rs_in={self.Rs_in}, Rs_out={self.Rs_out}, n_path={self.n_path}, "
            f"normalization={self.normalization!r}, mode={self.mode!r}, engine={self.engine!r}"
        )


def _is_radial_mlp(model: nn.Module) -> bool:
    """Whether ``model`` is a :class:`~e3nn_pyg.radial.RadialMLP` computing what its class
    does (whose unchecked cores a kernel may call)."""
    return isinstance(model, RadialMLP) and type(model).forward is RadialMLP.forward


def _require_rows(pairing: EdgePairing, num_src: int, num_dst: int) -> None:
    """Raise ``IndexError`` unless the rows of ``pairing`` read sources and write targets in
    range (a paired row also runs reversed), with one synchronisation."""
    inside = [
        ((src >= 0) & (src < num_src) & (dst >= 0) & (dst < num_dst)).all()
        for _, _, src, dst in pairing.groups()
    ]
    if inside:
        require(
            torch.stack(inside).all(), IndexError, "the pairing has a node out of range",
            lambda: f"the pairing has a node out of range [0, {num_src}) or [0, {num_dst})",
        )  # fmt: skip

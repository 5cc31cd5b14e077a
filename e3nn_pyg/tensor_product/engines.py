r"""Engines: the ways a kernel's paths are applied, one object per way.

An engine is planned once from a kernel's :class:`~.fused.FusedTensorProduct` (the layout:
paths, radial weight layout, message parts) and never sees the kernel that owns it: it
takes explicit tensors in, in the layout's conventions (radial weights ``[rows, n_w]`` in
the engine's column order, see :attr:`~.fused.FusedTensorProduct.weight_permutation`;
harmonics ``[rows, n_Y]`` in ``plan.filter_orders`` order; node features ``mul_ir``;
the channel-wise mixing maps), and gives tensors out:

- :meth:`Engine.messages`: :math:`K(r_e)\, x_e` for every edge, ``[E, dim_out]`` (PyG's
  ``message``, used by explain mode and per-message hooks);
- :meth:`Engine.convolve`: :math:`\sum_{e:\, j \to i} K(r_e)\, x_j` for every target,
  ``[N_t, dim_out]``, on the rows of an :class:`~.fused.EdgePairing` (PyG's
  ``message_and_aggregate``), for the engines whose :meth:`Engine.takes_rows` says so;
  the owner sums :meth:`Engine.messages` at the targets otherwise.

Every engine gives the same values and gradients of every order, up to rounding:

========================  ================================================================
``"reference"``           per block pair einsums (:mod:`.reference`), the tests' oracle
``"fused"``               every path in a few batched products per chunk of rows
                          (:mod:`.fused`), eager; any device and dtype
``"compiled"``            ``"fused"`` with its chunks through :func:`torch.compile`
``"native"``              on CPU: gather, sparse Clebsch-Gordan coupling, radial weights
                          and sum in one C loop per table of paths (:mod:`.native`)
``"auto"``                ``"native"`` where it applies (CPU, float32 or float64, a C
                          compiler), ``"fused"`` otherwise, decided per call (the C
                          kernels are built on the first call that uses them)
========================  ================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from ..checks import require_choice
from ..radial import edge_lengths
from . import native
from .fused import EdgePairing, FusedTensorProduct
from .reference import apply_kernel, cg_lookup, full_weights

__all__ = ["ENGINES", "Engine", "RowGeometry", "make_engine"]

ENGINES = ("auto", "reference", "fused", "compiled", "native")

Harmonics = Callable[[list[int], Tensor], Tensor]


class RowGeometry:
    r"""The rows of an :class:`~.fused.EdgePairing`: their vectors, lengths and spherical
    harmonics, each computed once for every kernel (layer) that convolves on them.

    Args:
        edge_vec (Tensor): the edge vectors ``[E, 3]``.
        pairing (EdgePairing): the rows.
    """

    def __init__(self, edge_vec: Tensor, pairing: EdgePairing) -> None:
        self.pairing = pairing
        self.vectors = edge_vec.index_select(0, pairing.edge)  # [rows, 3]
        self._lengths: Tensor | None = None
        self._sh: dict[Any, Tensor] = {}

    @property
    def lengths(self) -> Tensor:
        """:math:`|r|` of every row ``[rows]``."""
        if self._lengths is None:
            self._lengths = edge_lengths(self.vectors)
        return self._lengths

    def sh(self, function: Harmonics, orders: list[int], key: Hashable | None) -> Tensor:
        """``function(orders, vectors)``, the harmonics of the rows ``[rows, n_Y]``, computed
        once per ``key`` and orders (``key=None``: a function nothing says two callers
        share, computed on every call)."""
        if key is None:
            return function(orders, self.vectors)
        memo = (key, tuple(orders))
        if memo not in self._sh:
            self._sh[memo] = function(orders, self.vectors)
        return self._sh[memo]


class Engine:
    """How a layout's paths are applied (see the module docstring).

    Args:
        layout (FusedTensorProduct): the paths and their radial weight layout.
        chunk_size (int): rows per step, for the engines that work in chunks.
    """

    name = "engine"

    def __init__(self, layout: FusedTensorProduct, chunk_size: int) -> None:
        self.layout = layout
        self.chunk_size = chunk_size
        layout.compile_rows = None

    def takes_rows(self, x: Tensor, edge_vec: Tensor) -> bool:
        """Whether :meth:`convolve` runs on these tensors (else the owner sums
        :meth:`messages`)."""
        return False

    def messages(self, weights: Tensor, sh: Tensor, x_source: Tensor, mix: list[Tensor]) -> Tensor:
        r""":math:`K(r_e)\, x_e` ``[E, dim_out]`` from the edges' radial weights
        ``[E, n_w]``, harmonics ``[E, n_Y]`` and source features ``[E, dim_in]``."""
        raise NotImplementedError

    def convolve(
        self,
        weights: Tensor,
        sh: Tensor,
        x: Tensor,
        rows: EdgePairing,
        num_nodes: int,
        mix: list[Tensor],
    ) -> Tensor:
        """The sums of the messages at their targets ``[num_nodes, dim_out]`` from the rows'
        radial weights ``[R, n_w]`` and harmonics ``[R, n_Y]`` and the source node
        features ``[N_s, dim_in]`` (rows in range: the owner checks them)."""
        raise NotImplementedError(f"the {self.name} engine works per edge (see takes_rows)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReferenceEngine(Engine):
    """One block pair at a time with einsums (:func:`.reference.apply_kernel`)."""

    name = "reference"

    def messages(self, weights: Tensor, sh: Tensor, x_source: Tensor, mix: list[Tensor]) -> Tensor:
        plan = self.layout.plan
        conventional = torch.argsort(self.layout.weight_permutation)  # of each column
        weights = full_weights(plan, weights.index_select(1, conventional), mix)  # [E, n_path]
        orders = plan.filter_orders
        by_order = dict(zip(orders, sh.split([2 * l + 1 for l in orders], dim=1)))
        return apply_kernel(plan, weights, by_order, cg_lookup(x_source), x_source)


class FusedEngine(Engine):
    """Batched products over chunks of rows (:class:`.fused.FusedTensorProduct`)."""

    name = "fused"

    def takes_rows(self, x: Tensor, edge_vec: Tensor) -> bool:
        return not torch.compiler.is_compiling()  # chunks of unknown sizes: the compiler fuses

    def messages(self, weights: Tensor, sh: Tensor, x_source: Tensor, mix: list[Tensor]) -> Tensor:
        parts = self.layout(weights, sh, x_source.unsqueeze(1))  # [E, 1, width] each
        return self.layout.assemble([p.squeeze(1) for p in parts], mix)  # [E, dim_out]

    def convolve(
        self,
        weights: Tensor,
        sh: Tensor,
        x: Tensor,
        rows: EdgePairing,
        num_nodes: int,
        mix: list[Tensor],
    ) -> Tensor:
        layout, chunk_size = self.layout, self.chunk_size
        out = [x.new_zeros(num_nodes, width) for width in layout.part_widths]  # [N_t, *]
        chunks = [  # (directions, source index, target index) of every chunk of rows
            (directions, src[start : start + chunk_size], dst[start : start + chunk_size])
            for directions, _, src, dst in rows.groups()
            for start in range(0, src.shape[0], chunk_size)
        ]
        sizes = [src.shape[0] for _, src, _ in chunks]
        # split (not sliced) per chunk: one backward node gathers the chunks' gradients
        pieces = zip(chunks, weights.split(sizes), sh.split(sizes))
        for (directions, src, dst), weights_rows, sh_rows in pieces:
            features = x.index_select(0, src.reshape(-1)).view(
                src.shape[0], directions, -1
            )  # [R, D, dim_in]
            parts = layout(weights_rows, sh_rows, features)  # [R, D, width] each
            target = dst.reshape(-1)  # [R D]
            out = [o.index_add(0, target, p.flatten(0, 1)) for o, p in zip(out, parts)]
        return layout.assemble(out, mix)  # [N_t, dim_out]


class CompiledEngine(FusedEngine):
    """:class:`FusedEngine` with its chunks through :func:`torch.compile`."""

    name = "compiled"

    def __init__(self, layout: FusedTensorProduct, chunk_size: int) -> None:
        super().__init__(layout, chunk_size)
        layout.compile_rows = chunk_size  # the static chunk of the compilation


class NativeEngine(FusedEngine):
    """The convolution in one C loop (:mod:`.native`); ``"fused"`` where that cannot run.

    ``messages`` (one message per edge, for explain mode) is the fused engine's; so is
    everything on tensors the C kernels do not take (CUDA, half precision).
    """

    name = "native"

    def __init__(self, layout: FusedTensorProduct, chunk_size: int) -> None:
        super().__init__(layout, chunk_size)
        self.kernels = native.NativeKernels(layout)

    def takes_rows(self, x: Tensor, edge_vec: Tensor) -> bool:
        return self.kernels.supports(x, edge_vec) or super().takes_rows(x, edge_vec)

    def convolve(
        self,
        weights: Tensor,
        sh: Tensor,
        x: Tensor,
        rows: EdgePairing,
        num_nodes: int,
        mix: list[Tensor],
    ) -> Tensor:
        if not self.kernels.supports(x, weights):
            return super().convolve(weights, sh, x, rows, num_nodes, mix)
        parts = self.kernels.convolve(weights, sh, x, rows, num_nodes)  # [N_t, *]
        return self.layout.assemble(parts, mix)  # [N_t, dim_out]


def make_engine(name: str, layout: FusedTensorProduct, chunk_size: int = 1024) -> Engine:
    """The engine called ``name`` on ``layout`` (``"auto"`` resolved, see the table)."""
    require_choice(name, "engine", ENGINES)
    if name == "native" and not native.available():
        raise RuntimeError(f'engine="native" is not available: {native.build_error()}')
    engines = {"reference": ReferenceEngine, "fused": FusedEngine, "compiled": CompiledEngine,
               "native": NativeEngine, "auto": NativeEngine}  # fmt: skip
    return engines[name](layout, chunk_size)

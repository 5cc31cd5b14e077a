r"""Engines: the ways a :class:`~e3nn_pyg.kernel.Kernel` is applied, one object per way.

An engine is chosen once per kernel (``Kernel(engine=...)``) and has one small interface:

- :meth:`Engine.messages`: :math:`K(r_e)\, x_e` for every edge, ``[E, dim_out]`` (PyG's
  ``message``, used by explain mode and per-message hooks);
- :meth:`Engine.convolve`: :math:`\sum_{e:\, j \to i} K(r_e)\, x_j` for every target,
  ``[N_t, dim_out]`` (PyG's ``message_and_aggregate``).

They read the kernel's plan, radial model, harmonics and mixing maps, and keep no state of
their own but their tables. Every engine gives the same values and gradients of every
order, up to rounding:

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

from typing import Any

import torch
from torch import Tensor

from ..checks import require_choice
from ..radial import edge_lengths
from . import native
from .fused import EdgePairing
from .reference import apply_kernel

__all__ = ["ENGINES", "Engine", "RowGeometry", "make_engine"]

ENGINES = ("auto", "reference", "fused", "compiled", "native")


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

    def sh(self, kernel: Any) -> Tensor:
        """The kernel's spherical harmonics of the rows ``[rows, n_Y]`` (shared by kernels
        of equal ``kernel.sh_key``, i.e. the same harmonics function)."""
        if kernel.sh_key is None:  # a custom function: nothing says two kernels' agree
            return kernel.sh(kernel.plan.filter_orders, self.vectors)
        key = (kernel.sh_key, tuple(kernel.plan.filter_orders))
        if key not in self._sh:
            self._sh[key] = kernel.sh(kernel.plan.filter_orders, self.vectors)
        return self._sh[key]


class Engine:
    """How a kernel computes messages and their sums (see the module docstring)."""

    name = "engine"

    def messages(self, kernel: Any, edge_vec: Tensor, x_source: Tensor) -> Tensor:
        """:math:`K(r_e) x_e` ``[E, dim_out]`` for edge vectors ``[E, 3]`` and features."""
        raise NotImplementedError

    def convolve(
        self,
        kernel: Any,
        x: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        num_nodes: int,
        geometry: RowGeometry,
    ) -> Tensor:
        """The sums of the messages at their targets ``[num_nodes, dim_out]``; ``geometry``
        holds the rows (edges or pairs of edges) that engines working per row use."""
        messages = self.messages(kernel, edge_vec, x.index_select(0, edge_index[0]))
        out = messages.new_zeros(num_nodes, messages.shape[1])
        return out.index_add(0, edge_index[1], messages)  # [N_t, dim_out]

    def attach(self, kernel: Any) -> None:
        """Set up ``kernel`` for this engine (called when chosen and when the kernel's
        :attr:`~e3nn_pyg.kernel.Kernel.chunk_size` changes)."""
        kernel.fused.compile_rows = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReferenceEngine(Engine):
    """One block pair at a time with einsums (:func:`.reference.apply_kernel`)."""

    name = "reference"

    def messages(self, kernel: Any, edge_vec: Tensor, x_source: Tensor) -> Tensor:
        weights, sh = kernel._edge_terms(edge_vec)
        return apply_kernel(kernel.plan, kernel.full_weights(weights), sh, kernel._cg, x_source)


class FusedEngine(Engine):
    """Batched products over chunks of rows (:class:`.fused.FusedTensorProduct`)."""

    name = "fused"

    def messages(self, kernel: Any, edge_vec: Tensor, x_source: Tensor) -> Tensor:
        fused = kernel.fused
        (weights,) = kernel._engine_weights(edge_lengths(edge_vec))  # [E, n_w]
        y = kernel.sh(kernel.plan.filter_orders, edge_vec)  # [E, n_Y]
        parts = fused(weights, y, x_source.unsqueeze(1))  # [E, 1, width] each
        return fused.assemble([p.squeeze(1) for p in parts], list(kernel.mix))

    def convolve(
        self,
        kernel: Any,
        x: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        num_nodes: int,
        geometry: RowGeometry,
    ) -> Tensor:
        if torch.compiler.is_compiling():  # chunks of unknown sizes: the compiler fuses
            return super().convolve(kernel, x, edge_index, edge_vec, num_nodes, geometry)
        fused, chunk_size = kernel.fused, kernel.chunk_size
        pairing = geometry.pairing
        lengths, y = geometry.lengths, geometry.sh(kernel)  # [rows], [rows, n_Y]
        out = [x.new_zeros(num_nodes, width) for width in fused.part_widths]  # [N_t, *]
        chunks = [  # (directions, source index, target index) of every chunk of rows
            (directions, src[start : start + chunk_size], dst[start : start + chunk_size])
            for directions, _, src, dst in pairing.groups()
            for start in range(0, src.shape[0], chunk_size)
        ]
        sizes = [src.shape[0] for _, src, _ in chunks]
        # split (not sliced) per chunk: one backward node gathers the chunks' gradients
        all_weights = kernel._engine_weights(lengths, sizes)  # [R, n_w] each
        for (directions, src, dst), weights, y_rows in zip(chunks, all_weights, y.split(sizes)):
            features = x.index_select(0, src.reshape(-1)).view(
                src.shape[0], directions, -1
            )  # [R, D, dim_in]
            parts = fused(weights, y_rows, features)  # [R, D, width] each
            target = dst.reshape(-1)  # [R D]
            out = [o.index_add(0, target, p.flatten(0, 1)) for o, p in zip(out, parts)]
        return fused.assemble(out, list(kernel.mix))  # [N_t, dim_out]


class CompiledEngine(FusedEngine):
    """:class:`FusedEngine` with its chunks through :func:`torch.compile`."""

    name = "compiled"

    def attach(self, kernel: Any) -> None:
        kernel.fused.compile_rows = kernel.chunk_size  # the static chunk of the compilation


class NativeEngine(FusedEngine):
    """The convolution in one C loop (:mod:`.native`); ``"fused"`` where that cannot run.

    ``messages`` (one message per edge, for explain mode) is the fused engine's; so is
    everything on tensors the C kernels do not take (CUDA, half precision).
    """

    name = "native"

    def __init__(self, kernel: Any) -> None:
        self.kernels = native.NativeKernels(kernel.fused)

    def convolve(
        self,
        kernel: Any,
        x: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        num_nodes: int,
        geometry: RowGeometry,
    ) -> Tensor:
        if not self.kernels.supports(x, edge_vec):
            return super().convolve(kernel, x, edge_index, edge_vec, num_nodes, geometry)
        (weights,) = kernel._engine_weights(geometry.lengths)  # [rows, n_w]
        y = geometry.sh(kernel)  # [rows, n_Y]
        parts = self.kernels.convolve(weights, y, x, geometry.pairing, num_nodes)  # [N_t, *]
        return kernel.fused.assemble(parts, list(kernel.mix))  # [N_t, dim_out]


def make_engine(name: str, kernel: Any) -> Engine:
    """The engine called ``name`` for ``kernel`` (``"auto"`` resolved, see the table)."""
    require_choice(name, "engine", ENGINES)
    if name == "native":
        if not native.available():
            raise RuntimeError(f'engine="native" is not available: {native.build_error()}')
        return NativeEngine(kernel)
    if name == "auto":  # the native kernels are built on the first call that can use them
        return NativeEngine(kernel)
    engines = {"reference": ReferenceEngine, "fused": FusedEngine, "compiled": CompiledEngine}
    return engines[name]()

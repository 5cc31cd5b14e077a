r"""The native engine: the convolution as one fused C loop per row, as PyTorch operators.

For a kernel's table of paths the whole convolution, gather of the source features, sparse
Clebsch-Gordan coupling with the spherical harmonics, radial weights and sum at the
targets, is one loop over the rows of an
:class:`~e3nn_pyg.tensor_product.fused.EdgePairing`:

.. math::
    \text{out}_{t, o, k, v} \mathrel{+}= \sum_{(i, j, k, c)} c\, Y_j(\pm r)\,
        x_{s, b, i, v}\, w_{p, v}

for every path :math:`p` (input block :math:`b` to output block :math:`o` through filter
:math:`l_f`), over the non-zero Clebsch-Gordan entries only, with the channels :math:`v`
innermost so that the loops vectorise (a fully connected kernel mixes the channels
:math:`v \to u` with its weights instead). No per-edge message is ever stored. The
backward computes the three gradients in one pass, the double backward (channel-wise) too.

The package is layered:

- :mod:`.layout`: the table of paths (:class:`NativeLayout`), planned once from an engine;
- :mod:`~e3nn_pyg.tensor_product.native.codegen`: C loops specialised to one layout;
- :mod:`~e3nn_pyg.tensor_product.native.build`: compiling and loading C sources (on
  first use, cached on disk);
- :mod:`.ops`: the operators ``torch.ops.e3nn_pyg.native_conv*`` on explicit tensors,
  with fake kernels and autograd, which :func:`torch.compile` and :func:`torch.export`
  keep in their graphs;
- :class:`NativeKernels` (here): what the native engine calls.

Node sums are accumulated per thread and added in a fixed order, so results do not depend
on thread scheduling.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import unset_fake_temporarily

from ..fused import EdgePairing, FusedTensorProduct
from . import ops
from .build import available, build_error
from .codegen import specialized_source
from .layout import NativeLayout, NativePath

__all__ = [
    "NativeKernels",
    "NativeLayout",
    "NativePath",
    "available",
    "build_error",
    "specialized_source",
]

_DTYPES = (torch.float32, torch.float64)


class NativeKernels:
    r"""The native operators on one engine's table of paths.

    Args:
        engine (FusedTensorProduct): the engine whose paths, radial weight layout
            (:attr:`~FusedTensorProduct.weight_permutation`) and message parts
            (:attr:`~FusedTensorProduct.part_widths`, :meth:`~FusedTensorProduct.assemble`)
            the kernels share.
    """

    def __init__(self, engine: FusedTensorProduct) -> None:
        self.layout = NativeLayout.plan(engine)
        self.rs_in = engine.plan.rs_in  # node features in "ir_mul": per block [2l+1, mul]
        self.part_widths = list(engine.part_widths)

    def supports(self, *tensors: Tensor) -> bool:
        """Whether the kernels run on these tensors (CPU, float32 or float64, buildable;
        the kernels are built on the first call)."""
        on_cpu = all(t.device.type == "cpu" and t.dtype in _DTYPES for t in tensors)
        return on_cpu and _buildable(self.layout)

    def to_ir_mul(self, x: Tensor) -> Tensor:
        """Node features ``[N, dim_in]`` (e3nn's ``mul_ir``) to the kernels' ``ir_mul``."""
        blocks = [
            chunk.transpose(1, 2).flatten(1)  # [N, (2l+1) mul]
            for (mul, _, _), chunk in zip(self.rs_in, self.rs_in.chunks(x))
            if mul > 0
        ]
        if not blocks:
            return x
        return torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]  # [N, dim_in]

    def convolve(
        self, weights: Tensor, sh: Tensor, x: Tensor, pairing: EdgePairing, num_dst: int
    ) -> list[Tensor]:
        r"""The summed message parts ``[N_t, width]`` of every output block.

        Args:
            weights (Tensor): radial weights of the rows ``[R, n_w]`` (engine layout).
            sh (Tensor): spherical harmonics of the rows' vectors ``[R, n_Y]``.
            x (Tensor): source node features ``[N_s, dim_in]`` (``mul_ir``).
            pairing (EdgePairing): the rows (indices in range: the callers check them).
            num_dst (int): the number of targets.
        """
        layout = self.layout
        paired = pairing.num_paired
        if not isinstance(paired, Tensor):
            paired = torch.tensor(paired)
        out = torch.ops.e3nn_pyg.native_conv(
            weights, sh, self.to_ir_mul(x), pairing.src, pairing.dst, paired,
            num_dst, layout.out_width, layout.table, layout.ijk, layout.coefficients,
        )  # fmt: skip  # [N_t, sum of widths]
        return list(out.split(self.part_widths, dim=1))


@torch.compiler.assume_constant_result
def _buildable(layout: NativeLayout) -> bool:
    """Whether the kernels of ``layout`` build here (built now if not yet; a constant to the
    compiler, which traces the operator whatever it does at run time). The layout's
    tensors are real ones even while :func:`torch.export` traces with fake tensors."""
    try:
        with unset_fake_temporarily():
            ops.build(layout)
    except RuntimeError:
        return False
    return True

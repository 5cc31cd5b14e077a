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

from .o3 import Rs, RsLike, spherical_harmonics, wigner_3j
from .tensor_product.paths import KernelPlan, SelectionRule, plan_kernel, selection_rule
from .tensor_product.reference import apply_kernel, kernel_matrix

__all__ = ["Kernel", "edge_lengths"]


def edge_lengths(edge_vec: Tensor) -> Tensor:
    r""":math:`|r|` of every edge, with a zero (not NaN) gradient for zero-length edges."""
    squared = edge_vec.pow(2).sum(dim=-1)  # [E]
    nonzero = squared > 0
    return torch.where(nonzero, squared, torch.ones_like(squared)).sqrt() * nonzero


class Kernel(nn.Module):
    r"""The equivariant kernel of the e3nn point convolution.

    .. math::
        K(r)_{u m_o, v m_i} = \sqrt{\frac{2 l_o + 1}{N_o}} \sum_f R_{uvf}(|r|)
            \sum_{m_f} C^{(l_i, l_f, l_o)}_{m_i m_f m_o} Y^{l_f}_{m_f}(\hat r)

    for every path from input block :math:`(v, m_i)` to output block :math:`(u, m_o)`
    through filter order :math:`l_f` (CONVENTIONS.md: parity rule, radial weight layout,
    :math:`N_o` the number of paths into the output block).

    Args:
        Rs_in (Rs-like): input representation.
        Rs_out (Rs-like): output representation.
        RadialModel (callable): ``RadialModel(out_dim)`` builds the radial model, a module
            mapping edge lengths ``[E]`` to weights ``[E, out_dim]`` (any cutoff envelope
            belongs to it). Called with ``out_dim = n_path``.
        sh (callable, optional): ``sh(ls, vectors) -> [E, sum(2l+1)]``. ``None`` uses
            :func:`~e3nn_pyg.o3.spherical_harmonics` in the kernel's normalization.
            (default: ``None``)
        selection_rule (callable, optional): ``(l_in, p_in, l_out, p_out) -> [l_f]``; fix
            options with :func:`functools.partial` on
            :func:`~e3nn_pyg.tensor_product.paths.selection_rule`.
            (default: every allowed order)
        normalization (str, optional): ``"component"`` or ``"norm"``.
            (default: ``"component"``)

    Shapes:
        - **forward:** edge vectors :math:`(E, 3)` → kernels :math:`(E, \dim_o, \dim_i)`
        - **apply:** edge vectors :math:`(E, 3)`, source features :math:`(E, \dim_i)` →
          :math:`(E, \dim_o)`

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
    ) -> None:
        super().__init__()
        self.plan: KernelPlan = plan_kernel(Rs_in, Rs_out, selection_rule, normalization)
        self.Rs_in: Rs = self.plan.rs_in
        self.Rs_out: Rs = self.plan.rs_out
        self.normalization = normalization
        self.sh = (
            sh if sh is not None else partial(spherical_harmonics, normalization=normalization)
        )
        self.R = RadialModel(self.plan.n_path)
        self._cg_names: dict[tuple[int, int, int], str] = {}
        for pair in self.plan.pairs:
            for l_f in pair.filters:
                key = (pair.l_in, l_f, pair.l_out)
                if key not in self._cg_names:
                    self._cg_names[key] = "cg_{}_{}_{}".format(*key)
                    self.register_buffer(self._cg_names[key], wigner_3j(*key), persistent=False)

    @property
    def n_path(self) -> int:
        """Number of radial weights per edge (the radial model's ``out_dim``)."""
        return self.plan.n_path

    @property
    def max_radius(self) -> float | None:
        """The radial model's cutoff radius, when it has one."""
        return getattr(self.R, "max_radius", None)

    def reset_parameters(self) -> None:
        """Re-initialize the radial model."""
        if hasattr(self.R, "reset_parameters"):
            self.R.reset_parameters()

    def _cg(self, l_in: int, l_f: int, l_out: int) -> Tensor:
        return getattr(self, self._cg_names[l_in, l_f, l_out])

    def _check_edge_vec(self, edge_vec: Tensor) -> None:
        if not isinstance(edge_vec, Tensor) or edge_vec.dim() != 2 or edge_vec.shape[1] != 3:
            shape = tuple(edge_vec.shape) if isinstance(edge_vec, Tensor) else type(edge_vec)
            raise ValueError(f"edge vectors must have shape [num_edges, 3], got {shape}")
        parameter = next(self.R.parameters(), None)
        if parameter is not None and (
            edge_vec.dtype != parameter.dtype or edge_vec.device != parameter.device
        ):
            raise TypeError(
                f"edge vectors are {edge_vec.dtype} on {edge_vec.device} but the kernel's "
                f"parameters are {parameter.dtype} on {parameter.device}: convert one of them"
            )

    def edge_terms(self, edge_vec: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """Radial weights ``[E, n_path]`` and spherical harmonics ``{l: [E, 2l+1]}``."""
        self._check_edge_vec(edge_vec)
        weights = self.R(edge_lengths(edge_vec))  # [E, n_path]
        orders = self.plan.filter_orders
        y = self.sh(orders, edge_vec)  # [E, sum(2l+1)]
        sh = dict(zip(orders, y.split([2 * l + 1 for l in orders], dim=-1)))
        return weights, sh

    def forward(self, edge_vec: Tensor) -> Tensor:
        """The kernel matrices ``[E, dim(Rs_out), dim(Rs_in)]`` (for inspection)."""
        weights, sh = self.edge_terms(edge_vec)
        return kernel_matrix(self.plan, weights, sh, self._cg)

    def apply(self, edge_vec: Tensor, x_source: Tensor) -> Tensor:
        r""":math:`K(r_e)\, x_e` for every edge ``[E, dim(Rs_out)]``, never building K."""
        if x_source.dim() != 2 or x_source.shape[1] != self.Rs_in.dim:
            raise ValueError(
                f"source features have shape {tuple(x_source.shape)}, expected "
                f"[num_edges, {self.Rs_in.dim}] for Rs_in {self.Rs_in}"
            )
        weights, sh = self.edge_terms(edge_vec)
        return apply_kernel(self.plan, weights, sh, self._cg, x_source)

    def extra_repr(self) -> str:
        return (
            f"Rs_in={self.Rs_in}, Rs_out={self.Rs_out}, n_path={self.n_path}, "
            f"normalization={self.normalization!r}"
        )

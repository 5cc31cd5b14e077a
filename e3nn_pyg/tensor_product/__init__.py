"""The tensor-product engine: path planning and the implementations that apply kernels."""

from .paths import BlockPair, KernelPlan, plan_kernel, selection_rule
from .reference import apply_kernel, filter_matrices, kernel_matrix
from .symmetric import SymmetricContraction, symmetric_contraction_reference

__all__ = [
    "BlockPair",
    "KernelPlan",
    "SymmetricContraction",
    "apply_kernel",
    "filter_matrices",
    "kernel_matrix",
    "plan_kernel",
    "selection_rule",
    "symmetric_contraction_reference",
]

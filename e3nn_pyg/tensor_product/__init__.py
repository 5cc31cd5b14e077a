"""The tensor-product engine: path planning and the implementations that apply kernels."""

from .paths import BlockPair, KernelPlan, plan_kernel, selection_rule
from .reference import apply_kernel, filter_matrices, kernel_matrix

__all__ = [
    "BlockPair",
    "KernelPlan",
    "apply_kernel",
    "filter_matrices",
    "kernel_matrix",
    "plan_kernel",
    "selection_rule",
]

"""The table of paths of the native kernels: planned once, carried as three tensors."""

import pytest
import torch

from e3nn_pyg.tensor_product.fused import FusedTensorProduct
from e3nn_pyg.tensor_product.native import NativeLayout, NativePath
from e3nn_pyg.tensor_product.native.layout import HEADER_SIZE
from e3nn_pyg.tensor_product.paths import plan_kernel


def layout(rs_in, rs_out, channelwise):
    engine = FusedTensorProduct(plan_kernel(rs_in, rs_out), channelwise=channelwise)
    return NativeLayout.plan(engine)


@pytest.mark.parametrize("channelwise", [True, False])
def test_the_tensors_give_the_layout_back(channelwise):
    planned = layout("2x0e+1x1o+1x2e", "3x0e+2x1o", channelwise)
    again = NativeLayout.from_tensors(planned.table, planned.ijk, planned.coefficients.float())
    assert again.key == planned.key and again.paths == planned.paths
    assert again.widths == planned.widths and torch.equal(again.ijk, planned.ijk)
    assert again.table.shape == (HEADER_SIZE + len(planned.paths) * len(NativePath._fields),)


def test_different_tables_have_different_keys_and_paths_name_their_columns():
    a = layout("2x0e+1x1o", "2x0e+1x1o", True)
    b = layout("2x0e+1x1o", "2x0e+1x1o", False)
    c = layout("2x0e+1x1o", "2x0e+1x1o+1x2e", True)  # one more path
    assert len({a.key, b.key, c.key}) == 3 and a != b
    path = a.paths[0]
    assert path.mixed == 0 and path.channels == 2 and path.dim_in == 1
    assert b.paths[0].mixed == 2  # a full kernel mixes into the output multiplicity
    assert "channelwise=True" in repr(a)

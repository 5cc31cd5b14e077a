"""SelfInteraction and SpeciesSelfInteraction: equivariance, which blocks mix,
normalization, the rows of each node, validation."""

import pytest
import torch

from e3nn_pyg.models import SelfInteraction, SpeciesSelfInteraction
from e3nn_pyg.testing import assert_equivariant

RS_IN = "3x0e + 2x1o + 1x1e + 2x0o + 1x2e"
RS_OUT = "4x0e + 3x1o + 2x1e + 1x0o + 2x3o"


pytestmark = pytest.mark.usefixtures("float64")


def test_equivariant_with_parities():
    torch.manual_seed(0)
    layer = SelfInteraction(RS_IN, RS_OUT)
    torch.nn.init.normal_(layer.biases[0])
    errors = assert_equivariant(layer, [torch.randn(10, layer.Rs_in.dim)], [RS_IN], [RS_OUT])
    assert set(errors) == {"rotation", "parity", "translation"}


def test_only_equal_irreps_mix_and_unmatched_outputs_are_zero():
    torch.manual_seed(0)
    layer = SelfInteraction("2x1o + 1x1e", "1x1o + 1x1e + 1x2e")
    x = torch.zeros(1, 9)
    x[0, 6:9] = 1.0  # only the 1e input is set
    y = layer(x)  # [1, 3 + 3 + 5]
    assert torch.equal(y[0, :3], torch.zeros(3))  # 1o output ignores the 1e input
    assert y[0, 3:6].abs().min() > 0  # 1e output reads it
    assert torch.equal(y[0, 6:], torch.zeros(5))  # no 2e input: zero
    assert [tuple(w.shape) for w in layer.weights] == [(1, 2), (1, 1)]


def test_bias_only_on_true_scalars():
    layer = SelfInteraction("2x0e + 2x0o", "3x0e + 1x0o + 1x1o")
    assert [tuple(b.shape) for b in layer.biases] == [(3,)]
    assert len(SelfInteraction("2x0e", "3x0e", bias=False).biases) == 0


def test_unit_variance_is_preserved():
    torch.manual_seed(0)
    layer = SelfInteraction("64x0e + 32x1o", "64x0e + 32x1o")
    y = layer(torch.randn(4000, layer.Rs_in.dim))
    assert 0.8 < y.pow(2).mean().item() < 1.2


def test_leading_batch_dimensions_and_bad_input():
    layer = SelfInteraction("2x0e + 1x1o", "1x0e + 1x1o")
    assert layer(torch.randn(2, 3, 5)).shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"input has shape \[3, 4\], expected \[\.\.\., 5\]"):
        layer(torch.randn(3, 4))
    assert "2x0e+1x1o" in repr(layer)


def test_species_map_is_equivariant_and_each_node_uses_its_rows_matrices():
    torch.manual_seed(0)
    layer = SpeciesSelfInteraction(RS_IN, RS_OUT, num_species=3)
    for bias in layer.biases:
        torch.nn.init.normal_(bias)
    x, rows = torch.randn(7, layer.Rs_in.dim), torch.tensor([0, 2, 1, 1, 0, 2, 2])
    assert_equivariant(layer, [x, rows], [RS_IN, None], [RS_OUT])
    y = layer(x, rows)
    for row in range(3):
        plain = SelfInteraction(RS_IN, RS_OUT)
        for mine, theirs in zip(plain.parameters(), layer.parameters(), strict=True):
            mine.data.copy_(theirs.data[row])
        torch.testing.assert_close(y[rows == row], plain(x[rows == row]), rtol=0, atol=1e-14)
    assert [tuple(w.shape) for w in layer.weights[:2]] == [(3, 4, 3), (3, 3, 2)]


def test_species_map_refuses_bad_rows():
    layer = SpeciesSelfInteraction("2x0e", "1x0e", num_species=2)
    assert repr(layer) == "SpeciesSelfInteraction('2x0e' -> '1x0e', num_species=2, bias=True)"
    with pytest.raises(ValueError, match=r"rows of shape \(2,\) must give one element row per"):
        layer(torch.randn(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_species = 0 must be at least 1"):
        SpeciesSelfInteraction("2x0e", "1x0e", num_species=0)

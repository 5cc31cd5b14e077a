"""Tests of the equivariance checker e3nn_pyg.testing.equivariance (it must pass good and fail bad
functions); the checks of interatomic potentials are tested beside this file."""

import pytest
import torch

from e3nn_pyg.o3 import spherical_harmonics, wigner_3j
from e3nn_pyg.testing import POS, assert_equivariant, equivariance_error, max_difference

LARGE = 1e-2  # a broken symmetry gives errors of order one on these O(1) inputs


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _sh(v):
    return spherical_harmonics([0, 1, 2], v)


def _cross(a, b):
    return torch.linalg.cross(a, b)


def _relative_vectors(pos):
    return pos[1:] - pos[:1]  # [N-1, 3]


# -- equivariant functions pass ---------------------------------------------------------------
def test_spherical_harmonics_are_equivariant():
    errors = equivariance_error(_sh, [_randn(10, 3)], ["1x1o"], ["0e + 1o + 2e"])
    assert set(errors) == {"rotation", "parity", "translation"}
    assert max(errors.values()) < 1e-12


def test_tensor_product_with_wigner_3j_is_equivariant():
    c = wigner_3j(1, 2, 3, dtype=torch.float64)

    def product(a, b):
        return torch.einsum("ijk,ni,nj->nk", c, a, b)

    errors = equivariance_error(
        product, [_randn(5, 3, seed=1), _randn(5, 5, seed=2)], ["1x1o", "1x2e"], ["1x3o"]
    )
    assert max(errors.values()) < 1e-12


def test_cross_product_is_a_pseudovector():
    args = [_randn(6, 3, seed=3), _randn(6, 3, seed=4)]
    errors = equivariance_error(_cross, args, ["1x1o", "1x1o"], ["1x1e"])
    assert max(errors.values()) < 1e-12
    # declared as a polar vector it is right under rotations and wrong under the inversion
    errors = equivariance_error(_cross, args, ["1x1o", "1x1o"], ["1x1o"])
    assert errors["rotation"] < 1e-12 and errors["translation"] < 1e-12
    assert errors["parity"] > LARGE


def test_single_specs_need_no_list():
    errors = equivariance_error(_sh, [_randn(4, 3)], "1x1o", "0e + 1o + 2e")
    assert max(errors.values()) < 1e-12


def test_multiple_outputs():
    def split(v):
        y = _sh(v)
        return y[:, :1], y[:, 1:4], y[:, 4:]

    errors = equivariance_error(split, [_randn(4, 3)], ["1x1o"], ["0e", "1o", "2e"])
    assert max(errors.values()) < 1e-12
    # one wrong output is enough
    errors = equivariance_error(split, [_randn(4, 3)], ["1x1o"], ["0e", "1o", "2o"])
    assert errors["rotation"] < 1e-12 and errors["parity"] > LARGE
    with pytest.raises(ValueError, match="does not match Rs"):
        equivariance_error(split, [_randn(4, 3)], ["1x1o"], ["0e", "2e", "1o"])


# -- non-equivariant functions fail ---------------------------------------------------------------
def test_adding_a_fixed_vector_is_not_equivariant():
    shift = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    errors = equivariance_error(lambda v: v + shift, [_randn(5, 3)], ["1x1o"], ["1x1o"])
    assert errors["rotation"] > LARGE
    assert errors["parity"] > LARGE
    assert errors["translation"] < 1e-12  # features do not see translations


def test_a_component_is_not_a_scalar():
    errors = equivariance_error(lambda v: v[:, :1], [_randn(5, 3)], ["1x1o"], ["1x0e"])
    assert errors["rotation"] > LARGE
    assert errors["parity"] > LARGE


def test_a_norm_is_not_a_pseudoscalar():
    def norm(v):
        return v.norm(dim=-1, keepdim=True)

    assert max(equivariance_error(norm, [_randn(5, 3)], ["1x1o"], ["0e"]).values()) < 1e-12
    errors = equivariance_error(norm, [_randn(5, 3)], ["1x1o"], ["0o"])
    assert errors["rotation"] < 1e-12 and errors["parity"] > LARGE


def test_seeds_are_reproducible_and_matter():
    def broken(v):
        return v * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    args = ([_randn(5, 3)], ["1x1o"], ["1x1o"])
    first = equivariance_error(broken, *args, seed=1)
    assert first == equivariance_error(broken, *args, seed=1)
    assert first["rotation"] != equivariance_error(broken, *args, seed=2)["rotation"]


# -- positions and translations ------------------------------------------------------------------
def test_positions_rotate_and_translate():
    pos = _randn(6, 3, seed=5)
    errors = equivariance_error(_relative_vectors, [pos], [POS], ["1x1o"])
    assert max(errors.values()) < 1e-12
    errors = equivariance_error(lambda p: p.mean(0, keepdim=True), [pos], [POS], [POS])
    assert max(errors.values()) < 1e-12


def test_positions_are_not_vectors():
    pos = _randn(6, 3, seed=6)
    # positions returned as a feature vector: rotation and inversion fine, translation not
    errors = equivariance_error(lambda p: p, [pos], ["pos"], ["1x1o"])
    assert errors["rotation"] < 1e-12 and errors["parity"] < 1e-12
    assert errors["translation"] > LARGE
    # the distance to the origin is not translation invariant
    errors = equivariance_error(lambda p: p.norm(dim=-1, keepdim=True), [pos], [POS], ["0e"])
    assert errors["rotation"] < 1e-12 and errors["translation"] > LARGE
    # ... but pairwise distances are
    errors = equivariance_error(lambda p: torch.cdist(p, p), [pos], [POS], [None])
    assert max(errors.values()) < 1e-12


# -- None specs and parity -----------------------------------------------------------------------
def test_none_specs_are_left_untouched():
    pos = _randn(6, 3, seed=7)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    seen = []

    def per_graph_center(pos, batch):
        seen.append(batch)
        centers = torch.stack([pos[batch == b].mean(0) for b in range(2)])  # [2, 3]
        return pos - centers[batch], torch.bincount(batch)

    errors = equivariance_error(per_graph_center, [pos, batch], [POS, None], ["1x1o", None])
    assert max(errors.values()) < 1e-12
    assert all(b is batch for b in seen)  # passed through as it is, integer dtype and all

    def count_positive(pos, batch):  # depends on the frame: not an invariant
        return pos - pos.mean(0), (pos[:, 0] > 0).long()

    errors = equivariance_error(count_positive, [pos, batch], [POS, None], ["1x1o", None])
    assert max(errors["rotation"], errors["parity"]) >= 1


def test_parity_is_left_out_without_parity():
    v = _randn(5, 3, seed=8)
    errors = equivariance_error(lambda v: v, [v], ["1x1"], ["1x1"])
    assert set(errors) == {"rotation", "translation"}
    errors = equivariance_error(
        lambda v: v[:, :1] * 0 + v.norm(dim=-1, keepdim=True), [v], ["1x1o"], ["1x0"]
    )
    assert set(errors) == {"rotation", "translation"}
    # empty blocks do not count
    errors = equivariance_error(lambda v: v, [v], ["1x1o + 0x2"], ["1x1o"])
    assert set(errors) == {"rotation", "parity", "translation"}


# -- assert_equivariant ------------------------------------------------------------------------
def test_assert_equivariant_passes_and_returns_the_errors():
    errors = assert_equivariant(_sh, [_randn(10, 3)], ["1x1o"], ["0e + 1o + 2e"])
    assert max(errors.values()) < 1e-12


def test_assert_equivariant_float32_tolerance():
    v = _randn(10, 3, dtype=torch.float32)
    errors = assert_equivariant(_sh, [v], ["1x1o"], ["0e + 1o + 2e"])
    assert 0 < max(errors.values()) < 1e-4


@pytest.mark.parametrize(
    ("func", "rs_in", "rs_out", "name"),
    [
        (lambda v: v[:, :1], ["1x1o"], ["0e"], "rotation"),
        (lambda a: torch.linalg.cross(a, 2 * a.roll(1, 0)), ["1x1o"], ["1x1o"], "parity"),
        (lambda p: p, [POS], ["1x1o"], "translation"),
    ],
)
def test_assert_equivariant_names_the_transformation(func, rs_in, rs_out, name):
    with pytest.raises(AssertionError, match=f"not equivariant under {name}"):
        assert_equivariant(func, [_randn(5, 3, seed=9)], rs_in, rs_out)


def test_assert_equivariant_atol():
    def nearly(v):
        return v + 1e-7 * v[:, :1]

    with pytest.raises(AssertionError, match="rotation"):
        assert_equivariant(nearly, [_randn(5, 3)], ["1x1o"], ["1x1o"])
    assert_equivariant(nearly, [_randn(5, 3)], ["1x1o"], ["1x1o"], atol=1e-5)


# -- bad specs ---------------------------------------------------------------------------------
def test_spec_count_mismatch():
    v = _randn(4, 3)
    with pytest.raises(ValueError, match="rs_in: 2 specs given for 1 tensors"):
        equivariance_error(_sh, [v], ["1x1o", "1x1o"], ["0e + 1o + 2e"])
    with pytest.raises(ValueError, match="rs_in: 1 specs given for 2 tensors"):
        equivariance_error(_cross, [v, v], ["1x1o"], ["1x1e"])
    with pytest.raises(ValueError, match="rs_out: 2 specs given for 1 tensors"):
        equivariance_error(_sh, [v], ["1x1o"], ["0e + 1o + 2e", "0e"])
    with pytest.raises(ValueError, match="rs_out"):
        assert_equivariant(_sh, [v], ["1x1o"], [])


def test_spec_dimension_mismatch():
    v = _randn(4, 3)
    with pytest.raises(ValueError, match="does not match Rs"):
        equivariance_error(_sh, [v], ["1x2e"], ["0e + 1o + 2e"])
    with pytest.raises(ValueError, match="does not match Rs"):
        equivariance_error(_sh, [v], ["1x1o"], ["0e + 1o"])
    with pytest.raises(ValueError, match="positions must have last dimension 3"):
        equivariance_error(lambda p: p, [_randn(4, 2)], [POS], [None])


def test_spec_type_errors():
    with pytest.raises(TypeError, match="floating"):
        equivariance_error(lambda p: p, [torch.zeros(4, 3, dtype=torch.long)], ["1x1o"], [None])
    with pytest.raises(ValueError, match="cannot parse"):
        equivariance_error(lambda p: p, [_randn(4, 3)], ["vector"], ["1x1o"])


def test_a_nan_output_is_never_equivariant():
    """A NaN in an output must not vanish in the maximum of the errors (Python's max of a
    number and NaN keeps the number); it is an infinite error."""
    vectors = torch.randn(4, 3, dtype=torch.float64)

    def second_output_nan(v):
        return v, torch.full_like(v, float("nan"))

    errors = equivariance_error(second_output_nan, [vectors], ["1x1o"], ["1x1o", "1x1o"])
    assert all(error == float("inf") for error in errors.values())
    with pytest.raises(AssertionError):
        assert_equivariant(second_output_nan, [vectors], ["1x1o"], ["1x1o", "1x1o"])


def test_max_difference_keeps_every_nan():
    nan = float("nan")
    a, b = torch.tensor([1.0, nan, 3.0]), torch.tensor([1.5, nan, 3.0], dtype=torch.float64)
    assert max_difference(a, b) == float("inf")
    assert max_difference(a, b, equal_nan=True) == 0.5
    assert max_difference(a, torch.tensor([1.5, 2.0, 3.0]), equal_nan=True) == float("inf")
    assert max_difference(torch.zeros(0), torch.zeros(0)) == 0.0

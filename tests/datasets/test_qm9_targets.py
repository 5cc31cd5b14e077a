"""The 19 QM9 targets: order, units and names."""

import pytest

from e3nn_pyg.datasets import QM9_TARGET_INFO, QM9_TARGETS, target_index


def test_target_table():
    assert QM9_TARGETS == (
        "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
        "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C",
    )  # fmt: skip
    assert [t.index for t in QM9_TARGET_INFO] == list(range(19))
    units = {t.name: t.unit for t in QM9_TARGET_INFO}
    assert units["mu"] == "D" and units["alpha"] == "a0^3" and units["r2"] == "a0^2"
    assert units["cv"] == "cal/(mol K)" and units["A"] == units["C"] == "GHz"
    energies = ["homo", "lumo", "gap", "zpve", "U0", "U", "H", "G"]
    energies += ["U0_atom", "U_atom", "H_atom", "G_atom"]
    for t in QM9_TARGET_INFO:
        if t.name in energies:
            assert (t.unit, t.report_unit, t.report_scale) == ("eV", "meV", 1000.0)
        else:
            assert (t.report_unit, t.report_scale) == (t.unit, 1.0)


def test_target_index():
    assert target_index("U0") == 7
    assert target_index("u0") == 7
    assert target_index(" U0_ATOM ") == 12
    assert target_index("gap") == 4
    assert target_index("C") == 18
    assert target_index(3) == 3
    assert [target_index(name) for name in QM9_TARGETS] == list(range(19))


@pytest.mark.parametrize("bad", ["U1", "energy", "", 19, -1])
def test_target_index_rejects_unknown(bad):
    with pytest.raises(ValueError, match="valid names: mu, alpha, homo"):
        target_index(bad)


@pytest.mark.parametrize("bad", [True, 1.0, None, [7]])
def test_target_index_rejects_types(bad):
    with pytest.raises(TypeError, match="target must be"):
        target_index(bad)

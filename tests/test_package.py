"""The package's top level and its layering."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import e3nn_pyg


@pytest.mark.parametrize("name", sorted(set(e3nn_pyg.__all__) - {"__version__"}))
def test_top_level_names_resolve(name):
    assert getattr(e3nn_pyg, name) is not None


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        e3nn_pyg.no_such_name  # noqa: B018


def test_group_math_does_not_import_torch_geometric():
    code = (
        "import sys, e3nn_pyg.o3, e3nn_pyg.testing; "
        "sys.exit(1 if any(m.startswith('torch_geometric') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_radial_models_do_not_import_the_layers_above_them():
    code = (
        "import sys, e3nn_pyg.radial; e3nn_pyg.radial.CosineBasisModel(3, max_radius=2.0); "
        "sys.exit(1 if 'e3nn_pyg.non_linearities' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_works_without_torch_scatter_and_torch_cluster(tmp_path):
    # stand-ins that fail to import, first on the path, as if the extensions were absent
    for name in ("torch_scatter", "torch_cluster"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('not installed')\n")
    code = """
import sys
sys.path.insert(0, sys.argv[1])
from functools import partial
import torch
from e3nn_pyg import Convolution, Kernel, CosineBasisModel, radius_graph
radial = partial(CosineBasisModel, max_radius=2.0, number_of_basis=3, h=8, L=1)
conv = Convolution(partial(Kernel, RadialModel=radial), '2x0e', '2x0e+1x1o')
pos = torch.randn(6, 3)
out = conv(torch.randn(6, 2), pos, batch=torch.tensor([0, 0, 0, 1, 1, 1]))
assert out.shape == (6, 5) and torch.isfinite(out).all()
assert radius_graph(pos, 2.0, backend='auto').shape[0] == 2
assert not any(m.startswith(('torch_scatter', 'torch_cluster')) for m in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_import_registers_every_operator_of_the_package():
    """Every ``torch.library`` operator defined in the package's source exists after
    ``import e3nn_pyg`` in a fresh process (an exported program loads with it)."""
    package = Path(e3nn_pyg.__file__).parent
    names = {
        name
        for path in package.rglob("*.py")
        for name in re.findall(r'custom_op\(\s*"e3nn_pyg::(\w+)"', path.read_text())
    }
    assert {"radius_search", "periodic_radius_search"} <= names
    code = (
        "import sys, torch, e3nn_pyg; "
        "missing = [n for n in sys.argv[1:] if not hasattr(torch.ops.e3nn_pyg, n)]; "
        "assert not missing, missing; "
        "assert not any(m.startswith('torch_geometric') for m in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

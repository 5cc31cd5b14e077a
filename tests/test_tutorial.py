"""The tutorial "Nuts and Bolts of e3nn" runs on e3nn_pyg with ``e3nn`` renamed.

The code cells are read from the tutorial text itself (``shared/seed`` next to the
repository), renamed ``e3nn`` -> ``e3nn_pyg`` and executed in order; the objects they build
are then checked against the numbers the tutorial implies.
"""

import importlib.util
import re
from pathlib import Path

import matplotlib
import pytest
import torch

import e3nn_pyg.conv
import e3nn_pyg.point.operations
from e3nn_pyg.graph import radius_graph
from e3nn_pyg.o3 import Rs
from e3nn_pyg.radial import CosineBasis
from e3nn_pyg.testing import assert_equivariant

SEED = Path(__file__).parents[1].parent / "shared" / "seed" / "nuts_and_bolts_of_e3nn.txt"
MARKER = "In [None]:"


def code_cells(text: str) -> list[str]:
    """The code cells of a notebook exported as text.

    A cell starts after an ``In [None]:`` marker and runs over the blank-line-separated
    paragraphs that still parse as Python; the first paragraph that does not (prose,
    Markdown, LaTeX) starts the text that follows the cell. IPython magics (``%...``) are
    dropped.
    """
    cells = []
    for segment in text.split(MARKER)[1:]:
        code = ""
        for paragraph in re.split(r"\n[ \t]*\n", segment):
            lines = [line for line in paragraph.splitlines() if not line.lstrip().startswith("%")]
            candidate = code + "\n".join(lines) + "\n\n"
            try:
                compile(candidate, "<cell>", "exec")
            except SyntaxError:
                break
            code = candidate
        cells.append(code.strip() + "\n")
    return cells


def renamed(code: str) -> str:
    """``e3nn`` -> ``e3nn_pyg`` as a whole word (imports, attribute paths and comments)."""
    return re.sub(r"\be3nn\b", "e3nn_pyg", code)


@pytest.fixture(scope="module")
def cells():
    if not SEED.exists():
        pytest.skip(f"the tutorial text is not available at {SEED}")
    return [renamed(cell) for cell in code_cells(SEED.read_text())]


@pytest.fixture(scope="module")
def tutorial(cells):
    """The namespace left by running every cell, as a notebook would."""
    matplotlib.use("Agg", force=True)  # the plotting cell draws off-screen
    import matplotlib.pyplot as plt

    previous = torch.get_default_dtype()  # the first cell sets float64 globally
    torch.manual_seed(0)
    namespace = {"__name__": "nuts_and_bolts"}
    try:
        for index, cell in enumerate(cells):
            exec(compile(cell, f"{SEED.name}, cell {index}", "exec"), namespace)
    finally:
        torch.set_default_dtype(previous)
        plt.close("all")
    return namespace


pytestmark = pytest.mark.usefixtures("float64")


def test_cells_are_the_tutorial_code(cells):
    assert len(cells) == 7
    assert cells[0].startswith("import torch\nimport e3nn_pyg\n")
    assert "%matplotlib" not in "".join(cells)
    assert "import e3nn_pyg.point.operations" in cells[5]
    assert cells[6].rstrip().endswith("rescaled_act.sigmoid, rescaled_act.sigmoid)")
    assert not re.search(r"\be3nn\b", "".join(cells))


def test_code_cells_stop_at_prose():
    text = "In [None]:\nx = 1\n\n# comment\ny = 2\n\n## Heading\nSome *prose* here.\n\nz = 3\n"
    assert code_cells(text) == ["x = 1\n\n# comment\ny = 2\n"]


def test_tutorial_objects(tutorial):
    assert tutorial["geometry"].shape == (12, 3)
    assert tutorial["input"].shape == (12, 2)
    assert tutorial["geometry"].dtype == torch.float64
    convolution = tutorial["convolution"]
    assert isinstance(convolution, e3nn_pyg.conv.Convolution)
    assert e3nn_pyg.point.operations.Convolution is e3nn_pyg.conv.Convolution
    assert convolution.Rs_in == Rs([(2, 0)])
    assert convolution.Rs_out == Rs([(4, 0), (4, 1), (4, 2)])
    assert convolution.kernel.n_path == 24
    assert convolution.max_radius == tutorial["max_radius"] == 3.0


def test_kernel_matrices_on_benzene(tutorial):
    kernel = tutorial["K"](tutorial["Rs_in"], tutorial["Rs_out"])
    pos = tutorial["geometry"]
    edge_index = radius_graph(pos, tutorial["max_radius"])
    distances = torch.cdist(pos, pos)
    assert edge_index.shape[1] == int((distances < 3.0).sum()) - 12  # all pairs, no loops
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    k = kernel(edge_vec)
    assert k.shape == (edge_index.shape[1], 36, 2)
    assert torch.isfinite(k).all() and k.abs().max() > 0


def test_tutorial_basis_is_our_cosine_basis(tutorial):
    """The tutorial's basis lambda, shifted to each centre, is CosineBasis on [0, r_c]."""
    r = torch.linspace(0, tutorial["max_radius"], 301)
    lam = torch.stack([tutorial["basis"](r - c) for c in tutorial["radii"]], dim=-1)
    ours = CosineBasis(tutorial["max_radius"], tutorial["number_of_basis"])(r)
    assert (lam - ours).abs().max() < 1e-12


def test_nonlinearities(tutorial):
    gated_block, norm_activation = tutorial["gated_block"], tutorial["norm_activation"]
    assert gated_block.Rs_in.dim == 44 and gated_block.Rs_out.dim == 36
    assert gated_block(torch.randn(5, 44)).shape == (5, 36)
    assert norm_activation(torch.randn(5, 36)).shape == (5, 36)
    assert tutorial["dimensionalities"] == [1] * 4 + [3] * 4 + [5] * 4


def test_pipeline_on_benzene_is_equivariant(tutorial):
    """conv -> gate (the layer the tutorial's ``C`` is for) and conv -> norm activation."""
    gated_block, convolution = tutorial["gated_block"], tutorial["convolution"]
    torch.manual_seed(1)
    conv = tutorial["C"](tutorial["Rs_in"], gated_block.Rs_in)  # 2 -> 44 features

    def gated(x, pos):
        return gated_block(conv(x, pos))

    def normed(x, pos):
        return tutorial["norm_activation"](convolution(x, pos))

    args = [tutorial["input"], tutorial["geometry"]]
    out = gated(*args)
    assert out.shape == (12, 36) and out.abs().max() > 0
    for f in (gated, normed):
        errors = assert_equivariant(f, args, [tutorial["Rs_in"], "pos"], [tutorial["Rs_out"]])
        # Rs without parity: the inversion is not a symmetry of these types
        assert set(errors) == {"rotation", "translation"}
        assert max(errors.values()) <= 1e-9


def test_example_script_runs(tmp_path, capsys):
    """examples/nuts_and_bolts.py (``make demo``): shapes, errors and the plot."""
    path = Path(__file__).parents[1] / "examples" / "nuts_and_bolts.py"
    spec = importlib.util.spec_from_file_location("nuts_and_bolts_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--out", str(tmp_path / "plot.png")])
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "convolution      -> [12, 36]" in printed
    assert "conv -> gate     -> [29, 36]" in printed
    rows = [line for line in printed.splitlines() if "batch of 3" in line or "benzene" in line]
    errors = [float(v) for line in rows for v in re.findall(r"\d\.\d\de-\d\d", line)]
    assert len(errors) >= 10 and max(errors) < 1e-9

"""The documentation (``make docs``): every public module has an API page, the front page's
example runs and is equivariant, and (slow) the whole site builds with warnings as errors."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from e3nn_pyg.testing import assert_equivariant

DOCS = Path(__file__).parents[1] / "docs"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_module_has_an_api_page():
    apidoc = load("apidoc")
    modules = apidoc.public_modules()
    assert "e3nn_pyg.o3.rs" in modules and "e3nn_pyg.datasets.__main__" not in modules
    assert apidoc.undocumented_modules() == []


def test_api_pages_document_each_object_where_it_is_defined(tmp_path):
    apidoc = load("apidoc")
    apidoc.write_pages(tmp_path)
    o3 = (tmp_path / "e3nn_pyg.o3.rst").read_text()
    # the package page shows the package's docstring only; Rs is documented in o3.rs
    assert ".. automodule:: e3nn_pyg.o3\n\n" in o3
    assert re.search(r"\.\. automodule:: e3nn_pyg\.o3\.rs\n   :members: .*\bRs\b", o3)
    index = (tmp_path / "index.rst").read_text()
    assert all(f"   e3nn_pyg.{top}\n" in index for tops in apidoc.SECTIONS.values() for top in tops)
    assert apidoc.write_pages(tmp_path) == []  # unchanged pages are not rewritten


def test_front_page_example_runs_and_is_equivariant():
    text = (DOCS / "index.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) == 1
    code = "\n".join(line[3:] for line in blocks[0].splitlines())
    namespace: dict = {}
    exec(compile(code, "docs/index.rst", "exec"), namespace)
    assert namespace["out"].shape == (12, 36)
    conv, gate = namespace["conv"].double(), namespace["gate"].double()
    x, pos = namespace["x"].double(), namespace["pos"].double()
    assert_equivariant(lambda x, p: gate(conv(x, p)), [x, pos], ["2x0e", "pos"], [gate.Rs_out])


def test_learning_curve_figure_draws_committed_results_or_a_note(tmp_path, monkeypatch):
    figures = load("figures")
    monkeypatch.setattr(figures, "BENCH_RESULTS", tmp_path / "absent.json")
    figures.learning_curves_figure(tmp_path / "note.png")
    runs = [{"label": "A", "seed": 0, "curve": [[1.0, 50.0], [2.0, 40.0]]},
            {"label": "B", "seed": 0, "curve": []}]  # fmt: skip
    results = tmp_path / "bench_learning.json"
    results.write_text(json.dumps({"protocol": {"budget_seconds": 3.0}, "runs": runs}))
    monkeypatch.setattr(figures, "BENCH_RESULTS", results)
    figures.learning_curves_figure(tmp_path / "curves.png")
    note, curves = (tmp_path / "note.png").read_bytes(), (tmp_path / "curves.png").read_bytes()
    assert note.startswith(b"\x89PNG") and curves.startswith(b"\x89PNG") and note != curves


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    for tool in ("sphinx", "myst_parser", "furo", "matplotlib"):
        pytest.importorskip(tool, reason="the docs extra: pip install -e '.[docs]'")
    html = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W", "--keep-going", "-n"]
    command += ["-q", "-d", str(tmp_path / "doctrees"), str(DOCS), str(html)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("index", "tutorial", "potentials", "conventions", "api/index",
                 "api/e3nn_pyg.kernel"):  # fmt: skip
        assert (html / f"{page}.html").stat().st_size > 0
    for figure in ("radial_bases", "spherical_harmonics", "kernel"):
        assert (html / "_images" / f"{figure}.png").stat().st_size > 10_000
    tutorial = (html / "tutorial.html").read_text()
    assert "CosineBasisModel" in tutorial and "GatedBlock" in tutorial  # the included code

"""Sphinx configuration of the e3nn_pyg documentation (``make docs``).

Neither the build nor the reader needs a network: no intersphinx, and MathJax is copied
into the site. At build time ``apidoc.py`` writes the API
reference pages into ``docs/api/`` and ``figures.py`` draws the figures into
``docs/_generated/`` (both git-ignored).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from sphinx.ext import napoleon
from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # apidoc.py, figures.py
sys.path.insert(0, str(DOCS.parent))  # the package, also when it is not installed

import apidoc  # noqa: E402
import figures  # noqa: E402

import e3nn_pyg  # noqa: E402

logger = logging.getLogger(__name__)

project = "e3nn_pyg"
author = "the e3nn_pyg authors"
copyright = "the e3nn_pyg authors"
release = e3nn_pyg.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax copied into the site (_static/mathjax) instead of loaded from a CDN
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated"]
root_doc = "index"

# -- autodoc and napoleon ----------------------------------------------------------------
autodoc_default_options = {"show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# A method without a docstring of its own (``forward``) would show torch's text.
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# PyG's docstring section for tensor shapes.
napoleon_custom_sections = ["Shapes"]
# Types in ``Args:`` become cross-references; "optional" and literals stay text.
napoleon_preprocess_types = True
napoleon_type_aliases = {
    "callable": ":class:`~collections.abc.Callable`",
    "iterable": ":class:`~collections.abc.Iterable`",
    "mapping": ":class:`~collections.abc.Mapping`",
    "sequence": ":class:`~collections.abc.Sequence`",
    "Rs-like": ":data:`~e3nn_pyg.o3.RsLike`",
    "EdgeIndex": ":class:`~torch_geometric.EdgeIndex`",
}

# -- warnings ----------------------------------------------------------------------------
# `make docs` runs with -W -n: every warning fails the build and every cross-reference must
# resolve (apidoc.ReferenceResolver resolves re-exported names, and leaves other packages'
# names as text). Exempt: private names (shown as bases, named in module docstrings; the
# reference documents public names only) and PyG-style ``:obj:`True```.
nitpicky = True
nitpick_ignore_regex = [
    ("py:(class|func|meth|attr|data)", r"(e3nn_pyg(\.\w+)*\.)?_\w+"),
    ("py:obj", r"True|False|None|-?[0-9][0-9_.]*(e-?[0-9]+)?|\(.*\)|\[.*\]"),
]

# -- HTML --------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"e3nn_pyg {release}"
myst_heading_anchors = 3


def _generate(app) -> None:
    """Write the API pages and draw the figures (before Sphinx looks for source files)."""
    for module in apidoc.undocumented_modules():
        logger.warning("module %s is in no section of SECTIONS in docs/apidoc.py", module)
    apidoc.write_pages(DOCS / "api")
    figures.main(DOCS / "_generated")


def _drop_type_docstrings(app, what, name, obj, options, lines):
    """A constant without a docstring of its own (a dict, a tuple) would show its type's."""
    own = getattr(type(obj), "__doc__", None)
    if what == "data" and own and "\n".join(lines).strip() == inspect.cleandoc(own).strip():
        lines.clear()


def _skip_tuple_fields(app, what, name, obj, skip, options):
    """A NamedTuple's fields are documented by its docstring's ``Attributes:``, not again as
    members ("Alias for field number 0")."""
    doc = getattr(obj, "__doc__", None) or ""
    return True if doc.startswith("Alias for field number") else None


def _skip_foreign_routines(app, what, name, obj, skip, options):
    """A class attribute that is another package's function (an activation's ``function``,
    ``torch.sigmoid``) is documented by that package: its docstring is not ours to show."""
    module = getattr(obj, "__module__", None) or ""
    ours = module == "e3nn_pyg" or module.startswith("e3nn_pyg.")
    return True if what == "class" and inspect.isroutine(obj) and not ours else None


def _dataclass_factories(app, what, name, obj, options, signature, return_annotation):
    """A dataclass field with a ``default_factory`` shows as ``=<factory>``, which is not
    Python and makes Sphinx split the signature at every comma: show ``=...`` instead."""
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def _napoleon_except_attributes(app, what, name, obj, options, lines):
    """Napoleon, except on attributes, properties and constants, where it would read a first
    line "The parity: +1 even, ..." as "type: description" (the package's types come from
    annotations, so these docstrings are plain prose)."""
    if what not in ("attribute", "data", "property"):
        napoleon._process_docstring(app, what, name, obj, options, lines)


def setup(app) -> None:
    for listener in list(app.events.listeners["autodoc-process-docstring"]):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", _napoleon_except_attributes)
    app.connect("builder-inited", _generate)
    app.connect("autodoc-skip-member", _skip_tuple_fields)
    app.connect("autodoc-skip-member", _skip_foreign_routines)
    app.connect("autodoc-process-signature", _dataclass_factories)
    # before napoleon (priority 500), which would parse the type's docstring
    app.connect("autodoc-process-docstring", _drop_type_docstrings, priority=400)
    app.connect("missing-reference", apidoc.ReferenceResolver())

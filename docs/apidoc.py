"""The API reference: one page per top-level module, written at build time from the package.

Each object is documented once, in the module that defines it (its ``__all__`` names whose
definition is in that module's source); a package page shows the package's docstring and
then each public submodule. A re-exported name (``e3nn_pyg.o3.spherical_harmonics``,
``e3nn_pyg.Convolution``) is therefore not documented twice; :class:`ReferenceResolver`
links references to it to the place it is documented, by identity of the object. A public
module missing from :data:`SECTIONS` fails the build (see :func:`undocumented_modules`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

PACKAGE = "e3nn_pyg"

#: The reference's table of contents: section title -> top-level modules, in reading order.
SECTIONS: dict[str, list[str]] = {
    "Group math": ["o3"],
    "Radial models, kernels and convolutions": [
        "radial",
        "kernel",
        "tensor_product",
        "graph",
        "conv",
    ],
    "Non-linearities": ["activations", "non_linearities"],
    "Models, data and training": ["models", "datasets", "training", "cli", "ase"],
    "Compilation, export, checks and testing": [
        "compilation",
        "export",
        "libtorch",
        "testing",
        "checks",
        "constants",
        "elements",
        "progress",
    ],
    "The tutorial's import paths": ["point"],
}

_UNDERLINES = "=-~^\"'`"  # section levels: module, submodule, ...
# Immutable values may be shared by unrelated names (small ints, interned strings): never
# resolve a reference by their identity.
_VALUES = (int, float, complex, str, bytes, bool, type(None))


def _has_identity(obj: object) -> bool:
    """Whether ``obj`` is an object of its own, not a value that unrelated names may share."""
    return not isinstance(obj, _VALUES) and not (isinstance(obj, tuple) and not obj)


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def public_modules() -> list[str]:
    """Every public module of the package (no part of its name starts with ``_``)."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
        if _public(info.name):
            names.append(info.name)
    return sorted(names)


def _defined_here(module: ModuleType) -> set[str]:
    """Top-level names that the module's own source assigns, defines or annotates."""
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _module_body(name: str) -> list[str]:
    """``automodule`` of one module with the names it defines; its data with ``autodata``."""
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        exported = [n for n in vars(module) if not n.startswith("_")]
    here = _defined_here(module)
    routines, data = [], []
    for member in exported:
        if member not in here:
            continue  # a re-export: documented where it is defined
        value = getattr(module, member)
        if inspect.isclass(value) or inspect.isroutine(value):
            routines.append(member)
        else:
            data.append(member)
    lines = [f".. automodule:: {name}"]
    if routines:
        lines.append(f"   :members: {', '.join(routines)}")
    lines.append("")
    for member in data:
        lines += [f".. autodata:: {name}.{member}", ""]
    return lines


def _submodules(name: str, modules: list[str]) -> list[str]:
    depth = name.count(".")
    return [m for m in modules if m.startswith(name + ".") and m.count(".") == depth + 1]


def _page(name: str, modules: list[str], level: int = 0) -> list[str]:
    underline = _UNDERLINES[min(level, len(_UNDERLINES) - 1)] * len(name)
    lines = [name, underline, "", *_module_body(name)]
    for sub in _submodules(name, modules):
        lines += _page(sub, modules, level + 1)
    return lines


def undocumented_modules() -> list[str]:
    """Public modules that no page of :data:`SECTIONS` covers."""
    covered = [f"{PACKAGE}.{top}" for tops in SECTIONS.values() for top in tops]
    return [
        m
        for m in public_modules()
        if m != PACKAGE and not any(m == c or m.startswith(c + ".") for c in covered)
    ]


def write_pages(out: Path) -> list[Path]:
    """Write ``index.rst`` and one page per top-level module into ``out``; return the files
    whose content changed (unchanged files keep their time stamp, so that Sphinx does not
    rebuild them)."""
    modules = public_modules()
    out.mkdir(parents=True, exist_ok=True)
    pages: dict[str, list[str]] = {}
    index = [
        "API reference",
        "=============",
        "",
        ".. automodule:: e3nn_pyg",
        "",
        "Each object is documented in the module that defines it; the names re-exported by "
        "a package (``from e3nn_pyg.o3 import Rs``) link here.",
        "",
    ]
    for title, tops in SECTIONS.items():
        index += [".. toctree::", f"   :caption: {title}", "   :maxdepth: 1", ""]
        for top in tops:
            name = f"{PACKAGE}.{top}"
            index.append(f"   {name}")
            pages[name] = _page(name, modules)
        index.append("")
    pages["index"] = index
    changed = []
    for stem, lines in pages.items():
        path = out / f"{stem}.rst"
        text = "\n".join(lines).rstrip() + "\n"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    for stale in set(out.glob("*.rst")) - {out / f"{stem}.rst" for stem in pages}:
        stale.unlink()
    return changed


# -- references to re-exported names ---------------------------------------------------------


def _import(dotted: str) -> tuple[object, str, str] | None:
    """The object that the longest resolvable part of a dotted name refers to, the module it
    was reached from, and the rest of the name (``""`` when all of it resolved); ``None``
    when no module prefix imports."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            obj: object = importlib.import_module(module)
        except ImportError:
            continue
        except Exception:
            return None
        rest = parts[cut:]
        while rest and hasattr(obj, rest[0]):
            obj = getattr(obj, rest.pop(0))
        return obj, module, ".".join(rest)
    return None


def _home(obj: object, reached_from: str) -> str:
    """The module an object belongs to: its own ``__module__`` (that of its class for a
    method descriptor), else the module it was reached from."""
    if inspect.ismodule(obj):
        return obj.__name__
    owner = getattr(obj, "__objclass__", None)
    module = getattr(owner if owner is not None else obj, "__module__", None)
    return module if isinstance(module, str) else reached_from


def _ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _candidates(target: str, module: str | None, cls: str | None) -> list[str]:
    """The names a reference may mean: inside its class, its module and the module's
    parents (innermost first), then as written."""
    names = []
    scopes = []
    if module:
        parts = module.split(".")
        scopes = [".".join(parts[:cut]) for cut in range(len(parts), 0, -1)]
        if cls:
            names.append(f"{module}.{cls}.{target}")
    names += [f"{scope}.{target}" for scope in scopes]
    names.append(target)
    return names


class ReferenceResolver:
    """Resolves references Sphinx could not: to a documented ``e3nn_pyg`` object under another
    import path (linked to where it is documented), or to an object of another package (plain
    text: the build is offline, without intersphinx). Anything else stays unresolved, and
    ``-n`` reports it."""

    def __init__(self) -> None:
        self._documented: dict[int, str] | None = None

    def _documented_names(self, domain) -> dict[int, str]:
        if self._documented is None:
            self._documented = {}
            for name, entry in sorted(domain.objects.items()):
                if entry.aliased:
                    continue
                found = _import(name)
                if found is not None and not found[2] and _has_identity(found[0]):
                    self._documented.setdefault(id(found[0]), name)
        return self._documented

    def __call__(self, app, env, node, contnode):
        if node.get("refdomain") != "py":
            return None
        domain = env.get_domain("py")

        def link(name: str):
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, "obj", name, node, contnode
            )

        documented = self._documented_names(domain)
        for name in _candidates(node["reftarget"], node.get("py:module"), node.get("py:class")):
            found = _import(name)
            if found is None:
                continue
            obj, reached_from, rest = found
            if rest:
                # at most an attribute that only instances have (a buffer, a field),
                # documented under the name of its class
                if "." not in rest and inspect.isclass(obj):
                    if id(obj) in documented:
                        resolved = link(f"{documented[id(obj)]}.{rest}")
                        if resolved is not None:
                            return resolved
                    elif not _ours(_home(obj, reached_from)):
                        return contnode  # an attribute of another package's class
                continue
            if not _has_identity(obj):
                return None
            if id(obj) in documented:
                return link(documented[id(obj)])
            if not _ours(_home(obj, reached_from)):
                return contnode  # another package's object (torch.Tensor, typing names, ...)
            return None
        return None

r"""The package's operators for C++ processes: AOTInductor packages run by libtorch alone.

An AOTInductor package of a model (:func:`e3nn_pyg.export.save_model` with ``aoti=True``,
``e3nn-pyg export --aoti``) calls the package's custom operators:
``e3nn_pyg::radius_search`` (the radius graph, :math:`|\mathbf{p}_j - \mathbf{p}_i| < r`),
``e3nn_pyg::periodic_radius_search`` (with periodic images,
:math:`|\mathbf{p}_j - \mathbf{p}_i + \mathbf{s} C| < r`) and ``e3nn_pyg::native_conv``
with its backward (the convolutions, and the forces
:math:`\mathbf{F} = -\partial E / \partial \mathbf{p}` traced into the package). A Python
process defines them when it imports ``e3nn_pyg``; a C++ process that loads the package
with ``torch::inductor::AOTIModelPackageLoader`` gets them from the *operator library*
built here from ``operators.cpp`` (``TORCH_LIBRARY(e3nn_pyg, m)``: the same schemas,
CPU implementations on the generic channel-wise loops of
``tensor_product/native/channelwise.c``). It loads the library (``dlopen`` or linking)
before the package; ``examples/cpp/predict.cpp`` does that and prints energies, forces
and stresses.

The library is for C++ processes only: never load it into a Python process that imports
``e3nn_pyg`` (``torch.ops.load_library``), whose Python operators it would clash with (the
tests call its operators from a Python process that imports torch alone). What it runs:

- packages of molecules and of crystals (``periodic=True``) with channel-wise convolutions
  (both models of the zoo), in float32 or float64, on CPU (the tests run potentials:
  energies, forces, stresses);
- packages of the graph-input interface
  (:func:`~e3nn_pyg.models.graph_input.save_graph_potential` with ``aoti=True``), which
  take the neighbour list and call no search operator;
- no autograd through the operators (a package holds its backward pass already:
  ``native_conv_backward`` is called explicitly).

Building needs ``cmake`` (3.18 or newer) and a C++17 compiler; it compiles against the
installed torch (``torch.utils.cmake_prefix_path``) in about a minute.

Example:
    >>> library = build_operator_library("build/operators")  # doctest: +SKIP
    >>> library.name  # doctest: +SKIP
    'libe3nn_pyg_operators.so'
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["SOURCE_DIR", "build_cmake_project", "build_operator_library", "write_atoms"]

#: The folder of ``operators.cpp`` and its ``CMakeLists.txt``.
SOURCE_DIR = Path(__file__).parent
_LIBRARY = "libe3nn_pyg_operators.so"
_COMPILERS = ("c++", "g++", "clang++")


def _require_tools() -> str:
    """The path of ``cmake``, after checking that a C++ compiler is there too
    (``RuntimeError`` naming what is missing)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise RuntimeError(
            "cmake is not on PATH: building the C++ operator library and programs needs "
            "cmake 3.18 or newer (e.g. apt-get install cmake, or pip install cmake)"
        )
    compiler = os.environ.get("CXX")
    if not (shutil.which(compiler) if compiler else any(map(shutil.which, _COMPILERS))):
        raise RuntimeError(
            f"no C++ compiler found ({'CXX=' + compiler if compiler else ', '.join(_COMPILERS)} "
            "not on PATH): building the C++ operator library needs a C++17 compiler"
        )
    return cmake


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise RuntimeError(f"{what} failed ({' '.join(command)}):\n{output}")


def build_cmake_project(
    source_dir: str | os.PathLike, build_dir: str | os.PathLike, jobs: int | None = None
) -> Path:
    """Configure and build a CMake project that uses libtorch (``find_package(Torch)``),
    against the installed torch, in release mode.

    Args:
        source_dir (str or os.PathLike): the folder of the project's ``CMakeLists.txt``.
        build_dir (str or os.PathLike): the build folder (created if missing; a second
            build there only recompiles what changed).
        jobs (int, optional): parallel compile jobs. (default: :obj:`None`: ``cmake``'s
            default)

    Returns:
        the build folder.
    """
    cmake = _require_tools()
    source, build = Path(source_dir).resolve(), Path(build_dir).resolve()
    if not (source / "CMakeLists.txt").is_file():
        raise FileNotFoundError(f"no CMakeLists.txt in {source}")
    build.mkdir(parents=True, exist_ok=True)
    _run([cmake, "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
          f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
         f"configuring {source.name}")  # fmt: skip
    _run([cmake, "--build", str(build)] + (["-j", str(jobs)] if jobs else []),
         f"building {source.name}")  # fmt: skip
    return build


def build_operator_library(build_dir: str | os.PathLike) -> Path:
    """Build the C++ operator library (see the module docstring) in ``build_dir``, for C++
    processes only (never load it into a Python process that imports ``e3nn_pyg``).

    Args:
        build_dir (str or os.PathLike): the build folder.

    Returns:
        the path of the shared library, ``build_dir/libe3nn_pyg_operators.so``.
    """
    library = build_cmake_project(SOURCE_DIR, build_dir) / _LIBRARY
    if not library.is_file():
        raise RuntimeError(f"the build did not write {library}")
    return library


def write_atoms(
    path: str | os.PathLike,
    z: Tensor,
    pos: Tensor,
    batch: Tensor,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
) -> Path:
    """Write structures in the text format of ``examples/cpp/predict.cpp``: one atom a
    line, ``structure Z x y z``, after one line a structure ``cell structure`` with the
    lattice vectors (rows) and the periodic flags (0 or 1) for a periodic model; numbers
    with every digit of their float64 value.

    Args:
        path (str or os.PathLike): the file to write.
        z (torch.Tensor): atomic numbers.
        pos (torch.Tensor): positions in Å.
        batch (torch.Tensor): the structure of each atom, sorted (``0, 0, 1, ...``).
        cell (torch.Tensor, optional): the cells of the structures. (default: :obj:`None`)
        pbc (torch.Tensor, optional): their periodic axes (bool), with ``cell``.
            (default: :obj:`None`)

    Shapes:
        - **input:** ``z`` :math:`(N)`, ``pos`` :math:`(N, 3)`, ``batch`` :math:`(N)`,
          ``cell`` :math:`(G, 3, 3)`, ``pbc`` :math:`(G, 3)`

    Returns:
        the path written.
    """
    if z.dim() != 1 or tuple(pos.shape) != (z.shape[0], 3) or batch.shape != z.shape:
        raise ValueError(
            f"z [N], pos [N, 3] and batch [N] expected, got {tuple(z.shape)}, "
            f"{tuple(pos.shape)} and {tuple(batch.shape)}"
        )
    lines = []
    if (cell is None) != (pbc is None):
        raise ValueError("give cell and pbc together, or neither")
    if cell is not None:
        if cell.dim() != 3 or tuple(cell.shape[1:]) != (3, 3) or pbc.shape != cell.shape[:2]:
            raise ValueError(
                f"cell [G, 3, 3] and pbc [G, 3] expected, got {tuple(cell.shape)} and "
                f"{tuple(pbc.shape)}"
            )
        for g, (vectors, flags) in enumerate(zip(cell.double().tolist(), pbc.tolist())):
            numbers = [repr(v) for row in vectors for v in row]
            lines.append(" ".join(["cell", str(g), *numbers, *(str(int(f)) for f in flags)]))
    rows = zip(batch.tolist(), z.tolist(), pos.double().tolist())
    lines += [f"{b} {n} {x!r} {y!r} {w!r}" for b, n, (x, y, w) in rows]
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines))
    return path

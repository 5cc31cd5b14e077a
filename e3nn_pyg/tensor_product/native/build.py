r"""Building the native kernels: C sources compiled on first use and loaded with ctypes.

A source is compiled with the machine's C compiler (``cc``, or ``$CC``) into a cache
folder (``$E3NN_PYG_CACHE``, default ``~/.cache/e3nn_pyg``), once per source, compiler,
flags and processor (the file name hashes them), and loaded with :mod:`ctypes`. The
generic, table-driven kernels (``channelwise.c``) are built on the first call of
:func:`generic_library` (:func:`available` says whether that worked; it is tried once per
process); kernels specialised to one table of paths
(:mod:`~e3nn_pyg.tensor_product.native.codegen`) on the first call of the operators on
that table.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

__all__ = ["GENERIC_SOURCE", "available", "build_error", "compile_source", "generic_library"]

#: The generic kernels and the drivers that specialised sources include.
GENERIC_SOURCE = Path(__file__).with_name("channelwise.c")
_FLAGS = [
    ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"],
    ["-O3", "-fopenmp", "-fPIC", "-shared"],
    ["-O3", "-fPIC", "-shared"],
]
_lock = threading.Lock()
_generic: list = []  # [ctypes.CDLL] once built, [None] when building failed
_error: list[str] = []


def _cache_dir() -> Path:
    root = os.environ.get("E3NN_PYG_CACHE")
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "e3nn_pyg"


@functools.cache
def _processor() -> str:
    """What ``-march=native`` compiles for: a cache shared by machines must not mix them."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = [line for line in cpuinfo if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def compile_source(source: str, name: str) -> ctypes.CDLL:
    """The shared library of a C source, built once into the cache folder (the first set of
    flags that compiles: OpenMP and ``-march=native`` where the compiler takes them)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC)")
    failures = []
    for flags in _FLAGS:
        identity = " ".join([source, compiler, *flags, _processor()])
        key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        target = _cache_dir() / f"{name}-{key}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                code, built = Path(tmp) / f"{name}.c", Path(tmp) / target.name
                code.write_text(source)
                result = subprocess.run(
                    [compiler, *flags, "-o", str(built), str(code)],
                    capture_output=True,
                    text=True,
                )
                if result.returncode != 0:
                    failures.append(f"{' '.join(flags)}: {result.stderr.strip()[-300:]}")
                    continue
                os.replace(built, target)  # atomic: concurrent builders agree
        try:
            return ctypes.CDLL(str(target))
        except OSError as error:
            failures.append(f"{' '.join(flags)}: {error}")
    raise RuntimeError("; ".join(failures))


def generic_library() -> ctypes.CDLL | None:
    """The generic kernels (built on the first call), or ``None`` where building failed."""
    with _lock:
        if not _generic:
            try:
                _generic.append(compile_source(GENERIC_SOURCE.read_text(), "channelwise"))
            except Exception as error:  # no compiler, read-only cache, ...: no native engine
                _error.append(f"{type(error).__name__}: {error}")
                _generic.append(None)
        return _generic[0]


def available() -> bool:
    """Whether the native kernels are built and loaded (builds them on the first call)."""
    return generic_library() is not None


def build_error() -> str | None:
    """Why the native kernels are not available, or ``None``."""
    generic_library()
    return _error[0] if _error else None

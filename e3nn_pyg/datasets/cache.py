r"""A processed-dataset cache that is checked before it is trusted.

:class:`CachedInMemoryDataset` is a :class:`~torch_geometric.data.InMemoryDataset` that
processes its source files once into ``<processed_dir>/<name>.pt`` and, next to it, records
what the cache was built from in ``<name>.source.json``: every source file and the cache file
itself, each by size, modification time and SHA-256. A cache is used only when

- every source file is unchanged: same size and modification time, or else the same SHA-256
  (a copied or touched file keeps its cache, an edited one does not);
- the cache file is the one written: same check;
- it loads (a truncated or garbage file fails in :func:`torch.load`).

Otherwise it is rebuilt from the source, with a :class:`UserWarning` that says why. If the
rebuild of a cache that does not load fails (the source is gone), :class:`DatasetCacheError`
says both what is wrong with the cache and why it cannot be rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable

import torch
from torch_geometric.data import Data, InMemoryDataset

__all__ = [
    "CachedInMemoryDataset",
    "DatasetCacheError",
    "cache_root",
    "file_record",
    "matches_record",
]

_CHUNK = 1 << 20  # bytes read at a time while hashing


class DatasetCacheError(ValueError):
    """A dataset cache that cannot be used and cannot be rebuilt from its source."""


def _summary(error: BaseException, limit: int = 120) -> str:
    """``Type: first line of the message`` (torch.load's messages run over many lines)."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit or len(lines) > 1:
        first = first[:limit].rstrip() + " ..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def cache_root() -> str:
    """The folder of this package's dataset caches: ``$XDG_CACHE_HOME/e3nn_pyg``
    (``~/.cache/e3nn_pyg`` without ``XDG_CACHE_HOME``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "e3nn_pyg")


def file_record(path: str | os.PathLike) -> dict:
    """What identifies a file's content: ``{"size", "mtime_ns", "sha256"}``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def matches_record(path: str | os.PathLike, record: dict) -> bool:
    """Whether the file at ``path`` still has the content ``record`` (of :func:`file_record`)
    describes: same size and modification time, or else the same SHA-256."""
    if not isinstance(record, dict):
        return False
    try:
        stat = os.stat(path)
    except OSError:
        return False
    if stat.st_size != record.get("size"):
        return False
    if stat.st_mtime_ns == record.get("mtime_ns"):
        return True
    return file_record(path)["sha256"] == record.get("sha256")


class CachedInMemoryDataset(InMemoryDataset):
    r"""Base of the datasets of this package that cache their processed form (see the module
    docstring for the checks).

    A subclass sets its own attributes, then calls :meth:`open_cache` from its
    ``__init__`` (instead of :class:`~torch_geometric.data.InMemoryDataset`'s), and
    implements :meth:`read_source` (the structures, before ``pre_filter`` and
    ``pre_transform``), :meth:`source_files` and ``processed_file_names``.
    """

    def read_source(self) -> list[Data]:
        """The structures of the source, before ``pre_filter`` and ``pre_transform``."""
        raise NotImplementedError

    def source_files(self) -> list[str] | None:
        """The files the cache is built from, or :obj:`None` when they cannot be located
        (then an existing readable cache is used as it is)."""
        raise NotImplementedError

    @property
    def record_path(self) -> str:
        """The JSON record of the cache's sources, next to the cache file."""
        return os.path.splitext(self.processed_paths[0])[0] + ".source.json"

    def open_cache(
        self,
        root: str,
        transform: Callable[[Data], Data] | None,
        pre_transform: Callable[[Data], Data] | None,
        pre_filter: Callable[[Data], bool] | None,
        log: bool,
        force_reload: bool,
    ) -> None:
        """Initialize the :class:`~torch_geometric.data.InMemoryDataset` and load the
        cache, rebuilding it first when it is stale or unreadable."""
        # processed_paths needs the root before InMemoryDataset.__init__ sets it (the same way)
        self.root = os.path.expanduser(os.path.normpath(root))
        problem = None if force_reload else self._cache_problem()
        force_reload = force_reload or problem is not None
        super().__init__(root, transform, pre_transform, pre_filter, log, force_reload)
        path = self.processed_paths[0]
        try:
            self.load(path)
        # torch.load of a damaged file raises whatever its unpickler meets (RuntimeError,
        # UnpicklingError, EOFError, KeyError, ...): any of them means rebuild.
        except Exception as error:
            problem = f"torch.load fails on it ({type(error).__name__})"
            self._rebuild(problem)
        if problem is not None:  # said once it worked: a failed rebuild raises instead
            warnings.warn(f"rebuilt the dataset cache {path}: {problem}", stacklevel=3)

    def _cache_problem(self) -> str | None:
        """Why an existing cache must not be used, or :obj:`None` (also when there is none)."""
        path = self.processed_paths[0]
        if not os.path.exists(path):
            return None
        for name in ("pre_transform.pt", "pre_filter.pt"):  # PyG reads them unguarded
            record = os.path.join(self.processed_dir, name)
            if os.path.exists(record):
                try:
                    torch.load(record, weights_only=False)
                # as above: a damaged pickle can raise anything
                except Exception:
                    return f"its record {name} cannot be read"
        sources = self.source_files()
        if sources is None:  # cannot be rebuilt: a cache that loads is all there is
            return None
        try:
            with open(self.record_path) as f:
                recorded = json.load(f)
            cache_record = recorded["cache"]
            source_records = recorded["sources"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"its record of sources {self.record_path} is missing or unreadable"
        if not isinstance(cache_record, dict) or not isinstance(source_records, dict):
            return f"its record of sources {self.record_path} is malformed"
        if not matches_record(path, cache_record):
            return "the cache file changed since it was written"
        if sorted(sources) != sorted(source_records):
            return "it was built from other source files"
        for source in sources:
            if not matches_record(source, source_records[source]):
                return f"the source {source} changed since the cache was built"
        records = [(path, cache_record)] + [(s, source_records[s]) for s in sources]
        if any(os.stat(p).st_mtime_ns != r.get("mtime_ns") for p, r in records):
            self._write_record()  # same content, new times: hash once, not at every load
        return None

    def _rebuild(self, reason: str) -> None:
        path = self.processed_paths[0]
        try:
            self.process()
            self.load(path)
        except Exception as error:
            raise DatasetCacheError(
                f"the dataset cache {path} is unusable ({reason}) and cannot be rebuilt from "
                f"its source: {_summary(error, limit=300)}"
            ) from error

    def process(self) -> None:
        data_list = self.read_source()
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        if not data_list:
            raise ValueError("no structure left to cache (pre_filter rejected all of them)")
        self.save(data_list, self.processed_paths[0])
        self._write_record()

    def _write_record(self) -> None:
        sources = {source: file_record(source) for source in self.source_files() or []}
        record = {"cache": file_record(self.processed_paths[0]), "sources": sources}
        with open(self.record_path, "w") as f:
            json.dump(record, f, indent=1)

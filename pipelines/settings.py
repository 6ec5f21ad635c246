"""Where things live. Every path the pipeline touches goes through here, so the data root can move."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import pyarrow as pa

PROJECT_DIR = Path(os.environ.get("SDMI_PROJECT_DIR", Path(__file__).resolve().parent.parent))
SCHEMAS_DIR = PROJECT_DIR / "schemas"
AGENCIES_DIR = Path(os.environ.get("SDMI_AGENCIES_DIR", SCHEMAS_DIR / "agencies"))
CODELISTS_DIR = SCHEMAS_DIR / "codelists"
SQL_DIR = PROJECT_DIR / "sql"
EXPECTATIONS_DIR = PROJECT_DIR / "expectations"


# DuckDB's allocator keeps freed pages mapped unless background purging runs, and it runs per database instance.
DUCKDB_CONFIG = {"allocator_background_threads": True}
_scratch: tuple[int, duckdb.DuckDBPyConnection] | None = None
_scratch_lock = threading.Lock()


def scratch_duckdb() -> duckdb.DuckDBPyConnection:
    """A new connection (close it) to the process's one in-memory DuckDB database, for per-chunk work.

    Arrow results outlive the query that made them. Freed after a short-lived database has closed, their
    memory was never returned: a loop of the staging step grew the process by ~45 MB per call (measured).
    One database that lives as long as the process purges it, and memory stays flat. Connections keep their
    own temporary tables and registered views, so threads do not see each other's work."""
    with _scratch_lock:
        return _scratch_database().cursor()


def _scratch_database() -> duckdb.DuckDBPyConnection:
    global _scratch
    if _scratch is None or _scratch[0] != os.getpid():  # a forked worker needs its own database
        _scratch = (os.getpid(), duckdb.connect(config=DUCKDB_CONFIG))
        _files_at_once.clear()
    return _scratch[1]


_files_at_once: list[object] = []  # the files this process works on now (one token each)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _share_cores(database: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's threads for the scratch database: the cores divided among the files being worked on. Two files
    in parallel threads each ran DuckDB on both cores, four threads on two. On two files of 828,950 rows in
    all, sharing took the files' part of `sdmi run` from 8.17-8.33 to 7.66-8.27 s and the process's CPU from
    27.4-28.2 to 26.7-27.2 s (three alternating runs each); a file alone still gets every core."""
    threads = max(1, _cores() // max(1, len(_files_at_once)))
    database.execute(f"SET threads = {threads}")


@contextlib.contextmanager
def sharing_cores() -> Iterator[None]:
    """Around one file's work: while other files of this process run, DuckDB takes only this file's share."""
    token = object()
    with _scratch_lock:
        database = _scratch_database()
        _files_at_once.append(token)
        _share_cores(database)
    try:
        yield
    finally:
        with _scratch_lock:
            if token in _files_at_once:  # not when a forked worker's database started afresh meanwhile
                _files_at_once.remove(token)
                _share_cores(_scratch_database())


def owned_copy(table: pa.Table) -> pa.Table:
    """A copy in memory of its own: columns selected from a DuckDB result keep the whole result alive (all of
    its columns, for as long as any is held), and `combine_chunks` does not copy a column of one chunk."""
    return pa.table(
        {
            name: pa.concat_arrays(column.chunks) if column.num_chunks else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        },
        schema=table.schema,
    )


def release_memory(collect: bool = True) -> None:
    """Hand memory freed by finished work back to the system (Linux: glibc's malloc_trim; elsewhere only
    Python's and Arrow's own pools). `collect=False` skips the garbage collector's full pass (per chunk)."""
    if collect:
        gc.collect()
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # not glibc (musl): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def publish_memory_limit() -> str:
    """DuckDB's memory limit for building a release; beyond it the build spills to disk instead of growing."""
    value = os.environ.get("SDMI_PUBLISH_MEMORY", "1GB").strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, flags=re.IGNORECASE):
        raise ValueError(f"SDMI_PUBLISH_MEMORY must be an amount such as 1GB or 512MiB, not {value!r}")
    return value


_BYTES = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def publish_memory_bytes() -> int:
    """`publish_memory_limit()` in bytes, with DuckDB's units (KB = 1000 bytes, KiB = 1024)."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]+)", publish_memory_limit()).groups()
    return int(float(number) * _BYTES[unit.upper()])


def chunk_rows() -> int:
    """Rows harmonised and validated at a time: memory follows the chunk, not the file."""
    return _positive_whole_number("SDMI_CHUNK_ROWS", 200_000)


def chunk_bytes() -> int:
    """A chunk's most Arrow bytes (SDMI_CHUNK_BYTES, 64 MiB by default): files with long cells (notes) come in
    fewer rows at a time. 200,000 rows of the national export are ~47 MiB, so it does not cut them."""
    return _positive_whole_number("SDMI_CHUNK_BYTES", 64 << 20)


def _positive_whole_number(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Zones:
    """The zones of DESIGN.md under one data root (SDMI_HOME)."""

    home: Path

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> Zones:
        root = Path(home or os.environ.get("SDMI_HOME", "data")).expanduser().resolve()
        return cls(root)

    @cached_property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @cached_property
    def raw(self) -> Path:
        return self.home / "raw"

    @cached_property
    def state(self) -> Path:
        return self.home / "state"

    @cached_property
    def staging(self) -> Path:
        return self.home / "staging"

    @cached_property
    def reports(self) -> Path:
        return self.home / "reports"

    @cached_property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @cached_property
    def releases(self) -> Path:
        return self.warehouse / "releases"

    @cached_property
    def current(self) -> Path:
        return self.warehouse / "current"

    @cached_property
    def analyst_db(self) -> Path:
        return self.warehouse / "sdmi.duckdb"

    @cached_property
    def ledger_db(self) -> Path:
        return self.state / "ledger.sqlite"

    @cached_property
    def lock_file(self) -> Path:
        return self.state / "writer.lock"

    def ensure(self) -> Zones:
        for path in (self.inbox, self.raw, self.state, self.staging, self.reports, self.releases):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def inside(self, path: Path) -> Path:
        """Refuse any path that would escape the data root (hostile file or agency names)."""
        resolved = path.resolve()
        if resolved != self.home and self.home not in resolved.parents:
            raise ValueError(f"path escapes SDMI_HOME: {path}")
        return resolved


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable: the directory entry itself must reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """A file's SHA-256, read a few MiB at a time (a release's manifest; tests checking what was archived)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()

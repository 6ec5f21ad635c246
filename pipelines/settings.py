"""Where things live. Every path the pipeline touches goes through here, so the data root can move."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import importlib.util
import math
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

from pipelines.problems import ConfigError

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


class SettingError(ConfigError, ValueError):
    """An `SDMI_*` environment setting holds a value it cannot take: bad configuration (exit 3). Also a
    ValueError, as these settings raised before."""


def _setting_error(name: str, value: str, expected_id: str, expected_en: str) -> SettingError:
    return SettingError(f"{name} harus {expected_id}, bukan {value!r}. / {name} must be {expected_en}, not {value!r}.")


def publish_memory_limit() -> str:
    """DuckDB's memory limit for building a release; beyond it the build spills to disk instead of growing."""
    value = os.environ.get("SDMI_PUBLISH_MEMORY", "").strip() or "1GB"
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, flags=re.IGNORECASE):
        raise _setting_error(
            "SDMI_PUBLISH_MEMORY", value, "jumlah memori seperti 1GB atau 512MiB", "an amount such as 1GB or 512MiB"
        )
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
    value = os.environ.get(name, "").strip() or str(default)
    if not _whole_number(value) or int(value) < 1:
        raise _setting_error(name, value, "bilangan bulat positif", "a positive whole number")
    return int(value)


def _whole_number(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _number_of_seconds(name: str, default: float, zero_allowed: bool) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero_allowed):
        if zero_allowed:
            raise _setting_error(name, value, "jumlah detik, 0 atau lebih", "a number of seconds, 0 or more")
        raise _setting_error(name, value, "jumlah detik lebih dari 0", "a number of seconds above 0")
    return seconds


def stable_seconds() -> float:
    """Seconds an inbox file must stay unchanged before it is claimed (SDMI_STABLE_SECONDS, 5 by default;
    `--stable-seconds` overrides it)."""
    return _number_of_seconds("SDMI_STABLE_SECONDS", 5.0, zero_allowed=True)


def prefect_server_timeout() -> float:
    """Seconds `sdmi serve` waits for the Prefect server it starts (SDMI_PREFECT_SERVER_TIMEOUT, 180 s)."""
    return _number_of_seconds("SDMI_PREFECT_SERVER_TIMEOUT", 180.0, zero_allowed=False)


TASK_RUNNERS = ("threads", "dask")


def task_runner() -> str:
    """How files are processed side by side (SDMI_TASK_RUNNER): `threads` (default) or `dask` (prefect-dask)."""
    value = os.environ.get("SDMI_TASK_RUNNER", "").strip() or "threads"
    if value not in TASK_RUNNERS:
        raise _setting_error("SDMI_TASK_RUNNER", value, "'threads' atau 'dask'", "'threads' or 'dask'")
    if value == "dask" and importlib.util.find_spec("prefect_dask") is None:
        raise SettingError(
            "SDMI_TASK_RUNNER='dask' memerlukan paket prefect-dask, yang tidak terpasang. / "
            "SDMI_TASK_RUNNER='dask' needs the prefect-dask package, which is not installed."
        )
    return value


def workers() -> int:
    """Files processed at the same time (SDMI_WORKERS; unset or 0: one per core, at least 2)."""
    value = os.environ.get("SDMI_WORKERS", "").strip() or "0"
    if not _whole_number(value):
        raise _setting_error(
            "SDMI_WORKERS", value, "bilangan bulat (0: satu per inti CPU)", "a whole number (0: one per CPU core)"
        )
    return int(value) or max(2, os.cpu_count() or 2)


# A scheme Dask speaks across machines (none: tcp), a host name, IPv4 or [IPv6] address, and a port.
_DASK_ADDRESS = re.compile(r"(?:(?:tcp|tls|ws|wss|ucx)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def dask_address() -> str | None:
    """An existing Dask scheduler (SDMI_DASK_ADDRESS, e.g. tcp://scheduler:8786) instead of a local cluster.
    Its form is checked with the other settings: Dask's own error came only after the inbox was claimed.
    Whether the scheduler answers is checked by `flows.make_task_runner`, also before anything is claimed."""
    value = os.environ.get("SDMI_DASK_ADDRESS", "").strip()
    if not value:
        return None
    form = _DASK_ADDRESS.fullmatch(value)
    if not form or not 0 < int(form.group(1)) < 65536:
        raise _setting_error("SDMI_DASK_ADDRESS", value, "alamat penjadwal Dask seperti tcp://scheduler:8786",
                             "a Dask scheduler address such as tcp://scheduler:8786")  # fmt: skip
    return value


SETTINGS_CHECKED = (stable_seconds, task_runner, workers, chunk_rows, chunk_bytes, publish_memory_limit,
                    prefect_server_timeout, dask_address)  # fmt: skip


def check_settings() -> None:
    """Every `SDMI_*` setting with a value to check, read once before a command touches anything: one
    SettingError naming each setting that is wrong and what it must be."""
    problems = []
    for read in SETTINGS_CHECKED:
        try:
            read()
        except SettingError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingError("\n".join(problems))


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

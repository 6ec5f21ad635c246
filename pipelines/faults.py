"""Named fault-injection points: a real `kill -9` at a chosen place, to prove the guarantees survive it.

`SDMI_FAULT=<point>[:<n>]` makes the process SIGKILL itself the n-th time (default 1) it reaches `<point>`:
no `finally`, no atexit, no flush — exactly what a power cut or the OOM killer does. `SDMI_FAULT_TRACE=<file>`
appends every point reached (one line each, `O_APPEND`, so the trace survives the kill), so a test can count
how often each point is reached in a clean run and choose where to strike.

Both variables are read once at import. When neither is set `point` is a function that returns at once: the
pipeline pays one call per point, a handful per file.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV_FAULT = "SDMI_FAULT"
ENV_TRACE = "SDMI_FAULT_TRACE"

#: Every point the pipeline reaches, in pipeline order; `point()` refuses any other name so a typo in a test
#: cannot silently inject nothing.
POINTS: tuple[str, ...] = (
    "inbox.after_claim",  # ledger says 'claimed'; the copy in raw/ still under its temporary name
    "inbox.mid_archive",  # temporary copy in raw/ written and fsynced, not yet renamed
    "inbox.after_archive",  # raw copy final and ledger 'archived', file still in the inbox
    "process.after_read",  # file read into memory, nothing written
    "process.after_harmonise",  # harmonised, nothing staged
    "stage.mid_staging",  # staging/.tmp-<batch> complete, not yet renamed
    "process.after_staging",  # batch staged, no report, ledger still 'archived'
    "report.mid_write",  # a report file written under its temporary name, not yet renamed
    "process.after_report",  # report written, ledger still 'archived'
    "publish.mid_build",  # DuckDB tables built in .building-<id>, no Parquet yet
    "publish.after_parquet",  # Parquet and open data written, not audited
    "publish.after_audits",  # audited, release renamed to releases/<id>, `current` not switched
    "publish.between_switches",  # `current` switched, `sdmi.duckdb` not yet
    "publish.after_switch",  # switched; nothing else done (prune, run summary, artifacts)
    "ledger.commit",  # inside a ledger transaction, just before COMMIT
)

_lock = threading.Lock()
_seen: Counter[str] = Counter()
_target: tuple[str, int] | None = None
_trace_fd: int | None = None


def parse(spec: str) -> tuple[str, int]:
    """`name` or `name:n` -> (name, n); unknown names and n < 1 are errors, not silent no-ops."""
    name, _, nth = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV_FAULT}: unknown fault point {name!r}; known: {', '.join(POINTS)}")
    n = int(nth) if nth else 1
    if n < 1:
        raise ValueError(f"{ENV_FAULT}: occurrence must be >= 1, not {n}")
    return name, n


def _noop(name: str) -> None:
    """Faults off: the whole cost of a point."""


def _armed(name: str) -> None:
    """Faults or tracing on: count this point, trace it, and die here if it is the chosen occurrence."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    with _lock:
        _seen[name] += 1
        count = _seen[name]
        if _trace_fd is not None:
            os.write(_trace_fd, f"{name}\n".encode())
    if _target is not None and _target == (name, count):
        os.kill(os.getpid(), signal.SIGKILL)


def configure(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """(Re)read SDMI_FAULT / SDMI_FAULT_TRACE; done once at import, again only by tests of this module."""
    global _target, _trace_fd, point
    env = os.environ if environ is None else environ
    spec, trace = env.get(ENV_FAULT), env.get(ENV_TRACE)
    with _lock:
        _seen.clear()
        _target = parse(spec) if spec else None
        if _trace_fd is not None:
            os.close(_trace_fd)
            _trace_fd = None
        if trace:
            _trace_fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    point = _armed if (_target or _trace_fd is not None) else _noop


def counts() -> dict[str, int]:
    """How often each point was reached in this process (only counted while armed)."""
    with _lock:
        return dict(_seen)


point = _noop
configure()

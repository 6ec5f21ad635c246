"""The writer lock: one writer at a time over the whole data root.

Kept apart from flows.py (which imports Prefect) so that light commands can take it without paying for
Prefect's import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from pipelines.settings import Zones


class WriterBusy(RuntimeError):
    """Another run or publish holds the writer lock."""


@contextmanager
def writer_lock(zones: Zones, wait_seconds: float = 0) -> Iterator[None]:
    """One writer at a time over the whole data root; a second run waits or leaves with a clear message."""
    zones.state.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(zones.lock_file))
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise WriterBusy(
            "Proses lain sedang berjalan (kunci penulis dipegang); coba lagi nanti atau pakai --wait / "
            f"another sdmi run or publish is in progress (writer lock {zones.lock_file}); "
            "try later or use --wait"
        ) from None
    try:
        yield
    finally:
        lock.release()

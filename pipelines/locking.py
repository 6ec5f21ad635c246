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
    except BaseException as exc:
        if _ends_the_process(exc):
            # A SIGTERM (Prefect raises its TerminationSignal in the flow), Ctrl-C or an exit unwinds the flow
            # while its file tasks may still run in other threads: released now, the lock would let another
            # run take up those files. It stays held until the process is gone (the kernel lets go then).
            _held_to_exit.append(lock)
        else:
            lock.release()
        raise
    lock.release()


_held_to_exit: list[FileLock] = []


def _ends_the_process(exc: BaseException) -> bool:
    """SystemExit, KeyboardInterrupt or one of Prefect's external signals (by name: no Prefect import here)."""
    return isinstance(exc, SystemExit | KeyboardInterrupt) or any(
        c.__name__ == "ExternalSignal" for c in type(exc).__mro__
    )

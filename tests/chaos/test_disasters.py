"""Crashes the seeded kill points do not cover on their own: the run's very end, a full disk, a corrupt
DuckDB file left in a half-built release. Each starts from the `base` state (a release already current)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from chaos.harness import (
    OUTCOMES,
    Outcome,
    clone_home,
    diff_fingerprints,
    drop,
    fingerprint,
    invariants,
    run_sdmi,
    settle,
)

from pipelines.publish import current_release
from pipelines.settings import Zones

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]  # includes building the shared start states


def _prepare(world, starts, name: str) -> tuple[Path, object]:
    root, source, _, _ = world
    start = starts["base"]
    home = root / name
    clone_home(start.snapshot, home)
    drop(source, home, start.files)
    return home, start


def _record(point: str, problems: list[str], t0: float, killed: bool = True) -> None:
    OUTCOMES.append(Outcome("base", point, 1, killed, 1, problems, time.perf_counter() - t0))


def test_a_crash_after_the_switch_leaves_the_new_release_and_a_rerun_changes_nothing(world, starts):
    _, _, key, env = world
    home, start = _prepare(world, starts, "after-switch")
    t0 = time.perf_counter()
    crashed = run_sdmi(home, key, env, fault="publish.after_switch:1")
    assert crashed.killed
    switched_to = current_release(Zones(home))
    problems = diff_fingerprints(fingerprint(home), start.reference)  # readers already see the full result
    rerun = settle(home, key, env)[-1]
    problems += [] if rerun.normal else [f"rerun exit {rerun.returncode}"]
    summary = rerun.summary if rerun.normal else {}
    if summary.get("received") or summary.get("processed"):
        problems.append(f"rerun picked up files again: {summary.get('received')} received")
    if current_release(Zones(home)) != switched_to:
        problems.append("rerun published another release although nothing changed")
    problems += invariants(home)
    _record("run end (after switch)", problems, t0)
    assert problems == []


@contextlib.contextmanager
def _small_disk(folder: Path, size_kib: int):
    """`folder` on its own tmpfs of `size_kib`, its current contents copied in (root only)."""
    aside = folder.with_name(folder.name + ".aside")
    os.replace(folder, aside)
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        folder.rmdir()
        os.replace(aside, folder)
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or mounted.returncode}): needs root")
    try:
        shutil.copytree(aside, folder, symlinks=True, dirs_exist_ok=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        shutil.rmtree(aside, ignore_errors=True)


def _used_kib(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) // 1024


def test_a_full_disk_while_writing_the_release_keeps_the_old_release_and_a_rerun_recovers(world, starts):
    """The warehouse on a tmpfs with room for the current release and little more: the new release cannot be
    written. Readers keep the old one, the run says so; once there is room, a plain rerun publishes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    _, _, key, env = world
    home, start = _prepare(world, starts, "full-disk")
    zones = Zones(home)
    t0 = time.perf_counter()
    problems: list[str] = []
    with _small_disk(zones.warehouse, _used_kib(zones.warehouse) + 768):
        full = run_sdmi(home, key, env)
        if full.returncode != 2:
            problems.append(f"a run on a full disk exited {full.returncode}, not 2 (an engineer must look)")
        failed = full.summary.get("publish_failed") or "" if full.returncode == 2 else ""
        if "No space left on device" not in failed:  # the summary says why (Prefect's log has the traceback)
            problems.append(f"no clear message about the full disk: {(full.stdout + full.stderr)[-300:]!r}")
        problems += diff_fingerprints(fingerprint(home), start.before)  # readers still see the old release
        subprocess.run(["mount", "-o", "remount,size=262144k", str(zones.warehouse)], check=True)
        rerun = settle(home, key, env)[-1]
        if not rerun.normal:
            problems.append(f"rerun with room exit {rerun.returncode}: {rerun.stderr[-300:]}")
        problems += invariants(home)
        problems += diff_fingerprints(fingerprint(home), start.reference)
    _record("full disk in publish", problems, t0, killed=True)
    assert problems == []


def test_a_corrupt_duckdb_file_left_in_a_building_release_does_not_stop_the_next_run(world, starts):
    _, _, key, env = world
    home, start = _prepare(world, starts, "corrupt-building")
    t0 = time.perf_counter()
    crashed = run_sdmi(home, key, env, fault="publish.after_parquet:1")
    assert crashed.killed
    building = sorted(Zones(home).releases.glob(".building-*"))
    assert building, "the kill should have left a half-built release"
    db = building[0] / "sdmi.duckdb"
    db.write_bytes(os.urandom(4096) + b"not a duckdb file")  # a torn write
    parquet = next(building[0].rglob("*.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:100])  # and a truncated Parquet, as a killed COPY leaves
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(db), read_only=True)
    rerun = settle(home, key, env)[-1]
    problems = [] if rerun.normal else [f"rerun exit {rerun.returncode}: {rerun.stderr[-300:]}"]
    problems += invariants(home)
    problems += diff_fingerprints(fingerprint(home), start.reference)
    _record("corrupt building DuckDB", problems, t0)
    assert problems == []

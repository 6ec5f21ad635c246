"""Crash harness: run the real `sdmi run` in a subprocess, kill it with SIGKILL at a named point, rerun it, and
compare what readers see with a run that was never interrupted.

Shared by the long chaos suite (`make chaos`) and the quick sample in `tests/test_reliability.py`. No mocks:
real processes, real files, real DuckDB and SQLite, the real Prefect API (one server per test session, so a
run pays ~2.6 s of Prefect start-up instead of ~7 s).

What "the same result" means (`fingerprint`): every table of the current release's DuckDB file, every Parquet
table and every open-data CSV, each reduced to a checksum of its sorted rows. Columns in `RUN_DEPENDENT` are left
out: they record *when* a file was received, which a rerun after a crash legitimately changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines import inbox
from pipelines.ledger import FINAL, Ledger
from pipelines.settings import Zones

SDMI = str(Path(sys.executable).with_name("sdmi"))

#: Published columns whose value depends on the wall clock of the run, not on the data: the time the ledger
#: recorded the file's arrival (`received_at` in the ledger and data_quality, copied to every record as
#: `ingested_at`). A file re-claimed after a crash before its archive gets a new arrival time by design
#: (the claim was forgotten), so these are excluded from equality; everything else must match.
RUN_DEPENDENT: dict[str, str] = {
    "ingested_at": "arrival time of the record's file (ledger clock)",
    "received_at": "arrival time of the file (ledger clock)",
}

#: Names that must never be visible in a zone readers use (DuckDB/COPY temp files, our own temp folders).
TEMP_PATTERNS = (".tmp-*", ".building-*", "tmp_*.parquet", ".old-*", "*.tmp-*")

#: Every crash scenario run in this session, for the summary table (tests/chaos/conftest.py).
OUTCOMES: list[Outcome] = []

FIXED_MTIME = 1_700_000_000  # inbox files get one old mtime: stable at once, claimed in name order


@dataclass
class RunResult:
    """One `sdmi run` subprocess: exit code (negative = killed by that signal), output, wall time."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    fault: str | None = None

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def summary(self) -> dict:
        """The `--json` summary: the last stdout line (progress lines come before it)."""
        import json

        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise AssertionError(f"no JSON summary (exit {self.returncode}): {self.stderr[-800:]}")
        return json.loads(lines[-1])

    @property
    def normal(self) -> bool:
        """0 (fine) or 1 (an agency must act): the run finished its work."""
        return self.returncode in (0, 1)


def base_env(prefect_api_url: str | None, prefect_home: Path, **extra: str) -> dict[str, str]:
    """The subprocess environment: ours minus any SDMI_* setting, plus one shared Prefect home and server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDMI_")}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GX_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="WARNING",
        SDMI_WORKERS="2",
    )
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    env.update(extra)
    return env


def run_sdmi(
    home: Path,
    key: Path | None,
    env: Mapping[str, str],
    *args: str,
    fault: str | None = None,
    timeout: float = 900,
    command: Sequence[str] = ("run",),
) -> RunResult:
    """`sdmi run` as its own process group; whatever it started is gone when this returns."""
    cmd = [SDMI, *command, "--home", str(home)]
    if key is not None:
        cmd += ["--key-file", str(key)]
    if command == ("run",):
        cmd += ["--stable-seconds", "0", "--json"]
    cmd += list(args)
    run_env = dict(env)
    if fault:
        run_env["SDMI_FAULT"] = fault
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc.pid)
    return RunResult(proc.returncode, out, err, time.perf_counter() - started, fault)


def kill_group(pgid: int) -> None:
    """SIGKILL the process group we started (its leader's pid), e.g. a server a killed run left behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def settle(home: Path, key: Path, env: Mapping[str, str], max_runs: int = 3) -> list[RunResult]:
    """Rerun without faults until a run finishes normally; an operator would do exactly this after a crash."""
    runs = []
    for _ in range(max_runs):
        runs.append(run_sdmi(home, key, env))
        if runs[-1].normal:
            break
    return runs


# ------------------------------------------------------------------------------------------------ inboxes


def drop(source_inbox: Path, home: Path, files: Iterable[str]) -> None:
    """Copy `<agency>/<name>` files byte for byte into home's inbox, all with one old mtime."""
    for rel in files:
        target = home / "inbox" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_inbox / rel, target)
        os.utime(target, (FIXED_MTIME, FIXED_MTIME))


def inbox_files(source_inbox: Path) -> list[str]:
    return sorted(str(p.relative_to(source_inbox)) for p in source_inbox.rglob("*") if p.is_file())


def clone_home(snapshot: Path, home: Path) -> None:
    """A copy of a data root (relative symlinks and relative ledger paths make it relocatable)."""
    shutil.copytree(snapshot, home, symlinks=True)


# ------------------------------------------------------------------------------------------------ checks


def _digest_rows(rows: Iterable[tuple]) -> str:
    lines = sorted(repr(r) for r in rows)
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return f"{len(lines)}:{h.hexdigest()[:16]}"


def fingerprint(home: Path) -> dict[str, str]:
    """Checksum of every published table's sorted contents (run-dependent columns excluded), read the way an
    analyst reads them: through `warehouse/sdmi.duckdb`, the Parquet folders and the open-data CSVs."""
    zones = Zones(home)
    out: dict[str, str] = {}
    con = duckdb.connect(str(zones.analyst_db), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1"
            ).fetchall()
        ]
        for t in tables:
            cols = [r[0] for r in con.execute(f'DESCRIBE "{t}"').fetchall() if r[0] not in RUN_DEPENDENT]
            select = ", ".join(f'"{c}"' for c in cols)
            out[f"duckdb:{t}"] = _digest_rows(con.execute(f'SELECT {select} FROM "{t}"').fetchall())
    finally:
        con.close()
    mem = duckdb.connect()
    try:
        for folder in sorted(p for p in (zones.current / "parquet").iterdir() if p.is_dir()):
            rel = mem.sql(
                "SELECT * FROM read_parquet($g, hive_partitioning = true, union_by_name = true)",
                params={"g": str(folder / "**" / "*.parquet")},
            )
            cols = [c for c in rel.columns if c not in RUN_DEPENDENT]
            out[f"parquet:{folder.name}"] = _digest_rows(rel.select(*[f'"{c}"' for c in cols]).fetchall())
    finally:
        mem.close()
    for csv in sorted((zones.current / "public").glob("*.csv")):
        out[f"public:{csv.name}"] = _digest_rows((line,) for line in csv.read_text(encoding="utf-8").splitlines())
    return out


def diff_fingerprints(got: Mapping[str, str], want: Mapping[str, str]) -> list[str]:
    keys = sorted(set(got) | set(want))
    return [f"{k}: {got.get(k)} != {want.get(k)}" for k in keys if got.get(k) != want.get(k)]


def temp_files(root: Path) -> list[Path]:
    """Temporary names under `root` (following nothing: a symlinked release is checked through `current`)."""
    if not root.exists():
        return []
    found: set[Path] = set()
    for pattern in TEMP_PATTERNS:
        found.update(root.rglob(pattern))
    return sorted(found)


def invariants(home: Path) -> list[str]:
    """What must hold after any crash and a rerun, beyond equality with the reference: the ledger complete and
    reconciled, no file twice, nothing temporary where readers look, nothing left to be picked up later."""
    zones = Zones(home)
    problems: list[str] = []
    ledger = Ledger(zones.ledger_db)
    files = ledger.files()
    for f in files:
        if f.status not in FINAL:
            problems.append(f"ledger: {f.file_name} is {f.status!r}, not final")
            continue
        if f.status == "rejected":
            if not f.reason_code:
                problems.append(f"ledger: {f.file_name} rejected without a reason")
        elif f.rows_read != (f.rows_accepted or 0) + (f.rows_quarantined or 0):
            problems.append(f"ledger: {f.file_name} rows_read {f.rows_read} != accepted + quarantined")
        if not f.raw_path or not (home / f.raw_path).is_file():
            problems.append(f"raw: archived copy of {f.file_name} missing")
    new_receipts: dict[str, int] = {}
    for r in ledger.receipts():
        if r["outcome"] == "new":
            new_receipts[r["sha256"]] = new_receipts.get(r["sha256"], 0) + 1
    problems += [f"ledger: {sha[:12]} received as new {n} times" for sha, n in new_receipts.items() if n != 1]
    if set(new_receipts) != {f.sha256 for f in files}:
        problems.append("ledger: receipts and files disagree")
    raw_files = {p for p in zones.raw.rglob("*") if p.is_file()}
    orphans = raw_files - {home / f.raw_path for f in files if f.raw_path}
    problems += [f"raw: {p.relative_to(home)} belongs to no ledger entry" for p in sorted(orphans)]
    final_batches = {f.batch_id for f in files if f.status in ("processed", "held")}
    staged = {p.name for p in zones.staging.glob("[!.]*")} if zones.staging.exists() else set()
    problems += [f"staging: {b} missing" for b in sorted(final_batches - staged)]
    problems += [f"staging: {b} belongs to no processed file" for b in sorted(staged - final_batches)]
    waiting = inbox.waiting_files(zones)
    problems += [f"inbox: {p.name} would be picked up later" for ps in waiting.values() for p in ps]
    for root in (zones.current, zones.staging, zones.raw, zones.reports):
        problems += [f"temporary file visible: {p.relative_to(home)}" for p in temp_files(root)]
    problems += [f"leftover: {p.relative_to(home)}" for p in sorted(zones.releases.glob(".building-*"))]
    if not zones.current.is_symlink() or not (zones.current / "manifest.json").is_file():
        problems.append("warehouse: current is not a complete release")
    elif not zones.analyst_db.is_file():
        problems.append("warehouse: sdmi.duckdb does not resolve to the current release")
    else:
        import json

        manifest = json.loads((zones.current / "manifest.json").read_text(encoding="utf-8"))
        published = {(b["batch_id"], b["status"]) for b in manifest.get("batches", [])}
        ledger_side = {(f.batch_id, f.status) for f in files}
        if published != ledger_side:
            problems.append(
                f"warehouse: current release is stale: built from {len(published)} batch(es), "
                f"ledger has {len(ledger_side)} final"
            )
    return problems


@dataclass
class Outcome:
    """One crash scenario, as the summary table shows it."""

    start: str
    point: str
    n: int
    killed: bool = False
    reruns: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def held(self) -> bool:
        return self.killed and not self.problems

    @property
    def verdict(self) -> str:
        if not self.killed:
            return "not reached"
        return "held" if not self.problems else "broken"


def crash_and_recover(
    home: Path,
    key: Path,
    env: Mapping[str, str],
    fault: str,
    reference: Mapping[str, str],
    start: str = "fresh",
) -> Outcome:
    """Kill `sdmi run` at `fault`, rerun until it finishes, compare with the uninterrupted reference."""
    point, _, nth = fault.partition(":")
    t0 = time.perf_counter()
    outcome = Outcome(start, point, int(nth or 1))
    crashed = run_sdmi(home, key, env, fault=fault)
    outcome.killed = crashed.killed
    if not crashed.killed:
        outcome.problems.append(f"fault not reached: exit {crashed.returncode}: {crashed.stderr[-300:]}")
    reruns = settle(home, key, env)
    outcome.reruns = len(reruns)
    if not reruns[-1].normal:
        outcome.problems.append(f"rerun exit {reruns[-1].returncode}: {reruns[-1].stderr[-500:]}")
    outcome.problems += invariants(home)
    try:
        outcome.problems += diff_fingerprints(fingerprint(home), reference)
    except (duckdb.Error, OSError) as exc:
        outcome.problems.append(f"warehouse unreadable: {type(exc).__name__}: {exc}")
    outcome.seconds = time.perf_counter() - t0
    return outcome


@dataclass(frozen=True)
class Start:
    """A starting data root (copied per scenario), the files then dropped, and the uninterrupted result."""

    name: str
    snapshot: Path
    files: tuple[str, ...]
    reference: dict[str, str]
    census: Counter[str]
    before: dict[str, str] | None  # what readers saw before the run (base only)


def table(outcomes: Sequence[Outcome]) -> str:
    """Plain-text summary: one line per scenario."""
    lines = [f"{'#':>3}  {'start':<6} {'point':<26} {'n':>3}  {'outcome':<11} {'reruns':>6} {'secs':>6}  first problem"]
    for i, o in enumerate(outcomes):
        first = o.problems[0][:70] if o.problems else ""
        lines.append(
            f"{i:>3}  {o.start:<6} {o.point:<26} {o.n:>3}  {o.verdict:<11} {o.reruns:>6} {o.seconds:>6.1f}  {first}"
        )
    held = sum(o.verdict == "held" for o in outcomes)
    lines.append(f"held {held} / {len(outcomes)}")
    return "\n".join(lines)


def prefect_api_url() -> str | None:
    """The API of the Prefect server started by the `prefect_harness` fixture (inside its context)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()

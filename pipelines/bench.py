"""`make bench`: the pipeline against a floor (DuckDB CSV -> Parquet) and a peer (dlt -> DuckDB).

    python -m pipelines.bench --rows 1000000 [--repeat 3] [--out data/bench] [--dask] [--profile]

Generates the demo agencies' files at the given size (`pipelines.demo.generate`; reused when the same size
and seed are already there), then measures on the same files, each several times (median; of an even
number of runs, the lower middle one):

  floor     DuckDB `COPY (SELECT * FROM read_csv([...], all_varchar=true)) TO '...parquet'`
  bound     the floor plus the NIK's HMAC and a second Parquet copy without the direct identifiers: the least
            any pipeline keeping SDMI's contract must do (`BOUND_SCRIPT`)
  peer      dlt's filesystem source + `read_csv_duckdb(use_pyarrow=True, all_varchar=True)` into DuckDB
  pipeline  `sdmi run --json` from inbox to published release (fresh SDMI_HOME per repeat, one
            persistent PREFECT_HOME), with its per-stage timings
  cpu       the pipeline again with one file at a time (SDMI_WORKERS=1): CPU seconds by stage
  republish `sdmi publish` with no new files, and `sdmi run` on an empty inbox (the fixed cost)
  hostile   `sdmi run` on two files unlike the bench's, once each: the first national file with every row
            quarantined, and 100,000 of its rows with a long notes column (`hostile_inputs`)
  small     `sdmi run` on 100 files of 50 rows each (`small_inputs`), one at a time: what each file costs
            whatever its size, as when district offices each send a short monthly list
  profile   with `--profile`: one more run under py-spy, summed by stage and function (`pipelines.profiling`)

All of them read the UTF-8 CSV files only (the demo's SISKOP2MI exports): DuckDB cannot decode the
Windows-1252 and UTF-16 files here (no `encodings` extension offline) and reads neither XLSX nor nested JSON.
`--dask` also runs the whole demo inbox (every agency, several files) with the thread runner and with
prefect-dask's DaskTaskRunner on 1 and 2 local workers.

Every measurement is a child process. Rows/s count the work itself (floor: the COPY; peer: `pipeline.run`;
pipeline: the flow's `timings.total`, first file claimed to release switched); process start, imports and
Prefect's local server are reported apart as `startup_s`. Peak RSS is the whole process tree's (psutil, polled
every 50 ms), CPU seconds come from the kernel's accounting of the child and its reaped descendants.
Results: a table on stdout, the same as JSON in `<out>/bench-<rows>.json` (and a timestamped copy).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

GIB = 1 << 30
POLL_SECONDS = 0.05
TARGETS = {
    "pipeline_vs_floor_min": 1 / 3,  # pipeline rows/s >= 1/3 of the floor's
    "pipeline_vs_peer_min": 1.0,  # faster than the peer
    "peak_rss_gib_max_5m": 2.0,  # whole process tree, at 5M rows
    "republish_s_max_5m": 30.0,
    "validate_share_max_1m": 0.25,  # GX validation <= 1/4 of pipeline time at 1M
}
STAGES = ("claim", "read", "map", "harmonise", "validate", "stage", "report", "publish")
# Agencies whose files DuckDB can read as they are: UTF-8 CSV.
UTF8 = ("utf-8", "utf8", "utf-8-sig")

FLOOR_SCRIPT = r"""
import json, sys, time
import duckdb
files, target = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
t = time.perf_counter()
rows = con.execute(
    f"COPY (SELECT * FROM read_csv([{listed}], all_varchar = true)) TO '{target}' (FORMAT parquet)"
).fetchone()[0]
print(json.dumps({"rows": int(rows), "work_s": time.perf_counter() - t}))
"""

# The least any pipeline keeping SDMI's contract must do with these files, in DuckDB with nothing between: read
# them, pseudonymise the NIK (HMAC-SHA256, two SHA-256 a row, as `harmonise` does), write the restricted copy,
# and write a published copy without the direct identifiers. No code lists, dates, GX, deduplication or audits.
BOUND_SCRIPT = r"""
import json, os, sys, time
import duckdb
files, staged, published = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
nik, identifiers = sys.argv[4], json.loads(sys.argv[5])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
quoted = lambda name: '"' + name.replace('"', '""') + '"'
key = os.urandom(32).ljust(64, b"\0")
ipad, opad = bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()
hmac = f"sha256(unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode('nik:' || {quoted(nik)}))))"
t = time.perf_counter()
rows = con.execute(
    f"COPY (SELECT *, {hmac} AS worker_key FROM read_csv([{listed}], all_varchar = true)) TO '{staged}' "
    "(FORMAT parquet)"
).fetchone()[0]
dropped = ", ".join(quoted(c) for c in identifiers)
con.execute(f"COPY (SELECT * EXCLUDE ({dropped}) FROM read_parquet('{staged}')) TO '{published}' (FORMAT parquet)")
seconds = time.perf_counter() - t
columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{published}')").fetchall()]
print(json.dumps({"rows": int(rows), "work_s": seconds, "published_columns": columns}))
"""

PEER_SCRIPT = r"""
import json, sys, time
import dlt
from dlt.sources.filesystem import filesystem, read_csv_duckdb
folder, glob, work = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
reader = read_csv_duckdb(use_pyarrow=True, chunk_size=500_000, all_varchar=True)
source = filesystem(bucket_url=folder, file_glob=glob) | reader
pipe = dlt.pipeline(
    pipeline_name="sdmi_bench_peer",
    destination=dlt.destinations.duckdb(work + "/peer.duckdb"),
    dataset_name="bench",
    pipelines_dir=work + "/pipelines",
)
pipe.run(source.with_name("placements"), write_disposition="replace")
seconds = time.perf_counter() - t
rows = pipe.last_trace.last_normalize_info.row_counts.get("placements", 0)
print(json.dumps({"rows": int(rows), "work_s": seconds}))
"""


# ------------------------------------------------------------------------------------------------ measuring


@dataclass
class Measured:
    wall_s: float
    peak_rss: int  # bytes, sum over the process tree at its largest
    peak_rss_single: int  # bytes, the largest single process
    cpu_s: float  # user + system of the child and its reaped descendants
    returncode: int
    stdout: str
    stderr: str
    extra: dict = field(default_factory=dict)


def measure(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Measured:
    """Run a child process; poll the RSS of its whole tree; return wall, peak RSS, CPU seconds, output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        peak = peak_single = 0
        done = threading.Event()

        def poll() -> None:
            nonlocal peak, peak_single
            try:
                root = psutil.Process(proc.pid)
            except psutil.NoSuchProcess:
                return
            while not done.is_set():
                total = 0
                try:
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    break
                for p in procs:
                    try:
                        rss = p.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        continue
                    total += rss
                    peak_single = max(peak_single, rss)
                peak = max(peak, total)
                done.wait(POLL_SECONDS)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            wall_s=wall,
            peak_rss=peak,
            peak_rss_single=peak_single,
            cpu_s=usage.ru_utime + usage.ru_stime,
            returncode=proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


class RunFailed(RuntimeError):
    """A measured child that did not do its work: the bench stops, it never reports the failure as a figure."""


def _last_json(text: str) -> dict:
    """The last line of a child's stdout that is a JSON object, whole: never an object inside another line, as in
    the progress line `sdmi: files {"total": 6}` that a crashed `sdmi run` leaves last."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict):
                return found
    return {}


def _json_document(text: str) -> dict:
    """The JSON object `sdmi publish` pretty-prints over several lines: from the first line that opens it."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("{"):
            try:
                found = json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                return {}
            return found if isinstance(found, dict) else {}
    return {}


def _check(m: Measured, what: str) -> None:
    if m.returncode != 0:
        tail = (m.stderr or m.stdout)[-3000:]
        raise RunFailed(f"{what} failed with exit code {m.returncode}:\n{tail}")


def _median(values: list[float]) -> float:
    """The middle run; with an even number of runs the lower of the two middle ones, not their mean. A run
    stalled on the disk (a 5M floor run took 54.4 s with 9.6 CPU-seconds, the next 4.9 s) must not count half
    in a figure, least of all in the floor's, where it would flatter the pipeline's ratio."""
    return statistics.median_low(values) if values else float("nan")


# ------------------------------------------------------------------------------------------------ set-up


def sdmi_command() -> list[str]:
    script = Path(sys.executable).with_name("sdmi")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pipelines.cli import main; main()"]


def base_env(prefect_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GX_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        RUNTIME__LOG_LEVEL="WARNING",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    # the ephemeral server's 20 s start-up limit is too tight on a busy 2-core machine
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    env.pop("SDMI_KEY", None)
    return env


def generate_inputs(folder: Path, rows: int, seed: int) -> dict:
    """The demo agencies' files; reused when a previous bench wrote the same size and seed."""
    marker = folder / "generated.json"
    if marker.exists():
        meta = json.loads(marker.read_text(encoding="utf-8"))
        if meta.get("rows") == rows and meta.get("seed") == seed:
            return meta
    from pipelines import demo

    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    truth = demo.generate(folder / "inbox", seed=seed, rows=rows)
    meta = {
        "rows": rows,
        "seed": seed,
        "generate_s": round(time.perf_counter() - t, 2),
        "rows_by_file": truth.rows_by_file,
        "xlsx_rows_capped_at": demo.XLSX_MAX_ROWS,
    }
    marker.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def utf8_csv_agencies() -> list[str]:
    from pipelines import config

    out = []
    for name in sorted(config.agencies()):
        read = config.agency(name).read
        if read.format == "csv" and (read.encoding or "").lower() in UTF8:
            out.append(name)
    return out


def make_inbox(source: Path, home: Path, agencies: list[str] | None) -> None:
    """A fresh data root whose inbox holds the chosen agencies' files (hard links: claim only reads them)."""
    shutil.rmtree(home, ignore_errors=True)
    for agency_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        if agencies is not None and agency_dir.name not in agencies:
            continue
        target = home / "inbox" / agency_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for f in agency_dir.iterdir():
            try:
                os.link(f, target / f.name)
            except OSError:
                shutil.copy2(f, target / f.name)
    old = time.time() - 3600  # older than any stable-seconds window
    for f in (home / "inbox").rglob("*"):
        if f.is_file():
            os.utime(f, (old, old))


# ------------------------------------------------------------------------------------------------ the runs


def run_floor(files: list[Path], work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    target = work / "floor.parquet"
    target.unlink(missing_ok=True)
    m = measure([sys.executable, "-c", FLOOR_SCRIPT, json.dumps([str(f) for f in files]), str(target)])
    _check(m, "floor (DuckDB COPY)")
    child = _last_json(m.stdout)
    target.unlink(missing_ok=True)
    return _result(m, child["rows"], child["work_s"])


def identifier_headers(agency: str, files: list[Path]) -> tuple[str, list[str]]:
    """The NIK's header and every direct identifier's header in the agency's CSV, by its mapping."""
    from pipelines import config, mapping
    from pipelines.readers import normalise_header
    from pipelines.schema import load_schema

    cfg = config.agencies()[agency]
    with files[0].open(encoding="utf-8-sig", newline="") as f:
        headers = {normalise_header(h): h for h in next(csv.reader(f))}
    direct = load_schema().direct_identifiers()
    found = {name: mapping.find_header(headers, cfg.columns.get(name, [])) for name in direct}
    if not found.get("nik"):
        raise SystemExit(f"bench: no NIK column in {files[0]}")
    return found["nik"], sorted(h for h in found.values() if h)


HOSTILE_NOTES_ROWS = 100_000  # rows of the long-notes file at any bench size (~400 MB of CSV)
NOTE = "catatan petugas verifikasi "  # 27 characters, repeated 0, 5, 50 or 500 times: ~3.7 KB a row on average


def hostile_inputs(national: Path, agency: str, folder: Path) -> dict[str, Path]:
    """Two files unlike the bench's, made from its first national export file by DuckDB: every row quarantined
    (a destination country no code list knows, one systematic mistake), and a long notes column. Memory must not
    follow their size either: before the report and the chunks were bounded, files like these took 3.46 GiB (1M
    rows, all quarantined) and 2.01 GiB (200,000 rows with notes, 933 MB) in `sdmi run`."""
    import duckdb

    from pipelines import config, mapping
    from pipelines.readers import normalise_header

    with national.open(encoding="utf-8-sig", newline="") as f:
        headers = {normalise_header(h): h for h in next(csv.reader(f))}
    cfg = config.agencies()[agency]
    country = mapping.find_header(headers, cfg.columns.get("destination_country", []))
    record = mapping.find_header(headers, cfg.record_id or [])
    if not country or not record:
        raise SystemExit(f"bench: no destination country or record id column in {national}")
    folder.mkdir(parents=True, exist_ok=True)
    out = {"all_quarantined": folder / "all_quarantined.csv", "long_notes": folder / "long_notes.csv"}
    source = f"read_csv('{national}', all_varchar = true, header = true)"
    quoted = "(HEADER, FORCE_QUOTE *)"
    con = duckdb.connect()
    try:
        unknown = f"SELECT * REPLACE ('Atlantis' AS \"{country}\") FROM {source}"
        con.execute(f"COPY ({unknown}) TO '{out['all_quarantined']}' {quoted}")
        times = f'[0, 5, 50, 500][CAST(hash("{record}") % 4 AS BIGINT) + 1]'
        con.execute(
            f"COPY (SELECT *, repeat('{NOTE}', {times}) AS \"Keterangan\" FROM {source} LIMIT {HOSTILE_NOTES_ROWS}) "
            f"TO '{out['long_notes']}' {quoted}"
        )
    finally:
        con.close()
    return out


def run_hostile(files: dict[str, Path], agency: str, out: Path, env: dict[str, str], rows: dict[str, int]) -> dict:
    """`sdmi run` on each hostile file alone (`rows`: each file's), on a fresh data root: wall time and the tree's
    peak RSS."""
    result = {}
    for name, path in files.items():
        home = out / "homes" / f"hostile-{name}"
        shutil.rmtree(home, ignore_errors=True)
        (home / "inbox" / agency).mkdir(parents=True)
        try:
            os.link(path, home / "inbox" / agency / path.name)
        except OSError:
            shutil.copy2(path, home / "inbox" / agency / path.name)
        run = run_pipeline(home, env, rows=rows[name])
        shutil.rmtree(home, ignore_errors=True)
        result[name] = {
            "bytes": path.stat().st_size,
            **{k: run[k] for k in ("rows", "wall_s", "work_s", "cpu_s", "peak_rss_bytes", "rows_quarantined")},
            "report_s": run["stages"].get("report"),
        }
    return result


SMALL_FILES, SMALL_ROWS = 100, 50  # the `small` measurement, at any bench size


def small_inputs(national: Path, folder: Path, files: int = SMALL_FILES, rows: int = SMALL_ROWS) -> list[Path]:
    """Up to `files` CSV files of `rows` rows each (fewer when the national file is short), cut by DuckDB from
    the first rows of a national export file. Each file costs the pipeline a fixed amount whatever its rows
    (GX's per-expectation work, DuckDB planning each statement, the report); a bench of large files never
    shows it."""
    import duckdb

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = f"read_csv('{national}', all_varchar = true, header = true)"
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE head AS SELECT *, row_number() OVER () - 1 AS _n FROM {source} LIMIT {files * rows}")
        (available,) = con.execute("SELECT count(*) FROM head").fetchone()
        out = [folder / f"small_{i:03d}.csv" for i in range(min(files, available // rows))]
        for i, path in enumerate(out):
            con.execute(
                f"COPY (SELECT * EXCLUDE (_n) FROM head WHERE _n // {rows} = {i} ORDER BY _n) TO '{path}' "
                "(HEADER, FORCE_QUOTE *)"
            )
    finally:
        con.close()
    return out


def run_small(files: list[Path], agency: str, out: Path, env: dict[str, str]) -> dict:
    """`sdmi run` on the small files together, one file at a time (SDMI_WORKERS=1): seconds per file."""
    home = out / "homes" / "small"
    shutil.rmtree(home, ignore_errors=True)
    (home / "inbox" / agency).mkdir(parents=True)
    for path in files:
        shutil.copy2(path, home / "inbox" / agency / path.name)
    run = run_pipeline(home, env, {"SDMI_WORKERS": "1"}, rows=len(files) * SMALL_ROWS)
    shutil.rmtree(home, ignore_errors=True)
    per_file = {k: round(v / len(files), 4) for k, v in run["stages"].items() if k not in ("publish", "total")}
    return {
        "files": len(files),
        **{k: run[k] for k in ("rows", "wall_s", "work_s", "cpu_s", "peak_rss_bytes")},
        "stages": run["stages"],
        "per_file_s": per_file,
    }


def run_bound(files: list[Path], work: Path, nik: str, identifiers: list[str]) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    staged, published = work / "staged.parquet", work / "published.parquet"
    args = [json.dumps([str(f) for f in files]), str(staged), str(published), nik, json.dumps(identifiers)]
    m = measure([sys.executable, "-c", BOUND_SCRIPT, *args])
    _check(m, "bound (DuckDB: HMAC and two writes)")
    child = _last_json(m.stdout)
    for f in (staged, published):
        f.unlink(missing_ok=True)
    return {**_result(m, child["rows"], child["work_s"]), "published_columns": child["published_columns"]}


def run_peer(folder: Path, glob: str, work: Path, env: dict[str, str]) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    peer_env = {**env, "DLT_DATA_DIR": str(work / "dlt"), "DLT_PROJECT_DIR": str(work)}
    m = measure([sys.executable, "-c", PEER_SCRIPT, folder.resolve().as_uri(), glob, str(work)], env=peer_env, cwd=work)
    _check(m, "peer (dlt)")
    child = _last_json(m.stdout)
    shutil.rmtree(work, ignore_errors=True)
    return _result(m, child["rows"], child["work_s"])


def _result(m: Measured, rows: int, work_s: float) -> dict:
    return {
        "rows": rows,
        "work_s": round(work_s, 3),
        "wall_s": round(m.wall_s, 3),
        "startup_s": round(m.wall_s - work_s, 3),
        "cpu_s": round(m.cpu_s, 2),
        "rows_per_s": round(rows / work_s) if work_s > 0 else None,
        "peak_rss_bytes": m.peak_rss,
        "peak_rss_single_bytes": m.peak_rss_single,
    }


def run_pipeline(
    home: Path,
    env: dict[str, str],
    extra_env: dict[str, str] | None = None,
    publish: bool = True,
    prefix: list[str] | None = None,
    *,
    rows: int,
) -> dict:
    """`sdmi run` on `home`, which must read `rows` rows; `prefix` runs it under another command (py-spy for
    `--profile`)."""
    run_env = {**env, "SDMI_HOME": str(home), "SDMI_STABLE_SECONDS": "0", **(extra_env or {})}
    cmd = [*(prefix or []), *sdmi_command(), "run", "--json", "--stable-seconds", "0"]
    if not publish:
        cmd.append("--no-publish")
    m = measure(cmd, env=run_env)
    summary = run_summary(m, rows, wrapped=bool(prefix))
    timings = summary.get("timings") or {}
    total = float(timings.get("total") or 0)
    out = _result(m, int(summary.get("rows_read") or 0), total)
    out.update(
        exit_code=m.returncode,
        # known stages first, then whatever else the flow timed (e.g. a combined "read_map"), wall times last
        stages={k: timings[k] for k in sorted(timings, key=lambda k: (k in ("files", "total"), _stage_order(k)))},
        files=summary.get("received"),
        processed=summary.get("processed"),
        held=summary.get("held"),
        rejected=summary.get("rejected"),
        errors=summary.get("errors"),
        rows_accepted=summary.get("rows_accepted"),
        rows_quarantined=summary.get("rows_quarantined"),
        rows_published=summary.get("rows_published"),
        release_id=summary.get("release_id"),
        cpu_stages=summary.get("cpu_seconds"),  # only when the files ran one at a time
    )
    return out


def run_summary(m: Measured, rows: int, wrapped: bool = False) -> dict:
    """The summary of an `sdmi run` that did its work, else RunFailed. Exit 1 is no proof: an agency must act
    (a file held or rejected, which the demo data may do), but also any uncaught traceback. So the summary must
    be there and say the process's exit code (0 or 1; under py-spy, `wrapped`, the process's is py-spy's 0),
    account for every file received, and count the rows the bench gave it."""
    summary = _last_json(m.stdout)
    code = summary.get("exit_code")
    problems = []
    if not summary:
        problems.append(f"exit code {m.returncode} and no JSON summary")
    elif code not in (0, 1) or m.returncode != (0 if wrapped else code):
        problems.append(f"exit code {m.returncode}, the summary's {code!r}")
    if summary.get("errors") or summary.get("publish_failed"):
        problems.append(f"{summary.get('errors')} file error(s), publish failed: {summary.get('publish_failed')}")
    done = sum(summary.get(k) or 0 for k in ("processed", "held", "rejected"))
    if summary and done != summary.get("received"):
        problems.append(f"{summary.get('received')} file(s) received, {done} processed, held or rejected")
    if summary and summary.get("rows_read") != rows:
        problems.append(f"{summary.get('rows_read')} rows read, {rows} expected")
    if problems:
        raise RunFailed(f"sdmi run failed: {'; '.join(problems)}\n{m.stdout[-1500:]}\n{m.stderr[-2500:]}")
    return summary


def _stage_order(name: str) -> int:
    for i, stage in enumerate(STAGES):
        if name == stage or name.startswith(stage + "_"):
            return i
    return len(STAGES)


def run_republish(home: Path, env: dict[str, str]) -> dict:
    run_env = {**env, "SDMI_HOME": str(home)}
    m = measure([*sdmi_command(), "publish"], env=run_env)
    _check(m, "sdmi publish")
    result = _json_document(m.stdout)
    work = float(result.get("seconds") or 0)  # publish() itself: from reading the batches to the switch
    return {
        "wall_s": round(m.wall_s, 3),
        "work_s": round(work, 3),
        "startup_s": round(m.wall_s - work, 3),  # process start, imports, Prefect's temporary server
        "cpu_s": round(m.cpu_s, 2),
        "peak_rss_bytes": m.peak_rss,
        "records": (result.get("counts") or {}).get("placement_records"),
        "switched": result.get("switched"),
    }


def run_empty(home: Path, env: dict[str, str]) -> dict:
    r = run_pipeline(home, env, rows=0)
    return {k: r[k] for k in ("wall_s", "work_s", "startup_s", "cpu_s", "peak_rss_bytes", "files")}


def summarise(runs: list[dict]) -> dict:
    """Medians of the numeric fields over repeats; stages as medians per stage; every run kept."""
    med: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            vals = [r[key] for r in runs if isinstance(r.get(key), int | float)]
            med[key] = round(_median(vals), 3) if key.endswith("_s") else int(_median(vals))
        elif key in ("stages", "cpu_stages") and value:
            names = list(value)
            med[key] = {n: round(_median([r[key][n] for r in runs if n in (r[key] or {})]), 3) for n in names}
        else:
            med[key] = value
    if med.get("work_s") and med.get("rows"):
        med["rows_per_s"] = round(med["rows"] / med["work_s"])
    med["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)  # peak: the worst repeat
    med["runs"] = runs
    return med


# ------------------------------------------------------------------------------------------------ report


def _gib(n: int | None) -> str:
    return "-" if not n else f"{n / GIB:.2f} GiB"


def _rate(n: float | None) -> str:
    return "-" if not n else f"{n / 1e6:.3f} M/s"


def table_text(result: dict) -> str:
    floor, bound, peer, pipe = (result.get(k) for k in ("floor", "bound", "peer", "pipeline"))
    lines = [
        f"SDMI bench: {result['rows_total']:,} demo rows generated; measured on {result['measured_rows']:,} rows "
        f"of UTF-8 CSV ({', '.join(result['files'])})",
        f"repeat {result['repeat']} (median; of an even number, the lower middle run), "
        f"{result['machine']['cpus']} CPUs, load average before {result['machine']['load_before']}, "
        f"after {result['machine']['load_after']}",
        "",
        f"| {'path':<28} | {'rows/s (work)':>13} | {'work s':>7} | {'startup s':>9} | {'CPU s':>6} | "
        f"{'peak RSS (tree)':>15} |",
        f"|{'-' * 30}|{'-' * 15}:|{'-' * 8}:|{'-' * 10}:|{'-' * 7}:|{'-' * 16}:|",
    ]
    for name, r in (("floor: DuckDB COPY -> Parquet", floor), ("bound: + HMAC, 2nd write", bound),
                    ("peer: dlt -> DuckDB", peer), ("pipeline: sdmi run", pipe)):  # fmt: skip
        if not r:
            continue
        lines.append(
            f"| {name:<28} | {_rate(r['rows_per_s']):>13} | {r['work_s']:>7.2f} | {r['startup_s']:>9.2f} | "
            f"{r['cpu_s']:>6.1f} | {_gib(r['peak_rss_bytes']):>15} |"
        )
    ratios = result.get("ratios", {})
    lines.append("")
    if "pipeline_vs_floor" in ratios:
        lines.append(f"pipeline / floor rows/s: {ratios['pipeline_vs_floor']:.2f}  (target >= 0.33)")
    if "pipeline_vs_peer" in ratios:
        lines.append(f"pipeline / peer  rows/s: {ratios['pipeline_vs_peer']:.2f}  (target > 1)")
    if "bound_vs_floor" in ratios:
        allowed = 3 * floor["work_s"]
        lines.append(
            f"bound / floor rows/s: {ratios['bound_vs_floor']:.2f}: reading, the NIK's HMAC and the two writes any "
            f"pipeline must do take {bound['work_s']:.2f} s of the {allowed:.2f} s that 1/3 of the floor allows, "
            f"leaving {allowed - bound['work_s']:.2f} s for everything else"
        )
    if "pipeline_vs_floor_cpu" in ratios:
        lines.append(
            f"same, per CPU second (whole process, start-up included): floor {ratios['pipeline_vs_floor_cpu']:.2f}"
            + (f", peer {ratios['pipeline_vs_peer_cpu']:.2f}" if "pipeline_vs_peer_cpu" in ratios else "")
        )
    if pipe:
        st = pipe["stages"]
        lines.append("")
        lines.append("pipeline stages, seconds (per-file stages summed over files; 'files' and 'total' are wall):")
        lines.append("| " + " | ".join(f"{k:>9}" for k in st) + " |")
        lines.append("|" + "|".join("-" * 10 + ":" for _ in st) + "|")
        lines.append("| " + " | ".join(f"{v:>9.2f}" for v in st.values()) + " |")
        if "validate_share" in ratios:
            lines.append(
                f"validation share of pipeline work: {ratios['validate_share']:.0%}, of which GX itself "
                f"{ratios.get('gx_share', 0):.0%}  (target <= 25 % at 1M; stage-seconds over the sum of all "
                f"stages, waiting for another file's GX left out; against wall time "
                f"{ratios.get('validate_vs_wall', 0):.0%})"
            )
    one = result.get("one_file_at_a_time") or {}
    if one.get("cpu_stages"):
        cs = {**one["cpu_stages"], "sum": sum(one["cpu_stages"].get(k, 0.0) for k in WORK_STAGES)}
        lines.append("")
        lines.append(
            f"CPU seconds by stage, files one at a time (SDMI_WORKERS=1; the process's CPU, DuckDB's threads "
            f"included; flow {one['work_s']:.2f} s):"
        )
        lines.append("| " + " | ".join(f"{k:>9}" for k in cs) + " |")
        lines.append("|" + "|".join("-" * 10 + ":" for _ in cs) + "|")
        lines.append("| " + " | ".join(f"{v:>9.2f}" for v in cs.values()) + " |")
        same = [f"{name} {r['cpu_s']:.1f}" for name, r in (("floor", floor), ("peer", peer)) if r]
        if same:
            lines.append(f"for the same rows, whole process with start-up: {', '.join(same)} CPU seconds")
        if "validate_cpu_share" in ratios:
            lines.append(f"validation share of the pipeline's CPU seconds: {ratios['validate_cpu_share']:.0%}")
    rep, empty = result.get("republish"), result.get("empty_inbox")
    if rep:
        lines.append(
            f"republish (sdmi publish, no new files, {rep['records']:,} records): {rep['work_s']:.1f} s work "
            f"+ {rep['startup_s']:.1f} s start-up = {rep['wall_s']:.1f} s wall, peak {_gib(rep['peak_rss_bytes'])}"
            "  (target < 30 s at 5M)"
        )
    if empty:
        lines.append(
            f"empty inbox (sdmi run, nothing to do): {empty['wall_s']:.1f} s wall, "
            f"of which flow {empty['work_s']:.2f} s"
        )
    for name, r in (result.get("hostile") or {}).items():
        lines.append(
            f"hostile file, {name.replace('_', ' ')} (sdmi run, that file alone: {r['rows']:,} rows, "
            f"{r['bytes'] / 1e6:,.0f} MB, {r['rows_quarantined']:,} quarantined): {r['wall_s']:.1f} s wall "
            f"(report {r['report_s'] or 0:.1f} s), peak {_gib(r['peak_rss_bytes'])}  (target < 2 GiB)"
        )
    small = result.get("small")
    if small:
        each = small["per_file_s"]
        lines.append(
            f"small files (sdmi run, {small['files']} files of {small['rows'] // small['files']} rows, one at a time): "
            f"{small['stages'].get('files', 0):.1f} s for the files, {each.get('files', 0):.2f} s a file "
            f"(harmonise {each.get('harmonise', 0):.3f}, validate {each.get('validate', 0):.3f} of which GX "
            f"{each.get('gx', 0):.3f}, report {each.get('report', 0):.3f}); {small['wall_s']:.1f} s wall"
        )
    start = result.get("startup")
    if start:
        for case in ("empty_first", "empty", "one_file"):
            r = start.get(case) or {}
            lines.append(
                f"start-up, {case.replace('_', ' ')}: {r.get('wall_s')} s wall, first file in hand at "
                f"{r.get('first_file_in_hand_s')} s (Prefect API: {start['prefect_api']})"
            )
    if result.get("dask"):
        lines.append("")
        lines.append("whole demo inbox (every agency), task runners:")
        for name, r in result["dask"].items():
            lines.append(
                f"  {name:<10} {r['rows']:>9,} rows  flow {r['work_s']:>7.2f} s  {_rate(r['rows_per_s'])}  "
                f"wall {r['wall_s']:.1f} s  CPU {r['cpu_s']:.0f} s  peak {_gib(r['peak_rss_bytes'])}"
            )
    if result.get("profile"):
        from pipelines import profiling

        lines.append("")
        lines.append(profiling.table_text(result["profile"]))
    misses = result.get("targets", {}).get("missed") or []
    lines.append("")
    if result.get("targets", {}).get("checked"):
        lines.append("targets missed: " + ("; ".join(misses) if misses else "none"))
    else:
        lines.append("targets: none checked (their measurements were skipped)")
    return "\n".join(lines)


def check_targets(result: dict) -> dict:
    rows = result["rows_total"]
    ratios = result.get("ratios", {})
    checks: dict[str, bool] = {}
    if "pipeline_vs_floor" in ratios:
        checks["pipeline >= 1/3 floor"] = ratios["pipeline_vs_floor"] >= TARGETS["pipeline_vs_floor_min"]
    if "pipeline_vs_peer" in ratios:
        checks["pipeline faster than peer"] = ratios["pipeline_vs_peer"] > TARGETS["pipeline_vs_peer_min"]
    if rows >= 5_000_000 and result.get("pipeline"):
        checks["peak RSS < 2 GiB"] = result["pipeline"]["peak_rss_bytes"] < TARGETS["peak_rss_gib_max_5m"] * GIB
    if rows >= 5_000_000 and result.get("republish"):
        checks["republish < 30 s (work)"] = result["republish"]["work_s"] < TARGETS["republish_s_max_5m"]
        checks["republish < 30 s (wall, start-up included)"] = (
            result["republish"]["wall_s"] < TARGETS["republish_s_max_5m"]
        )
    for name, r in (result.get("hostile") or {}).items():
        checks[f"peak RSS < 2 GiB ({name.replace('_', ' ')})"] = (
            r["peak_rss_bytes"] < TARGETS["peak_rss_gib_max_5m"] * GIB
        )
    if "validate_share" in ratios and rows <= 1_000_000:
        checks["validate <= 1/4 of pipeline"] = ratios["validate_share"] <= TARGETS["validate_share_max_1m"]
    return {"checked": checks, "missed": [k for k, ok in checks.items() if not ok]}


# ------------------------------------------------------------------------------------------------ main


WORK_STAGES = ("claim", "read_map", "harmonise", "validate", "stage", "report", "publish")


def validation_shares(stages: dict[str, float], wall_s: float) -> dict[str, float]:
    """Validation's share of the pipeline's work, in stage-seconds over stage-seconds.

    Per-file stages are summed over files that run side by side, so they are set against the sum of all
    stages, not against wall time: that would count validation once per worker thread (two threads here
    would allow up to 200 %). Files take turns in GX (it is not thread-safe); time waiting for another
    file's GX is no one's work and is left out of both. `validate_vs_wall` keeps the wall-time ratio."""
    wait = stages.get("gx_wait", 0.0)
    work = sum(stages.get(k, 0.0) for k in WORK_STAGES) - wait
    validate = stages.get("validate", 0.0) - wait
    if work <= 0:
        return {}
    return {
        "validate_share": round(validate / work, 3),
        "gx_share": round(stages.get("gx", 0.0) / work, 3),
        "validate_vs_wall": round(validate / wall_s, 3) if wall_s else 0.0,
    }


def cpu_shares(cpu_stages: dict[str, float]) -> dict[str, float]:
    """Validation's share of the pipeline's CPU seconds, from a run with one file at a time: nothing is
    counted twice and no one waits for GX, so this is the plainest form of the quarter target."""
    work = sum(cpu_stages.get(k, 0.0) for k in WORK_STAGES)
    return {"validate_cpu_share": round(cpu_stages.get("validate", 0.0) / work, 3)} if work > 0 else {}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipelines.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="demo rows over all agencies (default 1M)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is reported")
    p.add_argument("--out", type=Path, default=Path("data/bench"), help="bench folder (inputs, homes, results)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--prefect-home", type=Path, default=None, help="default: <out>/prefect-home (kept)")
    p.add_argument("--skip", action="append", default=[],
                   choices=["floor", "bound", "peer", "pipeline", "cpu", "republish", "hostile", "small", "startup"],
                   help="leave a measurement out (repeatable)")  # fmt: skip
    p.add_argument("--dask", action="store_true", help="also run the whole demo inbox: threads, Dask 1 and 2 workers")
    p.add_argument("--dask-repeat", type=int, default=1)
    p.add_argument("--keep-homes", action="store_true", help="keep the pipeline's data roots for inspection")
    p.add_argument("--profile", action="store_true",
                   help="also profile one run with py-spy (files one at a time): seconds by stage and function, "
                        "and a flame graph file")  # fmt: skip
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    return p.parse_args(argv)


def run_profile(
    inbox: Path, agencies: list[str], out: Path, rows: int, env: dict[str, str], rate: int, measured_rows: int
) -> dict:
    """One `sdmi run` under py-spy (`measured_rows` read), summed by stage and function (`pipelines.profiling`)."""
    from pipelines import profiling

    home = out / "homes" / "profile"
    shutil.rmtree(home, ignore_errors=True)
    make_inbox(inbox, home, agencies)
    flame = out / f"profile-{rows}.txt"
    run = run_pipeline(
        home, env, {"SDMI_WORKERS": "1"}, prefix=profiling.record_command(flame, rate), rows=measured_rows
    )
    shutil.rmtree(home, ignore_errors=True)
    summary = profiling.summarise(flame.read_text(encoding="utf-8"), rate)
    return {**summary, "file": str(flame), "work_s": run["work_s"], "wall_s": run["wall_s"]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    prefect_home = (args.prefect_home or out / "prefect-home").resolve()
    prefect_home.mkdir(parents=True, exist_ok=True)
    env = base_env(prefect_home)
    key_file = out / "bench-worker.key"
    if not key_file.exists():
        from pipelines.keys import create_key_file

        create_key_file(key_file)
    env["SDMI_KEY_FILE"] = str(key_file)

    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    inputs = out / f"input-{args.rows}"
    print(f"bench: generating {args.rows:,} demo rows in {inputs} ...", flush=True)
    meta = generate_inputs(inputs, args.rows, args.seed)
    inbox = inputs / "inbox"
    agencies = utf8_csv_agencies()
    files = sorted(f for a in agencies for f in (inbox / a).glob("*.csv"))
    if not files:
        raise SystemExit("no UTF-8 CSV files in the demo inbox")
    if len(agencies) != 1:
        raise SystemExit(f"the peer reads one folder; UTF-8 CSV agencies: {agencies}")
    measured_rows = sum(n for k, n in meta["rows_by_file"].items() if k.split("/")[0] in agencies)
    result: dict[str, Any] = {
        "rows_total": args.rows,
        "measured_rows": measured_rows,
        "agencies": agencies,
        "files": [f"{f.parent.name}/{f.name}" for f in files],
        "bytes": sum(f.stat().st_size for f in files),
        "repeat": args.repeat,
        "generate_s": meta.get("generate_s"),
        "rows_by_file": meta["rows_by_file"],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "python": platform.python_version(),
            "load_before": load_before,
        },
        "versions": _versions(),
    }

    # Warm-up: Prefect's first flow in a new PREFECT_HOME migrates its database (~14 s); not the pipeline's cost.
    warm_home = out / "homes" / "warmup"
    make_inbox(inbox, warm_home, [])
    print("bench: warming up Prefect (empty inbox) ...", flush=True)
    result["prefect_warmup_wall_s"] = run_pipeline(warm_home, env, publish=False, rows=0)["wall_s"]
    shutil.rmtree(warm_home, ignore_errors=True)

    floors, bounds, peers, pipes, cpus = [], [], [], [], []
    partial = out / f"bench-{args.rows}.partial.json"
    nik, identifiers = identifier_headers(agencies[0], files)

    def checkpoint() -> None:  # a long run that is stopped still leaves its figures so far
        runs = {"floor_runs": floors, "bound_runs": bounds, "peer_runs": peers, "pipeline_runs": pipes,
                "cpu_runs": cpus}  # fmt: skip
        partial.write_text(json.dumps({**result, **runs}, indent=1, default=str) + "\n", encoding="utf-8")

    last_home: Path | None = None
    for i in range(args.repeat):  # interleaved, so a noisy neighbour hits all three alike
        if "floor" not in args.skip:
            floors.append(run_floor(files, out / "work" / "floor"))
            print(f"bench: [{i + 1}/{args.repeat}] floor    {_rate(floors[-1]['rows_per_s'])}", flush=True)
            checkpoint()
        if "bound" not in args.skip:
            bounds.append(run_bound(files, out / "work" / "bound", nik, identifiers))
            print(f"bench: [{i + 1}/{args.repeat}] bound    {_rate(bounds[-1]['rows_per_s'])}", flush=True)
            checkpoint()
        if "peer" not in args.skip:
            peers.append(run_peer(inbox / agencies[0], "*.csv", out / "work" / "peer", env))
            print(f"bench: [{i + 1}/{args.repeat}] peer     {_rate(peers[-1]['rows_per_s'])}", flush=True)
            checkpoint()
        if "pipeline" not in args.skip:
            home = out / "homes" / f"pipeline-{i}"
            if last_home and last_home != home and not args.keep_homes:
                shutil.rmtree(last_home, ignore_errors=True)
            make_inbox(inbox, home, agencies)
            pipes.append(run_pipeline(home, env, {"SDMI_KEY_FILE": str(key_file)}, rows=measured_rows))
            last_home = home
            print(
                f"bench: [{i + 1}/{args.repeat}] pipeline {_rate(pipes[-1]['rows_per_s'])} "
                f"(flow {pipes[-1]['work_s']:.1f} s, wall {pipes[-1]['wall_s']:.1f} s)",
                flush=True,
            )
            checkpoint()
        if "cpu" not in args.skip:  # the same run with one file at a time: CPU seconds by stage
            home = out / "homes" / f"cpu-{i}"
            make_inbox(inbox, home, agencies)
            cpus.append(
                run_pipeline(home, env, {"SDMI_KEY_FILE": str(key_file), "SDMI_WORKERS": "1"}, rows=measured_rows)
            )
            shutil.rmtree(home, ignore_errors=True)
            print(f"bench: [{i + 1}/{args.repeat}] CPU budget {cpus[-1]['cpu_stages']}", flush=True)
            checkpoint()
    if floors:
        result["floor"] = summarise(floors)
    if bounds:
        result["bound"] = summarise(bounds)
    if peers:
        result["peer"] = summarise(peers)
    if pipes:
        result["pipeline"] = summarise(pipes)
    if cpus:
        result["one_file_at_a_time"] = summarise(cpus)
    ratios: dict[str, float] = {}
    if floors and pipes:
        ratios["pipeline_vs_floor"] = round(result["pipeline"]["rows_per_s"] / result["floor"]["rows_per_s"], 3)
    if floors and bounds:
        ratios["bound_vs_floor"] = round(result["bound"]["rows_per_s"] / result["floor"]["rows_per_s"], 3)
    if peers and pipes:
        ratios["pipeline_vs_peer"] = round(result["pipeline"]["rows_per_s"] / result["peer"]["rows_per_s"], 3)
    # CPU seconds for the same rows: robust to noisy neighbours on a shared machine, unlike wall time
    if floors and pipes and result["pipeline"]["cpu_s"]:
        ratios["pipeline_vs_floor_cpu"] = round(result["floor"]["cpu_s"] / result["pipeline"]["cpu_s"], 3)
    if peers and pipes and result["pipeline"]["cpu_s"]:
        ratios["pipeline_vs_peer_cpu"] = round(result["peer"]["cpu_s"] / result["pipeline"]["cpu_s"], 3)
    if pipes and result["pipeline"]["work_s"]:
        ratios.update(validation_shares(result["pipeline"]["stages"], result["pipeline"]["work_s"]))
    if cpus and result["one_file_at_a_time"].get("cpu_stages"):
        ratios.update(cpu_shares(result["one_file_at_a_time"]["cpu_stages"]))
    result["ratios"] = ratios

    if args.profile:
        try:
            result["profile"] = run_profile(inbox, agencies, out, args.rows, env, args.profile_rate, measured_rows)
            print(f"bench: profile written to {result['profile']['file']}", flush=True)
        except (OSError, RuntimeError) as exc:  # reported, not fatal: the other figures still stand
            result.setdefault("failures", []).append(f"profile: {str(exc)[-1500:]}")
            print(f"bench: profile FAILED: {str(exc)[-300:]}", flush=True)

    if last_home is not None and "republish" not in args.skip:
        reps = []
        for i in range(args.repeat):
            try:
                reps.append(run_republish(last_home, env))
            except RuntimeError as exc:  # reported, not fatal: the other figures still stand
                result.setdefault("failures", []).append(str(exc)[-1500:])
                print(f"bench: [{i + 1}/{args.repeat}] republish FAILED: {str(exc)[-300:]}", flush=True)
                continue
            print(f"bench: [{i + 1}/{args.repeat}] republish {reps[-1]['wall_s']:.1f} s", flush=True)
        if reps:
            result["republish"] = {**summarise(reps), "records": reps[-1]["records"]}
        empties = []
        for i in range(args.repeat):
            empties.append(run_empty(last_home, env))
            print(f"bench: [{i + 1}/{args.repeat}] empty inbox {empties[-1]['wall_s']:.1f} s", flush=True)
        result["empty_inbox"] = summarise(empties)
    if last_home is not None and not args.keep_homes:
        shutil.rmtree(last_home, ignore_errors=True)

    if "hostile" not in args.skip:
        hostile = hostile_inputs(files[0], agencies[0], inputs / "hostile")
        national = meta["rows_by_file"][f"{agencies[0]}/{files[0].name}"]
        expected = {"all_quarantined": national, "long_notes": min(national, HOSTILE_NOTES_ROWS)}
        result["hostile"] = run_hostile(hostile, agencies[0], out, env, expected)
        for name, r in result["hostile"].items():
            print(f"bench: hostile {name}: {r['wall_s']:.1f} s, peak {_gib(r['peak_rss_bytes'])}", flush=True)

    if "small" not in args.skip:
        result["small"] = run_small(small_inputs(files[0], inputs / "small"), agencies[0], out, env)
        print(f"bench: small files: {result['small']['per_file_s'].get('files', 0):.2f} s a file", flush=True)

    if "startup" not in args.skip:
        from pipelines.startup import measure_startup

        home = out / "homes" / "startup"
        shutil.rmtree(home, ignore_errors=True)
        result["startup"] = measure_startup(home, os.environ.get("PREFECT_API_URL"))
        shutil.rmtree(home, ignore_errors=True)
        print(f"bench: start-up {json.dumps(result['startup'])}", flush=True)

    if args.dask:
        result["dask"] = {}
        for name, extra in (
            ("threads", {"SDMI_TASK_RUNNER": "threads"}),
            ("dask-1", {"SDMI_TASK_RUNNER": "dask", "SDMI_WORKERS": "1"}),
            ("dask-2", {"SDMI_TASK_RUNNER": "dask", "SDMI_WORKERS": "2"}),
        ):
            runs = []
            for _ in range(args.dask_repeat):
                home = out / "homes" / f"full-{name}"
                make_inbox(inbox, home, None)
                runs.append(run_pipeline(home, env, extra, rows=args.rows))  # every agency: all the rows
                shutil.rmtree(home, ignore_errors=True)
            result["dask"][name] = summarise(runs)
            print(f"bench: whole inbox, {name}: flow {result['dask'][name]['work_s']:.1f} s", flush=True)
        if result["dask"]["dask-2"]["work_s"]:
            result["ratios"]["dask_2_vs_1_speedup"] = round(
                result["dask"]["dask-1"]["work_s"] / result["dask"]["dask-2"]["work_s"], 3
            )

    result["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    result["targets"] = check_targets(result)
    text = table_text(result)
    result["table"] = text
    print()
    print(text)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (out / f"bench-{args.rows}.json", out / f"bench-{args.rows}-{stamp}.json"):
        path.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    partial.unlink(missing_ok=True)
    print(f"\nbench: results in {out / f'bench-{args.rows}.json'}")
    return result


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("duckdb", "pyarrow", "pandas", "great_expectations", "prefect", "dlt", "prefect-dask"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


if __name__ == "__main__":
    try:
        main()
    except RunFailed as exc:  # a failed run is no figure: say which and why, and stop
        raise SystemExit(f"bench: stopped, a measured run failed: {exc}") from None

"""`sdmi status` and `sdmi quarantine`: read-only views of the ledger, staging and warehouse."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import duckdb
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines import config, settings
from pipelines import publish as pub
from pipelines.inbox import files_in_subfolders, not_onboarded_warning, subfolders_warning, waiting_files
from pipelines.ledger import FINAL, IN_FLIGHT, Ledger
from pipelines.locking import writer_lock
from pipelines.problems import ConfigError
from pipelines.settings import Zones

STUCK_AFTER = timedelta(minutes=30)


def collect(zones: Zones) -> dict:
    info: dict = {"home": str(zones.home), "files": {}, "stuck": [], "inbox": {}, "release": None, "quarantine": 0}
    if zones.ledger_db.exists():
        ledger = Ledger(zones.ledger_db)
        by = Counter((e.agency, e.status) for e in ledger.files())
        for (agency, status), n in sorted(by.items()):
            info["files"].setdefault(agency, {})[status] = n
        dups = Counter(r["agency"] for r in ledger.receipts() if r["outcome"] == "duplicate")
        for agency, n in dups.items():
            info["files"].setdefault(agency, {})["duplicate"] = n
        now = datetime.now(UTC)
        for e in ledger.files(status=IN_FLIGHT):
            info["stuck"].append(
                {"agency": e.agency, "file": e.file_name, "status": e.status, "attempts": e.attempts,
                 "since": e.received_at.isoformat(), "old": now - e.received_at > STUCK_AFTER}
            )  # fmt: skip
        staged = ledger.files(status=("processed", "held"))
        # rows still held back (a row sent again counted once, a corrected one no more); the per-file sum beside it
        info["quarantine"] = pub.quarantine_backlog(zones, staged, _record_ids()).num_rows
        info["quarantined_in_files"] = sum(e.rows_quarantined or 0 for e in staged)
        info["last_runs"] = ledger.runs(3)
    try:
        inbox = read_inbox(zones)
        info["not_onboarded"] = {a: len(inbox.not_onboarded_files[a]) for a in inbox.not_onboarded}
        waiting = inbox.waiting
    except ConfigError:  # an agency's YAML does not load: which folders are onboarded is unknown here
        waiting, info["not_onboarded"] = waiting_files(zones), {}
    for agency, paths in waiting.items():
        info["inbox"][agency] = len(paths)
    info["in_subfolders"] = files_in_subfolders(zones)  # never read: "waiting in inbox: none" is not the whole story
    info["release"] = collect_release(zones)
    newest = newest_release(zones)
    info["newest_release"] = newest.release_id if newest else None
    info["rolled_back"] = bool(info["release"] and newest and info["release"]["id"] != newest.release_id)
    try:
        info["publish_pending"] = publish_needed(zones)
    except ConfigError:  # an agency's YAML does not load: unknown here, `sdmi run` names the file (exit 3)
        info["publish_pending"] = None
    return info


class Inbox(NamedTuple):
    waiting: dict[str, list[Path]]  # files waiting in the folders of onboarded agencies, per agency
    not_onboarded: list[str]  # folders holding files but no agency mapping: nothing there is read
    in_subfolders: dict[str, int]  # "<agency>/<sub-folder>": files in it, at any depth; never read
    not_onboarded_files: dict[str, list[Path]]  # the files in those folders


def read_inbox(zones: Zones) -> Inbox:
    """The inbox as a run sees it: what it will claim, which agency folders it must leave alone, and the
    files in sub-folders of agency folders, which it does not read."""
    known = config.agencies()
    found = waiting_files(zones)
    return Inbox(
        {agency: paths for agency, paths in found.items() if agency in known},
        [agency for agency in found if agency not in known],
        files_in_subfolders(zones),
        {agency: paths for agency, paths in found.items() if agency not in known},
    )


def newest_release(zones: Zones) -> pub.ReleaseInfo | None:
    """The release built last (by its manifest's creation time), whether or not it is current."""

    def built_at(release: pub.ReleaseInfo) -> tuple[datetime, str]:
        try:
            return datetime.fromisoformat(release.created_at or ""), release.release_id
        except ValueError:
            return datetime.min.replace(tzinfo=UTC), release.release_id

    return max(pub.list_releases(zones), key=built_at, default=None)


def publish_needed(zones: Zones) -> bool:
    """True when a publish would build a release unlike the newest one built.

    The newest release, not the current one: after `sdmi rollback` the current release is an older one on
    purpose, and it stays current until something changes what a release would hold (a new file finished, a
    file processed again (a replay, under `sdmi serve` too), an agency's priority, the schema version; a run
    that processed files publishes anyway) or `sdmi publish` rebuilds on request. Whether the newest release
    holds what a publish would build now is read from its id: `publish._release_id` ends with a hash of the
    batches (id, file hash, order, status, attempts), the agencies' priorities, the schema version and the
    publish parameters. The parameters are those the newest release recorded: `publish_flow` passes none, so
    they change only with the code. A missing or half-switched current release is published again, as before.
    While rolled back, files rejected or held since do not count: they would publish no record.
    """
    if not zones.ledger_db.exists():
        return False
    if zones.current.exists() and not zones.analyst_db.exists():
        return True  # a crash between the two symlink switches: `current` is new, sdmi.duckdb missing
    finished = Ledger(zones.ledger_db).files(status=FINAL)
    if not (zones.current / "manifest.json").exists():
        return bool(finished)
    newest = newest_release(zones)
    if newest is None:
        return True  # `current` is not one of the releases: make a proper one
    manifest = json.loads((newest.path / "manifest.json").read_text(encoding="utf-8"))
    # `_release_id` reads a batch's id, file hash, order, status and attempts (a replay that leaves the status as
    # it was still restaged the batch): a ledger entry has the same five fields.
    # An id is "<time built>-<hash of the inputs>"; the time is not compared.
    agencies, parameters = config.agencies(), manifest.get("parameters") or {}

    def differs(batches: list) -> bool:
        return pub._release_id(batches, agencies, parameters).rsplit("-", 1)[1] != newest.release_id.rsplit("-", 1)[1]

    if not differs(finished):
        return False
    if newest.release_id == (pub.current_release(zones) or ""):
        return True
    # Rolled back: a file rejected or held since adds a line to data_quality, not a record; only what analysts'
    # tables would hold ends the rollback. The newest release's own rejected and held batches stand in for today's.
    built = [_BuiltBatch(**{k: b[k] for k in _BuiltBatch._fields if k in b}) for b in manifest.get("batches", [])]
    return differs([e for e in finished if e.status == "processed"] + [b for b in built if b.status != "processed"])


class _BuiltBatch(NamedTuple):
    """A batch as a release's manifest lists it: the fields `publish._release_id` reads."""

    batch_id: str
    sha256: str
    seq: int
    status: str
    attempts: int = 0  # manifests written before attempts counted


def idle_summary(zones: Zones, publish: bool, wait_seconds: float = 0) -> dict | None:
    """A run's summary when there is provably nothing to do, else None.

    Nothing to do: no file of an onboarded agency waiting in the inbox, none in flight, and (when publishing)
    a current release and nothing a publish would change (`publish_needed`: a rolled-back release stays). Then
    `sdmi run` skips Prefect entirely (its import and its temporary server cost seconds to tens of seconds);
    the writer lock is still taken, so a run while another holds it still exits 4. Keys match
    flows.RunSummary.as_dict(); folders of agencies not onboarded are named as a run names them.
    """
    with writer_lock(zones, wait_seconds):
        inbox = read_inbox(zones)
        if inbox.waiting:
            return None
        if zones.ledger_db.exists() and Ledger(zones.ledger_db).files(status=IN_FLIGHT):
            return None
        release = collect_release(zones)
        if publish and (release is None or publish_needed(zones)):
            return None
        from pipelines import report

        if report.index_stale(zones.reports):  # a run stopped before it wrote the agencies' index pages
            report.write_index(zones.reports)
    counts = (release or {}).get("counts") or {}
    summary: dict = dict.fromkeys(
        ("received", "duplicates", "processed", "held", "rejected", "errors", "unstable", "rows_read",
         "rows_accepted", "rows_held", "rows_quarantined", "rows_warned", "exit_code"), 0,
    )  # fmt: skip
    summary.update(
        rows_published=counts.get("placement_records"),
        placements_published=counts.get("placements"),
        release_id=(release or {}).get("id"),
        publish_failed=None,
        not_onboarded=inbox.not_onboarded,
        in_subfolders=inbox.in_subfolders,
        files=[],
        timings={"claim": 0.0, "total": 0.0},
        idle=True,
    )
    return summary


def collect_release(zones: Zones) -> dict | None:
    manifest = zones.current / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text(encoding="utf-8"))
    return {
        "id": data.get("release_id"),
        "created_at": data.get("created_at"),
        "counts": data.get("row_counts") or data.get("counts"),
    }


def render(info: dict, console: Console) -> None:
    table = Table(title=f"SDMI status — {info['home']}")
    statuses = ["processed", "held", "rejected", "duplicate", "claimed", "archived"]
    table.add_column("agency / instansi")
    for s in statuses:
        table.add_column(s, justify="right")
    for agency, counts in info["files"].items():
        table.add_row(agency, *[str(counts.get(s, 0)) for s in statuses])
    console.print(table)
    rel = info["release"]
    console.print(f"current release: {rel['id']} at {rel['created_at']}" if rel else "no release published yet")
    if rel and rel.get("counts"):
        console.print("  " + ", ".join(f"{k}={v}" for k, v in rel["counts"].items()))
    if info.get("rolled_back"):
        until = (
            (
                "ada perubahan sejak itu, publikasi berikutnya membuat rilis baru",
                "something changed since, the next publish makes a new release",
            )
            if info.get("publish_pending")
            else (
                "tetap begitu sampai ada data baru atau `sdmi publish`",
                "it stays so until new data or `sdmi publish`",
            )
        )
        console.print(
            f"[yellow]Gudang data dikembalikan (rollback) dari rilis terbaru {info['newest_release']}; {until[0]}. / "
            f"The warehouse was rolled back from the newest release {info['newest_release']}; {until[1]}.[/yellow]"
        )
    elif info.get("publish_pending"):
        console.print(
            "[yellow]Berkas selesai (atau konfigurasi berubah) sejak rilis saat ini: publikasi berikutnya "
            "merilisnya. / Files finished (or configuration changed) since the current release: the next publish "
            "releases them.[/yellow]"
        )
    console.print(
        f"baris dalam karantina (belum diperbaiki) / rows in quarantine (not yet fixed): {info['quarantine']}"
    )
    if info.get("quarantined_in_files", info["quarantine"]) != info["quarantine"]:
        console.print(
            f"  jumlah per berkas / per-file sum: {info['quarantined_in_files']} (baris yang dikirim ulang dihitung "
            "di setiap berkas, yang sudah diperbaiki juga / a row sent again counts in every file, a fixed one too)"
        )
    waiting = ", ".join(f"{a}: {n}" for a, n in info["inbox"].items()) or "none"
    console.print(f"waiting in inbox: {waiting}")
    if info.get("not_onboarded"):
        folders = [f"{agency} ({n})" for agency, n in info["not_onboarded"].items()]
        console.print(f"[yellow]{escape(not_onboarded_warning(folders))}[/yellow]")
    if info.get("in_subfolders"):
        console.print(f"[yellow]{escape(subfolders_warning(info['in_subfolders']))}[/yellow]")
    for s in info["stuck"]:
        console.print(f"[yellow]in progress{' (stuck?)' if s['old'] else ''}: {s['agency']}/{s['file']} "
                      f"{s['status']}, attempts {s['attempts']}[/yellow]")  # fmt: skip


def _record_ids() -> dict[str, list[str]]:
    """Each agency's record-id headers, which follow a quarantined row across files. An agency whose YAML does
    not load has none here: its quarantined rows are then counted as rows without a record id."""
    try:
        return {code: cfg.record_id for code, cfg in config.agencies().items()}
    except ConfigError:
        found = {}
        for path in sorted(settings.AGENCIES_DIR.glob("*.yaml")):
            try:
                found[path.stem] = config.load_agency_file(path).record_id
            except ConfigError:
                continue
        return found


def quarantine_summary(zones: Zones, agency: str | None = None) -> list[dict]:
    """Rows still held back (`publish.quarantine_backlog`: a row sent again counted once, where it was last
    quarantined; a row a later file got accepted no more), by agency and rule: rows, and the files they are in."""
    if not zones.ledger_db.exists():
        return []
    entries = Ledger(zones.ledger_db).files(status=("processed", "held"), agency=agency)
    backlog = pub.quarantine_backlog(zones, entries, _record_ids())
    paths = sorted({str(zones.staging / b / "issues.parquet") for b in backlog["batch_id"].to_pylist()})
    if not paths:
        return []
    con = duckdb.connect()
    try:
        con.register("backlog", backlog)
        rows = con.execute(
            "SELECT q.agency, i.rule_id, count(DISTINCT (q.batch_id, q.source_row)) AS n, "
            "count(DISTINCT q.batch_id) AS files "
            "FROM read_parquet($p, filename = true) i "
            "JOIN backlog q ON q.batch_id = split_part(i.filename, '/', -2) AND q.source_row = i.source_row "
            "WHERE i.severity = 'critical' GROUP BY ALL",
            {"p": paths},
        ).fetchall()
    finally:
        con.close()
    out = [{"agency": a, "rule_id": rule, "rows": n, "files": files} for a, rule, n, files in rows]
    return sorted(out, key=lambda r: (r["agency"], -r["rows"], r["rule_id"]))

"""Publish: write-audit-publish of the analyst warehouse from the staged batches.

A release is built aside in `warehouse/releases/.building-<id>/`, audited (SQL audits in `sql/audits/` and a GX
suite on `placement_records`), renamed to `releases/<id>/`, and only then made current by renaming a new symlink
over `warehouse/current`. The pipeline never writes a DuckDB file an analyst may have open: a connection opened
before the switch keeps reading its release, one opened after reads the new one. All record work is DuckDB SQL
over the staged Parquet; Python only handles the small aggregates of the open data.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import dictionary, faults, keys, settings
from pipelines.config import AgencyConfig
from pipelines.problems import CRITICAL
from pipelines.schema import load_schema
from pipelines.settings import Zones, fsync_dir

TOTAL = "TOTAL"
UNKNOWN = "UNKNOWN"
RELEASE_ID = re.compile(r"^\d{8}T\d{9}Z-[0-9a-f]{8}$")
DEFAULT_PRIORITY = 1000  # agencies missing from the mapping lose every tie

CODELIST_TABLES = {
    "countries": ("Negara (ISO 3166-1).", "Countries (ISO 3166-1)."),
    "provinces": ("Provinsi (kode Kemendagri).", "Provinces (Kemendagri codes)."),
    "regencies": ("Kabupaten/kota (kode Kemendagri).", "Regencies and cities (Kemendagri codes)."),
    "occupations": ("Jabatan (ISCO-08 / KBJI 2014).", "Occupations (ISCO-08 / KBJI 2014)."),
    "education_levels": ("Tingkat pendidikan.", "Education levels."),
    "marital_status": ("Status perkawinan.", "Marital status."),
    "sectors": ("Sektor (formal / informal).", "Sectors (formal / informal)."),
    "placement_schemes": ("Skema penempatan.", "Placement schemes."),
    "sex": ("Jenis kelamin.", "Sex."),
}
CODELIST_COLUMNS = {
    "code": ("Kode.", "Code."),
    "name_id": ("Nama (bahasa Indonesia).", "Name (Indonesian)."),
    "name_en": ("Nama (bahasa Inggris).", "Name (English)."),
    "variants": ("Ejaan lain yang dikenali.", "Known spelling variants."),
}


@dataclass(frozen=True)
class BatchRef:
    """One batch (file) of the ledger; `seq` orders batches, a later one supersedes an earlier one."""

    batch_id: str
    agency: str
    sha256: str
    file_name: str
    received_at: datetime
    seq: int
    status: str  # processed | held | rejected
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_warned: int
    attempts: int = 0  # times the file was processed: a replay restages it under the same id, hash and status


@dataclass(frozen=True)
class AuditResult:
    name: str
    offending: int
    sample: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.offending == 0 and self.error is None


@dataclass(frozen=True)
class PublishResult:
    release_id: str
    path: Path
    counts: dict[str, int]
    audits_run: list[str]
    audits_failed: list[str]
    switched: bool
    reason: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class ReleaseInfo:
    release_id: str
    path: Path
    current: bool
    created_at: str | None
    counts: dict[str, int]


class PublishError(Exception):
    """The release cannot be made (bad input or failed audit); `current` was left as it was."""


# ----------------------------------------------------------------------------------------------- helpers


def _ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise PublishError(f"not a safe SQL identifier: {name!r}")
    return name


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _release_id(batches: Sequence[BatchRef], agencies: Mapping[str, AgencyConfig], params: dict) -> str:
    """Sortable (UTC time to the millisecond) plus a short hash of what went in."""
    content = json.dumps(
        {
            "batches": sorted((b.batch_id, b.sha256, b.seq, b.status, b.attempts) for b in batches),
            "agencies": sorted((a.agency, a.priority) for a in agencies.values()),
            "schema": load_schema().schema_version,
            "params": params,
        },
        sort_keys=True,
    )
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
    return f"{stamp}-{hashlib.sha256(content.encode()).hexdigest()[:8]}"


def _symlink_replace(link: Path, target: str) -> None:
    """Point `link` at `target` atomically: a new symlink under a temp name renamed over the old one."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _batches_table(batches: Sequence[BatchRef]) -> pa.Table:
    def utc(dt: datetime) -> datetime:
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)

    return pa.table(
        {
            "batch_id": pa.array([b.batch_id for b in batches], pa.string()),
            "agency": pa.array([b.agency for b in batches], pa.string()),
            "file_name": pa.array([b.file_name for b in batches], pa.string()),
            "file_sha256": pa.array([b.sha256 for b in batches], pa.string()),
            "received_at": pa.array([utc(b.received_at) for b in batches], pa.timestamp("us", tz="UTC")),
            "seq": pa.array([b.seq for b in batches], pa.int64()),
            "status": pa.array([b.status for b in batches], pa.string()),
            "rows_read": pa.array([b.rows_read for b in batches], pa.int64()),
            "rows_accepted": pa.array([b.rows_accepted for b in batches], pa.int64()),
            "rows_quarantined": pa.array([b.rows_quarantined for b in batches], pa.int64()),
            "rows_warned": pa.array([b.rows_warned for b in batches], pa.int64()),
        }
    )


# ----------------------------------------------------------------------------------------------- build


def _load_inputs(con: duckdb.DuckDBPyConnection, zones: Zones, batches: Sequence[BatchRef]) -> int:
    """Temp views `staged_records` (accepted rows of processed batches) and `staged_issues` (the problems of
    processed and held batches: `data_quality_rules` counts, per file, the rows that broke each rule, and a held
    file's rules are why it was held); returns the number of staged records (from the files' footers).

    A rejected file has no rows and no rules: whatever an earlier processing of it left under `staging/` (a
    replay that ended rejected) is not read.

    `staged_records.rid` names a staged row for the build: the file's place in the list (high bits) and the
    row's number in the file. DuckDB's own `rowid` may change when a checkpoint compacts a table with deleted
    rows, and the build's tables are on disk."""
    schema = load_schema()
    con.register("_batches_arrow", _batches_table(batches))
    con.execute("CREATE TEMP TABLE _batches AS SELECT * FROM _batches_arrow")
    con.unregister("_batches_arrow")

    processed = [b for b in batches if b.status == "processed"]
    files = [zones.staging / b.batch_id / "accepted.parquet" for b in processed]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise PublishError(f"processed batches without accepted.parquet: {missing[:5]}")
    footers = [pq.ParquetFile(f).metadata for f in files]
    staged = sum(m.num_rows for m in footers)
    # A field the schema gained after a batch was staged is NULL in that batch (until `sdmi replay` stages it
    # again): the files are read by column name, and a field no file has yet is NULL.
    present = {name for m in footers for name in m.schema.to_arrow_schema().names}
    cols = ", ".join(
        f"CAST({f.name if f.name in present else 'NULL'} AS {f.sql_type}) AS {f.name}"
        for f in schema.published_fields()
    )
    if files:
        paths = "[" + ", ".join(_lit(str(f)) for f in files) + "]"
        con.execute(
            f"CREATE TEMP VIEW staged_records AS SELECT {cols}, "
            f"(list_position({paths}, filename)::BIGINT << 40) | file_row_number AS rid "
            f"FROM read_parquet({paths}, filename = true, file_row_number = true, union_by_name = true)"
        )
    else:
        con.register("_empty", schema.arrow_schema(published_only=True).empty_table())
        con.execute("CREATE TEMP TABLE staged_records AS SELECT *, NULL::BIGINT AS rid FROM _empty")
        con.unregister("_empty")

    issue_files = [
        (b.batch_id, zones.staging / b.batch_id / "issues.parquet")
        for b in batches
        if b.status in ("processed", "held")
    ]
    issue_files = [(bid, p) for bid, p in issue_files if p.is_file()]
    if issue_files:
        paths, mapping = _tagged_files(issue_files, "batch_id")
        con.execute(
            f"CREATE TEMP VIEW staged_issues AS SELECT m.batch_id, i.source_row, i.rule_id, i.severity, i.field "
            f"FROM read_parquet({paths}, filename = true) i JOIN ({mapping}) m ON m.f = i.filename"
        )
    else:
        con.execute(
            "CREATE TEMP TABLE staged_issues (batch_id VARCHAR, source_row BIGINT, rule_id VARCHAR, "
            "severity VARCHAR, field VARCHAR)"
        )
    return staged


def _build_reference(
    con: duckdb.DuckDBPyConnection, agencies: Mapping[str, AgencyConfig], codelists_dir: Path
) -> list[dictionary.Table]:
    """`agencies` and one dimension table per code list CSV (all VARCHAR, as written)."""
    rows = sorted((a.agency, a.name, a.kind, a.priority) for a in agencies.values())
    con.execute("CREATE TABLE agencies (code VARCHAR PRIMARY KEY, name VARCHAR, kind VARCHAR, priority INTEGER)")
    if rows:
        con.executemany("INSERT INTO agencies VALUES (?, ?, ?, ?)", rows)
    extra: list[dictionary.Table] = []
    for csv in sorted(codelists_dir.glob("*.csv")):
        name = _ident(csv.stem)
        con.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_csv({_lit(str(csv))}, all_varchar = true, header = true)"
        )
        id_, en = CODELIST_TABLES.get(name, (f"Daftar kode {name}.", f"Code list {name}."))
        cols = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        extra.append(
            dictionary.Table(
                name,
                id_,
                en,
                [
                    dictionary.Col(c, "VARCHAR", *CODELIST_COLUMNS.get(c, ("Atribut tambahan.", "Extra attribute.")))
                    for c in cols
                ],
            )
        )
    return extra


def _parquet_view(con: duckdb.DuckDBPyConnection, name: str, folder: Path, cols: Sequence[dictionary.Col]) -> None:
    """(Re)define a record table as a view over its Parquet files, typed and ordered as the catalogue says."""
    select = ", ".join(f"CAST({c.name} AS {c.sql_type}) AS {c.name}" for c in cols)
    glob = _lit(str(folder / "**" / "*.parquet"))
    source = f"read_parquet({glob}, hive_partitioning = false)"
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {select} FROM {source}")


# Database attached for the build, shared by the parallel writers, never published: in memory when the records
# fit in half the build's memory limit, else a file beside the release being built (`.scratch-<id>.duckdb`,
# removed after). In a file DuckDB keeps its tables compressed: 4M records take 0.26 GB there and stay within
# the limit. In memory they took ~1.5 GB and spilled, uncompressed, to be read back by every partition's COPY
# (the build at 5M, in-process: 22.1-22.2 -> 21.0 s, peak RSS 1.42-1.46 -> 1.18-1.23 GiB). Compressing costs,
# though: 804,831 records went into a file in 1.0-1.2 s (1.9-2.4 CPU-s), into memory in 0.35-0.42 s
# (0.7-0.8 CPU-s), where they took 387 MB.
SCRATCH = "_build"
RECORD_BYTES_IN_MEMORY = 480  # one staged record in the build's in-memory table (387 MB / 804,831 records)


def _scratch_in_memory(records: int) -> bool:
    return records * RECORD_BYTES_IN_MEMORY <= settings.publish_memory_bytes() // 2


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # DuckDB's folder name for a NULL partition value


def _partition_filter(name: str, value: int | None) -> tuple[str, str]:
    """Folder name and SQL predicate of one partition value, NULL as DuckDB's PARTITION_BY writes it."""
    if value is None:
        return f"{name}={HIVE_NULL}", f"{name} IS NULL"
    return f"{name}={int(value)}", f"{name} = {int(value)}"


def _write_partitions(con: duckdb.DuckDBPyConnection, query: str, folder: Path, cols: Sequence[dictionary.Col]) -> None:
    """Write a record table as Parquet partitioned by departure year and month (partition columns kept in the
    files so each file stands alone), in the layout of DuckDB's PARTITION_BY:
    `departure_year=Y/departure_month=M/data_0.parquet`. `query` yields `cols` in order and has a `{where}`
    placeholder. One COPY per partition, two at a time: DuckDB's PARTITION_BY writer kept one core busy and
    took about twice as long. An empty table still gets one (empty) file, so its view has a schema."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = con.execute(
        f"SELECT DISTINCT departure_year, departure_month FROM ({query.replace('{where}', 'true')})"
    ).fetchall()
    copies = []
    for year, month in parts:
        ydir, ywhere = _partition_filter("departure_year", year)
        mdir, mwhere = _partition_filter("departure_month", month)
        (folder / ydir / mdir).mkdir(parents=True, exist_ok=True)
        target = _lit(str(folder / ydir / mdir / "data_0.parquet"))
        copies.append(f"COPY ({query.replace('{where}', f'{ywhere} AND {mwhere}')}) TO {target} (FORMAT parquet)")
    _run_parallel(con, copies)
    if not parts:
        empty = ", ".join(f"NULL::{c.sql_type} AS {c.name}" for c in cols)
        con.execute(f"COPY (SELECT {empty} LIMIT 0) TO {_lit(str(folder / 'empty.parquet'))} (FORMAT parquet)")


def _remove_scratch(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def _run_parallel(con: duckdb.DuckDBPyConnection, statements: Sequence[str], workers: int = 2) -> None:
    """Run independent statements on cursors of `con` (same database and settings, own connection each),
    `workers` at a time. Many small COPYs keep both cores busy where one query alone would not."""

    def run(sql: str) -> None:
        cur = con.cursor()
        try:
            cur.execute(sql)
        finally:
            cur.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, statements))


def _build_records(con: duckdb.DuckDBPyConnection, parquet_dir: Path) -> None:
    """Latest version of each record_key: highest batch seq, then the later source row.

    The staged files are read once, into `_build.records` (with a 64-bit hash of worker and destination for
    the placement step); superseded versions are then deleted there. Only keys staged more than once need
    ranking (found with an integer hash first, ranked by the exact key).
    """
    schema = load_schema()
    names = ", ".join(f.name for f in schema.published_fields())
    cols = dictionary.record_columns(schema)
    con.execute(
        f"""CREATE TABLE {SCRATCH}.records AS
            SELECT rid, {names}, year(departure_date)::INTEGER AS departure_year,
                   month(departure_date)::INTEGER AS departure_month,
                   CASE WHEN worker_key IS NOT NULL AND destination_country IS NOT NULL
                        THEN hash(worker_key, destination_country) END AS pair_hash,
                   NULL::VARCHAR AS match_key
            FROM staged_records"""
    )
    _link_passport_only(con)
    # staged_records reads only processed batches; a row whose batch_id disagrees fails batch_rows_reconcile
    con.execute(
        f"""
        DELETE FROM {SCRATCH}.records WHERE rid IN (
            SELECT rid FROM (
                SELECT r.rid,
                       row_number() OVER (PARTITION BY r.record_key ORDER BY b.seq DESC, r.source_row DESC) AS rn
                FROM {SCRATCH}.records r JOIN _batches b USING (batch_id)
                WHERE hash(r.record_key) IN (
                    SELECT hash(record_key) FROM {SCRATCH}.records GROUP BY 1 HAVING count(*) > 1)
            ) WHERE rn > 1)
        """
    )
    select = ", ".join(c.name for c in cols)
    _write_partitions(
        con, f"SELECT {select} FROM {SCRATCH}.records WHERE {{where}}", parquet_dir / "placement_records", cols
    )
    _parquet_view(con, "placement_records", parquet_dir / "placement_records", cols)


def _link_passport_only(con: duckdb.DuckDBPyConnection) -> None:
    """A record keyed by its passport (no valid NIK: a mission's record, often) is matched as the worker whose
    NIK-keyed records carry the same passport, when they name exactly one such worker: `match_key` and
    `pair_hash` then follow that worker's key. Without it the same placement was counted once per key.

    Only passport-only records are looked up, and only the records sharing their passport are grouped: most
    records have a NIK, and the records table is the build's largest."""
    own = keys.DOCUMENT_KEY.format(key="worker_key")  # the record's worker_key is its passport's
    con.execute(
        f"""
        UPDATE {SCRATCH}.records r SET match_key = l.worker_key,
               pair_hash = CASE WHEN r.destination_country IS NOT NULL
                                THEN hash(l.worker_key, r.destination_country) END
        FROM (
            SELECT document_key, min(worker_key) AS worker_key
            FROM {SCRATCH}.records
            WHERE document_key IS NOT NULL AND document_key <> {own} AND document_key IN (
                SELECT document_key FROM {SCRATCH}.records WHERE document_key = {own})
            GROUP BY document_key HAVING count(DISTINCT worker_key) = 1
        ) l
        WHERE r.document_key = l.document_key AND r.document_key = {own.replace("worker_key", "r.worker_key")}
        """
    )


# A placement's worker: the NIK-keyed worker a passport-only record was linked to, else the record's own key.
# `placement_records.worker_key` stays the record's own key (what its agency's NIK or passport gives); a
# placement is counted under the key it was matched on, so count(DISTINCT worker_key) counts a worker once.
PLACEMENT_WORKER_KEY = "coalesce(r.match_key, r.worker_key)"


def _build_placements(con: duckdb.DuckDBPyConnection, parquet_dir: Path, match_window_days: int) -> None:
    """Gaps and islands: records of one worker and destination whose departures chain within the window
    are one placement; values come from the highest-priority agency (lowest `priority`), ties by record_key.
    Its `worker_key` is the key it was matched on (`PLACEMENT_WORKER_KEY`), not the passport key of a
    passport-only record linked to a NIK-keyed worker.

    Only records whose worker and destination may occur more than once (same 64-bit hash of the pair) go
    through the window and the group-by; a hash collision only sends a lone record the long way, where it
    still forms its own island. A lone record is its own placement (same id formula: md5 of the sorted member
    keys joined by '|'), written straight from `_build.records`. Records are joined by their `rid` there.
    `record_placement` goes straight to Parquet too, with a view over it: as a table in the DuckDB file, then
    exported, it took ~2 s more at 5M records.
    """
    schema = load_schema()
    conflicts = dictionary.conflict_fields(schema)
    window = int(match_window_days)
    con.execute(
        f"""CREATE TABLE {SCRATCH}.pairs AS
            SELECT pair_hash FROM {SCRATCH}.records WHERE pair_hash IS NOT NULL GROUP BY 1 HAVING count(*) > 1"""
    )
    con.execute(
        f"""
        CREATE TABLE {SCRATCH}.multi AS
        WITH m AS (
            SELECT r.rid, r.record_key, {PLACEMENT_WORKER_KEY} AS match_key, r.destination_country,
                   r.departure_date,
                   r.departure_year, r.departure_month, r.source_agency,
                   coalesce(a.priority, {DEFAULT_PRIORITY}) AS priority, {
            ", ".join(f"r.{f}" for f in conflicts if f != "departure_date")
        }
            FROM {SCRATCH}.records r SEMI JOIN {SCRATCH}.pairs p ON p.pair_hash = r.pair_hash
            LEFT JOIN agencies a ON a.code = r.source_agency
        ), c AS (
            SELECT *, CASE WHEN departure_date - lag(departure_date) OVER w <= {window} THEN NULL
                           ELSE rid END AS island_start
            FROM m
            WINDOW w AS (PARTITION BY match_key, destination_country ORDER BY departure_date, record_key)
        )
        SELECT * EXCLUDE (island_start), last_value(island_start IGNORE NULLS) OVER (
            PARTITION BY match_key, destination_country ORDER BY departure_date, record_key
            ROWS UNBOUNDED PRECEDING) AS gid
        FROM c
        """
    )
    conflict_list = ", ".join(f"CASE WHEN min({f}) <> max({f}) THEN '{f}' END" for f in conflicts)
    con.execute(
        f"""
        CREATE TABLE {SCRATCH}.groups AS
        SELECT
            gid,
            md5(string_agg(record_key, '|' ORDER BY record_key)) AS placement_id,
            arg_min(rid, (priority, record_key)) AS primary_rid,
            min(departure_date) AS first_departure_date,
            max(departure_date) AS last_departure_date,
            list_sort(list_distinct(list(source_agency))) AS source_agencies,
            list_sort(list(record_key)) AS source_record_keys,
            count(DISTINCT source_agency)::INTEGER AS n_sources,
            count(*)::INTEGER AS n_records,
            list_filter([{conflict_list}], lambda x: x IS NOT NULL) AS conflicting_fields
        FROM {SCRATCH}.multi
        GROUP BY gid
        """
    )
    single, multi = [], []
    own = {
        "first_departure_date": "r.departure_date",
        "last_departure_date": "r.departure_date",
        "primary_agency": "r.source_agency",
        "primary_record_key": "r.record_key",
        "source_agencies": "[r.source_agency]",
        "source_record_keys": "[r.record_key]",
        "n_sources": "1::INTEGER",
        "n_records": "1::INTEGER",
        "conflicting_fields": "[]::VARCHAR[]",
        "placement_id": "md5(r.record_key)",
    }
    from_primary = {"primary_agency": "r.source_agency", "primary_record_key": "r.record_key"}
    cols = dictionary.placement_columns(schema)
    for c in cols:
        if c.name == "worker_key":  # the worker matched on (`_link_passport_only`), as the placement was formed
            single.append(f"{PLACEMENT_WORKER_KEY} AS worker_key")
            multi.append(f"{PLACEMENT_WORKER_KEY} AS worker_key")
        elif c.name in own:
            single.append(f"{own[c.name]} AS {c.name}")
            multi.append(f"{from_primary.get(c.name, 'g.' + c.name)} AS {c.name}")
        else:
            single.append(f"r.{c.name}")
            multi.append(f"r.{c.name}")
    con.execute(
        f"""CREATE TABLE {SCRATCH}.merged AS
            SELECT {", ".join(multi)} FROM {SCRATCH}.groups g JOIN {SCRATCH}.records r ON r.rid = g.primary_rid"""
    )
    lone = f"{SCRATCH}.records r ANTI JOIN {SCRATCH}.pairs p ON p.pair_hash = r.pair_hash"
    # per partition, only that partition's matched records are set aside (a small join on the rid)
    _write_partitions(
        con,
        f"SELECT {', '.join(single)} FROM {SCRATCH}.records r "
        f"ANTI JOIN (SELECT rid FROM {SCRATCH}.multi WHERE {{where}}) m ON m.rid = r.rid WHERE {{where}} "
        f"UNION ALL SELECT * FROM {SCRATCH}.merged WHERE {{where}}",
        parquet_dir / "placements",
        cols,
    )
    _parquet_view(con, "placements", parquet_dir / "placements", cols)
    links = parquet_dir / "record_placement"
    links.mkdir(parents=True)
    con.execute(
        f"""
        COPY (SELECT r.record_key, md5(r.record_key) AS placement_id, r.source_agency FROM {lone}
              UNION ALL
              SELECT m.record_key, g.placement_id, m.source_agency
              FROM {SCRATCH}.multi m JOIN {SCRATCH}.groups g USING (gid))
        TO {_lit(str(links / "record_placement.parquet"))} (FORMAT parquet, COMPRESSION zstd)
        """
    )
    _parquet_view(con, "record_placement", links, dictionary.record_placement_columns())


class StagedBatch(Protocol):
    """What the quarantine backlog needs of a batch: a ledger entry or a BatchRef."""

    batch_id: str
    agency: str
    seq: int
    status: str


QUARANTINE_BACKLOG = "quarantine_backlog"


def _tagged_files(tagged: Sequence[tuple[int | str, Path]], tag: str) -> tuple[str, str]:
    """SQL for `read_parquet(<list>, filename = true)` over the files, and a relation (f, <tag>) to join each
    row's file name back to its tag (a batch id or number)."""
    files = "[" + ", ".join(_lit(str(p)) for _, p in tagged) + "]"
    which = " UNION ALL ".join(
        f"SELECT {_lit(str(p))} AS f, {_lit(t) if isinstance(t, str) else t} AS {tag}" for t, p in tagged
    )
    return files, which


def _quarantined_identities(
    zones: Zones, batches: Sequence[StagedBatch], record_ids: Mapping[str, Sequence[str]]
) -> pa.Table:
    """(batch, source_row, record_key) of the quarantined rows whose agency's record id is in the row: the
    `record_key` harmonise would give it (agency, ':', the id as mapping reads it). Rows without one (no record
    id in the agency's mapping, an empty cell, a batch staged without quarantined.parquet) are not here."""
    from pipelines import mapping  # the reading stages, only when a backlog is counted
    from pipelines.readers import SOURCE_ROW, normalise_header

    parts = []
    for index, b in enumerate(batches):
        path = zones.staging / b.batch_id / "quarantined.parquet"
        aliases = list(record_ids.get(b.agency) or [])
        if not aliases or not path.is_file():
            continue
        names = pq.read_schema(path).names
        header = mapping.find_header({normalise_header(n): n for n in names if n != SOURCE_ROW}, aliases)
        if header is None or SOURCE_ROW not in names:
            continue
        rows = pq.read_table(path, columns=[header, SOURCE_ROW])
        ids = mapping.blank_to_null(rows[header].cast(pa.string()))  # as `map_batch` reads source_record_id
        parts.append(
            pa.table(
                {
                    "b": pa.array(np.full(rows.num_rows, index, dtype=np.int64)),
                    "source_row": rows[SOURCE_ROW].cast(pa.int64()),
                    "record_key": pc.binary_join_element_wise(f"{b.agency}:", ids, ""),
                }
            ).filter(pc.is_valid(ids))
        )
    schema = pa.schema([("b", pa.int64()), ("source_row", pa.int64()), ("record_key", pa.string())])
    return pa.concat_tables([t.cast(schema) for t in parts]) if parts else schema.empty_table()


def _create_backlog(
    con: duckdb.DuckDBPyConnection,
    zones: Zones,
    batches: Sequence[StagedBatch],
    record_ids: Mapping[str, Sequence[str]],
) -> None:
    """TEMP TABLE `quarantine_backlog` (batch_id, agency, source_row, record_key): the quarantined rows still
    held back, the figure `sdmi status`, `sdmi quarantine` and `data_quality.rows_still_quarantined` give.

    Summing each file's quarantined rows counted a row the officer sent back still broken once per file, and a
    row sent back corrected (accepted, published) for ever. A quarantined row is known across files by its
    record (`record_key` from the agency's record id, `_quarantined_identities`): it is counted once, where it
    was last quarantined, and not at all once a later processed file accepted that record (a held file's
    rows are not published, so they fix nothing). A row without a record id (an agency whose rows are
    fingerprinted: a corrected row is another fingerprint) cannot be followed and stays counted."""
    staged = [b for b in batches if b.status in ("processed", "held")]
    issue_files = [(i, zones.staging / b.batch_id / "issues.parquet") for i, b in enumerate(staged)]
    issue_files = [(i, p) for i, p in issue_files if p.is_file()]
    con.register(
        "_backlog_batches",
        pa.table(
            {
                "b": pa.array(range(len(staged)), pa.int64()),
                "batch_id": pa.array([b.batch_id for b in staged], pa.string()),
                "agency": pa.array([b.agency for b in staged], pa.string()),
                "seq": pa.array([b.seq for b in staged], pa.int64()),
            }
        ),
    )
    identities = _quarantined_identities(zones, staged, record_ids)
    con.register("_backlog_identities", identities)
    if issue_files:
        files, which = _tagged_files(issue_files, "b")
        critical = (
            f"SELECT DISTINCT m.b, i.source_row FROM read_parquet({files}, filename = true) i "
            f"JOIN ({which}) m ON m.f = i.filename WHERE i.severity = {_lit(CRITICAL)} AND i.source_row IS NOT NULL"
        )
    else:
        critical = "SELECT NULL::BIGINT AS b, NULL::BIGINT AS source_row WHERE false"
    # accepted versions of those records in processed files after the agency's first quarantined one: only the
    # record_key column of those files is read
    first: dict[str, int] = {}
    for b in pc.unique(identities["b"]).to_pylist():
        first[staged[b].agency] = min(first.get(staged[b].agency, staged[b].seq), staged[b].seq)
    later = [b for b in staged if b.status == "processed" and b.agency in first and b.seq > first[b.agency]]
    later = [(b, zones.staging / b.batch_id / "accepted.parquet") for b in later]
    later = [(b, p) for b, p in later if p.is_file()]
    if later:
        files, which = _tagged_files([(b.seq, p) for b, p in later], "seq")
        accepted = (
            f"SELECT a.record_key, max(m.seq) AS seq FROM read_parquet({files}, filename = true) a "
            f"JOIN ({which}) m ON m.f = a.filename SEMI JOIN _backlog_identities q ON q.record_key = a.record_key "
            f"GROUP BY a.record_key"
        )
    else:
        accepted = "SELECT NULL::VARCHAR AS record_key, NULL::BIGINT AS seq WHERE false"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {QUARANTINE_BACKLOG} AS
        WITH q AS (
            SELECT c.b, c.source_row, k.record_key, s.batch_id, s.agency, s.seq
            FROM ({critical}) c JOIN _backlog_batches s USING (b)
            LEFT JOIN _backlog_identities k ON k.b = c.b AND k.source_row = c.source_row
        ), latest AS (
            SELECT * FROM q WHERE record_key IS NULL
            UNION ALL
            SELECT * FROM q WHERE record_key IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY record_key ORDER BY seq DESC, source_row DESC) = 1
        )
        SELECT l.batch_id, l.agency, l.source_row, l.record_key
        FROM latest l LEFT JOIN ({accepted}) a ON a.record_key = l.record_key
        WHERE a.seq IS NULL OR a.seq <= l.seq  -- accepted only in the same file: still a row to fix
        """
    )
    con.unregister("_backlog_batches")
    con.unregister("_backlog_identities")


def quarantine_backlog(
    zones: Zones, batches: Sequence[StagedBatch], record_ids: Mapping[str, Sequence[str]]
) -> pa.Table:
    """The quarantined rows still held back (`_create_backlog`), read from staging: batch_id, agency,
    source_row, record_key (NULL where the row has no record id)."""
    con = duckdb.connect(config=settings.DUCKDB_CONFIG)
    try:
        _create_backlog(con, zones, batches, record_ids)
        return con.sql(f"SELECT * FROM {QUARANTINE_BACKLOG} ORDER BY batch_id, source_row").to_arrow_table()
    finally:
        con.close()


def _build_quality(
    con: duckdb.DuckDBPyConnection,
    zones: Zones,
    batches: Sequence[BatchRef],
    agencies: Mapping[str, AgencyConfig],
) -> None:
    """Per file: status and counts, and rows per rule broken (counts only, never row values).

    Each file's counts are its own: a row sent again is quarantined (or accepted) in each file that holds it,
    so the sum of `rows_quarantined` over files is no backlog; `rows_still_quarantined` is (`_create_backlog`).
    Nothing of a held file is published: its rows that passed the checks are `rows_held`, not `rows_accepted`
    (read = accepted + held + quarantined for every file)."""
    con.execute(
        """
        CREATE TABLE data_quality_rules AS
        SELECT i.batch_id, b.agency, i.rule_id, min(i.severity) AS severity, min(i.field) AS field,
               count(DISTINCT i.source_row) AS rows
        FROM staged_issues i JOIN _batches b USING (batch_id)
        GROUP BY i.batch_id, b.agency, i.rule_id
        ORDER BY 1, 3
        """
    )
    _create_backlog(con, zones, batches, {a: cfg.record_id for a, cfg in agencies.items()})
    con.execute(
        f"""
        CREATE TABLE data_quality AS
        SELECT b.batch_id, b.agency, b.file_name, b.file_sha256, b.received_at, b.seq, b.status,
               b.rows_read,
               CASE WHEN b.status = 'held' THEN 0 ELSE b.rows_accepted END AS rows_accepted,
               b.rows_quarantined, b.rows_warned,
               coalesce(r.rows_by_rule, MAP {{}}::MAP(VARCHAR, BIGINT)) AS rows_by_rule,
               CASE WHEN b.status = 'held' THEN b.rows_accepted ELSE 0 END AS rows_held,
               coalesce(q.rows, 0) AS rows_still_quarantined
        FROM _batches b
        LEFT JOIN (SELECT batch_id, map(list(rule_id ORDER BY rule_id), list(rows ORDER BY rule_id)) AS rows_by_rule
                   FROM data_quality_rules GROUP BY batch_id) r USING (batch_id)
        LEFT JOIN (SELECT batch_id, count(*) AS rows FROM {QUARANTINE_BACKLOG} GROUP BY batch_id) q USING (batch_id)
        ORDER BY b.seq
        """
    )


def _comment(con: duckdb.DuckDBPyConnection, catalogue: Iterable[dictionary.Table]) -> None:
    views = {name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    for t in catalogue:  # the record tables are views over the Parquet their build step wrote
        kind = "VIEW" if t.name in views else "TABLE"
        for stmt in dictionary.comment_statements(t, kind):
            con.execute(stmt)


def _create_views(con: duckdb.DuckDBPyConnection, sql_dir: Path) -> list[str]:
    names = []
    for path in sorted((sql_dir / "views").glob("*.sql")):
        con.execute(path.read_text(encoding="utf-8"))
        names.append(path.stem)
    return names


def _document_views(
    con: duckdb.DuckDBPyConnection, views: Sequence[str], catalogue: Sequence[dictionary.Table]
) -> list[dictionary.Table]:
    """The analyst views in the data dictionary, each column with a comment. A view's SQL file comments the
    view and the columns it computes; a column named as one of the catalogue's (the first table that has it)
    takes that column's comment here, so the schema's descriptions are not written twice."""
    known: dict[str, dictionary.Col] = {}
    for table in catalogue:
        for col in table.columns:
            known.setdefault(col.name, col)
    docs = []
    for view in views:
        (comment,) = con.execute("SELECT comment FROM duckdb_views() WHERE view_name = ?", [view]).fetchone()
        cols = []
        for name, sql_type, said in con.execute(
            "SELECT column_name, data_type, comment FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [view],
        ).fetchall():
            if said:
                id_, _, en = said.partition(" / ")
                cols.append(dictionary.Col(name, sql_type, id_, en or id_))
            elif name in known:
                cols.append(dictionary.Col(name, sql_type, known[name].id, known[name].en))
            else:
                raise PublishError(f"view {view}: column {name} has no description (COMMENT ON COLUMN in its SQL file)")
        id_, _, en = (comment or "").partition(" / ")
        docs.append(dictionary.Table(view, id_, en or id_, cols))
    return docs


# ----------------------------------------------------------------------------------------------- open data


@dataclass(frozen=True)
class PublicSpec:
    """An open-data aggregate: independent pages, each a row x column table with published margins."""

    name: str
    page: tuple[str, ...]
    row: str
    col: str
    sql: str


def public_specs(sql_dir: Path | None = None) -> list[PublicSpec]:
    """Each `sql/public/*.sql` declares its dimensions in `-- page:`, `-- row:`, `-- col:` header lines."""
    specs = []
    for path in sorted((sql_dir or settings.SQL_DIR).joinpath("public").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        meta = dict(re.findall(r"^--\s*(page|row|col):[ \t]*(.*)$", text, flags=re.M))
        page = tuple(x.strip() for x in meta.get("page", "").split(",") if x.strip())
        specs.append(PublicSpec(path.stem, page, meta["row"].strip(), meta["col"].strip(), text))
    return specs


Cell = tuple[str, str]


def suppress(cells: Mapping[Cell, int], threshold: int) -> dict[Cell, str]:
    """Small-cell suppression of one page including its margins (keys with TOTAL).

    Primary: 0 < count < threshold. Secondary: while any line (a row or column of the table with its margin)
    has exactly one suppressed cell, which its visible neighbours and the margin would give away, suppress the
    smallest other cell of that line (interior cells first). Returns cell -> 'primary' | 'secondary'.
    """
    out = {c: "primary" for c, n in cells.items() if 0 < n < threshold}
    rows: dict[str, list[Cell]] = {}
    cols: dict[str, list[Cell]] = {}
    for c in cells:
        rows.setdefault(c[0], []).append(c)
        cols.setdefault(c[1], []).append(c)
    lines = [sorted(v) for v in (*rows.values(), *cols.values())]
    changed = True
    while changed:
        changed = False
        for line in lines:
            hidden = [c for c in line if c in out]
            if len(hidden) != 1:
                continue
            visible = [c for c in line if c not in out]
            if not visible:
                continue
            pick = min(visible, key=lambda c: (cells[c], TOTAL in c, c))
            out[pick] = "secondary"
            changed = True
    return out


def _public_tables(
    con: duckdb.DuckDBPyConnection, out_dir: Path, threshold: int, specs: Sequence[PublicSpec]
) -> dict[str, dict]:
    """Aggregate in DuckDB, suppress in Python (aggregates are small), write CSV and Parquet."""
    out_dir.mkdir(parents=True)
    meta = {}
    for spec in specs:
        dims = [*spec.page, spec.row, spec.col]
        agg = con.execute(spec.sql).fetchall()
        pages: dict[tuple[str, ...], dict[Cell, int]] = {}
        for rec in agg:
            *key, n = rec
            key = [UNKNOWN if v is None else str(v) for v in key]
            pg, r, c = tuple(key[: len(spec.page)]), key[-2], key[-1]
            cells = pages.setdefault(pg, {})
            for cell in ((r, c), (r, TOTAL), (TOTAL, c), (TOTAL, TOTAL)):
                cells[cell] = cells.get(cell, 0) + int(n)
        records: list[tuple] = []
        for pg in sorted(pages):
            cells = pages[pg]
            hidden = suppress(cells, threshold)
            for (r, c), n in sorted(cells.items()):
                flag = hidden.get((r, c))
                records.append((*pg, r, c, None if flag else n, flag is not None, flag))
        columns = list(zip(*records, strict=True)) if records else [[] for _ in range(len(dims) + 3)]
        table = pa.table(
            {
                **{d: pa.array(columns[i], pa.string()) for i, d in enumerate(dims)},
                "placements": pa.array(columns[len(dims)], pa.int64()),
                "suppressed": pa.array(columns[len(dims) + 1], pa.bool_()),
                "suppression": pa.array(columns[len(dims) + 2], pa.string()),
            }
        )
        con.register("_public", table)
        con.execute(f"COPY _public TO {_lit(str(out_dir / (spec.name + '.csv')))} (FORMAT csv, HEADER true)")
        con.execute(f"COPY _public TO {_lit(str(out_dir / (spec.name + '.parquet')))} (FORMAT parquet)")
        con.unregister("_public")
        meta[spec.name] = {
            "page": list(spec.page),
            "row": spec.row,
            "col": spec.col,
            "total": TOTAL,
            "unknown": UNKNOWN,
            "suppress_below": threshold,
            "rows": table.num_rows,
            "suppressed_cells": sum(1 for r in records if r[-2]),
        }
    return meta


# ----------------------------------------------------------------------------------------------- audits


def _release_columns(con: duckdb.DuckDBPyConnection, release: Path) -> None:
    """Temp table `_release_columns`: every column of every table, view, Parquet and CSV file of the release,
    so the identifier audit sees what an analyst could read."""
    con.execute(
        """
        CREATE TEMP TABLE _release_columns AS
        SELECT 'table:' || table_name AS source, column_name FROM information_schema.columns
        WHERE table_catalog = current_database() AND table_schema = 'main'
        """
    )
    parquet = sorted(release.rglob("*.parquet"))
    if parquet:
        paths = "[" + ", ".join(_lit(str(p)) for p in parquet) + "]"
        con.execute(
            f"INSERT INTO _release_columns SELECT DISTINCT 'file:' || file_name, name "
            f"FROM parquet_schema({paths}) WHERE num_children IS NULL OR name <> 'schema'"
        )
    for csv in sorted(release.rglob("*.csv")):
        header = csv.open(encoding="utf-8").readline().strip().split(",")
        con.executemany("INSERT INTO _release_columns VALUES (?, ?)", [(f"file:{csv}", h.strip('"')) for h in header])
    con.execute("CREATE TEMP TABLE _direct_identifiers (name VARCHAR)")
    con.executemany("INSERT INTO _direct_identifiers VALUES (?)", [(n,) for n in dictionary.direct_identifier_names()])


def _run_audits(con: duckdb.DuckDBPyConnection, sql_dir: Path) -> list[AuditResult]:
    results = []
    for path in sorted((sql_dir / "audits").glob("*.sql")):
        sql = path.read_text(encoding="utf-8").strip().rstrip(";")
        try:
            rows = con.execute(f"SELECT * FROM ({sql}) LIMIT 6").fetchall()
            n = rows and con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
            results.append(AuditResult(path.stem, int(n or 0), [str(r) for r in rows[:5]]))
        except duckdb.Error as exc:
            results.append(AuditResult(path.stem, 0, error=str(exc).splitlines()[0]))
    return results


def import_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401


def _on_cursor(con: duckdb.DuckDBPyConnection, fn: Callable[[duckdb.DuckDBPyConnection], AuditResult]) -> AuditResult:
    """Run `fn` on a cursor of `con` (its own connection to the same database), so it can run in a thread."""
    cur = con.cursor()
    try:
        return fn(cur)
    finally:
        cur.close()


def _gx_validate(con: duckdb.DuckDBPyConnection) -> AuditResult:
    """GX suite on the published `placement_records`, in one context and two validations.

    Keys are handed to GX as 64-bit hashes (NULL kept NULL): the same uniqueness and null checks at a
    fraction of the memory and time; a hash collision can only fail the suite, never pass a duplicate (the
    exact check is the SQL audit). A code column is handed over as its distinct values, NULL included: a
    null check on them fails exactly when it fails on the rows, without millions of strings in pandas.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    keys = con.execute(
        """
        SELECT CASE WHEN record_key IS NOT NULL THEN hash(record_key) END AS record_key,
               CASE WHEN worker_key IS NOT NULL THEN hash(worker_key) END AS worker_key
        FROM placement_records
        """
    ).df()
    codes = con.execute("SELECT DISTINCT destination_country FROM placement_records").df().astype(object)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)  # temp docs dir at INFO
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = ctx.data_sources.add_pandas("warehouse")
    expect = gx.expectations
    checks = [
        (
            "placement_records",
            keys,
            [
                expect.ExpectColumnValuesToBeUnique(column="record_key"),
                expect.ExpectColumnValuesToNotBeNull(column="record_key"),
                expect.ExpectColumnValuesToNotBeNull(column="worker_key"),
            ],
        ),
        ("placement_records_codes", codes, [expect.ExpectColumnValuesToNotBeNull(column="destination_country")]),
    ]
    failed = []
    for name, frame, expectations in checks:
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("release")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"published_{name}"))
        for exp in expectations:
            suite.add_expectation(exp)
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"published_{name}", data=batch, suite=suite))
        res = vd.run(batch_parameters={"dataframe": frame}, result_format="BOOLEAN_ONLY")
        failed += [
            f"{r.expectation_config.type}({r.expectation_config.kwargs.get('column')})"
            for r in res.results
            if not r.success
        ]
    return AuditResult("gx_placement_records", len(failed), failed)


# ----------------------------------------------------------------------------------------------- export


def _export_parquet(con: duckdb.DuckDBPyConnection, release: Path, names: Sequence[str]) -> None:
    base = release / "parquet"
    written = dictionary.record_tables()  # their build step wrote them
    for name in names:
        if name not in written:
            (base / name).mkdir(parents=True)
            con.execute(
                f"COPY {name} TO {_lit(str(base / name / (name + '.parquet')))} (FORMAT parquet, COMPRESSION zstd)"
            )


def _hash_files(release: Path) -> dict[str, dict]:
    files = sorted(p for p in release.rglob("*") if p.is_file() and p.name != "manifest.json")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        digests = list(pool.map(settings.sha256_file, files))
    return {
        str(p.relative_to(release)): {"sha256": d, "bytes": p.stat().st_size}
        for p, d in zip(files, digests, strict=True)
    }


def _write_docs(
    release: Path,
    release_id: str,
    counts: Mapping[str, int],
    extra: Sequence[dictionary.Table],
    public_meta: Mapping[str, dict],
) -> None:
    (release / "README.md").write_text(
        dictionary.dictionary_markdown(counts, extra, release_id=release_id), encoding="utf-8"
    )
    files: dict[str, list[str]] = {}
    for p in sorted((release / "parquet").rglob("*.parquet")):
        files.setdefault(p.relative_to(release / "parquet").parts[0], []).append(str(p.relative_to(release)))
    extra_res = []
    for t in extra:
        if t.name in files:
            extra_res.append(
                {
                    "name": t.name,
                    "description": dictionary.bilingual(t.id, t.en),
                    "path": files[t.name][0],
                    "format": "parquet",
                    "mediatype": "application/vnd.apache.parquet",
                    "schema": {
                        "fields": [
                            {"name": c.name, "type": "string", "description": dictionary.bilingual(c.id, c.en)}
                            for c in t.columns
                        ]
                    },
                }
            )
    for name, m in public_meta.items():
        dims = [*m["page"], m["row"], m["col"]]
        fields = [{"name": d, "type": "string"} for d in dims] + [
            {
                "name": "placements",
                "type": "integer",
                "description": "Jumlah penempatan; kosong bila disembunyikan / Placements; empty when suppressed.",
            },
            {"name": "suppressed", "type": "boolean"},
            {"name": "suppression", "type": "string", "description": "primary | secondary"},
        ]
        for fmt, media in (("csv", "text/csv"), ("parquet", "application/vnd.apache.parquet")):
            extra_res.append(
                {
                    "name": f"public_{name}_{fmt}",
                    "path": f"public/{name}.{fmt}",
                    "format": fmt,
                    "mediatype": media,
                    "description": f"Data terbuka, sel < {m['suppress_below']} disembunyikan; TOTAL = jumlah / "
                    f"Open data, cells < {m['suppress_below']} suppressed; TOTAL = margin.",
                    "schema": {"fields": fields, "missingValues": [""]},
                }
            )
    pkg = dictionary.datapackage(files, extra_res, release_id=release_id)
    (release / "datapackage.json").write_text(json.dumps(pkg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------- publish


def publish(
    zones: Zones,
    batches: Sequence[BatchRef],
    agencies: Mapping[str, AgencyConfig],
    *,
    keep: int = 5,
    match_window_days: int = 31,
    suppress_below: int = 10,
    progress: Callable[[str], None] | None = None,
    codelists_dir: Path | None = None,
    sql_dir: Path | None = None,
) -> PublishResult:
    """Build a release from the processed batches, audit it, and switch `current` to it if every audit passes.

    The caller holds the pipeline's writer lock (one publisher at a time). A failed audit leaves `current`
    untouched and keeps the release as `releases/failed-<id>/` for inspection.
    """
    started = time.perf_counter()
    settings.release_memory()  # what the files' processing freed, before the build takes its share
    say = progress or (lambda _msg: None)
    gx_import = ThreadPoolExecutor(max_workers=1)
    gx_import.submit(import_gx)  # 3-4 s of Python import overlapped with DuckDB work (which drops the GIL)
    gx_import.shutdown(wait=False)
    codelists_dir = codelists_dir or settings.CODELISTS_DIR
    sql_dir = sql_dir or settings.SQL_DIR
    zones.releases.mkdir(parents=True, exist_ok=True)
    for stale in zones.releases.glob(".building-*"):  # a crashed publish: never visible, safe to drop
        shutil.rmtree(stale, ignore_errors=True)
    for stale in zones.releases.glob(".scratch-*"):
        stale.unlink(missing_ok=True)

    params = {"match_window_days": match_window_days, "suppress_below": suppress_below}
    release_id = _release_id(batches, agencies, params)
    building = zones.releases / f".building-{release_id}"
    scratch = zones.releases / f".scratch-{release_id}.duckdb"
    final = zones.releases / release_id
    building.mkdir()
    say(f"building release {release_id}")
    counts: dict[str, int] = {}
    audits: list[AuditResult] = []
    try:
        con = duckdb.connect(
            str(building / "sdmi.duckdb"),
            config={**settings.DUCKDB_CONFIG, "memory_limit": settings.publish_memory_limit()},
        )
        try:
            con.execute("SET preserve_insertion_order = false")  # less memory and more parallel writes
            staged = _load_inputs(con, zones, batches)
            in_memory = _scratch_in_memory(staged)
            con.execute(f"ATTACH {_lit(':memory:' if in_memory else str(scratch))} AS {SCRATCH}")
            extra = _build_reference(con, agencies, codelists_dir)
            say(
                f"placement_records: latest version of each of {staged:,} staged records "
                f"(working tables {'in memory' if in_memory else 'in ' + scratch.name})"
            )
            _build_records(con, building / "parquet")
            say("placements: matching records across agencies")
            _build_placements(con, building / "parquet", match_window_days)
            con.execute(f"DETACH {SCRATCH}")  # frees the build's memory before the audits read the release
            _remove_scratch(scratch)
            _build_quality(con, zones, batches, agencies)
            views = _create_views(con, sql_dir)
            tables = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                    "AND schema_name = 'main' ORDER BY 1"
                ).fetchall()
            ]
            counts = {
                t: con.execute(f"SELECT count(*) FROM {_ident(t)}").fetchone()[0]
                for t in [*dictionary.record_tables(), *tables]
            }
            say("writing Parquet tables and open data")
            faults.point("publish.mid_build")
            _export_parquet(con, building, tables)
            public_meta = _public_tables(con, building / "public", suppress_below, public_specs(sql_dir))
            faults.point("publish.after_parquet")
            say("auditing")
            _release_columns(con, building)
            with ThreadPoolExecutor(max_workers=1) as pool:  # GX is mostly one Python thread: beside the SQL audits
                gx_result = pool.submit(_on_cursor, con, _gx_validate)
                audits = _run_audits(con, sql_dir)
                audits.append(gx_result.result())
            # The record tables become views over the release's Parquet at its final path. DuckDB binds a view
            # when it is created, so the final name briefly points at the building folder (no manifest there:
            # list_releases and switch ignore it).
            os.symlink(building.name, final)
            try:
                for name, cols in dictionary.record_tables().items():
                    _parquet_view(con, name, final / "parquet" / name, cols)
            finally:
                final.unlink()
            catalogue = [*dictionary.tables(), *extra]
            views_doc = _document_views(con, views, catalogue)
            _comment(con, [*catalogue, *views_doc])
            con.execute("CHECKPOINT")
        finally:
            con.close()
            _remove_scratch(scratch)
        _write_docs(building, release_id, counts, [*extra, *views_doc], public_meta)
        manifest = {
            "release_id": release_id,
            "created_at": datetime.now(UTC).isoformat(),
            "schema_version": load_schema().schema_version,
            "parameters": params,
            "counts": counts,
            "views": views,
            "public": public_meta,
            "audits": [asdict(a) for a in audits],
            "batches": [
                {**asdict(b), "received_at": b.received_at.isoformat(), "contributes": b.status == "processed"}
                for b in sorted(batches, key=lambda b: b.seq)
            ],
            "files": _hash_files(building),
        }
        (building / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        for p in building.rglob("*"):
            if p.is_file():
                p.chmod(0o444)  # releases are immutable; a read-write open fails loudly for non-root users
    except BaseException as exc:
        failed = zones.releases / f"failed-{release_id}"
        if building.exists():
            os.replace(building, failed)
        if isinstance(exc, duckdb.OutOfMemoryException):
            limit = settings.publish_memory_limit()
            exc = PublishError(
                f"Memori tidak cukup untuk membangun rilis (batas SDMI_PUBLISH_MEMORY={limit}); naikkan batasnya. / "
                f"Not enough memory to build the release (limit SDMI_PUBLISH_MEMORY={limit}); raise the limit."
            )
        if isinstance(exc, PublishError):
            return PublishResult(release_id, failed, counts, [], [], False, str(exc), time.perf_counter() - started)
        raise

    failed_audits = [a for a in audits if not a.passed]
    if failed_audits:
        failed = zones.releases / f"failed-{release_id}"
        os.replace(building, failed)
        reason = "; ".join(
            f"{a.name}: {a.error or f'{a.offending} offending, e.g. {a.sample[:2]}'}" for a in failed_audits
        )
        say(f"audit failed, current release unchanged: {reason}")
        return PublishResult(
            release_id,
            failed,
            counts,
            [a.name for a in audits],
            [a.name for a in failed_audits],
            False,
            reason,
            time.perf_counter() - started,
        )

    os.replace(building, final)
    fsync_dir(zones.releases)
    faults.point("publish.after_audits")
    switch(zones, release_id)
    faults.point("publish.after_switch")
    say(f"release {release_id} is current")
    prune(zones, keep)
    return PublishResult(
        release_id, final, counts, [a.name for a in audits], [], True, None, time.perf_counter() - started
    )


# ----------------------------------------------------------------------------------------------- releases


def current_release(zones: Zones) -> str | None:
    try:
        return Path(os.readlink(zones.current)).name
    except (FileNotFoundError, OSError):
        return None


def switch(zones: Zones, release_id: str) -> None:
    """Make `release_id` current: `current` -> releases/<id>, `sdmi.duckdb` -> current/sdmi.duckdb.
    Relative links keep the warehouse relocatable; each is renamed over the old one atomically."""
    target = zones.releases / release_id
    if not RELEASE_ID.match(release_id) or not (target / "manifest.json").is_file():
        raise PublishError(f"no complete release {release_id!r} in {zones.releases}")
    _symlink_replace(zones.current, f"releases/{release_id}")
    faults.point("publish.between_switches")
    if not (zones.analyst_db.is_symlink() and os.readlink(zones.analyst_db) == "current/sdmi.duckdb"):
        _symlink_replace(zones.analyst_db, "current/sdmi.duckdb")
    fsync_dir(zones.warehouse)


def list_releases(zones: Zones) -> list[ReleaseInfo]:
    """Complete releases, oldest first (ids sort by time)."""
    cur = current_release(zones)
    out = []
    if not zones.releases.is_dir():
        return out
    for p in sorted(zones.releases.iterdir()):
        if not (RELEASE_ID.match(p.name) and (p / "manifest.json").is_file()):
            continue
        m = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        out.append(ReleaseInfo(p.name, p, p.name == cur, m.get("created_at"), m.get("counts", {})))
    return out


def rollback(zones: Zones, release_id: str | None = None) -> str:
    """Switch back to `release_id`, or to the release before the current one."""
    ids = [r.release_id for r in list_releases(zones)]
    if release_id is None:
        cur = current_release(zones)
        older = [i for i in ids if cur is None or i < cur]
        if not older:
            raise PublishError("no earlier release to roll back to")
        release_id = older[-1]
    if release_id not in ids:
        raise PublishError(f"unknown release {release_id!r}; known: {ids}")
    switch(zones, release_id)
    return release_id


def _has_readers(database: Path) -> bool:
    """Whether another process has the DuckDB file open: DuckDB holds a lock on it for as long as a connection
    lasts, read-only ones included (Linux's F_GETLK asks without taking a lock; elsewhere: unknown, False)."""
    if not sys.platform.startswith("linux") or not database.is_file():
        return False
    fd = os.open(database, os.O_RDONLY)
    try:
        asked = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)  # struct flock: the whole file
        return struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, asked))[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def prune(zones: Zones, keep: int = 5) -> list[str]:
    """Delete all but the newest `keep` releases (and failed ones), never the current one, nor one an analyst
    has open: a release's tables are views over its own Parquet files, which an open connection reads again at
    every query. Such a release goes at a later prune, once nobody reads it."""
    cur = current_release(zones)
    removed = []
    ids = [r.release_id for r in list_releases(zones)]
    for rid in ids[: max(0, len(ids) - keep)]:
        if rid != cur and not _has_readers(zones.releases / rid / "sdmi.duckdb"):
            shutil.rmtree(zones.releases / rid)
            removed.append(rid)
    failed = sorted(p for p in zones.releases.glob("failed-*") if p.is_dir())
    for p in failed[: max(0, len(failed) - keep)]:
        shutil.rmtree(p)
        removed.append(p.name)
    return removed

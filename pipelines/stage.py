"""Stage: split a harmonised batch into accepted and quarantined rows, written atomically per batch.

`staging/<batch_id>/` holds accepted.parquet (published fields only, warnings in quality_flags),
issues.parquet (one row per row and rule), quarantined.parquet (the original rows, restricted) and
batch.json. The folder is built under a temporary name and renamed, so a crash never leaves half a batch.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import faults
from pipelines.schema import PlacementSchema, load_schema
from pipelines.settings import Zones, fsync_dir

ROW = "_source_row"


@dataclass(frozen=True)
class StagedCounts:
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_warned: int

    def reconciles(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined


def split(
    harmonised: pa.Table, issues: pa.Table, original: pa.Table, schema: PlacementSchema | None = None
) -> tuple[pa.Table, pa.Table, StagedCounts]:
    """Accepted rows (published fields, flagged with their warnings) and the original quarantined rows."""
    schema = schema or load_schema()
    published = [f.name for f in schema.published_fields() if f.name != "quality_flags"]
    con = duckdb.connect()
    try:
        con.register("h", harmonised)
        con.register("i", issues)
        con.register("o", original)
        con.execute(
            """CREATE TEMP TABLE per_row AS
               SELECT source_row,
                      bool_or(severity = 'critical') AS critical,
                      string_agg(DISTINCT CASE WHEN severity = 'warning' THEN rule_id END, ';'
                                 ORDER BY CASE WHEN severity = 'warning' THEN rule_id END) AS flags
               FROM i GROUP BY source_row"""
        )
        cols = ", ".join(f'h."{c}"' for c in published)
        accepted = con.sql(
            f"SELECT {cols}, p.flags AS quality_flags FROM h LEFT JOIN per_row p USING (source_row) "
            "WHERE NOT coalesce(p.critical, false) ORDER BY h.source_row"
        ).to_arrow_table()
        quarantined = con.sql(
            f"SELECT o.* FROM o JOIN per_row p ON p.source_row = o.{ROW} WHERE p.critical ORDER BY o.{ROW}"
        ).to_arrow_table()
        warned = con.execute(
            "SELECT count(*) FROM per_row WHERE NOT critical AND flags IS NOT NULL "
            "AND source_row IN (SELECT source_row FROM h)"
        ).fetchall()[0][0]
    finally:
        con.close()
    accepted = accepted.cast(schema.arrow_schema(published_only=True))
    counts = StagedCounts(harmonised.num_rows, accepted.num_rows, quarantined.num_rows, int(warned))
    if not counts.reconciles():
        raise AssertionError(f"rows do not reconcile: {counts}")  # a bug: never publish such a batch
    return accepted, quarantined, counts


def write_batch(
    zones: Zones,
    batch_id: str,
    accepted: pa.Table,
    issues: pa.Table,
    quarantined: pa.Table,
    meta: dict,
) -> Path:
    final = zones.staging / batch_id
    tmp = zones.staging / f".tmp-{batch_id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    pq.write_table(accepted, tmp / "accepted.parquet")
    pq.write_table(issues, tmp / "issues.parquet")
    pq.write_table(quarantined, tmp / "quarantined.parquet")
    (tmp / "batch.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    fsync_dir(tmp)
    faults.point("stage.mid_staging")
    if final.exists():
        old = zones.staging / f".old-{batch_id}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(zones.staging)
    return final


def clean_leftovers(zones: Zones) -> int:
    """Temporary folders of a crashed run: never read, removed at the next start."""
    removed = 0
    for path in zones.staging.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    for path in zones.staging.glob(".old-*"):
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def counts_dict(counts: StagedCounts) -> dict:
    return asdict(counts)

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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import faults, settings
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
    con = settings.scratch_duckdb()
    try:
        con.register("i", issues)
        per_row = con.sql(
            """SELECT source_row,
                      bool_or(severity = 'critical') AS critical,
                      string_agg(DISTINCT CASE WHEN severity = 'warning' THEN rule_id END, ';'
                                 ORDER BY CASE WHEN severity = 'warning' THEN rule_id END) AS flags
               FROM i GROUP BY source_row"""
        ).to_arrow_table()
    finally:
        con.close()
    # Rows are filtered in place, in Arrow: both tables come in source_row order, which a join would lose
    # (sorting every row again cost as much as the split itself).
    critical = per_row.filter(per_row["critical"])["source_row"].combine_chunks()
    failed = pc.is_in(harmonised["source_row"], value_set=critical)
    kept = harmonised.filter(pc.invert(failed)).select(published)
    flags = per_row["flags"].take(pc.index_in(kept["source_row"], value_set=per_row["source_row"].combine_chunks()))
    accepted = kept.append_column("quality_flags", flags)
    quarantined = original.filter(pc.is_in(original[ROW], value_set=critical))
    in_batch = pc.is_in(per_row["source_row"], value_set=harmonised["source_row"].combine_chunks())
    warned = pc.sum(pc.and_(pc.and_(pc.invert(per_row["critical"]), pc.is_valid(per_row["flags"])), in_batch)).as_py()
    accepted = accepted.cast(schema.arrow_schema(published_only=True))
    counts = StagedCounts(harmonised.num_rows, accepted.num_rows, quarantined.num_rows, int(warned or 0))
    if not counts.reconciles():
        raise AssertionError(f"rows do not reconcile: {counts}")  # a bug: never publish such a batch
    return accepted, quarantined, counts


MASK = "•••"  # as the officer's page masks what it must not show
RAGGED_ROW = "read.ragged_row"  # its own value says how many fields the row had: kept


def _normalised(sql: str) -> str:
    """Lower case, letters and digits only: how a value and an identifier are compared."""
    return f"regexp_replace(lower({sql}), '[^\\p{{L}}\\p{{N}}]+', '', 'g')"


def _normalised_plain(sql: str) -> str:
    """`_normalised` for every row of a chunk: lower case without the separators typed between words and digits.
    Six `replace` cost less than half the Unicode regex over 200,000 values, and the values compared per row are
    the agency's own typing of the same person."""
    out = f"lower({sql})"
    for separator in (" ", ".", "-", "/", ",", "_"):
        out = f"replace({out}, '{separator}', '')"
    return out


def _identifier_texts(
    harmonised: pa.Schema, present: list[str], normalised: Callable[[str], str] = _normalised
) -> list[str]:
    """SQL texts of the row's direct identifiers (table alias `h`), normalised as `normalised` does."""
    cleaned = {"nik", "passport_number"}  # harmonise keeps only their digits and letters: no regex needed
    texts = []
    for name in present:
        column = f'h."{name}"'
        if pa.types.is_date(harmonised.field(name).type):
            texts += [f"strftime({column}, '%d%m%Y')", f"strftime({column}, '%Y%m%d')"]
        elif name in cleaned:
            texts.append(f"lower({column})")
        else:
            texts.append(normalised(f"CAST({column} AS VARCHAR)"))
    return texts


def _holds(value_sql: str, texts: list[str]) -> str:
    """SQL: the normalised value holds one of the identifiers (of 4 characters or more)."""
    return "coalesce(" + " OR ".join(f"(length({t}) >= 4 AND contains({value_sql}, {t}))" for t in texts) + ", false)"


def free_text_fields(schema: PlacementSchema) -> list[str]:
    """Published text copied from the agency's cells as it came (no code list): where a worker's identity can be
    typed by mistake, or used as the agency's own record number."""
    return [f.name for f in schema.fields if f.origin == "mapped" and f.type == "string" and f.published
            and f.codelist is None]  # fmt: skip


def remove_identifier_copies(harmonised: pa.Table, schema: PlacementSchema | None = None) -> tuple[pa.Table, pa.Table]:
    """The harmonised rows with any free-text field that holds the same row's NIK, name, passport number or birth
    date emptied, and a warning per emptied cell (the value not quoted).

    These fields are published: a name typed into the job title column, or a NIK used as the agency's record
    number, would reach analysts. When the record number is emptied, `record_key` (agency code + record number)
    is keyed as well: by the worker key (the HMAC of the same NIK, or passport), which stays the same when the
    record is sent again, so a resent record still supersedes the one before.
    """
    from pipelines.harmonise import rule_for
    from pipelines.problems import ISSUE_SCHEMA

    schema = schema or load_schema()
    present = [f for f in schema.direct_identifiers() if f in harmonised.column_names]
    fields = [f for f in free_text_fields(schema) if f in harmonised.column_names]
    if not harmonised.num_rows or not present or not fields:
        return harmonised, ISSUE_SCHEMA.empty_table()
    # Each text normalised once, in a materialised CTE: inlined, each comparison normalised it again (5x slower).
    ids = _identifier_texts(harmonised.schema, present, _normalised_plain)
    texts = [f"t{k}" for k in range(len(ids))]
    normalised = [f"{e} AS {t}" for e, t in zip(ids, texts, strict=True)]
    normalised += [f"{_normalised_plain('h.' + _q(name))} AS {_q(name)}" for name in fields]
    hits = ", ".join(f"{_holds(_q(name), texts)} AS {_q(name)}" for name in fields)
    con = settings.scratch_duckdb()
    try:
        con.register("h", harmonised.select(["source_row", *present, *fields]))
        found = con.sql(
            f"WITH n AS MATERIALIZED (SELECT source_row, {', '.join(normalised)} FROM h) "
            f"SELECT * FROM (SELECT source_row, {hits} FROM n) WHERE {' OR '.join(map(_q, fields))}"
        ).to_arrow_table()
    finally:
        con.close()
    if not found.num_rows:
        return harmonised, ISSUE_SCHEMA.empty_table()
    issues = []
    for name in fields:
        rows = found.filter(found[name])["source_row"]
        if not len(rows):
            continue
        emptied = pc.is_in(harmonised["source_row"], value_set=rows.combine_chunks())
        column = harmonised[name]
        harmonised = harmonised.set_column(
            harmonised.schema.get_field_index(name), name, pc.if_else(emptied, pa.scalar(None, column.type), column)
        )
        if name == "source_record_id" and "record_key" in harmonised.column_names:
            keyed = pc.binary_join_element_wise(harmonised["source_agency"], "wk", harmonised["worker_key"], ":")
            harmonised = harmonised.set_column(
                harmonised.schema.get_field_index("record_key"),
                "record_key",
                pc.if_else(pc.and_(emptied, pc.is_valid(keyed)), keyed, harmonised["record_key"]),
            )
        n = len(rows)
        rule_id, severity, message_id, message_en = rule_for("stage.personal_data_in_field.{field}", name, schema)
        issues.append(
            pa.table(
                {
                    "source_row": rows,
                    "rule_id": [rule_id] * n,
                    "severity": [severity] * n,
                    "field": [name] * n,
                    "value": pa.nulls(n, pa.string()),
                    "message_id": [message_id] * n,
                    "message_en": [message_en] * n,
                },
                schema=ISSUE_SCHEMA,
            )
        )
    return harmonised, pa.concat_tables(issues)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def mask_identifier_values(issues: pa.Table, harmonised: pa.Table, schema: PlacementSchema | None = None) -> pa.Table:
    """Issues whose value holds the same row's NIK, name, passport number or birth date, with that value masked
    in the value and in both messages.

    An issue quotes the cell it is about ("unknown education_level 'Tuti Maesaroh'") and the page shows it: a
    worker's own name or passport typed into another column would be shown too. The page's redactor only knows
    the identifiers of quarantined rows; an accepted row with a warning is quoted as well. Compared without case,
    spaces or punctuation, a value containing the identifier counts (names and numbers of 4 characters or more).
    A row with more or fewer fields than the header has its values in other columns than their own (a passport
    under sex): none of its values is quoted.
    """
    schema = schema or load_schema()
    present = [f for f in schema.direct_identifiers() if f in harmonised.column_names]
    if not issues.num_rows or not present or pc.all(pc.is_null(issues["value"])).as_py():
        return issues
    hits = _holds("v.nv", _identifier_texts(harmonised.schema, present))
    con = settings.scratch_duckdb()
    try:
        con.register("i", issues.append_column("n", pa.array(range(issues.num_rows), pa.int64())))
        con.register("h", harmonised.select(["source_row", *present]))
        masked = con.sql(
            f"""
            WITH ragged AS (SELECT source_row FROM i WHERE rule_id = '{RAGGED_ROW}'),
            v AS (SELECT *, {_normalised("value")} AS nv FROM i),
            m AS (
                SELECT v.*, v.value IS NOT NULL AND v.rule_id <> '{RAGGED_ROW}'
                            AND ({hits} OR v.source_row IN (SELECT source_row FROM ragged)) AS hit
                FROM v LEFT JOIN h ON h.source_row = v.source_row
            )
            SELECT source_row, rule_id, severity, field,
                   CASE WHEN hit THEN '{MASK}' ELSE value END AS value,
                   CASE WHEN hit THEN replace(message_id, value, '{MASK}') ELSE message_id END AS message_id,
                   CASE WHEN hit THEN replace(message_en, value, '{MASK}') ELSE message_en END AS message_en
            FROM m ORDER BY n
            """
        ).to_arrow_table()
    finally:
        con.close()
    return masked.cast(issues.schema)


class BatchWriter:
    """A batch written chunk by chunk: Parquet row groups appended in a hidden folder, renamed when complete.

    Nothing is visible under `staging/<batch_id>/` until `commit`, so a crash mid-file leaves only a
    `.tmp-*` folder that the next run removes."""

    FILES = ("accepted", "issues", "quarantined")

    def __init__(self, zones: Zones, batch_id: str, schemas: dict[str, pa.Schema]) -> None:
        self.zones, self.batch_id, self.schemas = zones, batch_id, schemas
        self.tmp = zones.staging / f".tmp-{batch_id}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        self._writers = {name: pq.ParquetWriter(self.path(name), schemas[name]) for name in self.FILES}

    def path(self, name: str) -> Path:
        return self.tmp / f"{name}.parquet"

    def append(self, name: str, table: pa.Table) -> None:
        if table.num_rows:
            self._writers[name].write_table(table.cast(self.schemas[name]))

    def close(self, name: str) -> Path:
        """Finish one file early (to rewrite it); appending to it afterwards is a bug."""
        self._writers.pop(name).close()
        return self.path(name)

    def commit(self, meta: dict) -> Path:
        for name in list(self._writers):
            self.close(name)
        (self.tmp / "batch.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        fsync_dir(self.tmp)
        faults.point("stage.mid_staging")
        final = self.zones.staging / self.batch_id
        if final.exists():
            old = self.zones.staging / f".old-{self.batch_id}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(self.tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, final)
        fsync_dir(self.zones.staging)
        return final

    def abort(self) -> None:
        for name in list(self._writers):
            self.close(name)
        shutil.rmtree(self.tmp, ignore_errors=True)


def apply_file_issues(
    writer: BatchWriter,
    issues: pa.Table,
    original_rows: Callable[[pa.Array], Iterable[pa.Table]],
    rows_read: int,
    rows_quarantined: int,
    schema: PlacementSchema | None = None,
) -> StagedCounts:
    """Issues of rules that compare rows across the whole file, found after every chunk was staged: rows
    failing a critical one move from accepted to quarantined, a warning joins the row's quality_flags."""
    schema = schema or load_schema()
    writer.append("issues", issues)
    accepted_path = writer.close("accepted")
    rewritten = accepted_path.with_name("accepted.rewrite.parquet")
    target = schema.arrow_schema(published_only=True)
    con = settings.scratch_duckdb()
    try:
        con.register("f", issues.select(["source_row", "rule_id", "severity"]))
        con.execute(f"CREATE TEMP VIEW a AS SELECT * FROM read_parquet('{accepted_path}')")
        moved = con.sql(
            "SELECT source_row FROM a WHERE source_row IN (SELECT source_row FROM f WHERE severity = 'critical')"
        ).to_arrow_table()["source_row"]
        cols = ", ".join(f'a."{c}"' for c in target.names if c != "quality_flags")
        reader = con.sql(
            f"""SELECT {cols},
                   nullif(array_to_string(list_sort(list_distinct(flatten([
                       coalesce(string_split(a.quality_flags, ';'), []), coalesce(w.flags, [])]))), ';'), '')
                   AS quality_flags
                FROM a LEFT JOIN (SELECT source_row, list(DISTINCT rule_id) AS flags FROM f
                                  WHERE severity = 'warning' GROUP BY source_row) w USING (source_row)
                WHERE a.source_row NOT IN (SELECT source_row FROM f WHERE severity = 'critical')
                ORDER BY a.source_row"""
        ).to_arrow_reader(100_000)
        accepted_n = warned_n = 0
        with pq.ParquetWriter(rewritten, target) as out:
            for batch in reader:
                table = pa.Table.from_batches([batch]).select(target.names).cast(target)
                out.write_table(table)
                accepted_n += table.num_rows
                warned_n += table.num_rows - table["quality_flags"].null_count
    finally:
        con.close()
    os.replace(rewritten, accepted_path)
    if len(moved):
        for part in original_rows(moved):
            writer.append("quarantined", part)
    counts = StagedCounts(rows_read, accepted_n, rows_quarantined + len(moved), warned_n)
    if not counts.reconciles():
        raise AssertionError(f"rows do not reconcile: {counts}")  # a bug: never publish such a batch
    return counts


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

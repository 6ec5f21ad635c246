"""One archived file through read -> map -> harmonise -> validate -> stage -> report.

Plain functions, no Prefect: the flow wraps them in tasks. Inputs and outputs are ids and counts, never
records, so nothing personal reaches Prefect's logs or result storage.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import faults, mapping, readers, report, settings, stage, validate
from pipelines import harmonise as harmonise_stage
from pipelines import progress as events
from pipelines.config import AgencyConfig
from pipelines.keys import WorkerKeySecret
from pipelines.ledger import FileEntry, Ledger
from pipelines.problems import ISSUE_SCHEMA, Bilingual, FileRejected
from pipelines.schema import PlacementSchema, load_schema
from pipelines.settings import Zones, fsync_dir

log = logging.getLogger("sdmi.process")


@dataclass(frozen=True)
class FileOutcome:
    sha256: str
    agency: str
    file_name: str
    status: str  # processed | held | rejected
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_warned: int = 0
    reason_code: str | None = None
    reason_en: str | None = None
    timings: dict | None = None
    # process CPU (every thread, DuckDB's included) while each stage ran; the flow keeps the figures only
    # when no other file ran meanwhile, since they would count that file's work too
    cpu_seconds: dict | None = None
    window: tuple[float, float] | None = None  # time.monotonic() at the start and end of the file's work

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _as_issue_table(issues: pa.Table) -> pa.Table:
    """Reader issues (ragged rows) in the one issue schema; their values are field counts, never identifiers."""
    return issues.cast(ISSUE_SCHEMA) if issues.num_rows else ISSUE_SCHEMA.empty_table()


def process_file(
    zones: Zones,
    ledger: Ledger,
    entry: FileEntry,
    cfg: AgencyConfig,
    secret: WorkerKeySecret,
    run_date: date | None = None,
) -> FileOutcome:
    with settings.sharing_cores():
        return _process_file(zones, ledger, entry, cfg, secret, run_date)


def _process_file(
    zones: Zones,
    ledger: Ledger,
    entry: FileEntry,
    cfg: AgencyConfig,
    secret: WorkerKeySecret,
    run_date: date | None,
) -> FileOutcome:
    schema = load_schema()
    timings: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    began = time.monotonic()
    clock, cpu_clock = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal clock, cpu_clock
        now, cpu_now = time.perf_counter(), time.process_time()
        timings[name] = round(timings[name] + now - clock, 4)
        cpu[name] = round(cpu[name] + cpu_now - cpu_clock, 4)
        clock, cpu_clock = now, cpu_now

    def measured() -> dict:
        return {"timings": timings, "cpu_seconds": cpu, "window": (began, time.monotonic())}

    ledger.start_attempt(entry.sha256)
    raw = zones.home / entry.raw_path
    file_report = dict(
        agency=entry.agency,
        agency_name=cfg.name,
        file_name=entry.file_name,
        sha256=entry.sha256,
        received_at=entry.received_at,
    )

    docs_dir = report.report_dir(zones.reports, report.FileReport(**file_report, status="processed")) / "data_docs"

    def rejected_file(rejected: FileRejected) -> FileOutcome:
        # Nothing of a rejected file stays staged, nor its validation pages: a replayed file may have been
        # processed before. Gone before the ledger says 'rejected', so that a crash in between leaves the
        # file in flight (processed again), never 'rejected' beside an earlier processing's rows.
        _drop_staged(zones, entry.batch_id)
        shutil.rmtree(docs_dir, ignore_errors=True)
        ledger.finish(
            entry.sha256,
            "rejected",
            rows_read=0,
            rows_accepted=0,
            rows_quarantined=0,
            rows_warned=0,
            reason_code=rejected.code,
            reason_id=rejected.message.id,
            reason_en=rejected.message.en,
        )
        report.write_report(
            zones.reports,
            report.FileReport(
                **file_report, status="rejected", rows_read=0, rows_accepted=0, rows_quarantined=0,
                rows_warned=0, reason=rejected.message, warnings=[], duplicate_of=None,
            ),
            None, None, set(), {},
        )  # fmt: skip
        log.info("file %s rejected: %s", entry.sha256[:12], rejected.code)
        return FileOutcome(entry.sha256, entry.agency, entry.file_name, "rejected",
                           reason_code=rejected.code, reason_en=rejected.message.en, **measured())  # fmt: skip

    try:
        read, mapped = read_and_map(raw, cfg, schema)
        lap("read_map")
        faults.point("process.after_read")
    except FileRejected as rejected:
        return rejected_file(rejected)

    writer = stage.BatchWriter(
        zones,
        entry.batch_id,
        {"accepted": schema.arrow_schema(published_only=True), "issues": ISSUE_SCHEMA, "quarantined": read.schema},
    )
    try:
        try:
            counts = _process_chunks(read, cfg, entry, secret, schema, writer, docs_dir, run_date, lap, timings)
        except FileRejected as rejected:  # found while streaming (no data row, an unclosed quote): nothing staged
            writer.abort()
            return rejected_file(rejected)
        share_failed = counts.rows_quarantined / counts.rows_read if counts.rows_read else 0.0
        # a returned rejected-rows file is mostly failing rows by nature: never held, so its fixed rows are published
        status = "held" if share_failed > cfg.hold_threshold and not read.returned_rejected_rows else "processed"
        reason = None
        if status == "held":
            reason = Bilingual(
                f"Berkas ditahan: {share_failed:.0%} baris gagal (batas {cfg.hold_threshold:.0%}). Tidak ada baris "
                "dari berkas ini yang dipublikasikan; perbaiki dan kirim ulang seluruh berkas.",
                f"File held: {share_failed:.0%} of rows failed (limit {cfg.hold_threshold:.0%}). Nothing from this "
                "file is published; fix and resend the whole file.",
            )
        staged = writer.commit(
            {
                "batch_id": entry.batch_id,
                "agency": entry.agency,
                "sha256": entry.sha256,
                "file_name": entry.file_name,
                "status": status,
                **stage.counts_dict(counts),
            }
        )
    except BaseException:
        writer.abort()
        raise
    read_warnings, read_format = read.warnings, read.format
    del read  # the report reads the staged issues and quarantined rows; the file's cells can go
    lap("stage")
    faults.point("process.after_staging")
    hints = {k: Bilingual(*v) for k, v in harmonise_stage.hints(schema, cfg).items()}  # the agency's date format
    warnings = [*read_warnings, *mapped.warnings]
    if mapped.unmapped_fields:
        missing = ", ".join(mapped.unmapped_fields)
        warnings.append(
            Bilingual(f"Kolom tidak tersedia di berkas ini: {missing}", f"Fields this file does not provide: {missing}")
        )
    report.write_report(
        zones.reports,
        report.FileReport(
            **file_report,
            status=status,
            rows_read=counts.rows_read,
            rows_accepted=counts.rows_accepted,
            rows_quarantined=counts.rows_quarantined,
            rows_warned=counts.rows_warned,
            reason=reason,
            warnings=warnings,
            duplicate_of=None,
            file_format=read_format,  # a JSON file's rows are numbered by record, not line
        ),
        staged / "issues.parquet",
        staged / "quarantined.parquet",
        mapped.identifier_headers,
        hints,
        field_columns=mapped.matched,
    )
    lap("report")
    faults.point("process.after_report")
    ledger.finish(
        entry.sha256,
        status,
        rows_read=counts.rows_read,
        rows_accepted=counts.rows_accepted,
        rows_quarantined=counts.rows_quarantined,
        rows_warned=counts.rows_warned,
        reason_code="held" if reason else None,
        reason_id=reason.id if reason else None,
        reason_en=reason.en if reason else None,
    )
    log.info(
        "file %s %s: read=%d accepted=%d quarantined=%d",
        entry.sha256[:12], status, counts.rows_read, counts.rows_accepted, counts.rows_quarantined,
    )  # fmt: skip
    return FileOutcome(
        entry.sha256, entry.agency, entry.file_name, status, counts.rows_read, counts.rows_accepted,
        counts.rows_quarantined, counts.rows_warned, **measured(),
    )  # fmt: skip


def _drop_staged(zones: Zones, batch_id: str) -> None:
    """Remove `staging/<batch_id>/` (an earlier processing of a file now rejected) the way staging replaces a
    batch: renamed aside in one step, then deleted. A crash in between leaves a `.old-*` folder, never read,
    that `stage.clean_leftovers` removes at the next start."""
    final = zones.staging / batch_id
    if not final.exists():
        return
    old = zones.staging / f".old-{batch_id}-{uuid.uuid4().hex[:8]}"
    os.replace(final, old)
    fsync_dir(zones.staging)
    shutil.rmtree(old, ignore_errors=True)


def harmonise_chunk(
    mapped: pa.Table,
    cfg: AgencyConfig,
    sha256: str,
    batch_id: str,
    received_at: datetime,
    secret: WorkerKeySecret,
    schema: PlacementSchema,
) -> harmonise_stage.Harmonised:
    """Harmonised rows as they go to GX and staging: with a worker's identity typed into a published free-text
    column emptied (`stage.remove_identifier_copies`), before GX quotes it. `sdmi agency check` uses it too."""
    harmonised = harmonise_stage.harmonise(
        mapped, cfg, sha256=sha256, batch_id=batch_id, received_at=received_at, secret=secret, schema=schema
    )
    table, copies = stage.remove_identifier_copies(harmonised.table, schema)
    return replace(harmonised, table=table, issues=pa.concat_tables([harmonised.issues, copies]))


def _process_chunks(
    read: readers.ReadResult,
    cfg: AgencyConfig,
    entry: FileEntry,
    secret: WorkerKeySecret,
    schema: PlacementSchema,
    writer: stage.BatchWriter,
    docs_dir: Path,
    run_date: date | None,
    lap: Callable[[str], None],
    gx_time: dict[str, float],
) -> stage.StagedCounts:
    """Map, harmonise, validate and split the file a chunk at a time, appending to the staged batch.

    Memory follows the chunk. Rules that compare rows (record_key unique in the file) run per chunk only when
    the file is one chunk; otherwise GX runs them once over those columns of the whole file, and the rows they
    fail leave `accepted` afterwards."""
    step, step_bytes = settings.chunk_rows(), settings.chunk_bytes()
    chunks = read.chunks(step, max_bytes=step_bytes)
    ahead = [c for c in (next(chunks, None), next(chunks, None)) if c is not None]
    chunked = len(ahead) > 1  # a file that is one chunk runs the whole suite at once

    def in_turn() -> Iterator[readers.Chunk]:
        """The two chunks read to learn that, then the rest as they come: one chunk held at a time, not two
        (on a 1,981,979-row file, the highest peak of a chunk went from 1,112 to 1,067 MB RSS)."""
        while ahead:
            yield ahead.pop(0)
        yield from chunks

    kept_columns = [*validate.file_wide_columns(validate.suite_for(cfg)), "source_row"]
    kept: list[pa.Table] = []
    judged = validate.JudgedValues()  # GX judges each distinct value once per file, not once per chunk
    read_n = accepted_n = quarantined_n = warned_n = 0
    for number, current in enumerate(in_turn(), start=1):
        part, row_issues = current
        mapped = mapping.map_batch(replace(read, table=part), cfg, schema)
        lap("read_map")
        harmonised = harmonise_chunk(mapped.table, cfg, entry.sha256, entry.batch_id, entry.received_at, secret, schema)
        del mapped
        lap("harmonise")
        faults.point("process.after_harmonise")
        gx_issues = validate.validate(
            harmonised.table, cfg, run_date=run_date, schema=schema, docs_dir=docs_dir,
            docs_page="validation.html" if number == 1 else f"validation-part-{number:03d}.html",
            scope="rows" if chunked else "all", timings=gx_time, judged=judged,
        )  # fmt: skip
        if chunked:
            kept.append(settings.owned_copy(harmonised.table.select(kept_columns)))
        lap("validate")
        issues = pa.concat_tables([_as_issue_table(row_issues), harmonised.issues, gx_issues])
        issues = stage.mask_identifier_values(issues, harmonised.table, schema)  # the page quotes issue values
        accepted, quarantined, counts = stage.split(harmonised.table, issues, part, schema)
        writer.append("accepted", accepted)
        writer.append("issues", issues)
        writer.append("quarantined", quarantined)
        read_n += counts.rows_read
        accepted_n += counts.rows_accepted
        quarantined_n += counts.rows_quarantined
        warned_n += counts.rows_warned
        lap("stage")
        if chunked:  # a long file shows its progress (counts only)
            log.info("file %s: %d rows done", entry.sha256[:12], read_n)
            events.emit("rows", file=entry.sha256[:12], rows=counts.rows_read, done=read_n)
        del part, row_issues, harmonised, gx_issues, issues, accepted, quarantined, current
        # Freed memory stays with the allocator (glibc keeps an arena per thread) unless handed back, and two
        # files run side by side: at 5M rows this took the run's peak from ~2,080 to ~1,910 MiB (process tree).
        settings.release_memory(collect=False)
    lap("read_map")  # the end of the file (footers) is read by the last turn of the loop
    if not chunked:
        return stage.StagedCounts(read_n, accepted_n, quarantined_n, warned_n)
    file_issues = validate.validate(
        pa.concat_tables(kept), cfg, run_date=run_date, schema=schema, docs_dir=docs_dir,
        docs_page="validation-whole-file.html", scope="file", timings=gx_time,
    )  # fmt: skip
    del kept
    settings.release_memory(collect=False)  # the whole file's key columns, before the report's own share
    lap("validate")
    if not file_issues.num_rows:
        return stage.StagedCounts(read_n, accepted_n, quarantined_n, warned_n)

    def original_rows(wanted: pa.Array) -> Iterator[pa.Table]:
        """The file's own cells of rows already staged, a chunk at a time: read the file again (a rare path;
        a file sent twice in one has half its rows here)."""
        for t, _ in read.chunks(step, [], step_bytes):
            part = t.filter(pc.is_in(t[readers.SOURCE_ROW], value_set=wanted))
            if part.num_rows:
                yield part

    counts = stage.apply_file_issues(writer, file_issues, original_rows, read_n, quarantined_n, schema)
    lap("stage")
    return counts


def _header_only(read: readers.ReadResult) -> readers.ReadResult:
    """Whether the file maps depends on its header, not its rows: mapping no row checks it cheaply."""
    return replace(read, table=read.schema.empty_table())


RETRY_WITH_DETECTION = ("encoding_mismatch", "wrong_delimiter", "missing_columns", "sheet_not_found")


def read_and_map(
    raw: Path, cfg: AgencyConfig, schema: PlacementSchema
) -> tuple[readers.ReadResult, mapping.MappedBatch]:
    """The agency's declared layout first. When the file says otherwise (a file saved again as UTF-8 CSV, with
    a BOM, its header on row 1, where UTF-16 or Windows-1252 is registered), detection decides and the report
    says so; if detection does no better, the original reason stands. A returned rejected-rows file is
    recognised by the reader itself (its `alasan_reason` and `baris_row` columns) and read by detection.

    The file is opened (its rows are streamed later) and only its header is mapped. `sdmi agency check`
    (`onboarding.check`) reads through here too, so that the dry run accepts and rejects what a run does."""
    expected = mapping.expected_headers(cfg)
    try:
        read = readers.open_file(raw, cfg.read, expected)
        return read, mapping.map_batch(_header_only(read), cfg, schema)
    except FileRejected as exc:
        pinned = cfg.read.model_dump(include={"encoding", "delimiter", "header_row", "sheet"}, exclude_none=True)
        if exc.code not in RETRY_WITH_DETECTION or not pinned:
            raise
        options = cfg.read.model_copy(update=dict.fromkeys(pinned))
        first_reason = exc.code
        try:
            read = readers.open_file(raw, options, expected)
            mapped = mapping.map_batch(_header_only(read), cfg, schema)
        except FileRejected:
            raise exc from None
    read.warnings.append(
        Bilingual(
            f"Tata letak berkas berbeda dari yang terdaftar ({first_reason}); berkas dibaca dengan deteksi otomatis.",
            f"The file's layout differs from the registered one ({first_reason}); it was read by detection.",
        )
    )
    return read, mapped

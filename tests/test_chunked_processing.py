"""A file processed a chunk at a time stages exactly what it stages in one piece, rows compared across
chunks included."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines import config, demo, inbox, validate
from pipelines.keys import load_secret
from pipelines.ledger import Ledger
from pipelines.process import process_file
from pipelines.settings import Zones

RUN_DEPENDENT = {"batch_id", "ingested_at"}


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("chunked")
    demo.generate(directory, seed=9, rows=1500)
    return directory


def _process(home: Path, key_file: Path, agency: str, source: Path, chunk_rows: int, monkeypatch,
             chunk_bytes: int = 64 << 20):  # fmt: skip
    monkeypatch.setenv("SDMI_CHUNK_ROWS", str(chunk_rows))
    monkeypatch.setenv("SDMI_CHUNK_BYTES", str(chunk_bytes))
    zones = Zones(home).ensure()
    ledger = Ledger(zones.ledger_db)
    path = zones.inbox / agency / source.name
    path.parent.mkdir(parents=True)
    path.write_bytes(source.read_bytes())
    claim = inbox.claim(zones, ledger, agency, path)
    process_file(zones, ledger, claim.entry, config.agency(agency), load_secret(key_file))
    entry = ledger.get(claim.entry.sha256)
    return zones.staging / entry.batch_id, entry


def _staged(folder: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect()
    try:
        out = {}
        for name in ("accepted", "issues", "quarantined"):
            rel = con.sql(f"SELECT * FROM read_parquet('{folder / name}.parquet')")
            cols = ", ".join(f'"{c}"' for c in rel.columns if c not in RUN_DEPENDENT)
            out[name] = con.sql(f"SELECT {cols} FROM rel ORDER BY ALL").fetchall()
    finally:
        con.close()
    return out


def _counts(entry) -> tuple[int, ...]:
    return (entry.rows_read, entry.rows_accepted, entry.rows_quarantined, entry.rows_warned, entry.status)


@pytest.mark.parametrize("agency", sorted(config.agencies()))
def test_a_file_in_chunks_stages_the_same_rows_issues_and_counts_as_in_one_piece(demo_files, agency, key_file,
                                                                                 tmp_path, monkeypatch):  # fmt: skip
    source = sorted((demo_files / agency).iterdir())[0]
    whole, whole_entry = _process(tmp_path / "whole", key_file, agency, source, 1_000_000, monkeypatch)
    chunk = max(7, whole_entry.rows_read // 5)
    parts, parts_entry = _process(tmp_path / "parts", key_file, agency, source, chunk, monkeypatch)
    assert whole_entry.rows_read > chunk * 2
    assert _counts(parts_entry) == _counts(whole_entry)
    assert _staged(parts) == _staged(whole)


def test_a_file_cut_into_chunks_by_their_bytes_stages_what_it_stages_in_one_piece(demo_files, key_file, tmp_path,
                                                                                   monkeypatch):  # fmt: skip
    source = sorted((demo_files / "bp2mi_siskop2mi").iterdir())[0]
    whole, whole_entry = _process(tmp_path / "whole", key_file, "bp2mi_siskop2mi", source, 1_000_000, monkeypatch)
    parts, parts_entry = _process(tmp_path / "parts", key_file, "bp2mi_siskop2mi", source, 1_000_000, monkeypatch,
                                  chunk_bytes=source.stat().st_size // 4)  # fmt: skip
    assert list((tmp_path / "parts" / "reports").rglob("validation-part-004.html"))
    assert not list((tmp_path / "whole" / "reports").rglob("validation-part-*.html"))
    assert _counts(parts_entry) == _counts(whole_entry)
    assert _staged(parts) == _staged(whole)


def test_the_same_record_id_in_two_chunks_quarantines_both_rows(demo_files, key_file, tmp_path, monkeypatch):
    agency = "bp2mi_siskop2mi"
    lines = sorted((demo_files / agency).iterdir())[0].read_bytes().splitlines(keepends=True)
    resent = tmp_path / "resent.csv"
    resent.write_bytes(b"".join([*lines, lines[1]]))  # the first record again, in the last chunk
    staged, entry = _process(tmp_path / "home", key_file, agency, resent, 50, monkeypatch)
    con = duckdb.connect()
    try:
        rows = con.sql(
            f"SELECT source_row FROM read_parquet('{staged}/issues.parquet') "
            "WHERE rule_id = 'record_key.unique_in_batch' ORDER BY 1"
        ).fetchall()
        accepted = con.sql(
            f"SELECT count(*) FROM read_parquet('{staged}/accepted.parquet') WHERE source_row IN (2, {len(lines) + 1})"
        ).fetchall()[0][0]
        quarantined = con.sql(f"SELECT count(*) FROM read_parquet('{staged}/quarantined.parquet')").fetchall()[0][0]
    finally:
        con.close()
    assert rows == [(2,), (len(lines) + 1,)]
    assert accepted == 0
    assert entry.rows_read == entry.rows_accepted + entry.rows_quarantined == quarantined + entry.rows_accepted
    assert (staged / "batch.json").exists() and not list(staged.parent.glob(".tmp-*"))


def test_a_file_sent_twice_in_one_quarantines_both_copies_a_chunk_at_a_time_and_lists_them_in_source_order(
    demo_files, key_file, tmp_path, monkeypatch
):
    """Every record id appears twice, so whole-file rules move every row that chunks had accepted: they are
    staged a chunk at a time (never the whole file at once), and the report still lists rows in file order."""
    import csv

    import pyarrow.parquet as pq

    agency = "bp2mi_siskop2mi"
    lines = sorted((demo_files / agency).iterdir())[0].read_bytes().splitlines(keepends=True)
    twice = tmp_path / "twice.csv"
    twice.write_bytes(b"".join([*lines, *lines[1:]]))
    home = tmp_path / "home"
    staged, entry = _process(home, key_file, agency, twice, 100, monkeypatch)
    assert entry.rows_read == 2 * (len(lines) - 1) and entry.rows_accepted == 0
    meta = pq.ParquetFile(staged / "quarantined.parquet").metadata
    at = meta.schema.names.index("_source_row")
    lowest = [meta.row_group(i).column(at).statistics.min for i in range(meta.num_row_groups)]
    moved_from = next(i for i in range(1, len(lowest)) if lowest[i] < lowest[i - 1])  # after the chunks' own
    assert meta.num_row_groups - moved_from > 5  # the moved rows, staged a chunk at a time
    with next((home / "reports").rglob("rejected_rows.csv")).open(encoding="utf-8-sig", newline="") as fh:
        numbers = [int(row[-1]) for row in list(csv.reader(fh))[1:]]
    assert numbers == sorted(numbers) and len(numbers) == entry.rows_quarantined


def test_a_file_found_broken_after_chunks_were_processed_is_rejected_with_nothing_staged(
    demo_files, key_file, tmp_path, monkeypatch
):
    agency = "bp2mi_siskop2mi"
    lines = sorted((demo_files / agency).iterdir())[0].read_bytes().splitlines(keepends=True)
    broken = tmp_path / "broken.csv"
    at = len(lines) * 4 // 5  # well after the first chunks: a quote opened here swallows the rest of the file
    unquoted = [line.replace(b'"', b"") for line in lines[at:]]
    broken.write_bytes(b"".join([*lines[:at], b'"' + unquoted[0], *unquoted[1:]]))
    home = tmp_path / "home"
    staged, entry = _process(home, key_file, agency, broken, 50, monkeypatch)
    assert entry.status == "rejected" and entry.reason_code == "unclosed_quote"
    assert not staged.exists() and not list((home / "staging").glob(".tmp-*"))
    assert not list((home / "reports").rglob("data_docs"))


def test_gx_judges_each_distinct_value_of_a_chunked_file_once(demo_files, key_file, tmp_path, monkeypatch):
    """A value judged in an earlier chunk keeps its verdict: later chunks send GX only values it has not seen."""
    sent: list[dict[str, set[str]]] = []
    real_run_suite = validate.run_suite

    def recording_run_suite(df, suite_dict, parameters, index="source_row", timings=None):
        if index == validate.VALUE_ROW:
            sent.append({c: {repr(v) for v in df[c].unique()} for c in df.columns if c != index})
        return real_run_suite(df, suite_dict, parameters, index=index, timings=timings)

    monkeypatch.setattr(validate, "run_suite", recording_run_suite)
    source = sorted((demo_files / "bp2mi_siskop2mi").iterdir())[0]
    _, entry = _process(tmp_path / "home", key_file, "bp2mi_siskop2mi", source, 100, monkeypatch)
    assert entry.rows_read > 500 and len(sent) > 1
    for column in {c for frame in sent for c in frame}:
        frames = [frame[column] for frame in sent if column in frame]
        assert sum(len(values) for values in frames) == len(set().union(*frames)), column

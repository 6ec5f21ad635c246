"""The report reads the staged files a piece at a time: the same page and rejected rows as from whole tables,
in source order however the staged file was written, and memory that does not grow with the rows quarantined."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from memory_probe import PEAK_SINCE_NOW
from test_report import HINTS, IDENTIFIER_COLUMNS, issue, make_issues, make_report, make_rows

from pipelines import report
from pipelines.problems import ISSUE_SCHEMA
from pipelines.report import CSV_NAME, HTML_NAME, XLSX_NAME, FileReport, report_dir, write_report


def _reference_rows_listed(rows: list[int], limit: int) -> tuple[str, int]:
    """Row numbers as the page lists them, written plainly: runs of consecutive rows, the first `limit`."""
    runs: list[list[int]] = []
    for r in sorted(set(rows)):
        if runs and runs[-1][1] + 1 == r:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    shown = runs[:limit]
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in shown), len(set(rows)) - sum(
        b - a + 1 for a, b in shown
    )


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.integers(1, 400), unique=True),
    cuts=st.lists(st.integers(1, 400)),
    limit=st.integers(1, 6),
)
def test_a_rules_rows_added_a_piece_at_a_time_are_listed_as_all_at_once(rows, cuts, limit):
    ordered = np.array(sorted(rows), dtype=np.int64)
    counted = report._RuleRows(limit=limit)
    for piece in np.split(ordered, np.searchsorted(ordered, sorted(set(cuts)))):
        counted.add(piece)
    assert counted.count == len(rows)
    assert counted.listed() == _reference_rows_listed(rows, limit)


def _staged(tmp_path: Path, rows: pa.Table, issues: pa.Table, row_group_rows: list[int]) -> tuple[Path, Path]:
    """The staged files as the pipeline writes them: a row group per chunk, in the order given."""
    quarantined, issues_path = tmp_path / "quarantined.parquet", tmp_path / "issues.parquet"
    with pq.ParquetWriter(quarantined, rows.schema) as out:
        start = 0
        for n in row_group_rows:
            out.write_table(rows.slice(start, n))
            start += n
    pq.write_table(issues, issues_path, row_group_size=7)
    return issues_path, quarantined


def _written(root: Path, rep: FileReport, issues, rows) -> Path:
    write_report(root, rep, issues, rows, IDENTIFIER_COLUMNS, HINTS)
    return report_dir(root, rep)


def _outputs(folder: Path) -> tuple[str, list[list[str]], bytes]:
    with (folder / CSV_NAME).open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    sheet = __import__("zipfile").ZipFile(folder / XLSX_NAME).read("xl/worksheets/sheet1.xml")
    return (folder / HTML_NAME).read_text(encoding="utf-8"), rows, sheet


def test_a_report_from_staged_files_read_in_pieces_is_the_report_from_whole_tables(tmp_path, monkeypatch):
    """Rows 40 and 41 came last into the staged file (moved by a whole-file rule): the CSV still lists every
    rejected row in source order, and pieces of 3 rows and ranges of 2 issues change nothing."""
    rows = make_rows(60, Negara_Tujuan={r: "Atlantis" for r in range(5, 60, 3)}, Nama_PMI={17: "Siti Rahmawati"})
    issues = make_issues(
        *(issue(r, "destination_country.required", "destination_country", "Atlantis") for r in range(5, 60, 3)),
        *(issue(r, "contract_months.range", "contract_months", "72", "warning") for r in (8, 9, 10, 33)),
        issue(17, "sex.required", "sex", "Siti Rahmawati"),
        issue(None, "file.header_changed", "", None, "warning"),
        issue(40, "record_key.unique_in_batch", "record_key", "REG-38"),
        issue(41, "record_key.unique_in_batch", "record_key", "REG-39"),
    )
    late = pa.compute.is_in(rows["_source_row"], pa.array([40, 41]))
    staged_rows = pa.concat_tables([rows.filter(pa.compute.invert(late)), rows.filter(late)])  # 40, 41 at the end
    rep = make_report(rows_read=60, rows_quarantined=20)
    whole = _outputs(_written(tmp_path / "whole", rep, issues, rows))
    monkeypatch.setattr(report, "PIECE_ROWS", 3)
    monkeypatch.setattr(report, "RULE_ROWS_ISSUES", 2)
    monkeypatch.setattr(report, "_BUCKET", 4)
    issues_path, quarantined = _staged(tmp_path, staged_rows, issues, [20, 18, 20, 2])
    pieces = _outputs(_written(tmp_path / "pieces", rep, issues_path, quarantined))
    assert pieces == whole
    numbers = [int(r[-1]) for r in pieces[1][1:]]
    assert numbers == sorted(numbers) and {40, 41} <= set(numbers) and len(numbers) == 20
    assert "Siti Rahmawati" not in pieces[0]


def test_an_issues_file_without_the_issue_columns_is_refused(tmp_path):
    path = tmp_path / "issues.parquet"
    pq.write_table(pa.table({"source_row": [1]}), path)
    try:
        write_report(tmp_path / "r", make_report(), path, None, set(), {})
    except ValueError as err:
        assert "lacks columns" in str(err)
    else:
        raise AssertionError("a broken issues file was taken")


def test_a_report_on_a_file_whose_every_row_was_quarantined_takes_memory_that_does_not_grow_with_it(tmp_path):
    """600,000 quarantined rows and 1.2 million issues, staged as the pipeline stages them. Handled at once (the
    rows, their identifier values as Python text, their reasons), the report grew the process by 1.6 GB; a
    piece at a time, by about 0.5 GB (pyarrow's and DuckDB's pools included), and ~0.6 GB at four times the
    rows."""
    n, chunk = 600_000, 200_000
    numbers = np.arange(2, n + 2, dtype=np.int64)
    text = numbers.astype(str)
    rows = pa.table({
        "No Reg": pa.array(np.char.add("REG-", text)), "NIK": pa.array(np.char.add("3201010101", text)),
        "Nama PMI": pa.array(np.char.add("Pekerja Uji ", text)), "Negara Tujuan": pa.array(["Atlantis"] * n),
        "Keterangan": pa.array(["catatan petugas " * 8] * n), "_source_row": numbers,
    })  # fmt: skip
    issue_rows = np.repeat(numbers, 2)
    issues = pa.table({
        "source_row": issue_rows,
        "rule_id": pa.array(["destination_country.required", "departure_date.range"] * n),
        "severity": pa.array(["critical"] * (2 * n)), "field": pa.array(["destination_country", "departure_date"] * n),
        "value": pa.array(["Atlantis", "2099-08-17"] * n),
        "message_id": pa.array(["Negara tujuan tidak dikenal.", "Tanggal keberangkatan di masa depan."] * n),
        "message_en": pa.array(["Destination country is unknown.", "Departure date is in the future."] * n),
    }).cast(ISSUE_SCHEMA)  # fmt: skip
    issues_path, quarantined = _staged(tmp_path, rows, issues, [chunk] * (n // chunk))
    pq.write_table(issues, issues_path, row_group_size=2 * chunk)
    del rows, issues
    script = f"""
from datetime import UTC, datetime
from pathlib import Path
from pipelines.report import FileReport, write_report
rep = FileReport(agency="bp2mi", agency_name="BP2MI", file_name="f.csv", sha256="a1" * 32,
                 received_at=datetime(2024, 8, 20, tzinfo=UTC), status="held", rows_read={n}, rows_quarantined={n})
write_report(Path("{tmp_path}/warm"), rep, None, None, set(), {{}})
{PEAK_SINCE_NOW}
write_report(Path("{tmp_path}/reports"), rep, Path("{issues_path}"), Path("{quarantined}"), {{"NIK", "Nama PMI"}}, {{}})
print(grown())
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    grew = int(run.stdout.split()[-1])
    with next((tmp_path / "reports").rglob(CSV_NAME)).open(encoding="utf-8-sig") as fh:
        assert sum(1 for _ in fh) == n + 1
    print(f"report grew the process by {grew >> 20} MiB")
    assert grew < 900 << 20, grew


def test_staged_rows_without_a_row_number_are_passed_over(tmp_path, monkeypatch):
    """A piece of the staged file holding only rows without a number (never written by the pipeline, but a file
    can hold them) neither stops the merge nor reaches the rejected rows."""
    monkeypatch.setattr(report, "PIECE_ROWS", 2)
    rows = make_rows(6)
    numbers = pa.array([None, None, 5, 6, 2, 3], pa.int64())  # a first piece of nulls, then a second run
    staged_rows = rows.set_column(rows.schema.get_field_index("_source_row"), "_source_row", numbers)
    issues = make_issues(*(issue(r, "nik.format", "nik", "***") for r in (2, 3, 5, 6)))
    issues_path, quarantined = _staged(tmp_path, staged_rows, issues, [4, 2])
    folder = _written(tmp_path / "reports", make_report(rows_read=6, rows_quarantined=4), issues_path, quarantined)
    with (folder / CSV_NAME).open(encoding="utf-8-sig", newline="") as fh:
        assert [row[-1] for row in list(csv.reader(fh))[1:]] == ["2", "3", "5", "6"]

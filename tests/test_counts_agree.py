"""The row counts an officer, an engineer and an analyst read say the same thing: rows still to fix are counted
once, fixed ones no more, and "accepted" means bound for the release.

Real files go through the real stages (`process_dropped`, as a run takes them); the officer's resend is the
`rejected_rows.csv` the report wrote, corrected. All data is synthetic.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import duckdb
from agency_factory import process_dropped
from rich.console import Console

from pipelines import cli, status
from pipelines.flows import RunSummary, ingest_flow, publish_flow
from pipelines.ledger import Ledger
from pipelines.settings import Zones

AGENCY = "bp2mi_siskop2mi"  # its rows carry a record id, No Registrasi
HEADER = ["No Registrasi", "NIK", "Nama", "Jenis Kelamin", "Negara Tujuan", "Tanggal Berangkat"]
UNKNOWN_COUNTRY = "harmonise.unknown_code.destination_country"


def _row(i: int, country: str = "Hong Kong") -> list[str]:
    return [f"R-{i}", f"35070145079500{i:02d}", "Siti Contoh", "P", country, "01/03/2024"]


def _csv(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    return buf.getvalue().encode("utf-8")


def _monthly_file(home: Path, key_file: Path) -> Zones:
    """Eight good rows and two to an unknown country (R-9, R-10): processed, two rows quarantined."""
    rows = [_row(i) for i in range(1, 9)] + [_row(9, "Atlantis"), _row(10, "Atlantis")]
    zones, entry, _ = process_dropped(home, key_file, AGENCY, "penempatan_maret.csv", _csv(rows))
    assert (entry.status, entry.rows_quarantined) == ("processed", 2)
    return zones


def _sent_back(zones: Zones, key_file: Path, fixed: set[str], name: str):
    """The officer's resend: the newest rejected_rows.csv of the agency, the rows named in `fixed` corrected."""
    newest = max((zones.reports / AGENCY).glob("*/rejected_rows.csv"), key=lambda p: p.parent.name)
    with newest.open(encoding="utf-8-sig", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    country = header.index("Negara Tujuan")
    for row in rows:
        if row[0] in fixed:
            row[country] = "Hong Kong"
    return process_dropped(zones.home, key_file, AGENCY, name, _csv(rows, header))


def _warehouse(zones: Zones) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(zones.analyst_db), read_only=True)


def test_a_row_sent_back_corrected_and_accepted_leaves_the_quarantine(tmp_path: Path, key_file: Path) -> None:
    zones = _monthly_file(tmp_path / "home", key_file)
    assert status.collect(zones)["quarantine"] == 2
    _sent_back(zones, key_file, {"R-9", "R-10"}, "perbaikan.csv")
    info = status.collect(zones)
    assert info["quarantine"] == 0 and info["quarantined_in_files"] == 2
    assert status.quarantine_summary(zones) == []


def test_a_row_sent_back_still_broken_is_counted_once_where_it_was_last_quarantined(
    tmp_path: Path, key_file: Path
) -> None:
    zones = _monthly_file(tmp_path / "home", key_file)
    _sent_back(zones, key_file, {"R-9"}, "perbaikan.csv")  # R-10 cannot be fixed yet
    assert status.collect(zones)["quarantine"] == 1
    rules = {r["rule_id"]: (r["rows"], r["files"]) for r in status.quarantine_summary(zones, AGENCY)}
    assert rules[UNKNOWN_COUNTRY] == (1, 1)
    console = Console(record=True, width=400)
    status.render(status.collect(zones), console)
    text = console.export_text()
    assert "rows in quarantine (not yet fixed): 1" in text and "per-file sum: 3" in text


def test_a_row_without_a_record_id_cannot_be_followed_and_stays_counted_in_each_file(
    tmp_path: Path, key_file: Path
) -> None:
    """The district office's rows have no record id (they are fingerprinted): a row sent twice is two rows."""
    header = ["No", "Nama", "NIK", "L/P", "Tempat, Tgl Lahir", "Pendidikan", "Negara Tujuan", "Jabatan",
              "Nama PPTKIS", "Tgl Berangkat", "Lama Kontrak", "alasan_reason", "baris_row"]  # fmt: skip
    row = ["95", "Rina Contoh", "3301126007010020", "P", "Cilacap, 20 Juli 2001", "SD", "Luar Negeri",
           "Domestic Worker", "PT Contoh", "20 Juli 2024", "24", "negara tujuan tidak dikenal", "96"]  # fmt: skip
    for name in ("kirim_ulang_1.csv", "kirim_ulang_2.csv"):
        row[0] = name  # another file each time (the same bytes would be a duplicate)
        zones, entry, _ = process_dropped(
            tmp_path / "home", key_file, "disnaker_kab_cilacap", name, _csv([row], header)
        )
        assert entry.rows_quarantined == 1
    assert status.collect(zones)["quarantine"] == 2


def test_the_release_gives_each_files_rows_still_quarantined_and_they_add_up_to_the_status_figure(
    tmp_path: Path, key_file: Path
) -> None:
    zones = _monthly_file(tmp_path / "home", key_file)
    _sent_back(zones, key_file, {"R-9"}, "perbaikan.csv")
    result = publish_flow.fn(str(zones.home))
    assert result["switched"], result["reason"]
    with _warehouse(zones) as con:
        per_file = con.execute(
            "SELECT file_name, rows_quarantined, rows_still_quarantined FROM data_quality ORDER BY seq"
        ).fetchall()
    assert per_file == [("penempatan_maret.csv", 2, 0), ("perbaikan.csv", 1, 1)]
    info = status.collect(zones)
    assert sum(still for *_, still in per_file) == info["quarantine"] == 1
    assert sum(q for _, q, _ in per_file) == info["quarantined_in_files"] == 3


def test_a_returned_rejected_rows_file_is_not_held_and_its_corrected_rows_are_published(
    tmp_path: Path, key_file: Path
) -> None:
    """By nature mostly rows that failed: one corrected out of three is a share of failing rows that holds an
    ordinary file. Held, it would publish nothing and the officer's correction would be lost."""
    rows = [_row(i) for i in range(1, 5)] + [_row(i, "Atlantis") for i in range(5, 8)]
    zones, _, _ = process_dropped(tmp_path / "home", key_file, AGENCY, "penempatan_april.csv", _csv(rows))
    _, entry, outcome = _sent_back(zones, key_file, {"R-5"}, "perbaikan.csv")
    assert (outcome.status, entry.status) == ("processed", "processed")
    assert (entry.rows_read, entry.rows_accepted, entry.rows_quarantined) == (3, 1, 2)
    assert status.collect(zones)["quarantine"] == 2


def test_a_held_files_rows_that_passed_are_held_back_not_accepted_in_the_run_and_the_release(
    tmp_path: Path, key_file: Path, prefect_harness: Path
) -> None:
    zones = Zones(tmp_path / "home").ensure()
    path = zones.inbox / AGENCY / "penempatan_mei.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(_csv([_row(1), _row(2)] + [_row(i, "Atlantis") for i in range(3, 8)]))  # 5 of 7 fail: held
    old = time.time() - 60
    os.utime(path, (old, old))
    summary = ingest_flow(home=str(zones.home), key_file=str(key_file), stable_seconds=0)
    assert (summary["held"], summary["rows_read"], summary["rows_quarantined"]) == (1, 7, 5)
    assert (summary["rows_accepted"], summary["rows_held"]) == (0, 2)
    (file,) = summary["files"]
    assert (file["rows_accepted"], file["rows_held"]) == (0, 2)
    (last,) = Ledger(zones.ledger_db).runs(1)
    assert json.loads(last["summary"])["rows_accepted"] == 0
    with _warehouse(zones) as con:
        assert con.execute("SELECT rows_accepted, rows_held FROM data_quality").fetchall() == [(0, 2)]
        assert con.execute("SELECT count(*) FROM placement_records").fetchone() == (0,)


def test_the_run_summary_names_rows_held_back_apart_from_rows_accepted(tmp_path: Path, key_file: Path, capsys) -> None:
    rows = [_row(1), _row(2)] + [_row(i, "Atlantis") for i in range(3, 8)]
    zones, _, outcome = process_dropped(tmp_path / "home", key_file, AGENCY, "penempatan_mei.csv", _csv(rows))
    summary = RunSummary()
    summary.add_file(outcome.as_dict())
    cli.print_summary(zones, summary.as_dict())
    out = " ".join(capsys.readouterr().out.split())
    assert "read 7, accepted 0, lolos tetapi ditahan / passed but held back (not published) 2, quarantined 5" in out

"""The demo inbox, end to end through the real flow (Prefect, GX, DuckDB), checked against the generator's truth."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from pathlib import Path

import duckdb
import openpyxl
import pytest

from pipelines import config, demo
from pipelines.flows import ingest_flow
from pipelines.keys import create_key_file
from pipelines.ledger import Ledger
from pipelines.readers import normalise_header
from pipelines.settings import Zones

ROWS = 2000


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, prefect_harness):
    home = tmp_path_factory.mktemp("e2e")
    zones = Zones(home).ensure()
    key = create_key_file(home / "secrets" / "key")
    truth = demo.generate(zones.inbox, seed=7, rows=ROWS)
    summary = ingest_flow(home=str(home), key_file=str(key), stable_seconds=0)
    return zones, key, truth, summary


def _warehouse(zones: Zones) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(zones.analyst_db), read_only=True)


def test_every_demo_file_is_processed_and_rows_reconcile(demo_run):
    zones, _, truth, summary = demo_run
    files = Ledger(zones.ledger_db).files()
    assert len(files) == len(truth.rows_by_file)
    assert {f.status for f in files} == {"processed"}
    for f in files:
        assert f.rows_read == f.rows_accepted + f.rows_quarantined
        assert f.rows_read == truth.rows_by_file[f"{f.agency}/{f.file_name}"]
    assert summary["rows_read"] == sum(truth.rows_by_file.values())
    assert summary["exit_code"] == 0


def test_every_broken_row_is_quarantined_with_its_rule_and_no_clean_row_is(demo_run):
    zones, _, truth, _ = demo_run
    con = duckdb.connect()
    ledger = Ledger(zones.ledger_db)
    quarantined: set[tuple[str, str, int]] = set()
    rules: dict[tuple[str, str, int], set[str]] = {}
    for f in ledger.files():
        rows = con.sql(
            "SELECT source_row, rule_id FROM read_parquet($p) WHERE severity = 'critical'",
            params={"p": str(zones.staging / f.batch_id / "issues.parquet")},
        ).fetchall()
        for source_row, rule in rows:
            key = (f.agency, f.file_name, source_row)
            quarantined.add(key)
            rules.setdefault(key, set()).add(rule)
    expected = {(b["agency"], b["file"], b["source_row"]) for b in truth.broken}
    assert quarantined == expected
    for b in truth.broken:
        assert b["expected_rule"] in rules[(b["agency"], b["file"], b["source_row"])], b


def test_warehouse_answers_analyst_questions_in_one_query_each(demo_run):
    zones, *_ = demo_run
    con = _warehouse(zones)
    per_month = con.sql(
        "SELECT destination_country, date_trunc('month', departure_date) AS month, count(*) FROM placements "
        "GROUP BY ALL"
    ).fetchall()
    assert per_month
    women = con.sql(
        "SELECT sector, avg(CASE WHEN sex = 'F' THEN 1 ELSE 0 END) FROM placements "
        "WHERE sector IS NOT NULL GROUP BY ALL"
    ).fetchall()
    assert dict(women)["INFORMAL"] > dict(women)["FORMAL"]
    single = con.execute("SELECT count(*) FROM placements WHERE n_sources = 1").fetchall()[0][0]
    total = con.execute("SELECT count(*) FROM placements").fetchall()[0][0]
    assert 0 < single < total


def test_a_placement_reported_by_two_agencies_is_counted_once(demo_run):
    zones, _, truth, _ = demo_run
    con = _warehouse(zones)
    records = con.execute("SELECT count(*) FROM placement_records").fetchall()[0][0]
    placements = con.execute("SELECT count(*) FROM placements").fetchall()[0][0]
    multi = con.execute("SELECT count(*) FROM placements WHERE n_sources > 1").fetchall()[0][0]
    assert multi > 0
    assert placements == records - con.execute("SELECT sum(n_sources - 1) FROM placements").fetchall()[0][0]
    assert multi <= truth.overlaps


def test_no_direct_identifier_of_the_demo_inbox_appears_under_the_warehouse(demo_run):
    zones, _, truth, _ = demo_run
    needles = [i.encode() for i in truth.identifiers if len(i) >= 6]
    hits = []
    for path in zones.warehouse.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [(str(path), n) for n in needles if n in data]
    con = _warehouse(zones)
    for (table,) in con.sql("SELECT table_name FROM information_schema.tables").fetchall():
        text = " ".join(str(r) for r in con.sql(f'SELECT * FROM "{table}"').fetchall())
        hits += [(table, n) for n in needles if n.decode() in text]
    assert hits == []


def test_every_file_received_has_a_report_for_the_agency(demo_run):
    zones, *_ = demo_run
    for f in Ledger(zones.ledger_db).files():
        pages = list((zones.reports / f.agency).glob(f"*_{f.sha256[:8]}/index.html"))
        assert len(pages) == 1, f.file_name


def test_running_again_on_the_same_files_changes_nothing(demo_run, tmp_path):
    zones, key, truth, _ = demo_run
    con = _warehouse(zones)
    before = (
        con.execute("SELECT count(*) FROM placement_records").fetchall()[0][0],
        con.execute("SELECT count(*) FROM placements").fetchall()[0][0],
    )
    con.close()
    demo.generate(zones.inbox, seed=7, rows=ROWS)  # the same bytes, dropped again
    summary = ingest_flow(home=str(zones.home), key_file=str(key), stable_seconds=0)
    assert summary["received"] == 0
    assert summary["duplicates"] == len(truth.rows_by_file)
    assert (summary["rows_published"], summary["placements_published"]) == before
    assert not any(p.is_file() for p in zones.inbox.rglob("*"))


def test_a_corrected_resend_of_rejected_rows_is_accepted_without_duplicates(demo_run):
    zones, key, _, _ = demo_run
    agency = "bp2mi_siskop2mi"
    rejected = sorted((zones.reports / agency).glob("*/rejected_rows.csv"))[0]
    with rejected.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fixable = [r for r in rows if "harmonise.unknown_code.destination_country" in r["alasan_reason"]
               or "negara tujuan" in r["alasan_reason"].lower()]  # fmt: skip
    fixable = [r for r in fixable if "NIK" not in r["alasan_reason"]][:3]
    assert fixable, "the demo has unknown countries in the national export"
    con = _warehouse(zones)
    before = con.execute("SELECT count(*), count(DISTINCT record_key) FROM placement_records").fetchall()[0]
    keys_before = {k for (k,) in con.sql("SELECT record_key FROM placement_records").fetchall()}
    con.close()
    resend = zones.inbox / agency / "perbaikan.csv"
    with resend.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for r in fixable:
            writer.writerow({**r, "Negara Tujuan": "Hong Kong"})
        writer.writerow(rows[0] if rows[0] not in fixable else rows[1])  # a still-broken row, sent again
    old = time.time() - 60
    os.utime(resend, (old, old))
    summary = ingest_flow(home=str(zones.home), key_file=str(key), stable_seconds=0)
    con = _warehouse(zones)
    after = con.execute("SELECT count(*), count(DISTINCT record_key) FROM placement_records").fetchall()[0]
    assert after[0] == after[1]
    new_keys = {k for (k,) in con.sql("SELECT record_key FROM placement_records").fetchall()} - keys_before
    assert new_keys == {f"{agency}:{r['No Registrasi']}" for r in fixable}
    assert after[0] == before[0] + len(fixable)
    assert summary["rows_accepted"] == len(fixable)


def test_replay_after_a_fix_reprocesses_archived_files_exactly_once(demo_run, tmp_path):
    zones, key, _, _ = demo_run
    con = _warehouse(zones)
    before = con.execute("SELECT count(*) FROM placement_records").fetchall()[0][0]
    con.close()
    ledger = Ledger(zones.ledger_db)
    for f in ledger.files():
        ledger.reopen(f.sha256)
    summary = ingest_flow(home=str(zones.home), key_file=str(key), stable_seconds=0)
    assert summary["received"] == 0
    assert summary["processed"] == len(ledger.files())
    con = _warehouse(zones)
    assert con.execute("SELECT count(*) FROM placement_records").fetchall()[0][0] == before
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_data_docs_for_the_engineer_exist_and_hold_no_identifier(demo_run):
    zones, _, truth, _ = demo_run
    pages = list(zones.reports.glob("*/*/data_docs/validation.html"))
    assert len(pages) == len(Ledger(zones.ledger_db).files())
    needles = [i for i in truth.identifiers if len(i) >= 6]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "expect_column_values" in text or "Expectation" in text
        assert not [n for n in needles if n in text]


def test_agency_index_lists_each_agency_report(demo_run):
    zones, *_ = demo_run
    for agency in {f.agency for f in Ledger(zones.ledger_db).files()}:
        assert (zones.reports / agency / "index.html").exists()


def test_every_null_code_is_explained_by_a_flag_or_a_field_the_agency_does_not_send(demo_run):
    from pipelines import config
    from pipelines.schema import load_schema

    zones, *_ = demo_run
    con = _warehouse(zones)
    for field in [f.name for f in load_schema().fields if f.codelist]:
        rows = con.execute(
            f"SELECT source_agency, count(*) FROM placement_records WHERE {field} IS NULL "
            f"AND coalesce(quality_flags, '') NOT LIKE '%.{field}%' GROUP BY ALL"
        ).fetchall()
        for agency, _ in rows:
            cfg = config.agency(agency)
            sent = cfg.provided_fields()
            if field == "occupation_code":
                sent.discard("occupation_code")
            assert field not in sent, f"{agency} sends {field} but some nulls carry no warning"


def test_each_onboarded_agency_reaches_published_rows_from_its_own_file_format(demo_run):
    from pipelines import config

    zones, *_ = demo_run
    con = _warehouse(zones)
    published = dict(con.execute("SELECT source_agency, count(*) FROM placement_records GROUP BY ALL").fetchall())
    formats = {a: c.read.format for a, c in config.agencies().items()}
    assert set(published) == set(formats)
    assert all(n > 0 for n in published.values())
    assert {"csv", "xlsx", "json"} <= set(formats.values())


def test_quarantine_command_lists_held_rows_by_agency_and_rule(demo_run):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.status import quarantine_summary

    zones, _, truth, _ = demo_run
    result = CliRunner().invoke(app, ["quarantine", "--home", str(zones.home)], terminal_width=200)
    assert result.exit_code == 0, result.output
    for b in truth.broken:
        assert b["agency"] in result.output and b["expected_rule"] in result.output
    rows = quarantine_summary(zones, "kbri_kuala_lumpur")
    assert rows and {r["agency"] for r in rows} == {"kbri_kuala_lumpur"}


CORRECTIONS = {  # the one field a row fails on -> the officer's correction of that cell
    "departure_date": lambda v: re.sub(r"\b(29|30|31)\b", "28", v),  # a day its month does not have: the 28th
    "destination_country": lambda v: "Malaysia",  # a region ('Timur Tengah', 'Eropa') or nothing: the country
    "nik": lambda v: v + "0" if re.fullmatch(r"[0-9]{15}", v) else v,  # a digit lost in typing it
}


def _failing_fields(zones: Zones, report_folder: Path) -> dict[int, set[str]]:
    """The fields of each quarantined row's critical issues, by row number, in the file a report is about."""
    sha8 = report_folder.name.rsplit("_", 1)[1]
    batch = next(f.batch_id for f in Ledger(zones.ledger_db).files() if f.sha256.startswith(sha8))
    failing: dict[int, set[str]] = {}
    for row, field in duckdb.sql(
        "SELECT source_row, field FROM read_parquet($p) WHERE severity = 'critical'",
        params={"p": str(zones.staging / batch / "issues.parquet")},
    ).fetchall():
        failing.setdefault(row, set()).add(field)
    return failing


def _correct_one_row(header: list[str], rows: list[list[str]], agency: str, failing: dict[int, set[str]]) -> int | None:
    """The officer's correction of the first row that fails on one field `CORRECTIONS` can put right: its index,
    or None when there is no such row."""
    columns = config.agency(agency).columns
    number = header.index("baris_row")
    for i, row in enumerate(rows):
        fields = failing[int(row[number])]
        field = next(iter(fields))
        if len(fields) > 1 or field not in CORRECTIONS:
            continue
        aliases = {normalise_header(a) for a in columns[field]}
        column = next(c for c, h in enumerate(header) if normalise_header(h) in aliases)
        corrected = CORRECTIONS[field](row[column])
        if corrected != row[column]:
            row[column] = corrected
            return i
    return None


def _send_back_corrected(zones: Zones, rejected: Path, agency: str) -> tuple[int, int] | None:
    """rejected_rows.csv / .xlsx with one row corrected, dropped into the agency's inbox as the officer would
    (the CSV rewritten as it came, the workbook saved again by a spreadsheet library): (rows, corrected row's
    number in the file), or None when it has no row to correct."""
    failing = _failing_fields(zones, rejected.parent)
    target = zones.inbox / agency / f"kirim_ulang.{rejected.suffix[1:]}"
    if rejected.suffix == ".csv":
        with rejected.open(encoding="utf-8-sig", newline="") as fh:
            header, *rows = list(csv.reader(fh))
        fixed = _correct_one_row(header, rows, agency, failing)
        if fixed is None:
            return None
        with target.open("w", encoding="utf-8-sig", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])
    else:
        wb = openpyxl.load_workbook(rejected)
        ws = wb.worksheets[0]
        header, *rows = [["" if v is None else str(v) for v in r] for r in ws.iter_rows(values_only=True)]
        fixed = _correct_one_row(header, rows, agency, failing)
        if fixed is None:
            return None
        for c, value in enumerate(rows[fixed], start=1):
            ws.cell(row=fixed + 2, column=c, value=value)
        wb.save(target)
    old = time.time() - 60
    os.utime(target, (old, old))
    return len(rows), fixed + 2


def test_every_agency_reads_back_its_rejected_rows_xlsx_and_csv_corrected(demo_run):
    """The report's rows to fix, one corrected, dropped back: read for the agency they were written for, whatever
    its agreed format (CSV, XLSX, JSON), encoding (UTF-16, Windows-1252), delimiter, sheet or header row."""
    zones, key, _, _ = demo_run
    sent: dict[tuple[str, str], tuple[int, int]] = {}
    for agency in sorted(config.agencies()):
        for ext in ("xlsx", "csv"):
            files = sorted((zones.reports / agency).glob(f"*/rejected_rows.{ext}"))
            outcome = next(filter(None, (_send_back_corrected(zones, f, agency) for f in files)), None)
            assert outcome, f"no rejected_rows.{ext} of {agency} has a row to correct"
            sent[(agency, f"kirim_ulang.{ext}")] = outcome
    ingest_flow(home=str(zones.home), key_file=str(key), stable_seconds=0)
    received = {(f.agency, f.file_name): f for f in Ledger(zones.ledger_db).files()}
    for (agency, name), (n_rows, corrected) in sent.items():
        f = received[(agency, name)]
        assert f.status in ("processed", "held"), (agency, name, f.reason_en)
        assert f.rows_read == n_rows, (agency, name)
        failing = _failing_fields(zones, next((zones.reports / agency).glob(f"*_{f.sha256[:8]}")))
        assert set(failing) == set(range(2, n_rows + 2)) - {corrected}, (agency, name)
        facts = json.loads(next((zones.reports / agency).glob(f"*_{f.sha256[:8]}/report.json")).read_text("utf-8"))
        assert any("returned rejected-rows file" in w["en"] for w in facts["warnings"]), (agency, name)

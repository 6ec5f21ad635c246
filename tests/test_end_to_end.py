"""The demo inbox, end to end through the real flow (Prefect, GX, DuckDB), checked against the generator's truth."""

from __future__ import annotations

import csv
import os
import shutil
import time

import duckdb
import pytest

from pipelines import demo
from pipelines.flows import ingest_flow
from pipelines.keys import create_key_file
from pipelines.ledger import Ledger
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

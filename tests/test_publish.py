"""Publishing: write-audit-publish of the warehouse, on synthetic staged batches (real DuckDB and Parquet)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import test_publish_support as support
from test_publish_support import Ledger, agencies, issues

from pipelines import settings
from pipelines.publish import current_release, list_releases, prune, publish, rollback
from pipelines.schema import load_schema
from pipelines.settings import Zones

IDENTIFIERS = set(load_schema().direct_identifiers())


codelists = support.codelists  # fixture
ledger = support.ledger  # fixture
zones = support.zones  # fixture


def run(zones: Zones, ledger: Ledger, codelists: Path, **kw: object):
    return publish(zones, ledger.batches, agencies(), codelists_dir=codelists, **kw)


def query(zones: Zones, sql: str) -> list[tuple]:
    with duckdb.connect(str(zones.analyst_db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_later_batch_supersedes_earlier(zones, ledger, codelists):
    ledger.add("bp2mi", n=20)
    ledger.add("bp2mi", n=5, overrides={"sector": "'formal'", "contract_months": "36"})
    result = run(zones, ledger, codelists)
    assert result.switched, result.reason
    assert query(zones, "SELECT count(*) FROM placement_records") == [(20,)]
    rows = query(
        zones,
        "SELECT DISTINCT batch_id, sector, contract_months FROM placement_records WHERE source_record_id::INT < 5",
    )
    assert rows == [("b0002-bp2mi", "formal", 36)]
    assert query(zones, "SELECT count(*) FROM placement_records WHERE batch_id = 'b0001-bp2mi'") == [(15,)]


def test_cross_agency_placement_counted_once_priority_wins(zones, ledger, codelists):
    ledger.add("disnaker_jatim", n=10, day_shift=5, overrides={"sector": "'formal'"})  # priority 5
    ledger.add("bp2mi", n=10, overrides={"sector": "'informal'"})  # priority 1, staged later or earlier alike
    ledger.add("kbri_hk", n=3, day_shift=400)  # same workers, >31 days later: other placements
    assert run(zones, ledger, codelists).switched
    assert query(zones, "SELECT count(*) FROM placements") == [(13,)]
    merged = query(
        zones,
        "SELECT source_agencies, n_sources, primary_agency, sector, conflicting_fields, "
        "len(source_record_keys) FROM placements WHERE n_sources > 1",
    )
    assert len(merged) == 10
    for agencies_, n, primary, sector, conflicts, n_keys in merged:
        assert agencies_ == ["bp2mi", "disnaker_jatim"] and n == 2 and n_keys == 2
        assert primary == "bp2mi" and sector == "informal"
        assert "sector" in conflicts and "departure_date" in conflicts
    assert query(zones, "SELECT count(*) FROM v_single_source_placements WHERE source_agency = 'kbri_hk'") == [(3,)]
    ids = query(zones, "SELECT placement_id FROM placements ORDER BY 1")
    assert run(zones, ledger, codelists).switched  # deterministic ids across releases
    assert query(zones, "SELECT placement_id FROM placements ORDER BY 1") == ids


def test_agencies_that_agree_on_a_placement_show_no_conflict_though_each_numbers_its_records_itself(
    zones, ledger, codelists
):
    ledger.add("bp2mi", n=5)
    ledger.add("disnaker_jatim", n=5, overrides={"source_record_id": "'JTM-' || i::VARCHAR"})
    assert run(zones, ledger, codelists).switched
    assert query(zones, "SELECT n_sources, conflicting_fields FROM placements") == [(2, [])] * 5


def test_a_passport_only_record_is_matched_to_the_same_workers_nik_record_in_another_agency(zones, ledger, codelists):
    """Its worker_key is the passport's (no valid NIK); the NIK-keyed record of the other agency carries the
    same passport's key in document_key, which links the two into one placement."""
    ledger.add("bp2mi", n=6)  # worker_key from the NIK, document_key from the passport
    ledger.add("kbri_hk", n=6, day_shift=3, overrides={"worker_key": "sha256('passport-' || i::VARCHAR)"})
    assert run(zones, ledger, codelists).switched
    assert query(zones, "SELECT count(*), sum(n_sources) FROM placements") == [(6, 12)]
    assert query(zones, "SELECT count(DISTINCT placement_id) FROM record_placement") == [(6,)]


@pytest.mark.parametrize(
    "kbri",
    [
        {"day_shift": 400},  # a later placement of the worker, at the same destination: matched, another island
        {"overrides": {"destination_country": "'JPN'"}},  # another destination: a placement of its own
    ],
    ids=["later-departure", "other-destination"],
)
def test_a_placement_of_a_passport_only_record_linked_to_a_nik_keyed_worker_is_under_that_workers_key(
    zones, ledger, codelists, kbri
):
    """Only the mission reported it (no NIK there): it is the NIK-keyed worker's placement, so the overview's
    count(DISTINCT worker_key) FROM placements counts the worker once. The record keeps its own key."""
    ledger.add("bp2mi", n=1)
    passport_only = {"worker_key": "sha256('passport-' || i::VARCHAR)", **kbri.get("overrides", {})}
    ledger.add("kbri_hk", n=1, day_shift=kbri.get("day_shift", 0), overrides=passport_only)
    assert run(zones, ledger, codelists).switched
    assert query(zones, "SELECT count(*), count(DISTINCT worker_key) FROM placements") == [(2, 1)]
    assert query(zones, "SELECT DISTINCT worker_key FROM placements") == query(
        zones, "SELECT worker_key FROM placement_records WHERE source_agency = 'bp2mi'"
    )
    assert query(zones, "SELECT count(DISTINCT worker_key) FROM placement_records") == [(2,)]


def test_a_passport_shared_by_two_nik_keyed_workers_links_no_passport_only_record(zones, ledger, codelists):
    """Which worker it would be is unknown: the passport-only record stays a placement of its own."""
    ledger.add("bp2mi", n=1)
    ledger.add("disnaker_jatim", n=1, overrides={"worker_key": "sha256('another worker')"})
    ledger.add("kbri_hk", n=1, day_shift=3, overrides={"worker_key": "sha256('passport-' || i::VARCHAR)"})
    assert run(zones, ledger, codelists).switched
    assert query(zones, "SELECT count(*) FROM placements") == [(3,)]


def test_batches_staged_before_a_field_was_added_to_the_schema_publish_with_that_field_empty(zones, ledger, codelists):
    """A data root staged by an earlier version has no document_key; it publishes, and `sdmi replay` fills it."""
    for batch in (ledger.add("bp2mi", n=4), ledger.add("kbri_hk", n=2, start=100)):
        accepted = zones.staging / batch.batch_id / "accepted.parquet"
        pq.write_table(pq.read_table(accepted).drop_columns(["document_key"]), accepted)
    assert run(zones, ledger, codelists).switched
    assert query(zones, "SELECT count(*), count(document_key) FROM placement_records") == [(6, 0)]
    ledger.add("disnaker_jatim", n=3, start=200)  # staged now: a file with the field beside the older ones
    assert run(zones, ledger, codelists).switched
    assert query(zones, "SELECT count(*), count(document_key) FROM placement_records") == [(9, 3)]


@pytest.mark.parametrize("bad", ["code", "duplicate"])
def test_failed_audit_leaves_previous_release_current(zones, ledger, codelists, bad):
    ledger.add("bp2mi", n=30)
    good = run(zones, ledger, codelists)
    assert good.switched
    if bad == "code":
        ledger.add("kbri_hk", n=5, overrides={"destination_country": "'XXX'"})
    else:
        ledger.add("kbri_hk", n=5, overrides={"record_key": "'kbri_hk:1'"})
    result = run(zones, ledger, codelists)
    assert not result.switched and result.audits_failed
    expected = "codes_in_codelists" if bad == "code" else "staged_record_key_unique_in_batch"
    assert expected in result.audits_failed and expected in result.reason
    assert os.readlink(zones.current) == f"releases/{good.release_id}"
    assert result.path.name == f"failed-{result.release_id}" and result.path.is_dir()
    assert query(zones, "SELECT count(*) FROM placement_records") == [(30,)]
    assert [r.release_id for r in list_releases(zones)] == [good.release_id]


def test_analyst_reader_neither_blocks_nor_sees_half_state(zones, ledger, codelists):
    ledger.add("bp2mi", n=40)
    assert run(zones, ledger, codelists).switched
    old = duckdb.connect(str(zones.analyst_db), read_only=True)
    try:
        assert old.execute("SELECT count(*) FROM placement_records").fetchone() == (40,)
        ledger.add("kbri_hk", n=25, start=1000)
        assert run(zones, ledger, codelists).switched  # not blocked by the open connection
        assert old.execute("SELECT count(*) FROM placement_records").fetchone() == (40,)
        assert old.execute("SELECT count(*) FROM placements").fetchone() == (40,)
        assert query(zones, "SELECT count(*) FROM placement_records") == [(65,)]
    finally:
        old.close()


def test_rollback_switches_to_previous_then_to_named(zones, ledger, codelists):
    ledger.add("bp2mi", n=10)
    first = run(zones, ledger, codelists)
    ledger.add("kbri_hk", n=10, start=500)
    second = run(zones, ledger, codelists)
    assert query(zones, "SELECT count(*) FROM placement_records") == [(20,)]
    assert rollback(zones) == first.release_id
    assert query(zones, "SELECT count(*) FROM placement_records") == [(10,)]
    assert rollback(zones, second.release_id) == second.release_id
    assert query(zones, "SELECT count(*) FROM placement_records") == [(20,)]


def test_prune_keeps_n_and_never_the_current(zones, ledger, codelists):
    ledger.add("bp2mi", n=5)
    ids = [run(zones, ledger, codelists, keep=10).release_id for _ in range(4)]
    rollback(zones, ids[0])
    removed = prune(zones, keep=2)
    left = [r.release_id for r in list_releases(zones)]
    assert ids[0] in left and ids[0] not in removed  # current survives although it is the oldest
    assert left == [ids[0], ids[2], ids[3]]
    assert run(zones, ledger, codelists, keep=2).switched
    left = [r.release_id for r in list_releases(zones)]
    assert len(left) == 2 and left[-1] == os.readlink(zones.current).split("/")[-1]


READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
for line in sys.stdin:  # one query per line asked, until stdin closes
    print(con.execute("SELECT count(*) FROM placements").fetchone()[0], flush=True)
"""


def test_prune_keeps_a_release_an_analyst_has_open_until_it_is_closed(zones, ledger, codelists):
    """Its tables are views over its own Parquet files, read again at every query: deleting them under an open
    connection broke it ('No files found') after `keep` publishes."""
    ledger.add("bp2mi", n=5)
    first = run(zones, ledger, codelists, keep=1)
    analyst = subprocess.Popen(
        [sys.executable, "-c", READER, str(zones.analyst_db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        analyst.stdin.write("?\n")
        analyst.stdin.flush()
        assert analyst.stdout.readline().strip() == "5"
        ledger.add("kbri_hk", n=3, start=500)
        run(zones, ledger, codelists, keep=1)
        assert run(zones, ledger, codelists, keep=1).switched
        assert first.release_id in [r.release_id for r in list_releases(zones)]
        analyst.stdin.write("?\n")
        analyst.stdin.flush()
        assert analyst.stdout.readline().strip() == "5"  # still its own release, whole
    finally:
        analyst.stdin.close()
        analyst.wait(timeout=30)
    assert first.release_id in prune(zones, keep=1)


def test_analyst_questions_each_one_query(zones, ledger, codelists):
    ledger.add("bp2mi", n=200)
    ledger.add("disnaker_jatim", n=50, step=4, day_shift=2)
    assert run(zones, ledger, codelists).switched
    per_month = query(
        zones,
        "SELECT departure_year, departure_month, destination_country, sum(placements) "
        "FROM v_monthly_placements GROUP BY ALL ORDER BY ALL",
    )
    assert sum(r[3] for r in per_month) == 200
    women = query(
        zones,
        "SELECT sector, sum(women) / sum(placements) FROM v_women_share_by_sector GROUP BY sector ORDER BY sector",
    )
    assert {s for s, _ in women} == {"formal", "informal"} and all(0 < share < 1 for _, share in women)
    single = query(zones, "SELECT source_agency, count(*) FROM v_single_source_placements GROUP BY ALL")
    assert single == [("bp2mi", 150)]
    recon = query(
        zones,
        "SELECT agency, sum(rows_reported), sum(matched_in_other_agencies), sum(unique_to_agency) "
        "FROM v_agency_reconciliation GROUP BY ALL ORDER BY 1",
    )
    assert recon == [("bp2mi", 200, 50, 150), ("disnaker_jatim", 50, 50, 0)]


def test_data_quality_counts_rules_without_values(zones, ledger, codelists):
    ledger.add(
        "bp2mi",
        n=10,
        quarantined=2,
        warned=1,
        issue_rows=issues(
            [
                (3, "nik.format", "critical", "nik"),
                (3, "age.minimum_18", "critical", "age"),
                (4, "nik.format", "critical", "nik"),
                (5, "contract_months.range", "warning", "contract_months"),
            ]
        ),
    )
    ledger.add("kbri_hk", n=4, status="held")
    assert run(zones, ledger, codelists).switched
    rows = query(
        zones,
        "SELECT agency, status, rows_read, rows_accepted, rows_held, rows_quarantined, rows_warned, "
        "rows_by_rule['nik.format'] FROM data_quality ORDER BY seq",
    )
    # nothing of a held file is published: the rows that passed its checks are held, not accepted (was 4 accepted)
    assert rows == [("bp2mi", "processed", 12, 10, 0, 2, 1, 2), ("kbri_hk", "held", 4, 0, 4, 0, 0, None)]
    cols = {r[0] for r in query(zones, "SELECT column_name FROM duckdb_columns() WHERE table_name LIKE 'data_qual%'")}
    assert "value" not in cols and "message_en" not in cols
    assert query(zones, "SELECT count(*) FROM placement_records WHERE source_agency = 'kbri_hk'") == [(0,)]


def test_rules_are_counted_for_processed_and_held_files_and_not_for_rejected_ones(zones, ledger, codelists):
    broken = issues([(2, "nik.format", "critical", "nik"), (3, "nik.format", "critical", "nik")])
    ledger.add("bp2mi", n=8, quarantined=2, issue_rows=broken)
    ledger.add("disnaker_jatim", n=0, quarantined=2, status="held", issue_rows=broken)
    # staged by an earlier processing of a file since replayed and rejected (a home from before staging was
    # cleared on rejection): the ledger's verdict is what counts
    ledger.add("kbri_hk", n=0, status="rejected", issue_rows=broken)
    assert run(zones, ledger, codelists).switched
    rules = query(zones, "SELECT agency, rule_id, rows FROM data_quality_rules ORDER BY agency")
    assert rules == [("bp2mi", "nik.format", 2), ("disnaker_jatim", "nik.format", 2)]
    by_rule = query(zones, "SELECT agency, status, cardinality(rows_by_rule) FROM data_quality ORDER BY seq")
    assert by_rule == [("bp2mi", "processed", 1), ("disnaker_jatim", "held", 1), ("kbri_hk", "rejected", 0)]


def test_no_identifier_columns_anywhere_in_warehouse(zones, ledger, codelists):
    ledger.add("bp2mi", n=50)
    assert run(zones, ledger, codelists).switched
    for path in zones.warehouse.rglob("*"):
        assert not any(i in path.name.lower() for i in IDENTIFIERS), path
        if path.suffix == ".parquet":
            names = set(pq.read_schema(path).names)
        elif path.suffix == ".csv":
            names = set(path.read_text(encoding="utf-8").splitlines()[0].split(","))
        elif path.suffix == ".duckdb":
            with duckdb.connect(str(path), read_only=True) as con:
                names = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns()").fetchall()}
        else:
            continue
        assert not names & IDENTIFIERS, (path, names & IDENTIFIERS)


def test_manifest_checksums_match_files(zones, ledger, codelists):
    ledger.add("bp2mi", n=30)
    result = run(zones, ledger, codelists)
    release = zones.current.resolve()
    manifest = json.loads((release / "manifest.json").read_text(encoding="utf-8"))
    files = {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    for rel, meta in manifest["files"].items():
        assert hashlib.sha256((release / rel).read_bytes()).hexdigest() == meta["sha256"], rel
    assert manifest["release_id"] == result.release_id and manifest["counts"]["placement_records"] == 30
    assert [b["batch_id"] for b in manifest["batches"]] == ["b0001-bp2mi"]
    assert any(p.startswith("parquet/placement_records/departure_year=") for p in files)
    pkg = json.loads((release / "datapackage.json").read_text(encoding="utf-8"))
    assert {"placement_records", "placements"} <= {r["name"] for r in pkg["resources"]}


def test_comments_from_schema_in_both_languages(zones, ledger, codelists):
    ledger.add("bp2mi", n=5)
    assert run(zones, ledger, codelists).switched
    desc = load_schema().field("destination_country").description
    assert query(
        zones,
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'placement_records' "
        "AND column_name = 'destination_country'",
    ) == [(f"{desc.id} / {desc.en}",)]
    assert all(
        c
        for (c,) in query(
            zones, "SELECT comment FROM duckdb_views() WHERE NOT internal AND starts_with(view_name, 'v_')"
        )
    )


def test_every_column_of_the_analyst_views_is_described_in_the_database_and_the_data_dictionary(
    zones, ledger, codelists
):
    ledger.add("bp2mi", n=5)
    assert run(zones, ledger, codelists).switched
    columns = query(
        zones,
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE starts_with(table_name, 'v_')",
    )
    assert {t for t, _, _ in columns} == {p.stem for p in (settings.SQL_DIR / "views").glob("*.sql")}
    assert [(t, c) for t, c, comment in columns if not comment or " / " not in comment] == []
    readme = (zones.current / "README.md").read_text(encoding="utf-8")
    assert all(f"`{c}`" in readme.split(f"## `{t}`")[1] for t, c, _ in columns)


def test_empty_ledger_publishes_empty_release(zones, codelists):
    result = publish(zones, [], agencies(), codelists_dir=codelists)
    assert result.switched, result.reason
    assert query(zones, "SELECT count(*) FROM placements") == [(0,)]


def _release_digest(zones: Zones) -> dict[str, object]:
    """Every published record table, as an order-independent checksum of its rows."""
    tables = ("placement_records", "placements", "record_placement")
    return {t: query(zones, f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {t}") for t in tables}


def test_build_under_a_tight_memory_limit_works_in_a_scratch_file_and_publishes_the_same_release(
    zones, ledger, codelists, monkeypatch
):
    """110,000 records take about 53 MB in memory: more than half of 100 MB, so the build's working tables go
    to a compressed scratch file; under the default 1 GB they stay in memory."""
    ledger.add("bp2mi", n=60_000)
    ledger.add("disnaker_jatim", n=30_000)
    ledger.add("bp2mi", n=20_000)
    roomy_steps: list[str] = []
    assert run(zones, ledger, codelists, progress=roomy_steps.append).switched
    roomy = _release_digest(zones)
    monkeypatch.setenv("SDMI_PUBLISH_MEMORY", "100MB")
    tight_steps: list[str] = []
    tight = run(zones, ledger, codelists, progress=tight_steps.append)
    assert tight.switched, tight.reason
    assert _release_digest(zones) == roomy
    assert any("110,000 staged records (working tables in memory)" in s for s in roomy_steps)
    assert any("110,000 staged records (working tables in .scratch-" in s for s in tight_steps)


def test_publish_memory_limit_is_read_in_duckdbs_units(monkeypatch):
    monkeypatch.setenv("SDMI_PUBLISH_MEMORY", "1GB")
    assert settings.publish_memory_bytes() == 1_000_000_000
    monkeypatch.setenv("SDMI_PUBLISH_MEMORY", "1.5 GiB")
    assert settings.publish_memory_bytes() == 3 * 2**29


@pytest.mark.parametrize("value", ["lots", "1.5", "-1GB", "GB"])
def test_publish_memory_limit_that_is_not_an_amount_is_refused(monkeypatch, value):
    monkeypatch.setenv("SDMI_PUBLISH_MEMORY", value)
    with pytest.raises(ValueError, match="SDMI_PUBLISH_MEMORY"):
        settings.publish_memory_limit()


def test_memory_limit_too_small_to_build_fails_with_its_name_and_keeps_the_current_release(
    zones, ledger, codelists, monkeypatch
):
    ledger.add("bp2mi", n=60_000)
    first = run(zones, ledger, codelists)
    ledger.add("disnaker_jatim", n=30_000)
    monkeypatch.setenv("SDMI_PUBLISH_MEMORY", "8MB")
    result = run(zones, ledger, codelists)
    assert not result.switched
    assert "SDMI_PUBLISH_MEMORY=8MB" in result.reason and "Memori tidak cukup" in result.reason
    assert current_release(zones) == first.release_id


def test_the_build_database_is_removed_after_a_release_and_after_a_failed_build(zones, ledger, codelists, monkeypatch):
    ledger.add("bp2mi", n=60_000)
    assert run(zones, ledger, codelists).switched
    assert not list(zones.releases.glob(".scratch-*"))
    monkeypatch.setenv("SDMI_PUBLISH_MEMORY", "8MB")  # too little: the build fails
    assert not run(zones, ledger, codelists).switched
    assert not list(zones.releases.glob(".scratch-*"))


def test_a_scratch_database_left_by_a_crashed_publish_is_removed_by_the_next(zones, ledger, codelists):
    ledger.add("bp2mi", n=50)
    zones.releases.mkdir(parents=True, exist_ok=True)
    left = zones.releases / ".scratch-20250101T000000000Z-deadbeef.duckdb"
    left.write_bytes(b"half a build")
    assert run(zones, ledger, codelists).switched
    assert not left.exists()

"""The fast publish build gives what the plain SQL gives: partition layout, placements, links, GX verdicts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import test_publish_support as support
from test_publish_support import Ledger, agencies

from pipelines import dictionary
from pipelines.publish import AuditResult, _gx_validate, _write_partitions, publish
from pipelines.settings import Zones

codelists = support.codelists  # fixture
ledger = support.ledger  # fixture
zones = support.zones  # fixture


def _files(folder: Path) -> dict[str, list[tuple]]:
    """Relative path of every Parquet file -> its rows, sorted."""
    out = {}
    for p in sorted(folder.rglob("*.parquet")):
        rows = duckdb.sql(f"SELECT * FROM read_parquet('{p}', hive_partitioning = false) ORDER BY ALL").fetchall()
        out[str(p.relative_to(folder))] = rows
    return out


@pytest.mark.parametrize("empty", [False, True])
def test_partitions_match_duckdb_partition_by(tmp_path: Path, empty: bool) -> None:
    cols = [
        dictionary.Col("k", "INTEGER", "", ""),
        dictionary.Col("departure_year", "INTEGER", "", ""),
        dictionary.Col("departure_month", "INTEGER", "", ""),
    ]
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES (1, 2024, 1), (2, 2024, 1), (3, 2024, 12), (4, NULL, 3), "
        "(5, 2025, NULL), (6, NULL, NULL)) v(k, departure_year, departure_month)" + (" WHERE false" if empty else "")
    )
    _write_partitions(con, "SELECT k, departure_year, departure_month FROM t WHERE {where}", tmp_path / "ours", cols)
    ours = _files(tmp_path / "ours")
    if empty:
        assert ours == {"empty.parquet": []}
        return
    con.execute(
        f"COPY t TO '{tmp_path / 'duckdb'}' "
        "(FORMAT parquet, PARTITION_BY (departure_year, departure_month), WRITE_PARTITION_COLUMNS true)"
    )
    assert ours == _files(tmp_path / "duckdb")


REFERENCE = """
WITH m AS (
    SELECT r.*, coalesce(a.priority, 1000) AS priority
    FROM read_parquet('{rel}/parquet/placement_records/**/*.parquet', hive_partitioning = false) r
    LEFT JOIN (VALUES ('bp2mi', 1), ('disnaker_jatim', 5), ('kbri_hk', 9)) a(code, priority) ON a.code = r.source_agency
), c AS (
    SELECT *, CASE WHEN departure_date - lag(departure_date) OVER w <= 31 THEN NULL ELSE record_key END AS s
    FROM m WINDOW w AS (PARTITION BY worker_key, destination_country ORDER BY departure_date, record_key)
), g AS (
    SELECT *, CASE WHEN worker_key IS NULL OR destination_country IS NULL THEN record_key
                   ELSE last_value(s IGNORE NULLS) OVER (PARTITION BY worker_key, destination_country
                        ORDER BY departure_date, record_key ROWS UNBOUNDED PRECEDING) END AS gid
    FROM c
), p AS (
    SELECT gid, md5(string_agg(record_key, '|' ORDER BY record_key)) AS placement_id,
           arg_min(record_key, (priority, record_key)) AS primary_record_key,
           min(departure_date) AS first_departure_date, max(departure_date) AS last_departure_date,
           list_sort(list_distinct(list(source_agency))) AS source_agencies,
           list_sort(list(record_key)) AS source_record_keys,
           count(DISTINCT source_agency)::INTEGER AS n_sources, count(*)::INTEGER AS n_records
    FROM g GROUP BY gid
)
"""


def _assert_matches_reference(rel: Path) -> None:
    """Every placement and link equals the plain window-over-everything SQL; values from the primary record."""
    con = duckdb.connect()
    ref = REFERENCE.format(rel=rel)
    placements = f"read_parquet('{rel}/parquet/placements/**/*.parquet', hive_partitioning = false)"
    records = f"read_parquet('{rel}/parquet/placement_records/**/*.parquet', hive_partitioning = false)"
    keys = "placement_id, primary_record_key, first_departure_date, last_departure_date, source_agencies, "
    keys += "source_record_keys, n_sources, n_records"
    expected = con.execute(f"{ref} SELECT {keys} FROM p ORDER BY ALL").fetchall()
    assert con.execute(f"SELECT {keys} FROM {placements} ORDER BY ALL").fetchall() == expected
    values = "worker_key, sex, sector, destination_country, departure_date, departure_year, departure_month"
    assert not con.execute(
        f"SELECT count(*) FROM {placements} p JOIN {records} r ON r.record_key = p.primary_record_key "
        f"WHERE ({', '.join('p.' + v for v in values.split(', '))}) "
        f"IS DISTINCT FROM ({', '.join('r.' + v for v in values.split(', '))})"
    ).fetchone()[0]
    links = f"read_parquet('{rel}/parquet/record_placement/*.parquet')"
    expected_links = con.execute(
        f"{ref} SELECT g.record_key, p.placement_id, g.source_agency FROM g JOIN p USING (gid) ORDER BY ALL"
    ).fetchall()
    assert con.execute(f"SELECT * FROM {links} ORDER BY ALL").fetchall() == expected_links


def _messy(ledger: Ledger) -> None:
    """Three agencies; shared workers inside, at the edge of and beyond the window; chains; ties; re-sent rows."""
    ledger.add("bp2mi", n=300)
    ledger.add("disnaker_jatim", n=150, step=2, day_shift=31)  # at the edge: same placement
    ledger.add("kbri_hk", n=100, step=3, day_shift=32)  # one day beyond bp2mi, within disnaker: a chain
    ledger.add("kbri_hk", n=40, start=1000, day_shift=0)  # workers of their own
    ledger.add("disnaker_jatim", n=60, start=10, step=5, day_shift=0)  # same day as bp2mi: ties on the date
    ledger.add("bp2mi", n=50, start=20, overrides={"sector": "'formal'"})  # later versions supersede
    ledger.add("kbri_hk", n=30, step=7, day_shift=400)  # same workers, another placement


def test_placements_match_plain_sql(zones: Zones, ledger: Ledger, codelists: Path) -> None:
    _messy(ledger)
    result = publish(zones, ledger.batches, agencies(), codelists_dir=codelists)
    assert result.switched, result.reason
    assert 1 < result.counts["placements"] < result.counts["placement_records"]
    _assert_matches_reference(result.path)


def test_placements_match_plain_sql_with_missing_keys(zones: Zones, ledger: Ledger, codelists: Path) -> None:
    """A record without worker or destination is its own placement (GX then fails the release)."""
    _messy(ledger)
    nulls = "CASE WHEN i % 11 = 0 THEN NULL ELSE {} END"
    ledger.add(
        "disnaker_jatim",
        n=80,
        start=2000,
        overrides={
            "worker_key": nulls.format("sha256('worker-' || (i % 40)::VARCHAR)"),
            "destination_country": "CASE WHEN i % 13 = 0 THEN NULL ELSE 'HKG' END",
        },
    )
    result = publish(zones, ledger.batches, agencies(), codelists_dir=codelists)
    assert not result.switched and "gx_placement_records" in (result.reason or "")
    _assert_matches_reference(result.path)


@pytest.mark.parametrize(
    ("rows", "failed"),
    [
        ([("a", "w1", "KOR"), ("b", "w1", "HKG")], []),
        ([("a", "w1", "KOR"), ("a", "w2", "HKG")], ["expect_column_values_to_be_unique(record_key)"]),
        ([("a", "w1", "KOR"), (None, "w2", "HKG")], ["expect_column_values_to_not_be_null(record_key)"]),
        ([("a", None, "KOR"), ("b", "w2", "HKG")], ["expect_column_values_to_not_be_null(worker_key)"]),
        ([("a", "w1", "KOR"), ("b", "w2", None)], ["expect_column_values_to_not_be_null(destination_country)"]),
        ([("a", "w1", None), ("b", "w2", None)], ["expect_column_values_to_not_be_null(destination_country)"]),
    ],
)
def test_gx_fails_exactly_when_a_row_fails(rows: list[tuple], failed: list[str]) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (record_key VARCHAR, worker_key VARCHAR, destination_country VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    con.execute("CREATE VIEW placement_records AS SELECT * FROM t")
    assert _gx_validate(con) == AuditResult("gx_placement_records", len(failed), failed)

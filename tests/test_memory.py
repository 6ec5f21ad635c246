"""Memory follows the chunk: what keeps a long file's memory flat (real DuckDB and Arrow, no mocks)."""

from __future__ import annotations

import multiprocessing

import pyarrow as pa

from pipelines import settings


def _buffer_addresses(table: pa.Table) -> set[int]:
    return {buf.address for col in table.columns for chunk in col.chunks for buf in chunk.buffers() if buf}


def test_columns_kept_across_chunks_share_no_memory_with_duckdbs_result():
    con = settings.scratch_duckdb()
    try:
        result = con.sql("SELECT range AS source_row, 'key-' || range AS record_key, repeat('x', 50) AS wide "
                         "FROM range(1000)").to_arrow_table()  # fmt: skip
    finally:
        con.close()
    kept = settings.owned_copy(result.select(["record_key", "source_row"]))
    assert kept.equals(result.select(["record_key", "source_row"]))
    assert not _buffer_addresses(kept) & _buffer_addresses(result)


def test_scratch_connections_keep_their_temporary_tables_to_themselves():
    first, second = settings.scratch_duckdb(), settings.scratch_duckdb()
    try:
        first.execute("CREATE TEMP TABLE h AS SELECT 1 AS x")
        second.execute("CREATE TEMP TABLE h AS SELECT 2 AS x")
        assert first.sql("SELECT x FROM h").fetchall() == [(1,)]
        assert second.sql("SELECT x FROM h").fetchall() == [(2,)]
    finally:
        first.close()
        second.close()


def _child_sees_marker(queue: multiprocessing.Queue) -> None:
    con = settings.scratch_duckdb()
    queue.put(con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'parent_marker'").fetchall()[0][0])
    con.close()


def test_a_forked_worker_gets_a_scratch_database_of_its_own():
    con = settings.scratch_duckdb()
    try:
        con.execute("CREATE OR REPLACE TABLE parent_marker AS SELECT 1 AS x")
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_sees_marker, args=(queue,))
        child.start()
        seen = queue.get(timeout=60)
        child.join(timeout=60)
        assert child.exitcode == 0
        assert seen == 0
    finally:
        con.execute("DROP TABLE IF EXISTS parent_marker")
        con.close()


def test_gx_holds_no_dataframe_once_a_validation_is_done():
    import gc
    import weakref
    from datetime import date

    import pandas as pd

    from pipelines import validate

    suite = {
        "name": "held",
        "expectations": [
            {
                "type": "expect_column_values_to_be_unique",
                "kwargs": {"column": "record_key"},
                "meta": {"rule_id": "r", "severity": "critical", "field": "record_key", "message_id": "-"},
            }
        ],
    }
    suite["expectations"][0]["meta"]["message_en"] = "-"
    frame = pd.DataFrame({"record_key": ["a", "b", "a"], "source_row": [1, 2, 3]})
    result = validate.run_suite(frame, suite, validate.parameters_for(_agency(), date(2026, 1, 1)))
    assert not result.success  # it did run
    alive = weakref.ref(frame)
    del frame
    gc.collect()
    assert alive() is None


def _agency():
    from pipelines import config

    return config.agency("bp2mi_siskop2mi")

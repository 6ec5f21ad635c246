"""Value-wise expectations run by GX over distinct values give every row the verdict it gets over all rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines import config, demo, mapping, readers, validate
from pipelines.harmonise import harmonise
from pipelines.keys import load_secret


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("distinct")
    demo.generate(directory, seed=5, rows=3000)
    return directory


def _harmonised(path: Path, agency: str, key_file: Path) -> tuple[pa.Table, config.AgencyConfig]:
    cfg = config.agencies()[agency]
    read = readers.read_file(path, cfg.read, mapping.expected_headers(cfg))
    mapped = mapping.map_batch(read, cfg)
    table = harmonise(mapped.table, cfg, sha256="f" * 64, batch_id="b", secret=load_secret(key_file),
                      received_at=datetime(2025, 1, 1, tzinfo=UTC)).table  # fmt: skip
    return table, cfg


def _issues(table: pa.Table, cfg: config.AgencyConfig, share: float, monkeypatch) -> list[tuple]:
    monkeypatch.setattr(validate, "DISTINCT_SHARE", share)
    issues = validate.validate(table, cfg, run_date=date(2025, 6, 30))
    return sorted(zip(*(issues[c].to_pylist() for c in issues.column_names), strict=True), key=str)


@pytest.mark.parametrize("agency", sorted(config.agencies()))
def test_distinct_value_validation_flags_exactly_the_rows_full_validation_flags(demo_files, agency, key_file,
                                                                                monkeypatch):  # fmt: skip
    paths = sorted((demo_files / agency).iterdir())
    table, cfg = _harmonised(paths[0], agency, key_file)
    monkeypatch.setattr(validate, "DISTINCT_SHARE", 1.0)
    plan = validate.plan_suite(validate.suite_for(cfg), table)
    assert {"destination_country", "sex", "departure_date"} <= set(plan.value_columns)
    everything_per_row = _issues(table, cfg, 0.0, monkeypatch)
    assert everything_per_row, "the demo file has rows that fail the suite"
    assert _issues(table, cfg, 1.0, monkeypatch) == everything_per_row


def test_null_is_a_distinct_value_that_fails_a_not_null_rule(demo_files, key_file, monkeypatch):
    table, cfg = _harmonised(sorted((demo_files / "bp2mi_siskop2mi").iterdir())[0], "bp2mi_siskop2mi", key_file)
    rows = table.num_rows
    table = table.set_column(table.schema.get_field_index("destination_country"), "destination_country",
                             pa.array([None] + ["MYS"] * (rows - 1), pa.string()))  # fmt: skip
    monkeypatch.setattr(validate, "DISTINCT_SHARE", 1.0)
    assert "destination_country" in validate.plan_suite(validate.suite_for(cfg), table).value_columns
    issues = validate.validate(table, cfg, run_date=date(2025, 6, 30)).to_pylist()
    failing = {i["source_row"] for i in issues if i["rule_id"] == "required.destination_country"}
    assert failing == {table["source_row"][0].as_py()}


def test_files_validated_in_parallel_threads_get_the_serial_results(demo_files, key_file):
    """Files are validated from parallel threads; GX is not thread-safe, so this must not mix results up."""
    tables = [_harmonised(sorted((demo_files / a).iterdir())[0], a, key_file) for a in sorted(config.agencies())]
    run_date = date(2025, 6, 30)
    serial = [validate.validate(t, cfg, run_date=run_date) for t, cfg in tables]
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda tc: validate.validate(tc[0], tc[1], run_date=run_date), tables))
            assert [p.to_pylist() for p in parallel] == [s.to_pylist() for s in serial]


@pytest.mark.parametrize("agency", sorted(config.agencies()))
def test_chunks_of_a_file_get_the_whole_files_verdicts_with_each_value_judged_once(
    demo_files, agency, key_file, monkeypatch
):
    table, cfg = _harmonised(sorted((demo_files / agency).iterdir())[0], agency, key_file)
    monkeypatch.setattr(validate, "DISTINCT_SHARE", 1.0)
    run_date = date(2025, 6, 30)
    whole = validate.validate(table, cfg, run_date=run_date, scope="rows")
    judged = validate.JudgedValues()
    step = -(-table.num_rows // 5)  # five chunks
    parts = [validate.validate(table.slice(start, step), cfg, run_date=run_date, scope="rows", judged=judged)
             for start in range(0, table.num_rows, step)]  # fmt: skip
    chunked = pa.concat_tables(parts)
    assert sorted(chunked.to_pylist(), key=str) == sorted(whole.to_pylist(), key=str)
    assert whole.num_rows, "the demo file has rows that fail the suite"
    for column, values in judged.values.items():  # no value went to GX twice
        assert len(values) == len(values.unique()) == len(table[column].unique()), column

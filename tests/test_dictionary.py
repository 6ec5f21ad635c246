"""Generated artefacts (DDL, code-list audit, data dictionary, datapackage) must match the schema."""

from __future__ import annotations

import json

import duckdb

from pipelines import dictionary
from pipelines.schema import load_schema


def test_committed_artefacts_match_the_schema():
    stale = [
        str(p)
        for p, text in dictionary.generated_artefacts().items()
        if not p.exists() or p.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run `sdmi schema generate`; stale: {stale}"


def test_ddl_types_follow_schema_and_hold_no_direct_identifier():
    con = duckdb.connect()
    con.execute(dictionary.records_ddl())
    cols = dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'placement_records'"
        ).fetchall()
    )
    schema = load_schema()
    for f in schema.published_fields():
        assert cols[f.name] == f.sql_type.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")
    assert not set(cols) & set(schema.direct_identifiers())
    comment = con.execute("SELECT comment FROM duckdb_columns() WHERE column_name = 'worker_key'").fetchone()[0]
    assert schema.field("worker_key").description.en in comment


def test_codes_audit_covers_every_coded_field():
    sql = dictionary.codes_audit_sql()
    for f in load_schema().published_fields():
        assert (f"'{f.name}' AS field" in sql) == bool(f.codelist)


def test_datapackage_describes_published_fields_bilingually():
    pkg = json.loads(dictionary.generated_artefacts()[dictionary.DATAPACKAGE_JSON])
    records = next(r for r in pkg["resources"] if r["name"] == "placement_records")
    names = [f["name"] for f in records["schema"]["fields"]]
    assert names[: len(load_schema().published_fields())] == [f.name for f in load_schema().published_fields()]
    assert all(" / " in f["description"] for f in records["schema"]["fields"])
    md = dictionary.dictionary_markdown()
    assert "`placements`" in md and "Kunci pekerja pseudonim" in md and "Pseudonymous worker key" in md

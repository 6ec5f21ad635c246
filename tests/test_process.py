"""One file through all stages without Prefect: held files, resends in another layout, reconciliation."""

from __future__ import annotations

import csv
import io

import duckdb
import pyarrow.parquet as pq
from agency_factory import process_dropped

from pipelines import config, mapping, process, settings
from pipelines.keys import load_secret
from pipelines.ledger import Ledger
from pipelines.process import process_file, read_and_map
from pipelines.schema import load_schema
from pipelines.settings import Zones

HEADER = ["No Registrasi", "NIK", "Nama", "Jenis Kelamin", "Negara Tujuan", "Tanggal Berangkat"]


def _csv(rows: list[list[str]], header=HEADER, delimiter=",") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _good(i: int) -> list[str]:
    return [f"R-{i}", f"35070145079500{i:02d}", "Siti Contoh", "P", "Hong Kong", "01/03/2024"]


def _process(tmp_path, key_file, agency: str, name: str, content: bytes):
    return process_dropped(tmp_path / "home", key_file, agency, name, content)


def test_file_with_too_many_failing_rows_is_held_with_a_reason(tmp_path, key_file):
    rows = [_good(1)] + [[f"R-{i}", "123", "X", "P", "Atlantis", "01/03/2024"] for i in range(2, 6)]
    _zones, entry, outcome = _process(tmp_path, key_file, "bp2mi_siskop2mi", "bad.csv", _csv(rows))
    assert outcome.status == entry.status == "held"
    assert "held" in entry.reason_en.lower() and "ditahan" in entry.reason_id.lower()
    assert (entry.rows_read, entry.rows_accepted, entry.rows_quarantined) == (5, 1, 4)


def test_rows_read_equal_accepted_plus_quarantined_and_staging_matches(tmp_path, key_file):
    rows = [_good(i) for i in range(1, 8)] + [["R-9", "", "Y", "P", "Hong Kong", "01/03/2024"]]
    zones, entry, outcome = _process(tmp_path, key_file, "bp2mi_siskop2mi", "ok.csv", _csv(rows))
    assert outcome.status == "processed"
    assert entry.rows_read == entry.rows_accepted + entry.rows_quarantined == 8
    staged = zones.staging / entry.batch_id
    assert pq.read_table(staged / "accepted.parquet").num_rows == entry.rows_accepted
    assert pq.read_table(staged / "quarantined.parquet").num_rows == entry.rows_quarantined
    columns = pq.read_schema(staged / "accepted.parquet").names
    assert not set(columns) & set(load_schema().direct_identifiers())


def test_a_file_in_another_encoding_and_delimiter_than_declared_is_read_by_detection(tmp_path):
    cfg = config.agency("p3mi_mitra_sejahtera")  # declares cp1252 and ';'
    header = ["Worker ID", "National ID", "Full Name", "Gender", "Destination", "Departure Date"]
    path = tmp_path / "resend.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _csv([["W1", "3507014507950001", "Zoë", "Female", "Taiwan", "2024-03-01"]],
                                            header=header))  # fmt: skip
    read, mapped = read_and_map(path, cfg, load_schema())
    assert read.encoding.startswith("utf-8") and read.delimiter == ","
    assert mapped.matched["destination_country"] == "Destination"
    rows = mapping.map_batch(read.collect(), cfg).table
    assert rows.column("destination_country").to_pylist() == ["Taiwan"]
    assert any("detection" in w.en for w in read.warnings)


def test_rejected_file_gets_a_report_and_no_staging(tmp_path, key_file):
    zones, entry, outcome = _process(tmp_path, key_file, "bp2mi_siskop2mi", "kosong.csv", b"")
    assert outcome.status == entry.status == "rejected"
    assert entry.reason_code == "empty_file"
    assert not (zones.staging / entry.batch_id).exists()
    pages = list((zones.reports / "bp2mi_siskop2mi").glob("*/index.html"))
    assert len(pages) == 1 and "empty" in pages[0].read_text(encoding="utf-8").lower()


def _with_nik_alias_misspelt(tmp_path, agency: str) -> config.AgencyConfig:
    """The agency's mapping after an edit gone wrong: its NIK column is looked for under a name the files lack."""
    text = (settings.AGENCIES_DIR / f"{agency}.yaml").read_text(encoding="utf-8")
    assert text.count("  nik: [NIK, ") == 1
    broken = tmp_path / "agencies" / f"{agency}.yaml"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text(text.replace("  nik: [NIK, ", "  nik: [NIK KTP, "), encoding="utf-8")
    return config.load_agency_file(broken)


def _replay(zones, sha256: str, cfg: config.AgencyConfig, key_file):
    """What `sdmi replay` does to one file: back to 'archived', then processed again from raw/."""
    ledger = Ledger(zones.ledger_db)
    ledger.reopen(sha256)
    outcome = process_file(zones, ledger, ledger.get(sha256), cfg, load_secret(key_file))
    return ledger.get(sha256), outcome


def test_a_replayed_file_that_ends_rejected_keeps_nothing_staged_from_its_earlier_processing(tmp_path, key_file):
    rows = [_good(i) for i in range(1, 8)] + [["R-9", "123", "Y", "P", "Hong Kong", "01/03/2024"]]
    zones, first, _ = _process(tmp_path, key_file, "bp2mi_siskop2mi", "ok.csv", _csv(rows))
    staged = zones.staging / first.batch_id
    (reported,) = (zones.reports / "bp2mi_siskop2mi").iterdir()
    assert first.status == "processed" and pq.read_table(staged / "quarantined.parquet").num_rows == 1
    assert (reported / "data_docs").is_dir() and list(reported.glob("rejected_rows.*"))
    broken = _with_nik_alias_misspelt(tmp_path, "bp2mi_siskop2mi")
    entry, outcome = _replay(zones, first.sha256, broken, key_file)
    assert outcome.status == entry.status == "rejected" and entry.reason_code == "missing_columns"
    assert not staged.exists()  # no accepted rows, issues or quarantined NIKs of a file the ledger calls rejected
    assert list(zones.staging.iterdir()) == []  # nothing set aside left behind either
    assert not list(reported.glob("rejected_rows.*")) and not (reported / "data_docs").exists()


def test_the_release_after_a_replay_that_ends_rejected_counts_no_rule_for_that_file(tmp_path, key_file):
    from pipelines import flows

    rows = [_good(i) for i in range(1, 8)] + [["R-9", "123", "Y", "P", "Hong Kong", "01/03/2024"]]
    zones, first, _ = _process(tmp_path, key_file, "bp2mi_siskop2mi", "ok.csv", _csv(rows))
    assert flows.publish_flow.fn(str(zones.home))["switched"]
    assert _rules_published(zones, first.batch_id) != []
    _replay(zones, first.sha256, _with_nik_alias_misspelt(tmp_path, "bp2mi_siskop2mi"), key_file)
    assert flows.publish_flow.fn(str(zones.home))["switched"]
    assert _rules_published(zones, first.batch_id) == []
    with duckdb.connect(str(zones.analyst_db), read_only=True) as con:
        quality = con.execute(
            "SELECT status, rows_read, rows_quarantined, cardinality(rows_by_rule) FROM data_quality "
            "WHERE batch_id = ?",
            [first.batch_id],
        ).fetchall()
    assert quality == [("rejected", 0, 0, 0)]


def _rules_published(zones: Zones, batch_id: str) -> list[tuple[str, int]]:
    with duckdb.connect(str(zones.analyst_db), read_only=True) as con:
        return con.execute(
            "SELECT rule_id, rows FROM data_quality_rules WHERE batch_id = ? ORDER BY 1", [batch_id]
        ).fetchall()


def test_issues_hold_every_rule_a_row_broke_in_one_place(tmp_path, key_file):
    rows = [["R-1", "123", "Z", "P", "Atlantis", "31/02/2024"]] + [_good(i) for i in range(2, 9)]
    zones, entry, _ = _process(tmp_path, key_file, "bp2mi_siskop2mi", "x.csv", _csv(rows))
    rules = {
        r[0]
        for r in duckdb.connect()
        .execute(
            "SELECT rule_id FROM read_parquet($p) WHERE source_row = 2",
            {"p": str(zones.staging / entry.batch_id / "issues.parquet")},
        )
        .fetchall()
    }
    assert {"harmonise.unknown_code.destination_country", "harmonise.bad_date.departure_date", "nik.format"} <= rules


def _duckdb_threads() -> int:
    con = settings.scratch_duckdb()
    try:
        return int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    finally:
        con.close()


def test_files_worked_on_at_once_divide_the_cores_among_duckdbs_threads(monkeypatch):
    monkeypatch.setattr(settings, "_cores", lambda: 4)
    with settings.sharing_cores():
        assert _duckdb_threads() == 4
        with settings.sharing_cores():
            assert _duckdb_threads() == 2
            with settings.sharing_cores():
                assert _duckdb_threads() == 1
        assert _duckdb_threads() == 4  # the others done: this file has every core again


def test_a_file_processed_beside_another_harmonises_with_its_share_of_the_cores(tmp_path, key_file, monkeypatch):
    monkeypatch.setattr(settings, "_cores", lambda: 2)
    seen: list[int] = []
    real = process.harmonise_stage.harmonise

    def harmonise_noting_threads(*args, **kwargs):
        seen.append(_duckdb_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(process.harmonise_stage, "harmonise", harmonise_noting_threads)
    with settings.sharing_cores():  # another file of this process, still being worked on
        _zones, _entry, outcome = _process(tmp_path, key_file, "bp2mi_siskop2mi", "ok.csv", _csv([_good(1)]))
    assert outcome.status == "processed"
    assert seen == [1]
    assert _duckdb_threads() == 2

"""A worker's identity typed where it does not belong is neither published nor quoted.

A name in the job title, a NIK used as the agency's record number, a passport in the company's name: these columns
are published as they came, so the value is emptied before staging, with a warning the officer can act on. A row
with a field too many has its values under other columns' names (a passport under sex): none of its values is
quoted. Real CSV files go through the real stages (`process_dropped`); all data is synthetic.
"""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
from agency_factory import process_dropped

AGENCY = "bp2mi_siskop2mi"
HEADER = ["No Registrasi", "NIK", "Nama", "No Paspor", "Jenis Kelamin", "Tanggal Lahir", "Negara Tujuan", "Jabatan",
          "Nama P3MI", "Tanggal Berangkat"]  # fmt: skip
NAME, NIK, PASSPORT = "Sri Wahyuningsih", "3507014608950002", "C1234567"


def _row(record_id: str = "REG-1", job: str = "Caregiver", company: str = "PT Maju Jaya") -> list[str]:
    return [record_id, NIK, NAME, PASSPORT, "P", "06/08/1995", "Taiwan", job, company, "01/03/2024"]


def _csv(*rows: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8")


def _staged(zones, entry, name: str):
    return pq.read_table(zones.staging / entry.batch_id / f"{name}.parquet").to_pylist()


def test_a_name_typed_into_the_job_title_is_emptied_and_the_row_accepted_with_a_warning(tmp_path, key_file):
    zones, entry, _ = process_dropped(tmp_path, key_file, AGENCY, "a.csv", _csv(_row(job=NAME.upper())))
    (record,) = _staged(zones, entry, "accepted")
    assert record["occupation_title"] is None
    assert "stage.personal_data_in_field.occupation_title" in record["quality_flags"]
    issues = [i for i in _staged(zones, entry, "issues") if i["field"] == "occupation_title"]
    assert [i["rule_id"] for i in issues if i["rule_id"].startswith("stage.")] == [
        "stage.personal_data_in_field.occupation_title"
    ]
    assert all(NAME.lower() not in str(i).lower() for i in issues)


def test_the_officer_is_told_what_to_do_about_a_worker_identity_in_another_column():
    from pipelines.harmonise import hints

    said = hints()["stage.personal_data_in_field.occupation_title"]
    assert "bukan identitas pekerja" in said[0] and "not the worker's identity" in said[1]


def test_a_passport_inside_the_company_name_is_emptied(tmp_path, key_file):
    zones, entry, _ = process_dropped(tmp_path, key_file, AGENCY, "a.csv", _csv(_row(company=f"PT {PASSPORT}")))
    (record,) = _staged(zones, entry, "accepted")
    assert record["recruitment_agency"] is None


def test_a_nik_used_as_the_record_number_is_in_neither_the_record_id_nor_the_record_key(tmp_path, key_file):
    zones, entry, _ = process_dropped(tmp_path, key_file, AGENCY, "a.csv", _csv(_row(record_id=NIK)))
    (record,) = _staged(zones, entry, "accepted")
    assert record["source_record_id"] is None
    assert NIK not in record["record_key"]
    assert record["record_key"] == f"{AGENCY}:wk:{record['worker_key']}"


def test_a_record_numbered_by_its_nik_sent_again_keeps_its_record_key_so_it_supersedes(tmp_path, key_file):
    zones, first, _ = process_dropped(tmp_path, key_file, AGENCY, "a.csv", _csv(_row(record_id=NIK)))
    _, again, _ = process_dropped(tmp_path, key_file, AGENCY, "b.csv", _csv(_row(record_id=NIK, job="Operator")))
    assert _staged(zones, first, "accepted")[0]["record_key"] == _staged(zones, again, "accepted")[0]["record_key"]


def test_a_job_title_that_is_not_the_workers_identity_is_kept(tmp_path, key_file):
    zones, entry, _ = process_dropped(tmp_path, key_file, AGENCY, "a.csv", _csv(_row(job="Sri Rejeki Caregiver")))
    (record,) = _staged(zones, entry, "accepted")
    assert record["occupation_title"] == "Sri Rejeki Caregiver"
    assert record["record_key"] == f"{AGENCY}:REG-1"


def test_a_row_with_a_field_too_many_quotes_none_of_its_values(tmp_path, key_file):
    shifted = _row()
    shifted.insert(2, "")  # the name moves under the passport, the passport under sex
    zones, entry, _ = process_dropped(tmp_path, key_file, AGENCY, "a.csv", _csv(_row(record_id="REG-2"), shifted))
    issues = [i for i in _staged(zones, entry, "issues") if i["source_row"] == 3]
    assert any(i["rule_id"] == "read.ragged_row" for i in issues)
    quoted = [i for i in issues if i["rule_id"] != "read.ragged_row" and i["value"] is not None]
    assert quoted, "the shifted values raised issues that quote a value"
    assert all(PASSPORT not in str(i) and NAME not in str(i) for i in issues)


def test_agency_check_shows_none_of_the_identifiers_typed_into_other_columns(tmp_path):
    from pipelines import config, onboarding

    shifted = _row(record_id="REG-3")
    shifted.insert(2, "")
    rows = [_row(job=NAME), _row(record_id="REG-2", company=f"PT {PASSPORT}"), shifted]
    rows[1][HEADER.index("Negara Tujuan")] = NIK
    sample = tmp_path / "contoh.csv"
    sample.write_bytes(_csv(*rows))
    report = onboarding.check(sample, config.agency(AGENCY))
    assert report.preview and report.rules  # rows were shown and problems found
    shown = str(report.preview) + str([(r.rule_id, r.message_en) for r in report.rules])
    for identifier in (NAME, NIK, PASSPORT, "06/08/1995"):
        assert identifier not in shown

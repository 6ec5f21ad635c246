"""Harmonisation on the spellings and mistakes agencies really send."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, date, datetime

import pyarrow as pa
import pytest
from agency_factory import agency_config

from pipelines import codelists, config
from pipelines.config import AgencyConfig
from pipelines.harmonise import harmonise, hints
from pipelines.keys import load_secret
from pipelines.mapping import expected_headers, map_batch
from pipelines.readers import read_file

NIK_WOMAN = "3507014507950001"  # Kab. Malang, born 05-07-1995, woman (45 = 5 + 40)
NIK_MAN = "3301011203900002"  # Kab. Cilacap, born 12-03-1990, man


def _cfg(**extra) -> AgencyConfig:
    return agency_config(**{"date_formats": ["%d/%m/%Y", "%d %B %Y", "%d %b %Y"], **extra})


def _run(rows: list[dict], key_file, **cfg):
    names = sorted({k for r in rows for k in r})
    table = pa.table(
        {
            **{n: pa.array([r.get(n) for r in rows], pa.string()) for n in names},
            "_source_row": pa.array(range(2, len(rows) + 2), pa.int64()),
        }
    )
    return harmonise(
        table,
        _cfg(**cfg),
        sha256="f" * 64,
        batch_id="test_agency-ffff",
        received_at=datetime(2025, 1, 1, tzinfo=UTC),
        secret=load_secret(key_file),
    )


def _row(result, n=0) -> dict:
    return result.table.slice(n, 1).to_pylist()[0]


def _rules(result) -> set[str]:
    return set(result.issues.column("rule_id").to_pylist())


BASE = {"nik": NIK_WOMAN, "destination_country": "Hong Kong", "departure_date": "17/08/2024"}


def test_clean_row_is_typed_and_coded_without_issues(key_file):
    result = _run([{**BASE, "birth_date": "05/07/1995", "sex": "P"}], key_file)
    row = _row(result)
    assert row["destination_country"] == "HKG"
    assert row["departure_date"] == date(2024, 8, 17)
    assert row["age_at_departure"] == 29
    assert row["birth_year"] == 1995
    assert result.issues.num_rows == 0


def test_sex_and_birth_date_are_filled_from_the_nik_when_missing(key_file):
    row = _row(_run([BASE], key_file))
    assert row["sex"] == "F"
    assert row["birth_date"] == date(1995, 7, 5)


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"sex": "L"}, "nik.sex_mismatch"),
        ({"birth_date": "06/07/1995"}, "nik.birth_date_mismatch"),
        ({"nik": "9907014507950001"}, "nik.province"),
        ({"nik": "3507019907950001"}, "nik.birth_digits"),
    ],
)
def test_nik_that_disagrees_with_the_record_is_a_row_problem(key_file, extra, rule):
    result = _run([{**BASE, **extra}], key_file)
    assert rule in _rules(result)
    issue = next(i for i in result.issues.to_pylist() if i["rule_id"] == rule)
    assert issue["severity"] == "critical"
    assert issue["value"] is None  # the NIK is never echoed


def test_nik_with_spaces_and_dots_is_normalised(key_file):
    spaced = _run([{**BASE, "nik": "3507.0145 0795-0001"}], key_file)
    plain = _run([BASE], key_file)
    assert _row(spaced)["nik"] == NIK_WOMAN
    assert _row(spaced)["worker_key"] == _row(plain)["worker_key"]


def test_nik_grouped_with_no_break_spaces_is_the_same_worker(key_file):
    """Spreadsheets and web forms group digits with U+00A0 or U+202F, which DuckDB's \\s does not match."""
    spaced = _run([{**BASE, "nik": "3507\u00a00145\u202f0795\u00a00001"}], key_file)
    assert _row(spaced)["nik"] == NIK_WOMAN and spaced.issues.num_rows == 0
    assert _row(spaced)["worker_key"] == _row(_run([BASE], key_file))["worker_key"]


def test_worker_key_is_hmac_of_the_tagged_nik_or_passport(key_file):
    key = key_file.read_bytes().strip()
    by_nik = _row(_run([BASE], key_file))["worker_key"]
    assert by_nik == hmac.new(key, f"nik:{NIK_WOMAN}".encode(), hashlib.sha256).hexdigest()
    by_passport = _row(_run([{**BASE, "nik": None, "passport_number": "c 1234567"}], key_file))["worker_key"]
    assert by_passport == hmac.new(key, b"passport:C1234567", hashlib.sha256).hexdigest()


def test_document_key_is_the_passports_key_on_every_record_that_has_one(key_file):
    """A NIK-keyed record carries its passport's key too: what links another agency's passport-only record."""
    key = key_file.read_bytes().strip()
    passport_key = hmac.new(key, b"passport:C1234567", hashlib.sha256).hexdigest()
    with_nik = _row(_run([{**BASE, "passport_number": "C 1234567"}], key_file))
    assert with_nik["document_key"] == int(passport_key[:15], 16) and with_nik["worker_key"] != passport_key
    without_nik = _row(_run([{**BASE, "nik": None, "passport_number": "c1234567"}], key_file))
    assert without_nik["worker_key"] == passport_key and without_nik["document_key"] == int(passport_key[:15], 16)
    assert _row(_run([BASE], key_file))["document_key"] is None


@pytest.mark.parametrize("placeholder", ["N/A", "0", "-", "TIDAK ADA", "000000", "XXXXXX"])
def test_a_passport_that_cannot_be_one_keys_no_worker_and_links_no_record(key_file, placeholder):
    """Every record sent with "N/A" as its passport would otherwise share one key: one worker, many people."""
    without_nik = _run([{**BASE, "nik": None, "passport_number": placeholder}], key_file)
    assert _row(without_nik)["worker_key"] is None and _row(without_nik)["document_key"] is None
    with_nik = _row(_run([{**BASE, "passport_number": placeholder}], key_file))
    assert with_nik["document_key"] is None and with_nik["worker_key"] is not None


def test_record_key_uses_the_agency_record_id_or_a_keyed_fingerprint(key_file):
    with_id = _row(_run([{**BASE, "source_record_id": " REG-1 "}], key_file))
    assert with_id["record_key"] == "test_agency:REG-1"
    a = _row(_run([BASE], key_file))["record_key"]
    b = _row(_run([BASE], key_file))["record_key"]
    c = _row(_run([{**BASE, "departure_date": "18/08/2024"}], key_file))["record_key"]
    assert a == b != c
    assert a.startswith("test_agency:fp:") and NIK_WOMAN not in a


@pytest.mark.parametrize(
    ("text", "expected"),
    [("17 Agustus 2024", date(2024, 8, 17)), ("5 Agt 2024", date(2024, 8, 5)), ("1 Mei 2024", date(2024, 5, 1)),
     ("3 Okt 2024", date(2024, 10, 3)), ("24 Des 2024", date(2024, 12, 24)), ("2024-08-17", date(2024, 8, 17))],
)  # fmt: skip
def test_indonesian_month_names_and_iso_dates_parse(key_file, text, expected):
    assert _row(_run([{**BASE, "departure_date": text}], key_file))["departure_date"] == expected


def test_impossible_date_is_quarantined_not_guessed(key_file):
    result = _run([{**BASE, "departure_date": "31/02/2024"}], key_file)
    assert _row(result)["departure_date"] is None
    issue = next(i for i in result.issues.to_pylist() if i["rule_id"] == "harmonise.bad_date.departure_date")
    assert issue["severity"] == "critical" and issue["value"] == "31/02/2024"


@pytest.mark.parametrize("text", ["03/01/23", "17/08/0224", "31/12/9999", "01/01/1899"])
def test_a_date_whose_year_is_not_four_plausible_digits_is_quarantined_not_read_as_that_year(key_file, text):
    """DuckDB's %Y reads '23' as the year 23: such a date is a typing slip, reported as unreadable."""
    result = _run([{**BASE, "departure_date": text, "birth_date": text}], key_file)
    assert _row(result)["departure_date"] is None
    assert _row(result)["birth_date"] == date(1995, 7, 5)  # from the NIK, as for any unreadable birth date
    assert {"harmonise.bad_date.departure_date", "harmonise.bad_date.birth_date"} <= _rules(result)


def test_a_two_digit_year_format_the_agency_declares_reads_both_short_and_long_years(key_file):
    result = _run(
        [{**BASE, "departure_date": "03/01/23"}, {**BASE, "departure_date": "03/01/2023"}],
        key_file,
        date_formats=["%d/%m/%Y", "%d/%m/%y"],
    )
    assert result.table["departure_date"].to_pylist() == [date(2023, 1, 3), date(2023, 1, 3)]


def test_unknown_country_is_a_critical_problem_with_suggestions(key_file):
    result = _run([{**BASE, "destination_country": "Hongkongg Raya"}], key_file)
    assert _row(result)["destination_country"] is None
    issue = next(i for i in result.issues.to_pylist() if i["rule_id"] == "harmonise.unknown_code.destination_country")
    assert issue["severity"] == "critical"
    assert "Hongkongg Raya" in issue["message_en"]


def test_fuzzy_match_is_used_but_recorded_as_a_warning_with_its_score(key_file):
    result = _run([{**BASE, "destination_country": "Malaysiaa"}], key_file)
    assert _row(result)["destination_country"] == "MYS"
    issue = next(i for i in result.issues.to_pylist() if i["rule_id"] == "harmonise.fuzzy_match.destination_country")
    assert issue["severity"] == "warning" and "MYS" in issue["message_en"]


def test_deliberately_ambiguous_job_title_is_a_warning_and_no_code(key_file):
    result = _run([{**BASE, "occupation_title": "Worker"}], key_file)
    assert _row(result)["occupation_code"] is None
    assert "harmonise.ambiguous_code.occupation_code" in _rules(result)


def test_regions_are_coded_and_province_filled_from_the_regency(key_file):
    row = _row(_run([{**BASE, "origin_regency_code": "KAB. MALANG"}], key_file))
    assert row["origin_regency_code"] == "3507"
    assert row["origin_province_code"] == "35"


@pytest.mark.parametrize(
    ("text", "months"),
    [("24", 24), ("24 Bulan", 24), ("24.0", 24), ("0024", 24), ("2 tahun", 24), ("3 thn", 36), ("1,5 tahun", 18),
     ("2 years", 24), ("24,5", None), ("2-3 tahun", None), ("24 hari", None)],
)  # fmt: skip
def test_contract_length_in_years_is_converted_to_months_and_a_partial_number_is_not_read(key_file, text, months):
    """The first digits are not a length: '2 tahun' is 24 months, and '24 hari' is not 24 months."""
    result = _run([{**BASE, "contract_months": text}], key_file)
    assert _row(result)["contract_months"] == months
    assert ("harmonise.bad_number.contract_months" in _rules(result)) == (months is None)


def test_contract_length_in_words_is_read_and_nonsense_is_a_warning(key_file):
    result = _run([{**BASE, "contract_months": "24 bulan"}, {**BASE, "contract_months": "dua tahun"}], key_file)
    assert result.table.column("contract_months").to_pylist() == [24, None]
    assert "harmonise.bad_number.contract_months" in _rules(result)


def test_recruitment_agency_names_are_normalised(key_file):
    row = _row(_run([{**BASE, "recruitment_agency": "PT.  Maju-Bersama  perkasa"}], key_file))
    assert row["recruitment_agency"] == "PT MAJU BERSAMA PERKASA"


def test_values_repeated_across_rows_are_cleaned_once_and_each_row_gets_its_own(key_file):
    # agency names, contract lengths and dates are worked out once per distinct value, then mapped back
    agencies = ["PT. Maju-Bersama", None, "pt maju bersama", "CV Sinar  Abadi", "PT. Maju-Bersama"] * 20
    months = ["24 bulan", "12", None, "dua tahun", "24 bulan"] * 20
    departures = ["17/08/2024", "1 Januari 2025", "31/02/2024", None, "17/08/2024"] * 20
    rows = [
        {**BASE, "recruitment_agency": a, "contract_months": m, "departure_date": d}
        for a, m, d in zip(agencies, months, departures, strict=True)
    ]
    table = _run(rows, key_file).table
    clean = {
        "PT. Maju-Bersama": "PT MAJU BERSAMA",
        "pt maju bersama": "PT MAJU BERSAMA",
        "CV Sinar  Abadi": "CV SINAR ABADI",
    }
    assert table["recruitment_agency"].to_pylist() == [clean.get(a) for a in agencies]
    assert table["contract_months"].to_pylist() == [{"24 bulan": 24, "12": 12}.get(m) for m in months]
    parsed = {"17/08/2024": date(2024, 8, 17), "1 Januari 2025": date(2025, 1, 1)}
    assert table["departure_date"].to_pylist() == [parsed.get(d) for d in departures]


def test_rows_come_out_in_source_row_order_with_each_rows_own_codes(key_file):
    # rows handed over out of order (a chunk is normally in order): the output is sorted, and every row keeps
    # the codes of its own values
    countries = ["Hong Kong", "Taiwan", "Malaysia", "Singapore"] * 25
    rows = [{**BASE, "destination_country": c, "source_record_id": f"R{i}"} for i, c in enumerate(countries)]
    names = sorted({k for r in rows for k in r})
    order = list(range(len(rows)))[::-1]
    table = pa.table(
        {
            **{n: pa.array([rows[i][n] for i in order], pa.string()) for n in names},
            "_source_row": pa.array([i + 2 for i in order], pa.int64()),
        }
    )
    result = harmonise(
        table, _cfg(), sha256="f" * 64, batch_id="test_agency-ffff", received_at=datetime(2025, 1, 1, tzinfo=UTC),
        secret=load_secret(key_file),
    )  # fmt: skip
    out = result.table.to_pylist()
    assert [r["source_row"] for r in out] == list(range(2, len(rows) + 2))
    expected = {"Hong Kong": "HKG", "Taiwan": "TWN", "Malaysia": "MYS", "Singapore": "SGP"}
    assert [r["destination_country"] for r in out] == [expected[c] for c in countries]
    assert [r["source_record_id"] for r in out] == [f"R{i}" for i in range(len(rows))]


def test_each_row_gets_the_rules_it_breaks_when_rows_break_different_rules(key_file):
    # only the rules some row of a chunk breaks are queried: several at once, each on its own row, and a
    # clean row beside them with none
    broken = [
        ({"sex": "L"}, {"nik.sex_mismatch"}),
        ({"nik": "9907014507950001"}, {"nik.province"}),
        ({"departure_date": "31/02/2024"}, {"harmonise.bad_date.departure_date"}),
        ({"destination_country": "Hongkongg Raya"}, {"harmonise.unknown_code.destination_country"}),
        ({"destination_country": "Malaysiaa"}, {"harmonise.fuzzy_match.destination_country"}),
        ({"occupation_title": "Worker"}, {"harmonise.ambiguous_code.occupation_code"}),
        ({"contract_months": "dua tahun"}, {"harmonise.bad_number.contract_months"}),
        ({}, set()),
    ]
    rows = [{"occupation_title": "Domestic Worker", "contract_months": "24", **BASE, **extra} for extra, _ in broken]
    issues = _run(rows, key_file).issues.to_pylist()
    for n, (_, rules) in enumerate(broken):
        assert {i["rule_id"] for i in issues if i["source_row"] == n + 2} == rules


def _hint_example(text: str) -> str:
    """The example date a date hint ends with ("..., e.g. 2024-08-17.")."""
    return re.search(r"(?:mis\.|e\.g\.) (.+)\.$", text).group(1)


@pytest.mark.parametrize(
    ("formats", "example_id", "example_en", "parts_en"),
    [
        (["%Y-%m-%d"], "2024-08-17", "2024-08-17", "year, month, day"),
        (["%d %B %Y", "%d %b %Y"], "17 Agustus 2024", "17 August 2024", "day, month name, year"),
        (["%d/%m/%Y", "%Y-%m-%d"], "17/08/2024", "17/08/2024", "day, month, year"),
    ],
)
def test_date_hint_shows_an_example_in_the_agencys_first_declared_format(formats, example_id, example_en, parts_en):
    hint_id, hint_en = hints(cfg=agency_config(date_formats=formats))["harmonise.bad_date.departure_date"]
    assert _hint_example(hint_id) == example_id and _hint_example(hint_en) == example_en
    assert f"({parts_en})" in hint_en


@pytest.mark.parametrize(
    "formats", [["%Y-%m-%d"], ["%d %B %Y"], ["%d %b %Y"], ["%d/%m/%Y"], ["%m/%d/%Y"], ["%d-%m-%y"], ["%d.%m.%Y"]]
)
def test_a_date_written_as_the_date_hint_shows_is_read_for_that_agency(key_file, formats):
    for hint in hints(cfg=agency_config(date_formats=formats))["harmonise.bad_date.departure_date"]:
        result = _run([{**BASE, "departure_date": _hint_example(hint)}], key_file, date_formats=formats)
        assert _row(result)["departure_date"] == date(2024, 8, 17), hint
        assert not _rules(result), hint


def test_a_missing_departure_date_is_answered_with_the_agencys_date_format():
    agency_hints = hints(cfg=agency_config(date_formats=["%Y-%m-%d"]))
    assert agency_hints["required.departure_date"] == agency_hints["harmonise.bad_date.departure_date"]
    assert "2024-08-17" in agency_hints["required.departure_date"][1]


def test_unknown_code_without_a_suggestion_asks_nothing(key_file):
    result = _run([{**BASE, "destination_country": "Qqqqxx"}], key_file)
    issue = next(i for i in result.issues.to_pylist() if i["rule_id"] == "harmonise.unknown_code.destination_country")
    assert issue["message_id"] == "Nilai 'Qqqqxx' untuk destination_country tidak dikenal."
    assert issue["message_en"] == "Unknown destination_country 'Qqqqxx'."


def test_unknown_code_with_suggestions_names_them_in_both_languages(key_file):
    result = _run([{**BASE, "destination_country": "Hongkongg Raya"}], key_file)
    issue = next(i for i in result.issues.to_pylist() if i["rule_id"] == "harmonise.unknown_code.destination_country")
    assert "tidak dikenal. Mungkin maksudnya: Hong Kong (HKG)" in issue["message_id"]
    assert "'Hongkongg Raya'. Did you mean: Hong Kong (HKG)" in issue["message_en"]


# ------------------------------------------------------------------------------------------ placeholders
@pytest.mark.parametrize("written", ["-", "--", "?", "0", "N/A", "n.a.", "00/00/0000", "Tidak Ada", "\u2013"])
def test_a_placeholder_for_sex_or_birth_date_is_no_value_and_the_nik_supplies_both(key_file, written):
    """Spreadsheets write '-' or '0' for "no value": missing, so the NIK's sex and birth date are taken."""
    result = _run([{**BASE, "sex": written, "birth_date": written}], key_file)
    assert (_row(result)["sex"], _row(result)["birth_date"]) == ("F", date(1995, 7, 5))
    assert result.issues.num_rows == 0


def test_a_placeholder_in_an_optional_coded_field_is_reported_missing_not_unknown(key_file):
    result = _run([{**BASE, "education_level": "N/A", "marital_status": "0"}], key_file)
    assert (_row(result)["education_level"], _row(result)["marital_status"]) == (None, None)
    assert _rules(result) == {"harmonise.missing_value.education_level", "harmonise.missing_value.marital_status"}


@pytest.mark.parametrize(
    "written", ["-", "0", "00", "N/A", "NA", "n/a", "nil", "Tidak ada", "Kosong", "x", "None", "1"]
)
def test_harmonise_takes_as_missing_exactly_what_the_code_lists_take_as_empty(key_file, written):
    """One rule for "no value": a value the code lists match as empty is missing in the record, and no other."""
    empty = codelists.match_values("sex", [written])["match"][0].as_py() == "empty"
    assert _row(_run([{**BASE, "sex": written}], key_file))["sex"] == ("F" if empty else None)


def test_a_record_key_is_of_the_row_as_sent_placeholders_included(key_file):
    """The fingerprint must not move with how a value is read: '-' and an empty cell stay two rows."""
    dash, empty = (_row(_run([{**BASE, "sex": sex}], key_file))["record_key"] for sex in ("-", None))
    assert dash != empty and dash == _row(_run([{**BASE, "sex": "-"}], key_file))["record_key"]


# ------------------------------------------------------------------------------------------ regions
@pytest.mark.parametrize(
    ("province", "regency", "code"),
    [("Papua", "Kab. Merauke", "93"), ("Papua Barat", "Kota Sorong", "96"), ("Papua", "Kab. Mimika", "94"),
     ("Papua", "Kab. Jayawijaya", "95"), ("Papua", "Kota Sorong", "96"), ("Sulawesi Selatan", "Kab. Majene", "76")],
)  # fmt: skip
def test_a_province_written_before_its_split_gives_way_to_the_regencys_province(key_file, province, regency, code):
    result = _run([{**BASE, "origin_province_code": province, "origin_regency_code": regency}], key_file)
    assert _row(result)["origin_province_code"] == code == _row(result)["origin_regency_code"][:2]
    assert "region.regency_outside_province" not in _rules(result)


def test_a_province_and_regency_that_truly_disagree_are_both_kept_as_written_and_flagged(key_file):
    result = _run([{**BASE, "origin_province_code": "Jawa Timur", "origin_regency_code": "Kab. Cilacap"}], key_file)
    assert (_row(result)["origin_province_code"], _row(result)["origin_regency_code"]) == ("35", "3301")
    assert "region.regency_outside_province" in _rules(result)


def test_a_fuzzy_regency_outside_the_province_given_is_dropped_and_reported_ambiguous(key_file):
    """'Kabupaten Badnung' (Bandung, Jawa Barat, two letters swapped) is nearest to Badung, Bali."""
    rows = [
        {**BASE, "origin_regency_code": "Kabupaten Badnung", "origin_province_code": p} for p in ("Jawa Barat", None)
    ]
    result = _run(rows, key_file)
    assert [(r["origin_province_code"], r["origin_regency_code"]) for r in result.table.to_pylist()] == [
        ("32", None),
        ("51", "5103"),  # no province to contradict it: a fuzzy match, with its warning
    ]
    by_row = {(i["source_row"], i["rule_id"]) for i in result.issues.to_pylist()}
    assert (2, "harmonise.ambiguous_code.origin_regency_code") in by_row
    assert (2, "harmonise.fuzzy_match.origin_regency_code") not in by_row
    assert (3, "harmonise.fuzzy_match.origin_regency_code") in by_row


def test_a_fuzzy_regency_in_a_province_split_from_the_one_given_is_kept(key_file):
    result = _run([{**BASE, "origin_province_code": "Papua", "origin_regency_code": "Kabupaten Meraukee"}], key_file)
    assert (_row(result)["origin_province_code"], _row(result)["origin_regency_code"]) == ("93", "9301")


# ------------------------------------------------------------------------------------------ two-digit years
@pytest.mark.parametrize(
    ("written", "born"),
    [("05/07/68", date(1968, 7, 5)), ("05/07/60", date(1960, 7, 5)), ("05/07/95", date(1995, 7, 5)),
     ("05/07/2005", date(2005, 7, 5)), ("05/07/05", date(2005, 7, 5))],
)  # fmt: skip
def test_a_two_digit_birth_year_is_in_the_century_the_nik_would_give_it(key_file, written, born):
    """strptime reads '68' as 2068; a worker younger than 14 in the departure year was born a century earlier."""
    nik = f"350701{born.day + 40:02d}{born.month:02d}{born.year % 100:02d}0001"
    result = _run([{**BASE, "nik": nik, "birth_date": written}], key_file, date_formats=["%d/%m/%y", "%d/%m/%Y"])
    assert _row(result)["birth_date"] == born
    assert result.issues.num_rows == 0


def test_a_29_february_its_century_does_not_have_is_not_a_date(key_file):
    """Departing in 2010, '00' is 1900, which had no 29 February: the date is unreadable, not the 28th."""
    row = {**BASE, "nik": None, "birth_date": "29/02/00", "departure_date": "01/03/10", "passport_number": "C1234567"}
    result = _run([row], key_file, date_formats=["%d/%m/%y"])
    assert _row(result)["birth_date"] is None
    assert "harmonise.bad_date.birth_date" in _rules(result)


def test_a_departure_date_with_a_two_digit_year_is_left_in_its_century(key_file):
    result = _run([{**BASE, "departure_date": "17/08/24"}], key_file, date_formats=["%d/%m/%y"])
    assert _row(result)["departure_date"] == date(2024, 8, 17)


# ------------------------------------------------------------------------------------------ occupations
@pytest.mark.parametrize(
    ("title", "sector", "code"),
    [("Caregiver", "Informal", "5322"), ("Care Giver", "Sektor Informal", "5322"), ("Caregiver", "Formal", "5321"),
     ("Caregiver", None, "5321"), ("Caregiver (Formal)", "Informal", "5321")],
)  # fmt: skip
def test_a_caregiver_placed_in_the_informal_sector_is_a_home_based_care_worker(key_file, title, sector, code):
    """ISCO-08 5322 (home-based) in a private household; the title alone stays 5321, as the crosswalk has it."""
    assert _row(_run([{**BASE, "occupation_title": title, "sector": sector}], key_file))["occupation_code"] == code


# ------------------------------------------------------------------------------------------ agency mappings
P3MI_FILE = (
    "Worker ID;National ID;Full Name;Gender;Date of Birth;Passport No;Home Province;Home Regency;Destination;"
    "Position;Departure Date;Contract Length\n"
    + "".join(
        f"MSA-900{i};{NIK_WOMAN};Contoh {i};Female;1995-07-05;C304073{i};Jawa Timur;Kab. Malang;Taiwan;Caregiver;"
        f"2024-01-01;{length}\n"
        for i, length in enumerate(["24 months", "2 years", "24 bulan", "3 tahun"])
    )
)


def test_the_p3mi_mapping_reads_contract_lengths_in_months_years_and_bulan(key_file, tmp_path):
    """Its extract kept only 'N months': '2 years' and '24 bulan' became empty, with no message."""
    cfg = config.agency("p3mi_mitra_sejahtera")
    path = tmp_path / "deployments.csv"
    path.write_text(P3MI_FILE, encoding="cp1252")
    mapped = map_batch(read_file(path, cfg.read, expected_headers(cfg)), cfg).table
    result = harmonise(
        mapped, cfg, sha256="f" * 64, batch_id="p3mi-ffff", received_at=datetime(2025, 1, 1, tzinfo=UTC),
        secret=load_secret(key_file),
    )  # fmt: skip
    assert result.table["contract_months"].to_pylist() == [24, 24, 24, 36]
    assert "harmonise.bad_number.contract_months" not in _rules(result)


def _schema_with(*extra: dict):
    """The shared schema with fields added, as an engineer would add them to placement.yaml."""
    from pipelines.schema import FieldSpec, load_schema

    schema = load_schema()
    added = [FieldSpec(description={"id": "Uji.", "en": "Test."}, pii="none", **f) for f in extra]
    return schema.model_copy(update={"fields": [*schema.fields, *added]})


def test_a_mapped_field_added_to_the_schema_is_harmonised_as_sent_without_a_code_change(key_file):
    schema = _schema_with(
        {"name": "employer_name", "type": "string", "origin": "mapped"},
        {"name": "salary_usd", "type": "integer", "origin": "mapped"},
    )
    rows = [{**BASE, "employer_name": "Mr Chan", "salary_usd": "650"}, {**BASE, "salary_usd": "banyak"}]
    names = sorted({k for r in rows for k in r})
    table = pa.table({**{n: pa.array([r.get(n) for r in rows], pa.string()) for n in names},
                      "_source_row": pa.array([2, 3], pa.int64())})  # fmt: skip
    result = harmonise(table, _cfg(), sha256="f" * 64, batch_id="b", received_at=datetime(2025, 1, 1, tzinfo=UTC),
                       secret=load_secret(key_file), schema=schema)  # fmt: skip
    assert result.table.column_names == schema.names()
    assert result.table["employer_name"].to_pylist() == ["Mr Chan", None]
    assert result.table["salary_usd"].to_pylist() == [650, None]


def test_a_derived_field_added_to_the_schema_without_its_rule_is_refused_by_name(key_file):
    from pipelines.problems import ConfigError

    schema = _schema_with({"name": "risk_score", "type": "integer", "origin": "derived"})
    table = pa.table({"nik": [NIK_WOMAN], "_source_row": pa.array([2], pa.int64())})
    with pytest.raises(ConfigError, match="risk_score"):
        harmonise(table, _cfg(), sha256="f" * 64, batch_id="b", received_at=datetime(2025, 1, 1, tzinfo=UTC),
                  secret=load_secret(key_file), schema=schema)  # fmt: skip

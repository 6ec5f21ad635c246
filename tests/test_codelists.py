"""Code lists and spelling matching: agency spellings reach the right code, traps never a wrong one."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines import codelists

SPELLINGS = Path(__file__).parent / "data" / "spellings.csv"
ALL_LISTS = [
    "countries",
    "provinces",
    "regencies",
    "occupations",
    "education_levels",
    "marital_status",
    "sectors",
    "placement_schemes",
    "sex",
]


def _spellings() -> list[tuple[str, str, str]]:
    with SPELLINGS.open(encoding="utf-8", newline="") as f:
        return [(r["codelist"], r["spelling"], r["expected"]) for r in csv.DictReader(f)]


def _match(name: str, value: str | None) -> dict:
    return codelists.match_values(name, [value]).to_pylist()[0]


@pytest.mark.parametrize(("codelist", "spelling", "expected"), _spellings())
def test_real_world_spelling_maps_to_expected_code_or_none(codelist: str, spelling: str, expected: str) -> None:
    row = _match(codelist, spelling)
    if expected == "UNKNOWN":
        assert (row["code"], row["match"]) == (None, "unknown")
    elif expected == "AMBIGUOUS":
        assert (row["code"], row["match"]) == (None, "ambiguous")
    else:
        assert row["code"] == expected, row
        assert row["match"] in ("exact", "fuzzy")


def test_spellings_table_covers_at_least_80_cases_across_the_main_lists() -> None:
    rows = _spellings()
    assert len(rows) >= 80
    assert {"countries", "provinces", "regencies", "occupations", "education_levels"} <= {r[0] for r in rows}


@pytest.mark.parametrize("name", ALL_LISTS)
def test_every_list_has_the_required_columns_and_unique_codes(name: str) -> None:
    table = codelists.load(name)
    assert {"code", "name_id", "name_en", "variants"} <= set(table.column_names)
    found = codelists.codes(name)
    assert len(found) == len(set(found))
    assert all(found) and all(table.column("name_id").to_pylist()) and all(table.column("name_en").to_pylist())


def test_load_returns_every_column_as_strings() -> None:
    table = codelists.load("regencies")
    assert all(pa.types.is_string(field.type) for field in table.schema)


def test_load_of_an_unknown_list_raises_key_error() -> None:
    with pytest.raises(KeyError):
        codelists.load("no_such_list")


def test_countries_hold_all_249_iso_3166_entries_with_alpha3_codes() -> None:
    table = codelists.load("countries")
    assert table.num_rows == 249
    alpha3 = table.column("code").to_pylist()
    alpha2 = table.column("alpha2").to_pylist()
    assert all(len(c) == 3 and c.isupper() for c in alpha3)
    assert len(set(alpha2)) == 249 and all(len(c) == 2 for c in alpha2)
    assert {"IDN", "HKG", "TWN", "MYS", "SAU", "KOR", "DMA", "DOM", "TLS", "PSE", "ATA"} <= set(alpha3)


def test_countries_use_agency_names_for_taiwan_and_timor_leste() -> None:
    names = codelists.labels("countries")
    assert names["TWN"][0] == "Taiwan"
    assert names["TLS"][0] == "Timor Leste"
    assert names["DMA"][0] == "Dominika" and names["DOM"][0] == "Republik Dominika"


def test_all_38_current_provinces_are_present_with_new_papua_codes() -> None:
    names = codelists.labels("provinces")
    assert len(names) == 38
    assert {code: names[code][0] for code in ("91", "92", "93", "94", "95", "96")} == {
        "91": "Papua",
        "92": "Papua Barat",
        "93": "Papua Selatan",
        "94": "Papua Tengah",
        "95": "Papua Pegunungan",
        "96": "Papua Barat Daya",
    }


def test_regencies_number_514_and_each_belongs_to_an_existing_province() -> None:
    table = codelists.load("regencies").to_pylist()
    provinces = set(codelists.codes("provinces"))
    assert len(table) == 514
    for row in table:
        assert row["code"][:2] == row["province_code"] and row["province_code"] in provinces
        assert row["kind"] in ("kabupaten", "kota")
        assert row["name_id"].split(" ", 1)[0].lower() == row["kind"]
        assert (row["code"][2:] >= "71") == (row["kind"] == "kota")


def test_every_province_has_at_least_one_regency() -> None:
    with_regency = {row["province_code"] for row in codelists.load("regencies").to_pylist()}
    assert with_regency == set(codelists.codes("provinces"))


def test_occupations_hold_all_436_isco08_unit_groups() -> None:
    found = codelists.codes("occupations")
    assert len(found) == 436
    assert all(len(c) == 4 and c.isdigit() for c in found)


def test_every_unit_group_kbji_2014_has_carries_its_official_indonesian_title() -> None:
    rows = codelists.load("occupations").to_pylist()
    fallback = {r["code"] for r in rows if r["name_id_source"] != "kbji2014"}
    assert fallback == {"0110", "0210", "0310", "3355", "5412"}  # armed forces and police: KBJI group 0
    by_code = {r["code"]: r for r in rows}
    assert by_code["9111"]["name_id"] == "Tenaga Kebersihan Dan Juru Bantu Rumahtangga"
    assert by_code["5322"]["name_id"] == "Pekerja Perawatan Pribadi Di Rumah"
    assert all(r["name_id"] != r["name_en"] for r in rows if r["code"] not in fallback)


def test_every_code_in_occupation_titles_exists_in_occupations() -> None:
    known = set(codelists.codes("occupations"))
    for row in codelists.load("occupation_titles").to_pylist():
        assert row["status"] in ("mapped", "ambiguous"), row
        if row["status"] == "mapped":
            assert row["code"] in known, row
        else:
            assert row["code"] == "", row


def test_bp2mi_most_frequent_2024_job_titles_are_all_in_the_crosswalk() -> None:
    titles = {row["title"]: row["status"] for row in codelists.load("occupation_titles").to_pylist()}
    for title in [
        "House Maid", "Caregiver", "Plantation Worker", "Domestic Worker", "Construction Worker",
        "Operator Production", "Manufacturing Worker", "Housekeeper And Family Cook", "Fisherman",
        "Elderly Caretaker (Informal)", "Baby Sitter (Informal)", "Harvester",
    ]:  # fmt: skip
        assert title in titles, title
    assert titles["Worker"] == "ambiguous" and titles["General Worker"] == "ambiguous"


def test_education_levels_carry_their_isced_2011_level() -> None:
    isced = dict(
        zip(
            codelists.codes("education_levels"),
            codelists.load("education_levels").column("isced").to_pylist(),
            strict=True,
        )
    )
    assert isced == {
        "NONE": "0",
        "SD": "1",
        "SMP": "2",
        "SMA": "3",
        "D1": "5",
        "D2": "5",
        "D3": "5",
        "D4": "6",
        "S1": "6",
        "S2": "7",
        "S3": "8",
    }


def test_fixed_lists_have_exactly_the_agreed_codes() -> None:
    assert codelists.codes("marital_status") == ["SINGLE", "MARRIED", "DIVORCED", "WIDOWED"]
    assert codelists.codes("sectors") == ["FORMAL", "INFORMAL"]
    assert codelists.codes("placement_schemes") == ["G2G", "P2P", "MANDIRI", "UKPS"]
    assert codelists.codes("sex") == ["F", "M"]


def test_normalise_folds_case_accents_punctuation_and_regency_prefixes() -> None:
    assert codelists.normalise("  KAB.  Cilacap ") == "kabupaten cilacap"
    assert codelists.normalise("Curaçao") == "curacao"
    assert codelists.normalise("D.I. Yogyakarta") == "d i yogyakarta"
    assert codelists.normalise("Kota Adm. Jakarta Pusat") == "kota jakarta pusat"
    assert codelists.normalise(None) == ""


def test_normalise_for_drops_provinsi_and_negara_only_in_their_lists() -> None:
    assert codelists.normalise_for("provinces", "Prov. Jawa Timur") == "jawa timur"
    assert codelists.normalise_for("countries", "Negara Malaysia") == "malaysia"
    assert codelists.normalise_for("regencies", "Malang City") == "kota malang"


def test_alias_table_excludes_aliases_that_name_two_codes() -> None:
    table = codelists.alias_table("regencies")
    aliases = dict(zip(table.column("alias").to_pylist(), table.column("code").to_pylist(), strict=True))
    assert "malang" not in aliases
    assert aliases["kabupaten malang"] == "3507" and aliases["kota malang"] == "3573"
    assert table.num_rows == len(set(aliases))


def test_alias_table_of_occupations_includes_mapped_titles_but_not_ambiguous_ones() -> None:
    table = codelists.alias_table("occupations")
    aliases = dict(zip(table.column("alias").to_pylist(), table.column("code").to_pylist(), strict=True))
    assert aliases["house maid"] == "9111"
    assert "worker" not in aliases and "perawat" not in aliases


def test_match_values_returns_one_row_per_distinct_value_with_the_agreed_schema() -> None:
    table = codelists.match_values("countries", ["Hongkong", "Hongkong", None, "", "Taiwan"])
    assert table.schema == codelists.MATCH_SCHEMA
    assert table.column("value").to_pylist() == ["Hongkong", None, "", "Taiwan"]
    assert table.column("match").to_pylist() == ["exact", "empty", "empty", "exact"]


def test_exact_matches_score_100_and_carry_no_suggestions() -> None:
    row = _match("countries", "Arab Saudi")
    assert (row["score"], row["suggestions"]) == (100.0, None)


def test_non_exact_matches_suggest_up_to_three_named_codes() -> None:
    row = _match("regencies", "Malang")
    assert row["suggestions"] == "Kabupaten Malang (3507); Kota Malang (3573)"
    unknown = _match("countries", "Korea")
    assert 1 <= len(unknown["suggestions"].split("; ")) <= 3
    assert "Korea Selatan (KOR)" in unknown["suggestions"]


def test_fuzzy_match_never_crosses_kabupaten_and_kota() -> None:
    assert _match("regencies", "Kota Bandung Barat")["code"] is None
    assert _match("regencies", "Kab Malangg")["code"] == "3507"
    assert _match("regencies", "Kota Malangg")["code"] == "3573"


def test_short_values_are_never_fuzzy_matched() -> None:
    assert _match("countries", "Mal")["code"] is None
    assert _match("sex", "Pr ia")["match"] in ("exact", "unknown")


def test_a_lower_threshold_still_requires_a_margin_between_candidates() -> None:
    row = codelists.match_values("provinces", ["Jawa"], threshold=50.0).to_pylist()[0]
    assert row["code"] is None


def test_nik_province_codes_include_every_current_province() -> None:
    valid = codelists.nik_province_codes()
    assert set(codelists.codes("provinces")) <= valid
    assert "00" not in valid and "99" not in valid


def test_ten_thousand_distinct_exact_spellings_match_well_under_a_second() -> None:
    aliases = codelists.alias_table("regencies").column("alias").to_pylist()
    values = [f"{a.upper()}{' ' * (i % 3)}" for i, a in enumerate(aliases * 7)][:10_000]
    codelists.match_values("regencies", values[:10])  # build the index outside the timing
    start = time.perf_counter()
    table = codelists.match_values("regencies", values)
    assert time.perf_counter() - start < 1.0
    assert set(table.column("match").to_pylist()) == {"exact"}


# ------------------------------------------------------------------------------------------ placeholders
@pytest.mark.parametrize("name", ["sex", "countries", "education_levels"])
@pytest.mark.parametrize("written", ["-", "--", "?", "0", "00/00/0000", "N/A", "n.a.", "NA", "nil", "Tidak Ada"])
def test_a_placeholder_is_empty_in_every_list(name: str, written: str) -> None:
    assert (_match(name, written)["match"], _match(name, written)["code"]) == ("empty", None)


def test_no_spelling_in_the_code_lists_is_a_placeholder_but_namibias_alpha2_na() -> None:
    """'N/A' is no value, so Namibia's ISO code 'NA' cannot be one of its aliases; no other spelling is lost."""
    lost = []
    for name in ALL_LISTS:
        for row in codelists.load(name).to_pylist():
            spellings = [row["code"], row.get("alpha2"), row["name_id"], row["name_en"], *row["variants"].split("|")]
            lost += [
                (name, s) for s in spellings if s and codelists.is_placeholder_key(codelists.normalise_for(name, s))
            ]
    assert lost == [("countries", "NA")]
    assert _match("education_levels", "None")["code"] == "NONE"  # no schooling, not "no value"


# ------------------------------------------------------------------------------------------ countries
def test_every_countrys_iso_alpha2_code_is_an_alias_but_na_and_as() -> None:
    table = codelists.load("countries").to_pylist()
    expected = {row["alpha2"]: row["code"] for row in table if row["alpha2"] not in ("NA", "AS")}
    found = codelists.match_values("countries", list(expected)).to_pylist()
    assert {r["value"]: r["code"] for r in found} == expected
    assert {r["match"] for r in found} == {"exact"}


def test_as_is_both_amerika_serikat_and_american_samoa_so_is_never_guessed() -> None:
    row = _match("countries", "AS")
    assert (row["code"], row["match"]) == (None, "ambiguous")
    assert "Amerika Serikat (USA)" in row["suggestions"] and "Samoa Amerika (ASM)" in row["suggestions"]


@pytest.mark.parametrize(
    ("written", "code"),
    [("Arab Saudi (KSA)", "SAU"), ("Uni Emirat Arab (UEA)", "ARE"), ("Malaysia (MY)", "MYS"),
     ("Amerika Serikat (USA)", "USA"), ("Korea Selatan (Korsel)", "KOR"), ("Papua Nugini (PNG)", "PNG"),
     ("Hong Kong / HK", "HKG"), ("Amerika Serikat (AS)", "USA")],
)  # fmt: skip
def test_a_name_with_its_abbreviation_beside_it_is_the_country_both_name(written: str, code: str) -> None:
    """'Amerika Serikat (AS)': AS alone is ambiguous, but only the United States is both parts."""
    assert (_match("countries", written)["code"], _match("countries", written)["match"]) == (code, "exact")


@pytest.mark.parametrize("written", ["Malaysia (SG)", "Taiwan / Hong Kong"])
def test_a_name_and_an_abbreviation_of_two_countries_is_ambiguous(written: str) -> None:
    row = _match("countries", written)
    assert (row["code"], row["match"]) == (None, "ambiguous")


def test_a_job_title_with_its_indonesian_abbreviation_is_the_unit_group_both_name() -> None:
    assert _match("occupations", "Penata Laksana Rumah Tangga (PLRT)")["code"] == "9111"


# ------------------------------------------------------------------------------------------ regencies
@pytest.mark.parametrize(
    ("written", "code"),
    [("Kabupaten ediri", "3506"), ("Kabupaten angkat", "1205"), ("Kabupaten intang", "6105"),
     ("Kabupaten Bangka elatan", "1903")],
)  # fmt: skip
def test_a_regency_typo_is_scored_on_the_name_not_on_the_shared_kind_word(written: str, code: str) -> None:
    """With 'kabupaten' in the score every Kabupaten shared ten letters: these went to Dairi (Sumatera Utara),
    Bangka, Bintan and Bangkalan, each in another province."""
    assert _match("regencies", written)["code"] == code


@pytest.mark.parametrize("short", ["Meranti", "Mentawai", "Anambas", "Sangihe", "Talaud", "Selayar", "Aru", "Sula"])
def test_a_kepulauan_regency_written_without_kepulauan_is_that_regency(short: str) -> None:
    """'Kab. Meranti' is Kepulauan Meranti (Riau), not Merangin (Jambi), which it was fuzzily read as."""
    full = next(r for r in codelists.load("regencies").to_pylist() if r["name_id"].endswith(f"Kepulauan {short}"))
    assert (_match("regencies", f"Kab. {short}")["code"], _match("regencies", f"Kab. {short}")["match"]) == (
        full["code"],
        "exact",
    )


def test_province_predecessors_follow_old_codes_back() -> None:
    before = codelists.province_predecessors()
    assert before["96"] == {"92", "91"} and before["93"] == {"91"} and before["76"] == {"73"}
    assert before["35"] == frozenset()


# ------------------------------------------------------------------------------------------ occupations
def test_every_informal_code_in_occupation_titles_exists_in_occupations() -> None:
    known = set(codelists.codes("occupations"))
    informal = {r["title"]: r["informal_code"] for r in codelists.load("occupation_titles").to_pylist()}
    assert {code for code in informal.values() if code} <= known
    assert informal["Caregiver"] == informal["Care Giver"] == "5322"


def test_only_a_title_written_as_the_crosswalk_has_it_gets_its_informal_code() -> None:
    assert codelists.informal_code("CARE-GIVER", "5321") == "5322"
    assert codelists.informal_code("Caregivr", "5321") is None  # a fuzzy spelling keeps the code it matched
    assert codelists.informal_code("Caregiver (Formal)", "5321") is None

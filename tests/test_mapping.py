import pyarrow as pa
import pytest
from agency_factory import agency_config

from pipelines.config import AgencyConfig
from pipelines.mapping import apply_value_map, map_batch
from pipelines.problems import FileRejected
from pipelines.readers import ReadResult


def _read(columns: dict[str, list]) -> ReadResult:
    n = len(next(iter(columns.values())))
    table = pa.table(
        {**{k: pa.array(v, pa.string()) for k, v in columns.items()}, "_source_row": list(range(2, n + 2))}
    )
    return ReadResult(table=table, header=list(columns), header_row=1, format="csv")


def _cfg(**extra) -> AgencyConfig:
    columns = {"nik": ["NIK"], "destination_country": ["Negara Tujuan"], "departure_date": ["Tgl Berangkat"],
               "sex": ["L/P"]}  # fmt: skip
    return agency_config(**{"columns": columns, **extra})


def test_headers_match_aliases_regardless_of_case_spacing_and_punctuation():
    read = _read({"  nik ": ["1"], "NEGARA-TUJUAN": ["Jepang"], "tgl. berangkat": ["1/2/2024"], "l / p": ["P"]})
    mapped = map_batch(read, _cfg())
    assert mapped.table.column("destination_country").to_pylist() == ["Jepang"]
    assert mapped.matched["nik"] == "  nik "


def test_extra_columns_are_ignored_and_listed():
    read = _read({"NIK": ["1"], "Negara Tujuan": ["X"], "Tgl Berangkat": ["d"], "Catatan": ["x"]})
    mapped = map_batch(read, _cfg())
    assert mapped.unmatched_headers == ["Catatan"]
    assert "Catatan" in mapped.warnings[0].en


def test_missing_required_column_rejects_the_file_naming_expected_and_found_columns():
    read = _read({"NIK": ["1"], "Tgl Berangkat": ["d"]})
    with pytest.raises(FileRejected) as exc:
        map_batch(read, _cfg())
    assert exc.value.code == "missing_columns"
    assert "destination_country" in exc.value.message.en and "Negara Tujuan" in exc.value.message.en
    assert "Kolom wajib" in exc.value.message.id and "Tgl Berangkat" in exc.value.message.id


def test_a_file_sent_without_its_header_row_is_rejected_without_quoting_its_first_row():
    """No header cell matches the mapping: the 'header' is a worker's record, which the reason must not quote."""
    first_row = {"3314206805010020": ["3326051204930028"], "Lilis Setyaningsih": ["Dedi"], "28/05/2001": ["12/04/1993"]}
    with pytest.raises(FileRejected) as exc:
        map_batch(_read(first_row), _cfg())
    assert exc.value.code == "missing_columns"
    assert "no header row was found" in exc.value.message.en and "baris judul kolom" in exc.value.message.id
    for message in (exc.value.message.en, exc.value.message.id):
        assert "3314206805010020" not in message and "Lilis" not in message and "28/05/2001" not in message


def test_value_map_keys_match_without_case_or_extra_spaces_and_others_pass_through():
    column = pa.chunked_array([["  laki-LAKI ", "P", "x", None]])
    out = apply_value_map(column, {"Laki-laki": "M", "p": "F"})
    assert out.to_pylist() == ["M", "F", "x", None]


def test_split_transform_fills_birth_date_from_place_and_date_cell():
    cfg = _cfg(transforms=[{"split": "Tempat, Tgl Lahir", "into": [None, "birth_date"]}])
    read = _read({"NIK": ["1", "2"], "Negara Tujuan": ["A", "B"], "Tgl Berangkat": ["d", "d"],
                  "Tempat, Tgl Lahir": ["Cilacap, 12 Mei 1995", "Kota Bandung ,1-2-1990"]})  # fmt: skip
    mapped = map_batch(read, cfg)
    assert mapped.table.column("birth_date").to_pylist() == ["12 Mei 1995", "1-2-1990"]
    assert "Tempat, Tgl Lahir" in mapped.identifier_headers


def test_constant_transform_sets_destination_for_a_mission_abroad():
    cfg = _cfg(columns={"nik": ["NIK"], "departure_date": ["Tgl Berangkat"]},
               transforms=[{"constant": "Malaysia", "into": "destination_country"}])  # fmt: skip
    mapped = map_batch(_read({"NIK": ["1", "2"], "Tgl Berangkat": ["d", "d"]}), cfg)
    assert mapped.table.column("destination_country").to_pylist() == ["Malaysia", "Malaysia"]


def test_extract_and_join_transforms():
    cfg = _cfg(
        columns={"destination_country": ["Negara"], "departure_date": ["Tgl"]},
        transforms=[
            {"extract": "Identitas", "pattern": r"NIK:\s*([0-9]+)", "into": "nik"},
            {"join": ["Depan", "Belakang"], "into": "full_name"},
        ],
    )
    read = _read({"Identitas": ["NIK: 3201 / lain", "tidak ada"], "Depan": ["Siti", "Budi"],
                  "Belakang": ["Aminah", None], "Negara": ["A", "B"], "Tgl": ["d", "d"]})  # fmt: skip
    mapped = map_batch(read, cfg)
    assert mapped.table.column("nik").to_pylist() == ["3201", None]
    assert mapped.table.column("full_name").to_pylist() == ["Siti Aminah", "Budi"]
    assert {"Identitas", "Depan", "Belakang"} <= mapped.identifier_headers


def test_mapping_file_with_unknown_field_is_refused_with_the_key_named():
    with pytest.raises(ValueError, match="unknown schema fields"):
        _cfg(columns={"nomor_hp": ["HP"]})

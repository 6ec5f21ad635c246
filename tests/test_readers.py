"""Specifications of the file readers, each on a real file written to tmp_path (synthetic data only)."""

from __future__ import annotations

import contextlib
import re
import zipfile
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
from openpyxl.utils.cell import get_column_letter

from pipelines import json_stream, readers, report
from pipelines.config import ReadOptions
from pipelines.problems import ISSUE_SCHEMA, FileRejected
from pipelines.readers import ReadResult, normalise_header, read_file, sniff_format

OPTS = ReadOptions()


def write(tmp_path: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return p


def rejected(path: Path, options: ReadOptions = OPTS, **kw: object) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        read_file(path, options, **kw)
    err = info.value
    assert err.message.id and err.message.en
    return err


def rows(result: ReadResult) -> list[dict]:
    return result.table.to_pylist()


def xlsx(tmp_path: Path, data: list[list], name: str = "f.xlsx", **kw: object) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = str(kw.get("title", "Data"))
    for r in data:
        ws.append(r)
    for rng in kw.get("merges", []):
        ws.merge_cells(rng)
    p = tmp_path / name
    wb.save(p)
    return p


def rewrite_member(path: Path, member: str, change) -> None:
    """Rewrite one part of a zip (a test's way to write OOXML that openpyxl will not)."""
    with zipfile.ZipFile(path) as z:
        parts = {i.filename: z.read(i) for i in z.infolist()}
    parts[member] = change(parts[member])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in parts.items():
            z.writestr(n, b)


# ------------------------------------------------------------------------------------------ CSV encodings


@pytest.mark.parametrize(
    ("encoding", "expected_name"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("cp1252", "cp1252"),
        ("utf-16", "utf-16"),  # BOM, native (little-endian) order
    ],
)
def test_csv_encoding_is_detected_and_text_decoded(tmp_path, encoding, expected_name):
    p = write(tmp_path, "f.csv", "NIK,Nama,Catatan\n0012345678901234,José Café,biaya €5\n", encoding)
    r = read_file(p, OPTS)
    assert r.encoding == expected_name
    assert r.header == ["NIK", "Nama", "Catatan"]
    assert rows(r) == [{"NIK": "0012345678901234", "Nama": "José Café", "Catatan": "biaya €5", "_source_row": 2}]


def test_csv_utf16_big_endian_with_bom_is_read(tmp_path):
    p = write(tmp_path, "f.csv", b"\xfe\xff" + "NIK;Nama\n001;Ségolène\n".encode("utf-16-be"))
    r = read_file(p, OPTS)
    assert r.delimiter == ";"
    assert rows(r) == [{"NIK": "001", "Nama": "Ségolène", "_source_row": 2}]


def test_csv_utf8_bom_does_not_leak_into_first_header(tmp_path):
    p = write(tmp_path, "f.csv", "NIK,Nama\n1,A\n", "utf-8-sig")
    assert read_file(p, OPTS).header[0] == "NIK"


def test_csv_windows1252_euro_sign_is_not_read_as_latin1_control_char(tmp_path):
    p = write(tmp_path, "f.csv", "Nama,Biaya\nAni,\u20ac100\n", "cp1252")
    assert rows(read_file(p, OPTS))[0]["Biaya"] == "€100"


def test_csv_declared_encoding_that_does_not_decode_is_rejected(tmp_path):
    p = write(tmp_path, "f.csv", "Nama,Kota\nJosé,Bogotá\n", "cp1252")
    err = rejected(p, ReadOptions(encoding="utf-8"))
    assert err.code == "encoding_mismatch"


def test_csv_declared_encoding_is_honoured(tmp_path):
    p = write(tmp_path, "f.csv", "Nama,Kota\nJosé,Łódź\n", "cp1250")
    r = read_file(p, ReadOptions(encoding="cp1250"))
    assert rows(r)[0]["Kota"] == "Łódź"


def test_csv_that_decodes_under_no_candidate_is_rejected(tmp_path):
    # invalid UTF-8 and bytes undefined in Windows-1252 (0x81 0x8d 0x8f 0x90 0x9d), mixed at random
    body = b"A,B\n" + bytes([0x81, 0xC3, 0x28, 0x8D, 0x90, 0x9D, 0x8F, 0xF8]) * 50 + b",x\n"
    with pytest.raises(FileRejected) as info:
        read_file(write(tmp_path, "f.csv", body), OPTS)
    assert info.value.code in {"unknown_encoding", "binary_content"}


# ------------------------------------------------------------------------------------------ CSV structure


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_detected(tmp_path, delimiter):
    lines = [["NIK", "Nama", "Negara"], ["001", "Ani, S.Pd", "Malaysia"], ["002", "Budi", "Taiwan"]]
    if delimiter == ",":
        lines[1][1] = '"Ani, S.Pd"'
    text = "\n".join(delimiter.join(x) for x in lines) + "\n"
    r = read_file(write(tmp_path, "f.csv", text), OPTS)
    assert r.delimiter == delimiter
    assert r.header == ["NIK", "Nama", "Negara"]
    assert [x["Nama"] for x in rows(r)] == ["Ani, S.Pd", "Budi"]


def test_csv_configured_delimiter_that_does_not_split_the_file_is_rejected(tmp_path):
    p = write(tmp_path, "f.csv", "NIK,Nama,Negara\n001,Ani,Malaysia\n")
    assert rejected(p, ReadOptions(delimiter=";")).code == "wrong_delimiter"


def test_csv_quoted_newline_is_one_row_and_source_rows_count_records(tmp_path):
    text = 'NIK,Nama,Alamat\n001,Ani,"Jl. Mawar\nNo. 5\nRT 2"\n002,Budi,Jl. Melati\n'
    r = read_file(write(tmp_path, "f.csv", text), OPTS)
    assert [(x["NIK"], x["_source_row"]) for x in rows(r)] == [("001", 2), ("002", 3)]
    assert rows(r)[0]["Alamat"] == "Jl. Mawar\nNo. 5\nRT 2"


def test_csv_crlf_line_endings_are_read(tmp_path):
    r = read_file(write(tmp_path, "f.csv", "NIK,Nama\r\n001,Ani\r\n002,Budi\r\n"), OPTS)
    assert [x["Nama"] for x in rows(r)] == ["Ani", "Budi"]


def test_csv_ragged_rows_are_kept_padded_and_reported_with_their_row_number(tmp_path):
    text = 'NIK,Nama,Negara\n001,Ani,Malaysia\n002,"Budi\nS"\n003,Citra,Taiwan,extra\n004,Dewi,Jepang\n'
    r = read_file(write(tmp_path, "f.csv", text), OPTS)
    assert [x["_source_row"] for x in rows(r)] == [2, 3, 4, 5]
    assert rows(r)[1] == {"NIK": "002", "Nama": "Budi\nS", "Negara": None, "_source_row": 3}
    assert rows(r)[2]["Negara"] == "Taiwan"
    issues = r.row_issues.to_pylist()
    assert r.row_issues.schema == ISSUE_SCHEMA
    assert [(i["source_row"], i["rule_id"], i["severity"], i["value"]) for i in issues] == [
        (3, "read.ragged_row", "critical", "expected 3 fields, found 2"),
        (4, "read.ragged_row", "critical", "expected 3 fields, found 4"),
    ]
    assert all(i["message_id"] and i["message_en"] and i["field"] is None for i in issues)


def test_csv_unclosed_quote_is_rejected(tmp_path):
    p = write(tmp_path, "f.csv", 'NIK,Nama,Negara\n001,"Ani,Malaysia\n002,Budi,Taiwan\n003,Citra,Jepang\n')
    err = rejected(p)
    assert err.code == "unclosed_quote"
    assert "2" in err.message.en


def test_csv_unclosed_quote_in_the_last_column_is_rejected(tmp_path):
    p = write(tmp_path, "f.csv", 'NIK,Nama,Negara\n001,Ani,"Malaysia\n002,Budi,Taiwan\n003,Citra,Jepang\n')
    assert rejected(p).code == "unclosed_quote"


def test_csv_with_nul_bytes_is_rejected_as_binary(tmp_path):
    p = write(tmp_path, "f.csv", b"NIK,Nama\n001,A\x00ni\n")
    assert rejected(p).code == "binary_content"


def test_csv_header_is_found_below_title_rows(tmp_path):
    text = "LAPORAN PENEMPATAN PMI\nPeriode: Januari 2024\n\nNo,NIK,Nama Lengkap\n1,001,Ani\n2,002,Budi\n"
    p = write(tmp_path, "f.csv", text)
    for expected in (["nik", "nama lengkap"], []):
        r = read_file(p, OPTS, expected_headers=expected)
        assert r.header_row == 4
        assert r.header == ["No", "NIK", "Nama Lengkap"]
        assert [x["_source_row"] for x in rows(r)] == [5, 6]


def test_csv_configured_header_row_is_used(tmp_path):
    p = write(tmp_path, "f.csv", "Judul,,\nNIK,Nama,Negara\n001,Ani,Malaysia\n")
    r = read_file(p, ReadOptions(header_row=2))
    assert r.header == ["NIK", "Nama", "Negara"]


def test_csv_footer_total_row_is_dropped_with_a_warning(tmp_path):
    text = "NIK,Nama,Biaya\n001,Ani,100\n002,Budi,200\nJumlah,,300\n"
    r = read_file(write(tmp_path, "f.csv", text), OPTS)
    assert [x["NIK"] for x in rows(r)] == ["001", "002"]
    assert any("Jumlah" in w.en for w in r.warnings)


def test_csv_blank_rows_are_skipped_and_counted(tmp_path):
    r = read_file(write(tmp_path, "f.csv", "NIK,Nama\n001,Ani\n\n,\n002,Budi\n"), OPTS)
    assert [x["_source_row"] for x in rows(r)] == [2, 5]
    assert any("2 blank rows" in w.en for w in r.warnings)


def test_csv_nik_column_stays_text_with_leading_zeros(tmp_path):
    r = read_file(write(tmp_path, "f.csv", "NIK,Umur\n0012345678901234,007\n9912345678901234,30\n"), OPTS)
    assert r.table.schema.field("NIK").type == "string"
    assert [x["NIK"] for x in rows(r)] == ["0012345678901234", "9912345678901234"]
    assert rows(r)[0]["Umur"] == "007"


def test_csv_duplicate_and_empty_header_names_are_made_unique(tmp_path):
    r = read_file(write(tmp_path, "f.csv", "Nama,Nama, ,Negara\nAni,Ani S,x,Malaysia\n"), OPTS)
    assert r.header == ["Nama", "Nama__2", "column_3", "Negara"]
    assert any("Nama__2" in w.en for w in r.warnings)


def test_csv_trailing_delimiter_column_without_header_or_data_is_dropped(tmp_path):
    r = read_file(write(tmp_path, "f.csv", "NIK,Nama,\n001,Ani,\n"), OPTS)
    assert r.header == ["NIK", "Nama"]


def test_csv_with_10000_columns_is_rejected_by_default_and_read_when_allowed(tmp_path):
    header = ",".join(f"k{i}" for i in range(10_000))
    values = ",".join(str(i) for i in range(10_000))
    p = write(tmp_path, "f.csv", f"{header}\n{values}\n")
    assert rejected(p).code == "too_many_columns"
    r = read_file(p, ReadOptions(max_columns=10_000))
    assert r.table.num_columns == 10_001 and rows(r)[0]["k9999"] == "9999"


def test_empty_file_is_rejected(tmp_path):
    assert rejected(write(tmp_path, "f.csv", b"")).code == "empty_file"


def test_file_of_blank_lines_is_rejected_as_empty(tmp_path):
    assert rejected(write(tmp_path, "f.csv", "\n \n\n")).code == "empty_file"


def test_header_only_csv_is_rejected(tmp_path):
    assert rejected(write(tmp_path, "f.csv", "NIK,Nama,Negara\n")).code == "no_data_rows"


def test_file_larger_than_max_bytes_is_rejected_before_reading(tmp_path):
    p = write(tmp_path, "f.csv", "NIK,Nama\n" + "001,Ani\n" * 100)
    assert rejected(p, ReadOptions(max_bytes=100)).code == "file_too_large"


# ------------------------------------------------------------------------------------------ sniffing


def test_format_is_sniffed_by_content_not_extension(tmp_path):
    p = xlsx(tmp_path, [["NIK"], ["001"]], name="really_a_workbook.csv")
    assert sniff_format(p) == "xlsx"
    assert sniff_format(write(tmp_path, "d.txt", '[{"a": 1}]')) == "json"
    assert sniff_format(write(tmp_path, "e.xlsx", "a,b\n1,2\n")) == "csv"


def test_pdf_named_csv_is_rejected_as_not_a_table(tmp_path):
    assert rejected(write(tmp_path, "f.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj")).code == "not_a_table"


def test_binary_junk_named_csv_is_rejected(tmp_path):
    junk = bytes(range(1, 32)) * 40
    assert rejected(write(tmp_path, "f.csv", junk)).code == "binary_content"


def test_legacy_xls_is_rejected_with_save_as_advice(tmp_path):
    err = rejected(write(tmp_path, "f.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600))
    assert err.code == "legacy_xls"
    assert ".xlsx" in err.message.en and ".xlsx" in err.message.id


def test_html_saved_as_xlsx_is_rejected(tmp_path):
    page = "<html><body><table><tr><td>NIK</td></tr><tr><td>001</td></tr></table></body></html>"
    err = rejected(write(tmp_path, "f.xlsx", page))
    assert err.code == "html_not_spreadsheet"
    assert "save it as .xlsx" in err.message.en


def test_zip_that_is_not_a_workbook_is_rejected(tmp_path):
    p = tmp_path / "f.xlsx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("word/document.xml", "<w/>")
    assert rejected(p).code == "not_a_table"


def test_configured_format_that_differs_from_the_content_is_rejected(tmp_path):
    p = xlsx(tmp_path, [["NIK"], ["001"]])
    assert rejected(p, ReadOptions(format="csv")).code == "format_mismatch"


def test_csv_without_a_bom_where_utf16_is_registered_is_an_encoding_mismatch_not_a_crash(tmp_path):
    # Python's 'utf-16' decoder raises a bare UnicodeError, not a UnicodeDecodeError, for text without a BOM
    p = write(tmp_path, "f.csv", "Nama\tNIK\r\nBudi\t3301010101900001\r\n")
    err = rejected(p, ReadOptions(format="csv", encoding="utf-16", delimiter="\t", header_row=1))
    assert err.code == "encoding_mismatch"
    assert "utf-16" in err.message.en


@pytest.mark.parametrize("registered", ["utf-16", "cp1252", "latin-1"])
def test_csv_with_a_utf8_bom_where_another_encoding_is_registered_is_an_encoding_mismatch(tmp_path, registered):
    """Read as cp1252, the BOM would be 'ï»¿' glued to the first header, and that column would go unmatched."""
    p = write(tmp_path, "f.csv", "Nama\tNIK\r\nBudi\t3301010101900001\r\n", "utf-8-sig")
    err = rejected(p, ReadOptions(format="csv", encoding=registered, delimiter="\t", header_row=1))
    assert err.code == "encoding_mismatch"
    assert "utf-8-sig" in err.message.en


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_csv_in_utf16_without_a_bom_where_utf16_is_registered_is_read(tmp_path, encoding):
    p = write(tmp_path, "f.csv", "Nama\tKota\r\nSégolène\tCilacap\r\n", encoding)
    r = read_file(p, ReadOptions(format="csv", encoding="utf-16", delimiter="\t", header_row=1))
    assert r.encoding == encoding
    assert rows(r) == [{"Nama": "Ségolène", "Kota": "Cilacap", "_source_row": 2}]


def test_utf16_text_without_a_bom_fails_verification_at_its_first_byte(tmp_path):
    err = readers._verify(write(tmp_path, "f.csv", "Nama,Kota\nAni,Cilacap\n"), "utf-16")
    assert isinstance(err, UnicodeDecodeError) and err.start == 0


# ------------------------------------------------------------------------------------------ returned rejected rows

REJECTED_HEADER = ["No Registrasi", "Nama", "Negara Tujuan", report.REASON_COLUMN, report.ROW_COLUMN]
REJECTED_ROWS = [
    ["R-1", "Zoë Contoh", "Atlantis", "Negara tujuan tidak dikenal. / Destination country is unknown.", "7"],
    ["R-2", "Budi, S.Pd", "Taiwan", "Tanggal tidak ada. / Date does not exist.", "12"],
]
AGREED_LAYOUTS = {
    "json": ReadOptions(format="json", records_path="data"),
    "xlsx-sheet-header-row-4": ReadOptions(format="xlsx", sheet="Penempatan", header_row=4),
    "csv-utf16-tab": ReadOptions(format="csv", encoding="utf-16", delimiter="\t", header_row=1),
    "csv-cp1252-semicolon": ReadOptions(format="csv", encoding="cp1252", delimiter=";", header_row=1),
    "csv-utf8-comma": ReadOptions(format="csv", encoding="utf-8", delimiter=",", header_row=1),
}


def rejected_rows_file(tmp_path: Path, ext: str, header=REJECTED_HEADER, data=REJECTED_ROWS) -> Path:
    """A rejected_rows.csv / .xlsx written by the report's own writers."""
    path = tmp_path / f"rejected_rows.{ext}"
    columns = [pa.array([r[i] for r in data], pa.string()) for i in range(len(header))]
    (report._write_csv if ext == "csv" else report._write_xlsx)(path, header, columns)
    return path


def test_rejected_rows_columns_looked_for_are_the_ones_the_report_writes():
    assert (readers.REJECTED_REASON_COLUMN, readers.REJECTED_ROW_COLUMN) == (report.REASON_COLUMN, report.ROW_COLUMN)


@pytest.mark.parametrize("agreed", AGREED_LAYOUTS.values(), ids=AGREED_LAYOUTS.keys())
@pytest.mark.parametrize("ext", ["csv", "xlsx"])
def test_returned_rejected_rows_file_is_read_by_its_own_format_whatever_the_agreed_layout(tmp_path, ext, agreed):
    r = read_file(rejected_rows_file(tmp_path, ext), agreed, expected_headers=["No Registrasi", "Negara Tujuan"])
    assert (r.format, r.header_row) == (ext, 1)
    assert r.header == REJECTED_HEADER
    assert [list(x.values()) for x in rows(r)] == [[*row, n] for row, n in zip(REJECTED_ROWS, [2, 3], strict=True)]
    assert "returned rejected-rows file" in r.warnings[0].en and "dikirim kembali" in r.warnings[0].id


def test_returned_rejected_rows_workbook_saved_again_by_a_spreadsheet_program_is_recognised(tmp_path):
    # a spreadsheet program keeps the header's text in the shared strings, not in the sheet as the report writes it
    wb = openpyxl.load_workbook(rejected_rows_file(tmp_path, "xlsx"))
    wb.active["C2"] = "Malaysia"
    wb.save(tmp_path / "diperbaiki.xlsx")
    r = read_file(tmp_path / "diperbaiki.xlsx", AGREED_LAYOUTS["json"])
    assert (r.format, r.header) == ("xlsx", REJECTED_HEADER)
    assert rows(r)[0]["Negara Tujuan"] == "Malaysia"
    assert "returned rejected-rows file" in r.warnings[0].en


def test_returned_rejected_rows_csv_saved_again_in_windows1252_with_semicolons_is_recognised(tmp_path):
    text = "\r\n".join(";".join(row) for row in [REJECTED_HEADER, *REJECTED_ROWS]) + "\r\n"
    p = write(tmp_path, "diperbaiki.csv", text, "cp1252")
    r = read_file(p, AGREED_LAYOUTS["csv-utf16-tab"])
    assert (r.format, r.encoding, r.delimiter, r.header) == ("csv", "cp1252", ";", REJECTED_HEADER)
    assert rows(r)[0]["Nama"] == "Zoë Contoh"
    assert "returned rejected-rows file" in r.warnings[0].en


def test_file_naming_only_one_of_the_rejected_rows_columns_keeps_the_agreed_format(tmp_path):
    p = rejected_rows_file(tmp_path, "csv", REJECTED_HEADER[:-1], [r[:-1] for r in REJECTED_ROWS])
    assert rejected(p, AGREED_LAYOUTS["json"]).code == "format_mismatch"


# ------------------------------------------------------------------------------------------ XLSX


@pytest.fixture(params=["calamine", "openpyxl"])
def xlsx_reader(request, monkeypatch):
    """Each XLSX case both ways: calamine, and openpyxl's streaming parser that takes sparse sheets."""
    if request.param == "openpyxl":
        monkeypatch.setattr(readers, "SPARSE_SLACK_CELLS", -(10**12))  # every sheet counts as sparse
    return request.param


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_cells_are_text_numbers_without_dot_zero(tmp_path):
    p = xlsx(tmp_path, [["NIK", "Umur", "Gaji", "Aktif"], ["0012345678901234", 30, 1500.5, True]])
    r = read_file(p, OPTS)
    assert r.format == "xlsx" and r.sheet == "Data"
    assert rows(r) == [{"NIK": "0012345678901234", "Umur": "30", "Gaji": "1500.5", "Aktif": "TRUE", "_source_row": 2}]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_nik_stored_as_number_comes_out_as_digits_with_a_precision_warning(tmp_path):
    p = xlsx(tmp_path, [["NIK"], [3201234567890123], [float(3201234567890124)]])
    r = read_file(p, OPTS)
    assert [x["NIK"] for x in rows(r)] == ["3201234567890123", "3201234567890124"]
    assert any("15 digits" in w.en and "NIK" in w.en for w in r.warnings)


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_dates_and_datetimes_are_iso_text(tmp_path):
    p = xlsx(tmp_path, [["Tgl", "Waktu"], [date(2024, 3, 5), datetime(2024, 3, 5, 14, 30, 0)]])
    assert rows(read_file(p, OPTS))[0] == {
        "Tgl": "2024-03-05",
        "Waktu": "2024-03-05 14:30:00",
        "_source_row": 2,
    }


def _serial_date_workbook(tmp_path: Path, name: str, epoch_1904: bool) -> Path:
    p = xlsx(tmp_path, [["Tanggal"], [45000]], name=name)
    rewrite_member(p, "xl/worksheets/sheet1.xml", lambda b: b.replace(b'<c r="A2" t="n">', b'<c r="A2" s="1" t="n">'))
    # a cell style with the built-in date format 14 (m/d/yyyy), and the workbook's date system

    def styles(b: bytes) -> bytes:
        return re.sub(
            rb"<cellXfs[^>]*>.*?</cellXfs>",
            b'<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
            b'<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
            b"</cellXfs>",
            b,
            flags=re.S,
        )

    rewrite_member(p, "xl/styles.xml", styles)
    if epoch_1904:
        rewrite_member(
            p,
            "xl/workbook.xml",
            lambda b: (
                re.sub(rb"<workbookPr[^>]*/>", b'<workbookPr date1904="1"/>', b)
                if b"<workbookPr" in b
                else b.replace(b"<sheets>", b'<workbookPr date1904="1"/><sheets>')
            ),
        )
    return p


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_serial_date_in_the_1900_system(tmp_path):
    p = _serial_date_workbook(tmp_path, "d1900.xlsx", epoch_1904=False)
    assert rows(read_file(p, OPTS))[0]["Tanggal"] == "2023-03-15"  # serial 45000


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_serial_date_in_the_1904_system(tmp_path):
    p = _serial_date_workbook(tmp_path, "d1904.xlsx", epoch_1904=True)
    assert rows(read_file(p, OPTS))[0]["Tanggal"] == "2027-03-16"  # 45000 days after 1904-01-01


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_header_is_found_below_title_rows(tmp_path):
    p = xlsx(
        tmp_path,
        [["LAPORAN PENEMPATAN"], ["Periode 2024"], [], ["NIK", "Nama", "Negara"], ["001", "Ani", "Malaysia"]],
        merges=["A1:C1"],
    )
    r = read_file(p, OPTS, expected_headers=["nik", "negara"])
    assert (r.header_row, r.header) == (4, ["NIK", "Nama", "Negara"])
    assert rows(r)[0]["_source_row"] == 5
    assert read_file(p, OPTS).header_row == 4  # without expected headers too (merged title ignored)


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_merged_header_cells_apply_to_every_column_they_span(tmp_path):
    p = xlsx(
        tmp_path,
        [["NIK", "Alamat", None], [None, "Provinsi", "Kota"], ["001", "Jawa Barat", "Bogor"]],
        merges=["A1:A2", "B1:C1"],
    )
    r = read_file(p, OPTS, expected_headers=["nik", "provinsi", "kota"])
    assert (r.header_row, r.header) == (2, ["NIK", "Provinsi", "Kota"])
    r1 = read_file(p, ReadOptions(header_row=1))
    assert r1.header == ["NIK", "Alamat", "Alamat__2"]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_formula_with_saved_value_uses_the_value(tmp_path):
    p = xlsx(tmp_path, [["Gaji", "Dua kali"], [21, "=A2*2"]])
    rewrite_member(p, "xl/worksheets/sheet1.xml", lambda b: b.replace(b"<v />", b"<v>42</v>"))
    r = read_file(p, OPTS)
    assert rows(r)[0]["Dua kali"] == "42"
    assert not any("formula" in w.en for w in r.warnings)


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_formula_without_saved_value_is_empty_with_a_warning(tmp_path):
    p = xlsx(tmp_path, [["Gaji", "Dua kali"], [21, "=A2*2"]])
    with zipfile.ZipFile(p) as z:
        assert b"<f>A2*2</f><v />" in z.read("xl/worksheets/sheet1.xml")  # openpyxl saves no value
    r = read_file(p, OPTS)
    assert rows(r)[0]["Dua kali"] is None
    assert any("formula" in w.en and "B2" in w.en for w in r.warnings)


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_sheet_by_name_and_by_position_and_default_first_with_data(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "Kosong"
    for name in ("Satu", "Dua"):
        ws = wb.create_sheet(name)
        ws.append(["NIK"])
        ws.append([name])
    p = tmp_path / "f.xlsx"
    wb.save(p)
    assert read_file(p, OPTS).sheet == "Satu"
    assert rows(read_file(p, ReadOptions(sheet="Dua")))[0]["NIK"] == "Dua"
    assert rows(read_file(p, ReadOptions(sheet=1)))[0]["NIK"] == "Satu"
    assert rejected(p, ReadOptions(sheet="Tiga")).code == "sheet_not_found"


def test_xlsx_chart_sheet_is_passed_over_and_counted_in_positions(tmp_path):
    # openpyxl cannot load the chart sheet it writes itself, so this case is calamine's only
    wb = openpyxl.Workbook()
    wb.active.title = "Kosong"
    wb.create_chartsheet("Grafik")
    ws = wb.create_sheet("Satu")
    ws.append(["NIK"])
    ws.append(["001"])
    p = tmp_path / "f.xlsx"
    wb.save(p)
    assert read_file(p, OPTS).sheet == "Satu"
    assert rows(read_file(p, ReadOptions(sheet=2)))[0]["NIK"] == "001"
    assert rejected(p, ReadOptions(sheet="Grafik")).code == "empty_file"


PLACEMENT = ["No. Pendaftaran", "NIK", "Nama", "Negara"]
MAPPED = ["no pendaftaran", "nik", "nama", "negara"]  # the header names the agency's mapping knows
RECORDS_2023 = [
    ["JTM-2023-1", "0000000000000001", "Ani", "Malaysia"],
    ["JTM-2023-2", "0000000000000002", "Budi", "Taiwan"],
]
RECORDS_2024 = [["JTM-2024-1", "0000000000000003", "Citra", "Hongkong"]]
LOOKUP = [["Laki-laki", "SD"], ["Perempuan", "SMP"]]  # a drop-down list: values, no header


def workbook(tmp_path: Path, sheets: dict[str, list[list]], states: dict[str, str] | None = None) -> Path:
    """One sheet per entry, in order; `states` hides some of them ("hidden", "veryHidden")."""
    states = states or {}
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, data in sheets.items():
        ws = wb.create_sheet(title)
        for r in data:
            ws.append(r)
        ws.sheet_state = states.get(title, "visible")
    wb.active = next(i for i, title in enumerate(sheets) if title not in states)
    p = tmp_path / "f.xlsx"
    wb.save(p)
    return p


@pytest.mark.usefixtures("xlsx_reader")
@pytest.mark.parametrize("state", ["hidden", "veryHidden"])
@pytest.mark.parametrize("expected", [MAPPED, []], ids=["mapping", "no-mapping"])
def test_xlsx_hidden_lookup_sheet_before_the_data_sheet_is_passed_over(tmp_path, state, expected):
    p = workbook(tmp_path, {"ref": LOOKUP, "Penempatan": [PLACEMENT, *RECORDS_2023]}, {"ref": state})
    r = read_file(p, OPTS, expected_headers=expected)
    assert (r.sheet, r.header) == ("Penempatan", PLACEMENT)
    assert [x["Nama"] for x in rows(r)] == ["Ani", "Budi"]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_hidden_sheet_named_in_the_options_is_read(tmp_path):
    p = workbook(tmp_path, {"Arsip": [PLACEMENT, *RECORDS_2023], "Kosong": [["-"]]}, {"Arsip": "hidden"})
    r = read_file(p, ReadOptions(sheet="Arsip"), expected_headers=MAPPED)
    assert r.sheet == "Arsip"
    assert [(x["Nama"], x["_source_row"]) for x in rows(r)] == [("Ani", 2), ("Budi", 3)]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_data_on_two_sheets_is_rejected_naming_the_sheets(tmp_path):
    p = workbook(tmp_path, {"2023": [PLACEMENT, *RECORDS_2023], "2024": [PLACEMENT, *RECORDS_2024]})
    err = rejected(p, OPTS, expected_headers=MAPPED)
    assert err.code == "multiple_data_sheets"
    assert "2 lembar: '2023', '2024'" in err.message.id
    assert "Kirim setiap lembar sebagai berkas tersendiri" in err.message.id
    assert "2 sheets: '2023', '2024'" in err.message.en
    assert "Send each sheet as a file of its own" in err.message.en and "read.sheet" in err.message.en


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_data_on_two_sheets_is_read_from_the_sheet_named_in_the_options(tmp_path):
    p = workbook(tmp_path, {"2023": [PLACEMENT, *RECORDS_2023], "2024": [PLACEMENT, *RECORDS_2024]})
    r = read_file(p, ReadOptions(sheet="2024"), expected_headers=MAPPED)
    assert r.sheet == "2024"
    assert [(x["Nama"], x["_source_row"]) for x in rows(r)] == [("Citra", 2)]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_hidden_sheet_holding_data_counts_as_another_data_sheet(tmp_path):
    p = workbook(tmp_path, {"2023": [PLACEMENT, *RECORDS_2023], "2024": [PLACEMENT, *RECORDS_2024]}, {"2023": "hidden"})
    err = rejected(p, OPTS, expected_headers=MAPPED)
    assert err.code == "multiple_data_sheets"
    assert "'2023' (tersembunyi), '2024'" in err.message.id
    assert "'2023' (hidden), '2024'" in err.message.en


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_title_notes_and_lookup_sheets_do_not_count_as_data(tmp_path):
    notes = [["PETUNJUK PENGISIAN"], ["Isi satu baris untuk setiap PMI."], ["Tanggal ditulis HH/BB/TTTT."]]
    countries = [["Negara"], ["Malaysia"], ["Taiwan"], ["Hongkong"]]  # names one of the mapping's four columns
    p = workbook(tmp_path, {"Petunjuk": notes, "Penempatan": [PLACEMENT, *RECORDS_2023], "Referensi": countries})
    r = read_file(p, OPTS, expected_headers=MAPPED)
    assert (r.sheet, r.header_row) == ("Penempatan", 1)
    assert [x["Nama"] for x in rows(r)] == ["Ani", "Budi"]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_sheet_with_a_header_and_only_a_total_row_does_not_count_as_data(tmp_path):
    template = [PLACEMENT, ["JUMLAH", None, None, 0]]  # next year's sheet, prepared and not filled in yet
    p = workbook(tmp_path, {"2024": [PLACEMENT, *RECORDS_2024], "2025": template})
    r = read_file(p, OPTS, expected_headers=MAPPED)
    assert r.sheet == "2024"
    assert [x["Nama"] for x in rows(r)] == ["Citra"]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_footer_total_row_and_blank_rows_are_dropped_with_warnings(tmp_path):
    p = xlsx(tmp_path, [["NIK", "Biaya"], ["001", 100], [], ["002", 200], ["TOTAL", 300]])
    r = read_file(p, OPTS)
    assert [(x["NIK"], x["_source_row"]) for x in rows(r)] == [("001", 2), ("002", 4)]
    assert any("TOTAL" in w.en for w in r.warnings)
    assert any("1 blank rows" in w.en for w in r.warnings)


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_data_beyond_the_header_is_kept_as_extra_column_with_warning(tmp_path):
    r = read_file(xlsx(tmp_path, [["NIK", "Nama"], ["001", "Ani", "catatan"]]), OPTS)
    assert r.header == ["NIK", "Nama", "column_3"]
    assert any("without a header" in w.en for w in r.warnings)


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_error_cells_keep_their_error_text(tmp_path):
    p = xlsx(tmp_path, [["NIK", "Umur"], ["001", "=1/0"]])
    rewrite_member(
        p,
        "xl/worksheets/sheet1.xml",
        lambda b: b.replace(b'<c r="B2"><f>1/0</f><v />', b'<c r="B2" t="e"><f>1/0</f><v>#DIV/0!</v>'),
    )
    r = read_file(p, OPTS)
    assert rows(r)[0]["Umur"] == "#DIV/0!"
    assert not any("formula" in w.en for w in r.warnings)


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_table_right_of_column_a_keeps_sheet_rows_and_columns(tmp_path):
    p = xlsx(
        tmp_path, [[], [None, None, "NIK", "Nama"], [None, None, "001", "Ani"], [], [None, None, "002", None, "x"]]
    )
    r = read_file(p, OPTS)
    assert (r.header_row, r.header) == (2, ["NIK", "Nama", "column_5"])  # the sheet's column E
    assert [(x["NIK"], x["Nama"], x["column_5"], x["_source_row"]) for x in rows(r)] == [
        ("001", "Ani", None, 3),
        ("002", None, "x", 5),
    ]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_sheet_xml_with_a_namespace_prefix_reads_the_same(tmp_path):
    p = xlsx(tmp_path, [["NIK", "Dua kali"], ["001", "=A2*2"]])

    def prefixed(b: bytes) -> bytes:  # <x:worksheet xmlns:x="..."><x:sheetData><x:row>...
        b = re.sub(rb"<(/?)(?!\?)(\w+)", rb"<\1x:\2", b)
        return b.replace(b'xmlns="http://schemas', b'xmlns:x="http://schemas', 1)

    rewrite_member(p, "xl/worksheets/sheet1.xml", prefixed)
    r = read_file(p, OPTS)
    assert rows(r) == [{"NIK": "001", "Dua kali": None, "_source_row": 2}]
    assert any("formula" in w.en and "B2" in w.en for w in r.warnings)


def test_xlsx_sheet_with_a_stray_cell_far_from_its_data_is_streamed_not_held_as_a_grid(tmp_path, monkeypatch):
    # calamine would hold 20,001 x 500 cells (320 MB) for this sheet of 40,003 cells
    data = [["NIK", "Nama"]] + [[f"{i:016d}", "Ani"] for i in range(20_000)]
    p = xlsx(tmp_path, data)
    rewrite_member(
        p,
        "xl/worksheets/sheet1.xml",
        lambda b: b.replace(b"</row></sheetData>", b'<c r="SF20001" t="n"><v>7</v></c></row></sheetData>'),
    )
    with zipfile.ZipFile(p) as z:
        scan = readers._scan_sheet(z, "xl/worksheets/sheet1.xml")
    assert (scan.rows, scan.columns, scan.cells, scan.sparse) == (20_001, 500, 40_003, True)

    def no_grid(*args: object) -> None:
        raise AssertionError("a sparse sheet went to calamine")

    monkeypatch.setattr(readers, "_calamine_cells", no_grid)
    r = read_file(p, OPTS)
    assert r.table.num_rows == 20_000
    assert rows(r)[-1]["column_500"] == "7"


@pytest.mark.parametrize(
    "reference",
    ['r="SF20001"', '\tr="SF20001"', 'r="sf20001"', "r='SF20001'", 'r = "SF20001"', 'r="SF020001"', 'r="$SF$20001"'],
)
def test_xlsx_cell_placed_below_its_row_tag_counts_for_the_extent(tmp_path, monkeypatch, reference):
    # calamine places a cell by its own reference, whatever row tag holds it, and reads each of these forms
    p = xlsx(tmp_path, [["NIK", "Nama"], ["001", "Ani"]])
    cell = f'<c {reference} t="n"><v>7</v></c>'.encode()
    rewrite_member(
        p, "xl/worksheets/sheet1.xml", lambda b: b.replace(b"</row></sheetData>", cell + b"</row></sheetData>")
    )
    with zipfile.ZipFile(p) as z:
        scan = readers._scan_sheet(z, "xl/worksheets/sheet1.xml")
    assert (scan.rows, scan.columns, scan.sparse) == (20_001, 500, True)
    gridded: list[object] = []
    monkeypatch.setattr(readers, "_calamine_cells", lambda *a: gridded.append(a) or iter(()))
    with contextlib.suppress(FileRejected):  # openpyxl may refuse the odd reference; calamine must not see it
        read_file(p, OPTS)
    assert gridded == []


def test_cell_reference_searches_find_exactly_the_later_columns_and_rows():
    columns = [1, 2, 16, 26, 27, 52, 500, 702, 703, 16_384]
    for seen in [0, *columns]:
        wider = readers._wider_than(seen)
        assert [c for c in columns if wider.search(f'<c r="{get_column_letter(c)}7">'.encode())] == [
            c for c in columns if c > seen
        ]
    rows_ = [1, 9, 10, 99, 100, 100_014, 100_015, 100_020, 999_999, 1_000_000, 1_048_576]
    for seen in [0, *rows_]:
        lower = readers._lower_than(seen)
        assert [r for r in rows_ if lower.search(f'<c r="B{r}">'.encode())] == [r for r in rows_ if r > seen]
    assert not readers._wider_than(0).search(b'<row r="12">')  # a row tag is no cell


def test_xlsx_sheet_scan_finds_extent_merges_and_formulas_without_a_value(tmp_path):
    p = xlsx(tmp_path, [["A", "B", "C"], [1, "=A2*2", None], [None, None, 3]], merges=["A1:B1", "A3:B3"])
    with zipfile.ZipFile(p) as z:
        scan = readers._scan_sheet(z, "xl/worksheets/sheet1.xml")
    assert (scan.rows, scan.columns, scan.sparse) == (3, 3, False)
    assert sorted(scan.merges) == [(1, 1, 1, 2), (3, 1, 3, 2)]
    assert scan.formula_missing == ["B2"]


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_header_only_is_rejected(tmp_path):
    assert rejected(xlsx(tmp_path, [["NIK", "Nama"]])).code == "no_data_rows"


def test_truncated_xlsx_is_rejected(tmp_path):
    p = xlsx(tmp_path, [["NIK", "Nama"], ["001", "Ani"]])
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    err = rejected(p)
    assert err.code == "corrupt_xlsx"
    assert "incomplete" in err.message.en


def test_zip_bomb_member_is_rejected_by_compression_ratio(tmp_path):
    p = xlsx(tmp_path, [["NIK"], ["001"]])
    with zipfile.ZipFile(p, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/media/image1.bin", b"\x00" * (8 << 20))
    assert rejected(p).code == "zip_bomb"


@pytest.mark.usefixtures("xlsx_reader")
def test_xlsx_larger_than_the_unpacked_cap_is_rejected(tmp_path):
    p = xlsx(tmp_path, [["NIK"], ["001"]])
    assert rejected(p, ReadOptions(xlsx_max_uncompressed_bytes=1000)).code == "xlsx_too_large"


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]>"
)


def _bomb_sheet(sheet: bytes, padding: bytes = b"") -> bytes:
    body = re.sub(rb"^<\?xml[^>]*\?>", b"", sheet)
    body = body.replace(
        b'<c r="A2" t="inlineStr"><is><t>001</t></is></c>',
        b'<c r="A2" t="inlineStr"><is><t>&lol9;</t></is></c>',
    )
    return LAUGHS.replace(b"<!DOCTYPE", padding + b"<!DOCTYPE") + body


def test_xml_bomb_in_a_sheet_is_refused(tmp_path):
    p = xlsx(tmp_path, [["NIK"], ["001"]])
    rewrite_member(p, "xl/worksheets/sheet1.xml", _bomb_sheet)
    assert rejected(p).code == "unsafe_xml"


def test_xml_bomb_hidden_after_a_long_comment_is_still_refused(tmp_path):
    p = xlsx(tmp_path, [["NIK"], ["001"]])
    pad = b"<!--" + b"x" * 200_000 + b"-->"
    rewrite_member(p, "xl/worksheets/sheet1.xml", lambda b: _bomb_sheet(b, pad))
    assert rejected(p).code == "unsafe_xml"


# ------------------------------------------------------------------------------------------ JSON


@pytest.fixture(params=["held", "streamed"])
def json_reader(request, monkeypatch):
    """Each JSON case both ways: held as Arrow after the first pass, and read again in chunks (as a file
    past JSON_HOLD_BYTES is), its text a few characters at a time so records straddle the blocks."""
    if request.param == "streamed":
        monkeypatch.setattr(readers, "JSON_HOLD_BYTES", -1)
        monkeypatch.setattr(readers, "JSON_BLOCK_RECORDS", 2)
        monkeypatch.setattr(json_stream, "BLOCK_CHARS", 7)
    return request.param


@pytest.mark.usefixtures("json_reader")
def test_json_array_of_objects(tmp_path):
    p = write(tmp_path, "f.json", '[{"nik": "001", "umur": 30}, {"nik": "002", "umur": 41.50}]')
    r = read_file(p, OPTS)
    assert (r.format, r.header_row, r.header) == ("json", 0, ["nik", "umur"])
    assert rows(r) == [
        {"nik": "001", "umur": "30", "_source_row": 1},
        {"nik": "002", "umur": "41.50", "_source_row": 2},
    ]


@pytest.mark.usefixtures("json_reader")
def test_json_number_nik_keeps_all_digits(tmp_path):
    r = read_file(write(tmp_path, "f.json", '[{"nik": 3201234567890123}]'), OPTS)
    assert rows(r)[0]["nik"] == "3201234567890123"


@pytest.mark.usefixtures("json_reader")
def test_ndjson_lines_are_records_numbered_by_line(tmp_path):
    p = write(tmp_path, "f.json", '{"nik": "001"}\n\n{"nik": "002", "negara": "MY"}\n')
    r = read_file(p, OPTS)
    assert rows(r) == [
        {"nik": "001", "negara": None, "_source_row": 1},
        {"nik": "002", "negara": "MY", "_source_row": 3},
    ]


@pytest.mark.usefixtures("json_reader")
def test_json_nested_objects_are_flattened_to_dotted_names(tmp_path):
    p = write(tmp_path, "f.json", '[{"worker": {"nik": "001", "alamat": {"kota": "Bogor"}}, "tags": [1, 2]}]')
    r = read_file(p, OPTS)
    assert rows(r)[0] == {
        "worker.nik": "001",
        "worker.alamat.kota": "Bogor",
        "tags": "[1, 2]",
        "_source_row": 1,
    }


@pytest.mark.usefixtures("json_reader")
def test_json_scalars_become_text_as_written_and_empty_values_null(tmp_path):
    doc = (
        '[{" nik ": "001", "aktif": true, "gaji": 1.10, "catatan": "", "x": null, "alamat": {}},'
        ' {" nik ": "002", "aktif": false, "gaji": 2, "catatan": "ok", "x": {"y": "z"}, "alamat": {"kota": 7}}]'
    )
    r = read_file(write(tmp_path, "f.json", doc), OPTS)
    assert rows(r) == [
        {"nik": "001", "aktif": "true", "gaji": "1.10", "catatan": None, "x": None, "x.y": None, "alamat.kota": None,
         "_source_row": 1},
        {"nik": "002", "aktif": "false", "gaji": "2", "catatan": "ok", "x": None, "x.y": "z", "alamat.kota": "7",
         "_source_row": 2},
    ]  # fmt: skip


@pytest.mark.usefixtures("json_reader")
def test_json_records_path_is_followed(tmp_path):
    p = write(tmp_path, "f.json", '{"meta": {"n": 1}, "result": {"data": [{"nik": "001"}]}}')
    assert rows(read_file(p, ReadOptions(records_path="result.data")))[0]["nik"] == "001"
    assert rejected(p, ReadOptions(records_path="result.rows")).code == "json_records_not_found"


@pytest.mark.usefixtures("json_reader")
def test_json_record_that_is_not_an_object_is_a_row_issue(tmp_path):
    r = read_file(write(tmp_path, "f.json", '[{"nik": "001"}, "oops", {"nik": "003"}]'), OPTS)
    assert [x["_source_row"] for x in rows(r)] == [1, 2, 3]
    assert [(i["source_row"], i["rule_id"], i["value"]) for i in r.row_issues.to_pylist()] == [
        (2, "read.not_an_object", "string")
    ]


@pytest.mark.usefixtures("json_reader")
def test_json_record_that_is_an_array_is_reported_by_its_type_never_its_values(tmp_path):
    """An array record is a worker's fields without their names; the issue (shown to the officer) names its type."""
    doc = '[{"nik": "001"}, ["KBRI/1", "Siti Aminah", "3301014101990001", "X1234567"], 42]'
    r = read_file(write(tmp_path, "f.json", doc), OPTS)
    assert [(i["source_row"], i["value"]) for i in r.row_issues.to_pylist()] == [(2, "array"), (3, "number")]


@pytest.mark.usefixtures("json_reader")
def test_invalid_json_is_rejected_with_its_position(tmp_path):
    err = rejected(write(tmp_path, "f.json", '[\n{"nik": "001"},\n{"nik": "002",,}\n]'))
    assert err.code == "invalid_json"
    assert "line 3" in err.message.en and "baris 3" in err.message.id


@pytest.mark.usefixtures("json_reader")
def test_json_empty_array_is_rejected(tmp_path):
    assert rejected(write(tmp_path, "f.json", "[]")).code == "no_data_rows"


@pytest.mark.usefixtures("json_reader")
def test_json_read_in_blocks_keeps_every_row_and_fills_fields_that_appear_later(tmp_path, monkeypatch):
    """Records are turned into Arrow a block at a time; a field first seen in a later block is empty before."""
    monkeypatch.setattr("pipelines.readers.JSON_BLOCK_RECORDS", 2)
    p = write(tmp_path, "f.json", '{"a": "1"}\n{"a": "2"}\n[3]\n\n{"a": "4", "b": "x"}\n{"b": "y"}\n')
    r = read_file(p, OPTS)
    assert rows(r) == [
        {"a": "1", "b": None, "_source_row": 1},
        {"a": "2", "b": None, "_source_row": 2},
        {"a": None, "b": None, "_source_row": 3},
        {"a": "4", "b": "x", "_source_row": 5},
        {"a": None, "b": "y", "_source_row": 6},
    ]
    assert [(i["source_row"], i["rule_id"]) for i in r.row_issues.to_pylist()] == [(3, "read.not_an_object")]


@pytest.mark.usefixtures("json_reader")
def test_json_records_found_by_looking_say_where_they_were_found(tmp_path):
    p = write(tmp_path, "f.json", '{"meta": {"n": 2}, "ids": [1, 2], "data": [3, {"nik": "001"}]}')
    r = read_file(p, OPTS)
    assert [x["_source_row"] for x in rows(r)] == [1, 2]
    assert [w.en for w in r.warnings] == ["Records were read from key 'data'."]


@pytest.mark.usefixtures("json_reader")
def test_json_object_with_two_arrays_of_records_is_rejected(tmp_path):
    p = write(tmp_path, "f.json", '{"data": [{"nik": "001"}], "errors": [{"code": 1}]}')
    assert rejected(p).code == "json_records_not_found"


@pytest.mark.usefixtures("json_reader")
def test_json_in_utf16_with_a_bom_is_read(tmp_path):
    p = write(tmp_path, "f.json", '[{"nama": "S\u00e9gol\u00e8ne"}, {"nama": "Ani"}]', "utf-16")
    r = read_file(p, OPTS)
    assert (r.encoding, [x["nama"] for x in rows(r)]) == ("utf-16", ["Ségolène", "Ani"])


@pytest.mark.usefixtures("json_reader")
def test_json_with_a_bad_byte_far_into_the_file_is_rejected_before_any_row(tmp_path):
    body = b"[" + b'{"nik": "001"},' * 200_000 + b'{"nik": "\xff"}]'
    with pytest.raises(FileRejected) as info:
        readers.open_file(write(tmp_path, "f.json", body), OPTS)
    assert info.value.code == "unknown_encoding"


def test_json_file_past_the_hold_limit_is_streamed_in_memory_that_does_not_grow_with_it(tmp_path, monkeypatch):
    """The whole document is never in memory: Python's peak while reading 60,000 records (5.7 MB of text, six
    times that parsed whole) follows the text block and the records in hand (1.9 MB allowed)."""
    import tracemalloc

    monkeypatch.setattr(readers, "JSON_HOLD_BYTES", 1 << 20)
    monkeypatch.setattr(readers, "JSON_BLOCK_RECORDS", 500)
    monkeypatch.setattr(json_stream, "BLOCK_CHARS", 64 << 10)
    record = '{{"id": "R{0}", "pekerja": {{"nik": "32{0:014d}", "nama": "Nama {0}"}}, "negara": "MY"}}'
    p = write(tmp_path, "f.json", "[" + ",\n".join(record.format(i) for i in range(60_000)) + "]")
    warm = write(tmp_path, "warm.json", "[" + ",\n".join(record.format(i) for i in range(2_000)) + "]")
    list(readers.open_file(warm, OPTS).chunks(500))  # modules imported on first use are not the file's memory
    tracemalloc.start()
    try:
        r = readers.open_file(p, OPTS)
        seen = [t.num_rows for t, _ in r.chunks(5_000)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.table is None and r.header == ["id", "pekerja.nik", "pekerja.nama", "negara"]
    assert sum(seen) == 60_000 and max(seen) == 5_000
    assert peak < p.stat().st_size / 3, peak


# ------------------------------------------------------------------------------------------ headers


def test_normalise_header_lowercases_and_turns_punctuation_into_single_spaces():
    assert normalise_header("  No. Paspor / NIK_(KTP) ") == "no paspor nik ktp"
    assert normalise_header("Tgl\u00a0Lahir") == "tgl lahir"
    assert normalise_header(None) == ""


def test_csv_windows1252_byte_past_the_sample_is_still_detected(tmp_path):
    body = "NIK,Nama\n" + "001,Ani\n" * 200_000 + "002,Jos\u00e9\n"  # > 1 MiB before the é
    r = read_file(write(tmp_path, "f.csv", body, "cp1252"), OPTS)
    assert r.encoding == "cp1252"
    assert rows(r)[-1] == {"NIK": "002", "Nama": "José", "_source_row": 200_002}


def test_csv_nul_byte_past_the_sample_is_rejected_as_binary(tmp_path):
    body = b"NIK,Nama\n" + b"001,Ani\n" * 200_000 + b"002,\x00\n"
    assert rejected(write(tmp_path, "f.csv", body)).code == "binary_content"


@pytest.mark.parametrize(
    "tail",
    [b"\xe2\x82\xac", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xef\xbf\xbe"],
    ids=["euro", "cut-euro", "surrogate", "overlong", "beyond-unicode", "noncharacter"],
)
@pytest.mark.parametrize("offset", [0, 1, 2, 3], ids=lambda n: f"block-end-{n}")
def test_utf8_check_agrees_with_python_where_a_character_straddles_two_blocks(tmp_path, monkeypatch, tail, offset):
    monkeypatch.setattr(readers, "CHUNK_BYTES", 64)
    data = b"x" * (64 - offset) + tail + b"\nok\n"
    path = write(tmp_path, "f.csv", data)
    try:
        data.decode("utf-8")
        python_says = True
    except UnicodeDecodeError:
        python_says = False
    assert readers._utf8_valid(path) is python_says
    assert (readers._verify(path, "utf-8") is None) is python_says


def test_utf8_file_with_nul_bytes_is_binary(tmp_path):
    with pytest.raises(FileRejected) as info:
        readers._verify(write(tmp_path, "f.csv", b"A,B\n1,\x002\n"), "utf-8")
    assert info.value.code == "binary_content"

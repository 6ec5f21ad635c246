"""The agency feedback report: what the officer reads, and the rejected-rows files they fix and send back.

Every test writes real files into a temp folder and reads them back (html.parser, csv, openpyxl).
All data is synthetic.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
from agency_factory import process_dropped

from pipelines.problems import ISSUE_SCHEMA, Bilingual
from pipelines.report import (
    CSV_NAME,
    HTML_NAME,
    REASON_COLUMN,
    ROW_COLUMN,
    XLSX_NAME,
    FileReport,
    clean_leftovers,
    compress_rows,
    index_stale,
    report_dir,
    write_index,
    write_report,
)

HEADER = ["No Reg", "NIK", "Nama PMI", "Negara Tujuan", "Tgl Berangkat"]
IDENTIFIER_COLUMNS = {"NIK", "Nama PMI"}
SECRET_NIK = "3201234567890123"
HINTS = {
    "departure_date.range": Bilingual("Periksa tahun keberangkatan.", "Check the departure year."),
    "nik.format": Bilingual("Periksa NIK pada KTP.", "Check the NIK on the identity card."),
}


def make_rows(n: int = 50, first_row: int = 2, **overrides: dict[int, str]) -> pa.Table:
    """n synthetic rows as the reader gives them: every cell text, the agency's headers, `_source_row`."""
    cols: dict[str, list[str]] = {
        "No Reg": [f"REG-{i}" for i in range(n)],
        "NIK": [f"32010101019{i:05d}" for i in range(n)],
        "Nama PMI": [f"Pekerja Uji {i}" for i in range(n)],
        "Negara Tujuan": ["Hong Kong"] * n,
        "Tgl Berangkat": ["17/08/2024"] * n,
    }
    rows = list(range(first_row, first_row + n))
    for column, by_row in overrides.items():
        name = column.replace("_", " ")
        for row, value in by_row.items():
            cols[name][rows.index(row)] = value
    return pa.table({**cols, "_source_row": rows})


def issue(row: int | None, rule: str, field: str, value: str | None, severity: str = "critical") -> dict:
    messages = {
        "departure_date.range": ("Tanggal keberangkatan di masa depan.", "Departure date is in the future."),
        "nik.format": ("NIK harus 16 digit angka.", "The NIK must be 16 digits."),
        "destination_country.required": ("Negara tujuan tidak dikenal.", "Destination country is unknown."),
        "contract_months.range": ("Lama kontrak di luar 1-60 bulan.", "Contract length outside 1-60 months."),
    }
    mid, men = messages.get(rule, (f"Aturan {rule} dilanggar.", f"Rule {rule} broken."))
    return {
        "source_row": row,
        "rule_id": rule,
        "severity": severity,
        "field": field,
        "value": value,
        "message_id": mid,
        "message_en": men,
    }


def make_issues(*items: dict) -> pa.Table:
    return pa.Table.from_pylist(list(items), schema=ISSUE_SCHEMA)


def make_report(**kw: object) -> FileReport:
    base: dict[str, object] = {
        "agency": "bp2mi",
        "agency_name": "Badan Pelindungan Pekerja Migran Indonesia",
        "file_name": "penempatan agustus.xlsx",
        "sha256": "a1" * 32,
        "received_at": datetime(2024, 8, 20, 20, 30, tzinfo=UTC),
        "status": "processed",
        "rows_read": 50,
        "rows_accepted": 45,
        "rows_quarantined": 5,
        "rows_warned": 3,
    }
    base.update(kw)
    return FileReport(**base)  # type: ignore[arg-type]


class Page(HTMLParser):
    """Visible text, every attribute, and tag names of a written page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text_parts: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.by_id: dict[str, str] = {}
        self._current_id: str | None = None
        self._in_style = False
        self.style = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name == "id":
                self._current_id = value

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        self._current_id = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
            return
        self.text_parts.append(data)
        if self._current_id:
            self.by_id[self._current_id] = self.by_id.get(self._current_id, "") + data

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def written(tmp_path: Path, report: FileReport, issues: pa.Table | None, rows: pa.Table | None, **kw) -> Path:
    paths = write_report(tmp_path / "reports", report, issues, rows, kw.pop("ids", IDENTIFIER_COLUMNS), HINTS, **kw)
    html = next(p for p in paths if p.name == HTML_NAME)
    assert html.parent == report_dir(tmp_path / "reports", report)
    return html.parent


def page(folder: Path) -> Page:
    return Page((folder / HTML_NAME).read_text(encoding="utf-8"))


def read_csv(folder: Path) -> list[list[str]]:
    with (folder / CSV_NAME).open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture
def partly_accepted(tmp_path: Path) -> Path:
    rows = make_rows(50, Negara_Tujuan={40: "Atlantis"}, Tgl_Berangkat={12: "17/08/2099", 13: "17/08/2099"})
    issues = make_issues(
        *(issue(r, "departure_date.range", "departure_date", "2099-08-17") for r in (12, 13, 14, 15, 40)),
        issue(40, "destination_country.required", "destination_country", "Atlantis"),
        *(issue(r, "contract_months.range", "contract_months", "72", "warning") for r in (20, 21, 30)),
    )
    return written(tmp_path, make_report(), issues, rows)


# ---------------------------------------------------------------------------------------------- the page


def test_counts_read_accepted_quarantined_and_warned_are_shown(partly_accepted: Path) -> None:
    p = page(partly_accepted)
    assert p.by_id == {"rows-read": "50", "rows-accepted": "45", "rows-quarantined": "5", "rows-warned": "3"}
    assert "Baris dibaca" in p.text and "Rows read" in p.text
    assert "Diterima dengan peringatan" in p.text and "Accepted with warnings" in p.text


def test_status_is_given_in_large_friendly_words_indonesian_first(partly_accepted: Path) -> None:
    text = page(partly_accepted).text
    assert "Diterima sebagian Partly accepted" in text
    assert text.index("Diterima sebagian") < text.index("Partly accepted")


def test_large_counts_are_grouped_so_neither_language_misreads_them(tmp_path: Path) -> None:
    folder = written(tmp_path, make_report(rows_read=1234567, rows_accepted=1234567, rows_quarantined=0), None, None)
    assert page(folder).by_id["rows-read"] == "1\u202f234\u202f567"


def test_problems_are_grouped_by_rule_with_compressed_row_numbers(partly_accepted: Path) -> None:
    text = page(partly_accepted).text
    assert text.count("departure_date.range") == 1
    assert "Tanggal keberangkatan di masa depan." in text and "Departure date is in the future." in text
    assert "12-15, 40" in text
    assert "Periksa tahun keberangkatan." in text and "Check the departure year." in text


def test_critical_rules_come_before_warnings(partly_accepted: Path) -> None:
    text = page(partly_accepted).text
    assert text.index("departure_date.range") < text.index("contract_months.range")
    assert "Peringatan (baris tetap diterima)" in text


def test_example_values_are_shown_for_non_identifier_fields(partly_accepted: Path) -> None:
    text = page(partly_accepted).text
    assert "2099-08-17 × 5" in text
    assert "Atlantis" in text


def test_long_row_lists_are_capped_with_and_n_more(tmp_path: Path) -> None:
    odd_rows = list(range(3, 403, 2))  # 200 rows, none adjacent: 200 segments
    issues = make_issues(*(issue(r, "departure_date.range", "departure_date", "2099-01-01") for r in odd_rows))
    folder = written(tmp_path, make_report(rows_read=500, rows_quarantined=200), issues, make_rows(500))
    text = page(folder).text
    assert "3, 5, 7" in text and ", 101 " in text and "103," not in text
    assert "dan 150 baris lainnya / and 150 more" in text


def test_compress_rows_joins_consecutive_numbers_and_counts_what_it_leaves_out() -> None:
    assert compress_rows([40, 12, 13, 14, 15, 15]) == ("12-15, 40", 0)
    assert compress_rows([]) == ("", 0)
    assert compress_rows([1, 2, 3, 10, 20, 21], limit=2) == ("1-3, 10", 2)


def test_identifier_values_never_appear_in_index_html_even_when_passed_in_issues(tmp_path: Path) -> None:
    rows = make_rows(10, NIK={5: SECRET_NIK + "9"}, Nama_PMI={6: "Rahasia Binti Contoh"})
    issues = make_issues(
        issue(5, "nik.format", "nik", SECRET_NIK + "9"),  # the pipeline should have masked it; it did not
        issue(6, "full_name.required", "full_name", "Rahasia Binti Contoh"),
        issue(7, "birth_date.format", "birth_date", "31/02/1990"),
        issue(8, "passport.format", "passport_number", "X1234567"),
        issue(9, "nik.format", "NIK", "3201999"),  # the agency's own column name as field
    )
    html = (written(tmp_path, make_report(rows_read=10), issues, rows) / HTML_NAME).read_text(encoding="utf-8")
    for secret in (SECRET_NIK, "Rahasia", "31/02/1990", "X1234567", "3201999"):
        assert secret not in html
    assert "Tidak ditampilkan: data pribadi" in html


def test_identifier_quoted_in_a_message_or_misfiled_value_is_masked(tmp_path: Path) -> None:
    rows = make_rows(5, Nama_PMI={3: "Siti Rahmawati"})
    leaky = issue(3, "sex.required", "sex", "Siti Rahmawati")  # a misaligned column: 'sex' holds a name
    leaky["message_id"] = f"NIK {SECRET_NIK} tidak cocok."
    leaky["message_en"] = f"NIK {SECRET_NIK} does not match."
    html = (written(tmp_path, make_report(rows_read=5), make_issues(leaky), rows) / HTML_NAME).read_text("utf-8")
    assert SECRET_NIK not in html
    assert "Siti Rahmawati" not in html
    assert "NIK ••• tidak cocok." in html


def test_file_name_and_values_are_html_escaped(tmp_path: Path) -> None:
    name = 'data <script>alert("x")</script> & "agustus".csv'
    rows = make_rows(5, Negara_Tujuan={3: "<script>alert(1)</script>"})
    issues = make_issues(issue(3, "destination_country.required", "destination_country", "<img src=x onerror=1>"))
    folder = written(tmp_path, make_report(file_name=name, rows_read=5), issues, rows)
    html = (folder / HTML_NAME).read_text(encoding="utf-8")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=1&gt;" in html
    p = Page(html)
    assert name in p.text
    assert "script" not in p.tags and "img" not in p.tags


def test_page_loads_no_external_resources(partly_accepted: Path) -> None:
    p = page(partly_accepted)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(p.tags)
    for tag, attr, value in p.attrs:
        if attr in {"src", "href", "srcset", "action", "data"}:
            assert not value.lower().startswith(("http", "//", "data:", "javascript:")), (tag, attr, value)
    assert "@import" not in p.style and "url(" not in p.style and "http" not in p.style


def test_page_prints_well_and_declares_indonesian(partly_accepted: Path) -> None:
    html = (partly_accepted / HTML_NAME).read_text(encoding="utf-8")
    assert "@media print" in html and "break-inside: avoid" in html
    assert '<html lang="id">' in html and 'lang="en"' in html


def test_received_time_is_shown_in_utc_and_wib(partly_accepted: Path) -> None:
    text = page(partly_accepted).text
    assert "21 Agustus 2024 pukul 03.30 WIB" in text  # 20:30 UTC is the next morning in Jakarta
    assert "20 August 2024, 20:30 UTC" in text


def test_non_latin_file_name_is_shown_as_dropped(tmp_path: Path) -> None:
    name = "data TKI 2024 — تقرير 報告.csv"
    folder = written(tmp_path, make_report(file_name=name, rows_quarantined=0), None, None)
    assert name in page(folder).text


def test_report_folder_stays_inside_the_agency_folder_whatever_the_file_name(tmp_path: Path) -> None:
    report = make_report(file_name="../../etc/passwd\\..\\x.csv", agency="../bp2mi")
    folder = written(tmp_path, report, None, None)
    agency_dir = folder.parent
    assert agency_dir.parent == tmp_path / "reports"
    assert ".." not in folder.name and "/" not in folder.name and "\\" not in folder.name


def test_personal_data_note_is_shown_with_the_rejected_rows_links(partly_accepted: Path) -> None:
    p = page(partly_accepted)
    assert "Data pribadi — terbatas." in p.text and "Personal data — restricted." in p.text
    hrefs = {v for t, a, v in p.attrs if a == "href"}
    assert {CSV_NAME, XLSX_NAME} <= hrefs


def test_field_names_can_be_shown_as_the_agency_column(tmp_path: Path) -> None:
    issues = make_issues(issue(3, "departure_date.range", "departure_date", "2099-01-01"))
    folder = written(tmp_path, make_report(), issues, make_rows(5), field_columns={"departure_date": "Tgl Berangkat"})
    assert "Tgl Berangkat" in page(folder).text


# ---------------------------------------------------------------------------------------------- rejected rows


def test_rejected_rows_header_is_the_agency_header_plus_reason_columns(partly_accepted: Path) -> None:
    assert read_csv(partly_accepted)[0] == [*HEADER, REASON_COLUMN, ROW_COLUMN]
    ws = openpyxl.load_workbook(partly_accepted / XLSX_NAME).active
    assert [c.value for c in ws[1]] == [*HEADER, REASON_COLUMN, ROW_COLUMN]


def test_rejected_rows_are_the_quarantined_rows_in_source_order_with_all_their_reasons(
    partly_accepted: Path,
) -> None:
    body = read_csv(partly_accepted)[1:]
    assert [r[-1] for r in body] == [
        "12",
        "13",
        "14",
        "15",
        "40",
    ]  # warning-only rows 20, 21, 30 stay accepted
    row40 = body[-1]
    assert row40[:5] == ["REG-38", "32010101019" + "00038", "Pekerja Uji 38", "Atlantis", "17/08/2024"]
    assert row40[5] == (
        "Tanggal keberangkatan di masa depan. / Departure date is in the future. | "
        "Negara tujuan tidak dikenal. / Destination country is unknown."
    )


def test_rejected_rows_reason_lists_critical_problems_before_warnings(tmp_path: Path) -> None:
    issues = make_issues(
        issue(4, "contract_months.range", "contract_months", "72", "warning"),
        issue(4, "nik.format", "nik", "***"),
    )
    body = read_csv(written(tmp_path, make_report(), issues, make_rows(5)))[1:]
    assert body[0][5].startswith("NIK harus 16 digit angka.") and "Lama kontrak" in body[0][5]


def warnings_section(folder: Path) -> str:
    text = page(folder).text
    start = text.find("Warnings (rows still accepted)")
    return text[start : text.find("Laporan ini dibuat otomatis", start)] if start >= 0 else ""


def test_the_warnings_of_accepted_rows_count_and_list_only_the_rows_still_accepted(tmp_path: Path) -> None:
    """Row 3 is rejected (its NIK) and has a warning too: the warning's card counts the two accepted rows, as the
    header's "accepted with warnings" does, and quotes none of row 3's values."""
    issues = make_issues(
        issue(3, "nik.format", "nik", "***"),
        issue(3, "contract_months.range", "contract_months", "72", "warning"),
        *(issue(r, "contract_months.range", "contract_months", "61", "warning") for r in (5, 6)),
    )
    report = make_report(rows_read=10, rows_accepted=9, rows_quarantined=1, rows_warned=2)
    section = warnings_section(written(tmp_path, report, issues, make_rows(10)))
    assert "contract_months.range" in section
    assert "Jumlah baris / Rows 2 " in section and "Nomor baris / Row numbers 5-6 " in section
    assert "61 × 2" in section and "72" not in section


def test_a_warning_only_rejected_rows_have_is_given_with_their_rejection_not_as_accepted(tmp_path: Path) -> None:
    issues = make_issues(
        issue(3, "nik.format", "nik", "***"),
        issue(3, "contract_months.range", "contract_months", "72", "warning"),
    )
    report = make_report(rows_read=10, rows_accepted=9, rows_quarantined=1, rows_warned=0)
    folder = written(tmp_path, report, issues, make_rows(10))
    assert warnings_section(folder) == "" and "contract_months.range" not in page(folder).text
    (row,) = read_csv(folder)[1:]
    assert row[-1] == "3" and "Lama kontrak di luar 1-60 bulan." in row[-2]


def test_csv_starts_with_a_utf8_bom_for_excel(partly_accepted: Path) -> None:
    assert (partly_accepted / CSV_NAME).read_bytes().startswith(b"\xef\xbb\xbfNo Reg,")


@pytest.mark.parametrize("dangerous", ['=HYPERLINK("http://x","y")', "+1+2", "-5", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_neutralised_in_csv(tmp_path: Path, dangerous: str) -> None:
    rows = make_rows(3, Negara_Tujuan={3: dangerous})
    folder = written(tmp_path, make_report(), make_issues(issue(3, "x.rule", "destination_country", "v")), rows)
    assert read_csv(folder)[1][3] == "'" + dangerous


@pytest.mark.parametrize("dangerous", ["=1+1", '=HYPERLINK("http://x")', "+1", "-5", "@A1", "\t=1"])
def test_formula_cells_are_text_cells_with_a_quote_in_xlsx(tmp_path: Path, dangerous: str) -> None:
    rows = make_rows(3, Negara_Tujuan={3: dangerous})
    folder = written(tmp_path, make_report(), make_issues(issue(3, "x.rule", "destination_country", "v")), rows)
    cell = openpyxl.load_workbook(folder / XLSX_NAME).active.cell(row=2, column=4)
    assert cell.data_type == "s"
    assert cell.value == "'" + dangerous


def test_every_xlsx_cell_is_text_so_a_nik_keeps_its_digits(partly_accepted: Path) -> None:
    ws = openpyxl.load_workbook(partly_accepted / XLSX_NAME).active
    cells = [c for row in ws.iter_rows() for c in row]
    assert all(c.data_type == "s" and c.number_format == "@" for c in cells)
    assert ws.cell(row=2, column=2).value == "32010101019" + "00010"


def test_control_characters_do_not_break_the_xlsx(tmp_path: Path) -> None:
    rows = make_rows(3, Negara_Tujuan={3: "Hong\x00Kong\x1b"})
    folder = written(tmp_path, make_report(), make_issues(issue(3, "x.rule", "destination_country", "v")), rows)
    assert openpyxl.load_workbook(folder / XLSX_NAME).active.cell(row=2, column=4).value == "Hong\ufffdKong\ufffd"


def test_a_corrected_rejected_rows_file_sent_back_gets_fresh_reason_columns(tmp_path: Path) -> None:
    rows = (
        make_rows(3).append_column(REASON_COLUMN, pa.array(["old"] * 3)).append_column(ROW_COLUMN, pa.array(["9"] * 3))
    )
    rows = rows.select([*HEADER, REASON_COLUMN, ROW_COLUMN, "_source_row"])
    folder = written(tmp_path, make_report(), make_issues(issue(2, "nik.format", "nik", "***")), rows)
    table = read_csv(folder)
    assert table[0] == [*HEADER, REASON_COLUMN, ROW_COLUMN]
    assert table[1][-2:] == ["NIK harus 16 digit angka. / The NIK must be 16 digits.", "2"]


def test_no_rejected_rows_files_when_nothing_is_quarantined_and_the_page_says_so(tmp_path: Path) -> None:
    issues = make_issues(issue(3, "contract_months.range", "contract_months", "72", "warning"))
    report = make_report(rows_read=5, rows_accepted=5, rows_quarantined=0, rows_warned=1)
    folder = written(tmp_path, report, issues, make_rows(5))
    assert not (folder / CSV_NAME).exists() and not (folder / XLSX_NAME).exists()
    text = page(folder).text
    assert "Tidak ada baris yang ditolak" in text and "No rows were rejected" in text
    assert CSV_NAME not in {v for _, a, v in page(folder).attrs if a == "href"}


def test_rerun_without_quarantined_rows_removes_stale_rejected_rows_files(
    partly_accepted: Path, tmp_path: Path
) -> None:
    assert (partly_accepted / CSV_NAME).exists()
    folder = written(tmp_path, make_report(rows_quarantined=0, rows_accepted=50), None, make_rows(50))
    assert folder == partly_accepted
    assert not (folder / CSV_NAME).exists() and not (folder / XLSX_NAME).exists()


# ------------------------------------------------------------------------------------- whole-file outcomes


def test_duplicate_report_without_rows_names_the_first_file_and_writes_no_rejected_rows(
    tmp_path: Path,
) -> None:
    report = make_report(
        status="duplicate",
        file_name="salinan <b>data</b>.xlsx",
        rows_read=0,
        rows_accepted=0,
        rows_quarantined=0,
        rows_warned=0,
        reason=Bilingual("Isi berkas sama dengan berkas sebelumnya.", "Same content as an earlier file."),
        duplicate_of="penempatan agustus.xlsx",
    )
    paths = write_report(tmp_path / "reports", report, None, None, set(), {})
    folder = paths[0].parent
    assert {p.name for p in paths} == {HTML_NAME, "report.json"}
    text = page(folder).text
    assert "Sudah pernah diterima Already received" in text
    assert "Same content as an earlier file." in text and "penempatan agustus.xlsx" in text
    assert "rows-read" not in page(folder).by_id


def test_rejected_report_gives_the_reason_up_front(tmp_path: Path) -> None:
    report = make_report(
        status="rejected",
        rows_read=0,
        rows_accepted=0,
        rows_quarantined=0,
        rows_warned=0,
        reason=Bilingual("Kolom wajib tidak ditemukan: NIK.", "Required column not found: NIK."),
    )
    folder = written(tmp_path, report, None, None)
    text = page(folder).text
    assert text.index("Ditolak") < text.index("Kolom wajib tidak ditemukan: NIK.") < text.index("Required column")
    assert not (folder / CSV_NAME).exists()


def test_file_level_warnings_are_listed_in_both_languages(tmp_path: Path) -> None:
    warnings = [Bilingual("2 baris catatan kaki diabaikan.", "2 footer rows dropped.")]
    folder = written(tmp_path, make_report(warnings=warnings, rows_quarantined=0), None, None)
    text = page(folder).text
    assert "2 baris catatan kaki diabaikan." in text and "2 footer rows dropped." in text


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        make_report(status="done")


def test_report_json_holds_the_facts_but_no_row_data(partly_accepted: Path) -> None:
    facts = json.loads((partly_accepted / "report.json").read_text(encoding="utf-8"))
    assert facts["rows_quarantined"] == 5 and facts["status"] == "processed"
    assert "32010101019" not in json.dumps(facts) and "Pekerja Uji" not in json.dumps(facts)


# ---------------------------------------------------------------------------------------------- agency index


def test_an_agency_index_missing_a_report_is_stale_until_written_again(tmp_path: Path) -> None:
    """A run stopped between a file's report and the index leaves it so; the next run rewrites it."""
    root = tmp_path / "reports"
    assert not index_stale(root)
    write_report(root, make_report(file_name="pertama.csv", sha256="01" * 32), None, None, set(), {})
    assert index_stale(root)  # a report, no index yet
    write_index(root)
    assert not index_stale(root)
    later = make_report(file_name="kedua.csv", sha256="02" * 32, received_at=datetime(2024, 9, 2, tzinfo=UTC))
    write_report(root, later, None, None, set(), {})
    assert index_stale(root)
    write_index(root)
    assert not index_stale(root)


def test_agency_index_lists_reports_newest_first(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    for day, name in [(1, "pertama.csv"), (3, "ketiga.csv"), (2, "kedua <i>.csv")]:
        report = make_report(file_name=name, sha256=f"{day:02d}" * 32, received_at=datetime(2024, 9, day, tzinfo=UTC))
        write_report(root, report, None, None, set(), {})
    (path,) = write_index(root)
    assert path == root / "bp2mi" / HTML_NAME
    p = Page(path.read_text(encoding="utf-8"))
    assert p.text.index("ketiga.csv") < p.text.index("kedua <i>.csv") < p.text.index("pertama.csv")
    links = [v for t, a, v in p.attrs if t == "a" and a == "href"]
    assert len(links) == 3 and all(v.endswith("/index.html") and not v.startswith("http") for v in links)


def test_held_report_says_the_file_waits_for_review_and_why(tmp_path: Path) -> None:
    reason = Bilingual("Kolom baru yang belum dikenal: Sponsor.", "New, unknown column: Sponsor.")
    folder = written(tmp_path, make_report(status="held", reason=reason, rows_quarantined=0), None, None)
    text = page(folder).text
    assert "Ditahan untuk diperiksa Held for review" in text and "New, unknown column: Sponsor." in text


def test_an_issue_without_a_row_number_is_listed_without_row_numbers(tmp_path: Path) -> None:
    issues = make_issues(issue(None, "file.header_changed", "", None, "warning"))
    folder = written(tmp_path, make_report(rows_quarantined=0), issues, make_rows(5))
    text = page(folder).text
    assert "file.header_changed" in text
    assert "Nomor baris / Row numbers" not in text and "Jumlah baris / Rows" not in text
    assert not (folder / CSV_NAME).exists()


def test_row_numbers_given_as_text_are_understood(tmp_path: Path) -> None:
    rows = make_rows(5)
    rows = rows.set_column(
        rows.schema.get_field_index("_source_row"), "_source_row", pa.array(["2", "3", "4", "5", "6"])
    )
    folder = written(tmp_path, make_report(), make_issues(issue(4, "nik.format", "nik", "***")), rows)
    assert [r[-1] for r in read_csv(folder)[1:]] == ["4"]


def test_held_file_with_rejected_rows_asks_for_the_whole_file_again(tmp_path: Path) -> None:
    reason = Bilingual("Berkas ditahan: 80% baris gagal.", "File held: 80% of rows failed.")
    issues = make_issues(issue(3, "nik.format", "nik", "***"))
    folder = written(tmp_path, make_report(status="held", reason=reason), issues, make_rows(5))
    text = page(folder).text
    assert "send the whole file again" in text and "Rows already accepted need not be sent again" not in text
    assert (folder / CSV_NAME).exists()


def test_half_written_report_files_of_a_crashed_run_are_removed_and_finished_ones_kept(
    partly_accepted: Path, tmp_path: Path
) -> None:
    finished = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    leftovers = [
        partly_accepted / f".{XLSX_NAME}.tmp-4242",
        partly_accepted / f".{HTML_NAME}.tmp-4242",
        partly_accepted / "data_docs" / ".validation.html.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    assert clean_leftovers(tmp_path) == len(leftovers)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == finished


TRICKY_CELLS = [
    'a & b <c> "d" \'e\'', "  spaces kept  ", "=1+1", "-5", "Hong\x00Kong\x1b", "cr\rin", "line\nbreak",
    "tab\tin", "_x0041_ literal", "Sur\U0001f600baya", "x" * 40_000, "", "]]>", "non\ufffechar",
]  # fmt: skip


def _cell_texts(xlsx: Path) -> list[str]:
    import re
    import zipfile

    sheet = zipfile.ZipFile(xlsx).read("xl/worksheets/sheet1.xml").decode("utf-8")
    return re.findall(r"<t(?: [^>]*)?>(.*?)</t>", sheet, flags=re.S)


def test_xlsx_rows_carry_the_same_cell_text_as_xlsxwriter_writes_cell_by_cell(tmp_path: Path) -> None:
    import xlsxwriter

    from pipelines.report import _write_xlsx, _xlsx_text, neutralise

    header = ["value", REASON_COLUMN, ROW_COLUMN]
    cells = [[v, f"reason {i}", str(i + 2)] for i, v in enumerate(TRICKY_CELLS)]
    _write_xlsx(tmp_path / "ours.xlsx", header, [pa.array(column, pa.string()) for column in zip(*cells, strict=True)])
    book = xlsxwriter.Workbook(str(tmp_path / "theirs.xlsx"), {"constant_memory": True})
    sheet = book.add_worksheet()
    for r, row in enumerate([header, *cells]):
        for c, value in enumerate(row):
            sheet.write_string(r, c, _xlsx_text(neutralise(value)))
    book.close()
    assert _cell_texts(tmp_path / "ours.xlsx") == _cell_texts(tmp_path / "theirs.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "ours.xlsx").active
    assert ws.dimensions == ws.auto_filter.ref == f"A1:C{len(cells) + 1}"
    assert ws.cell(row=2, column=2).fill.fgColor.rgb == ws.cell(row=1, column=2).fill.fgColor.rgb != "00000000"
    assert all(c.data_type == "s" and c.number_format == "@" for row in ws.iter_rows(min_row=2) for c in row)


@pytest.mark.parametrize("slice_rows", [20_000, 3], ids=["one-slice", "slices-of-3"])
def test_csv_rows_are_the_bytes_csv_writer_writes_row_by_row(tmp_path: Path, monkeypatch, slice_rows: int) -> None:
    import csv

    from pipelines import report
    from pipelines.report import _write_csv, neutralise

    monkeypatch.setattr(report, "CSV_SLICE_ROWS", slice_rows)

    header = ["value", "=head", REASON_COLUMN, ROW_COLUMN]
    values = [*TRICKY_CELLS, 'say "hi", twice', "\r\n", None]
    cells = [[v, f"{v},{i}", f"reason {i}", str(i + 2)] for i, v in enumerate(values)]
    _write_csv(tmp_path / "ours.csv", header, [pa.array(column, pa.string()) for column in zip(*cells, strict=True)])
    with (tmp_path / "theirs.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows([[neutralise(v or "") for v in row] for row in [header, *cells]])
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "theirs.csv").read_bytes()


def test_report_from_the_staged_issues_file_is_the_report_from_the_table(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    issues = make_issues(
        issue(3, "nik.format", "nik", "***"),
        issue(3, "contract_months.range", "contract_months", "99", "warning"),
        issue(5, "destination_country.required", "destination_country", "Narnia"),
        issue(6, "destination_country.required", "destination_country", "Atlantis"),
        issue(None, "departure_date.range", "departure_date", None, "warning"),
    )
    pq.write_table(issues, tmp_path / "issues.parquet")
    plain = written(tmp_path / "plain", make_report(), issues, make_rows(8))
    staged = written(tmp_path / "staged", make_report(), tmp_path / "issues.parquet", make_rows(8))
    for name in ("index.html", "report.json", CSV_NAME):
        assert (staged / name).read_bytes() == (plain / name).read_bytes()


# ------------------------------------------------------------------------------- held files, second copies


def test_a_held_files_rows_that_passed_the_checks_are_not_called_accepted(tmp_path: Path) -> None:
    reason = Bilingual("Berkas ditahan: 60% baris gagal.", "File held: 60% of rows failed.")
    report = make_report(status="held", reason=reason, rows_read=20, rows_accepted=8, rows_quarantined=12)
    p = page(written(tmp_path, report, None, None))
    assert p.by_id["rows-accepted"] == "8"
    assert "Lolos pemeriksaan, tetapi tidak dipublikasikan" in p.text
    assert "Passed the checks, but not published" in p.text
    assert "Baris diterima" not in p.text and "Rows accepted" not in p.text
    assert "Accepted with warnings" not in p.text and "rows still accepted" not in p.text


def test_agency_index_says_a_held_files_passed_rows_were_not_published(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    write_report(root, make_report(status="held", rows_read=20, rows_accepted=8, rows_quarantined=12), None, None,
                 set(), {})  # fmt: skip
    (path,) = write_index(root)
    text = Page(path.read_text(encoding="utf-8")).text
    assert "8 lolos pemeriksaan, tidak dipublikasikan passed the checks, not published" in text


def duplicate(first_status: str | None, **kw: object) -> FileReport:
    return make_report(
        status="duplicate", rows_read=0, rows_accepted=0, rows_quarantined=0, rows_warned=0,
        duplicate_of="penempatan agustus.xlsx", duplicate_of_status=first_status, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("first_status", "headline"),
    [("held", "Sama dengan berkas yang ditahan Same as a held file"),
     ("rejected", "Sama dengan berkas yang ditolak Same as a rejected file")],
)  # fmt: skip
def test_a_copy_of_a_held_or_rejected_file_says_nothing_was_published_and_asks_for_a_corrected_file(
    tmp_path: Path, first_status: str, headline: str
) -> None:
    text = page(written(tmp_path, duplicate(first_status), None, None)).text
    assert headline in text
    assert f"that file was {first_status}: nothing from it was published" in text
    assert "tidak ada datanya yang dipublikasikan" in text
    assert "kirim berkas yang sudah diperbaiki" in text and "send the corrected file" in text
    assert "Nothing needs to be done" not in text and "Tidak ada yang perlu Anda lakukan" not in text


def test_a_copy_of_a_processed_file_needs_nothing_more(tmp_path: Path) -> None:
    text = page(written(tmp_path, duplicate("processed"), None, None)).text
    assert "Sudah pernah diterima Already received" in text
    assert "Tidak ada yang perlu Anda lakukan." in text and "Nothing needs to be done." in text


def test_a_copy_of_a_file_still_in_progress_says_its_outcome_will_be_in_the_first_files_report(tmp_path: Path) -> None:
    text = page(written(tmp_path, duplicate("archived"), None, None)).text
    assert "masih diproses" in text and "still being processed" in text
    assert "Nothing needs to be done" not in text


def test_a_second_drop_of_a_held_file_links_to_the_first_files_report(tmp_path: Path) -> None:
    from pipelines import config, flows, inbox
    from pipelines.ledger import Ledger
    from pipelines.settings import Zones

    zones = Zones(tmp_path / "home").ensure()
    ledger = Ledger(zones.ledger_db)
    agency = "bp2mi_siskop2mi"

    def drop(name: str) -> Path:
        path = zones.inbox / agency / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"No Reg,NIK\nREG-1,123\n")
        return path

    first = inbox.claim(zones, ledger, agency, drop("penempatan.csv")).entry
    ledger.finish(first.sha256, "held", rows_read=1, rows_accepted=0, rows_quarantined=1, rows_warned=0)
    held = FileReport(agency, config.agency(agency).name, first.file_name, first.sha256, first.received_at, "held",
                      rows_read=1, rows_quarantined=1)  # fmt: skip
    first_page = next(p for p in write_report(zones.reports, held, None, None, set(), {}) if p.name == HTML_NAME)
    second = inbox.claim(zones, ledger, agency, drop("penempatan kirim lagi.csv"))
    assert second.kind == "duplicate"

    flows._duplicate_report(zones, agency, "penempatan kirim lagi.csv", second)

    (second_page,) = (p for p in (zones.reports / agency).glob(f"*/{HTML_NAME}") if p != first_page)
    p = Page(second_page.read_text(encoding="utf-8"))
    assert "Sama dengan berkas yang ditahan Same as a held file" in p.text
    links = [v for t, a, v in p.attrs if t == "a" and a == "href"]
    assert [(second_page.parent / link).resolve() for link in links] == [first_page.resolve()]
    assert "See the first file's report" in p.text


def test_agency_index_says_a_copy_of_a_held_file_is_the_same_as_a_held_file(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    write_report(root, duplicate("held"), None, None, set(), {})
    (path,) = write_index(root)
    assert "Sama dengan berkas yang ditahan Same as a held file" in Page(path.read_text(encoding="utf-8")).text


# ------------------------------------------------------------------------------------- row numbers of JSON


def test_a_json_files_problems_are_given_by_record_number_not_as_excel_rows(tmp_path: Path) -> None:
    issues = make_issues(issue(3, "nik.format", "nik", "***"))
    folder = written(tmp_path, make_report(file_format="json"), issues, make_rows(5))
    text = page(folder).text
    assert "Nomor catatan (catatan ke-n) / Record numbers (n-th record) 3" in text
    assert "Record numbers count the records in your JSON file's list of records (the first record is 1)" in text
    assert "baris_row is the record's number in the original JSON file" in text
    assert "as Excel shows them" not in text and "Row numbers" not in text


def test_a_spreadsheet_or_csv_files_problems_are_given_by_row_as_excel_shows_them(tmp_path: Path) -> None:
    issues = make_issues(issue(3, "nik.format", "nik", "***"))
    text = page(written(tmp_path, make_report(file_format="csv"), issues, make_rows(5))).text
    assert "Nomor baris / Row numbers 3" in text and "Row numbers are those of your file, as Excel shows them." in text
    assert "Record numbers" not in text


# ----------------------------------------------------------------------- a real file through the pipeline


def _through_the_pipeline(tmp_path: Path, key_file: Path, agency: str, name: str, content: bytes) -> Path:
    """The file dropped for `agency`, processed as a run processes it; its report folder."""
    zones, _, _ = process_dropped(tmp_path / "home", key_file, agency, name, content)
    (html,) = (zones.reports / agency).glob(f"*/{HTML_NAME}")
    return html.parent


def test_the_date_hint_on_a_page_is_written_in_the_agencys_own_date_format(tmp_path: Path, key_file: Path) -> None:
    header = "Worker ID;National ID;Full Name;Gender;Destination;Departure Date\r\n"
    rows = (
        "W1;3507014507950001;Siti Contoh;Female;Taiwan;2024-03-01\r\n"
        "W2;3507014507950002;Ani Contoh;Female;Taiwan;30/06/2024\r\n"  # day/month/year: not this agency's format
    )
    folder = _through_the_pipeline(tmp_path, key_file, "p3mi_mitra_sejahtera", "deployments.csv",
                                   (header + rows).encode("cp1252"))  # fmt: skip
    text = page(folder).text  # the agency's mapping reads dates as year-month-day only
    assert "harmonise.bad_date.departure_date" in text
    assert "Write a real date in your agency's format (year, month, day), e.g. 2024-08-17." in text
    assert "format instansi Anda (tahun, bulan, hari), mis. 2024-08-17." in text
    assert "day/month/year" not in text and "17/08/2024" not in text


def test_a_json_file_through_the_pipeline_names_its_records_by_number(tmp_path: Path, key_file: Path) -> None:
    def record(n: int, departure: str) -> dict:
        worker = {"nama": "Siti Contoh", "nik": f"35070145079500{n:02d}", "jenis_kelamin": "P"}
        return {"no_lapor": f"KBRIKL/{n}", "pekerja": worker, "penempatan": {"tanggal_berangkat": departure}}

    document = {"sumber": "uji", "data": [record(1, "2024-03-01"), record(2, "2024-03-01"), record(3, "bukan tanggal")]}
    content = json.dumps(document, indent=2).encode("utf-8")  # record 3 starts on line 26, not line 3
    folder = _through_the_pipeline(tmp_path, key_file, "kbri_kuala_lumpur", "pendataan.json", content)
    text = page(folder).text
    assert "Nomor catatan (catatan ke-n) / Record numbers (n-th record) 3" in text
    assert "as Excel shows them" not in text
    assert [row[-1] for row in read_csv(folder)[1:]] == ["3"]

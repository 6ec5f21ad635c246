"""Bad files end to end: one real `sdmi run` over the demo inbox plus every kind of bad file an agency sends.

Each bad file must end with a clear reason in the ledger and in the agency's report; the demo files must come
out exactly as the generator says; nothing may be half-published or written outside SDMI_HOME; a 2 GB file
must never be loaded whole. (Each reader case has a unit test in tests/test_readers.py; this is the whole run.)
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import openpyxl
import psutil
import pytest
from chaos.harness import FIXED_MTIME, SDMI, base_env, drop, inbox_files, invariants, prefect_api_url, temp_files

from pipelines import demo
from pipelines.keys import create_key_file
from pipelines.ledger import Ledger
from pipelines.settings import Zones

SISKOP, JATIM, P3MI = "bp2mi_siskop2mi", "bp3mi_jatim", "p3mi_mitra_sejahtera"
TWO_GB = 2 * 1024**3 + 1  # one byte above ReadOptions.max_bytes


@dataclass(frozen=True)
class Bad:
    """One bad file and what must become of it: a final status, and a reason code or a rule/warning."""

    agency: str
    name: str
    status: str  # rejected | processed | held | duplicate
    reason: str | None = None  # ledger reason_code for rejections
    mentions: str | None = None  # text the agency's report must contain
    known_bug: bool = False  # checked by its own xfail test until the reader is fixed


def _siskop_rows(source: Path) -> tuple[list[str], list[list[str]]]:
    path = next((source / SISKOP).glob("*2023-01*.csv"))
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    return rows[0], rows[1:]


def _csv(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows([header, *rows])
    return out.getvalue()


def _fresh_ids(rows: list[list[str]], tag: str) -> list[list[str]]:
    """Same people, new record ids: a bad file must not supersede the demo's records."""
    return [[f"{tag}-{i:05d}", *r[1:]] for i, r in enumerate(rows, 1)]


def _xlsx_bytes(rows: list[list[object]], *, epoch_1904: bool = False, formulas: bool = False) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Penempatan"
    if epoch_1904:
        from openpyxl.utils.datetime import CALENDAR_MAC_1904

        wb.epoch = CALENDAR_MAC_1904
    for _ in range(3):
        ws.append([])
    for r in rows:
        ws.append(r)
    if formulas:
        for row in range(5, min(ws.max_row, 9) + 1):
            ws.cell(row=row, column=1).value = f'="JF-"&ROW()*{row}'  # a formula never calculated: no value
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _jatim_rows(source: Path) -> list[list[object]]:
    wb = openpyxl.load_workbook(next((source / JATIM).glob("*.xlsx")), read_only=True, data_only=True)
    ws = wb["Penempatan"]
    rows = [list(r) for r in ws.iter_rows(min_row=4, values_only=True)]
    wb.close()
    return [r for r in rows if any(v not in (None, "") for v in r)]


def _replace_sheet(valid: bytes, sheet: bytes) -> bytes:
    """A real workbook (openpyxl's) with its first sheet's XML swapped for `sheet`."""
    src = zipfile.ZipFile(io.BytesIO(valid))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.namelist():
            out.writestr(item, sheet if item == "xl/worksheets/sheet1.xml" else src.read(item))
    return buf.getvalue()


def _zip_bomb(valid: bytes) -> bytes:
    """64 MiB of sheet XML (padding in a comment) compressing ~1000:1: only the ratio gives it away."""
    sheet = zipfile.ZipFile(io.BytesIO(valid)).read("xl/worksheets/sheet1.xml")
    return _replace_sheet(valid, b"<!--" + b" " * (64 << 20) + b"-->" + sheet)


def _xml_bomb(valid: bytes) -> bytes:
    """Billion laughs in the sheet XML: nine levels of ten entity references."""
    sheet = zipfile.ZipFile(io.BytesIO(valid)).read("xl/worksheets/sheet1.xml").decode()
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    cell = '<row r="1"><c r="A1" t="inlineStr"><is><t>&l9;</t></is></c></row>'
    sheet = f'<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY l0 "lol">{lol}]>' + sheet.replace(
        "<sheetData>", "<sheetData>" + cell, 1
    )
    return _replace_sheet(valid, sheet.encode())


def _write_bad_files(source: Path, inbox: Path, truth: demo.DemoTruth) -> tuple[list[Bad], str]:
    header, rows = _siskop_rows(source)
    first = next((source / SISKOP).glob("*2023-01*.csv")).name
    broken = {b["source_row"] for b in truth.broken if b["agency"] == SISKOP and b["file"] == first}
    some = rows[:40]
    cases: list[Bad] = []

    def put(agency: str, name: str, data: bytes | str, expect: Bad) -> None:
        path = inbox / agency / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.utime(path, (FIXED_MTIME + 20, FIXED_MTIME + 20))
        cases.append(expect)

    ragged = [
        [*r, "extra"] if i % 7 == 0 else r[:-3] if i % 11 == 0 else r for i, r in enumerate(_fresh_ids(some, "RAG"))
    ]
    put(SISKOP, "ragged.csv", _csv(header, ragged), Bad(SISKOP, "ragged.csv", "processed", mentions="read.ragged_row"))
    plain = io.StringIO()  # minimal quoting: the one stray quote below is never closed
    csv.writer(plain, lineterminator="\r\n").writerows([header, *_fresh_ids(some, "UNQ")])
    unclosed = plain.getvalue().replace(",Hong Kong,", ',"Hong Kong,', 1)
    put(SISKOP, "unclosed quote.csv", unclosed, Bad(SISKOP, "unclosed quote.csv", "rejected", "unclosed_quote"))
    put(SISKOP, "semicolons.csv", _csv(header, _fresh_ids(some, "SEMI"), ";"),
        Bad(SISKOP, "semicolons.csv", "processed", mentions="read by detection"))  # fmt: skip
    cp = _csv(header, _fresh_ids(some, "CP")).replace("Yanti", "André Ma’ruf")
    put(SISKOP, "windows1252.csv", cp.encode("cp1252"),
        Bad(SISKOP, "windows1252.csv", "processed", mentions="read by detection"))  # fmt: skip
    put(SISKOP, "bom.csv", "\ufeff" + _csv(header, _fresh_ids(some, "BOM")), Bad(SISKOP, "bom.csv", "processed"))
    put(SISKOP, "utf16.csv", _csv(header, _fresh_ids(some, "U16")).encode("utf-16"),
        Bad(SISKOP, "utf16.csv", "processed", mentions="read by detection", known_bug=True))  # fmt: skip
    nul = _csv(header, _fresh_ids(some, "NUL")).replace("Hong Kong", "Hong\x00\x00Kong")
    put(SISKOP, "nul bytes.csv", nul, Bad(SISKOP, "nul bytes.csv", "rejected", "binary_content"))
    put(SISKOP, "empty.csv", b"", Bad(SISKOP, "empty.csv", "rejected", "empty_file"))
    put(SISKOP, "header only.csv", _csv(header, []), Bad(SISKOP, "header only.csv", "rejected", "no_data_rows"))
    dup_header = [*header[:-1], "Nama"]
    put(SISKOP, "dup header.csv", _csv(dup_header, _fresh_ids(some, "DUP")),
        Bad(SISKOP, "dup header.csv", "processed"))  # fmt: skip
    wide = ",".join(f"c{i}" for i in range(10_000)) + "\r\n" + ",".join("x" for _ in range(10_000)) + "\r\n"
    put(SISKOP, "wide.csv", wide, Bad(SISKOP, "wide.csv", "rejected", "too_many_columns"))
    short_year = _fresh_ids(some[:10], "YY")
    short_year[0][header.index("Tanggal Berangkat")] = "03/01/23"  # the year 23 to DuckDB's %Y
    put(SISKOP, "two digit year.csv", _csv(header, short_year),
        Bad(SISKOP, "two digit year.csv", "processed", mentions="harmonise.bad_date.departure_date"))  # fmt: skip
    headerless = _csv(header, _fresh_ids(some[:10], "NOH")).split("\r\n", 1)[1]
    put(SISKOP, "no header.csv", headerless,
        Bad(SISKOP, "no header.csv", "rejected", "missing_columns", mentions="no header row"))  # fmt: skip
    original = next((source / SISKOP).glob("*2023-01*.csv"))
    put(SISKOP, "copy of the first export.csv", original.read_bytes(),
        Bad(SISKOP, "copy of the first export.csv", "duplicate", mentions="same content"))  # fmt: skip
    resent = [list(r) for r in reversed(rows)]
    changed = next(r for i, r in enumerate(rows) if r[16] == "24" and i + 2 not in broken)  # a clean row
    changed = next(r for r in resent if r[0] == changed[0])
    changed[16] = "36"  # one record corrected: contract 24 -> 36 months
    put(SISKOP, "resend reordered.csv", _csv(header, resent), Bad(SISKOP, "resend reordered.csv", "processed"))

    hostile = {
        "data with spaces   2024 .csv": "SP",
        "данные_2024.csv": "CYR",
        "データ.csv": "JP",
        "a..b..c.csv": "DOTS",
        ("x" * 196) + ".csv": "LONG",
        "Case.csv": "CASEU",
        "case.csv": "CASEL",
    }
    for name, tag in hostile.items():
        put(SISKOP, name, _csv(header, _fresh_ids(some[:10], tag)), Bad(SISKOP, name, "processed"))

    jatim = _jatim_rows(source)
    good_xlsx = _xlsx_bytes(jatim)
    put(
        JATIM,
        "truncated.xlsx",
        good_xlsx[: len(good_xlsx) // 2],
        Bad(JATIM, "truncated.xlsx", "rejected", "corrupt_xlsx"),
    )
    page = "<html><body><table><tr><td>No. Pendaftaran</td></tr><tr><td>1</td></tr></table></body></html>"
    put(JATIM, "really html.xlsx", page, Bad(JATIM, "really html.xlsx", "rejected", "html_not_spreadsheet"))
    put(JATIM, "bomb.xlsx", _zip_bomb(good_xlsx), Bad(JATIM, "bomb.xlsx", "rejected", "zip_bomb"))
    put(JATIM, "xml bomb.xlsx", _xml_bomb(good_xlsx), Bad(JATIM, "xml bomb.xlsx", "rejected", "unsafe_xml"))
    put(JATIM, "mac 1904.xlsx", _xlsx_bytes(jatim, epoch_1904=True), Bad(JATIM, "mac 1904.xlsx", "processed"))
    put(
        JATIM,
        "formulas.xlsx",
        _xlsx_bytes(jatim, formulas=True),
        Bad(JATIM, "formulas.xlsx", "processed", mentions="formula"),
    )

    big = inbox / P3MI / "huge export.csv"
    with big.open("wb") as fh:
        fh.write(b"Worker ID;National ID;Full Name\r\n")
        fh.truncate(TWO_GB)  # sparse: 2 GB on paper, a few bytes on disk
    os.utime(big, (FIXED_MTIME + 20, FIXED_MTIME + 20))
    cases.append(Bad(P3MI, "huge export.csv", "rejected", "file_too_large"))
    return cases, changed[0]


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("bad-input")
    source = root / "source"
    truth = demo.generate(source, seed=13, rows=1200)
    home = root / "home"
    drop(source, home, inbox_files(source))
    cases, changed_id = _write_bad_files(source, home / "inbox", truth)
    key = create_key_file(root / "secrets" / "worker.key")
    cwd, tmp, logs = root / "cwd", root / "tmp", root / "logs"
    for folder in (cwd, tmp, logs):
        folder.mkdir()
    before = sorted(p.name for p in root.iterdir())
    env = base_env(prefect_api_url(), prefect_harness, TMPDIR=str(tmp))
    cmd = [SDMI, "run", "--home", str(home), "--key-file", str(key), "--stable-seconds", "0", "--json"]
    with (logs / "stdout").open("w") as out, (logs / "stderr").open("w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
        peak = 0
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)
    stdout, stderr = (logs / "stdout").read_text(), (logs / "stderr").read_text()
    assert proc.returncode in (0, 1), stderr[-2000:]
    assert json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])["received"] > 0
    return root, home, truth, cases, changed_id, peak, before


def _report_texts(home: Path, agency: str) -> dict[str, str]:
    """File name -> the text of every report page about it (index.html and report.json)."""
    out: dict[str, str] = {}
    for facts in (home / "reports" / agency).glob("*/report.json"):
        data = json.loads(facts.read_text(encoding="utf-8"))
        name = data.get("file_name") or data.get("file", {}).get("name")
        page = html.unescape((facts.parent / "index.html").read_text(encoding="utf-8"))
        reason = (data.get("reason") or {}).get("en") or ""
        out[name] = out.get(name, "") + json.dumps(data, ensure_ascii=False) + reason + page
    return out


def _problems(home: Path, cases: list[Bad]) -> list[str]:
    ledger = Ledger(Zones(home).ledger_db)
    by_name = {(f.agency, f.file_name): f for f in ledger.files()}
    receipts = ledger.receipts()
    problems = []
    for case in cases:
        reports = _report_texts(home, case.agency)
        page = reports.get(case.name, "")
        if not page:
            problems.append(f"{case.name}: no report for the agency")
        if case.status == "duplicate":
            if not any(r["file_name"] == case.name and r["outcome"] == "duplicate" for r in receipts):
                problems.append(f"{case.name}: not recorded as a duplicate")
        else:
            entry = by_name.get((case.agency, case.name))
            if entry is None:
                problems.append(f"{case.name}: not in the ledger")
                continue
            if entry.status != case.status:
                problems.append(f"{case.name}: {entry.status} ({entry.reason_code}), expected {case.status}")
            if case.reason and (entry.reason_code != case.reason or not entry.reason_en or not entry.reason_id):
                problems.append(f"{case.name}: reason {entry.reason_code!r}, expected {case.reason!r}")
            if case.reason and entry.reason_en and entry.reason_en not in page:
                problems.append(f"{case.name}: the report does not give the ledger's reason")
        if case.mentions and case.mentions.lower() not in page.lower():
            problems.append(f"{case.name}: the report does not mention {case.mentions!r}")
    return problems


def test_every_bad_file_ends_with_a_clear_reason_in_the_ledger_and_the_agencys_report(bad_run):
    _, home, _, cases, *_ = bad_run
    problems = _problems(home, [c for c in cases if not c.known_bug])
    assert problems == [], "\n".join(problems)


def test_a_utf16_file_with_a_bom_for_an_agency_declared_utf8_is_read_by_detection(bad_run):
    _, home, _, cases, *_ = bad_run
    assert _problems(home, [c for c in cases if c.known_bug]) == []


def test_the_demo_files_come_out_as_if_no_bad_file_had_been_sent(bad_run):
    _, home, truth, *_ = bad_run
    files = {f"{f.agency}/{f.file_name}": f for f in Ledger(Zones(home).ledger_db).files()}
    broken: dict[str, int] = {}
    for b in truth.broken:
        broken[f"{b['agency']}/{b['file']}"] = broken.get(f"{b['agency']}/{b['file']}", 0) + 1
    for name, rows in truth.rows_by_file.items():
        f = files[name]
        assert (f.status, f.rows_read, f.rows_quarantined) == ("processed", rows, broken.get(name, 0)), name


def test_nothing_is_half_published_or_left_temporary(bad_run):
    _, home, *_ = bad_run
    assert invariants(home) == []
    assert temp_files(home / "warehouse") == []


def test_nothing_is_written_outside_sdmi_home(bad_run):
    root, home, *_, before = bad_run
    assert sorted(p.name for p in root.iterdir()) == before
    assert list((root / "cwd").iterdir()) == []
    reports = (home / "reports").resolve()
    for path in (home / "reports").rglob("*"):
        assert reports in path.resolve().parents
    assert not list((root / "tmp").rglob("*.html"))


def test_a_resend_supersedes_the_changed_record_without_duplicates(bad_run):
    _, home, _, _, changed_id, *_ = bad_run
    con = duckdb.connect(str(Zones(home).analyst_db), read_only=True)
    assert con.execute("SELECT count(*) - count(DISTINCT record_key) FROM placement_records").fetchone()[0] == 0
    got = con.execute(
        "SELECT r.contract_months, d.file_name FROM placement_records r JOIN data_quality d USING (batch_id) "
        "WHERE r.record_key = ?",
        [f"{SISKOP}:{changed_id}"],
    ).fetchall()
    assert got == [(36, "resend reordered.csv")]
    resend = con.execute("SELECT rows_accepted FROM data_quality WHERE file_name = 'resend reordered.csv'").fetchone()
    from_resend = con.execute(
        "SELECT count(*) FROM placement_records JOIN data_quality d USING (batch_id) "
        "WHERE d.file_name = 'resend reordered.csv'"
    ).fetchone()
    assert from_resend == resend


def test_a_1904_dated_workbook_keeps_its_dates(bad_run):
    _, home, *_ = bad_run
    con = duckdb.connect(str(Zones(home).analyst_db), read_only=True)
    years = con.execute(
        "SELECT min(year(departure_date)), max(year(departure_date)) FROM placement_records r "
        "JOIN data_quality d USING (batch_id) WHERE d.file_name = 'mac 1904.xlsx'"
    ).fetchone()
    assert years[0] is not None and 2022 <= years[0] <= years[1] <= 2026, years


def test_a_2_gb_file_is_refused_without_being_loaded_into_memory(bad_run):
    *_, peak, _ = bad_run
    assert 0 < peak < 1.2 * 1024**3, f"peak RSS {peak / 1024**3:.2f} GiB"


@pytest.fixture(scope="module", autouse=True)
def _free_the_big_copy(bad_run):
    yield
    _, home, *_ = bad_run
    shutil.rmtree(home / "raw" / P3MI, ignore_errors=True)  # the archived 2 GB copy is no longer sparse

"""Read an agency file (CSV, XLSX or JSON) into an Arrow table of text cells, or reject it with a reason.

Every cell comes out as text (or null when empty): nothing is inferred, so a 16-digit NIK keeps its leading
zeros. Each row carries `_source_row`, the row number a person sees when opening the file (CSV: record number,
header counted, a quoted multi-line cell is one row; XLSX: sheet row; JSON array: 1-based record index;
NDJSON: line number). Rows that are read but malformed stay in the table and are described in
`row_issues`, so that rows read = accepted + quarantined holds downstream. File-level notes go to `warnings`.

Rejection codes (`FileRejected.code`, stable; the message says what the officer should do):

    empty_file            no bytes, or only blank lines / whitespace
    file_too_large        larger than ReadOptions.max_bytes
    legacy_xls            OLE2 file (Excel 97-2003 .xls, or a password-protected workbook)
    html_not_spreadsheet  a web page / XML file saved with a spreadsheet extension
    not_a_table           PDF, image, archive or other binary that is no table
    binary_content        text with NUL bytes (and not UTF-16) or many control characters
    unknown_encoding      the text decodes under none of the candidate encodings
    encoding_mismatch     ReadOptions.encoding was given and the file does not decode with it
    format_mismatch       ReadOptions.format was given and the file is of another format
    wrong_delimiter       ReadOptions.delimiter was given but the file is separated by another character
    unclosed_quote        a quoted CSV field is never closed (it would swallow the following rows)
    csv_parse_error       the CSV parser failed for another reason (message included)
    too_many_columns      more columns than ReadOptions.max_columns
    no_data_rows          a header but no data rows
    corrupt_xlsx          not a valid/complete ZIP workbook (truncated download, damaged file)
    xlsx_too_large        unpacked workbook larger than ReadOptions.xlsx_max_uncompressed_bytes
    zip_bomb              a workbook member compressed more than ReadOptions.xlsx_max_compression_ratio
    unsafe_xml            the workbook XML declares a DTD / entities (XML bomb)
    sheet_not_found       ReadOptions.sheet names no sheet of the workbook
    multiple_data_sheets  no ReadOptions.sheet, and more than one sheet (hidden ones too) holds rows under a header
                          of the mapping's columns (a sheet per year): one sheet is read per file
    invalid_json          JSON syntax error (line and column given)
    json_records_not_found  no array of records at the top level / at ReadOptions.records_path

Row issue rule ids: `read.ragged_row` (CSV row with a different number of fields than the header; padded with
nulls or truncated), `read.not_an_object` (JSON record that is not an object; kept as an all-null row).

A returned rejected-rows file (the `rejected_rows.csv` / `.xlsx` the report gives the officer to correct and drop
back: the agency's own columns, then `alasan_reason` and `baris_row`) is recognised by that header and read by its
own format (CSV or XLSX), encoding, delimiter, sheet and header row, detected, whatever the agency's agreed layout;
a warning says so.

Choices: an unclosed quote rejects the file (the rows after it cannot be trusted); 10,000 columns are
rejected by the default max_columns (500) and read when it is raised; when no header row is configured and
no expected header matches, the header is the first of the first 30 non-empty rows having at least half as
many distinct values as the widest of them (so a one-cell title row above the table is skipped). With no
sheet configured, hidden sheets (lookup lists for drop-downs) are passed over and the sheet read is the visible
one holding rows under a header of the mapping's columns; a sheet whose header names fewer than half as many of
them as the best sheet's (a title, notes, a lookup list) holds no data, and a workbook with data on several
sheets is rejected (multiple_data_sheets) rather than read from one of them.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import math
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines import json_stream
from pipelines.config import ReadOptions
from pipelines.problems import CRITICAL, ISSUE_SCHEMA, Bilingual, FileRejected

SOURCE_ROW = "_source_row"
HEADER_SEARCH_ROWS = 30
DELIMITERS = (",", ";", "\t", "|")
SAMPLE_BYTES = 1 << 20
CHUNK_BYTES = 16 << 20
STREAM_BLOCK_BYTES = 1 << 20  # pyarrow parses CSV this many bytes at a time
MAX_BLOCK_BYTES = 8 << 20  # a row longer than a block is read again in larger blocks, up to this
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# The two columns the report adds to the rejected rows it gives back (report.REASON_COLUMN, report.ROW_COLUMN; a
# test checks they agree): a header holding both is a returned rejected-rows file.
REJECTED_REASON_COLUMN = "alasan_reason"
REJECTED_ROW_COLUMN = "baris_row"
REJECTED_LOOK_BYTES = 256 << 10  # how much of a file (of a workbook's parts) is looked at for those two names
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# the sample parse may hold a whole multi-line cell; the default 128 KiB limit is too small for that
csv.field_size_limit(max(csv.field_size_limit(), 64 << 20))


Chunk = tuple[pa.Table, pa.Table]  # rows as text cells plus _source_row, and the reader's issues on those rows


@dataclass
class ReadResult:
    """A file's layout and its rows. CSV rows, and the records of a JSON file past JSON_HOLD_BYTES, are
    streamed (`stream`, memory follows the chunk); XLSX, small by nature, and smaller JSON are in `table`.
    Either way `chunks()` hands them out a bounded number at a time."""

    table: pa.Table | None
    header: list[str]
    header_row: int  # 1-based; 0 for JSON (no header row in the file)
    format: str
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    row_issues: pa.Table = field(default_factory=ISSUE_SCHEMA.empty_table)
    warnings: list[Bilingual] = field(default_factory=list)
    stream: Callable[[int, int | None, list[Bilingual]], Iterator[Chunk]] | None = None
    returned_rejected_rows: bool = False  # the agency's rejected_rows file sent back (`_read_returned_rejected_rows`)

    @property
    def schema(self) -> pa.Schema:
        if self.table is not None:
            return self.table.schema
        return pa.schema([*((n, pa.string()) for n in self.header), (SOURCE_ROW, pa.int64())])

    def chunks(
        self, rows: int, warnings: list[Bilingual] | None = None, max_bytes: int | None = None
    ) -> Iterator[Chunk]:
        """At most `rows` rows, and at most `max_bytes` of Arrow (one row at least), at a time: wide rows (long
        notes) make smaller chunks, so memory follows the bytes, not the row count. A streamed file can still
        be rejected (FileRejected) on the way, and warnings found while streaming (blank and total rows) are
        added to `warnings` (by default the file's own) by the end. Streaming again reads the file again."""
        if self.stream is not None:
            yield from self.stream(rows, max_bytes, self.warnings if warnings is None else warnings)
            return
        assert self.table is not None
        handed_out = start = 0
        while start < self.table.num_rows:
            part = self.table.slice(start, _rows_within(self.table.slice(start), rows, max_bytes))
            start += part.num_rows
            mine = self.row_issues.filter(pc.is_in(self.row_issues["source_row"], value_set=part[SOURCE_ROW]))
            handed_out += mine.num_rows
            yield part, mine
        if handed_out != self.row_issues.num_rows:  # a bug: an issue about a row that is not there
            raise AssertionError(f"{self.row_issues.num_rows - handed_out} reader issues point at no row")

    def collect(self) -> ReadResult:
        """The whole file in memory: for small files, previews and tests."""
        if self.stream is None:
            return self
        parts = list(self.stream(1 << 62, None, self.warnings))
        table = pa.concat_tables([t for t, _ in parts]) if parts else self.schema.empty_table()
        issues = pa.concat_tables([i for _, i in parts]) if parts else ISSUE_SCHEMA.empty_table()
        return replace(self, table=table, row_issues=issues, stream=None)


def _rows_within(table: pa.Table, rows: int, max_bytes: int | None) -> int:
    """How many of the table's first rows make a chunk: at most `rows`, and as many as fit in `max_bytes`
    (counting each cell's text and its offset), but never none."""
    head = table.slice(0, rows)
    if max_bytes is None or head.nbytes <= max_bytes:
        return head.num_rows
    sizes = np.zeros(head.num_rows, dtype=np.int64)
    for column in head.columns:
        if pa.types.is_string(column.type):
            sizes += pc.fill_null(pc.binary_length(column), 0).to_numpy().astype(np.int64) + 4
        else:
            sizes += column.type.byte_width
    return max(1, int(np.searchsorted(np.cumsum(sizes), max_bytes, side="right")))


def _reject(code: str, id_: str, en: str) -> FileRejected:
    return FileRejected(code, id_, en)


# --------------------------------------------------------------------------------------------- headers


def normalise_header(text: object) -> str:
    """Lower-case, punctuation to space, whitespace collapsed: how header aliases are compared everywhere."""
    s = unicodedata.normalize("NFKC", "" if text is None else str(text)).lower()
    return " ".join(re.sub(r"[\W_]+", " ", s).split())


def _find_header(rows: list[tuple[int, list[str | None]]], expected: set[str]) -> int:
    """Index into `rows` (non-empty rows, in order) of the header: most expected aliases, else widest-ish."""
    candidates = rows[:HEADER_SEARCH_ROWS]
    if expected:
        scores = [len({normalise_header(c) for c in cells if c} & expected) for _, cells in candidates]
        best = max(scores, default=0)
        if best > 0:
            return scores.index(best)
    widths = [len({c.strip() for c in cells if c and c.strip()}) for _, cells in candidates]
    widest = max(widths, default=0)
    for i, w in enumerate(widths):
        if w * 2 >= widest:
            return i
    return 0


def _make_names(raw: list[str | None], quote: bool = True) -> tuple[list[str], list[Bilingual]]:
    """Header cells -> unique column names; empty -> column_<n>, duplicates -> Name__2 (reported).

    `quote=False` reports duplicates by position only: for a header that matched none of the mapping's names,
    which is most likely a data row (a NIK, a name) and must not be quoted in a warning."""
    names: list[str] = []
    seen: set[str] = {SOURCE_ROW}
    dups: list[str] = []
    for i, cell in enumerate(raw, start=1):
        base = (cell or "").strip() or f"column_{i}"
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}__{k}"
        if k > 1:
            dups.append(f"{base!r} -> {name!r}" if quote else str(i))
        seen.add(name)
        names.append(name)
    warnings = []
    if dups and quote:
        listed = ", ".join(dups[:10])
        warnings.append(
            Bilingual(
                f"Nama kolom ganda diberi akhiran: {listed}. Beri setiap kolom nama yang berbeda.",
                f"Duplicate column names were renamed: {listed}. Give every column a distinct name.",
            )
        )
    elif dups:
        listed = ", ".join(dups[:10])
        warnings.append(
            Bilingual(
                f"Kolom ke-{listed} bernama sama dengan kolom sebelumnya dan diberi akhiran. Beri setiap kolom nama "
                "yang berbeda.",
                f"Columns {listed} repeat the name of an earlier column and were renamed. Give every column a distinct "
                "name.",
            )
        )
    return names, warnings


def _recognised(cells: Iterable[str | None], expected: set[str]) -> bool:
    """Whether a header row names at least one column as the mapping does (always, with no mapping to go by)."""
    return not expected or any(normalise_header(c) in expected for c in cells if c)


def _check_columns(n: int, options: ReadOptions) -> None:
    if n > options.max_columns:
        raise _reject(
            "too_many_columns",
            f"Berkas memiliki {n} kolom, batasnya {options.max_columns}. Kirim hanya kolom data penempatan.",
            f"The file has {n} columns; the limit is {options.max_columns}. Send only the placement columns.",
        )


# --------------------------------------------------------------------------------------------- sniffing


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text without a BOM shows NUL bytes at every other position (for mostly-ASCII text)."""
    if len(head) < 4:
        return None
    even, odd = head[0::2], head[1::2]
    z_even, z_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if z_odd > 0.3 and z_even < 0.05:
        return "utf-16-le"
    if z_even > 0.3 and z_odd < 0.05:
        return "utf-16-be"
    return None


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _head_text(head: bytes) -> str:
    enc = _bom_encoding(head) or _utf16_without_bom(head) or "utf-8"
    if enc.startswith("utf-16"):
        head = head[: len(head) // 2 * 2]
    return head.decode(enc, errors="replace")


def sniff_format(path: Path) -> str:
    """Format by content, not by extension: 'xlsx', 'json' or 'csv'; anything else is rejected."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head:
        raise _reject("empty_file", "Berkas kosong (0 byte).", "The file is empty (0 bytes).")
    if head.startswith(OLE2_MAGIC):
        raise _reject(
            "legacy_xls",
            "Berkas berformat Excel lama (.xls, 97-2003) atau dilindungi kata sandi. Buka di Excel lalu "
            "simpan sebagai .xlsx (Excel Workbook) tanpa kata sandi, atau sebagai CSV.",
            "This is a legacy Excel file (.xls, 97-2003) or a password-protected workbook. Open it in Excel "
            "and save it as .xlsx (Excel Workbook) without a password, or as CSV.",
        )
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise _corrupt_xlsx(exc) from None
        if "xl/workbook.xml" in names:
            return "xlsx"
        raise _reject(
            "not_a_table",
            "Berkas ini arsip ZIP (misalnya .docx, .ods atau .zip), bukan buku kerja Excel. "
            "Kirim berkas .xlsx atau CSV.",
            "This file is a ZIP archive (e.g. .docx, .ods or .zip), not an Excel workbook. Send an .xlsx or CSV file.",
        )
    if head.startswith(b"%PDF") or head[:4] in (
        b"\x89PNG",
        b"GIF8",
        b"\xff\xd8\xff\xe0",
        b"\x1f\x8b\x08\x00",
    ):
        raise _not_a_table()
    text = _head_text(head).lstrip("\ufeff \t\r\n")
    if text.startswith("<"):
        raise _reject(
            "html_not_spreadsheet",
            "Berkas ini halaman web (HTML) atau XML yang diberi ekstensi spreadsheet. Buka di Excel lalu "
            "simpan sebagai .xlsx (Excel Workbook) atau CSV.",
            "This file is a web page (HTML) or XML saved with a spreadsheet extension. Open it in Excel and "
            "save it as .xlsx (Excel Workbook) or CSV.",
        )
    if text[:1] in ("{", "["):
        return "json"
    return "csv"


def _not_a_table() -> FileRejected:
    return _reject(
        "not_a_table",
        "Berkas ini bukan tabel (misalnya PDF, gambar atau berkas biner). Kirim berkas .xlsx, CSV atau JSON.",
        "This file is not a table (e.g. a PDF, an image or a binary file). Send an .xlsx, CSV or JSON file.",
    )


def _binary() -> FileRejected:
    return _reject(
        "binary_content",
        "Berkas berisi karakter biner (byte NUL atau karakter kontrol), bukan teks CSV. Ekspor ulang data "
        "sebagai CSV (UTF-8) atau .xlsx.",
        "The file contains binary content (NUL bytes or control characters), not CSV text. Export the data "
        "again as CSV (UTF-8) or .xlsx.",
    )


def _corrupt_xlsx(exc: BaseException) -> FileRejected:
    return _reject(
        "corrupt_xlsx",
        f"Berkas Excel rusak atau tidak lengkap (mungkin terpotong saat diunduh/dikirim): {exc}. "
        "Simpan ulang dari Excel sebagai .xlsx lalu kirim kembali.",
        f"The Excel file is damaged or incomplete (perhaps cut off while downloading/sending): {exc}. "
        "Save it again from Excel as .xlsx and resend it.",
    )


# --------------------------------------------------------------------------------------------- entry


def read_file(path: Path, options: ReadOptions, expected_headers: Iterable[str] = ()) -> ReadResult:
    """Read one agency file whole, as text cells, or raise FileRejected with a reason the officer can act on."""
    return open_file(path, options, expected_headers).collect()


def open_file(
    path: Path, options: ReadOptions, expected_headers: Iterable[str] = (), *, header_only: bool = False
) -> ReadResult:
    """The file's layout, checked now, and its rows to stream: CSV rows are read only as `chunks()` asks.

    `header_only` (drafting a mapping from a template): an XLSX sheet with a header and no data row is read
    instead of rejected; a CSV's rows are only checked when streamed anyway."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise _reject("empty_file", "Berkas kosong (0 byte).", "The file is empty (0 bytes).")
    if size > options.max_bytes:
        raise _reject(
            "file_too_large",
            f"Berkas berukuran {size:,} byte, melebihi batas {options.max_bytes:,} byte. Bagi menjadi beberapa berkas.",
            f"The file is {size:,} bytes, above the limit of {options.max_bytes:,} bytes. Split it into several files.",
        )
    expected = {normalise_header(h) for h in expected_headers} - {""}
    fmt = sniff_format(path)
    if fmt in ("csv", "xlsx") and _looks_like_rejected_rows(path, fmt):
        returned = _read_returned_rejected_rows(path, fmt, options, expected)
        if returned is not None:
            return returned
    if options.format != "auto" and fmt != options.format and not (options.format == "csv" and fmt == "json"):
        raise _reject(
            "format_mismatch",
            f"Format berkas adalah {fmt}, sedangkan yang disepakati {options.format}. Kirim dalam format "
            f"{options.format}.",
            f"The file is {fmt}, but the agreed format is {options.format}. Send it as {options.format}.",
        )
    if options.format == "csv":
        fmt = "csv"
    if fmt == "xlsx":
        return _read_xlsx(path, options, expected, header_only)
    if fmt == "json":
        return _read_json(path, options)
    return _read_csv(path, options, expected)


def _names_rejected_rows_columns(cells: Iterable[str | None]) -> bool:
    """Whether a header holds both columns the report adds to the rejected rows (compared as headers are)."""
    names = {normalise_header(c) for c in cells if c}
    return {normalise_header(REJECTED_REASON_COLUMN), normalise_header(REJECTED_ROW_COLUMN)} <= names


def _looks_like_rejected_rows(path: Path, fmt: str) -> bool:
    """A cheap look at the start of the file for the rejected-rows header; `_read_returned_rejected_rows` confirms
    it by the header its read finds. CSV: the first non-blank record, under any of the usual delimiters (the
    report writes UTF-8 with a comma; Excel may save it again in another encoding or with semicolons). XLSX: both
    names in the first REJECTED_LOOK_BYTES of the shared strings or of a sheet's XML (the report writes its header
    as inline strings in the sheet; Excel saving it again moves them to the shared strings, header first)."""
    try:
        if fmt == "xlsx":
            seen = b""
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    name = info.filename.lower()
                    if name.endswith("sharedstrings.xml") or name.startswith("xl/worksheets/"):
                        with z.open(info) as f:
                            seen += f.read(REJECTED_LOOK_BYTES).lower()
                        if REJECTED_REASON_COLUMN.encode() in seen and REJECTED_ROW_COLUMN.encode() in seen:
                            return True
            return False
        with open(path, "rb") as f:
            text = _head_text(f.read(REJECTED_LOOK_BYTES)).lstrip("\ufeff")
        for delimiter in DELIMITERS:
            records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
            first = next((r for r in records if any(c.strip() for c in r)), [])
            if _names_rejected_rows_columns(first):
                return True
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        csv.Error,
        RuntimeError,
    ):
        return False  # a damaged file is no returned rejected-rows file; reading it as agreed says what is wrong
    return False


def _read_returned_rejected_rows(path: Path, fmt: str, options: ReadOptions, expected: set[str]) -> ReadResult | None:
    """A rejected-rows file the pipeline wrote for the agency, corrected (or not) and dropped back: read as what
    it is (CSV or XLSX; encoding, delimiter, sheet and header row detected), not as the agency's agreed layout,
    which it does not follow (a JSON agency's rows come back as a table, a UTF-16 agency's as UTF-8, a workbook's
    header from row 4 on row 1). None when the header found does not name the two columns after all."""
    detect = options.model_copy(
        update={"format": fmt, "encoding": None, "delimiter": None, "header_row": None, "sheet": None,
                "records_path": None}
    )  # fmt: skip
    result = _read_xlsx(path, detect, expected) if fmt == "xlsx" else _read_csv(path, detect, expected)
    if not _names_rejected_rows_columns(result.header):
        return None
    result.returned_rejected_rows = True
    shown = fmt.upper()
    result.warnings.insert(
        0,
        Bilingual(
            f"Berkas ini dikenali sebagai berkas baris yang ditolak (rejected_rows, dengan kolom "
            f"{REJECTED_REASON_COLUMN} dan {REJECTED_ROW_COLUMN}) yang dikirim kembali, dan dibaca sebagai {shown} "
            "dengan deteksi otomatis, bukan dengan tata letak yang disepakati.",
            f"This file was recognised as a returned rejected-rows file (rejected_rows, with the columns "
            f"{REJECTED_REASON_COLUMN} and {REJECTED_ROW_COLUMN}) and read as {shown} by detection, not with the "
            "agreed layout.",
        ),
    )
    return result


# --------------------------------------------------------------------------------------------- shared


def _issue(row: int, rule: str, value: str | None, id_: str, en: str) -> dict[str, Any]:
    return {
        "source_row": row,
        "rule_id": rule,
        "severity": CRITICAL,
        "field": None,
        "value": value,
        "message_id": id_,
        "message_en": en,
    }


def _finish(
    table: pa.Table,
    issues: list[dict[str, Any]],
    options: ReadOptions,
    warnings: list[Bilingual],
    footers: bool = True,
    require_rows: bool = True,
) -> tuple[pa.Table, pa.Table]:
    """Drop fully blank rows and trailing footer rows (with warnings); reject when no data row is left."""
    table, n_blank = _drop_blank_rows(table, {i["source_row"] for i in issues})
    _blank_warning(n_blank, warnings)
    if footers:
        table, issues = _drop_footers(table, issues, options, warnings)
    if table.num_rows == 0 and require_rows:
        raise _no_data_rows()
    return table, _issue_table(issues)


def _issue_table(issues: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(sorted(issues, key=lambda i: i["source_row"]), schema=ISSUE_SCHEMA)


def _no_data_rows() -> FileRejected:
    return _reject(
        "no_data_rows",
        "Berkas hanya berisi judul/kepala kolom tanpa baris data.",
        "The file has a header but no data rows.",
    )


def _blank_warning(n_blank: int, warnings: list[Bilingual]) -> None:
    if n_blank:
        warnings.append(Bilingual(f"{n_blank} baris kosong dilewati.", f"{n_blank} blank rows were skipped."))


def _drop_blank_rows(table: pa.Table, issue_rows: set[int]) -> tuple[pa.Table, int]:
    """Fully blank rows are not data (unless the reader has something to say about them)."""
    data_cols = [c for c in table.column_names if c != SOURCE_ROW]
    if not table.num_rows or not data_cols:
        return table, 0
    # narrow down column by column: usually the first column alone rules out almost every row
    cand = table.select([*data_cols, SOURCE_ROW])
    for c in data_cols:
        cand = cand.filter(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(cand[c]), ""), True))
        if cand.num_rows == 0:
            return table, 0
    blank_rows = cand[SOURCE_ROW]
    if issue_rows:
        blank_rows = pc.filter(blank_rows, pc.invert(pc.is_in(blank_rows, value_set=pa.array(sorted(issue_rows)))))
    if not len(blank_rows):
        return table, 0
    return table.filter(pc.invert(pc.is_in(table[SOURCE_ROW], value_set=blank_rows))), len(blank_rows)


FOOTER_LOOKBACK = 50  # rows from the end searched for totals ("Jumlah", "Total")


def _drop_footers(
    table: pa.Table, issues: list[dict[str, Any]], options: ReadOptions, warnings: list[Bilingual]
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Total rows under the data (matching the agency's footer pattern) are not records."""
    data_cols = [c for c in table.column_names if c != SOURCE_ROW]
    if not (options.footer_pattern and table.num_rows and data_cols):
        return table, issues
    pattern = re.compile(options.footer_pattern, re.IGNORECASE)
    tail = table.slice(max(0, table.num_rows - FOOTER_LOOKBACK)).select(data_cols).to_pylist()
    dropped: list[str] = []
    for rec in reversed(tail):
        first = next((v for v in rec.values() if v is not None and v.strip()), None)
        if first is None or not pattern.search(first):
            break
        dropped.append(first.strip()[:40])
    if not dropped:
        return table, issues
    keep = table.num_rows - len(dropped)
    gone = set(table[SOURCE_ROW].slice(keep).to_pylist())
    listed = ", ".join(repr(d) for d in reversed(dropped))
    warnings.append(
        Bilingual(
            f"{len(dropped)} baris total/jumlah di bawah data tidak dibaca sebagai data: {listed}.",
            f"{len(dropped)} total rows below the data were not read as data: {listed}.",
        )
    )
    return table.slice(0, keep), [i for i in issues if i["source_row"] not in gone]


def _drop_unnamed_empty(table: pa.Table, names: list[str], unnamed: set[str]) -> tuple[pa.Table, list[str]]:
    """Columns without a header and without any value (a trailing delimiter, formatted cells) are not data."""
    drop = [
        c
        for c in unnamed
        if table[c].null_count == table.num_rows
        or pc.all(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(table[c]), ""), True)).as_py()
    ]
    if not drop:
        return table, names
    return table.drop_columns(drop), [n for n in names if n not in drop]


# --------------------------------------------------------------------------------------------- CSV


def _candidate_encodings(path: Path, head: bytes, options: ReadOptions) -> list[str]:
    bom = _bom_encoding(head)
    if options.encoding:
        declared = (_known_codec(options.encoding) or options.encoding).replace("_", "-")
        # a UTF-8 BOM read as cp1252 would put 'ï»¿' in front of the first header (its column then unmatched)
        if (bom == "utf-16" and not declared.startswith("utf-16")) or (
            bom == "utf-8-sig" and not declared.startswith("utf-8")
        ):
            raise _reject(
                "encoding_mismatch",
                f"Berkas ini berenkode {bom} (ada BOM), bukan {options.encoding} seperti yang terdaftar.",
                f"This file is {bom} (it has a byte-order mark), not {options.encoding} as registered.",
            )
        if declared == "utf-16" and not bom and (u16 := _utf16_without_bom(head)):
            return [u16]  # UTF-16 as registered, without the byte-order mark Python's 'utf-16' decoder needs
        return [options.encoding]
    if bom:
        return [bom]
    u16 = _utf16_without_bom(head)
    if u16:
        return [u16]
    if b"\x00" in head:
        raise _binary()
    return ["utf-8", "cp1252"]


def _utf8_valid(path: Path) -> bool:
    """Whether the whole file is UTF-8, checked by Arrow block by block: 0.04-0.05 s for 95 MB with the search for
    NUL bytes (they mean binary), against 0.19 s for Python's decoder, and without holding the GIL that the other
    files' threads need.

    A block is checked up to its last lead byte, which starts the next block, so that no character is split."""
    block = bytearray(CHUNK_BYTES + 4)
    view = memoryview(block)
    kept = 0
    with open(path, "rb") as f:
        while n := f.readinto(view[kept : kept + CHUNK_BYTES]):
            end = kept + n
            if block.find(b"\x00", 0, end) >= 0:
                raise _binary()
            cut = next((i for i in range(end - 1, max(end - 4, 0) - 1, -1) if block[i] & 0xC0 != 0x80), end)
            if not _arrow_utf8(view[:cut]):
                return False
            block[: end - cut] = view[cut:end]
            kept = end - cut
    return _arrow_utf8(view[:kept])


def _arrow_utf8(data: memoryview) -> bool:
    buffer = pa.py_buffer(data)
    offsets = pa.array([0, len(buffer)], pa.int32()).buffers()[1]
    try:
        pa.Array.from_buffers(pa.binary(), 1, [None, offsets, buffer]).cast(pa.string())
    except pa.ArrowInvalid:
        return False
    return True


def _verify(path: Path, encoding: str) -> UnicodeDecodeError | None:
    """Decode the whole file strictly, in chunks (memory stays flat); NUL bytes mean binary.

    UTF-8 is checked by Arrow first; only a file that fails is decoded by Python, to say at which byte."""
    if _known_codec(encoding) in ("utf-8", "utf-8-sig") and _utf8_valid(path):
        return None
    try:
        dec = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError:
        raise _reject(
            "encoding_mismatch",
            f"Pengodean {encoding!r} tidak dikenal.",
            f"Unknown encoding {encoding!r}.",
        ) from None
    utf16 = "16" in encoding or "32" in encoding
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            if not utf16 and b"\x00" in chunk:
                raise _binary()
            try:
                text = dec.decode(chunk)
            except UnicodeError as exc:
                return _decode_error(exc, encoding, offset)
            if utf16 and "\x00" in text:
                raise _binary()
            offset += len(chunk)
        try:
            dec.decode(b"", final=True)
        except UnicodeError as exc:
            return _decode_error(exc, encoding, offset)
    return None


def _decode_error(exc: UnicodeError, encoding: str, offset: int) -> UnicodeDecodeError:
    """A decoding failure placed in the file (`offset`: where the block decoded began). Python's 'utf-16' and
    'utf-32' decoders raise a plain UnicodeError, with no position, for a stream that does not start with a
    byte-order mark (a UTF-8 file where UTF-16 is registered): the file fails at its start."""
    if isinstance(exc, UnicodeDecodeError):
        exc.start += offset
        return exc
    return UnicodeDecodeError(encoding, b"", offset, offset, str(exc))


class _NotUtf8(Exception):
    """pyarrow found invalid UTF-8 past the sample: detect again without UTF-8."""


def _has_nul(path: Path) -> bool:
    """Read CHUNK_BYTES at a time into one buffer. A memory map of the file counted every page it touched in
    the process's RSS: as much as the file (open_file's peak for a 933 MB CSV: 984 MiB, now 153 MiB)."""
    block = bytearray(CHUNK_BYTES)
    with open(path, "rb") as f:
        while n := f.readinto(block):
            if block.find(b"\x00", 0, n) >= 0:
                return True
    return False


def _detect_encoding(
    path: Path, head: bytes, options: ReadOptions, warnings: list[Bilingual], skip_utf8: bool
) -> tuple[str, bool]:
    """Detect, then verify on the whole file: Latin-1 never fails, so it is never a blind fallback.

    Returns (encoding, verified). UTF-8 (detected or declared) whose sample decodes is left to pyarrow to
    verify (it checks UTF-8 while parsing, saving a Python pass over the file: ~1 s per 400k rows); the
    caller retries with `skip_utf8` if that fails, and a declared UTF-8 is then verified here, so the
    rejection still says at which byte the file stops being UTF-8.
    """
    candidates = _candidate_encodings(path, head, options)
    declared_utf8 = bool(options.encoding) and _known_codec(options.encoding) == "utf-8"
    if skip_utf8:
        if not declared_utf8:
            candidates = [c for c in candidates if c != "utf-8"]
    elif candidates[0] == "utf-8" or declared_utf8:
        try:
            whole = len(head) < SAMPLE_BYTES
            codecs.getincrementaldecoder("utf-8")(errors="strict").decode(head, final=whole)
        except UnicodeDecodeError:
            if not declared_utf8:
                candidates = candidates[1:]
            # declared: fall through, the strict pass below reports where the file is not UTF-8
        else:
            if _has_nul(path):
                raise _binary()
            return "utf-8", False
    last: UnicodeDecodeError | None = None
    for enc in candidates:
        err = _verify(path, enc)
        if err is None:
            return enc, True
        last = err
    if options.encoding:
        raise _reject(
            "encoding_mismatch",
            f"Berkas tidak dapat dibaca dengan pengodean {options.encoding} (byte ke-{last.start}). Simpan "
            "ulang sebagai CSV UTF-8.",
            f"The file does not decode as {options.encoding} (at byte {last.start}). Save it again as CSV UTF-8.",
        )
    try:  # last resort: a statistical guess, still verified strictly
        from charset_normalizer import from_bytes

        best = from_bytes(head).best()
        guess = best.encoding if best else None
    except Exception:  # a detector failure only means no guess
        guess = None
    if guess and _known_codec(guess) not in {_known_codec(c) for c in candidates} and _verify(path, guess) is None:
        warnings.append(
            Bilingual(
                f"Pengodean teks ditebak sebagai {guess}; sebaiknya kirim CSV UTF-8.",
                f"The text encoding was guessed as {guess}; please send CSV UTF-8.",
            )
        )
        return guess, True
    raise _reject(
        "unknown_encoding",
        f"Pengodean teks tidak dikenali (bukan UTF-8/UTF-16/Windows-1252; byte ke-{last.start if last else 0}"
        "). Simpan ulang sebagai CSV UTF-8.",
        f"The text encoding is not recognised (not UTF-8/UTF-16/Windows-1252; at byte "
        f"{last.start if last else 0}). Save the file again as CSV UTF-8.",
    )


def _known_codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _sample_text(path: Path, encoding: str, nbytes: int) -> tuple[str, bool]:
    """Decoded start of the file, cut at a whole character; True when it is the whole file."""
    with open(path, "rb") as f:
        raw = f.read(nbytes + 1)
    complete = len(raw) <= nbytes
    raw = raw[:nbytes]
    dec = codecs.getincrementaldecoder(encoding)(errors="strict")
    text = dec.decode(raw, final=complete)
    return text.lstrip("\ufeff"), complete


def _parse_sample(text: str, delimiter: str, complete: bool) -> list[tuple[int, list[str]]]:
    """Records of the sample as (physical lines consumed so far, fields); the last partial one dropped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    out: list[tuple[int, list[str]]] = []
    try:
        for rec in reader:
            out.append((reader.line_num, rec))
            if len(out) >= 2000:
                return out
    except csv.Error:
        if complete:
            raise _unclosed(len(out) + 1) from None
    if not complete and out:
        out.pop()
    return out


def _unclosed(record: int | None, longest: int | None = None) -> FileRejected:
    where_id = f" (mulai sekitar baris {record})" if record else ""
    where_en = f" (starting around row {record})" if record else ""
    also_id = also_en = ""
    if longest:  # the parser cannot tell a quote left open from a row too long to hold
        mib = longest >> 20
        also_id = f" Jika tidak ada, ada satu baris yang lebih panjang dari {mib} MiB: persingkat isinya."
        also_en = f" If there is none, one row is longer than {mib} MiB: shorten it."
    return _reject(
        "unclosed_quote",
        f'Ada tanda kutip (") yang dibuka tetapi tidak ditutup{where_id}, sehingga baris-baris berikutnya '
        f"tergabung dalam satu sel. Perbaiki tanda kutip itu atau ekspor ulang sebagai CSV.{also_id}",
        f'A quote (") is opened but never closed{where_en}, so the following rows run together into one '
        f"cell. Fix that quote or export the file again as CSV.{also_en}",
    )


def _detect_delimiter(text: str, complete: bool) -> str:
    """The delimiter giving the most rows with the same (>1) number of fields; csv.Sniffer guesses badly."""
    best, best_score = ",", (0, 0)
    for d in DELIMITERS:
        counts: dict[int, int] = {}
        for _, rec in _parse_sample_quiet(text, d, complete)[:200]:
            if any(c.strip() for c in rec):
                counts[len(rec)] = counts.get(len(rec), 0) + 1
        if not counts:
            continue
        width, freq = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        score = (freq, width) if width > 1 else (0, 0)
        if score > best_score:
            best, best_score = d, score
    return best


def _parse_sample_quiet(text: str, delimiter: str, complete: bool) -> list[tuple[int, list[str]]]:
    try:
        return _parse_sample(text, delimiter, complete)
    except FileRejected:
        return []


def _read_csv(path: Path, options: ReadOptions, expected: set[str]) -> ReadResult:
    try:
        return _read_csv_as(path, options, expected, skip_utf8=False)
    except _NotUtf8:
        return _read_csv_as(path, options, expected, skip_utf8=True)


def _read_csv_as(path: Path, options: ReadOptions, expected: set[str], skip_utf8: bool) -> ReadResult:
    warnings: list[Bilingual] = []
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    encoding, verified = _detect_encoding(path, head, options, warnings, skip_utf8)
    try:
        text, complete = _sample_text(path, encoding, SAMPLE_BYTES)
        if not complete and len(text) < 1000:  # enormous first records: look further
            text, complete = _sample_text(path, encoding, 16 * SAMPLE_BYTES)
    except UnicodeError:  # UnicodeDecodeError, or a 'utf-16' stream without a byte-order mark
        if not verified:
            raise _NotUtf8() from None
        raise _reject(
            "encoding_mismatch",
            f"Berkas tidak dapat dibaca dengan pengodean {encoding}. Simpan ulang sebagai CSV UTF-8.",
            f"The file does not decode as {encoding}. Save it again as CSV UTF-8.",
        ) from None
    if not text.strip():
        raise _reject("empty_file", "Berkas hanya berisi baris kosong.", "The file holds only blank lines.")
    probe = text[:200_000]
    if len(_CONTROL.findall(probe)) > max(2, len(probe) // 100):
        raise _binary()

    detected = _detect_delimiter(text, complete)
    delimiter = options.delimiter or detected
    records = _parse_sample(text, delimiter, complete)
    if options.delimiter and detected != options.delimiter:
        widths = [len(r) for _, r in records[:50] if any(c.strip() for c in r)]
        if widths and max(widths) == 1:
            shown = {"\t": "tab"}.get(detected, detected)
            want = {"\t": "tab"}.get(options.delimiter, options.delimiter)
            raise _reject(
                "wrong_delimiter",
                f"Kolom dalam berkas dipisahkan dengan '{shown}', bukan '{want}' seperti yang disepakati. "
                f"Ekspor ulang dengan pemisah '{want}'.",
                f"The file's columns are separated by '{shown}', not by the agreed '{want}'. Export it again "
                f"with '{want}' as the separator.",
            )
    non_empty = [(i, r) for i, (_, r) in enumerate(records) if any(c.strip() for c in r)]
    if not non_empty:
        raise _reject("empty_file", "Berkas hanya berisi baris kosong.", "The file holds only blank lines.")
    if options.header_row is not None:
        if options.header_row > len(records):
            raise _reject(
                "no_data_rows",
                f"Baris kepala kolom {options.header_row} tidak ada di berkas.",
                f"Header row {options.header_row} is not in the file.",
            )
        hidx = options.header_row - 1
    else:
        hidx = non_empty[_find_header([(i, list(r)) for i, r in non_empty], expected)][0]
    header_row = hidx + 1
    skip_lines, raw_header = records[hidx]
    _check_columns(len(raw_header), options)
    header_cells = [c.strip() for c in raw_header]
    names, name_warnings = _make_names(header_cells, quote=_recognised(header_cells, expected))
    warnings += name_warnings

    if not verified and _verify(path, encoding) is not None:
        raise _NotUtf8()  # rows are streamed and used as they come: the whole file must decode first
    unnamed = [nm for nm, cell in zip(names, header_cells, strict=True) if not cell]
    empty = _empty_columns(path, names, unnamed, skip_lines, delimiter, encoding) if unnamed else set()
    keep = [n for n in names if n not in empty]
    layout = _CsvLayout(path, names, keep, skip_lines, delimiter, encoding, header_row)
    return ReadResult(
        table=None,
        header=keep,
        header_row=header_row,
        format="csv",
        encoding=encoding,
        delimiter=delimiter,
        warnings=warnings,
        stream=lambda rows, max_bytes, sink: _stream_csv(layout, rows, max_bytes, options, sink),
    )


def _pyarrow_encoding(encoding: str) -> str:
    return "utf8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding


@dataclass(frozen=True)
class _CsvLayout:
    path: Path
    names: list[str]  # every column, as named from the header
    keep: list[str]  # the columns read (headerless columns empty in the whole file are left out)
    skip_lines: int
    delimiter: str
    encoding: str
    header_row: int

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([*((k, pa.string()) for k in self.keep), (SOURCE_ROW, pa.int64())])


def _arrow_batches(layout: _CsvLayout, columns: list[str], handler: Any) -> Iterator[pa.RecordBatch]:
    """pyarrow's streaming parser, serial so that every ragged row it skips comes with its row number;
    parse failures become reasons the officer can act on. pyarrow cannot parse a row longer than its block
    (a long note): the file is then read again in blocks 8 times larger, from where it stopped, up to
    MAX_BLOCK_BYTES. A quote left open runs to the end of the file and still fails there."""

    def translate(exc: BaseException) -> FileRejected:
        msg = str(exc)
        if _straddles(exc):
            return _unclosed(None, MAX_BLOCK_BYTES)
        if "UTF8" in msg or "UTF-8" in msg:
            return _reject(
                "encoding_mismatch",
                f"Berkas tidak dapat dibaca dengan pengodean {layout.encoding}. Simpan ulang sebagai CSV UTF-8.",
                f"The file does not decode as {layout.encoding}. Save it again as CSV UTF-8.",
            )
        return _reject(
            "csv_parse_error", f"CSV tidak dapat dibaca: {msg[:300]}", f"The CSV cannot be parsed: {msg[:300]}"
        )

    last_invalid = 0  # a file read again: the rows skipped before were handled already

    def handle_once(row: Any) -> str:
        nonlocal last_invalid
        if row.number is not None:
            if row.number <= last_invalid:
                return "skip"
            last_invalid = row.number
        return handler(row)

    block, handed_out = STREAM_BLOCK_BYTES, 0
    while True:
        try:
            reader = _open_csv(layout, columns, block, handle_once)
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            if _straddles(exc) and block < MAX_BLOCK_BYTES:
                block *= 8
                continue
            raise translate(exc) from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise translate(exc) from None
        skip = handed_out
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
                if _straddles(exc) and block < MAX_BLOCK_BYTES:
                    block *= 8
                    break
                raise translate(exc) from None
            if skip:
                if batch.num_rows <= skip:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
            handed_out += batch.num_rows
            yield batch


def _straddles(exc: BaseException) -> bool:
    return "straddling" in str(exc) or "block boundar" in str(exc)


def _open_csv(layout: _CsvLayout, columns: list[str], block: int, handler: Any) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        layout.path,
        read_options=pacsv.ReadOptions(
            skip_rows=layout.skip_lines,
            column_names=layout.names,
            encoding=_pyarrow_encoding(layout.encoding),
            use_threads=False,
            block_size=block,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=layout.delimiter,
            newlines_in_values=True,
            ignore_empty_lines=False,
            invalid_row_handler=handler,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            include_columns=columns,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _fields(text: str, delimiter: str) -> list[str]:
    return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])


def _empty_columns(
    path: Path, names: list[str], unnamed: list[str], skip_lines: int, delimiter: str, encoding: str
) -> set[str]:
    """Headerless columns with no value anywhere (a trailing delimiter, formatted cells) are not data: one
    pass over those columns only, ragged rows included."""
    layout = _CsvLayout(path, names, names, skip_lines, delimiter, encoding, 0)
    empty = set(unnamed)
    index = {n: i for i, n in enumerate(names)}

    def handler(row: Any) -> str:
        fields = _fields(row.text, delimiter)
        empty.difference_update(n for n in list(empty) if index[n] < len(fields) and fields[index[n]].strip())
        return "skip"

    for batch in _arrow_batches(layout, unnamed, handler):
        for n in list(empty):
            column = batch.column(n)
            if (
                column.null_count < len(column)
                and not pc.all(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)).as_py()
            ):
                empty.discard(n)
        if not empty:
            break
    return empty


def _ragged_rows(
    layout: _CsvLayout, invalid: list[tuple[int, int, str]]
) -> tuple[dict[str, list[str | None]], list[int], list[dict[str, Any]]]:
    """Rows pyarrow skipped for having too many or too few fields: padded with nulls or truncated, put back
    in place, each described as a row issue. An odd quote spanning lines means an unclosed quote."""
    n = len(layout.names)
    positions = [layout.names.index(k) for k in layout.keep]
    cols: dict[str, list[str | None]] = {k: [] for k in layout.keep}
    rows: list[int] = []
    issues: list[dict[str, Any]] = []
    for num, actual, text in invalid:
        row = num - layout.skip_lines + layout.header_row
        if "\n" in text and text.count('"') % 2 == 1:
            raise _unclosed(row)
        fields = _fields(text, layout.delimiter)
        vals: list[str | None] = [f if f != "" else None for f in fields[:n]]
        vals += [None] * (n - len(vals))
        for k, i in zip(layout.keep, positions, strict=True):
            cols[k].append(vals[i])
        rows.append(row)
        if any(f.strip() for f in fields):
            issues.append(
                _issue(
                    row,
                    "read.ragged_row",
                    f"expected {n} fields, found {actual}",
                    f"Baris ini memiliki {actual} kolom, seharusnya {n} seperti kepala kolom. Periksa "
                    "pemisah atau tanda kutip di baris ini.",
                    f"This row has {actual} fields; the header has {n}. Check the separators or quotes in this row.",
                )
            )
    return cols, rows, issues


def _csv_pieces(layout: _CsvLayout) -> Iterator[tuple[pa.Table, list[dict[str, Any]]]]:
    """The file's rows in parser-sized pieces, each row numbered as in the file (records after the header),
    ragged rows back in their places."""
    invalid: list[tuple[int, int, str]] = []

    def handler(row: Any) -> str:
        if row.number is None:  # the serial parser always numbers rows; without a number nothing is placed
            raise AssertionError("pyarrow skipped a row without its number")
        invalid.append((row.number, row.actual_columns, row.text))
        return "skip"

    position = placed = 0
    schema = layout.schema
    for batch in _arrow_batches(layout, layout.keep, handler):
        end = position + batch.num_rows
        mine: list[tuple[int, int, str]] = []
        while placed < len(invalid) and invalid[placed][0] - layout.skip_lines <= end:
            mine.append(invalid[placed])
            placed += 1
            end += 1
        slots = np.arange(position + 1, end + 1, dtype=np.int64)
        if mine:
            slots = np.setdiff1d(slots, [num - layout.skip_lines for num, _, _ in mine], assume_unique=True)
        position = end
        table = pa.Table.from_batches([batch]).select(layout.keep)
        table = table.append_column(SOURCE_ROW, pa.array(slots + layout.header_row))
        yield _with_ragged(table, layout, mine, schema)
    if placed < len(invalid):  # ragged rows after the last parsed row
        yield _with_ragged(schema.empty_table(), layout, invalid[placed:], schema)


def _with_ragged(
    table: pa.Table, layout: _CsvLayout, invalid: list[tuple[int, int, str]], schema: pa.Schema
) -> tuple[pa.Table, list[dict[str, Any]]]:
    if not invalid:
        return table.cast(schema), []
    cols, rows, issues = _ragged_rows(layout, invalid)
    extra = pa.table({**{k: pa.array(v, pa.string()) for k, v in cols.items()}, SOURCE_ROW: pa.array(rows, pa.int64())})
    merged = pa.concat_tables([table.cast(schema), extra.cast(schema)])
    return merged.take(pc.sort_indices(merged[SOURCE_ROW])), issues


def _split_chunk(table: pa.Table, issues: list[dict[str, Any]], rows: int) -> tuple[Chunk, pa.Table, list[dict]]:
    """The first `rows` rows (and their issues) out of the buffered ones; rows are in file order."""
    head, rest = table.slice(0, rows), table.slice(rows)
    last = head[SOURCE_ROW][-1].as_py() if head.num_rows else -1
    return (
        (head, _issue_table([i for i in issues if i["source_row"] <= last])),
        rest,
        [i for i in issues if i["source_row"] > last],
    )


def _stream_csv(
    layout: _CsvLayout, rows: int, max_bytes: int | None, options: ReadOptions, warnings: list[Bilingual]
) -> Iterator[Chunk]:
    """Chunks of at most `rows` rows and `max_bytes` (`_rows_within`). The last FOOTER_LOOKBACK rows are held
    back until the end of the file, where total rows are recognised; a file with no data row is rejected there."""
    schema = layout.schema
    buffer, issues = schema.empty_table(), []
    emitted = blank = 0
    for table, piece_issues in _csv_pieces(layout):
        table, n_blank = _drop_blank_rows(table, {i["source_row"] for i in piece_issues})
        blank += n_blank
        buffer = pa.concat_tables([buffer, table]) if buffer.num_rows else table
        issues += piece_issues
        while buffer.num_rows - (take := _rows_within(buffer, rows, max_bytes)) >= FOOTER_LOOKBACK:
            chunk, buffer, issues = _split_chunk(buffer, issues, take)
            emitted += chunk[0].num_rows
            yield chunk
    _check_unclosed_tail(buffer, layout.keep, layout.delimiter)
    _blank_warning(blank, warnings)
    buffer, issues = _drop_footers(buffer, issues, options, warnings)
    if emitted + buffer.num_rows == 0:
        raise _no_data_rows()
    while buffer.num_rows:
        chunk, buffer, issues = _split_chunk(buffer, issues, _rows_within(buffer, rows, max_bytes))
        yield chunk


def _check_unclosed_tail(table: pa.Table, names: list[str], delimiter: str) -> None:
    """An unclosed quote in the last column swallows the rest of the file into the last cell."""
    if table.num_rows == 0 or len(names) < 2:
        return
    last = table[names[-1]][-1].as_py()
    if not last or "\n" not in last:
        return
    lines = last.split("\n")
    if any(line.count(delimiter) >= len(names) - 1 for line in lines[1:]):
        raise _unclosed(table[SOURCE_ROW][-1].as_py())


# --------------------------------------------------------------------------------------------- XLSX
#
# A sheet is read by calamine (Rust, `python-calamine`) instead of openpyxl's parser in Python: the demo's
# 10,000-row, 16-column sheet 3.2 -> 0.6 s, 100,009 rows 12.5-13.1 -> 3.4 s, the same table and warnings.
# Calamine holds a sheet as a grid from its first to its last cell, 32 bytes a cell, empty ones included: one
# stray value at XFD20001 under 20,000 rows took 10 GB and 32 s.
# So the sheet's XML is scanned first (`_scan_sheet`: its extent, merged ranges, formulas that saved no value,
# error cells), and a sheet whose grid would be far larger than the cells it holds is read by openpyxl's
# streaming parser instead. Both give the same cells (tests/test_readers.py reads each case both ways).

_MERGE_RE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Z]{1,3}[0-9]{1,7})(?::([A-Z]{1,3}[0-9]{1,7}))?"')
_ROOT_RE = re.compile(rb"<(\w+:)?worksheet\b")
_ROW_NUMBER_RE = re.compile(rb'row\b[^>]*?\sr="([0-9]{1,7})"')
_CELL_RE = re.compile(rb"<((?:\w+:)?)c\b([^>]*?)(?:/>|>(.*?)</\1c>)", re.S)
_REF_ATTR_RE = re.compile(rb'\sr="([A-Z]{1,3})([0-9]{1,7})"')
_TYPE_ATTR_RE = re.compile(rb'\st="(\w+)"')
_FORMULA_RE = re.compile(rb"<(?:\w+:)?f[\s/>]")
_VALUE_RE = re.compile(rb"<(?:\w+:)?v>([^<]+)</(?:\w+:)?v>")
SCAN_BLOCK_BYTES = 4 << 20
XLSX_BLOCK_ROWS = 20_000
# a sheet goes to openpyxl when calamine's grid would hold more than twice its cells and a million more
SPARSE_SLACK_CELLS = 1_000_000


def _check_zip(path: Path, options: ReadOptions) -> None:
    """Zip-bomb and XML-bomb guards, before any XML parser sees the workbook."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if total > options.xlsx_max_uncompressed_bytes:
                raise _reject(
                    "xlsx_too_large",
                    f"Isi buku kerja berukuran {total:,} byte setelah dibuka, melebihi batas "
                    f"{options.xlsx_max_uncompressed_bytes:,}. Bagi data menjadi beberapa berkas.",
                    f"The workbook unpacks to {total:,} bytes, above the limit of "
                    f"{options.xlsx_max_uncompressed_bytes:,}. Split the data into several files.",
                )
            for i in infos:
                ratio = i.file_size / max(i.compress_size, 1)
                if ratio > options.xlsx_max_compression_ratio and i.file_size > (1 << 20):
                    raise _reject(
                        "zip_bomb",
                        f"Bagian {i.filename} dari buku kerja terkompresi {ratio:.0f} kali (tidak wajar). "
                        "Berkas ditolak demi keamanan; simpan ulang dari Excel.",
                        f"Workbook part {i.filename} is compressed {ratio:.0f} times (abnormal). The file is "
                        "refused for safety; save it again from Excel.",
                    )
            for i in infos:
                if i.filename.endswith((".xml", ".rels", ".vml")):
                    with z.open(i) as f:
                        if _prolog_declares_dtd(f):
                            raise _unsafe_xml(i.filename)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise _corrupt_xlsx(exc) from None


def _prolog_declares_dtd(f: Any) -> bool:
    """Whether a declaration (`<!DOCTYPE`, where entities are declared) comes before the root element.
    Comments and processing instructions of any length may come first; only the prolog is read."""
    first = f.read(1 << 16)
    encoding = "utf-16" if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8"
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    text, eof = decoder.decode(first, final=not first), not first
    closing: str | None = None  # the end of the comment or instruction being skipped
    while True:
        if closing is None:
            text = text.lstrip("\ufeff \t\r\n")
            if len(text) >= 4 or eof:
                if text.startswith("<!--"):
                    closing, text = "-->", text[4:]
                elif text.startswith("<?"):
                    closing, text = "?>", text[2:]
                else:
                    return text.startswith("<!")
                continue
        else:
            end = text.find(closing)
            if end >= 0:
                text, closing = text[end + len(closing) :], None
                continue
            if eof:
                return False
            text = text[-(len(closing) - 1) :]
        chunk = f.read(1 << 16)
        eof = not chunk
        text += decoder.decode(chunk, final=eof)


def _unsafe_xml(part: str) -> FileRejected:
    return _reject(
        "unsafe_xml",
        f"Bagian {part} dari buku kerja berisi deklarasi DTD/entitas XML yang tidak dipakai Excel (bisa "
        "berbahaya). Simpan ulang dari Excel sebagai .xlsx.",
        f"Workbook part {part} declares an XML DTD/entities, which Excel never writes (possibly malicious). "
        "Save it again from Excel as .xlsx.",
    )


@dataclass
class _SheetScan:
    """What the sheet's XML says before any parser reads it."""

    rows: int = 0  # highest row number of a cell (written with a value or not)
    columns: int = 0  # highest column number of a cell
    cells: int = 0
    merges: list[tuple[int, int, int, int]] = field(default_factory=list)  # min_row, min_col, max_row, max_col
    formula_missing: list[str] = field(default_factory=list)  # formula cells without a saved value
    errors: dict[int, dict[int, str]] = field(default_factory=dict)  # row -> column -> '#N/A', '#DIV/0!'...

    @property
    def sparse(self) -> bool:
        return self.rows * self.columns > 2 * self.cells + SPARSE_SLACK_CELLS


def _scan_sheet(z: zipfile.ZipFile, member: str) -> _SheetScan:
    """One streamed pass over the sheet's XML, a block at a time, cut after a row's tag so that no cell is
    split. Cells are parsed one by one only in a block that has a formula or an error cell; the widest column
    is found by searching for a cell beyond the widest one seen so far (`_wider_than`), which on most sheets
    matches once, in the first row; the same for a cell below the last row tag. 1,588,308 cells (56 MB of
    XML): 0.83-0.87 s, of which ~0.2 s is inflating it and ~0.45 s the two searches."""
    from openpyxl.utils.cell import column_index_from_string, coordinate_to_tuple

    scan = _SheetScan()
    carry = b""
    wider = _wider_than(0)
    cell_tags, formula_tags = (b"<c ", b":c "), (b"<f", b":f")  # until the root element names its prefix
    with z.open(member) as f:
        while True:
            chunk = f.read(SCAN_BLOCK_BYTES)
            buf = carry + chunk
            if not scan.cells and (root := _ROOT_RE.search(buf)):
                prefix = root.group(1) or b""
                cell_tags, formula_tags = (b"<" + prefix + b"c ",), (b"<" + prefix + b"f",)
            cut = buf.rfind(b"row>") + 4 if chunk else len(buf)
            part, carry = (buf[:cut], buf[cut:]) if cut >= 4 else (b"", buf)
            scan.cells += sum(part.count(tag) for tag in cell_tags)
            rows = _ROW_NUMBER_RE.findall(part)
            if rows:
                scan.rows = max(scan.rows, max(map(int, rows)))
            pos = 0
            while m := wider.search(part, pos):
                scan.columns, pos = column_index_from_string(m.group(1).decode().upper()), m.end()
                wider = _wider_than(scan.columns)
            pos, lower = 0, _lower_than(scan.rows)  # a cell placed below every row tag (calamine goes by cells)
            while m := lower.search(part, pos):
                scan.rows, pos = int(m.group(1)), m.end()
                lower = _lower_than(scan.rows)
            if any(tag in part for tag in formula_tags) or b't="e"' in part:
                _scan_cells(part, scan)
            if b"mergeCell" in part:
                for m in _MERGE_RE.finditer(part):
                    a = coordinate_to_tuple(m.group(1).decode())
                    b = coordinate_to_tuple(m.group(2).decode()) if m.group(2) else a
                    scan.merges.append((min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])))
            if not chunk:
                break
    return scan


def _letters(first: str, last: str) -> str:
    return f"[{first}-{last}{first.lower()}-{last.lower()}]"


def _digits(first: str, last: str) -> str:
    return f"[{first}-{last}]"


def _later(text: str, alphabet: str, chars: Callable[[str, str], str]) -> list[str]:
    """Regex alternatives for the strings of `text`'s length that sort after it (`alphabet` in order;
    `chars(a, b)` is the class of the characters a to b)."""
    out = []
    for i, ch in enumerate(text):
        rest = alphabet[alphabet.index(ch) + 1 :]
        if rest:
            same = "".join(chars(c, c) for c in text[:i])
            out.append(f"{same}{chars(rest[0], rest[-1])}{chars(alphabet[0], alphabet[-1])}{{{len(text) - i - 1}}}")
    return out


# calamine places a cell by its reference, and it also takes `r='xfd20001'`, `r = "XFD20001"` and `r="XFD020001"`,
# which no spreadsheet program writes: the searches take every such form (they start from the literal `r`). A row
# tag's `r="12"` has no letters and matches neither.
_REF_START = r"""r\s*=\s*["']\s*\$?"""


def _wider_than(column: int) -> re.Pattern[bytes]:
    """A cell reference (`r="AB12"`) whose column comes after `column`: more letters, or as many and later."""
    from openpyxl.utils.cell import get_column_letter

    letters = get_column_letter(column) if column else ""
    options = [f"[A-Za-z]{{{len(letters) + 1},3}}"] if len(letters) < 3 else []
    options += _later(letters, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", _letters)
    return re.compile(f"{_REF_START}({'|'.join(options) or '(?!)'})\\$?[0-9]".encode())


def _lower_than(row: int) -> re.Pattern[bytes]:
    """A cell reference whose row comes after `row`: more digits, or as many and a greater number."""
    digits = str(row) if row > 0 else ""
    options = [f"[1-9][0-9]{{{len(digits)},}}", *_later(digits, "0123456789", _digits)]
    return re.compile(f"{_REF_START}[A-Za-z]{{1,3}}\\$?0*({'|'.join(options)})(?![0-9])".encode())


def _scan_cells(part: bytes, scan: _SheetScan) -> None:
    from openpyxl.utils.cell import column_index_from_string

    for m in _CELL_RE.finditer(part):
        attrs, body = m.group(2), m.group(3) or b""
        ref = _REF_ATTR_RE.search(attrs)
        value = _VALUE_RE.search(body)
        if _FORMULA_RE.search(body) and value is None:
            scan.formula_missing.append(ref.group(1).decode() + ref.group(2).decode() if ref else "?")
        kind = _TYPE_ATTR_RE.search(attrs)
        if kind and kind.group(1) == b"e" and value is not None and ref:
            row, col = int(ref.group(2)), column_index_from_string(ref.group(1).decode())
            scan.errors.setdefault(row, {})[col] = value.group(1).decode("utf-8", "replace")


def _workbook_sheets(z: zipfile.ZipFile) -> list[tuple[str, str | None, bool]]:
    """(name, worksheet part, hidden) of each sheet in the workbook's order; no part for a chart or dialog sheet.
    Hidden is the sheet's `state` (hidden, or veryHidden: shown by no menu of Excel), as calamine's
    `sheets_metadata` reads it too; the state is read here, from the same element as the part."""
    import posixpath

    from defusedxml import ElementTree

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def target(base: str, rel: Any) -> str:
        t = rel.get("Target", "")
        return t.lstrip("/") if t.startswith("/") else posixpath.normpath(posixpath.join(posixpath.dirname(base), t))

    rels = ElementTree.fromstring(z.read("_rels/.rels"))
    book = next((target("", r) for r in rels if r.get("Type", "").endswith("/officeDocument")), "xl/workbook.xml")
    book_rels = posixpath.join(posixpath.dirname(book), "_rels", posixpath.basename(book) + ".rels")
    parts = {
        r.get("Id"): (target(book, r) if r.get("Type", "").endswith("/worksheet") else None)
        for r in ElementTree.fromstring(z.read(book_rels))
    }
    sheets = []
    for el in ElementTree.fromstring(z.read(book)).iter():
        if local(el.tag) == "sheet":
            rid = next((v for k, v in el.attrib.items() if local(k) == "id"), None)
            sheets.append((el.get("name", ""), parts.get(rid), el.get("state") in ("hidden", "veryHidden")))
    return sheets


def _excel_text(value: Any) -> tuple[str | None, bool]:
    """A cell value as text; the flag marks an integral number of 16+ digits (beyond Excel's precision)."""
    if value is None:
        return None, False
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), False
    if isinstance(value, int):
        s = str(value)
        return s, len(s.lstrip("-")) > 15
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            s = str(int(value))
            return s, len(s.lstrip("-")) > 15
        return format(value, ".15g"), False
    if isinstance(value, datetime):
        if value.microsecond >= 500_000:
            value = value + timedelta(microseconds=1_000_000 - value.microsecond)
        value = value.replace(microsecond=0)
        if value.time() == time(0, 0):
            return value.date().isoformat(), False
        return value.strftime("%Y-%m-%d %H:%M:%S"), False
    if isinstance(value, date):
        return value.isoformat(), False
    if isinstance(value, time):
        return value.replace(microsecond=0).isoformat(), False
    if isinstance(value, timedelta):
        return str(value), False
    s = str(value)
    return (s if s != "" else None), False


Cells = Iterator[tuple[int, dict[int, Any]]]  # (sheet row, {column: value}) of rows that hold a value


def _calamine_cells(path: Path, name: str, scan: _SheetScan) -> Cells:
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    try:
        sheet = book.get_sheet_by_name(name)
    finally:
        book.close()
    if sheet.start is None:
        return
    first_col = sheet.start[1] + 1
    errors = scan.errors
    # iter_rows starts at the sheet's first row (empty rows before the first cell included) and at the
    # first column that holds a cell
    for r, values in enumerate(sheet.iter_rows(), 1):
        cells = {c: v for c, v in enumerate(values, first_col) if v != ""}
        if r in errors:
            cells.update(errors[r])
        if cells:
            yield r, cells


def _openpyxl_cells(path: Path, name: str) -> Cells:
    """openpyxl's streaming parser, for sparse sheets (formulas without a value are in the scan)."""
    import openpyxl
    from openpyxl.worksheet._reader import WorkSheetParser

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        ws = wb[name]
        with wb._archive.open(ws._worksheet_path) as src:
            parser = WorkSheetParser(
                src,
                ws._shared_strings,
                data_only=True,
                epoch=wb.epoch,
                date_formats=wb._date_formats,
                timedelta_formats=wb._timedelta_formats,
            )
            for r, cells in parser.parse():
                row = {c["column"]: c["value"] for c in cells if c["value"] is not None}
                if row:
                    yield r, row
    finally:
        wb.close()


def _sheet_cells(path: Path, name: str, scan: _SheetScan) -> Cells:
    return _openpyxl_cells(path, name) if scan.sparse else _calamine_cells(path, name, scan)


def _read_xlsx(path: Path, options: ReadOptions, expected: set[str], header_only: bool = False) -> ReadResult:
    _check_zip(path, options)
    from defusedxml import DefusedXmlException

    try:
        with zipfile.ZipFile(path) as z:
            name, scan, cells = _pick_sheet(path, z, options, expected)
            return _read_workbook(name, scan, cells, options, expected, header_only)
    except FileRejected:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # damaged workbooks raise many types, calamine's panics included
        seen: BaseException | None = exc
        while seen is not None:  # openpyxl wraps parser errors in ValueError
            if isinstance(seen, DefusedXmlException):
                raise _unsafe_xml("workbook XML") from None
            seen = seen.__cause__ or seen.__context__
        raise _corrupt_xlsx(exc) from None


def _pick_sheet(
    path: Path, z: zipfile.ZipFile, options: ReadOptions, expected: set[str]
) -> tuple[str, _SheetScan, Cells]:
    """The sheet asked for (hidden or not), or the one detected; its rows from the first on.

    Detection passes over hidden sheets (lookup lists for drop-downs) and reads the visible sheet that holds
    rows under a header of the mapping's columns. Title, notes and lookup sheets do not hold data: their header,
    if any, names fewer than half as many of the mapping's columns as the best sheet's. When several sheets hold
    data (a sheet per year), hidden ones included, the file is rejected: one sheet is read per file, and rows
    are known by their sheet row, so the other sheets' rows would be lost without a word. Without the mapping's
    names (no expected headers) a sheet cannot be told to hold data: the first visible sheet with a value."""
    sheets = _workbook_sheets(z)
    names = [n for n, _, _ in sheets]
    if options.sheet is not None:
        if isinstance(options.sheet, int):
            found = sheets[options.sheet] if 0 <= options.sheet < len(sheets) else None
        else:
            found = next((s for s in sheets if s[0] == options.sheet), None)
        if found is None:
            raise _reject(
                "sheet_not_found",
                f"Lembar {options.sheet!r} tidak ada di buku kerja (lembar yang ada: {', '.join(names)}).",
                f"Sheet {options.sheet!r} is not in the workbook (sheets: {', '.join(names)}).",
            )
        name, member, _ = found
        if member is None:
            raise _reject("empty_file", "Lembar ini tidak berisi data.", "This sheet contains no data.")
        scan = _scan_sheet(z, member)
        return name, scan, _sheet_cells(path, name, scan)
    looks: list[_SheetLook] = []
    pick: _SheetLook | None = None
    try:
        for name, member, hidden in sheets:
            if member is None or (hidden and not expected):  # a chartsheet; a hidden sheet is never read
                continue
            look = _look_at_sheet(path, z, name, member, hidden, options, expected)
            if look is None:
                continue
            looks.append(look)
            if not expected:
                break
            best = max((x.score for x in looks if not x.hidden), default=0)
            for x in looks:  # let go of the cells of each sheet that can no longer be the one read
                if x.hidden or (x.score < best and not x.holds_data(best)):
                    x.close()
        pick = _data_sheet(looks)
    finally:
        for x in looks:
            if x is not pick:
                x.close()
    return pick.name, pick.scan, itertools.chain(pick.seen, pick.rest)


@dataclass(eq=False)
class _SheetLook:
    """A worksheet's first rows, read to tell a data sheet from a title, notes or lookup sheet."""

    name: str
    hidden: bool
    scan: _SheetScan
    rest: Cells  # its rows after `seen`
    seen: list[tuple[int, dict[int, Any]]] = field(default_factory=list)
    score: int = 0  # how many of the mapping's column names its header row holds
    rows: bool = False  # whether a row that is not a total comes under that header

    def holds_data(self, best: int) -> bool:
        """Rows under a header naming at least half as many of the mapping's columns as the best sheet's."""
        return self.rows and self.score > 0 and 2 * self.score >= best

    def close(self) -> None:
        if isinstance(self.rest, Generator):
            self.rest.close()  # calamine's grid of the sheet, or openpyxl's open workbook, is let go
        self.rest, self.seen = iter(()), []


def _look_at_sheet(
    path: Path, z: zipfile.ZipFile, name: str, member: str, hidden: bool, options: ReadOptions, expected: set[str]
) -> _SheetLook | None:
    """The sheet's rows up to its header (found as `_read_workbook` finds it) and the first record under it;
    None for a sheet without a value."""
    scan = _scan_sheet(z, member)
    look = _SheetLook(name, hidden, scan, _sheet_cells(path, name, scan))
    total = re.compile(options.footer_pattern, re.IGNORECASE) if options.footer_pattern else None
    texts: list[tuple[int, list[str]]] = []  # the rows with a value, their non-blank cells in column order
    try:
        for r, row in look.rest:
            look.seen.append((r, row))
            cells = [t for _, v in sorted(row.items()) if (t := _excel_text(v)[0]) is not None and t.strip()]
            if not cells:
                continue
            texts.append((r, cells))
            if options.header_row is None and len(texts) > HEADER_SEARCH_ROWS:
                break
            if options.header_row is not None and r > options.header_row and not (total and total.search(cells[0])):
                break
    except BaseException:
        look.close()
        raise
    if not texts:
        look.close()
        return None

    def named(cells: list[str]) -> int:
        return len({normalise_header(c) for c in cells} & expected)

    if options.header_row is None:
        scores = [named(cells) for _, cells in texts[:HEADER_SEARCH_ROWS]]
        look.score = max(scores)
        header_row = texts[scores.index(look.score)][0]
    else:
        header_row = options.header_row
        look.score = next((named(cells) for r, cells in texts if r == header_row), 0)
    look.rows = any(r > header_row and not (total and total.search(cells[0])) for r, cells in texts)
    return look


def _data_sheet(looks: list[_SheetLook]) -> _SheetLook:
    """The visible sheet holding data, else the one whose header names most of the mapping's columns, else the
    first visible one; rejected when other sheets hold data too."""
    visible = [x for x in looks if not x.hidden]
    if not visible:
        hidden = ", ".join(repr(x.name) for x in looks[:10])
        raise _reject(
            "empty_file",
            "Buku kerja tidak berisi data"
            + (f" di lembar yang terlihat (lembar tersembunyi tidak dibaca: {hidden})." if hidden else "."),
            "The workbook contains no data"
            + (f" on a visible sheet (hidden sheets are not read: {hidden})." if hidden else "."),
        )
    best = max(x.score for x in visible)
    data = [x for x in looks if x.holds_data(best)]
    pick = next((x for x in data if not x.hidden), None) or next(x for x in visible if x.score == best)
    if pick in data and len(data) > 1:
        listed_id = ", ".join(repr(x.name) + (" (tersembunyi)" if x.hidden else "") for x in data[:10])
        listed_en = ", ".join(repr(x.name) + (" (hidden)" if x.hidden else "") for x in data[:10])
        raise _reject(
            "multiple_data_sheets",
            f"Buku kerja ini berisi data di {len(data)} lembar: {listed_id}. Setiap berkas dibaca dari satu lembar "
            "saja, jadi berkas ini tidak diproses agar tidak ada baris yang terlewat. Kirim setiap lembar sebagai "
            "berkas tersendiri, atau minta petugas teknis menetapkan lembar yang dibaca (read.sheet) di pemetaan "
            "instansi.",
            f"This workbook holds data on {len(data)} sheets: {listed_en}. A file is read from one sheet only, so "
            "this one was not processed rather than leave rows unread. Send each sheet as a file of its own, or ask "
            "the engineer to set the sheet to read (read.sheet) in the agency's mapping.",
        )
    return pick


def _read_workbook(
    name: str, scan: _SheetScan, rows_iter: Cells, options: ReadOptions, expected: set[str], header_only: bool = False
) -> ReadResult:
    merges = sorted(m for m in scan.merges if (m[2] - m[0] + 1) * (m[3] - m[1] + 1) > 1)
    warnings: list[Bilingual] = []
    formula_missing = scan.formula_missing
    long_numbers: dict[int, list[int]] = {}

    pending = list(merges)
    active: list[tuple[int, int, int, int]] = []
    anchors: dict[tuple[int, int], Any] = {}

    def text_row(r: int, cells: dict[int, Any]) -> dict[int, str]:
        nonlocal pending, active
        while pending and pending[0][0] <= r:
            active.append(pending.pop(0))
        if active:
            active = [m for m in active if m[2] >= r]
            for m in active:
                if m[0] == r:
                    anchors[(m[0], m[1])] = cells.get(m[1])
                v = anchors.get((m[0], m[1]))
                if v is not None:
                    for c in range(m[1], min(m[3], m[1] + 20_000) + 1):
                        if (r, c) != (m[0], m[1]):
                            cells[c] = v
        out: dict[int, str] = {}
        for c, v in cells.items():
            kind = type(v)
            if kind is str:  # most cells, then whole numbers and dates: what _excel_text gives, quicker
                if v:
                    out[c] = v
                continue
            if kind is float and v.is_integer() and -1e15 < v < 1e15:
                out[c] = str(int(v))
                continue
            if kind is date:
                out[c] = v.isoformat()
                continue
            s, long = _excel_text(v)
            if s is not None:
                out[c] = s
                if long:
                    long_numbers.setdefault(c, []).append(r)
        return out

    head: list[tuple[int, dict[int, str]]] = []
    header_row: int | None = options.header_row
    for r, cells in rows_iter:
        row = text_row(r, cells)
        if row and any(v.strip() for v in row.values()):
            head.append((r, row))
        if header_row is None and len(head) >= HEADER_SEARCH_ROWS:
            break
        if header_row is not None and r >= header_row and len(head) >= 1:
            break
    if not head:
        raise _reject("empty_file", "Lembar ini tidak berisi data.", "This sheet contains no data.")
    if header_row is None:
        as_lists = [(r, [row.get(c) for c in range(1, max(row) + 1)]) for r, row in head]
        header_row = head[_find_header(as_lists, expected)][0]
    hdr = next((row for r, row in head if r == header_row), {})
    if not hdr:
        raise _reject(
            "no_data_rows",
            f"Baris kepala kolom {header_row} kosong atau tidak ada di lembar ini.",
            f"Header row {header_row} is empty or not in this sheet.",
        )
    width = max(hdr)
    _check_columns(width, options)

    # rows after the header: the buffered ones, then the rest of the sheet; held as Python strings for
    # XLSX_BLOCK_ROWS rows at most, then as Arrow columns (100,009 rows of 16 columns: peak RSS 434 -> 332 MB)
    data_rows: list[int] = []
    data_cells: list[dict[int, str]] = []
    blocks: list[tuple[int, list[pa.Array]]] = []  # rows, columns 1.. as wide as the rows so far
    max_width = width

    def flush() -> None:
        if data_cells:
            cols = [pa.array([row.get(c) for row in data_cells], pa.string()) for c in range(1, max_width + 1)]
            blocks.append((len(data_cells), cols))
            data_cells.clear()

    def take(r: int, row: dict[int, str]) -> None:
        nonlocal max_width
        if row:
            top = max(row)
            if top > max_width:
                max_width = top
                _check_columns(max_width, options)
        data_rows.append(r)
        data_cells.append(row)
        if len(data_cells) >= XLSX_BLOCK_ROWS:
            flush()

    for r, row in head:
        if r > header_row:
            take(r, row)
    last = head[-1][0]
    for r, cells in rows_iter:
        row = text_row(r, cells)
        if r > header_row and r > last and any(v.strip() for v in row.values()):
            take(r, row)
    if data_rows:
        n_blank = data_rows[-1] - header_row - len(data_rows)
        if n_blank > 0:
            warnings.append(Bilingual(f"{n_blank} baris kosong dilewati.", f"{n_blank} blank rows were skipped."))

    raw_header = [hdr.get(c) for c in range(1, max_width + 1)]
    cells = [(h or "").strip() or None for h in raw_header]
    names, name_warnings = _make_names(cells, quote=_recognised(cells, expected))
    warnings += name_warnings
    flush()
    columns = {
        nm: pa.chunked_array(
            [cols[c - 1] if c <= len(cols) else pa.nulls(n, pa.string()) for n, cols in blocks], pa.string()
        ).combine_chunks()
        for c, nm in enumerate(names, 1)
    }
    columns[SOURCE_ROW] = pa.array(data_rows, pa.int64())
    table = pa.table(columns)
    unnamed = {nm for nm, h in zip(names, raw_header, strict=True) if not (h or "").strip()}
    table, names = _drop_unnamed_empty(table, names, unnamed)
    if max_width > width and any(n in unnamed for n in names):
        extra = [n for n in names if n in unnamed]
        warnings.append(
            Bilingual(
                f"Ada data di kolom tanpa kepala kolom: {', '.join(extra[:10])}.",
                f"There is data in columns without a header: {', '.join(extra[:10])}.",
            )
        )
    if formula_missing:
        shown = ", ".join(formula_missing[:10])
        warnings.append(
            Bilingual(
                f"{len(formula_missing)} sel rumus tidak menyimpan nilai hasil ({shown}) dan dibaca kosong. "
                "Buka berkas di Excel, biarkan rumus dihitung, lalu simpan lagi.",
                f"{len(formula_missing)} formula cells have no saved value ({shown}) and are read as empty. "
                "Open the file in Excel, let it calculate, and save it again.",
            )
        )
    for c, rows in sorted(long_numbers.items()):
        col = names[c - 1] if c - 1 < len(names) else f"column_{c}"
        warnings.append(
            Bilingual(
                f"Kolom {col!r}: {len(rows)} sel berisi angka lebih dari 15 digit (mis. baris {rows[0]}); "
                "Excel hanya menyimpan 15 digit, sehingga digit terakhir bisa salah. Format kolom NIK/paspor "
                "sebagai Teks.",
                f"Column {col!r}: {len(rows)} cells hold numbers of more than 15 digits (e.g. row "
                f"{rows[0]}); "
                "Excel keeps only 15 digits, so the last digits may be wrong. Format NIK/passport columns as "
                "Text.",
            )
        )
    table, issue_table = _finish(table, [], options, warnings, require_rows=not header_only)
    return ReadResult(
        table=table,
        header=names,
        header_row=header_row,
        format="xlsx",
        sheet=name,
        row_issues=issue_table,
        warnings=warnings,
    )


# --------------------------------------------------------------------------------------------- JSON


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, str | None], names: dict[str, dict]) -> None:
    """`names` keeps each prefix's dotted names, which repeat in every record; plain strings are tested for
    first. The demo's 57,000 records (16 fields in three objects): 1.06 -> 0.51 s under cProfile, the whole
    read 1.28-1.37 -> 1.06-1.08 s."""
    known = names.get(prefix)
    if known is None:
        known = names[prefix] = {}
    for k, v in obj.items():
        key = known.get(k)
        if key is None:
            key = known[k] = f"{prefix}{str(k).strip()}"
        kind = type(v)
        if kind is str:
            out[key] = v if v else None
        elif kind is _Num:
            out[key] = str.__str__(v)
        elif isinstance(v, dict):
            if v:
                _flatten(v, key + ".", out, names)
        elif isinstance(v, list):
            out[key] = _dump(v)
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        elif v is None or v == "":
            out[key] = None
        else:
            out[key] = str(v)


def _invalid_json(exc: json_stream.JsonSyntaxError) -> FileRejected:
    return _reject(
        "invalid_json",
        f"JSON tidak valid di baris {exc.line}, kolom {exc.column}: {exc.msg}.",
        f"Invalid JSON at line {exc.line}, column {exc.column}: {exc.msg}.",
    )


_Num = json_stream.Number


def _dump(v: Any) -> str:
    """JSON text of a nested value, numbers as written."""
    if isinstance(v, _Num):
        return str.__str__(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_dump(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_dump(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


JSON_BLOCK_RECORDS = 20_000  # records flattened into Arrow at a time, or fewer when they hold
JSON_BLOCK_CHARS = 16 << 20  # this much text: a block of long records is not held as Python strings
JSON_HOLD_BYTES = 128 << 20  # Arrow held from the first pass; past this, the file is read again in chunks


def _json_records(
    path: Path, encoding: str, members: Sequence[str], records_path: str | None
) -> Generator[tuple[int, Any], None, str | None]:
    """The file's records (json_stream.records), its errors turned into the officer's rejections."""
    with path.open(encoding=encoding, newline="") as f:
        try:
            return (yield from json_stream.records(f, members))
        except json_stream.JsonSyntaxError as exc:
            raise _invalid_json(exc) from None
        except json_stream.RecordsNotFound:
            raise _records_not_found(records_path) from None
        except RecursionError:
            raise _reject("invalid_json", "JSON terlalu dalam bersarang.", "The JSON is nested too deeply.") from None
        except UnicodeDecodeError:
            raise _reject(
                "unknown_encoding", "JSON harus berpengodean UTF-8.", "JSON must be encoded as UTF-8."
            ) from None


def _json_encoding(path: Path) -> str:
    with path.open("rb") as f:
        return json.detect_encoding(f.read(4))


def _json_kind(v: Any) -> str:
    if isinstance(v, list):
        return "array"
    if isinstance(v, _Num) or (isinstance(v, int | float) and not isinstance(v, bool)):
        return "number"
    return {str: "string", bool: "boolean", type(None): "null"}.get(type(v), type(v).__name__)


def _not_an_object(row: int, rec: Any) -> dict[str, Any]:
    """The record's JSON type, never its content: an array record is a worker's fields without their names
    (a NIK, a name), and the issue's value is shown on the officer's page."""
    return _issue(
        row,
        "read.not_an_object",
        _json_kind(rec),
        "Rekaman ini bukan objek JSON ({...}) sehingga kolomnya tidak dapat dibaca.",
        "This record is not a JSON object ({...}), so its fields cannot be read.",
    )


class _JsonBlocks:
    """Records flattened into Arrow JSON_BLOCK_RECORDS (or JSON_BLOCK_CHARS of text) at a time, with the issues
    of those records. A block has the fields known when it was made; `table()` fills fields first seen later
    with nulls."""

    def __init__(self) -> None:
        self.blocks: list[tuple[list[int], dict[str, pa.Array]]] = []
        self.issues: list[dict[str, Any]] = []
        self.rows: list[dict[str, str | None]] = []
        self.numbers: list[int] = []
        self.chars = 0
        self.nbytes = 0

    def add(self, row: int, rec: Any, flat: dict[str, str | None], keys: Iterable[str]) -> bool:
        """Whether this record completed a block."""
        if not isinstance(rec, dict):
            self.issues.append(_not_an_object(row, rec))
        self.rows.append(flat)
        self.numbers.append(row)
        self.chars += sum(map(len, filter(None, flat.values())))
        if len(self.rows) < JSON_BLOCK_RECORDS and self.chars < JSON_BLOCK_CHARS:
            return False
        self.close(keys)
        return True

    def close(self, keys: Iterable[str]) -> None:
        if self.rows:
            arrays = {k: pa.array([r.get(k) for r in self.rows], pa.string()) for k in keys}
            self.nbytes += sum(a.nbytes for a in arrays.values())
            self.blocks.append((self.numbers, arrays))
            self.rows, self.numbers, self.chars = [], [], 0

    def table(self, fields: dict[str, str]) -> pa.Table:
        """All blocks so far, as one table of `fields` (key -> column name); the blocks are let go."""
        columns = {
            name: pa.chunked_array(
                [arrays.get(k, pa.nulls(len(numbers), pa.string())) for numbers, arrays in self.blocks], pa.string()
            )
            for k, name in fields.items()
        }
        columns[SOURCE_ROW] = pa.chunked_array([pa.array(n, pa.int64()) for n, _ in self.blocks], pa.int64())
        self.blocks, self.nbytes = [], 0
        return pa.table(columns)


def _read_json(path: Path, options: ReadOptions) -> ReadResult:
    """One record at a time, never the whole document: the first pass finds the records and their fields,
    and what the officer must hear, before any row is handed out (as for CSV), holding them as Arrow. A file
    whose Arrow outgrows JSON_HOLD_BYTES is let go and read again on each `chunks()`. Before, the document
    was parsed whole: 570,000 records (245 MB) took 1.5 GB."""
    encoding = _json_encoding(path)
    members = options.records_path.split(".") if options.records_path else []
    keys: dict[str, None] = {}
    names: dict[str, dict] = {}
    n_records = n_blank = 0
    held: _JsonBlocks | None = _JsonBlocks()
    walk = _json_records(path, encoding, members, options.records_path)
    while True:
        try:
            row, rec = next(walk)
        except StopIteration as stop:
            member = stop.value
            break
        n_records += 1
        flat: dict[str, str | None] = {}
        if isinstance(rec, dict):
            _flatten(rec, "", flat, names)
            for k in flat:
                if k not in keys:
                    keys[k] = None
                    _check_columns(len(keys), options)
            if not any(v is not None and v.strip() for v in flat.values()):
                n_blank += 1
        if held is not None:
            held.add(row, rec, flat, keys)
            if held.nbytes > JSON_HOLD_BYTES:
                held = None
    if not n_records:
        raise _reject("no_data_rows", "JSON tidak berisi rekaman.", "The JSON holds no records.")
    if not keys:
        n_blank = 0  # no field at all: rows are not blank, they have nothing (the mapping says what is missing)
    warnings: list[Bilingual] = []
    if member is not None:
        warnings.append(Bilingual(f"Rekaman dibaca dari kunci '{member}'.", f"Records were read from key '{member}'."))
        members = [member]
    header, name_warnings = _make_names(list(keys))
    warnings += name_warnings
    _blank_warning(n_blank, warnings)
    if n_blank == n_records:
        raise _no_data_rows()
    fields = dict(zip(keys, header, strict=True))
    result = ReadResult(table=None, header=header, header_row=0, format="json", encoding=encoding, warnings=warnings)
    if held is not None:
        held.close(keys)
        table, _ = _drop_blank_rows(held.table(fields), {i["source_row"] for i in held.issues})
        return replace(result, table=table, row_issues=_issue_table(held.issues))

    def stream(rows: int, max_bytes: int | None, _warnings: list[Bilingual]) -> Iterator[Chunk]:
        return _stream_json(path, encoding, members, options.records_path, fields, rows, max_bytes)

    return replace(result, stream=stream)


def _stream_json(
    path: Path,
    encoding: str,
    members: Sequence[str],
    records_path: str | None,
    fields: dict[str, str],
    rows: int,
    max_bytes: int | None,
) -> Iterator[Chunk]:
    """The second pass: chunks of at most `rows` records and `max_bytes` (`_rows_within`), blank ones left out."""
    names: dict[str, dict] = {}
    blocks = _JsonBlocks()
    buffer = pa.schema([*((n, pa.string()) for n in fields.values()), (SOURCE_ROW, pa.int64())]).empty_table()
    issues: list[dict[str, Any]] = []

    def take_blocks() -> None:
        nonlocal buffer, issues
        table, _ = _drop_blank_rows(blocks.table(fields), {i["source_row"] for i in blocks.issues})
        buffer = pa.concat_tables([buffer, table])
        issues, blocks.issues = issues + blocks.issues, []

    for row, rec in _json_records(path, encoding, members, records_path):
        flat: dict[str, str | None] = {}
        if isinstance(rec, dict):
            _flatten(rec, "", flat, names)
        if blocks.add(row, rec, flat, fields):
            take_blocks()
            while (take := _rows_within(buffer, rows, max_bytes)) == rows or take < buffer.num_rows:
                chunk, buffer, issues = _split_chunk(buffer, issues, take)
                yield chunk
    blocks.close(fields)
    take_blocks()
    while buffer.num_rows:
        chunk, buffer, issues = _split_chunk(buffer, issues, _rows_within(buffer, rows, max_bytes))
        yield chunk


def _records_not_found(records_path: str | None) -> FileRejected:
    if records_path:
        return _reject(
            "json_records_not_found",
            f"Tidak ada daftar rekaman di '{records_path}' dalam JSON.",
            f"There is no array of records at '{records_path}' in the JSON.",
        )
    return _reject(
        "json_records_not_found",
        "JSON harus berupa daftar rekaman ([{...}, {...}]), satu objek per baris, atau objek yang memuat "
        "satu daftar rekaman.",
        "The JSON must be an array of records ([{...}, {...}]), one object per line, or an object holding "
        "one array of records.",
    )

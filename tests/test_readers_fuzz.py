"""Property: whatever bytes an agency drops, read_file returns a ReadResult or raises FileRejected."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import openpyxl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import ReadOptions
from pipelines.problems import ISSUE_SCHEMA, FileRejected
from pipelines.readers import SOURCE_ROW, ReadResult, read_file

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _xlsx_bytes() -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in (["Laporan"], [], ["NIK", "Nama", "Tanggal"], ["0012", "Ani", 45000], ["0013", "Budi", "=A4"]):
        ws.append(row)
    ws.merge_cells("A1:C1")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


SEEDS = [
    b'NIK,Nama,Alamat\n0012,Ani,"Jl. A\nNo 5"\n0013,Budi\nTotal,,2\n',
    "NIK;Nama\n001;José\n".encode("cp1252"),
    "NIK\tNama\n001\tSiti\n".encode("utf-16"),
    b'[{"nik": "001", "w": {"n": 1}}, 5, {"nik": 3201234567890123}]',
    b'{"nik": "001"}\n{"nik": "002"}\n',
    b'{"data": [{"nik": "001"}]}',
    _xlsx_bytes(),
]


DEFAULT = ReadOptions()


def _check(data: bytes, options: ReadOptions = DEFAULT) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "drop.csv"
        p.write_bytes(data)
        try:
            r = read_file(p, options, expected_headers=["nik", "nama"])
        except FileRejected as exc:
            assert exc.code and exc.message.id and exc.message.en
            return
    assert isinstance(r, ReadResult)
    assert r.table.num_rows > 0
    assert r.table.schema.field(SOURCE_ROW).type == pa.int64()
    assert all(f.type == pa.string() for f in r.table.schema if f.name != SOURCE_ROW)
    assert r.row_issues.schema == ISSUE_SCHEMA
    assert r.header == [c for c in r.table.column_names if c != SOURCE_ROW]


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_are_read_or_rejected(data):
    _check(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b'"', b",", b"\n", b"\x00", b"{", b"\xff\xfe", b"\r", b";"]))
        elif data:
            del data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_valid_files_are_read_or_rejected(data):
    _check(data)


@settings(max_examples=40, deadline=None)
@given(mutated(), st.sampled_from([";", ",", "|"]), st.sampled_from([None, 1, 3]))
def test_mutated_files_with_configured_options_are_read_or_rejected(data, delimiter, header_row):
    _check(data, ReadOptions(delimiter=delimiter, header_row=header_row))

"""CSV rows are streamed a chunk at a time: the chunks hold exactly the rows (numbered as in the file) and
reader issues a whole read holds, wherever ragged, blank, multi-line and total rows fall."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines import readers
from pipelines.config import ReadOptions
from pipelines.problems import FileRejected

OPTS = ReadOptions()


def _hostile_csv(n: int, seed: int, late_value_in_headerless_column: bool) -> tuple[str, list[dict], set[int]]:
    """A CSV whose awkward rows land anywhere, with the rows a whole-file reader must give back (computed
    here with the csv module, independently of pyarrow) and the rows that must carry a ragged-row issue."""
    rng = random.Random(seed)
    lines = ["NIK,Nama,Negara,,"]
    expected: list[dict] = []
    ragged: set[int] = set()
    record = 1  # the header is record 1; source rows count records, not physical lines
    for i in range(n):
        record += 1
        roll = rng.random()
        extra = "x" if late_value_in_headerless_column and i == n - 40 else ""
        if roll < 0.03:
            lines.append("")  # a blank line: skipped
            continue
        if roll < 0.06:
            lines.append(f"{i:04d},Tanpa negara")  # too few fields
            expected.append({"NIK": f"{i:04d}", "Nama": "Tanpa negara", "Negara": None, "column_4": None})
            ragged.add(record)
        elif roll < 0.08:
            lines.append(f"{i:04d},Lebih,Taiwan,,,extra")  # too many fields
            expected.append({"NIK": f"{i:04d}", "Nama": "Lebih", "Negara": "Taiwan", "column_4": None})
            ragged.add(record)
        elif roll < 0.11:
            lines.append(f'{i:04d},"Baris\nganda",Malaysia,{extra},')  # a cell over two physical lines
            expected.append(
                {"NIK": f"{i:04d}", "Nama": "Baris\nganda", "Negara": "Malaysia", "column_4": extra or None}
            )
        else:
            lines.append(f"{i:04d},Nama {i},Hong Kong,{extra},")
            expected.append({"NIK": f"{i:04d}", "Nama": f"Nama {i}", "Negara": "Hong Kong", "column_4": extra or None})
        expected[-1]["_source_row"] = record
    lines += ["Jumlah,,,,", ""]
    text = "\n".join(lines)
    assert next(csv.reader(io.StringIO(text))) == ["NIK", "Nama", "Negara", "", ""]
    if not late_value_in_headerless_column:
        for row in expected:
            row.pop("column_4")
    return text, expected, ragged


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("late_value", [False, True])
def test_streamed_chunks_hold_exactly_the_rows_and_issues_of_the_file(seed, late_value, tmp_path, monkeypatch):
    text, expected, ragged = _hostile_csv(3000, seed, late_value)
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(readers, "STREAM_BLOCK_BYTES", 4096)  # many parser blocks, ragged rows across them
    read = readers.open_file(path, OPTS)
    assert read.table is None, "CSV rows are streamed, not read up front"
    chunks = list(read.chunks(97))
    assert all(t.num_rows <= 97 for t, _ in chunks) and len(chunks) > 20
    table = pa.concat_tables([t for t, _ in chunks])
    assert table.to_pylist() == expected
    issues = pa.concat_tables([i for _, i in chunks])
    assert sorted(issues["source_row"].to_pylist()) == sorted(ragged)
    for t, i in chunks:  # each issue travels with its row
        assert set(i["source_row"].to_pylist()) <= set(t["_source_row"].to_pylist())
    assert any("blank rows were skipped" in w.en for w in read.warnings)
    assert any("'Jumlah'" in w.en for w in read.warnings)


def test_streaming_again_reads_the_same_rows_without_repeating_warnings(tmp_path):
    text, expected, _ = _hostile_csv(500, 4, False)
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8")
    read = readers.open_file(path, OPTS)
    first = pa.concat_tables([t for t, _ in read.chunks(50)])
    warnings = list(read.warnings)
    again = pa.concat_tables([t for t, _ in read.chunks(50, [])])
    assert first.equals(again) and first.to_pylist() == expected
    assert read.warnings == warnings


def test_a_file_of_only_a_header_and_totals_is_rejected_when_the_stream_ends(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("NIK,Nama,Negara\n\nJumlah,,\n", encoding="utf-8")
    read = readers.open_file(path, OPTS)
    with pytest.raises(FileRejected) as err:
        list(read.chunks(10))
    assert err.value.code == "no_data_rows"


def test_invalid_utf8_past_the_sample_is_found_before_any_row_is_used(tmp_path):
    path = tmp_path / "f.csv"
    body = "".join(f"{i:06d},Nama {i},Taiwan\n" for i in range(120_000))  # well past the 1 MiB sample
    path.write_bytes(b"NIK,Nama,Negara\n" + body.encode() + "Zo\xeb,Ani,Jepang\n".encode("cp1252"))
    read = readers.open_file(path, OPTS)
    assert read.encoding == "cp1252"  # detected and verified on the whole file before streaming
    assert pa.concat_tables([t for t, _ in read.chunks(50_000)])["Nama"][-1].as_py() == "Ani"


def test_read_file_is_the_whole_stream(tmp_path):
    text, expected, ragged = _hostile_csv(300, 5, True)
    path = Path(tmp_path / "f.csv")
    path.write_text(text, encoding="utf-8")
    whole = readers.read_file(path, OPTS)
    assert whole.table.to_pylist() == expected
    assert sorted(whole.row_issues["source_row"].to_pylist()) == sorted(ragged)


def test_total_rows_are_recognised_even_when_a_chunk_would_end_among_them(tmp_path):
    path = tmp_path / "f.csv"
    data = "".join(f"{i:04d},Nama {i},Taiwan\n" for i in range(10))
    path.write_text("NIK,Nama,Negara\n" + data + "Jumlah,,10\nTotal,,10\nGrand total,,10\n", encoding="utf-8")
    chunks = list(readers.open_file(path, OPTS).chunks(11))
    assert [r["NIK"] for t, _ in chunks for r in t.to_pylist()] == [f"{i:04d}" for i in range(10)]

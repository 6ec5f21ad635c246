"""Memory follows the bytes of a chunk, not its row count: rows with long cells (an officer's notes) come in
fewer rows at a time, and a row longer than pyarrow's parser block is read, not mistaken for a broken quote."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
from memory_probe import PEAK_SINCE_NOW

from pipelines import readers
from pipelines.config import ReadOptions
from pipelines.problems import FileRejected

OPTS = ReadOptions()
NOTE_LENGTHS = [0, 12, 3_000, 40_000]  # most notes short, some long


def _records(n: int, seed: int) -> list[dict[str, str | None]]:
    rng = random.Random(seed)
    notes = ["catatan " * (rng.choice(NOTE_LENGTHS) // 8) or None for _ in range(n)]
    return [{"NIK": f"{3201014101900000 + i}", "Nama": f"Nama {i}", "Keterangan": note} for i, note in enumerate(notes)]


def _write_csv(path: Path, records: list[dict]) -> Path:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def _expected(records: list[dict]) -> list[dict]:
    return [{**r, "_source_row": i} for i, r in enumerate(records, start=2)]


def _json_rows(chunks: list[readers.Chunk]) -> list[dict]:
    """JSON has no header row: its records count from 1. The same rows, numbered as a CSV's are."""
    return [{**r, "_source_row": r["_source_row"] + 1} for t, _ in chunks for r in t.to_pylist()]


@pytest.fixture(params=["csv", "json-held", "json-streamed"])
def wide_file(request, tmp_path, monkeypatch) -> tuple[readers.ReadResult, list[dict], str]:
    records = _records(600, seed=3)
    if request.param == "csv":
        path = _write_csv(tmp_path / "wide.csv", records)
    else:
        path = tmp_path / "wide.json"
        path.write_text(json.dumps(records), encoding="utf-8")
        if request.param == "json-streamed":
            monkeypatch.setattr(readers, "JSON_HOLD_BYTES", 0)
            monkeypatch.setattr(readers, "JSON_BLOCK_CHARS", 64 << 10)  # the first block closes on its text
    read = readers.open_file(path, OPTS)
    assert (read.table is None) == (request.param != "json-held")
    return read, _expected(records), request.param


def test_chunks_hold_no_more_bytes_than_the_bound_unless_one_row_is_larger(wide_file):
    read, expected, kind = wide_file
    bound = 256 << 10
    chunks = list(read.chunks(200, max_bytes=bound))
    assert all(t.nbytes <= bound or t.num_rows == 1 for t, _ in chunks)
    assert len(chunks) >= 20  # 6.5 MB of notes: many more chunks than the 3 the row count asks for
    got = [r for t, _ in chunks for r in t.to_pylist()] if kind == "csv" else _json_rows(chunks)
    assert got == expected


def test_a_row_larger_than_the_bound_is_a_chunk_of_its_own(tmp_path):
    records = [{"NIK": "3201014101900001", "Nama": "Ani", "Keterangan": "x" * 100_000}, *_records(50, seed=4)]
    read = readers.open_file(_write_csv(tmp_path / "f.csv", records), OPTS)
    chunks = list(read.chunks(1_000, max_bytes=10_000))
    assert chunks[0][0].num_rows == 1 and chunks[0][0]["Keterangan"][0].as_py() == "x" * 100_000
    assert sum(t.num_rows for t, _ in chunks) == 51


def test_without_a_byte_bound_chunks_follow_the_row_count(wide_file):
    read, _, _ = wide_file
    assert [t.num_rows for t, _ in read.chunks(200)] == [200, 200, 200]


def test_rows_longer_than_a_parser_block_are_read_in_larger_blocks(tmp_path, monkeypatch):
    """The file is read again from where it stopped: no row twice, no ragged row reported twice."""
    monkeypatch.setattr(readers, "STREAM_BLOCK_BYTES", 4096)
    records = _records(400, seed=5)
    text = _write_csv(tmp_path / "f.csv", records).read_text(encoding="utf-8").splitlines(keepends=True)
    text[300] = text[300].rstrip("\n") + ",lebih\n"  # a ragged row after the first long ones
    path = tmp_path / "ragged.csv"
    path.write_text("".join(text), encoding="utf-8")
    assert max(map(len, text)) > 8 * 4096  # longer than a block read again once
    chunks = list(readers.open_file(path, OPTS).chunks(97))
    assert [r for t, _ in chunks for r in t.to_pylist()] == _expected(records)
    issues = pa.concat_tables([i for _, i in chunks])
    assert issues["source_row"].to_pylist() == [301] and issues["rule_id"].to_pylist() == ["read.ragged_row"]


def test_a_row_longer_than_the_largest_block_is_rejected_naming_both_causes(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "STREAM_BLOCK_BYTES", 128 << 10)
    monkeypatch.setattr(readers, "MAX_BLOCK_BYTES", 1 << 20)
    records = [*_records(20, seed=6), {"NIK": "3201014101900099", "Nama": "Ani", "Keterangan": "x" * (6 << 20)}]
    read = readers.open_file(_write_csv(tmp_path / "f.csv", records), OPTS)
    with pytest.raises(FileRejected) as err:
        list(read.chunks(1_000))
    assert err.value.code == "unclosed_quote"
    assert "longer than 1 MiB" in err.value.message.en and "lebih panjang dari 1 MiB" in err.value.message.id


def test_streamed_json_of_long_records_holds_a_bounded_block_of_text(tmp_path, monkeypatch):
    """Records are flattened into Arrow when a block holds JSON_BLOCK_CHARS of text, not only after
    JSON_BLOCK_RECORDS records: 300 notes of 40,000 characters (12 MB) are never in Python at once."""
    import tracemalloc

    from pipelines import json_stream

    monkeypatch.setattr(readers, "JSON_HOLD_BYTES", 0)
    monkeypatch.setattr(readers, "JSON_BLOCK_CHARS", 256 << 10)
    monkeypatch.setattr(json_stream, "BLOCK_CHARS", 64 << 10)
    note = "catatan " * 5_000
    path = tmp_path / "long.json"
    path.write_text(json.dumps([{"nik": f"32{i:014d}", "catatan": note} for i in range(300)]), encoding="utf-8")
    warm = tmp_path / "warm.json"
    warm.write_text(json.dumps([{"nik": "3200000000000001", "catatan": note}] * 3), encoding="utf-8")
    list(readers.open_file(warm, OPTS).chunks(10, max_bytes=1 << 20))  # modules imported on first use
    tracemalloc.start()
    try:
        read = readers.open_file(path, OPTS)
        seen = [t.num_rows for t, _ in read.chunks(1_000, max_bytes=1 << 20)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak
    assert sum(seen) == 300 and read.table is None


def test_opening_a_large_csv_does_not_hold_the_file_in_memory(tmp_path):
    """open_file scans the whole file (NUL bytes, blank headerless columns) before any row is read. A memory map
    counted every page it touched in the process's RSS; the scan now reads a block at a time."""
    import subprocess
    import sys

    path = tmp_path / "large.csv"
    row = "3201014101900001,Nama Pekerja,Taiwan," + "catatan " * 20 + "\n"
    with path.open("w", encoding="utf-8") as f:
        f.write("NIK,Nama,Negara,Keterangan\n")
        for _ in range(40):
            f.write(row * 20_000)
    script = (
        "from pathlib import Path; import sys; from pipelines import readers; "
        f"from pipelines.config import ReadOptions\n{PEAK_SINCE_NOW}\n"
        "readers.open_file(Path(sys.argv[1]), ReadOptions()); print(grown())"
    )
    grew = int(subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[-1])  # fmt: skip
    assert path.stat().st_size > 150 << 20
    assert grew < path.stat().st_size // 2, grew  # the memory map: the whole file; reading blocks: ~60 MB

"""A file in another encoding than its agency registered, through process_file: read by detection, or rejected
with its reason and a report, never a crash that leaves the file archived and failing again at every run."""

from __future__ import annotations

import json

from pipelines import config, inbox
from pipelines.keys import load_secret
from pipelines.ledger import Ledger
from pipelines.process import process_file
from pipelines.settings import Zones

AGENCY = "disnaker_kab_cilacap"  # registers UTF-16 (with a BOM), tab-separated, the header on row 1
HEADER = ["No", "Nama", "NIK", "L/P", "Tempat, Tgl Lahir", "Pendidikan", "Negara Tujuan", "Jabatan", "Nama PPTKIS",
          "Tgl Berangkat", "Lama Kontrak"]  # fmt: skip
ROWS = [
    ["1", "Sri Contoh", "3301015507950001", "P", "Cilacap, 15 Juli 1995", "SLTA", "Taiwan", "Caregiver",
     "PT Surya Global Persada", "4 Januari 2024", "24"],
    ["2", "Budi Contoh", "3301011203900002", "L", "Cilacap, 12 Maret 1990", "SLTP", "Malaysia", "Plantation Worker",
     "PT Surya Global Persada", "17 Agustus 2024", "24"],
]  # fmt: skip


def _tab_separated(rows: list[list[str]]) -> str:
    return "".join("\t".join(row) + "\r\n" for row in rows)


def _process(tmp_path, key_file, content: bytes):
    zones = Zones(tmp_path / "home").ensure()
    ledger = Ledger(zones.ledger_db)
    path = zones.inbox / AGENCY / "register_utf8.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    claim = inbox.claim(zones, ledger, AGENCY, path)
    outcome = process_file(zones, ledger, claim.entry, config.agency(AGENCY), load_secret(key_file))
    entry = ledger.get(claim.entry.sha256)
    facts = json.loads(next((zones.reports / AGENCY).glob(f"*_{entry.sha256[:8]}/report.json")).read_text("utf-8"))
    return entry, outcome, facts


def test_a_utf8_register_where_utf16_is_registered_is_read_by_detection(tmp_path, key_file):
    entry, outcome, facts = _process(tmp_path, key_file, _tab_separated([HEADER, *ROWS]).encode("utf-8"))
    assert outcome.status == entry.status == "processed"
    assert (entry.rows_read, entry.rows_accepted) == (2, 2)
    assert any("encoding_mismatch" in w["en"] and "detection" in w["en"] for w in facts["warnings"])


def test_a_utf8_file_that_detection_cannot_map_either_is_rejected_as_an_encoding_mismatch(tmp_path, key_file):
    content = _tab_separated([["Kolom A", "Kolom B"], ["1", "2"]]).encode("utf-8")
    entry, outcome, facts = _process(tmp_path, key_file, content)
    assert outcome.status == entry.status == facts["status"] == "rejected"
    assert entry.reason_code == "encoding_mismatch"
    assert "utf-16" in facts["reason"]["en"] and facts["reason"]["id"]

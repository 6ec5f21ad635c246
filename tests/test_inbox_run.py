"""What a run does with an inbox that changes under it, and what it says about files it does not read."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console

from pipelines import cli, flows, inbox, status
from pipelines.ledger import Ledger
from pipelines.settings import Zones


def _zones(tmp_path: Path) -> tuple[Zones, Ledger]:
    zones = Zones(tmp_path / "home").ensure()
    return zones, Ledger(zones.ledger_db)


def _drop(zones: Zones, relative: str, content: bytes, age: float = 60) -> Path:
    path = zones.inbox / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    old = time.time() - age
    os.utime(path, (old, old))
    return path


def test_a_file_the_officer_deletes_while_the_run_claims_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    first = _drop(zones, "bp2mi_siskop2mi/a.csv", b"x\n1\n", age=90)
    second = _drop(zones, "bp2mi_siskop2mi/b.csv", b"x\n2\n", age=80)
    _drop(zones, "bp2mi_siskop2mi/c.csv", b"x\n3\n", age=70)
    real_claim = inbox.claim

    def claim(zones, ledger, agency, path):
        claimed = real_claim(zones, ledger, agency, path)
        if path == first:
            second.unlink()  # sent by mistake: the officer takes it back
        return claimed

    monkeypatch.setattr(inbox, "claim", claim)
    summary = flows.RunSummary()
    flows._claim_inbox(zones, ledger, 0, summary)
    assert (summary.received, summary.unstable, summary.errors) == (2, 0, 0)
    assert sorted(e.file_name for e in ledger.files()) == ["a.csv", "c.csv"]


def test_a_run_names_the_sub_folders_whose_files_it_does_not_read(tmp_path):
    zones, ledger = _zones(tmp_path)
    _drop(zones, "p3mi_mitra_sejahtera/Kiriman Januari/laporan.csv", b"x\n1\n")
    _drop(zones, "p3mi_mitra_sejahtera/Kiriman Januari/laporan 2.csv", b"x\n2\n")
    summary = flows.RunSummary()
    flows._claim_inbox(zones, ledger, 0, summary)
    assert summary.received == 0 and ledger.files() == []
    assert summary.as_dict()["in_subfolders"] == {"p3mi_mitra_sejahtera/Kiriman Januari": 2}
    assert (zones.inbox / "p3mi_mitra_sejahtera" / "Kiriman Januari" / "laporan.csv").exists()


def test_the_run_summary_tells_that_files_in_sub_folders_are_not_read(tmp_path, capsys):
    summary = flows.RunSummary(in_subfolders={"p3mi_mitra_sejahtera/Kiriman [Januari]": 2}).as_dict()
    cli.print_summary(Zones(tmp_path / "home"), summary)
    out = " ".join(capsys.readouterr().out.split())
    assert "Berkas di dalam sub-folder tidak dibaca" in out
    assert "Files in sub-folders are not read; put them directly in inbox/<agency>/" in out
    assert "p3mi_mitra_sejahtera/Kiriman [Januari] (2)" in out


def test_sdmi_status_names_the_sub_folders_whose_files_are_not_read(tmp_path):
    zones, _ = _zones(tmp_path)
    _drop(zones, "p3mi_mitra_sejahtera/Kiriman Januari/laporan.csv", b"x\n1\n")
    info = status.collect(zones)
    assert info["inbox"] == {} and info["in_subfolders"] == {"p3mi_mitra_sejahtera/Kiriman Januari": 1}
    console = Console(record=True, width=400)
    status.render(info, console)
    text = console.export_text()
    assert "waiting in inbox: none" in text
    assert "Files in sub-folders are not read; put them directly in inbox/<agency>/: " in text
    assert "p3mi_mitra_sejahtera/Kiriman Januari (1)" in text

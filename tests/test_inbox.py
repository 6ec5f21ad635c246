import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from pipelines import inbox, settings
from pipelines.ledger import Ledger
from pipelines.settings import Zones


def _zones(tmp_path: Path) -> tuple[Zones, Ledger]:
    zones = Zones(tmp_path / "home").ensure()
    return zones, Ledger(zones.ledger_db)


def _drop(zones: Zones, agency: str, name: str, content: bytes, age: float = 60) -> Path:
    path = zones.inbox / agency / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    old = time.time() - age
    os.utime(path, (old, old))
    return path


def test_claim_archives_by_content_hash_and_removes_the_file_from_the_inbox(tmp_path):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"x,y\n1,2\n")
    claim = inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    assert claim.kind == "new"
    assert not path.exists()
    raw = zones.home / claim.entry.raw_path
    assert raw.read_bytes() == b"x,y\n1,2\n"
    assert raw.name == settings.sha256_file(raw) + ".csv"
    assert claim.entry.status == "archived"


def test_same_content_under_a_new_name_is_a_recorded_duplicate_and_leaves_the_inbox(tmp_path):
    zones, ledger = _zones(tmp_path)
    first = inbox.claim(zones, ledger, "bp2mi_siskop2mi", _drop(zones, "bp2mi_siskop2mi", "a.csv", b"same"))
    again = _drop(zones, "bp2mi_siskop2mi", "copy of a.csv", b"same")
    second = inbox.claim(zones, ledger, "bp2mi_siskop2mi", again)
    assert second.kind == "duplicate"
    assert second.entry.sha256 == first.entry.sha256
    assert not again.exists()
    assert [r["outcome"] for r in ledger.receipts()] == ["new", "duplicate"]
    assert len(ledger.files()) == 1


def test_partial_and_hidden_names_are_never_candidates(tmp_path):
    zones, _ = _zones(tmp_path)
    for name in ("x.part", "x.tmp", "~$book.xlsx", ".hidden.csv", "y.crdownload"):
        _drop(zones, "bp2mi_siskop2mi", name, b"1")
    _drop(zones, "bp2mi_siskop2mi", "ok.csv", b"1")
    found = inbox.waiting_files(zones)
    assert [p.name for p in found["bp2mi_siskop2mi"]] == ["ok.csv"]


def test_a_file_still_being_written_by_another_process_is_not_stable(tmp_path):
    zones, _ = _zones(tmp_path)
    target = zones.inbox / "bp2mi_siskop2mi" / "slow.csv"
    target.parent.mkdir(parents=True)
    slow_writer = (
        "import sys, time\n"
        "f = open(sys.argv[1], 'wb')\n"
        "for i in range(30):\n"
        "    f.write(b'row\\n'); f.flush(); time.sleep(0.1)"
    )
    writer = subprocess.Popen([sys.executable, "-c", slow_writer, str(target)])
    try:
        time.sleep(0.5)
        assert target.exists()
        assert not inbox.is_stable(target, stable_seconds=1.0)
    finally:
        writer.wait(timeout=10)
    assert not inbox.is_stable(target, stable_seconds=1.0)
    time.sleep(1.1)
    assert inbox.is_stable(target, stable_seconds=1.0)


def test_recover_forgets_a_claim_that_never_reached_raw(tmp_path):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"abc")
    ledger.claim(settings.sha256_file(path), "bp2mi_siskop2mi", "a.csv", 3)  # crash right after the claim
    assert inbox.recover(zones, ledger) == []
    assert ledger.files() == []
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", path).kind == "new"


def test_file_archived_but_not_removed_from_inbox_is_resumed_not_duplicated(tmp_path):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"abc")
    keep = path.read_bytes()
    inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    path.write_bytes(keep)  # as if the crash came before the unlink
    claim = inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    assert claim.kind == "resumed"
    assert [r["outcome"] for r in ledger.receipts()] == ["new"]


def test_ledger_sequence_orders_files_as_they_are_claimed(tmp_path):
    _, ledger = _zones(tmp_path)
    a, _ = ledger.claim("a" * 64, "x_y", "a.csv", 1)
    b, _ = ledger.claim("b" * 64, "x_y", "b.csv", 1)
    assert (a.seq, b.seq) == (1, 2)
    assert a.batch_id == "x_y-" + "a" * 16


def test_a_file_replaced_while_it_is_copied_is_left_for_the_next_pass(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"first version")
    real_copy = inbox._copy_aside

    def replaced_meanwhile(source, folder):
        copied = real_copy(source, folder)
        replacement = source.with_name("a.csv.part")
        replacement.write_bytes(b"first version")  # the same bytes in a new file renamed over the name
        os.replace(replacement, source)
        return copied

    monkeypatch.setattr(inbox, "_copy_aside", replaced_meanwhile)
    claim = inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    assert claim.kind == "unstable"
    assert path.exists() and ledger.files() == []
    assert not [p for p in zones.raw.rglob("*") if p.is_file()]


def test_a_claim_reads_the_file_once_and_archives_the_bytes_it_hashed(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    content = os.urandom(3 * inbox.CHUNK + 17)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", content)
    opened: list[str] = []
    real_open = Path.open

    def counting_open(self, mode="r", *args, **kwargs):
        if "r" in mode and self == path:
            opened.append(mode)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    claim = inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    monkeypatch.undo()
    assert claim.kind == "new" and opened == ["rb"]
    raw = zones.home / claim.entry.raw_path
    assert raw.read_bytes() == content
    assert claim.entry.sha256 == hashlib.sha256(content).hexdigest() == settings.sha256_file(raw)
    assert not list(zones.raw.rglob(".tmp-*"))


def test_recover_removes_a_copy_left_half_made(tmp_path):
    zones, ledger = _zones(tmp_path)
    half = zones.raw / "bp2mi_siskop2mi" / ".tmp-0123abcd"
    half.parent.mkdir(parents=True)
    half.write_bytes(b"half a fi")
    assert inbox.recover(zones, ledger) == []
    assert not half.exists()

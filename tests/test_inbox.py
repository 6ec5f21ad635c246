import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import faults, inbox, settings
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


# ------------------------------------------------------------------ a new version under the same name


def _at(monkeypatch, where: str, action) -> None:
    """Run `action` once, the first time the claim reaches the fault point named `where`."""
    real_point = faults.point
    done: list[bool] = []

    def point(name: str) -> None:
        if name == where and not done:
            done.append(True)
            action()
        real_point(name)

    monkeypatch.setattr(faults, "point", point)


def _upload(path: Path, content: bytes) -> None:
    """As an upload tool does: written aside, then renamed over the name."""
    aside = path.with_name(path.name + ".part")
    aside.write_bytes(content)
    os.replace(aside, path)


def test_a_version_renamed_over_the_name_after_archiving_stays_for_the_next_pass(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"x,y\n1,2\n3,4\n")
    _at(monkeypatch, "inbox.after_archive", lambda: _upload(path, b"x,y\n1,2\n"))
    first = inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    assert first.kind == "new" and first.entry.sha256 == hashlib.sha256(b"x,y\n1,2\n3,4\n").hexdigest()
    assert path.read_bytes() == b"x,y\n1,2\n"  # the corrected version, under its name
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.csv"]
    monkeypatch.undo()
    second = inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    assert second.kind == "new" and second.entry.sha256 == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert not path.exists()
    assert [e.file_name for e in ledger.files()] == ["a.csv", "a.csv"]


def test_a_version_renamed_over_the_name_of_a_duplicate_stays_for_the_next_pass(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    inbox.claim(zones, ledger, "bp2mi_siskop2mi", _drop(zones, "bp2mi_siskop2mi", "a.csv", b"same"))
    again = _drop(zones, "bp2mi_siskop2mi", "a lagi.csv", b"same")
    _at(monkeypatch, "ledger.commit", lambda: _upload(again, b"corrected"))  # while the duplicate is recorded
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", again).kind == "duplicate"
    assert again.read_bytes() == b"corrected"
    monkeypatch.undo()
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", again).kind == "new"
    assert [r["outcome"] for r in ledger.receipts()] == ["new", "duplicate", "new"]


def test_a_file_appended_to_after_it_was_copied_stays_for_the_next_pass(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"x,y\n1,2\n")

    def append() -> None:
        with path.open("ab") as fh:
            fh.write(b"3,4\n")

    _at(monkeypatch, "inbox.after_archive", append)
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", path).kind == "new"
    assert path.read_bytes() == b"x,y\n1,2\n3,4\n"  # not the file archived: left for the next pass


def _stop_before_removal(monkeypatch) -> type[BaseException]:
    """The process stops (a kill, a power cut) once the file is under its private name, before it is removed."""

    class Stopped(BaseException):
        pass

    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.startswith(inbox.TAKEN_PREFIX):
            raise Stopped
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    return Stopped


def test_a_file_left_under_its_private_name_by_a_crash_is_put_back_and_received_once(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"abc")
    stopped = _stop_before_removal(monkeypatch)
    with pytest.raises(stopped):
        inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)
    monkeypatch.undo()
    assert not path.exists()  # under its private name, still listed under the agency's
    assert [inbox.file_name(p) for p in inbox.waiting_files(zones)["bp2mi_siskop2mi"]] == ["a.csv"]
    assert [e.status for e in inbox.recover(zones, ledger)] == ["archived"]
    assert path.read_bytes() == b"abc" and [p.name for p in path.parent.iterdir()] == ["a.csv"]
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", path).kind == "resumed"
    assert not any(path.parent.iterdir())
    assert [r["outcome"] for r in ledger.receipts()] == ["new"]


def test_a_left_over_private_file_whose_name_is_taken_again_is_claimed_under_that_name(tmp_path):
    zones, ledger = _zones(tmp_path)
    folder = zones.inbox / "bp2mi_siskop2mi"
    leftover = _drop(zones, "bp2mi_siskop2mi", f"{inbox.TAKEN_PREFIX}{'0' * 32}-a.csv", b"old version", age=120)
    _drop(zones, "bp2mi_siskop2mi", "a.csv", b"new version")
    inbox.recover(zones, ledger)
    assert leftover.read_bytes() == b"old version"  # never put back over the newer file
    waiting = inbox.waiting_files(zones)["bp2mi_siskop2mi"]
    assert waiting == [leftover, folder / "a.csv"]  # oldest first
    claims = [inbox.claim(zones, ledger, "bp2mi_siskop2mi", p) for p in waiting]
    assert [c.kind for c in claims] == ["new", "new"]
    assert [e.file_name for e in ledger.files()] == ["a.csv", "a.csv"]
    assert not any(folder.iterdir())


def test_a_file_with_the_longest_name_allowed_leaves_the_inbox_once_archived(tmp_path):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "penempatan " + "x" * 240 + ".csv", b"abc")
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", path).kind == "new"
    assert not any(path.parent.iterdir())


# ------------------------------------------------------------------ files that go away


def test_a_file_deleted_before_its_claim_is_skipped(tmp_path):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"abc")
    path.unlink()
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", path).kind == "vanished"
    assert ledger.files() == [] and not [p for p in zones.raw.rglob("*") if p.is_file()]


def test_a_file_deleted_while_it_is_copied_is_skipped(tmp_path, monkeypatch):
    zones, ledger = _zones(tmp_path)
    path = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"abc")
    real_copy = inbox._copy_aside

    def deleted_meanwhile(source, folder):
        copied = real_copy(source, folder)
        source.unlink()
        return copied

    monkeypatch.setattr(inbox, "_copy_aside", deleted_meanwhile)
    assert inbox.claim(zones, ledger, "bp2mi_siskop2mi", path).kind == "vanished"
    assert ledger.files() == [] and not [p for p in zones.raw.rglob("*") if p.is_file()]


def test_a_file_deleted_while_the_inbox_is_listed_is_not_listed(tmp_path, monkeypatch):
    zones, _ = _zones(tmp_path)
    gone = _drop(zones, "bp2mi_siskop2mi", "a.csv", b"abc")
    _drop(zones, "bp2mi_siskop2mi", "b.csv", b"def")
    real_entries = inbox._entries

    def deleted_meanwhile(folder):
        entries = real_entries(folder)
        gone.unlink(missing_ok=True)
        return entries

    monkeypatch.setattr(inbox, "_entries", deleted_meanwhile)
    assert [p.name for p in inbox.waiting_files(zones)["bp2mi_siskop2mi"]] == ["b.csv"]


# ------------------------------------------------------------------ what is not read


def test_windows_explorer_litter_is_never_a_candidate_whatever_its_case(tmp_path):
    zones, _ = _zones(tmp_path)
    for name in ("Thumbs.db", "desktop.ini", "ehthumbs.db"):
        _drop(zones, "bp2mi_siskop2mi", name, b"\x00\x01")
        _drop(zones, "p3mi_mitra_sejahtera", name.upper(), b"\x00\x01")
    _drop(zones, "bp2mi_siskop2mi", "ok.csv", b"1")
    assert {a: [p.name for p in ps] for a, ps in inbox.waiting_files(zones).items()} == {"bp2mi_siskop2mi": ["ok.csv"]}


def test_files_dropped_straight_into_the_inbox_are_counted_as_not_read(tmp_path):
    zones, _ = _zones(tmp_path)
    for name in ("penempatan.csv", "lain.xlsx", "Thumbs.db", ".DS_Store"):
        (zones.inbox / name).write_bytes(b"1")
    assert inbox.waiting_files(zones) == {}
    assert inbox.files_in_subfolders(zones) == {"inbox/": 2}


def test_files_in_a_folder_not_named_by_an_agency_code_are_counted_as_not_read(tmp_path):
    zones, _ = _zones(tmp_path)
    _drop(zones, "BP3MI Jatim", "a.csv", b"1")
    _drop(zones, "BP3MI Jatim", "Januari/b.csv", b"2")
    _drop(zones, "p3mi_mitra_sejahtera", "ok.csv", b"1")
    assert list(inbox.waiting_files(zones)) == ["p3mi_mitra_sejahtera"]
    assert inbox.files_in_subfolders(zones) == {"BP3MI Jatim/": 2}
    assert "BP3MI Jatim/ (2)" in inbox.subfolders_warning(inbox.files_in_subfolders(zones))


def test_files_in_sub_folders_are_not_candidates_and_are_counted_per_sub_folder(tmp_path):
    zones, _ = _zones(tmp_path)
    _drop(zones, "p3mi_mitra_sejahtera", "Kiriman Januari/a.csv", b"1")
    _drop(zones, "p3mi_mitra_sejahtera", "Kiriman Januari/lama/b.csv", b"2")
    _drop(zones, "p3mi_mitra_sejahtera", "Kiriman Januari/Thumbs.db", b"litter")
    _drop(zones, "p3mi_mitra_sejahtera", "kosong/desktop.ini", b"litter only")
    _drop(zones, "p3mi_mitra_sejahtera", ".sync/c.csv", b"hidden")
    _drop(zones, "bp2mi_siskop2mi", "ok.csv", b"1")
    assert list(inbox.waiting_files(zones)) == ["bp2mi_siskop2mi"]
    assert inbox.files_in_subfolders(zones) == {"p3mi_mitra_sejahtera/Kiriman Januari": 2}

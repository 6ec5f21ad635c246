"""Claim and archive: files leave the inbox only once safely copied to raw/ and recorded in the ledger."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipelines import faults
from pipelines.config import AGENCY_CODE
from pipelines.ledger import IN_FLIGHT, FileEntry, Ledger
from pipelines.settings import Zones

IGNORED_NAMES = ("*.part", "*.tmp", "*.crdownload", "*.partial", "~$*", ".*")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Claim:
    kind: str  # new | duplicate | resumed | unstable
    path: Path
    agency: str
    entry: FileEntry | None = None


def is_ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED_NAMES)


def is_stable(path: Path, stable_seconds: float, now: float | None = None) -> bool:
    """Not still being copied: unchanged for `stable_seconds` (size and modification time)."""
    st = path.stat()
    return (now or time.time()) - st.st_mtime >= stable_seconds and st.st_size == path.stat().st_size


def waiting_files(zones: Zones) -> dict[str, list[Path]]:
    """Every candidate file per agency folder (onboarded or not: the caller decides what to read)."""
    found: dict[str, list[Path]] = {}
    if not zones.inbox.exists():
        return found
    for folder in sorted(p for p in zones.inbox.iterdir() if p.is_dir() and not p.is_symlink()):
        agency = folder.name
        if not AGENCY_CODE.match(agency):
            continue
        files = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.is_symlink() and not is_ignored(p.name)),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        if files:
            found[agency] = files
    return found


_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")


def raw_path(zones: Zones, agency: str, sha256: str, file_name: str = "") -> Path:
    """Content-addressed; the original extension is kept (lower-cased) because some readers look at it."""
    suffix = Path(file_name).suffix.lower()
    return zones.raw / agency / sha256[:2] / (sha256 + (suffix if _SUFFIX.match(suffix) else ""))


def _copy_aside(source: Path, folder: Path) -> tuple[Path, str, os.stat_result]:
    """One pass over the file: copied under a temporary name in `folder`, hashed as it is copied, fsynced.
    The copy holds exactly the bytes hashed (reading the file to hash it, again to copy it and then the copy to
    hash it took three passes). Returns the copy, its SHA-256 and the source's status as opened."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    try:
        with source.open("rb") as src, tmp.open("wb") as dst:
            opened = os.fstat(src.fileno())
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(tmp, 0o440)
    return tmp, digest.hexdigest(), opened


def _unchanged(path: Path, before: os.stat_result, opened: os.stat_result) -> bool:
    """The file named `path` is still the one read, neither appended to nor replaced while it was read."""
    try:
        after = path.stat()
    except FileNotFoundError:
        return False

    def identity(st: os.stat_result) -> tuple[int, int, int, int]:
        return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev

    return identity(before) == identity(opened) == identity(after)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Content-addressed: the same bytes may already be there (a resumed claim); never half a file."""
    if target.exists():
        tmp.unlink()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    faults.point("inbox.mid_archive")
    os.replace(tmp, target)


def claim(zones: Zones, ledger: Ledger, agency: str, path: Path) -> Claim:
    before = path.stat()
    tmp, digest, opened = _copy_aside(path, zones.raw / agency)
    if not _unchanged(path, before, opened):
        tmp.unlink()
        return Claim("unstable", path, agency)  # replaced or appended while we read it: next pass
    entry, new = ledger.claim(digest, agency, path.name, before.st_size)
    if not new:
        if entry.status in IN_FLIGHT and entry.file_name == path.name:
            kind = "resumed"  # the previous run stopped between claim and removal from the inbox
        else:
            tmp.unlink()
            ledger.record_duplicate(digest, agency, path.name)
            path.unlink(missing_ok=True)
            return Claim("duplicate", path, agency, entry)
    else:
        kind = "new"
    target = raw_path(zones, agency, digest, path.name)
    faults.point("inbox.after_claim")
    _move_into_place(tmp, target)
    ledger.mark_archived(digest, str(target.relative_to(zones.home)))
    faults.point("inbox.after_archive")
    path.unlink(missing_ok=True)
    return Claim(kind, path, agency, ledger.get(digest))


def recover(zones: Zones, ledger: Ledger) -> list[FileEntry]:
    """After a crash: claims that never reached raw/ are forgotten (the file is still in the inbox)."""
    pending = []
    for entry in ledger.files(status=IN_FLIGHT):
        target = raw_path(zones, entry.agency, entry.sha256, entry.file_name)
        if entry.status == "claimed" and not target.exists():
            ledger.forget_claim(entry.sha256)
            continue
        if entry.status == "claimed":
            ledger.mark_archived(entry.sha256, str(target.relative_to(zones.home)))
        pending.append(entry)
    for pattern in ("*/.tmp-*", "*/*/.tmp-*"):  # copies being made (and, before, copies being renamed)
        for tmp in zones.raw.glob(pattern):
            tmp.unlink(missing_ok=True)
    return pending

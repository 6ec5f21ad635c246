"""Claim and archive: files leave the inbox only once safely copied to raw/ and recorded in the ledger."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipelines import faults
from pipelines.config import AGENCY_CODE
from pipelines.ledger import IN_FLIGHT, FileEntry, Ledger
from pipelines.settings import Zones

# matched without regard to case: partial downloads and uploads, Office lock files, hidden files, and the
# files Windows Explorer leaves in a folder it has shown (thumbnail caches, folder settings)
IGNORED_NAMES = (
    "*.part", "*.tmp", "*.crdownload", "*.partial", "~$*", ".*",
    "thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini",
)  # fmt: skip
CHUNK = 1 << 20
# A file being removed from the inbox after it was archived is first renamed to `.claiming-<hex>-<name>` in its
# own folder (hidden, so no agency tool or listing takes it for theirs); one left so by a crash is still the
# agency's file: `recover` puts it back under its name, and until then `waiting_files` lists it.
TAKEN_PREFIX = ".claiming-"
_TAKEN = re.compile(r"^\.claiming-[0-9a-f]{32}-(?P<name>.+)$", re.DOTALL)
NAME_MAX = 255  # bytes in one file name (ext4, XFS, NTFS via SMB)


@dataclass(frozen=True)
class Claim:
    kind: str  # new | duplicate | resumed | unstable | vanished (deleted or renamed by the agency meanwhile)
    path: Path
    agency: str
    entry: FileEntry | None = None


def is_ignored(name: str) -> bool:
    name = name.lower()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_NAMES)


def file_name(path: Path) -> str:
    """The name the agency gave the file (a file left under its private `.claiming-` name keeps it)."""
    taken = _TAKEN.match(path.name)
    return taken["name"] if taken else path.name


def _is_candidate(name: str) -> bool:
    if _TAKEN.match(name):
        return not is_ignored(file_name(Path(name)))
    return not is_ignored(name)


def is_stable(path: Path, stable_seconds: float, now: float | None = None) -> bool:
    """Not still being copied: unchanged for `stable_seconds` (size and modification time)."""
    st = path.stat()
    return (now or time.time()) - st.st_mtime >= stable_seconds and st.st_size == path.stat().st_size


def _agency_folders(zones: Zones) -> list[Path]:
    if not zones.inbox.exists():
        return []
    return sorted(p for p in zones.inbox.iterdir() if AGENCY_CODE.match(p.name) and p.is_dir() and not p.is_symlink())


def _entries(folder: Path) -> list[os.DirEntry]:
    """A folder's entries; none when the folder went away since it was listed (the agency removed it)."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def waiting_files(zones: Zones) -> dict[str, list[Path]]:
    """Every candidate file per agency folder (onboarded or not: the caller decides what to read), oldest
    first. Only files directly in the folder: see `files_in_subfolders`. A file deleted while the folder is
    read is simply not listed."""
    found: dict[str, list[Path]] = {}
    for folder in _agency_folders(zones):
        files = []
        for entry in _entries(folder):
            if not _is_candidate(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                files.append((st.st_mtime, entry.name, Path(entry.path)))
        if files:
            found[folder.name] = [path for _, _, path in sorted(files)]
    return found


def files_in_subfolders(zones: Zones) -> dict[str, int]:
    """Files that no run reads because they lie in a sub-folder of an agency folder ("Kiriman Januari/"):
    the number of files (at any depth, litter and hidden files not counted) per sub-folder, named
    `<agency>/<sub-folder>`. A sub-folder may hold anything (old sends, drafts, another agency's files), so
    its files are reported, never read: the agency moves what is to be sent into `inbox/<agency>/`.

    Files no run reads for the same reason are counted with them: those dropped straight into `inbox/` (as
    `inbox/`), and those in a folder whose name is no agency code ("BP3MI Jatim/", as `BP3MI Jatim/`)."""
    counts: dict[str, int] = {}
    if zones.inbox.exists():
        top = [e for e in _entries(zones.inbox) if not is_ignored(e.name)]
        loose = sum(1 for e in top if e.is_file(follow_symlinks=False))
        if loose:
            counts["inbox/"] = loose
        for entry in sorted(top, key=lambda e: e.name):
            unread = entry.is_dir(follow_symlinks=False) and not AGENCY_CODE.match(entry.name)
            if unread and (n := _files_under(entry.path)):
                counts[f"{entry.name}/"] = n
    for folder in _agency_folders(zones):
        for entry in sorted(_entries(folder), key=lambda e: e.name):
            if is_ignored(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            if n := _files_under(entry.path):
                counts[f"{folder.name}/{entry.name}"] = n
    return counts


def _files_under(path: str) -> int:
    """Files at any depth, litter and hidden files not counted; symbolic links to folders are not followed."""
    n = 0
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not is_ignored(d)]
        n += sum(1 for name in names if not is_ignored(name) and os.path.isfile(os.path.join(root, name)))
    return n


def subfolders_warning(in_subfolders: dict[str, int]) -> str:
    """One line for `sdmi status` and a run's summary: files in sub-folders of agency folders are not read."""
    where = ", ".join(f"{folder} ({n})" for folder, n in in_subfolders.items())
    return (
        f"Berkas di dalam sub-folder tidak dibaca; pindahkan langsung ke inbox/<instansi>/: {where} / "
        f"Files in sub-folders are not read; put them directly in inbox/<agency>/: {where}"
    )


def not_onboarded_warning(folders: list[str]) -> str:
    """One line for `sdmi status` and a run's summary: folders of agencies without a mapping are left alone."""
    where = ", ".join(folders)
    return (
        f"Folder instansi yang belum terdaftar (onboarding) tidak dibaca: {where} / "
        f"Folders of agencies not onboarded are not read: {where}"
    )


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


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _private_name(name: str) -> str:
    """`.claiming-<hex>-<name>`, within the longest name a file system allows (a very long name loses its
    beginning, not its extension)."""
    prefix = f"{TAKEN_PREFIX}{uuid.uuid4().hex}-"
    encoded = os.fsencode(name)
    room = NAME_MAX - len(os.fsencode(prefix))
    return prefix + (os.fsdecode(encoded[-room:]) if len(encoded) > room else name)


def _put_back(taken: Path) -> bool:
    """A file under its private name goes back under the agency's name, never over a file that now carries
    that name (a hard link fails rather than replace). When it cannot, it stays where it is: `waiting_files`
    lists it, and the next pass claims it under the agency's name."""
    home = taken.with_name(file_name(taken))
    try:
        os.link(taken, home)
    except FileExistsError:
        try:
            if not os.path.samefile(taken, home):  # the same file twice: a put-back stopped half-way
                return False
        except FileNotFoundError:
            return False
    except OSError:  # no hard links on this file system, or the name is too long: it stays, and is listed
        return False
    taken.unlink()
    return True


def _remove_from_inbox(path: Path, copied: os.stat_result) -> None:
    """Remove from the inbox the very file that was copied, and nothing else.

    The agency may have put another version under the same name since it was copied (an upload tool writes
    aside and renames over the name). So the name is first taken: renamed to a private name in the same
    folder, atomically, after which nothing done to the agency's name reaches it. Then it is removed only if
    it is the file copied (device, inode, size, modification time); any other file (a corrected version, or
    the same one appended to) is put back under its name for the next pass. A crash in between leaves the
    file under its private name, which `recover` puts back."""
    taken = path.with_name(_private_name(file_name(path)))
    try:
        os.rename(path, taken)
    except FileNotFoundError:
        return  # the agency deleted it meanwhile: it is archived, nothing left to remove
    try:
        if _identity(taken.stat()) == _identity(copied):
            taken.unlink()
            return
    except FileNotFoundError:
        return
    _put_back(taken)


def _gone(path: Path) -> bool:
    return not os.path.lexists(path)


def claim(zones: Zones, ledger: Ledger, agency: str, path: Path) -> Claim:
    name = file_name(path)
    try:
        before = path.stat()
        tmp, digest, opened = _copy_aside(path, zones.raw / agency)
    except FileNotFoundError:
        if _gone(path):
            return Claim("vanished", path, agency)  # deleted or renamed by the agency since it was listed
        raise
    if not _unchanged(path, before, opened):
        tmp.unlink()
        if _gone(path):
            return Claim("vanished", path, agency)
        return Claim("unstable", path, agency)  # replaced or appended while we read it: next pass
    entry, new = ledger.claim(digest, agency, name, before.st_size)
    if not new:
        if entry.status in IN_FLIGHT and entry.file_name == name:
            kind = "resumed"  # the previous run stopped between claim and removal from the inbox
        else:
            tmp.unlink()
            ledger.record_duplicate(digest, agency, name)
            _remove_from_inbox(path, opened)
            return Claim("duplicate", path, agency, entry)
    else:
        kind = "new"
    target = raw_path(zones, agency, digest, name)
    faults.point("inbox.after_claim")
    _move_into_place(tmp, target)
    ledger.mark_archived(digest, str(target.relative_to(zones.home)))
    faults.point("inbox.after_archive")
    _remove_from_inbox(path, opened)
    return Claim(kind, path, agency, ledger.get(digest))


def recover(zones: Zones, ledger: Ledger) -> list[FileEntry]:
    """After a crash: claims that never reached raw/ are forgotten (the file is still in the inbox), and a
    file being removed from the inbox goes back under its name (if it was archived, its next claim resumes)."""
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
    for folder in _agency_folders(zones):
        for entry in _entries(folder):
            if _TAKEN.match(entry.name) and entry.is_file(follow_symlinks=False):
                _put_back(Path(entry.path))
    return pending

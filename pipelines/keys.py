"""The secret behind `worker_key`.

A plain hash of a 16-digit NIK is reversible by enumeration, so worker keys are HMAC-SHA256 under a
secret that lives outside the repository, in a file only its owner can read. The key's bytes never
leave this module except as the HMAC pads handed to DuckDB.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from pipelines.problems import ConfigError

KEY_BYTES = 32
BLOCK = 64


@dataclass(frozen=True)
class WorkerKeySecret:
    """HMAC pads, ready for SQL; repr never shows them."""

    inner_pad: bytes
    outer_pad: bytes
    source: str

    def __repr__(self) -> str:
        return f"WorkerKeySecret(source={self.source!r})"

    def key_id(self) -> str:
        """A fingerprint of the key, safe to store and show: the HMAC of a fixed label, never the key."""
        import hashlib

        inner = hashlib.sha256(self.inner_pad + b"sdmi key id").digest()
        return hashlib.sha256(self.outer_pad + inner).hexdigest()[:16]

    @classmethod
    def from_key(cls, key: bytes, source: str) -> WorkerKeySecret:
        if len(key) > BLOCK:
            import hashlib

            key = hashlib.sha256(key).digest()
        key = key.ljust(BLOCK, b"\0")
        return cls(bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key), source)


def _check_permissions(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"Berkas kunci {path} dapat dibaca pengguna lain; jalankan: chmod 600 {path} / "
            f"key file {path} is readable by others (mode {stat.filemode(mode)}); run: chmod 600 {path}"
        )


def resolve_key_path(cli_path: str | Path | None = None) -> Path | None:
    """The key file named on the command line or by SDMI_KEY_FILE; both naming different files is refused."""
    env_path = os.environ.get("SDMI_KEY_FILE")
    if os.environ.get("SDMI_KEY"):
        raise ConfigError(
            "SDMI_KEY tidak didukung: simpan kunci dalam berkas dan sebut dengan SDMI_KEY_FILE / "
            "SDMI_KEY is not supported (environment variables leak): keep the key in a file named by SDMI_KEY_FILE"
        )
    if cli_path and env_path and Path(cli_path).resolve() != Path(env_path).resolve():
        raise ConfigError(
            "Kunci diberikan dua kali dengan nilai berbeda (--key-file dan SDMI_KEY_FILE) / "
            "the key is given twice in conflicting ways (--key-file and SDMI_KEY_FILE name different files)"
        )
    chosen = cli_path or env_path
    return Path(chosen).expanduser() if chosen else None


def create_key_file(path: Path) -> Path:
    """Demo mode only: a fresh random key, owner-only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(KEY_BYTES).encode())
    return path


def load_secret(path: Path | None) -> WorkerKeySecret:
    if path is None:
        raise ConfigError(
            "Kunci rahasia tidak ditemukan: setel SDMI_KEY_FILE ke berkas kunci (chmod 600) / "
            "no secret key: set SDMI_KEY_FILE to a key file (chmod 600); `make demo` creates one for the demo"
        )
    if not path.is_file():
        raise ConfigError(f"Berkas kunci tidak ada / key file does not exist: {path}")
    _check_permissions(path)
    key = path.read_bytes().strip()
    if len(key) < KEY_BYTES:
        raise ConfigError(f"Kunci terlalu pendek / key in {path} is shorter than {KEY_BYTES} bytes")
    return WorkerKeySecret.from_key(key, source=str(path))


# `document_key` from a passport's HMAC (hex): its first 60 bits. Publish finds a passport-only record (whose
# worker_key is that HMAC) by the same expression over its worker_key. At 60 bits a false link between two
# passports needs a collision: ~4e-6 expected over a million passport-only records and 4 million others.
DOCUMENT_KEY = "CAST('0x' || left({key}, 15) AS BIGINT)"


KEY_ID_FILE = "key_id"  # under state/: the fingerprint of the key the data root's keys were made with


def check_key(state: Path, secret: WorkerKeySecret, *, rekey: bool = False) -> None:
    """Refuse a key other than the one this data root's worker and record keys were made with.

    Every `worker_key` and fingerprint `record_key` is an HMAC under the key: a replaced key file would key
    the same worker and the same record differently, and a resent file would be counted twice, silently. The
    first run records the key's fingerprint; `rekey` (`sdmi replay --rekey`, which processes every file
    again) records the new one."""
    path = state / KEY_ID_FILE
    current = secret.key_id()
    known = path.read_text(encoding="utf-8").strip() if path.is_file() else None
    if known == current:
        return
    if known is not None and not rekey:
        raise ConfigError(
            f"Kunci rahasia ini ({current}) bukan kunci yang dipakai untuk data ini ({known}): kunci pekerja dan "
            "catatan tidak akan cocok dengan yang sudah terbit dan berkas yang dikirim ulang terhitung dua kali. "
            "Pakai berkas kunci semula; bila kunci sengaja diganti, jalankan `sdmi replay --rekey`. / "
            f"This secret key ({current}) is not the key this data root was built with ({known}): worker and "
            "record keys would not match the published ones, and a resent file would be counted twice. Use the "
            "original key file; if the key was changed on purpose, run `sdmi replay --rekey`."
        )
    state.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_ID_FILE}.tmp")
    tmp.write_text(current + "\n", encoding="utf-8")
    os.replace(tmp, path)

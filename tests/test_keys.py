import hashlib
import hmac
import os
from pathlib import Path

import duckdb
import pytest

from pipelines.keys import KEY_ID_FILE, check_key, create_key_file, load_secret, resolve_key_path
from pipelines.problems import ConfigError

NIK = "3507014507950001"


def _worker_key(secret, message: str) -> str:
    con = duckdb.connect()
    return con.execute(
        "SELECT sha256($o || unhex(sha256($i || encode($m))))",
        {"o": secret.outer_pad, "i": secret.inner_pad, "m": message},
    ).fetchone()[0]


def test_sql_hmac_equals_python_hmac(key_file: Path):
    secret = load_secret(key_file)
    expected = hmac.new(key_file.read_bytes().strip(), f"nik:{NIK}".encode(), hashlib.sha256).hexdigest()
    assert _worker_key(secret, f"nik:{NIK}") == expected


def test_worker_key_is_not_a_plain_sha256_of_the_nik(key_file: Path):
    key = _worker_key(load_secret(key_file), f"nik:{NIK}")
    assert key != hashlib.sha256(NIK.encode()).hexdigest()
    assert key != hashlib.sha256(f"nik:{NIK}".encode()).hexdigest()


def test_same_nik_same_key_under_one_key_file_and_different_under_another(key_file: Path, tmp_path: Path):
    one = load_secret(key_file)
    other = load_secret(create_key_file(tmp_path / "other.key"))
    assert _worker_key(one, NIK) == _worker_key(load_secret(key_file), NIK)
    assert _worker_key(one, NIK) != _worker_key(other, NIK)


def test_missing_key_file_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="SDMI_KEY_FILE"):
        load_secret(None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_secret(tmp_path / "nope.key")


def test_key_file_readable_by_others_is_refused(key_file: Path):
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as exc:
        load_secret(key_file)
    assert key_file.read_text() not in str(exc.value)


def test_key_given_twice_in_conflicting_ways_is_refused(key_file: Path, tmp_path: Path, monkeypatch):
    other = create_key_file(tmp_path / "other.key")
    monkeypatch.setenv("SDMI_KEY_FILE", str(other))
    with pytest.raises(ConfigError, match="conflicting"):
        resolve_key_path(key_file)
    monkeypatch.setenv("SDMI_KEY_FILE", str(key_file))
    assert resolve_key_path(key_file) == key_file


def test_key_in_environment_variable_is_refused(monkeypatch):
    monkeypatch.setenv("SDMI_KEY", "0" * 64)
    with pytest.raises(ConfigError, match="SDMI_KEY_FILE"):
        resolve_key_path(None)


def test_created_key_file_is_owner_only(tmp_path: Path):
    path = create_key_file(tmp_path / "k")
    assert path.stat().st_mode & 0o077 == 0


def test_secret_repr_does_not_show_the_key(key_file: Path):
    secret = load_secret(key_file)
    assert key_file.read_text().strip() not in repr(secret)
    assert "pad" not in repr(secret)


def test_the_first_key_used_is_recorded_by_a_fingerprint_not_the_key(key_file: Path, tmp_path: Path):
    check_key(tmp_path / "state", load_secret(key_file))
    recorded = (tmp_path / "state" / KEY_ID_FILE).read_text().strip()
    assert recorded == load_secret(key_file).key_id() and len(recorded) == 16
    assert recorded not in key_file.read_text()
    check_key(tmp_path / "state", load_secret(key_file))  # the same key again: accepted


def test_a_replaced_key_file_is_refused_naming_both_fingerprints(key_file: Path, tmp_path: Path):
    """Every worker and record key would change: a resent file would count twice, silently."""
    check_key(tmp_path / "state", load_secret(key_file))
    other = load_secret(create_key_file(tmp_path / "other.key"))
    with pytest.raises(ConfigError, match="sdmi replay --rekey") as refused:
        check_key(tmp_path / "state", other)
    assert other.key_id() in str(refused.value) and load_secret(key_file).key_id() in str(refused.value)


def test_a_rekey_records_the_new_key(key_file: Path, tmp_path: Path):
    check_key(tmp_path / "state", load_secret(key_file))
    other = load_secret(create_key_file(tmp_path / "other.key"))
    check_key(tmp_path / "state", other, rekey=True)
    check_key(tmp_path / "state", other)
    with pytest.raises(ConfigError):
        check_key(tmp_path / "state", load_secret(key_file))

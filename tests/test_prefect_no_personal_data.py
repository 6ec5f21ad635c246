"""Prefect never persists personal data: after a demo run, no NIK, name or passport anywhere in PREFECT_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import demo

SDMI = str(Path(sys.executable).with_name("sdmi"))


@pytest.mark.slow
def test_no_identifier_of_a_demo_run_is_stored_under_prefect_home(tmp_path, key_file):
    home, prefect_home = tmp_path / "home", tmp_path / "prefect"
    truth = demo.generate(home / "inbox", rows=1000)
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)  # the temporary server keeps its database (SQLite) in PREFECT_HOME
    proc = subprocess.run(
        [SDMI, "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    stored = [p for p in prefect_home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in stored)  # the server DB (and its WAL) is scanned too
    identifiers = sorted(x for x in truth.identifiers if len(x) >= 6)
    assert len(identifiers) > 1000
    leaks = {}
    for path in stored:
        data = path.read_bytes()
        found = [x for x in identifiers if x.encode("utf-8") in data]
        if found:
            leaks[str(path.relative_to(prefect_home))] = found[:5]
    assert leaks == {}
    assert not [x for x in identifiers if x in proc.stdout or x in proc.stderr]

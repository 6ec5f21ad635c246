"""`sdmi serve`: Prefect deployments poll the inbox and publish; SIGTERM stops them and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import demo
from pipelines.ledger import FINAL, IN_FLIGHT, Ledger
from pipelines.settings import Zones

SDMI = str(Path(sys.executable).with_name("sdmi"))


def _status(env: dict) -> dict:
    proc = subprocess.run([SDMI, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


def _drop(samples: Path, inbox: Path) -> None:
    """Like an agency's upload: written aside, then renamed into the inbox."""
    for source in samples.rglob("*"):
        if source.is_file():
            target = inbox / source.parent.name / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            aside = target.with_name(source.name + ".part")
            shutil.copy(source, aside)
            os.replace(aside, target)


def _done(info: dict, files: int) -> bool:
    finished = sum(n for counts in info["files"].values() for s, n in counts.items() if s in FINAL)
    return finished == files and not info["stuck"] and info["release"] is not None and not info["publish_pending"]


@pytest.mark.slow
def test_serve_processes_dropped_files_publishes_and_stops_cleanly_on_sigterm(tmp_path, key_file):
    home = tmp_path / "home"
    samples = tmp_path / "samples"
    truth = demo.generate(samples, rows=1000)
    env = {**os.environ, "SDMI_HOME": str(home), "SDMI_KEY_FILE": str(key_file), "PREFECT_HOME": str(tmp_path / "ph")}
    env.pop("PREFECT_API_URL", None)
    serve = subprocess.Popen(
        [SDMI, "serve", "--interval", "2", "--publish-interval", "5", "--stable-seconds", "0"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        assert serve.stdout.readline().startswith("sdmi: serving"), "sdmi serve did not start"
        _drop(samples, Zones(home).inbox)
        deadline = time.monotonic() + 420
        info = _status(env)
        while not _done(info, len(truth.rows_by_file)) and time.monotonic() < deadline:
            time.sleep(2)
            info = _status(env)
        assert _done(info, len(truth.rows_by_file)), info
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=120) == 0
        assert "sdmi: stopped" in serve.stdout.read()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()

    ledger = Ledger(Zones(home).ledger_db)
    assert ledger.files(status=IN_FLIGHT) == []
    entries = ledger.files(status=FINAL)
    assert len(entries) == len(truth.rows_by_file)
    assert sum(e.rows_read or 0 for e in entries) == truth.rows
    assert all(e.rows_read == e.rows_accepted + e.rows_quarantined for e in entries)
    rerun = subprocess.run([SDMI, "run", "--json"], env=env, capture_output=True, text=True, timeout=600)
    summary = json.loads(rerun.stdout.splitlines()[-1])
    assert (summary["received"], summary["processed"], rerun.returncode) == (0, 0, 0)

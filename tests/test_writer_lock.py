"""One writer at a time: a second run leaves with exit 4 and a clear message, or waits with --wait."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.settings import Zones

HOLD = """
import sys, time
from pathlib import Path
from pipelines.locking import writer_lock
from pipelines.settings import Zones
with writer_lock(Zones(Path(sys.argv[1]))):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(home: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the writer lock, as a running `sdmi run` does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def holder(tmp_path):
    Zones(tmp_path).ensure()
    proc = _hold(tmp_path, 120)
    yield proc
    proc.kill()
    proc.wait()


def test_run_exits_4_while_another_process_holds_the_lock(holder, tmp_path, key_file):
    result = CliRunner().invoke(app, ["run", "--home", str(tmp_path), "--key-file", str(key_file)])
    assert result.exit_code == 4
    assert "another sdmi run or publish is in progress" in " ".join(result.output.split())


def test_publish_exits_4_while_another_process_holds_the_lock(holder, tmp_path):
    result = CliRunner().invoke(app, ["publish", "--home", str(tmp_path)])
    assert result.exit_code == 4


def test_run_with_wait_proceeds_once_the_lock_is_released(prefect_harness, tmp_path, key_file):
    Zones(tmp_path).ensure()
    proc = _hold(tmp_path, 3)
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["run", "--home", str(tmp_path), "--key-file", str(key_file), "--no-publish", "--wait", "120"]
    )
    assert proc.wait() == 0
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 2


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    Zones(tmp_path).ensure()
    proc = _hold(tmp_path, 120)
    proc.kill()
    proc.wait()
    again = _hold(tmp_path, 0)
    assert again.wait(timeout=30) == 0

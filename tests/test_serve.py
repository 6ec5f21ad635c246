"""`sdmi serve`: Prefect deployments poll the inbox and publish; SIGTERM stops them and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
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


# ------------------------------------------------------------------------------------------ configuration
def _serve(tmp_path: Path, key_file: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # a server of its own, unless given
    full.update(SDMI_HOME=str(tmp_path / "home"), SDMI_KEY_FILE=str(key_file), PREFECT_HOME=str(tmp_path / "ph"), **env)
    return subprocess.run([SDMI, "serve", *args], env=full, capture_output=True, text=True, timeout=300)


def _refused_as_configuration(done: subprocess.CompletedProcess, *named: str) -> str:
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert done.returncode == 3, said
    assert "Traceback" not in said and "sdmi: serving" not in done.stdout
    for name in named:
        assert name in said, said
    return said


@pytest.mark.parametrize(
    "option", [("--interval", "0"), ("--interval", "-5"), ("--publish-interval", "0"), ("--publish-interval", "-1")]
)
def test_serve_refuses_a_schedule_that_is_not_above_zero_with_exit_3(tmp_path, key_file, option):
    said = _refused_as_configuration(_serve(tmp_path, key_file, *option), option[0])
    assert said.index(f"{option[0]} harus lebih dari 0") < said.index(f"{option[0]} must be above 0")


def test_serve_refuses_a_publish_cron_that_is_not_a_schedule_with_exit_3_in_both_languages(tmp_path, key_file):
    said = _refused_as_configuration(_serve(tmp_path, key_file, "--publish-cron", "tiap jam"), "--publish-cron")
    assert said.index("bukan jadwal cron yang sah") < said.index("is not a valid cron expression")


def test_serve_refuses_negative_stable_seconds_with_exit_3(tmp_path, key_file):
    _refused_as_configuration(_serve(tmp_path, key_file, "--stable-seconds", "-3"), "--stable-seconds")


def test_serve_with_a_setting_it_cannot_take_exits_3_naming_it(tmp_path, key_file):
    done = _serve(tmp_path, key_file, SDMI_WORKERS="two")
    _refused_as_configuration(done, "SDMI_WORKERS", "'two'")


def test_serve_on_a_server_port_in_use_exits_3_naming_the_port(tmp_path, key_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = _refused_as_configuration(_serve(tmp_path, key_file, "--server-port", str(port)), f"Port {port}")
    assert said.index("sudah dipakai") < said.index("already in use")


def test_serve_against_a_prefect_api_that_does_not_answer_exits_3_before_serving(tmp_path, key_file):
    from pipelines.serve import free_port

    api = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    said = _refused_as_configuration(_serve(tmp_path, key_file, PREFECT_API_URL=api), f"PREFECT_API_URL={api}")
    assert said.index("tidak dapat dihubungi") < said.index("cannot be reached")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="child processes are listed from Linux's /proc")
def test_serve_killed_with_sigkill_leaves_no_prefect_server_behind(tmp_path, key_file):
    env = {**os.environ, "SDMI_HOME": str(tmp_path / "home"), "SDMI_KEY_FILE": str(key_file)}
    env.update(PREFECT_HOME=str(tmp_path / "ph"))
    env.pop("PREFECT_API_URL", None)
    serve = subprocess.Popen([SDMI, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert serve.stdout is not None
        assert serve.stdout.readline().startswith("sdmi: serving"), "sdmi serve did not start"
        (server,) = [int(c) for f in Path(f"/proc/{serve.pid}/task").glob("*/children") for c in f.read_text().split()]
    finally:
        serve.kill()
        serve.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{server}").exists() and "\nState:\tZ" not in Path(f"/proc/{server}/status").read_text():
        if time.monotonic() > deadline:
            os.kill(server, signal.SIGKILL)
            raise AssertionError(f"the Prefect server {server} outlived `sdmi serve`")
        time.sleep(0.1)

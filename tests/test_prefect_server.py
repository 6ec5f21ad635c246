"""Prefect integration: retry policy, run artifacts, and a real `prefect server` read back over REST."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from prefect import flow, task

from pipelines import demo, flows
from pipelines.settings import Zones

SDMI = str(Path(sys.executable).with_name("sdmi"))
P3MI = "p3mi_mitra_sejahtera"


# ------------------------------------------------------------------------------------------ retries
def _attempts_of(exc: BaseException) -> int:
    """Run a task with process_file_task's retry policy that always raises `exc`; count its attempts."""
    calls: list[int] = []
    policy = flows.process_file_task

    @task(retries=policy.retries, retry_delay_seconds=0, retry_condition_fn=policy.retry_condition_fn)
    def flaky() -> None:
        calls.append(1)
        raise exc

    @flow
    def once() -> None:
        flaky()

    with pytest.raises(type(exc)):
        once()
    return len(calls)


def test_a_task_raising_oserror_is_retried(prefect_harness):
    assert _attempts_of(OSError("disk hiccup")) == 1 + flows.process_file_task.retries


def test_a_task_raising_valueerror_is_not_retried(prefect_harness):
    assert _attempts_of(ValueError("bad data")) == 1


def test_a_missing_file_is_not_retried(prefect_harness):
    assert _attempts_of(FileNotFoundError("gone")) == 1


# ------------------------------------------------------------------------------------------ artifacts
def _one_file_home(tmp_path: Path, samples: Path) -> Path:
    home = tmp_path / "home"
    source = sorted((samples / P3MI).iterdir())[0]
    (home / "inbox" / P3MI).mkdir(parents=True)
    shutil.copy(source, home / "inbox" / P3MI / source.name)
    return home


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("samples")
    demo.generate(directory, rows=1000)
    return directory


def test_a_run_publishes_a_markdown_summary_and_a_table_artifact(prefect_harness, tmp_path, samples, key_file):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    home = _one_file_home(tmp_path, samples)
    state = flows.ingest_flow(str(home), str(key_file), publish=False, stable_seconds=0, return_state=True)
    summary = state.result()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert by_key["sdmi-run-summary"].type == "markdown"
    assert f"| rows read / baris dibaca | {summary['rows_read']} |" in by_key["sdmi-run-summary"].data
    assert by_key["sdmi-files"].type == "table"
    rows = (
        json.loads(by_key["sdmi-files"].data)
        if isinstance(by_key["sdmi-files"].data, str)
        else by_key["sdmi-files"].data
    )
    assert [r["rows_read"] for r in rows] == [summary["rows_read"]]


# ------------------------------------------------------------------------------------------ real server
def _post(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_a_run_against_a_prefect_server_is_readable_over_rest(tmp_path, samples, key_file, monkeypatch, sdmi_run):
    from pipelines.serve import start_local_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = start_local_server()
    try:
        home = _one_file_home(tmp_path, samples)
        summary, _ = sdmi_run(home, key_file, {**os.environ, "PREFECT_API_URL": server.api_url})
        runs = _post(f"{server.api_url}/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
        ingest = [r for r in runs if r["parameters"].get("home") == str(home) and "publish" in r["parameters"]]
        assert len(ingest) == 1
        artifacts = _post(
            f"{server.api_url}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [ingest[0]["id"]]}}}
        )
        markdown = next(a for a in artifacts if a["key"] == "sdmi-run-summary")["data"]
        assert f"| rows read / baris dibaca | {summary['rows_read']} |" in markdown
        assert f"| rows accepted / diterima | {summary['rows_accepted']} |" in markdown
        assert f"| records published / catatan terbit | {summary['rows_published']} |" in markdown
    finally:
        server.stop()


@pytest.mark.slow
def test_sdmi_run_as_a_process_leaves_a_whole_checkpointed_release_at_exit(tmp_path, samples, key_file, sdmi_run):
    """The command skips the interpreter's last garbage-collection passes at exit (`gc.freeze`): nothing it
    writes may depend on them, and its last logs still reach the temporary server."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)
    home = _one_file_home(tmp_path, samples)
    summary, stderr = sdmi_run(home, key_file, env)
    assert "Error logging to API" not in stderr
    con = duckdb.connect(str(Zones(home).analyst_db), read_only=True)
    try:
        published = con.execute("SELECT count(*) FROM placement_records").fetchone()[0]
    finally:
        con.close()
    assert published == summary["rows_published"] > 0
    assert not list((home / "warehouse").rglob("*.wal"))  # every DuckDB file was checkpointed and closed


# ------------------------------------------------------------------------------------------ early start
LAUNCH = """
import glob
import json
import os
from pipelines import prefect_api

server = prefect_api.launch()
out = {"ours": server.api_url if server else None, "children_after_launch": [
    int(c) for f in glob.glob(f"/proc/{os.getpid()}/task/*/children") for c in open(f).read().split()]}
"""
LAUNCH_ONLY = LAUNCH + "print(json.dumps(out))\n"
WHICH_API = """
from prefect import flow
from prefect.client.orchestration import get_client

if server is not None:
    server.ready()

@flow
def which_api() -> str:
    with get_client(sync_client=True) as client:
        return str(client.api_url)

out["flow_api"] = which_api()
import sys
prefects = sys.modules.get("prefect.server.api.server")
out["started_by_prefect"] = [s.api_url for s in prefects.SubprocessASGIServer._instances.values()] if prefects else []
print(json.dumps(out))
"""
EARLY_START = LAUNCH + WHICH_API


def _early_start(tmp_path: Path, script: str = EARLY_START, **env: str) -> dict:
    full = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_LOGGING_LEVEL": "INFO"}
    full.pop("PREFECT_API_URL", None)
    full.update(env)
    proc = subprocess.run([sys.executable, "-c", script], env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Error logging to API" not in proc.stderr  # the last logs reached the server before it stopped
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_flow_runs_on_the_temporary_server_launched_early_and_prefect_starts_no_other(tmp_path):
    import socket
    from urllib.parse import urlparse

    out = _early_start(tmp_path)
    assert out["ours"] is not None and len(out["children_after_launch"]) == 1
    assert out["flow_api"].rstrip("/") == out["ours"].rstrip("/")
    assert out["started_by_prefect"] == []
    with pytest.raises(OSError):  # and it stopped with the process
        socket.create_connection(("127.0.0.1", urlparse(out["ours"]).port), timeout=2).close()


@pytest.mark.slow
def test_no_temporary_server_is_launched_when_a_prefect_server_is_configured(tmp_path, prefect_api):
    out = _early_start(tmp_path, PREFECT_API_URL=prefect_api)
    assert out["ours"] is None and out["started_by_prefect"] == []
    assert out["flow_api"].rstrip("/") == prefect_api.rstrip("/")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="child processes are listed from Linux's /proc")
def test_a_temporary_server_started_early_is_stopped_when_a_profile_names_a_prefect_server(tmp_path):
    # the server process starts before Prefect's settings are read; a profile's API is only known after
    prefect_home = tmp_path / "prefect"
    prefect_home.mkdir()
    (prefect_home / "profiles.toml").write_text(
        'active = "sdmi-test"\n\n[profiles.sdmi-test]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n', encoding="utf-8"
    )
    out = _early_start(tmp_path, LAUNCH_ONLY)
    assert out == {"ours": None, "children_after_launch": []}


@pytest.mark.slow
def test_a_temporary_server_that_does_not_answer_stops_the_command_with_a_clear_error(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "0"
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([SDMI, "publish", "--home", str(tmp_path / "home")], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 3
    assert "tidak menjawab" in proc.stderr and "did not answer" in proc.stderr
    assert "PREFECT_API_URL" in proc.stderr


FLOW_END = """
import json
import time
from prefect import flow
from pipelines import cli

ended: list[float] = []

@flow
def short() -> None:
    time.sleep(0.3)
    ended.append(time.perf_counter())

waits = []
with cli._prefect(warm_up_gx=False):
    for _ in range(3):
        short()
        waits.append(time.perf_counter() - ended[-1])
print(json.dumps({"waits": waits}))
"""


@pytest.mark.slow
def test_a_flow_run_on_the_temporary_server_returns_without_waiting_for_a_heartbeat(tmp_path):
    """Prefect's heartbeat thread sleeps a second at a time and the end of a flow run waits for it: a run of
    0.3 s returned ~0.7 s after its last step. The temporary server goes with the process: no heartbeats."""
    waits = sorted(_early_start(tmp_path, FLOW_END)["waits"])
    assert waits[1] < 0.35, waits


# ------------------------------------------------------------------------------------------ stopped from outside
def _children(pid: int) -> list[int]:
    return [int(c) for f in Path(f"/proc/{pid}/task").glob("*/children") for c in f.read_text().split()]


def _gone(pid: int) -> bool:
    """No such process, or a zombie (dead, left for init to reap)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def _assert_gone(server: int, timeout: float = 10) -> None:
    """The server process ends within `timeout` (killed here if it does not, so that no test leaves one)."""
    if not _wait_for(lambda: _gone(server), timeout):
        os.kill(server, signal.SIGKILL)
        raise AssertionError(f"server {server} outlived the run")


def _wait_for(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _start_run(home: Path, key_file: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path, Path]:
    """`sdmi run` as a supervisor starts it (its own process, output to files); its stdout and stderr files."""
    full = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_LOGGING_LEVEL": "INFO", **env}
    full.pop("PREFECT_API_URL", None)
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [SDMI, "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0", "--wait", "600"],
            env=full, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    return proc, out, err


@contextmanager
def _run_waiting_for_the_lock(tmp_path: Path, samples: Path, key_file: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """A run with a file to process and its temporary server up, waiting for the writer lock this test took as
    soon as the server process appeared (the run's idle check had let go of it). Yields the run and its server."""
    from pipelines.locking import writer_lock

    home = _one_file_home(tmp_path, samples)
    proc, _, err = _start_run(home, key_file, tmp_path)
    try:
        assert _wait_for(lambda: _children(proc.pid), 120), "no temporary server was started"
        with writer_lock(Zones(home), 30):
            (server,) = _children(proc.pid)
            assert _wait_for(lambda: "Beginning flow run" in err.read_text(), 240), err.read_text()[-2000:]
            time.sleep(2)  # the flow checks the agencies' rules, then waits for the lock
            assert proc.poll() is None and sorted((home / "inbox" / P3MI).iterdir())  # nothing claimed yet
            yield proc, server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="child processes are listed from Linux's /proc")
def test_sigterm_ends_a_waiting_run_promptly_and_stops_its_temporary_server(tmp_path, samples, key_file):
    with _run_waiting_for_the_lock(tmp_path, samples, key_file) as (run, server):
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=15)
        _assert_gone(server, 0)
        assert code == 143  # 128 + SIGTERM, as a shell reports it


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="child processes are listed from Linux's /proc")
def test_a_run_killed_with_sigkill_leaves_no_temporary_server_behind(tmp_path, samples, key_file):
    with _run_waiting_for_the_lock(tmp_path, samples, key_file) as (run, server):
        run.kill()
        run.wait(timeout=15)
        _assert_gone(server)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="child processes are listed from Linux's /proc")
def test_sigterm_with_a_file_in_hand_ends_the_run_within_the_grace_holding_the_lock_and_leaves_the_file_in_flight(
    tmp_path, key_file
):
    from pipelines.cli import SIGTERM_GRACE_SECONDS
    from pipelines.ledger import IN_FLIGHT, Ledger
    from pipelines.locking import WriterBusy, writer_lock

    home = tmp_path / "home"
    folder = home / "inbox" / P3MI
    folder.mkdir(parents=True)
    header = "Worker ID;National ID;Full Name;Gender;Destination;Departure Date\n"
    rows = "".join(f"W{i};35070145079500{i % 90 + 10};Nama {i};Female;Taiwan;2024-03-01\n" for i in range(60_000))
    (folder / "panjang.csv").write_text(header + rows, encoding="cp1252")
    run, out, _ = _start_run(home, key_file, tmp_path, SDMI_CHUNK_ROWS="100")  # 600 chunks: minutes of work
    try:
        assert _wait_for(lambda: "sdmi: rows" in out.read_text(), 240), "no chunk was processed"
        (server,) = _children(run.pid)
        run.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        lock_was_free = False
        while run.poll() is None and time.monotonic() - signalled < 60:
            try:
                with writer_lock(Zones(home), 0):
                    lock_was_free = run.poll() is None
            except WriterBusy:
                pass
            time.sleep(0.2)
        took = time.monotonic() - signalled
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()
    _assert_gone(server)
    assert run.returncode == 143 and took < SIGTERM_GRACE_SECONDS + 3, (run.returncode, took)
    assert not lock_was_free, "another run could have taken up the file while this one still worked on it"
    assert [e.file_name for e in Ledger(Zones(home).ledger_db).files(status=IN_FLIGHT)] == ["panjang.csv"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["publish.mid_build", "publish.after_parquet"])
def test_sigterm_while_publishing_ends_the_run_with_143_not_as_a_failed_publish(tmp_path, samples, key_file, point):
    """DuckDB turns the signal into "Query interrupted": the run used to report a failed publish (exit 2)."""
    home = _one_file_home(tmp_path, samples)
    trace = tmp_path / "points.trace"
    run, out, err = _start_run(home, key_file, tmp_path, SDMI_FAULT_TRACE=str(trace))
    try:
        assert _wait_for(lambda: trace.exists() and point in trace.read_text(), 240), err.read_text()[-2000:]
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert code == 143, (code, out.read_text()[-1500:], err.read_text()[-1500:])
    assert "publish failed" not in out.read_text()

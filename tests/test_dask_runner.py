"""The Dask task runner (prefect-dask): it publishes what the thread runner publishes; a scheduler it cannot use is
refused before any file is claimed (exit 3); workers that are all gone end the run (exit 2), the files left in
flight for the next run, instead of a run that waits for ever holding the writer lock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import demo, flows, settings
from pipelines.settings import Zones

BIN = Path(sys.executable).parent
NATIONAL = "bp2mi_siskop2mi/siskop2mi_penempatan_2023-01_2024-06.csv"  # 357 of the demo's 1,000 rows


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    demo.generate(folder, rows=1000)
    return folder


def _one_file_inbox(home: Path, samples: Path) -> Path:
    (home / "inbox" / NATIONAL).parent.mkdir(parents=True)
    return Path(shutil.copy2(samples / NATIONAL, home / "inbox" / NATIONAL))


def _sdmi_run(home: Path, key_file: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "sdmi"), "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0", "--json"],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _refused_before_any_claim(done: subprocess.CompletedProcess, waiting: Path, *named: str) -> None:
    """Exit 3, no traceback, the message in Indonesian then English naming what is wrong, the inbox untouched."""
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert done.returncode == 3, said[-3000:]
    assert "Traceback" not in said and " / " in said, said
    for name in named:
        assert name in said, said
    assert waiting.exists() and not Zones(waiting.parents[2]).ledger_db.exists()


@pytest.mark.slow
def test_dask_runner_publishes_the_same_counts_as_the_thread_runner(
    tmp_path, key_file, samples, prefect_harness, prefect_api, sdmi_run
):
    results = {}
    for kind in ("threads", "dask"):
        home = tmp_path / kind
        shutil.copytree(samples, home / "inbox")
        env = {**os.environ, "PREFECT_HOME": str(prefect_harness), "PREFECT_API_URL": prefect_api,
               "SDMI_TASK_RUNNER": kind, "SDMI_WORKERS": "2"}  # fmt: skip
        results[kind], stderr = sdmi_run(home, key_file, env)
        assert "Nanny failed to start" not in stderr
    keys = ("processed", "rejected", "held", "rows_read", "rows_accepted", "rows_quarantined", "rows_published",
            "placements_published")  # fmt: skip
    assert {k: results["dask"][k] for k in keys} == {k: results["threads"][k] for k in keys}
    assert results["dask"]["rows_read"] == 1000


@pytest.mark.parametrize(
    ("address", "taken"),
    [("tcp://scheduler:8786", True), ("scheduler.example.org:8786", True), ("tls://10.0.0.5:8786", True),
     ("tcp://[::1]:8786", True), ("not-a-url", False), ("tcp://scheduler", False), ("http://scheduler:8786", False),
     ("tcp://scheduler:0", False), ("tcp://scheduler:99999", False)],
)  # fmt: skip
def test_a_scheduler_address_is_taken_in_the_forms_dask_reads_and_no_other(monkeypatch, address, taken):
    monkeypatch.setenv("SDMI_DASK_ADDRESS", address)
    if taken:
        assert settings.dask_address() == address
    else:
        with pytest.raises(settings.SettingError, match="SDMI_DASK_ADDRESS must be a Dask scheduler address"):
            settings.dask_address()


def test_run_with_a_scheduler_address_that_is_no_address_exits_3_before_any_file_is_claimed(
    tmp_path, key_file, samples
):
    waiting = _one_file_inbox(tmp_path, samples)
    env = {**os.environ, "SDMI_TASK_RUNNER": "dask", "SDMI_DASK_ADDRESS": "not-a-url"}
    done = _sdmi_run(tmp_path, key_file, env)
    _refused_before_any_claim(done, waiting, "SDMI_DASK_ADDRESS harus", "SDMI_DASK_ADDRESS must be", "'not-a-url'")


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["nothing-listening", "no-no-workers-timeout"])
def test_run_with_a_scheduler_it_cannot_use_exits_3_before_any_file_is_claimed(
    tmp_path, key_file, samples, prefect_api, scheduler
):
    from distributed import LocalCluster

    from pipelines.serve import free_port

    waiting = _one_file_inbox(tmp_path, samples)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SDMI_TASK_RUNNER": "dask"}
    if scheduler == "nothing-listening":
        address = f"tcp://127.0.0.1:{free_port()}"
        done = _sdmi_run(tmp_path, key_file, {**env, "SDMI_DASK_ADDRESS": address})
        _refused_before_any_claim(done, waiting, address, "did not answer within 10 s", "no file was claimed")
        return
    with LocalCluster(n_workers=0, dashboard_address=":0") as cluster:  # a scheduler as Dask starts it by default
        done = _sdmi_run(tmp_path, key_file, {**env, "SDMI_DASK_ADDRESS": cluster.scheduler_address})
    _refused_before_any_claim(done, waiting, "no-workers-timeout", "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT")


@pytest.mark.slow
def test_the_runners_own_cluster_fails_a_file_left_30_s_without_any_worker():
    with flows.make_task_runner("dask", 1) as runner:
        assert runner.client.cluster.scheduler.no_workers_timeout == 30


@pytest.mark.slow
def test_workers_that_are_all_gone_end_the_run_with_its_files_as_errors_left_in_flight_for_the_next_run(
    tmp_path, key_file, samples, prefect_api
):
    import dask
    from distributed import LocalCluster

    from pipelines.ledger import IN_FLIGHT, Ledger
    from pipelines.locking import writer_lock

    other = tmp_path / "other-deployment"  # the worker's `pipelines` does not import: it cannot load the task
    (other / "pipelines").mkdir(parents=True)
    (other / "pipelines" / "__init__.py").write_text('raise ImportError("another version of pipelines")\n')
    waiting = _one_file_inbox(tmp_path, samples)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "5s"}):  # README asks it of one's own scheduler
        cluster = LocalCluster(n_workers=0, dashboard_address=":0")
    with cluster:
        worker = subprocess.Popen(
            [str(BIN / "dask"), "worker", cluster.scheduler_address, "--nthreads", "1", "--no-dashboard"],
            env={**env, "PYTHONPATH": str(other)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not cluster.scheduler.workers and time.monotonic() < deadline:
                time.sleep(0.2)
            assert cluster.scheduler.workers, "the worker never joined"
            dask_env = {**env, "SDMI_TASK_RUNNER": "dask", "SDMI_DASK_ADDRESS": cluster.scheduler_address}
            done = _sdmi_run(tmp_path, key_file, dask_env, timeout=300)  # before: no end, the writer lock held
        finally:
            worker.kill()
            worker.wait()
    assert done.returncode == 2, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["received"] == summary["errors"] == 1
    assert [f["reason"] for f in summary["files"]] == ["NoWorkerError"]
    # the writer lock was let go, and the file stayed in flight: the next run takes it (as after any error)
    with writer_lock(Zones(tmp_path)):
        assert [e.file_name for e in Ledger(Zones(tmp_path).ledger_db).files(status=IN_FLIGHT)] == [waiting.name]

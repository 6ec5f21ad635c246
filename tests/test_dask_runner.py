"""The Dask task runner (prefect-dask, 2 worker processes) publishes what the thread runner publishes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import demo

SDMI = str(Path(sys.executable).with_name("sdmi"))


def _run(home: Path, key_file: Path, prefect_home: Path, api: str, **env: str) -> dict:
    full = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_API_URL": api, **env}
    proc = subprocess.run(
        [SDMI, "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0", "--json"],
        env=full, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nanny failed to start" not in proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.slow
def test_dask_runner_publishes_the_same_counts_as_the_thread_runner(tmp_path, key_file, prefect_harness, prefect_api):
    samples = tmp_path / "samples"
    demo.generate(samples, rows=1000)
    results = {}
    for kind in ("threads", "dask"):
        home = tmp_path / kind
        shutil.copytree(samples, home / "inbox")
        results[kind] = _run(home, key_file, prefect_harness, prefect_api, SDMI_TASK_RUNNER=kind, SDMI_WORKERS="2")
    keys = ("processed", "rejected", "held", "rows_read", "rows_accepted", "rows_quarantined", "rows_published",
            "placements_published")  # fmt: skip
    assert {k: results["dask"][k] for k in keys} == {k: results["threads"][k] for k in keys}
    assert results["dask"]["rows_read"] == 1000

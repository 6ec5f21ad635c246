"""The Dask task runner (prefect-dask, 2 worker processes) publishes what the thread runner publishes."""

from __future__ import annotations

import os
import shutil

import pytest

from pipelines import demo


@pytest.mark.slow
def test_dask_runner_publishes_the_same_counts_as_the_thread_runner(
    tmp_path, key_file, prefect_harness, prefect_api, sdmi_run
):
    samples = tmp_path / "samples"
    demo.generate(samples, rows=1000)
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

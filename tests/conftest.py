"""Shared fixtures. Prefect runs against one temporary home per test session (its harness costs ~10 s)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="sdmi-prefect-home-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)  # each run (and xdist worker) made one, kept
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("SDMI_KEY_FILE", None)
os.environ.pop("SDMI_KEY", None)


# Seconds the slowest test files took (`pytest -n 2 --dist loadfile --durations=0`, summed per file, on a busy
# machine: the order is what counts). `make test`
# hands files to its workers in collection order (--no-loadscope-reorder): heaviest first, so that the run does not
# end waiting on one long file that started last. Files not listed keep their order after these.
SLOW_FILES = {
    "test_prefect_server.py": 302, "test_bench.py": 196, "test_reliability.py": 144, "test_serve.py": 123,
    "test_publish.py": 110, "test_cli.py": 89, "test_dask_runner.py": 74, "test_end_to_end.py": 53,
    "test_bad_input_end_to_end.py": 49, "test_report_streaming.py": 42, "test_rollback.py": 33,
    "test_onboarding.py": 26, "test_prefect_no_personal_data.py": 25, "test_chunked_processing.py": 21,
    "test_personal_data.py": 21, "test_notebooks.py": 11, "test_demo.py": 10,
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -SLOW_FILES.get(item.path.name, 0))  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def prefect_home() -> Path:
    return Path(_PREFECT_HOME)


@pytest.fixture(scope="session")
def prefect_harness(prefect_home):
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield prefect_home


@pytest.fixture(scope="session")
def prefect_api(prefect_harness) -> str:
    """The harness server's API URL, for subprocesses: each then skips starting its own temporary server."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    from pipelines.keys import create_key_file

    return create_key_file(tmp_path / "secrets" / "worker.key")


@pytest.fixture
def sdmi_run() -> Callable[..., tuple[dict, str]]:
    """`sdmi run --json` as a process on a home (the environment given whole); its summary and stderr."""

    def run(home: Path, key_file: Path, env: dict[str, str], timeout: float = 900) -> tuple[dict, str]:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("sdmi")), "run", "--home", str(home), "--key-file", str(key_file),
             "--stable-seconds", "0", "--json"],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.splitlines()[-1]), proc.stderr

    return run

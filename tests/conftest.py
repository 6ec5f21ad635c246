"""Shared fixtures. Prefect runs against one temporary home per test session (its harness costs ~10 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="sdmi-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("SDMI_KEY_FILE", None)
os.environ.pop("SDMI_KEY", None)


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

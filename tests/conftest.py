"""Shared fixtures. Prefect runs against one temporary home per test session (its harness costs ~10 s)."""

from __future__ import annotations

import os
import tempfile
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

"""Prefect's temporary API server, launched before this process imports the rest, so that the two overlap.

With no API configured, Prefect starts a temporary server at the first flow call: it imports its server
module here (1.5 s), launches the server process and waits for it to answer (3.7 s, py-spy `--idle` on
`sdmi publish`), with this process otherwise idle. `launch()` starts the same server process the same way
(uvicorn on Prefect's app factory, UI off, ephemeral services) before Prefect's settings are imported, and
makes it Prefect's API for the rest of the process; the caller imports the stages and GX meanwhile, then
calls `ready()` before the first flow. The server stops when the process exits, after Prefect has sent
its last logs and events. With an API configured (`PREFECT_API_URL`, in the environment or a profile)
nothing is launched.
"""

from __future__ import annotations

import atexit
import importlib.util
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path


class ServerDidNotStart(RuntimeError):
    pass


@dataclass
class TemporaryServer:
    env: dict[str, str]
    timeout_s: float
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        self.port = _free_port()
        app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent  # type: ignore[arg-type]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=self.env,
        )  # fmt: skip
        atexit.register(self.stop)  # whatever happens before `ready()`

    def ready(self) -> None:
        """Wait until the server answers, starting it again on another port if it lost the race for this one."""
        deadline = time.perf_counter() + self.timeout_s
        restarts = 0
        while time.perf_counter() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                if restarts == 3:
                    break
                restarts += 1
                self.start()
                continue
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerDidNotStart(
            f"Server Prefect sementara tidak menjawab dalam {self.timeout_s:.0f} detik; atur PREFECT_API_URL ke "
            f"server Prefect yang berjalan. / Prefect's temporary server did not answer within "
            f"{self.timeout_s:.0f} s; set PREFECT_API_URL to a running Prefect server."
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch() -> TemporaryServer | None:
    """Start Prefect's temporary server now, unless an API is configured or Prefect may not start one.
    Call `ready()` on the result before the first flow call.

    Unless the environment names an API, the server process starts before Prefect's settings are even
    imported (0.75-0.85 s): it reads the same environment and settings files itself. When the settings then
    name an API (a profile) or forbid a temporary server, it is stopped again and None is returned."""
    import os

    early = None
    if not os.environ.get("PREFECT_API_URL"):
        early = TemporaryServer(
            {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"},
            timeout_s=0,  # set below, from the settings
        )  # as SubprocessASGIServer launches it
        early.start()

    from prefect.context import refresh_global_settings_context
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    if early is None or PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        if early is not None:
            early.stop()
        return None
    server = early
    server.timeout_s = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    # Prefect's API for the rest of this process (its threads and any worker process it starts included)
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ["PREFECT_UI_URL"] = ""  # no UI is served: no "View at" link to a page that is not there
    refresh_global_settings_context()
    return server


def without_heartbeats() -> AbstractContextManager:
    """Flow runs in this context start no heartbeat thread. For the temporary server only: it goes with the
    process, so no one is left to notice a missing heartbeat. Prefect 3.9 starts one per flow run (every
    180 s by default) that sleeps a second at a time, and the run's end waits for its sleep: a flow run
    returned 0.22-0.96 s after its last step with it, 0.017-0.03 s without (five runs each)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})

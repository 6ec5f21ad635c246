"""Prefect's temporary API server, launched before this process imports the rest, so that the two overlap.

With no API configured, Prefect starts a temporary server at the first flow call: it imports its server
module here (1.5 s), launches the server process and waits for it to answer (3.7 s, py-spy `--idle` on
`sdmi publish`), with this process otherwise idle. `launch()` starts the same server process the same way
(uvicorn on Prefect's app factory, UI off, ephemeral services) before Prefect's settings are imported, and
makes it Prefect's API for the rest of the process; the caller imports the stages and GX meanwhile, then
calls `ready()` before the first flow. The server stops when the process exits, after Prefect has sent
its last logs and events; should the process die without its exit handlers (SIGKILL, the OOM killer), Linux
stops the server with it (`die_with_parent`). With an API configured (`PREFECT_API_URL`, in the environment
or a profile) nothing is launched, and `check_configured_api()` makes sure that API answers.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path


class ServerDidNotStart(RuntimeError):
    """The Prefect server this process starts did not come up (a port in use, a timeout): exit 3."""


class ApiUnreachable(RuntimeError):
    """The configured Prefect API (PREFECT_API_URL) does not answer: bad configuration, exit 3."""


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for a server this process starts: Linux sends the child SIGTERM when this process dies,
    whatever kills it (SIGKILL, the OOM killer), so that no server outlives its command. The exit handlers
    stop it otherwise; this is for when they do not run. None where `prctl` is not available.

    The signal comes when the *thread* that started the child ends: start servers from the main thread."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:  # in the child, between fork and exec: nothing that imports or takes a lock
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


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
            preexec_fn=die_with_parent(),
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


def check_configured_api(api_url: str | None = None) -> None:
    """Raise ApiUnreachable unless the configured Prefect API (`api_url`, else PREFECT_API_URL from the
    environment or the profile) answers its health check, asked with Prefect's own client (its key, its TLS
    settings). Without it a flow fails at its first call with a traceback, and `sdmi serve` only after its
    banner. Nothing is asked when no API is configured."""
    from prefect._internal.urls import strip_auth_from_url
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = api_url or PREFECT_API_URL.value()
    if not url:
        return
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is None:
        return
    shown = strip_auth_from_url(str(url))
    reason = " ".join(f"{type(problem).__name__}: {problem}".split())[:300]
    raise ApiUnreachable(
        f"API Prefect yang diatur (PREFECT_API_URL={shown}) tidak dapat dihubungi ({reason}). Jalankan server "
        "itu, perbaiki PREFECT_API_URL, atau hapus pengaturannya agar sdmi memakai server Prefect sementara. / "
        f"The configured Prefect API (PREFECT_API_URL={shown}) cannot be reached ({reason}). Start that server, "
        "correct PREFECT_API_URL, or unset it so that sdmi uses a temporary Prefect server."
    )


def without_heartbeats() -> AbstractContextManager:
    """Flow runs in this context start no heartbeat thread. For the temporary server only: it goes with the
    process, so no one is left to notice a missing heartbeat. Prefect 3.9 starts one per flow run (every
    180 s by default) that sleeps a second at a time, and the run's end waits for its sleep: a flow run
    returned 0.22-0.96 s after its last step with it, 0.017-0.03 s without (five runs each)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})

"""`sdmi serve`: the pipeline as long-running Prefect deployments.

Two deployments are served by one Prefect runner: `sdmi-ingest/inbox` polls the inbox every `--interval`
seconds (ingest only), `sdmi-scheduled-publish/publish` publishes on a cron or interval schedule, and only
when the ledger changed since the newest release (so a `sdmi rollback` holds until something changes). Both
have a deployment concurrency limit of 1 with CANCEL_NEW: a slow pass never builds a backlog of late runs,
and the writer lock still keeps them apart.

Why a Prefect server is started here: Prefect 3.9 without PREFECT_API_URL runs against an *ephemeral*
server (a uvicorn subprocess started by the first client) that runs no scheduler service, so
`flow.serve(interval=...)` creates the deployment, warns "Cannot schedule flows on an ephemeral server"
and never runs anything. With no PREFECT_API_URL, `sdmi serve` therefore starts `prefect server start`
on 127.0.0.1 (database in $PREFECT_HOME, analytics off) for its own lifetime and stops it on exit.

Stopping: Ctrl-C or SIGTERM stops the runner, which cancels a run in progress (its subprocess is
terminated). That abandons the file in hand safely: the ledger still lists it as in flight, raw/ holds the
archived copy, and the next run's `inbox.recover` + `stage.clean_leftovers` process it again from raw.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from pipelines import flows, settings
from pipelines.prefect_api import ServerDidNotStart, check_configured_api, die_with_parent
from pipelines.settings import Zones
from pipelines.status import publish_needed


# ------------------------------------------------------------------------------------------ server
@dataclass
class LocalServer:
    """A `prefect server start` subprocess owned by this process."""

    process: subprocess.Popen
    api_url: str

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether the server could not listen on 127.0.0.1:`port` (bound as uvicorn binds, SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_healthy(api_url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll /health until the server answers; fail early if its process died (ServerDidNotStart)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerDidNotStart(
                f"Server Prefect untuk `sdmi serve` berhenti (kode {process.returncode}) sebelum siap di "
                f"{api_url}. / The Prefect server of `sdmi serve` exited (code {process.returncode}) before it "
                f"was ready at {api_url}."
            )
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise ServerDidNotStart(
        f"Server Prefect di {api_url} tidak menjawab dalam {timeout:.0f} detik (SDMI_PREFECT_SERVER_TIMEOUT); "
        f"atur PREFECT_API_URL ke server Prefect yang berjalan. / The Prefect server at {api_url} did not answer "
        f"within {timeout:.0f} s (SDMI_PREFECT_SERVER_TIMEOUT); set PREFECT_API_URL to a running Prefect server."
    )


def start_local_server(port: int | None = None, timeout: float | None = None) -> LocalServer:
    """`prefect server start` on loopback, in its own session so a terminal's Ctrl-C reaches us first, and
    stopped by Linux should this process die without stopping it (`die_with_parent`). ServerDidNotStart
    when `port` is taken or the server does not answer within `timeout` (SDMI_PREFECT_SERVER_TIMEOUT)."""
    if timeout is None:
        timeout = settings.prefect_server_timeout()
    if port and port_in_use(port):
        raise ServerDidNotStart(
            f"Port {port} di 127.0.0.1 sudah dipakai; pilih --server-port lain, atau jangan pakai opsi itu agar "
            f"port bebas dipilih. / Port {port} on 127.0.0.1 is already in use; choose another --server-port, or "
            "leave it out for a free port."
        )
    port = port or free_port()
    prefect_cli = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect_cli)] if prefect_cli.exists() else [sys.executable, "-m", "prefect"]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [*cmd, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )
    server = LocalServer(process, f"http://127.0.0.1:{port}/api")
    try:
        wait_healthy(server.api_url, timeout, process)
    except BaseException:
        server.stop()
        raise
    return server


# ------------------------------------------------------------------------------------------ publish
@flow(name="sdmi-scheduled-publish", log_prints=False)
def scheduled_publish_flow(home: str | None = None, keep: int = 5, wait_for_lock: float = 300) -> dict:
    """Publish under the writer lock, and only when something changed: a schedule must not churn releases."""
    zones = Zones.from_env(home).ensure()
    with flows.writer_lock(zones, wait_for_lock):
        if not publish_needed(zones):
            get_run_logger().info("nothing changed since the newest release; not publishing")
            return {"switched": False, "skipped": True}
        result = flows.publish_flow(str(zones.home), keep=keep)
    return {**result, "skipped": False}


# ------------------------------------------------------------------------------------------ serve
class _Stop(KeyboardInterrupt):
    """SIGTERM before the runner installs its own handler: unwind like Ctrl-C so the server is stopped."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop()


@contextmanager
def prefect_api(port: int | None = None):
    """Yield the API URL to use: $PREFECT_API_URL (ApiUnreachable unless it answers), or a local server
    started (and stopped) here."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        check_configured_api(url)
        yield url, None
        return
    server = start_local_server(port)
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the runner's flow-run subprocesses
    try:
        yield server.api_url, server
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def serve(
    home: Path | None,
    key_file: Path,
    interval: float = 60,
    publish_cron: str | None = None,
    publish_interval: float | None = None,
    stable_seconds: float | None = None,
    server_port: int | None = None,
    on_ready: Any = None,  # callable(api_url): the CLI's banner
) -> None:
    """Serve ingest and publish until Ctrl-C or SIGTERM; returns after a clean shutdown."""
    from prefect import serve as prefect_serve
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.settings import PREFECT_API_URL, temporary_settings

    zones = Zones.from_env(home).ensure()
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    ingest_params: dict[str, Any] = {
        "home": str(zones.home),
        "key_file": str(key_file),
        "publish": False,
        "wait_for_lock": max(60.0, interval),
    }
    if stable_seconds is not None:
        ingest_params["stable_seconds"] = stable_seconds
    try:
        with prefect_api(server_port) as (api_url, _server), temporary_settings({PREFECT_API_URL: api_url}):
            ingest = flows.ingest_flow.with_options(task_runner=flows.make_task_runner()).to_deployment(
                name="inbox",
                interval=interval,
                parameters=ingest_params,
                concurrency_limit=one_at_a_time,
                paused=False,
                description="One pass over the inbox (no publish); polled on an interval by `sdmi serve`.",
            )
            every = 3600.0 if publish_interval is None else publish_interval  # 0 is refused by the CLI, not 3600
            schedule: dict[str, Any] = {"cron": publish_cron} if publish_cron else {"interval": every}
            publish = scheduled_publish_flow.to_deployment(
                name="publish",
                parameters={"home": str(zones.home)},
                concurrency_limit=one_at_a_time,
                paused=False,
                description="Publish a release when the ledger changed; scheduled by `sdmi serve`.",
                **schedule,
            )
            if on_ready:
                on_ready(api_url)
            prefect_serve(
                ingest,
                publish,
                print_starting_message=False,
                query_seconds=max(1.0, min(10.0, interval)),
            )
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)

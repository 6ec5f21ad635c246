"""Start-up cost of `sdmi run`: how long from launching it to the first file in hand.

Measured on real processes, as a scheduler launches them: wall time from spawn to the `sdmi: files` line
(printed right after the inbox is claimed), the flow's own `timings['claim']`, and the whole process.
`make bench` calls `measure_startup(home)`; `python -m pipelines.startup HOME` prints the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _sdmi() -> list[str]:
    script = Path(sys.executable).with_name("sdmi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]


def time_run(home: Path, key_file: Path, env: dict[str, str] | None = None, publish: bool = False) -> dict:
    """One `sdmi run --json` in a fresh process: seconds to first file in hand, in all, and flow timings."""
    cmd = [*_sdmi(), "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0"]
    cmd.append("--json")
    if not publish:
        cmd.append("--no-publish")
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    in_hand = None
    summary: dict = {}
    for line in proc.stdout:
        if in_hand is None and line.startswith("sdmi: files"):
            in_hand = time.perf_counter() - started
        elif line.startswith("{"):
            summary = json.loads(line)
    code = proc.wait()
    wall = time.perf_counter() - started
    timings = summary.get("timings") or {}
    return {
        "exit_code": code,
        "wall_s": round(wall, 2),
        "first_file_in_hand_s": round(in_hand, 2) if in_hand is not None else None,
        "flow_claim_s": timings.get("claim"),
        "flow_total_s": timings.get("total"),
        "files": summary.get("received"),
    }


def measure_startup(home: Path, prefect_api_url: str | None = None) -> dict:
    """Start-up figures on an empty inbox and a one-file inbox, under `home` (created, left for inspection).

    A fresh PREFECT_HOME: `empty_first` pays for creating Prefect's database, the others are what a
    scheduled run pays. Pass `prefect_api_url` to measure against a running server.
    """
    from pipelines import demo
    from pipelines.keys import create_key_file

    home = Path(home)
    key = home / "secrets" / "startup.key"
    if not key.exists():
        create_key_file(key)
    env = {
        "PREFECT_HOME": str(home / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    out: dict = {"prefect_api": prefect_api_url or "ephemeral (a temporary server per process)"}
    empty = home / "empty"
    out["empty_first"] = time_run(empty, key, env)
    out["empty"] = time_run(empty, key, env)
    one = home / "one"
    samples = Path(tempfile.mkdtemp(prefix="sdmi-startup-"))
    try:
        demo.generate(samples, rows=1000)
        source = next(iter(sorted((samples / "p3mi_mitra_sejahtera").iterdir())))
        target = one / "inbox" / "p3mi_mitra_sejahtera"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target / source.name)
        out["one_file"] = time_run(one, key, env)
    finally:
        shutil.rmtree(samples, ignore_errors=True)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="sdmi-startup-home-"))
    print(json.dumps(measure_startup(target, os.environ.get("PREFECT_API_URL")), indent=1))

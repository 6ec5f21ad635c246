"""The quick sample of the reliability guarantees (the long versions are in tests/chaos, `make chaos`).

Real `sdmi run` processes killed with SIGKILL at named points (pipelines/faults.py), rerun, and compared with a
run that was never interrupted; two runs at once; a file replaced while it is being hashed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from chaos.harness import (
    base_env,
    crash_and_recover,
    drop,
    fingerprint,
    inbox_files,
    invariants,
    prefect_api_url,
    run_sdmi,
)

from pipelines import demo, inbox, settings
from pipelines.keys import create_key_file
from pipelines.ledger import Ledger
from pipelines.settings import Zones

ROWS = 1000
SEED = 11


@pytest.fixture(scope="module")
def world(tmp_path_factory, prefect_harness):
    """One demo inbox (fixed bytes), one key, the subprocess environment pointing at the session's Prefect."""
    root = tmp_path_factory.mktemp("reliability")
    source = root / "source"
    demo.generate(source, seed=SEED, rows=ROWS)
    key = create_key_file(root / "secrets" / "worker.key")
    env = base_env(prefect_api_url(), prefect_harness)
    return root, source, key, env


@pytest.fixture(scope="module")
def two_runs_at_once(world):
    """Two `sdmi run` started together on one fresh data root; the winner's release is the reference."""
    root, source, key, env = world
    home = root / "concurrent"
    drop(source, home, inbox_files(source))
    results: dict[int, object] = {}

    def go(i: int) -> None:
        results[i] = run_sdmi(home, key, env)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return home, [results[0], results[1]]


@pytest.fixture(scope="module")
def reference(two_runs_at_once) -> dict[str, str]:
    home, runs = two_runs_at_once
    assert any(r.normal for r in runs), [r.stderr[-800:] for r in runs]
    return fingerprint(home)


def test_two_runs_at_once_one_leaves_with_a_clear_message_and_nothing_is_processed_twice(two_runs_at_once):
    home, runs = two_runs_at_once
    codes = sorted(r.returncode for r in runs)
    loser = next((r for r in runs if r.returncode == 4), None)
    assert loser is not None, f"expected one run to exit 4 (writer lock held), got {codes}"
    assert "another sdmi run or publish is in progress" in loser.stderr
    winner = next(r for r in runs if r is not loser)
    assert winner.normal, winner.stderr[-800:]
    summary = winner.summary
    ledger = Ledger(Zones(home).ledger_db)
    assert summary["received"] == len(ledger.files()) == len({f.sha256 for f in ledger.files()})
    assert [r["outcome"] for r in ledger.receipts()] == ["new"] * len(ledger.files())
    assert invariants(home) == []


@pytest.mark.parametrize(
    "fault",
    [
        "inbox.mid_archive:2",  # temp copy in raw/ fsynced, not renamed; file still in the inbox
        "stage.mid_staging:1",  # staging/.tmp-<batch> complete, not renamed; ledger still 'archived'
        "report.mid_write:3",  # a report file under its temporary name, not renamed; the file still in flight
        "publish.between_switches:1",  # first release: `current` switched, `sdmi.duckdb` not yet created
    ],
)
def test_a_kill_at_any_point_then_a_rerun_gives_the_uninterrupted_result(fault, world, reference, tmp_path):
    _, source, key, env = world
    home = tmp_path / "home"
    drop(source, home, inbox_files(source))
    outcome = crash_and_recover(home, key, env, fault, reference)
    assert outcome.killed, outcome.problems
    assert outcome.problems == []


# ------------------------------------------------------------------------------------- files that change

WRITER = """
import os, sys, time
path, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
folder = os.path.dirname(path)
copies = [os.path.join(folder, ".copy-a"), os.path.join(folder, ".copy-b")]  # hidden: never candidates
if mode == "replace":
    for c in copies:
        with open(path, "rb") as src, open(c, "wb") as dst:
            dst.write(src.read())
print("ready", flush=True)
end = time.time() + seconds
i = 0
while time.time() < end:
    if mode == "append":
        with open(path, "ab") as fh:
            fh.write(b"x" * 4096)
    else:  # a new file renamed over the old name, as copy tools do
        source = copies[i % 2]
        os.utime(source, None)
        tmp = path + ".part"
        os.link(source, tmp)
        os.replace(tmp, path)
    i += 1
    time.sleep(0.002)
"""


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_a_file_changed_by_another_process_while_hashed_is_left_for_the_next_pass(mode, tmp_path):
    zones = Zones(tmp_path / "home").ensure()
    ledger = Ledger(zones.ledger_db)
    path = zones.inbox / "bp2mi_siskop2mi" / "growing.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(1024) * 32 * 1024)  # 32 MiB: hashing takes long enough to see the writer
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode, "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"  # its copies made, the writing loop starts now
        time.sleep(0.1)
        claims = [inbox.claim(zones, ledger, "bp2mi_siskop2mi", path) for _ in range(3)]
    finally:
        writer.kill()
        writer.wait(timeout=10)
    assert [c.kind for c in claims] == ["unstable"] * 3
    assert ledger.files() == [] and ledger.receipts() == []
    assert not [p for p in zones.raw.rglob("*") if p.is_file()]
    assert path.exists()
    settled = inbox.claim(zones, ledger, "bp2mi_siskop2mi", path)  # writer gone: the next pass takes it
    assert settled.kind == "new"
    assert settled.entry.sha256 == settings.sha256_file(zones.home / settled.entry.raw_path)
    assert not path.exists()


# ------------------------------------------------------------------------------------- the injector itself

PROBE = """
from pipelines import faults
for i in range(1, 4):
    faults.point("stage.mid_staging")
    print(i, flush=True)
"""


def test_a_fault_kills_the_process_with_sigkill_exactly_at_the_nth_time_a_point_is_reached(tmp_path):
    trace = tmp_path / "trace"
    env = {**os.environ, "SDMI_FAULT": "stage.mid_staging:2", "SDMI_FAULT_TRACE": str(trace)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9
    assert done.stdout.split() == ["1"]
    assert trace.read_text().split() == ["stage.mid_staging"] * 2


def test_an_unknown_fault_point_is_an_error_not_a_silent_no_op():
    env = {**os.environ, "SDMI_FAULT": "stage.mid_stagin"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "unknown fault point" in done.stderr

"""Exactly once under kill -9: at seeded points, the crashed run plus a rerun equals a run never interrupted.

Two starting states, both from the same inbox bytes and key file:
- fresh: an empty data root, all demo files dropped at once (the first release is built);
- base: a data root that already published a first wave (one SISKOP2MI export and Cilacap's file), with the
  second wave dropped (the later SISKOP2MI export supersedes records of the first).
A clean, traced run of each state is the reference and the census: how often each fault point is reached.
A seeded RNG then picks (state, point, n-th occurrence): every point once per state, the rest at random.

Knobs (environment): SDMI_CHAOS_SCENARIOS (50), SDMI_CHAOS_SEED, SDMI_CHAOS_ROWS (2500), SDMI_CHAOS_JOBS (2
scenarios at a time; each is a chain of subprocesses on its own data root).
"""

from __future__ import annotations

import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from chaos.harness import (
    OUTCOMES,
    Outcome,
    Start,
    clone_home,
    crash_and_recover,
    diff_fingerprints,
    drop,
    fingerprint,
    run_sdmi,
)

from pipelines import faults

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3600)]  # the shared fixture runs every scenario

SCENARIOS = int(os.environ.get("SDMI_CHAOS_SCENARIOS", "50"))
SEED = int(os.environ.get("SDMI_CHAOS_SEED", "20241128"))
JOBS = int(os.environ.get("SDMI_CHAOS_JOBS", "2"))


def _plan(starts: dict[str, Start]) -> list[tuple[str, str]]:
    """Every point reached once per start (n=1), then seeded random (start, point, n) up to SCENARIOS."""
    rng = random.Random(SEED)
    chosen: list[tuple[str, str]] = []
    for name, start in starts.items():
        chosen += [(name, f"{p}:1") for p in faults.POINTS if start.census[p]]
    rng.shuffle(chosen)
    chosen = chosen[:SCENARIOS]
    pool = [(name, p, c) for name, s in starts.items() for p, c in sorted(s.census.items())]
    while len(chosen) < SCENARIOS and len(set(chosen)) < sum(c for *_, c in pool):
        name, point, count = rng.choice(pool)
        pick = (name, f"{point}:{rng.randint(1, count)}")
        if pick not in chosen:
            chosen.append(pick)
    return chosen


@pytest.fixture(scope="session")
def outcomes(world, starts) -> list[Outcome]:
    root, source, key, env = world
    plan = _plan(starts)

    def one(i: int) -> Outcome:
        name, fault = plan[i]
        start = starts[name]
        home = root / f"scenario-{i:03d}"
        clone_home(start.snapshot, home)
        drop(source, home, start.files)
        outcome = crash_and_recover(home, key, env, fault, start.reference, start=name)
        if outcome.held:
            shutil.rmtree(home, ignore_errors=True)  # keep broken ones for a post-mortem
        OUTCOMES.append(outcome)  # as each ends: an interrupted session still prints what it saw
        return outcome

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        return list(pool.map(one, range(len(plan))))


def test_an_uninterrupted_run_is_reproducible_so_equality_means_something(world, starts):
    """Same inbox bytes and key, a second clean run: equal fingerprints (RUN_DEPENDENT columns aside)."""
    root, source, key, env = world
    home = root / "ref-fresh-again"
    drop(source, home, starts["fresh"].files)
    done = run_sdmi(home, key, env)
    assert done.normal, done.stderr[-1500:]
    assert diff_fingerprints(fingerprint(home), starts["fresh"].reference) == []


def test_every_fault_point_is_reached_by_a_clean_run(starts):
    reached = set(starts["fresh"].census) | set(starts["base"].census)
    assert reached == set(faults.POINTS)


@pytest.mark.parametrize("i", range(SCENARIOS), ids=lambda i: f"scenario-{i:03d}")
def test_a_kill_at_a_seeded_point_then_a_rerun_equals_the_uninterrupted_run(i, outcomes):
    if i >= len(outcomes):
        pytest.skip("fewer distinct (point, n) pairs than SDMI_CHAOS_SCENARIOS")
    o = outcomes[i]
    assert o.verdict == "held", f"{o.start} {o.point}:{o.n}: " + "; ".join(o.problems)

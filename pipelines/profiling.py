"""Where a pipeline run's time goes: py-spy's samples of `sdmi run`, summed by stage and by function.

`python -m pipelines.bench --profile` records one run (files one at a time, so a sample belongs to one file's
stage) as py-spy's collapsed stacks: one line per distinct stack, `frame;frame;...;leaf count`, root first,
each frame `function (file:line)`. The file opens in speedscope (https://www.speedscope.app) or flamegraph.pl
as a flame graph; this module turns it into the two tables the README quotes.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

# The stage a frame's module works for. A sample counts for the deepest such frame in its stack: the code
# lists harmonise calls count for harmonise, the DuckDB calls publish makes count for publish.
STAGE_OF_MODULE = {
    "pipelines/inbox.py": "claim",
    "pipelines/readers.py": "read_map",
    "pipelines/mapping.py": "read_map",
    "pipelines/harmonise.py": "harmonise",
    "pipelines/validate.py": "validate",
    "pipelines/stage.py": "stage",
    "pipelines/report.py": "report",
    "pipelines/publish.py": "publish",
}
OTHER = "other"  # Prefect and the flow's own bookkeeping during the run
WAITING = "waiting"
STARTUP = "start-up"  # before the flow: Prefect's temporary server, GX's warm-up (`cli._prefect`)
IMPORTS = "imports"  # a module imported on first use during the run (GX's, mostly): a fixed cost, once
# Leaf frames of a thread that waits (for a lock, a queue, a socket): py-spy does not always see such a thread as
# idle, and its samples are not work. A thread that waits on a call in C shows the Python frame that made it.
WAITING_LEAVES = frozenset(
    {
        ("select", "selectors.py"),
        ("EpollSelector.select", "selectors.py"),
        ("Condition.wait", "threading.py"),
        ("Event.wait", "threading.py"),
        ("Thread.join", "threading.py"),
        ("Thread._wait_for_tstate_lock", "threading.py"),
        ("_worker", "concurrent/futures/thread.py"),
    }
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy next to this interpreter (the project's environment), else one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record_command(output: Path, rate: int) -> list[str]:
    """The prefix that runs a command under py-spy, writing collapsed stacks to `output`."""
    exe = py_spy()
    if exe is None:
        raise FileNotFoundError(
            "py-spy tidak terpasang; pasang dengan: pip install -e '.[dev]' / "
            "py-spy is not installed; install it with: pip install -e '.[dev]'"
        )
    return [exe, "record", "--nonblocking", "--rate", str(rate), "--format", "raw", "--output", str(output), "--"]


def _frame(text: str) -> tuple[str, str]:
    """(function, file) of one frame as py-spy writes it; a frame it could not name is kept whole."""
    m = _FRAME.match(text.strip())
    return (m["function"], m["file"]) if m else (text.strip(), "")


def stage_of(stack: list[str]) -> str:
    if _frame(stack[-1]) in WAITING_LEAVES:
        return WAITING
    frames = [_frame(f) for f in stack]
    if ("_prefect", "pipelines/cli.py") in frames:
        return STARTUP
    if any(function == "_find_and_load" and file.startswith("<frozen importlib") for function, file in frames):
        return IMPORTS
    for _, file in reversed(frames):
        if file in STAGE_OF_MODULE:
            return STAGE_OF_MODULE[file]
    return OTHER


def summarise(collapsed: str, rate: int, top: int = 15) -> dict:
    """Seconds by stage, and the functions the samples were in (their own time, not their callees'), waiting
    left out of the functions. Seconds are thread-seconds: two threads at work in the same second count twice."""
    by_stage: Counter[str] = Counter()
    by_function: Counter[tuple[str, str]] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        n = int(count_text)
        stack = stack_text.split(";")
        stage = stage_of(stack)
        function, file = _frame(stack[-1])
        by_stage[stage] += n
        if stage != WAITING:
            by_function[(f"{function} ({file})" if file else function, stage)] += n
        samples += n
    return {
        "rate_hz": rate,
        "samples": samples,
        "seconds": round(samples / rate, 2),
        "seconds_by_stage": {k: round(v / rate, 2) for k, v in by_stage.most_common()},
        "top_functions": [
            {"function": f, "stage": s, "seconds": round(n / rate, 2)} for (f, s), n in by_function.most_common(top)
        ],
    }


def table_text(profile: dict) -> str:
    lines = [
        f"profile (py-spy, {profile['rate_hz']} samples/s of the Python threads, files one at a time; "
        f"flame graph: {profile.get('file', '-')}):",
        "  thread-seconds by stage: "
        + ", ".join(f"{k} {v:.2f}" for k, v in profile["seconds_by_stage"].items())
        + f"  (sampled {profile['seconds']:.2f}; the flow took {profile.get('work_s', 0):.2f} s)",
        "  functions the samples were in (own time, waiting left out):",
    ]
    lines += [f"  {t['seconds']:>7.2f} s  {t['stage']:<9}  {t['function']}" for t in profile["top_functions"]]
    return "\n".join(lines)

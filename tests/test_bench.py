"""`make bench` runs end to end on a small inbox and reports every field the README table needs.

Behaviour only: the figures at 2,000 rows mean nothing (start-up dominates); benchmarks are not tests.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipelines import bench

HAVE_DLT = importlib.util.find_spec("dlt") is not None  # the peer needs the bench extra (make bench installs it)


def test_measure_reports_tree_rss_and_cpu(tmp_path: Path) -> None:
    import sys

    child = "import time; x = bytearray(64 << 20); time.sleep(0.5); print('{\"ok\": 1}')"
    m = bench.measure([sys.executable, "-c", child])
    assert m.returncode == 0
    assert bench._last_json(m.stdout) == {"ok": 1}
    assert m.peak_rss >= 64 << 20  # the child holds its 64 MiB for half a second: several polls see it
    assert m.cpu_s >= 0


def _summary(**counts: object) -> str:
    """The last stdout line of `sdmi run --json` (RunSummary.as_dict()), with the counts given."""
    summary = {"received": 2, "processed": 2, "held": 0, "rejected": 0, "errors": 0, "rows_read": 1000,
               "publish_failed": None, "timings": {"total": 1.0}, "exit_code": 0, **counts}  # fmt: skip
    return 'sdmi: files {"total": 2}\n' + json.dumps(summary) + "\n"


CRASHED = "import sys; print('sdmi: files {\"total\": 6}', flush=True); raise RuntimeError('crashed after claiming')"


@pytest.mark.parametrize(
    ("child", "why"),
    [
        (CRASHED, "exit code 1 and no JSON summary"),  # what Python exits with after a traceback: 1, as a held file
        (f"import sys; sys.stdout.write({_summary()!r}); sys.exit(1)", "exit code 1, the summary's 0"),
        (f"import sys; sys.stdout.write({_summary(errors=1, processed=1, exit_code=2)!r}); sys.exit(2)",
         "1 file error"),
        (f"import sys; sys.stdout.write({_summary(processed=1)!r})", "2 file.s. received, 1 processed"),
        (f"import sys; sys.stdout.write({_summary(rows_read=600)!r})", "600 rows read, 1000 expected"),
    ],
    ids=["crashed", "exit-code-not-the-summarys", "file-error", "file-unaccounted", "rows-missing"],
)  # fmt: skip
def test_a_run_that_did_not_do_all_its_work_stops_the_bench_instead_of_counting_as_a_measurement(child, why):
    import sys

    m = bench.measure([sys.executable, "-c", child])
    with pytest.raises(bench.RunFailed, match=why):
        bench.run_summary(m, rows=1000)


def test_a_progress_line_is_never_taken_for_the_summary_and_a_held_file_is_still_a_measurement():
    import sys

    assert bench._last_json('sdmi: files {"total": 6}\n') == {}
    held = f"import sys; sys.stdout.write({_summary(processed=1, held=1, exit_code=1)!r}); sys.exit(1)"
    summary = bench.run_summary(bench.measure([sys.executable, "-c", held]), rows=1000)
    assert summary["held"] == 1 and summary["exit_code"] == 1


@pytest.mark.slow
def test_bench_runs_on_2000_rows_and_emits_the_fields(tmp_path: Path, prefect_home: Path, prefect_api, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the session's server: no temporary server per run
    args = ["--rows", "2000", "--repeat", "1", "--out", str(tmp_path / "bench"), "--prefect-home", str(prefect_home),
            "--profile", "--profile-rate", "250"]  # fmt: skip
    result = bench.main(args + ([] if HAVE_DLT else ["--skip", "peer"]))
    paths = ("floor", "bound", "peer", "pipeline") if HAVE_DLT else ("floor", "bound", "pipeline")
    written = json.loads((tmp_path / "bench" / "bench-2000.json").read_text(encoding="utf-8"))
    assert written["rows_total"] == 2000
    # the three paths read the same UTF-8 CSV files
    assert written["agencies"] == ["bp2mi_siskop2mi"]
    rows = written["measured_rows"]
    for path in paths:
        r = written[path]
        assert r["rows"] == rows, path
        for key in ("rows_per_s", "work_s", "wall_s", "startup_s", "cpu_s", "peak_rss_bytes"):
            assert r[key] is not None and r[key] >= 0, (path, key)
        assert r["wall_s"] >= r["work_s"]
    stages = written["pipeline"]["stages"]
    for stage in ("claim", "harmonise", "validate", "stage", "report", "publish", "files", "total"):
        assert stage in stages, stage
    assert "read" in stages or "read_map" in stages  # the flow may time read and map together
    assert stages["total"] == written["pipeline"]["work_s"]
    assert {"pipeline_vs_floor", "bound_vs_floor", "validate_share", "validate_cpu_share"} <= set(written["ratios"])
    assert "bound / floor rows/s" in result["table"]
    # the CPU budget comes from a run with one file at a time: every stage, each file's work in it
    cpu = written["one_file_at_a_time"]["cpu_stages"]
    assert written["one_file_at_a_time"]["rows"] == rows
    assert set(bench.WORK_STAGES) <= set(cpu)
    assert cpu["harmonise"] > 0 and cpu["validate"] > 0 and cpu["publish"] > 0
    assert "CPU seconds by stage" in result["table"]
    assert written["republish"]["records"] > 0 and written["republish"]["wall_s"] > 0
    assert written["empty_inbox"]["files"] == 0 and written["empty_inbox"]["wall_s"] > 0
    assert "checked" in written["targets"] and "missed" in written["targets"]
    start = written["startup"]
    assert start["one_file"]["files"] == 1 and start["one_file"]["first_file_in_hand_s"] > 0
    assert start["empty"]["files"] == 0 and start["empty"]["wall_s"] > 0
    assert "pipeline / floor" in result["table"]
    # the hostile files: every row quarantined, and long notes; each run alone, its memory measured
    hostile = written["hostile"]
    assert hostile["all_quarantined"]["rows"] == hostile["all_quarantined"]["rows_quarantined"] > 0
    assert hostile["long_notes"]["rows"] > 0 and hostile["long_notes"]["peak_rss_bytes"] > 0
    assert "hostile file, all quarantined" in result["table"]
    assert "peak RSS < 2 GiB (long notes)" in written["targets"]["checked"]
    # many small files, one at a time: the fixed cost of a file
    small = written["small"]
    assert small["files"] > 0 and small["rows"] == small["files"] * bench.SMALL_ROWS
    assert small["per_file_s"]["files"] > 0 and small["per_file_s"]["validate"] > 0
    assert "small files (sdmi run" in result["table"]
    # the profile: py-spy's samples of a real run, by stage, and the flame graph file beside the results
    profile = written["profile"]
    assert profile["samples"] > 0 and Path(profile["file"]).stat().st_size > 0
    assert profile["seconds_by_stage"].get("publish", 0) > 0
    assert "profile (py-spy" in result["table"]
    # homes are cleaned up; the generated inputs are kept for the next run
    assert not any((tmp_path / "bench" / "homes").glob("pipeline-*"))
    assert (tmp_path / "bench" / "input-2000" / "generated.json").exists()


def test_validation_share_sets_stage_seconds_against_all_stage_seconds_not_wall_time():
    from pipelines.bench import validation_shares

    # two files side by side: 8 s of validation (1 s of it waiting for the other file's GX) in 10 s of wall
    stages = {"claim": 1.0, "read_map": 4.0, "harmonise": 7.0, "validate": 8.0, "stage": 2.0, "report": 5.0,
              "publish": 4.0, "gx_wait": 1.0, "gx": 3.0, "files": 9.0, "total": 10.0}  # fmt: skip
    shares = validation_shares(stages, wall_s=10.0)
    assert shares["validate_share"] == round(7.0 / 30.0, 3)
    assert shares["gx_share"] == round(3.0 / 30.0, 3)
    assert shares["validate_vs_wall"] == 0.7
    assert validation_shares({"validate": 0.0}, wall_s=0.0) == {}


def test_cpu_seconds_are_kept_only_when_no_two_files_ran_at_the_same_time():
    from pipelines.flows import _overlap

    assert not _overlap([])
    assert not _overlap([(0.0, 1.0), (1.0, 2.0), (5.0, 6.0)])  # one after the other
    assert _overlap([(5.0, 6.0), (0.0, 10.0), (11.0, 12.0)])  # the first file was still running
    assert _overlap([(0.0, 2.0), (1.0, 3.0)])


def test_cpu_share_sets_validation_against_the_work_stages_cpu_seconds():
    from pipelines.bench import cpu_shares

    cpu = {"claim": 0.5, "read_map": 1.5, "harmonise": 6.0, "validate": 3.0, "stage": 1.5, "report": 1.5,
           "publish": 6.0}  # fmt: skip
    assert cpu_shares(cpu) == {"validate_cpu_share": 0.15}
    assert cpu_shares({}) == {}


PROFILE = "\n".join(
    [
        "<module> (sdmi:8);process_file (pipelines/process.py:160);harmonise (pipelines/harmonise.py:120);"
        "match_values (pipelines/codelists.py:280) 30",
        "<module> (sdmi:8);process_file (pipelines/process.py:160);validate (pipelines/validate.py:340);"
        "write_data_docs (pipelines/validate.py:505);render (great_expectations/render/view/view.py:112) 20",
        "<module> (sdmi:8);publish (pipelines/publish.py:880);execute (duckdb/__init__.py:10) 50",
        "<module> (sdmi:8);run (prefect/flow_engine.py:700) 10",
        "_bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81) 40",
        "<module> (sdmi:8);__enter__ (contextlib.py:137);_prefect (pipelines/cli.py:72);"
        "warm_up (pipelines/validate.py:156) 7",
        "<module> (sdmi:8);process_file (pipelines/process.py:160);validate (pipelines/validate.py:340);"
        "_find_and_load (<frozen importlib._bootstrap>:1176);"
        "_compile_bytecode (<frozen importlib._bootstrap_external>:729) 5",
        "not a stack line",
    ]
)  # py-spy's collapsed stacks: root first, the sample count last


def test_a_profile_sample_counts_for_the_deepest_pipeline_stage_in_its_stack():
    from pipelines import profiling

    summary = profiling.summarise(PROFILE, rate=100)
    assert summary["samples"] == 162 and summary["seconds"] == 1.62
    assert summary["seconds_by_stage"] == {
        "publish": 0.5, "waiting": 0.4, "harmonise": 0.3, "validate": 0.2, "other": 0.1, "start-up": 0.07,
        "imports": 0.05,
    }  # fmt: skip
    assert summary["top_functions"][0] == {
        "function": "execute (duckdb/__init__.py)",
        "stage": "publish",
        "seconds": 0.5,
    }


def test_a_profile_sample_of_a_thread_waiting_for_work_is_not_counted_as_a_functions_work():
    from pipelines import profiling

    functions = [t["function"] for t in profiling.summarise(PROFILE, rate=100)["top_functions"]]
    assert "_worker (concurrent/futures/thread.py)" not in functions and len(functions) == 6


def test_a_run_stalled_on_the_disk_does_not_count_half_in_two_repeats():
    fast = {"rows": 1000, "work_s": 4.9, "cpu_s": 8.6, "peak_rss_bytes": 1}
    stalled = {"rows": 1000, "work_s": 54.4, "cpu_s": 9.6, "peak_rss_bytes": 2}
    summary = bench.summarise([stalled, fast])
    assert summary["work_s"] == 4.9
    assert summary["rows_per_s"] == round(1000 / 4.9)
    assert bench.summarise([fast, stalled, {**fast, "work_s": 5.1}])["work_s"] == 5.1  # odd: the middle run


def test_the_bound_pseudonymises_the_nik_and_publishes_without_any_direct_identifier(tmp_path: Path):
    csv_file = tmp_path / "f.csv"
    csv_file.write_text(
        '"No Registrasi","NIK","Nama","No Paspor","Tanggal Lahir","Negara Tujuan"\n'
        '"REG-1","3212030211920009","Ani","X5055794","02/11/1992","Taiwan"\n',
        encoding="utf-8",
    )
    nik, identifiers = bench.identifier_headers("bp2mi_siskop2mi", [csv_file])
    assert (nik, identifiers) == ("NIK", ["NIK", "Nama", "No Paspor", "Tanggal Lahir"])
    run = bench.run_bound([csv_file], tmp_path / "work", nik, identifiers)
    assert run["rows"] == 1 and run["work_s"] > 0
    assert run["published_columns"] == ["No Registrasi", "Negara Tujuan", "worker_key"]
    assert not any((tmp_path / "work").iterdir())  # its files are removed after


def test_the_hostile_files_quarantine_every_row_and_carry_long_notes(tmp_path: Path):
    import csv

    national = tmp_path / "national.csv"
    rows = [["No Registrasi", "NIK", "Negara Tujuan"], *([f"REG-{i}", f"32{i:014d}", "Taiwan"] for i in range(400))]
    with national.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    files = bench.hostile_inputs(national, "bp2mi_siskop2mi", tmp_path / "hostile")
    with files["all_quarantined"].open(encoding="utf-8", newline="") as f:
        unknown = list(csv.DictReader(f))
    assert len(unknown) == 400 and {r["Negara Tujuan"] for r in unknown} == {"Atlantis"}
    with files["long_notes"].open(encoding="utf-8", newline="") as f:
        noted = list(csv.DictReader(f))
    lengths = {len(r["Keterangan"]) for r in noted}
    assert len(noted) == 400 and lengths == {len(bench.NOTE) * n for n in (0, 5, 50, 500)}


def test_the_small_files_hold_each_of_the_first_rows_once_in_order(tmp_path: Path):
    import csv

    national = tmp_path / "national.csv"
    rows = [["No Registrasi", "NIK"], *([f"REG-{i}", f"32{i:014d}"] for i in range(230))]
    with national.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    files = bench.small_inputs(national, tmp_path / "small", files=5, rows=50)
    assert [f.name for f in files] == [f"small_{i:03d}.csv" for i in range(4)]  # 230 rows: four whole files
    read = []
    for path in files:
        with path.open(encoding="utf-8", newline="") as f:
            part = list(csv.DictReader(f))
        assert len(part) == 50
        read += [r["No Registrasi"] for r in part]
    assert read == [f"REG-{i}" for i in range(200)]

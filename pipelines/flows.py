"""Prefect flows: thin orchestration of the stages, nothing else.

`ingest_flow` claims stable inbox files, processes each as a parallel task, then publishes. Tasks get
paths and hashes and return counts: Prefect never sees a record, and results are not persisted.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from pipelines import config, inbox, keys, settings, stage
from pipelines import progress as events
from pipelines.ledger import IN_FLIGHT, Ledger
from pipelines.locking import WriterBusy, writer_lock  # noqa: F401 - WriterBusy is part of this module's API
from pipelines.problems import ConfigError
from pipelines.settings import Zones
from pipelines.status import collect_release, publish_needed, read_inbox

# SDMI_STABLE_SECONDS (5 by default); a value that is not a number of seconds raises settings.SettingError (a
# ConfigError) here, at import: the CLI checks every setting before it imports this module (exit 3).
DEFAULT_STABLE_SECONDS = settings.stable_seconds()


def make_task_runner(kind: str | None = None, workers: int | None = None):
    """Threads locally; a Dask cluster (prefect-dask) when one machine is not enough. SDMI_TASK_RUNNER,
    SDMI_WORKERS and SDMI_DASK_ADDRESS are read through `pipelines.settings` (a bad value: SettingError); an
    existing scheduler is checked here, before the run claims anything (`check_scheduler`)."""
    kind = kind or settings.task_runner()
    if kind not in settings.TASK_RUNNERS:
        raise ConfigError(f"Task runner harus 'threads' atau 'dask', bukan {kind!r}. / "
                          f"The task runner must be 'threads' or 'dask', not {kind!r}.")  # fmt: skip
    workers = workers or settings.workers()
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        address = settings.dask_address()
        if address:
            check_scheduler(address)
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_class=local_cluster,
            cluster_kwargs={"n_workers": workers, "processes": True, "threads_per_worker": 1},
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=workers)


# A file's task that has waited this long with no Dask worker at all fails (Dask's NoWorkerError): workers that are
# all gone (none can load the task, or they died and none came back) end the run, the file counted as an error and
# left in flight for the next run, instead of a wait without end that holds the writer lock. A worker that dies is
# restarted by its nanny within seconds. Dask's own setting, when made, wins; a remote scheduler must make it.
NO_WORKERS_TIMEOUT = "distributed.scheduler.no-workers-timeout"
LOST_WORKERS_SECONDS = 30
SCHEDULER_CONNECT_SECONDS = 10


def local_cluster(**kwargs: Any) -> Any:
    """The Dask runner's LocalCluster, its scheduler built with a no-workers timeout (LOST_WORKERS_SECONDS)."""
    import dask
    from distributed import LocalCluster

    timeout = dask.config.get(NO_WORKERS_TIMEOUT, None) or f"{LOST_WORKERS_SECONDS}s"
    with dask.config.set({NO_WORKERS_TIMEOUT: timeout}):  # read once, when the scheduler starts
        return LocalCluster(**kwargs)


def check_scheduler(address: str) -> None:
    """Before a run claims anything (a ConfigError, exit 3): the scheduler at SDMI_DASK_ADDRESS answers within
    SCHEDULER_CONNECT_SECONDS, and fails tasks left without any worker. Prefect-dask would only connect once the
    inbox was claimed, and a scheduler without a no-workers timeout leaves a run waiting for ever."""
    from distributed import Client

    def no_workers_timeout(dask_scheduler: Any) -> float | None:  # sent by value: the scheduler needs no `pipelines`
        return dask_scheduler.no_workers_timeout

    try:
        with Client(address, timeout=SCHEDULER_CONNECT_SECONDS, set_as_default=False) as client:
            timeout = client.run_on_scheduler(no_workers_timeout)
    except Exception as exc:  # refused, no such host, timed out, not a Dask scheduler
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ConfigError(
            f"Penjadwal Dask di SDMI_DASK_ADDRESS={address} tidak menjawab dalam {SCHEDULER_CONNECT_SECONDS} detik "
            f"({why}); tidak ada berkas yang diambil. / The Dask scheduler at SDMI_DASK_ADDRESS={address} did not "
            f"answer within {SCHEDULER_CONNECT_SECONDS} s ({why}); no file was claimed."
        ) from None
    if timeout is None:
        raise ConfigError(
            f"Penjadwal Dask di {address} tidak menyetel distributed.scheduler.no-workers-timeout: bila semua worker "
            "hilang, `sdmi run` menunggu tanpa akhir sambil memegang kunci. Setel pada penjadwal, mis. "
            "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT=60s. / The Dask scheduler at "
            f"{address} sets no distributed.scheduler.no-workers-timeout: if every worker is lost, `sdmi run` waits "
            "without end, holding the writer lock. Set it on the scheduler, e.g. "
            "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT=60s in its environment."
        )


def _transient_io(task, task_run, state) -> bool:
    """Retry only what a retry can fix: I/O hiccups. A bad file is an outcome, not an error."""
    try:
        state.result(raise_on_failure=True)
    except (OSError, TimeoutError) as exc:
        return not isinstance(exc, FileNotFoundError | PermissionError)
    except BaseException:
        return False
    return False


@task(
    name="process-file",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_transient_io,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def process_file_task(home: str, sha256: str, key_file: str, run_date: str | None = None) -> dict:
    from pipelines.process import process_file

    zones = Zones(Path(home))
    ledger = Ledger(zones.ledger_db)
    entry = ledger.get(sha256)
    if entry is None:
        raise KeyError(f"file {sha256[:12]} is not in the ledger")
    secret = keys.load_secret(Path(key_file))
    keys.check_key(zones.state, secret)  # read per file: a key file replaced during a run (or under serve)
    outcome = process_file(
        zones,
        ledger,
        entry,
        config.agency(entry.agency),
        secret,
        date.fromisoformat(run_date) if run_date else None,
    )
    return outcome.as_dict()


@dataclass
class RunSummary:
    """A run's counts. `rows_accepted` (and `rows_warned`, accepted with warnings) are rows of processed files,
    bound for the release; the rows of a held file that passed the checks are `rows_held`, since nothing of a held
    file is published: rows_read = rows_accepted + rows_held + rows_quarantined."""

    received: int = 0
    duplicates: int = 0
    processed: int = 0
    held: int = 0
    rejected: int = 0
    errors: int = 0
    unstable: int = 0
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_warned: int = 0
    rows_held: int = 0
    rows_published: int | None = None
    placements_published: int | None = None
    release_id: str | None = None
    publish_failed: str | None = None
    not_onboarded: list[str] = field(default_factory=list)
    in_subfolders: dict[str, int] = field(default_factory=dict)  # "<agency>/<sub-folder>": files never read
    files: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # CPU seconds per stage (the process's, all threads), for `make bench`'s budget: only when no two files
    # ran at the same time (one file, or SDMI_WORKERS=1), so that no stage's figure includes another's work
    cpu_seconds: dict[str, float] | None = None

    @property
    def exit_code(self) -> int:
        """Non-zero when an agency must act or an engineer must look, so a scheduler can alert."""
        if self.errors or self.publish_failed:
            return 2
        if self.rejected or self.held:
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "exit_code": self.exit_code}

    def add_file(self, outcome: dict) -> None:
        """Count one processed, held or rejected file (`process.FileOutcome.as_dict()`) in the run."""
        rows = file_rows(outcome)
        setattr(self, outcome["status"], getattr(self, outcome["status"]) + 1)
        for k, n in rows.items():
            setattr(self, k, getattr(self, k) + n)
        self.files.append(
            {
                "agency": outcome["agency"],
                "file": outcome["file_name"],
                "status": outcome["status"],
                "rows_read": rows["rows_read"],
                "rows_accepted": rows["rows_accepted"],
                "rows_held": rows["rows_held"],
                "rows_quarantined": rows["rows_quarantined"],
                "reason": outcome.get("reason_code"),
            }
        )


def file_rows(outcome: dict) -> dict[str, int]:
    """A file's rows as the run counts them: the rows of a held file that passed the checks are held back, not
    accepted (the file's own report and the ledger call them what passed; nothing of the file is published)."""
    held = outcome["status"] == "held"
    passed, warned = outcome["rows_accepted"], outcome["rows_warned"]
    return {
        "rows_read": outcome["rows_read"],
        "rows_accepted": 0 if held else passed,
        "rows_held": passed if held else 0,
        "rows_quarantined": outcome["rows_quarantined"],
        "rows_warned": 0 if held else warned,
    }


def _claim_inbox(zones: Zones, ledger: Ledger, stable_seconds: float, summary: RunSummary) -> None:
    found = read_inbox(zones)  # the idle check in `sdmi run` reads the inbox the same way
    summary.not_onboarded.extend(found.not_onboarded)
    summary.in_subfolders.update(found.in_subfolders)
    for agency, paths in found.waiting.items():
        for path in paths:
            try:
                stable = inbox.is_stable(path, stable_seconds)
            except FileNotFoundError:
                continue  # deleted or renamed by the agency since the inbox was read: nothing to claim
            if not stable:
                summary.unstable += 1
                continue
            outcome = inbox.claim(zones, ledger, agency, path)
            if outcome.kind == "vanished":
                continue
            events.emit("claimed", agency=agency, kind=outcome.kind)
            if outcome.kind == "duplicate":
                summary.duplicates += 1
                _duplicate_report(zones, agency, inbox.file_name(path), outcome)
            elif outcome.kind == "unstable":
                summary.unstable += 1
            else:
                summary.received += 1


def _duplicate_report(zones: Zones, agency: str, name: str, claim: inbox.Claim) -> None:
    from pipelines import report
    from pipelines.ledger import now_utc
    from pipelines.problems import Bilingual

    first = claim.entry
    assert first is not None
    # the first copy's report, linked when it is this agency's (another agency's report is not theirs to open)
    first_report = (
        report.report_href(zones.reports, first.agency, first.file_name, first.sha256, first.received_at)
        if first.agency == agency
        else None
    )
    report.write_report(
        zones.reports,
        report.FileReport(
            agency=agency,
            agency_name=config.agency(agency).name,
            file_name=name,
            sha256=first.sha256,
            received_at=now_utc(),
            status="duplicate",
            rows_read=0,
            rows_accepted=0,
            rows_quarantined=0,
            rows_warned=0,
            reason=Bilingual(
                f"Isi berkas ini sama persis dengan '{first.file_name}' yang sudah diterima; tidak diproses lagi.",
                f"This file has the same content as '{first.file_name}', already received; not processed again.",
            ),
            warnings=[],
            duplicate_of=first.file_name,
            duplicate_of_status=first.status,  # a held or rejected first copy still needs a corrected file
            duplicate_of_report=first_report,
        ),
        None,
        None,
        set(),
        {},
    )


@flow(name="sdmi-publish", log_prints=False)
def publish_flow(home: str | None = None, keep: int = 5) -> dict:
    """Build a release from every processed batch, audit it, switch it in atomically."""
    from pipelines import publish

    zones = Zones.from_env(home).ensure()
    ledger = Ledger(zones.ledger_db)
    batches = [
        publish.BatchRef(
            batch_id=e.batch_id,
            agency=e.agency,
            sha256=e.sha256,
            file_name=e.file_name,
            received_at=e.received_at,
            seq=e.seq,
            status=e.status,
            rows_read=e.rows_read or 0,
            rows_accepted=e.rows_accepted or 0,
            rows_quarantined=e.rows_quarantined or 0,
            rows_warned=e.rows_warned or 0,
            attempts=e.attempts,
        )
        for e in ledger.files(status=("processed", "held", "rejected"))
    ]
    result = publish.publish(
        zones, batches, config.agencies(), keep=keep, progress=lambda step: events.emit("publish", step=step)
    )
    return {**asdict(result), "path": str(result.path)}


@flow(name="sdmi-ingest", log_prints=False)
def ingest_flow(
    home: str | None = None,
    key_file: str | None = None,
    publish: bool = True,
    stable_seconds: float = DEFAULT_STABLE_SECONDS,
    wait_for_lock: float = 0,
    run_date: str | None = None,
    rekey: bool = False,
) -> dict:
    """One pass over the inbox, then publish. Returns the run summary (counts only). `rekey`: the key may
    differ from the one the data root was built with (`sdmi replay --rekey` reopened every file first)."""
    logger = get_run_logger()
    zones = Zones.from_env(home).ensure()
    key_path = keys.resolve_key_path(key_file)
    keys.check_key(zones.state, keys.load_secret(key_path), rekey=rekey)  # a sound key, and the data root's
    summary = RunSummary()
    if inbox.waiting_files(zones) or Ledger(zones.ledger_db).files(status=IN_FLIGHT):
        from pipelines import validate

        validate.warm_up()  # GX's 3-4 s import is a fixed start-up cost: paid before the work, not by a file
        validate.check_agencies()  # an expectation GX cannot run stops the run, before any file (serve too)
    started, cpu_started = time.perf_counter(), time.process_time()
    with writer_lock(zones, wait_for_lock):
        ledger = Ledger(zones.ledger_db)
        context = FlowRunContext.get()
        run_id = str(context.flow_run.id) if context and context.flow_run else uuid.uuid4().hex
        ledger.start_run(run_id)
        stage.clean_leftovers(zones)
        from pipelines import report

        report.clean_leftovers(zones.reports)
        inbox.recover(zones, ledger)
        _claim_inbox(zones, ledger, stable_seconds, summary)
        summary.timings["claim"] = round(time.perf_counter() - started, 3)
        cpu = {"claim": round(time.process_time() - cpu_started, 3)}
        windows: list[tuple[float, float]] = []
        pending = ledger.files(status=IN_FLIGHT)
        events.emit("files", total=len(pending))
        logger.info("%d file(s) to process, %d duplicate(s)", len(pending), summary.duplicates)
        futures = {process_file_task.submit(str(zones.home), e.sha256, str(key_path), run_date): e for e in pending}
        for future, entry in futures.items():
            try:
                outcome = future.result(raise_on_failure=True)
            except Exception as exc:
                summary.errors += 1
                logger.error("file %s failed: %s", entry.sha256[:12], type(exc).__name__)
                summary.files.append(
                    {"agency": entry.agency, "file": entry.file_name, "status": "error", "reason": type(exc).__name__}
                )
                events.emit("file_done", status="error")
                continue
            summary.add_file(outcome)
            for stage_name, seconds in (outcome.get("timings") or {}).items():
                summary.timings[stage_name] = round(summary.timings.get(stage_name, 0) + seconds, 4)
            for stage_name, seconds in (outcome.get("cpu_seconds") or {}).items():
                cpu[stage_name] = round(cpu.get(stage_name, 0) + seconds, 4)
            if outcome.get("window"):
                windows.append(tuple(outcome["window"]))
            events.emit("file_done", status=outcome["status"], rows=outcome["rows_read"])
        summary.timings["files"] = round(time.perf_counter() - started, 3)
        if futures or summary.duplicates or report.index_stale(zones.reports):
            report.write_index(zones.reports)
        # not "any file processed": after a rollback, a rejected or held file must not publish (publish_needed)
        if publish and (not zones.current.exists() or publish_needed(zones)):
            t0, cpu0 = time.perf_counter(), time.process_time()
            try:
                result = publish_flow(str(zones.home))
            except Exception as exc:  # a full disk, an I/O error: `current` is untouched, exit 2 not a traceback
                logger.error("publish failed, the previous release stays current: %s", exc)
                result = {"switched": False, "reason": f"{type(exc).__name__}: {' '.join(str(exc).split())[:1000]}"}
            summary.timings["publish"] = round(time.perf_counter() - t0, 3)
            cpu["publish"] = round(time.process_time() - cpu0, 3)
            summary.release_id = result.get("release_id")
            summary.rows_published = result.get("counts", {}).get("placement_records")
            summary.placements_published = result.get("counts", {}).get("placements")
            if not result.get("switched"):
                summary.publish_failed = result.get("reason") or "audit failed"
        elif current := collect_release(zones):
            summary.release_id = current["id"]
            summary.rows_published = (current["counts"] or {}).get("placement_records")
            summary.placements_published = (current["counts"] or {}).get("placements")
        summary.timings["total"] = round(time.perf_counter() - started, 3)
        if not summary.errors and not _overlap(windows):  # a failed file's window is unknown
            summary.cpu_seconds = cpu
        outcome = {0: "ok", 1: "agency action needed", 2: "failed"}[summary.exit_code]
        ledger.end_run(run_id, outcome, summary.release_id, json.dumps(summary.as_dict(), default=str))
    _artifacts(summary)
    return summary.as_dict()


def _overlap(windows: list[tuple[float, float]]) -> bool:
    """Whether any two files were processed at the same time (their (start, end) windows intersect)."""
    ordered = sorted(windows)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


def _artifacts(summary: RunSummary) -> None:
    """What the Prefect UI shows for a run: a summary and one row per file (counts, no values)."""
    try:
        create_markdown_artifact(key="sdmi-run-summary", markdown=summary_markdown(summary), description="SDMI run")
        if summary.files:
            create_table_artifact(key="sdmi-files", table=summary.files, description="Files in this run")
    except Exception:
        pass


def summary_markdown(summary: RunSummary) -> str:
    return "\n".join(
        [
            "# SDMI run",
            "",
            "| | |",
            "|---|---|",
            f"| files received / berkas diterima | {summary.received} |",
            f"| processed / diproses | {summary.processed} |",
            f"| held / ditahan | {summary.held} |",
            f"| rejected / ditolak | {summary.rejected} |",
            f"| duplicates / duplikat | {summary.duplicates} |",
            f"| errors | {summary.errors} |",
            f"| rows read / baris dibaca | {summary.rows_read} |",
            f"| rows accepted / diterima | {summary.rows_accepted} |",
            f"| rows held back (file held) / lolos tetapi ditahan | {summary.rows_held} |",
            f"| rows quarantined / dikarantina | {summary.rows_quarantined} |",
            f"| records published / catatan terbit | {summary.rows_published} |",
            f"| placements published / penempatan | {summary.placements_published} |",
            f"| release | {summary.release_id} |",
        ]
    )

"""`sdmi`: one entry point for data engineers. Exit codes: 0 fine, 1 an agency must act (file rejected or
held), 2 an engineer must look (error, failed audit), 3 bad configuration or usage, 4 another run holds the lock."""

from __future__ import annotations

import atexit
import gc
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pipelines.problems import ConfigError
from pipelines.settings import Zones

if TYPE_CHECKING:
    from pipelines.ledger import Ledger

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Prefect's temporary server (no PREFECT_API_URL) must start within 20 s by default; a first start migrates
# its database and, on a busy 2-core machine, takes longer: the run then fails before touching a file.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

app = typer.Typer(help="SDMI — Satu Data Migrasi Internasional pipeline.", no_args_is_help=True, add_completion=False)
agency_app = typer.Typer(help="Onboard agencies: check a sample file, draft a mapping.", no_args_is_help=True)
schema_app = typer.Typer(help="The shared schema and what is generated from it.", no_args_is_help=True)
app.add_typer(agency_app, name="agency")
app.add_typer(schema_app, name="schema")
console = Console(stderr=False, soft_wrap=True)
err = Console(stderr=True)

Home = Annotated[Path | None, typer.Option("--home", help="data root (default: $SDMI_HOME or ./data)")]
KeyFile = Annotated[Path | None, typer.Option("--key-file", help="secret key file (default: $SDMI_KEY_FILE)")]


def _zones(home: Path | None) -> Zones:
    zones = Zones.from_env(home)
    if zones.home.exists() and not zones.home.is_dir():
        _fail(_not_a_folder("SDMI_HOME / --home", zones.home))
    return zones


def _not_a_folder(what: str, path: Path) -> str:
    return (
        f"{what} {path} adalah berkas, bukan folder; sebutkan sebuah folder (dibuat bila belum ada) / "
        f"{what} {path} is a file, not a folder; name a folder (it is created when missing)"
    )


def _demo_key(zones: Zones, key_file: Path | None) -> Path:
    """Demo mode only: a local owner-only key under the data root, created when none is given."""
    from pipelines import keys

    chosen = keys.resolve_key_path(key_file)
    if chosen:
        return chosen
    path = zones.home / "secrets" / "demo-worker-key"
    if not path.exists():
        keys.create_key_file(path)
    return path


def _say_error(message: str) -> None:
    """The message in red exactly as written: never read as rich markup (pydantic's `[type=literal_error,
    input_value='text', ...]`, the part naming the bad value, vanished), nor broken inside a path or a command
    by wrapping (the terminal wraps long lines itself)."""
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 3) -> None:
    """Say what is wrong (plain text: callers need not escape it) and exit with `code`."""
    _say_error(message)
    raise typer.Exit(code)


# Commands that read the SDMI_* settings (chunks, workers, memory, ...) and the configuration (schema, rules,
# agency mappings): checked before the command starts. Of these, `publish` validates no file: no suite needed.
_READ_SETTINGS = frozenset({"run", "demo", "replay", "publish", "serve"})
_VALIDATE_FILES = _READ_SETTINGS - {"publish"}


@app.callback()
def _check_settings(ctx: typer.Context) -> None:
    # Every SDMI_* setting and configuration file is read once, here, before any file is claimed and before
    # Prefect starts: a wrong value stops the command with exit 3 naming it, instead of a traceback (exit 1) at
    # import, a Prefect traceback, or a failure per file after the claim. The configuration costs ~0.1 s.
    if ctx.invoked_subcommand in _READ_SETTINGS:
        from pipelines import settings, validate

        try:
            settings.check_settings()
            validate.check_configuration(suite=ctx.invoked_subcommand in _VALIDATE_FILES)
        except ConfigError as exc:
            _fail(str(exc))


def _check_option(name: str, value: float | None, low: float, low_allowed: bool) -> None:
    """Exit 3 (bad configuration, as a wrong --publish-cron) unless the option's value is above `low` (or
    equal, `low_allowed`). Typer has already refused what is not a number (its usage error, exit 2)."""
    if value is None or (math.isfinite(value) and (value > low or (low_allowed and value == low))):
        return
    bound_id, bound_en = (
        (f"{low:g} atau lebih", f"{low:g} or more") if low_allowed else (f"lebih dari {low:g}", f"above {low:g}")
    )
    _fail(f"{name} harus {bound_id}, bukan {value:g}. / {name} must be {bound_en}, not {value:g}.")


@contextmanager
def _prefect(warm_up_gx: bool) -> Iterator[None]:
    """Flows run inside. Prefect's temporary server starts in another process while this one imports the
    stages and GX, which the run needs anyway; each would otherwise wait for the other (see
    `pipelines.prefect_api`). Its flow runs send no heartbeats: the server goes with the process."""
    from pipelines import prefect_api

    server = prefect_api.launch()
    if server is None:
        try:  # a configured API that does not answer is configuration too: exit 3, before any file is touched
            prefect_api.check_configured_api()
        except prefect_api.ApiUnreachable as exc:
            _fail(str(exc))
        if warm_up_gx:
            _check_agency_rules()
        yield
        return
    from pipelines import flows, publish, validate  # noqa: F401

    if warm_up_gx:
        _check_agency_rules()  # GX is imported while the server starts: no time added
    else:
        publish.import_gx()
    try:
        server.ready()
    except prefect_api.ServerDidNotStart as exc:
        _fail(str(exc))
    with prefect_api.without_heartbeats():
        yield


def _check_agency_rules() -> None:
    """GX warmed up, then every agency's own expectations built by it: a misspelt expectation type is exit 3 with
    its message here, not after a Prefect traceback from inside the flow."""
    from pipelines import validate

    validate.warm_up()
    try:
        validate.check_agencies()
    except ConfigError as exc:
        _fail(str(exc))


def _run(
    zones: Zones, key_path: Path | None, publish: bool, stable_seconds: float | None, wait: float, rekey: bool = False
) -> dict:
    _end_soon_after_sigterm(zones)
    with _prefect(warm_up_gx=True):
        summary = _run_flow(zones, key_path, publish, stable_seconds, wait, rekey)
    _end_if_terminated()
    return summary


def _run_flow(
    zones: Zones, key_path: Path | None, publish: bool, stable_seconds: float | None, wait: float, rekey: bool = False
) -> dict:
    from pipelines import flows
    from pipelines import progress as events

    interactive = sys.stdout.isatty()
    kwargs = dict(
        home=str(zones.home),
        key_file=str(key_path) if key_path else None,
        publish=publish,
        wait_for_lock=wait,
        rekey=rekey,
    )
    if stable_seconds is not None:
        kwargs["stable_seconds"] = stable_seconds
    runner = flows.ingest_flow.with_options(task_runner=flows.make_task_runner())
    if interactive:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            job = bar.add_task("files / berkas", total=None)
            rows_done = 0

            def on_event(event: str, data: dict) -> None:
                nonlocal rows_done
                if event == "files":
                    bar.update(job, total=data["total"])
                elif event == "rows":  # chunks of a long file
                    rows_done += int(data["rows"])
                    bar.update(job, description=f"files / berkas ({rows_done:,} rows / baris)")
                elif event == "file_done":
                    bar.advance(job)
                elif event == "publish":
                    bar.update(job, description=f"publish: {data['step']}")

            unsubscribe = events.subscribe(on_event)
            try:
                return runner(**kwargs)
            finally:
                unsubscribe()
    else:

        def on_line(event: str, data: dict) -> None:
            if event in ("files", "rows", "file_done", "publish"):
                print(f"sdmi: {event} {json.dumps(data, default=str)}", flush=True)

        unsubscribe = events.subscribe(on_line)
        try:
            return runner(**kwargs)
        finally:
            unsubscribe()


def print_summary(zones: Zones, summary: dict) -> None:
    c = console
    c.print()
    c.print("[bold]SDMI — ringkasan / summary[/bold]")
    c.print(
        f"  berkas / files: received {summary['received']}, processed {summary['processed']}, "
        f"held {summary['held']}, rejected {summary['rejected']}, duplicates {summary['duplicates']}"
        + (f", errors {summary['errors']}" if summary["errors"] else "")
    )
    held = summary.get("rows_held") or 0  # rows of held files that passed the checks: nothing of them is published
    c.print(
        f"  baris / rows:   read {summary['rows_read']}, accepted {summary['rows_accepted']}"
        + (f", lolos tetapi ditahan / passed but held back (not published) {held}" if held else "")
        + f", quarantined {summary['rows_quarantined']} (accepted with warnings {summary['rows_warned']})"
    )
    c.print(
        f"  published:      {summary['rows_published']} records, {summary['placements_published']} placements "
        f"(release {summary['release_id']})"
    )
    if summary.get("publish_failed"):
        c.print(f"  [red]publish failed: {summary['publish_failed']} — the previous release stays current[/red]")
    if summary.get("not_onboarded"):
        from rich.markup import escape

        from pipelines.inbox import not_onboarded_warning

        c.print(f"  [yellow]{escape(not_onboarded_warning(summary['not_onboarded']))}[/yellow]")
    if summary.get("in_subfolders"):
        from rich.markup import escape

        from pipelines.inbox import subfolders_warning

        c.print(f"  [yellow]{escape(subfolders_warning(summary['in_subfolders']))}[/yellow]")
    if summary.get("unstable"):
        c.print(f"  files still being written (left for the next pass): {summary['unstable']}")
    c.print(f"  warehouse:      {zones.analyst_db}")
    c.print(f"  reports:        {zones.reports}/<agency>/<file>/index.html")
    c.print("  try / coba:")
    c.print(
        f"    .venv/bin/python -c \"import duckdb; print(duckdb.connect('{zones.analyst_db}', read_only=True).sql("
        "'SELECT destination_country, count(*) AS placements FROM placements GROUP BY 1 ORDER BY 2 DESC LIMIT 5'))\"",
        soft_wrap=True,
    )


@app.command()
def run(
    home: Home = None,
    key_file: KeyFile = None,
    publish: Annotated[bool, typer.Option("--publish/--no-publish", help="publish a release after the files")] = True,
    stable_seconds: Annotated[float | None, typer.Option(help="seconds a file must be unchanged")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for another run's lock")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """One pass over the inbox, then publish. Exit 1 when a file was rejected or held.

    With nothing to do (empty inbox, nothing in flight, release up to date) it returns without starting
    Prefect: a scheduled run on an idle inbox costs about a second instead of a temporary server's start.
    """
    from pipelines import keys
    from pipelines.locking import WriterBusy
    from pipelines.status import idle_summary

    _check_option("--stable-seconds", stable_seconds, 0, low_allowed=True)
    zones = _zones(home)
    try:
        secret = keys.load_secret(keys.resolve_key_path(key_file))  # exit 3 without a sound key, even when idle
        summary = idle_summary(zones, publish, wait) if zones.home.exists() else None
        if summary is None:
            keys.check_key(zones.state, secret)  # before Prefect and any claim (the flow checks again)
            summary = _run(zones, key_file, publish, stable_seconds, wait)
    except ConfigError as exc:
        _fail(str(exc))
    except WriterBusy as exc:
        _fail(str(exc), 4)
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        print_summary(zones, summary)
    raise typer.Exit(summary["exit_code"])


def _check_demo_rows(rows: int) -> None:
    """The generator needs room for every error kind in every agency's file; say so as a usage error."""
    from pipelines.demo import MIN_ROWS

    if rows < MIN_ROWS:
        raise typer.BadParameter(
            f"paling sedikit {MIN_ROWS} baris / at least {MIN_ROWS} rows, so that every agency's file "
            "shows every kind of error",
            param_hint="'--rows'",
        )


@app.command()
def demo(
    home: Home = None,
    rows: Annotated[int, typer.Option(help="synthetic rows in the demo inbox")] = 6000,
    seed: Annotated[int, typer.Option(help="seed of the demo generator")] = 2024,
) -> None:
    """Write the synthetic demo inbox and run the pipeline on it end to end (creates a demo key)."""
    from pipelines import demo as demo_data

    _check_demo_rows(rows)
    zones = _zones(home).ensure()
    key = _demo_key(zones, None)
    demo_data.generate(zones.inbox, seed=seed, rows=rows)
    try:
        summary = _run(zones, key, True, 0, 60)
    except ConfigError as exc:
        _fail(str(exc))
    print_summary(zones, summary)
    raise typer.Exit(2 if summary["exit_code"] == 2 else 0)


@app.command("demo-data")
def demo_data_cmd(
    directory: Annotated[Path, typer.Argument(help="folder to write agency sub-folders into (an inbox)")],
    rows: Annotated[int, typer.Option(help="synthetic rows over all files")] = 6000,
    seed: int = 2024,
    truth: Annotated[Path | None, typer.Option(help="also write the generator's ground truth JSON here")] = None,
) -> None:
    """Write synthetic agency files (deterministic for a seed)."""
    from pipelines import demo as demo_data

    _check_demo_rows(rows)
    if directory.exists() and not directory.is_dir():
        _fail(_not_a_folder("DIRECTORY", directory))
    result = demo_data.generate(directory, seed=seed, rows=rows)
    if truth:
        result.to_json(truth)
    for name, count in sorted(result.rows_by_file.items()):
        console.print(f"{count:>8}  {name}")


@app.command()
def publish(
    home: Home = None,
    keep: Annotated[int, typer.Option(help="releases to keep, the current one included (older ones are pruned)")] = 5,
    wait: Annotated[float, typer.Option(help="seconds to wait for another run's lock")] = 0,
) -> None:
    """Rebuild and publish the warehouse from every processed batch (write-audit-publish)."""
    _check_option("--keep", keep, 1, True)
    _check_option("--wait", wait, 0, True)
    zones = _zones(home)
    _end_soon_after_sigterm(zones)
    with _prefect(warm_up_gx=False):
        from pipelines import flows

        try:
            with flows.writer_lock(zones, wait):
                result = flows.publish_flow(str(zones.home), keep=keep)
        except flows.WriterBusy as exc:
            _fail(str(exc), 4)
    _end_if_terminated()
    console.print_json(json.dumps(result, default=str))
    raise typer.Exit(0 if result.get("switched") else 2)


@app.command()
def releases(
    home: Home = None, as_json: Annotated[bool, typer.Option("--json", help="print them as JSON")] = False
) -> None:
    """List releases, oldest first, one a line; the current one is marked with *. --json: one JSON array."""
    from dataclasses import asdict

    from pipelines import publish as pub

    found = pub.list_releases(_zones(home))
    if as_json:
        print(json.dumps([{**asdict(r), "path": str(r.path)} for r in found]))
        return
    if not found:
        console.print("belum ada rilis / no release published yet")
    for r in found:  # the id whole on its line, to copy into `sdmi rollback ID`
        counts = ", ".join(f"{k}={r.counts[k]}" for k in ("placement_records", "placements") if k in r.counts)
        created = f"{r.created_at[:19]}Z" if r.created_at else "?"  # UTC, to the second
        line = f"{'*' if r.current else ' '} {r.release_id}  {created}  {counts}"
        console.print(line + ("  (rilis saat ini / current release)" if r.current else ""), markup=False)


@app.command()
def rollback(
    release_id: Annotated[str | None, typer.Argument(help="a release id (`sdmi releases`)")] = None,
    home: Home = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for another run's lock")] = 30,
) -> None:
    """Switch the warehouse back to an earlier release (the previous one by default).

    Exit 3 when there is no such release (an unknown id, or none before the current one) and 4 when another
    run holds the writer lock; the current release then stays."""
    from pipelines import publish as pub
    from pipelines.locking import WriterBusy, writer_lock

    zones = _zones(home)
    try:
        with writer_lock(zones, wait):
            known = [r.release_id for r in pub.list_releases(zones)]
            current = pub.current_release(zones)
            if release_id is not None and release_id not in known:
                _fail(
                    f"Rilis {release_id!r} tidak dikenal; rilis yang ada: {', '.join(known) or '-'} "
                    f"(lihat `sdmi releases`). Rilis saat ini tetap. / Unknown release {release_id!r}; known "
                    f"releases: {', '.join(known) or '-'} (see `sdmi releases`). The current release stays."
                )
            try:
                chosen = pub.rollback(zones, release_id)
            except pub.PublishError:  # no id given and nothing older than the current release
                if not known:
                    _fail("Belum ada rilis untuk dikembalikan. / No release published yet to roll back to.")
                _fail(
                    f"Tidak ada rilis sebelum rilis saat ini ({current}) untuk dikembalikan; rilis saat ini tetap. / "
                    f"No release before the current one ({current}) to roll back to; the current release stays."
                )
    except WriterBusy as exc:
        _fail(str(exc), 4)
    console.print(f"rilis saat ini / current release: {chosen}")


@app.command()
def status(home: Home = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The ledger at a glance: files by agency and status, the current release, the inbox, anything stuck."""
    from pipelines.status import collect, render

    info = collect(_zones(home))
    if as_json:
        print(json.dumps(info, default=str))
    else:
        render(info, console)


@app.command()
def quarantine(home: Home = None, agency: str | None = None) -> None:
    """What is held in quarantine, by agency and rule."""
    from pipelines.status import quarantine_summary

    rows = quarantine_summary(_zones(home), agency)
    if not rows:
        console.print("karantina kosong / quarantine is empty")
    for r in rows:
        console.print(f"{r['agency']:<24} {r['rule_id']:<48} {r['rows']:>7} rows  {r['files']} file(s)")


def _nothing_to_replay(ledger: Ledger, agency: str | None, sha256: str | None) -> None:
    """No finished file matched: a mistyped agency or hash is a configuration error (exit 3), not a replay of
    nothing that looks done; with no filter, there is simply nothing yet (exit 0)."""
    if agency is None and sha256 is None:
        console.print("tidak ada berkas yang selesai diproses untuk diulang / no processed file to replay yet")
        raise typer.Exit(0)
    known = sorted({e.agency for e in ledger.files(status=("processed", "held", "rejected"))})
    asked = " ".join(f"{k} {v}" for k, v in (("--agency", agency), ("--sha256", sha256)) if v)
    _fail(
        f"Tidak ada berkas yang cocok dengan {asked}; instansi yang punya berkas: {', '.join(known) or '-'} / "
        f"No processed file matches {asked}; agencies with files: {', '.join(known) or 'none'}",
        3,
    )


@app.command()
def replay(
    home: Home = None,
    key_file: KeyFile = None,
    agency: Annotated[str | None, typer.Option(help="only this agency's files")] = None,
    sha256: Annotated[str | None, typer.Option(help="only this file (hash prefix)")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for another run's lock")] = 30,
    rekey: Annotated[
        bool, typer.Option(help="the key was changed on purpose: process every file again under the new key")
    ] = False,
) -> None:
    """Reprocess archived files after a mapping or code-list fix, then publish (exactly once still holds).

    Exit codes as `sdmi run`: 4 when another run holds the writer lock (no file is reopened then)."""
    from pipelines import keys
    from pipelines.ledger import Ledger
    from pipelines.locking import WriterBusy, writer_lock

    zones = _zones(home).ensure()
    try:
        if rekey and (agency or sha256):
            _fail("--rekey memproses ulang semua berkas / --rekey reprocesses every file: drop --agency and --sha256")
        secret = keys.load_secret(keys.resolve_key_path(key_file))  # exit 3 without a sound key, before a reopen
        if not rekey:
            keys.check_key(zones.state, secret)  # a replaced key: refused before any file is reopened
        with writer_lock(zones, wait):
            ledger = Ledger(zones.ledger_db)
            chosen = [
                e
                for e in ledger.files(status=("processed", "held", "rejected"))
                if (agency is None or e.agency == agency) and (sha256 is None or e.sha256.startswith(sha256))
            ]
            if not chosen:
                _nothing_to_replay(ledger, agency, sha256)
            for e in chosen:
                ledger.reopen(e.sha256)
        console.print(f"memproses ulang {len(chosen)} berkas / replaying {len(chosen)} file(s)")
        summary = _run(zones, key_file, True, None, wait, rekey=rekey)
    except ConfigError as exc:
        _fail(str(exc))
    except WriterBusy as exc:
        _fail(str(exc), 4)
    print_summary(zones, summary)
    raise typer.Exit(summary["exit_code"])


@app.command()
def serve(
    home: Home = None,
    key_file: KeyFile = None,
    interval: Annotated[float, typer.Option(help="seconds between passes over the inbox")] = 60,
    publish_cron: Annotated[str | None, typer.Option(help="cron schedule of publishing, e.g. '0 * * * *'")] = None,
    publish_interval: Annotated[
        float, typer.Option(help="seconds between publish checks (publishes only when something changed)")
    ] = 3600,
    stable_seconds: Annotated[float | None, typer.Option(help="seconds a file must be unchanged")] = None,
    server_port: Annotated[
        int | None, typer.Option(help="port of the Prefect server started when PREFECT_API_URL is unset")
    ] = None,
) -> None:
    """Prefect deployments: poll the inbox every --interval, publish on a schedule; Ctrl-C stops.

    Exit 3: a bad option or setting, a configured Prefect API that does not answer, a --server-port in use."""
    from pipelines import keys, prefect_api
    from pipelines import serve as serving

    _check_option("--interval", interval, 0, low_allowed=False)
    _check_option("--publish-interval", publish_interval, 0, low_allowed=False)
    _check_option("--stable-seconds", stable_seconds, 0, low_allowed=True)
    if server_port is not None and not 0 <= server_port <= 65535:
        _fail(f"--server-port harus antara 0 (port bebas mana pun) dan 65535, bukan {server_port}. / "
              f"--server-port must be between 0 (any free port) and 65535, not {server_port}.")  # fmt: skip
    zones = _zones(home).ensure()
    key_path = keys.resolve_key_path(key_file)
    keys.load_secret(key_path)  # refuse to start without a sound key (exit 3)
    assert key_path is not None
    if publish_cron:
        from prefect.client.schemas.schedules import CronSchedule

        try:  # read as Prefect will read it: croniter is not installed with Prefect 3
            CronSchedule(cron=publish_cron)
        except ValueError:  # pydantic's ValidationError included
            _fail(
                f"--publish-cron {publish_cron!r} bukan jadwal cron yang sah (mis. '0 * * * *') / "
                f"--publish-cron {publish_cron!r} is not a valid cron expression (e.g. '0 * * * *')"
            )

    def ready(api_url: str) -> None:
        print(f"sdmi: serving {zones.home} (inbox every {interval:g} s, Prefect API {api_url}); "
              "Ctrl-C or SIGTERM stops", flush=True)  # fmt: skip

    try:
        serving.serve(
            zones.home,
            key_path,
            interval,
            publish_cron,
            publish_interval,
            stable_seconds,
            server_port,
            on_ready=ready,
        )
    except (prefect_api.ApiUnreachable, prefect_api.ServerDidNotStart) as exc:
        _fail(str(exc))
    print("sdmi: stopped", flush=True)


@agency_app.command("check")
def agency_check(
    file: Annotated[Path, typer.Argument(help="a sample file from the agency", exists=True, dir_okay=False)],
    agency: Annotated[str, typer.Option("--agency", help="agency code (its schemas/agencies/<code>.yaml)")],
    mapping_file: Annotated[
        Path | None, typer.Option("--mapping", help="try this YAML instead of the onboarded one (a draft)")
    ] = None,
    rows: Annotated[int, typer.Option(help="rows to show after mapping (identifiers masked)")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Dry run: how FILE maps and what it would raise. Writes nothing. Exit 1 if rows would fail, 3 if the
    configuration is wrong (the mapping, the schema, the rules, a committed suite not regenerated).

    --mapping takes a file of any name (a draft, `<code>.draft.yaml`); its `agency:` must be --agency."""
    from pipelines import config, onboarding

    try:
        cfg = config.load_agency_file(mapping_file, code=agency) if mapping_file else config.agency(agency)
        result = onboarding.check(file, cfg, preview_rows=rows)
    except ConfigError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result.as_dict(), default=str))
        raise typer.Exit(result.exit_code)
    _render_check(result)
    raise typer.Exit(result.exit_code)


def _render_check(result: object) -> None:
    from rich.table import Table

    from pipelines.onboarding import CheckReport

    assert isinstance(result, CheckReport)
    c = console
    c.print(f"[bold]{result.file}[/bold] as agency {result.agency}")
    if result.rejected:
        c.print(f"[red]the file would be REJECTED ({result.rejected}): {result.rejected_reason}[/red]")
        return
    c.print(
        f"  read as {result.format}, encoding {result.encoding}, delimiter {result.delimiter!r}, "
        f"header on row {result.header_row}"
    )
    c.print("[bold]columns matched[/bold] (field <- header):")
    for name, header in result.matched.items():
        c.print(f"  {name:<24} <- {header}")
    c.print(f"[bold]file columns not used:[/bold] {', '.join(result.unmatched_headers) or 'none'}")
    c.print(f"[bold]fields this file does not provide:[/bold] {', '.join(result.unmapped_fields) or 'none'}")
    if result.preview:
        table = Table(title="first rows after mapping, one column per row (identifiers masked)")
        table.add_column("field")
        for i in range(len(result.preview)):
            table.add_column(str(i + 1), overflow="fold")
        for name in result.preview[0]:
            table.add_row(name, *["" if row[name] is None else str(row[name]) for row in result.preview])
        c.print(table)
    c.print(
        f"rows: read {result.rows_read}, would be accepted {result.rows_accepted}, "
        f"quarantined {result.rows_quarantined} (accepted with warnings {result.rows_warned})"
    )
    if result.rules:
        table = Table(title="problems by rule")
        for col in ("rule", "severity", "field", "rows", "message"):
            table.add_column(col, overflow="fold")
        for r in result.rules:
            table.add_row(r.rule_id, r.severity, r.field or "", str(r.rows), r.message_en)
        c.print(table)
    else:
        c.print("no problems found")
    for w in result.warnings:
        c.print(f"[yellow]warning: {w}[/yellow]")


@agency_app.command("new")
def agency_new(
    code: Annotated[str, typer.Argument(help="the new agency's code: lower-case letters, digits, _")],
    from_file: Annotated[
        Path, typer.Option("--from", help="a sample file from the agency", exists=True, dir_okay=False)
    ],
    stdout: Annotated[bool, typer.Option("--stdout", help="print the draft instead of writing it")] = False,
    force: Annotated[
        bool, typer.Option(help="overwrite an existing draft, or draft an agency already onboarded (beside it)")
    ] = False,
) -> None:
    """Draft schemas/agencies/CODE.draft.yaml from a sample file's headers, with # TODO where it cannot decide.

    A draft is not read by `sdmi run` (an unfinished one stops no other agency): try it with `sdmi agency check
    --mapping`, then rename it to CODE.yaml to onboard the agency. The sample's header is enough (a CSV
    template with the column names only will do). Exit 3 when the code is not valid, the sample cannot be
    read (empty, not a table), or a draft or mapping exists (--force), with the reason."""
    from pipelines import onboarding, settings
    from pipelines.problems import FileRejected

    try:
        result = onboarding.draft(code, from_file)
    except ValueError as exc:
        _fail(str(exc))
    except FileRejected as exc:
        hint_id, hint_en = "", ""
        if exc.code == "no_data_rows":  # an XLSX or JSON sample needs a row to show its columns
            hint_id, hint_en = " Tambahkan satu baris contoh, lalu coba lagi.", " Add one example row and try again."
        _fail(
            f"Tidak dapat menyusun pemetaan dari {from_file.name} ({exc.code}): {exc.message.id}{hint_id} / "
            f"Cannot draft a mapping from {from_file.name} ({exc.code}): {exc.message.en}{hint_en}"
        )
    if stdout:
        print(result.text, end="")
        return
    try:
        target = onboarding.write_draft(result, settings.AGENCIES_DIR, overwrite=force)
    except FileExistsError as exc:
        _fail(str(exc))
    todo = ", ".join(result.todo_required) or "-"
    err.print(
        f"ditulis / wrote {target}: {len(result.matched)} field(s) matched, {len(result.unmatched_headers)} "
        f"column(s) unused, required fields still TODO: {todo}\n" + onboarding.next_steps(code, target, from_file),
        markup=False,
        highlight=False,
        soft_wrap=True,  # the commands are to be pasted: never broken across lines
    )


@schema_app.command("generate")
def schema_generate(check: Annotated[bool, typer.Option(help="only check, exit 1 on drift")] = False) -> None:
    """Rewrite everything derived from schemas/placement.yaml (GX suite, DDL, data dictionary)."""
    from pipelines.generated import artefacts

    drift = []
    for path, text in artefacts().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            drift.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for path in drift:
        console.print(("drifted: " if check else "wrote: ") + str(path))
    raise typer.Exit(1 if (check and drift) else 0)


# ------------------------------------------------------------------------------------------ SIGTERM
# A supervisor (systemd, a container runtime, `kill PID`) stops a command with SIGTERM. Python's default is to die
# on the spot, exit handlers skipped: the temporary Prefect server lived on (parent 1, ~220 MB). Now SIGTERM
# unwinds the command as Ctrl-C does (SystemExit: `finally` blocks and exit handlers run, the server is stopped),
# exit 143 (128 + SIGTERM, as a shell reports a command killed by it).
#
# While a flow runs, Prefect's own SIGTERM handler is installed: it unwinds the flow, then waits for the file tasks
# in its threads to finish before it hands the signal on (to `_exit_on_sigterm`), which took as long as the files
# in hand did, minutes for a large one. So the signal is also watched from a thread (Python's wakeup fd, written
# whichever handler is installed): from that moment the command holds the writer lock (the flow lets go of it at
# once, and another run must not take up files still in this one's hands) and ends after SIGTERM_GRACE_SECONDS
# at the latest, leaving what a kill leaves (files in flight, taken up by the next run) and its server going
# with it (`prefect_api.die_with_parent`).
SIGTERM_GRACE_SECONDS = 5.0
_exiting = False
_sigterm_seen = threading.Event()  # whatever fails after it failed because of it: "Query interrupted" is not a bug
_grace_lock_file: Path | None = None  # set while this process may run flows on a data root
_grace: threading.Thread | None = None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM's handler: SystemExit(143), once; a SIGTERM during that unwinding would cut the cleanup short.
    (`sdmi serve` installs its own while it serves: it stops cleanly, exit 0.)"""
    global _exiting
    _sigterm_seen.set()
    _start_grace(128 + signum)
    if _exiting:
        return
    _exiting = True
    raise SystemExit(128 + signum)


def _end_soon_after_sigterm(zones: Zones) -> None:
    """From here on this command runs flows on `zones`: a SIGTERM ends it within SIGTERM_GRACE_SECONDS."""
    global _grace_lock_file
    _grace_lock_file = zones.lock_file


def _watch_for_sigterm() -> None:
    """Learn of SIGTERM in a thread of its own, even while the main thread waits for a flow's tasks."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        os.close(read_end)
        os.close(write_end)
        return
    os.register_at_fork(after_in_child=_forget_wakeup_fd)  # a forked child's signals are not this process's

    def watch() -> None:
        while data := os.read(read_end, 64):
            if signal.SIGTERM in data:
                _sigterm_seen.set()
                _start_grace(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="sdmi-sigterm-watch", daemon=True).start()


def _end_if_terminated() -> None:
    """After a flow returns: a SIGTERM during it ends the command with 143, not with what the flow made of the
    interruption (DuckDB's "Query interrupted" became "publish failed", exit 2)."""
    if _sigterm_seen.is_set():
        raise SystemExit(128 + signal.SIGTERM)


def _forget_wakeup_fd() -> None:
    with suppress(ValueError):
        signal.set_wakeup_fd(-1)


def _start_grace(code: int) -> None:
    global _grace
    if _grace is None and _grace_lock_file is not None:
        _grace = threading.Thread(
            target=_end_within_grace, args=(_grace_lock_file, code), name="sdmi-sigterm-grace", daemon=True
        )
        _grace.start()


def _end_within_grace(lock_file: Path, code: int) -> None:
    """Hold the writer lock from the moment the flow lets go of it until the process is gone (the kernel
    releases it then), and end the process after SIGTERM_GRACE_SECONDS unless it has ended by itself."""
    import fcntl

    deadline = time.monotonic() + SIGTERM_GRACE_SECONDS
    try:
        held = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        while time.monotonic() < deadline:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break  # held by this process until it is gone; never released here
            except BlockingIOError:
                time.sleep(0.01)
    except OSError:
        pass  # no data root yet, or no flock on this file system: nothing to hold
    time.sleep(max(0.0, deadline - time.monotonic()))
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def main() -> None:
    # Registered first, so it runs last of the exit handlers (after Prefect has sent its last logs and the
    # temporary server has stopped). The interpreter's final garbage-collection passes over what GX, pandas
    # and Prefect leave (~375,000 objects after `sdmi publish`) took 1.2-1.4 s of every command (perf:
    # `gc_collect_main`); frozen, exit takes 0.12-0.16 s. What a command writes is closed explicitly before.
    atexit.register(gc.freeze)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _watch_for_sigterm()
    try:
        app()
    except Exception as exc:
        if _sigterm_seen.is_set():  # interrupted by the signal, not a fault: no traceback, exit as a kill reports it
            sys.exit(128 + signal.SIGTERM)
        if isinstance(exc, ConfigError):
            _say_error(str(exc))
            sys.exit(3)
        sys.excepthook(type(exc), exc, exc.__traceback__)  # typer's readable traceback, as before
        sys.exit(2)  # an engineer must look; 1 would tell the agency to act


if __name__ == "__main__":
    main()

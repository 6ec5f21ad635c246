"""A rollback holds until something changes, and a run with nothing to do still says what it left in the inbox.

One home is built once from the demo files, in two runs: release A (two agencies), then release B (a third agency
added). Each test works on its own copy of that home; most roll it back to A first, as an operator would after a
bad release.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from rich.console import Console

from pipelines import demo, settings, status
from pipelines.flows import ingest_flow, publish_flow
from pipelines.keys import create_key_file
from pipelines.ledger import Ledger
from pipelines.publish import current_release, list_releases, rollback
from pipelines.serve import scheduled_publish_flow
from pipelines.settings import Zones

SDMI = str(Path(sys.executable).with_name("sdmi"))
FIRST = ("kbri_kuala_lumpur", "p3mi_mitra_sejahtera")  # release A
SECOND = "disnaker_kab_cilacap"  # added in release B
LATER = "bp3mi_jatim"  # the new file that arrives after the rollback
NOT_ONBOARDED = "disnaker_kab_brebes"  # an agency with no mapping in schemas/agencies/


def _drop(samples: Path, agency: str, folder: Path) -> None:
    """The demo files of `agency`, dropped into an inbox folder (the agency's own, unless told otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in (samples / agency).iterdir():
        shutil.copy(source, folder / source.name)


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_harness) -> dict:
    """Releases A and B built from real demo files; the second run also saw a folder of an agency not onboarded."""
    base = tmp_path_factory.mktemp("rollback")
    samples = base / "samples"
    demo.generate(samples, rows=1000)
    key = create_key_file(base / "secrets" / "worker.key")
    zones = Zones(base / "home").ensure()
    for agency in FIRST:
        _drop(samples, agency, zones.inbox / agency)
    first = ingest_flow(home=str(zones.home), key_file=str(key), stable_seconds=0)
    _drop(samples, SECOND, zones.inbox / SECOND)
    _drop(samples, "p3mi_mitra_sejahtera", zones.inbox / NOT_ONBOARDED)
    second = ingest_flow(home=str(zones.home), key_file=str(key), stable_seconds=0)
    shutil.rmtree(zones.inbox / NOT_ONBOARDED)  # each test decides what waits in its inbox
    assert first["release_id"] != second["release_id"]
    return {"home": zones.home, "key": key, "samples": samples, "first": first, "second": second,
            "a": first["release_id"], "b": second["release_id"]}  # fmt: skip


@pytest.fixture
def home(built, tmp_path) -> Zones:
    """This test's copy of the built home, release B current."""
    copy = tmp_path / "home"
    shutil.copytree(built["home"], copy, symlinks=True)
    return Zones(copy)


@pytest.fixture
def rolled_back(built, home) -> Zones:
    """The copy rolled back from B (the newest release) to A."""
    assert rollback(home) == built["a"]
    return home


def _release_ids(zones: Zones) -> list[str]:
    return [r.release_id for r in list_releases(zones)]


def _agencies_published(zones: Zones) -> set[str]:
    with duckdb.connect(str(zones.analyst_db), read_only=True) as con:
        return {a for (a,) in con.execute("SELECT DISTINCT source_agency FROM placement_records").fetchall()}


def _sdmi_run(zones: Zones, key: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SDMI, "run", "--home", str(zones.home), "--key-file", str(key), "--stable-seconds", "0", *options],
        env=os.environ.copy(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_an_idle_sdmi_run_after_a_rollback_keeps_the_rolled_back_release_current(built, rolled_back):
    releases = _release_ids(rolled_back)
    done = _sdmi_run(rolled_back, built["key"], "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["idle"] is True
    assert summary["release_id"] == built["a"]
    assert current_release(rolled_back) == built["a"]
    assert _release_ids(rolled_back) == releases  # nothing was built


def test_a_file_sent_again_after_a_rollback_is_a_duplicate_and_the_rollback_holds(built, rolled_back):
    releases = _release_ids(rolled_back)
    _drop(built["samples"], SECOND, rolled_back.inbox / SECOND)  # already received before release B
    summary = ingest_flow(home=str(rolled_back.home), key_file=str(built["key"]), stable_seconds=0)
    assert (summary["received"], summary["duplicates"]) == (0, 1)
    assert summary["release_id"] == built["a"]
    assert current_release(rolled_back) == built["a"]
    assert _release_ids(rolled_back) == releases


def test_a_file_rejected_after_a_rollback_publishes_nothing_and_the_rollback_holds(built, rolled_back):
    releases = _release_ids(rolled_back)
    folder = rolled_back.inbox / LATER
    folder.mkdir(parents=True)
    (folder / "bukan_tabel.csv").write_text("ini bukan tabel\n\x00\x01", encoding="utf-8")
    summary = ingest_flow(home=str(rolled_back.home), key_file=str(built["key"]), stable_seconds=0)
    assert (summary["received"], summary["rejected"]) == (1, 1)
    assert summary["release_id"] == built["a"]
    assert current_release(rolled_back) == built["a"]
    assert _release_ids(rolled_back) == releases
    assert not status.publish_needed(rolled_back)


def test_a_file_rejected_without_a_rollback_is_published_in_the_data_quality_table(built, home):
    folder = home.inbox / LATER
    folder.mkdir(parents=True)
    (folder / "bukan_tabel.csv").write_text("ini bukan tabel\n\x00\x01", encoding="utf-8")
    summary = ingest_flow(home=str(home.home), key_file=str(built["key"]), stable_seconds=0)
    assert summary["release_id"] not in (built["a"], built["b"])
    with duckdb.connect(str(home.analyst_db), read_only=True) as con:
        statuses = con.sql("SELECT status FROM data_quality WHERE file_name = 'bukan_tabel.csv'").fetchall()
    assert statuses == [("rejected",)]


def test_the_scheduled_publish_after_a_rollback_publishes_nothing(built, rolled_back):
    releases = _release_ids(rolled_back)
    result = scheduled_publish_flow(home=str(rolled_back.home))
    assert result == {"switched": False, "skipped": True}
    assert current_release(rolled_back) == built["a"]
    assert _release_ids(rolled_back) == releases


def test_a_new_file_after_a_rollback_is_published_with_everything_received(built, rolled_back):
    _drop(built["samples"], LATER, rolled_back.inbox / LATER)
    summary = ingest_flow(home=str(rolled_back.home), key_file=str(built["key"]), stable_seconds=0)
    assert summary["processed"] == 1 and not summary["publish_failed"]
    assert summary["release_id"] not in (built["a"], built["b"])
    assert current_release(rolled_back) == summary["release_id"]
    assert _agencies_published(rolled_back) == {*FIRST, SECOND, LATER}


def test_the_scheduled_publish_releases_a_file_ingested_after_a_rollback(built, rolled_back):
    _drop(built["samples"], LATER, rolled_back.inbox / LATER)
    ingested = ingest_flow(home=str(rolled_back.home), key_file=str(built["key"]), stable_seconds=0, publish=False)
    assert ingested["processed"] == 1 and current_release(rolled_back) == built["a"]
    result = scheduled_publish_flow(home=str(rolled_back.home))
    assert result["skipped"] is False and result["switched"] is True
    assert current_release(rolled_back) == result["release_id"]
    assert _agencies_published(rolled_back) == {*FIRST, SECOND, LATER}


def test_an_explicit_publish_after_a_rollback_rebuilds_from_everything_received(built, rolled_back):
    result = publish_flow(str(rolled_back.home))
    assert result["switched"] is True
    assert result["release_id"] not in (built["a"], built["b"])
    assert current_release(rolled_back) == result["release_id"]
    assert _agencies_published(rolled_back) == {*FIRST, SECOND}


def test_a_changed_agency_priority_after_a_rollback_needs_a_publish(built, rolled_back, tmp_path, monkeypatch):
    assert not status.publish_needed(rolled_back)
    agencies = tmp_path / "agencies"
    shutil.copytree(settings.AGENCIES_DIR, agencies)
    mapping = agencies / f"{SECOND}.yaml"
    text = mapping.read_text(encoding="utf-8")
    priority = yaml.safe_load(text)["priority"]
    mapping.write_text(text.replace(f"priority: {priority}\n", "priority: 9\n"), encoding="utf-8")
    monkeypatch.setattr(settings, "AGENCIES_DIR", agencies)
    assert status.publish_needed(rolled_back)


def test_a_file_replayed_by_an_ingest_without_publish_is_released_by_the_scheduled_publish(built, home):
    """As under `sdmi serve`: the replayed file ends as it was (processed), but its batch was staged again."""
    ledger = Ledger(home.ledger_db)
    entry = next(e for e in ledger.files(status=("processed",)) if e.agency == SECOND)
    ledger.reopen(entry.sha256)
    ingest_flow(home=str(home.home), key_file=str(built["key"]), publish=False, stable_seconds=0)
    assert ledger.get(entry.sha256).status == "processed"
    assert status.publish_needed(home)
    result = scheduled_publish_flow(home=str(home.home))
    assert result["release_id"] not in (built["a"], built["b"])
    assert current_release(home) == result["release_id"]
    assert not status.publish_needed(home)


def test_a_missing_current_release_is_published_again_although_a_release_holds_the_ledger(built, home):
    assert not status.publish_needed(home)
    home.current.unlink()
    assert status.publish_needed(home)


def test_sdmi_status_says_the_warehouse_was_rolled_back_until_new_data_or_a_publish(built, rolled_back):
    info = status.collect(rolled_back)
    newest = built["b"]
    assert (info["release"]["id"], info["newest_release"], info["rolled_back"]) == (built["a"], newest, True)
    assert info["publish_pending"] is False
    out = io.StringIO()
    status.render(info, Console(file=out, width=1000, color_system=None))
    text = out.getvalue()
    assert f"Gudang data dikembalikan (rollback) dari rilis terbaru {newest}" in text
    assert "tetap begitu sampai ada data baru atau `sdmi publish`" in text
    assert f"The warehouse was rolled back from the newest release {newest}" in text
    assert "it stays so until new data or `sdmi publish`" in text


def test_sdmi_status_says_nothing_of_a_rollback_when_the_newest_release_is_current(built, home):
    info = status.collect(home)
    assert (info["rolled_back"], info["publish_pending"]) == (False, False)
    out = io.StringIO()
    status.render(info, Console(file=out, width=1000, color_system=None))
    assert "rollback" not in out.getvalue() and "rolled back" not in out.getvalue()


def test_a_run_that_processes_files_names_inbox_folders_of_agencies_not_onboarded(built):
    assert built["second"]["not_onboarded"] == [NOT_ONBOARDED]
    assert built["first"]["not_onboarded"] == []


def test_an_idle_sdmi_run_names_inbox_folders_of_agencies_not_onboarded(built, home):
    _drop(built["samples"], "p3mi_mitra_sejahtera", home.inbox / NOT_ONBOARDED)
    done = _sdmi_run(home, built["key"], "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["idle"] is True
    assert summary["not_onboarded"] == [NOT_ONBOARDED]
    shown = _sdmi_run(home, built["key"])
    assert shown.returncode == 0, shown.stderr[-3000:]
    said = " ".join(shown.stdout.split())
    assert f"Folders of agencies not onboarded are not read: {NOT_ONBOARDED}" in said
    assert f"Folder instansi yang belum terdaftar (onboarding) tidak dibaca: {NOT_ONBOARDED}" in said
    assert any((home.inbox / NOT_ONBOARDED).iterdir())  # left where the agency put it


def test_an_idle_sdmi_run_writes_an_agency_index_a_stopped_run_left_out(built, home):
    """A run killed after a file's report and before the index: the next run, idle, writes the index."""
    pages = sorted(home.reports.glob("*/index.html"))
    assert pages
    pages[0].unlink()
    done = _sdmi_run(home, built["key"], "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1])["idle"] is True
    assert pages[0].is_file()

"""CLI conventions: --help everywhere, documented exit codes, progress on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.ledger import Ledger
from pipelines.settings import Zones

P3MI = "p3mi_mitra_sejahtera"
SDMI = str(Path(sys.executable).with_name("sdmi"))


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += _commands(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


COMMANDS = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "sdmi")
def test_help_works_for_every_command(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_exit_codes_are_documented_in_the_module_docstring():
    import pipelines.cli

    doc = pipelines.cli.__doc__ or ""
    for code in ("0 fine", "1 an agency must act", "2 an engineer must look", "3 bad configuration", "4 another"):
        assert code in doc


def _junk_inbox(home: Path) -> None:
    folder = home / "inbox" / P3MI
    folder.mkdir(parents=True)
    (folder / "bukan_data.csv").write_text("ini bukan tabel\n\x00\x01\x02", encoding="utf-8")
    (folder / "kosong.csv").write_bytes(b"")


def test_run_exits_1_when_a_file_is_rejected(prefect_harness, tmp_path, key_file):
    _junk_inbox(tmp_path)
    result = CliRunner().invoke(
        app, ["run", "--home", str(tmp_path), "--key-file", str(key_file), "--stable-seconds", "0", "--no-publish"]
    )
    assert result.exit_code == 1, result.output
    rejected = Ledger(Zones(tmp_path).ledger_db).files(status=("rejected",))
    assert len(rejected) == 2


def test_run_without_a_terminal_prints_plain_lines_and_ends_with_the_summary(prefect_harness, tmp_path, key_file):
    _junk_inbox(tmp_path)
    result = CliRunner().invoke(
        app, ["run", "--home", str(tmp_path), "--key-file", str(key_file), "--stable-seconds", "0", "--no-publish"]
    )
    lines = result.output.splitlines()
    assert 'sdmi: files {"total": 2}' in lines
    assert sum(line.startswith("sdmi: file_done") for line in lines) == 2
    assert "ringkasan / summary" in result.output.split("sdmi: file_done")[-1]
    assert "\x1b[" not in result.output  # no terminal control codes in a log file


def test_run_exits_3_without_a_secret_key(prefect_harness, tmp_path):
    result = CliRunner().invoke(app, ["run", "--home", str(tmp_path), "--stable-seconds", "0"])
    assert result.exit_code == 3, result.output


def test_run_json_prints_one_json_summary_line(prefect_harness, tmp_path, key_file):
    _junk_inbox(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--home",
            str(tmp_path),
            "--key-file",
            str(key_file),
            "--stable-seconds",
            "0",
            "--no-publish",
            "--json",
        ],
    )
    summary = json.loads(result.output.splitlines()[-1])
    assert summary["rejected"] == 2 and summary["exit_code"] == 1


@pytest.mark.slow
def test_run_on_a_terminal_shows_a_progress_bar(tmp_path, key_file, prefect_api):
    _junk_inbox(tmp_path)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "120", "PREFECT_API_URL": prefect_api}
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [SDMI, "run", "--home", str(tmp_path), "--key-file", str(key_file), "--stable-seconds", "0", "--no-publish"],
        stdin=follower, stdout=follower, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert proc.wait(timeout=300) == 1
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8", "replace"))
    assert "files / berkas" in text and "2/2" in text
    assert "sdmi: file_done" not in text
    assert "ringkasan / summary" in text


# ------------------------------------------------------------------------------------------ status
def test_status_shows_a_claimed_but_unfinished_file_as_in_progress(tmp_path):
    ledger = Ledger(Zones(tmp_path).ensure().ledger_db)
    ledger.claim("ab" * 32, P3MI, "setengah_jalan.csv", 123)  # what a crash after the claim leaves
    result = CliRunner().invoke(app, ["status", "--home", str(tmp_path), "--json"])
    info = json.loads(result.output)
    assert [(s["agency"], s["file"], s["status"]) for s in info["stuck"]] == [(P3MI, "setengah_jalan.csv", "claimed")]
    text = CliRunner().invoke(app, ["status", "--home", str(tmp_path)]).output
    assert "setengah_jalan.csv" in text and "in progress" in text


def test_status_counts_files_waiting_in_the_inbox(tmp_path):
    folder = Zones(tmp_path).ensure().inbox / P3MI
    folder.mkdir()
    for name in ("a.csv", "b.csv"):
        (folder / name).write_text("x\n", encoding="utf-8")
    (folder / "c.csv.part").write_text("x\n", encoding="utf-8")  # still being uploaded: not counted
    info = json.loads(CliRunner().invoke(app, ["status", "--home", str(tmp_path), "--json"]).output)
    assert info["inbox"] == {P3MI: 2}


@pytest.mark.parametrize("command", ["demo-data", "demo"])
def test_demo_with_too_few_rows_is_a_usage_error_naming_the_least_and_writes_nothing(command, tmp_path):
    args = [command, str(tmp_path / "inbox")] if command == "demo-data" else [command, "--home", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--rows", "999"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "at least 1000 rows" in said and "paling sedikit 1000 baris" in said
    assert not (tmp_path / "inbox").exists()


def test_status_names_folders_of_agencies_not_onboarded_apart_from_files_waiting(tmp_path):
    inbox = Zones(tmp_path).ensure().inbox
    for agency, names in ((P3MI, ["a.csv"]), ("dinas_belum_terdaftar", ["x.csv", "y.csv"])):
        (inbox / agency).mkdir()
        for name in names:
            (inbox / agency / name).write_text("x\n", encoding="utf-8")
    info = json.loads(CliRunner().invoke(app, ["status", "--home", str(tmp_path), "--json"]).output)
    assert info["inbox"] == {P3MI: 1}
    assert info["not_onboarded"] == {"dinas_belum_terdaftar": 2}
    said = " ".join(CliRunner().invoke(app, ["status", "--home", str(tmp_path)]).output.split())
    assert f"waiting in inbox: {P3MI}: 1" in said
    assert "Folders of agencies not onboarded are not read: dinas_belum_terdaftar (2)" in said


@pytest.mark.parametrize("command", [["run", "--home"], ["publish", "--home"], ["demo-data"]])
def test_a_data_root_or_folder_that_is_a_file_exits_3_in_both_languages_without_a_traceback(command, tmp_path):
    a_file = tmp_path / "bukan_folder"
    a_file.write_text("x", encoding="utf-8")
    done = _sdmi(*command, str(a_file))
    assert done.returncode == 3, done.stderr
    said = _said(done)
    assert "Traceback" not in said and "adalah berkas, bukan folder" in said and "is a file, not a folder" in said


def test_an_unexpected_error_exits_2_for_an_engineer_not_1_for_an_agency(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pipelines import cli; cli.app.command('boom')(lambda: 1 / 0); "
         "sys.argv = ['sdmi', 'boom']; cli.main()"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "ZeroDivisionError" in done.stderr


def test_status_of_an_empty_home_says_no_release_yet(tmp_path):
    result = CliRunner().invoke(app, ["status", "--home", str(tmp_path)])
    assert result.exit_code == 0
    assert "no release published yet" in result.output


def test_a_long_file_reports_its_rows_chunk_by_chunk(prefect_harness, tmp_path, key_file, monkeypatch):
    folder = tmp_path / "inbox" / P3MI
    folder.mkdir(parents=True)
    header = "Worker ID;National ID;Full Name;Gender;Destination;Departure Date\n"
    rows = "".join(f"W{i};35070145079500{i % 90 + 10};Nama {i};Female;Taiwan;2024-03-01\n" for i in range(250))
    (folder / "panjang.csv").write_text(header + rows, encoding="cp1252")
    monkeypatch.setenv("SDMI_CHUNK_ROWS", "100")
    result = CliRunner().invoke(
        app, ["run", "--home", str(tmp_path), "--key-file", str(key_file), "--stable-seconds", "0", "--no-publish"]
    )
    progress = [
        json.loads(line.split(" ", 2)[2]) for line in result.output.splitlines() if line.startswith("sdmi: rows")
    ]
    assert [p["done"] for p in progress] == [100, 200, 250], result.output


def test_run_exits_3_before_any_file_when_an_agency_expectation_cannot_run(
    prefect_harness, tmp_path, key_file, monkeypatch
):
    # GX leaves an expectation it cannot build out of a suite with only a log line: the rule would never run
    import shutil

    import yaml

    from pipelines import settings

    agencies = tmp_path / "agencies"
    shutil.copytree(settings.AGENCIES_DIR, agencies)
    mapping_file = agencies / f"{P3MI}.yaml"
    mapping = yaml.safe_load(mapping_file.read_text(encoding="utf-8"))
    mapping["expectations"] = [{
        "rule_id": f"{P3MI}.only_asia", "expectation": "expect_column_values_to_be_in_sett",
        "kwargs": {"column": "destination_country", "value_set": ["HKG", "MYS"]},
        "message_id": "Negara di luar Asia.", "message_en": "Destination outside Asia.",
    }]  # fmt: skip
    mapping_file.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(settings, "AGENCIES_DIR", agencies)
    home = tmp_path / "home"
    _junk_inbox(home)
    result = CliRunner().invoke(
        app, ["run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0", "--no-publish"]
    )
    assert result.exit_code == 3, result.output
    said = result.output.replace("\n", "")  # the console wraps long lines
    assert f"{P3MI}.only_asia" in said and str(mapping_file) in said
    assert "Traceback" not in said and "Flow run" not in said  # stopped before a flow began
    assert sorted(p.name for p in (home / "inbox" / P3MI).iterdir()) == ["bukan_data.csv", "kosong.csv"]


def test_agency_new_from_an_empty_sample_exits_3_with_the_reason_in_both_languages_and_no_traceback(tmp_path):
    empty = tmp_path / "kosong.csv"
    empty.write_bytes(b"")
    done = subprocess.run(
        [SDMI, "agency", "new", "agensi_baru", "--from", str(empty), "--stdout"], capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert "Traceback" not in said and done.stdout == ""
    assert "Berkas kosong (0 byte)." in said and "The file is empty (0 bytes)." in said
    assert said.index("Tidak dapat menyusun pemetaan dari kosong.csv") < said.index("Cannot draft a mapping from")


# ------------------------------------------------------------------------------------------ releases, rollback, replay
def _home_with_releases(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    """A data root with `count` releases published from synthetic staged rows, the last one current."""
    import test_publish_support as support

    from pipelines.publish import publish

    home = tmp_path / "home"
    zones = Zones(home).ensure()
    ledger = support.Ledger(zones)
    ledger.add("bp2mi", n=5)
    codelists = support.write_codelists(tmp_path / "codelists")
    ids = []
    for _ in range(count):
        result = publish(zones, ledger.batches, support.agencies(), codelists_dir=codelists)
        assert result.switched, result.reason
        ids.append(result.release_id)
    return home, ids


def _sdmi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SDMI, *args], capture_output=True, text=True, timeout=120)


def _said(done: subprocess.CompletedProcess) -> str:
    return " ".join(done.stderr.split())  # the console wraps long lines


def test_releases_lists_each_whole_id_on_its_own_line_with_the_current_one_marked(tmp_path):
    home, ids = _home_with_releases(tmp_path, 2)
    done = _sdmi("releases", "--home", str(home))
    assert done.returncode == 0, done.stderr
    older, current = done.stdout.splitlines()
    assert older.split()[0] == ids[0] and "current" not in older and "placement_records=5" in older
    assert current.split()[:2] == ["*", ids[1]] and current.endswith("(rilis saat ini / current release)")


def test_releases_of_a_home_without_any_says_so(tmp_path):
    done = _sdmi("releases", "--home", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "belum ada rilis / no release published yet"
    assert json.loads(_sdmi("releases", "--home", str(tmp_path), "--json").stdout) == []


def test_releases_json_is_one_array_of_objects_with_the_path_as_text(tmp_path):
    home, ids = _home_with_releases(tmp_path, 2)
    done = _sdmi("releases", "--home", str(home), "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(r["release_id"], r["current"]) for r in listed] == [(ids[0], False), (ids[1], True)]
    assert listed[1]["path"] == str(Zones(home).releases / ids[1])
    assert listed[1]["counts"]["placement_records"] == 5 and listed[1]["created_at"]


def test_rollback_switches_back_to_the_previous_release_and_names_it(tmp_path):
    from pipelines.publish import current_release

    home, ids = _home_with_releases(tmp_path, 2)
    done = _sdmi("rollback", "--home", str(home))
    assert done.returncode == 0, done.stderr
    assert current_release(Zones(home)) == ids[0] and ids[0] in done.stdout


def test_rollback_without_an_earlier_release_exits_3_in_both_languages_and_no_traceback(tmp_path):
    from pipelines.publish import current_release

    home, ids = _home_with_releases(tmp_path, 1)
    done = _sdmi("rollback", "--home", str(home))
    assert done.returncode == 3, done.stderr
    said = _said(done)
    assert "Traceback" not in said and current_release(Zones(home)) == ids[0]
    assert said.index("Tidak ada rilis sebelum rilis saat ini") < said.index("No release before the current one")


def test_rollback_to_an_unknown_release_exits_3_naming_the_known_ones(tmp_path):
    from pipelines.publish import current_release

    home, ids = _home_with_releases(tmp_path, 2)
    done = _sdmi("rollback", "20990101T000000000Z-deadbeef", "--home", str(home))
    assert done.returncode == 3, done.stderr
    said = _said(done)
    assert "Traceback" not in said and current_release(Zones(home)) == ids[1]
    assert said.index("tidak dikenal") < said.index("Unknown release '20990101T000000000Z-deadbeef'")
    assert ids[0] in said and ids[1] in said


def test_rollback_while_another_run_holds_the_writer_lock_exits_4_as_run_does(tmp_path):
    from pipelines.locking import writer_lock
    from pipelines.publish import current_release

    home, ids = _home_with_releases(tmp_path, 2)
    with writer_lock(Zones(home)):
        done = _sdmi("rollback", "--home", str(home), "--wait", "0")
    assert done.returncode == 4, done.stderr
    said = _said(done)
    assert "Traceback" not in said and current_release(Zones(home)) == ids[1]
    assert said.index("Proses lain sedang berjalan") < said.index("another sdmi run or publish is in progress")


def test_replay_while_another_run_holds_the_writer_lock_exits_4_and_reopens_no_file(tmp_path, key_file):
    from pipelines.locking import writer_lock

    zones = Zones(tmp_path / "home").ensure()
    ledger = Ledger(zones.ledger_db)
    ledger.claim("ab" * 32, P3MI, "kosong.csv", 0)
    ledger.finish("ab" * 32, "rejected", reason_code="empty_file")
    with writer_lock(zones):
        done = _sdmi("replay", "--home", str(zones.home), "--key-file", str(key_file), "--wait", "0")
    assert done.returncode == 4, done.stderr
    said = _said(done)
    assert "Traceback" not in said
    assert said.index("Proses lain sedang berjalan") < said.index("another sdmi run or publish is in progress")
    assert ledger.get("ab" * 32).status == "rejected"


@pytest.mark.parametrize("option", [("--agency", "p3mi_mitra_sejahteraa"), ("--sha256", "ffff")])
def test_replay_of_an_agency_or_hash_that_matches_no_file_exits_3_naming_the_agencies_and_reopens_nothing(
    tmp_path, key_file, option
):
    zones = Zones(tmp_path / "home").ensure()
    ledger = Ledger(zones.ledger_db)
    ledger.claim("ab" * 32, P3MI, "kosong.csv", 0)
    ledger.finish("ab" * 32, "rejected", reason_code="empty_file")
    done = _sdmi("replay", "--home", str(zones.home), "--key-file", str(key_file), *option)
    assert done.returncode == 3, done.stderr
    said = _said(done)
    assert "Traceback" not in said and f"No processed file matches {' '.join(option)}" in said
    assert f"agencies with files: {P3MI}" in said and "Tidak ada berkas yang cocok" in said
    assert ledger.get("ab" * 32).status == "rejected"


def test_replay_of_a_home_with_no_processed_file_says_so_and_exits_0(tmp_path, key_file):
    zones = Zones(tmp_path / "home").ensure()
    done = _sdmi("replay", "--home", str(zones.home), "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert "no processed file to replay yet" in " ".join(done.stdout.split())


# ------------------------------------------------------------------------------------------ configuration
def _sdmi_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | env  # a temporary server, unless given
    return subprocess.run([SDMI, *args], env=full, capture_output=True, text=True, timeout=300)


def _one_file_inbox(home: Path) -> Path:
    folder = home / "inbox" / P3MI
    folder.mkdir(parents=True)
    header = "Worker ID;National ID;Full Name;Gender;Destination;Departure Date\n"
    (folder / "satu.csv").write_text(header + "W1;3507014507950011;Nama;Female;Taiwan;2024-03-01\n", encoding="cp1252")
    return folder


def _refused_as_configuration(done: subprocess.CompletedProcess, *named: str) -> str:
    """Exit 3, no traceback, the message in Indonesian then English, naming what is wrong."""
    said = _said(done)
    assert done.returncode == 3, said
    assert "Traceback" not in said
    for name in named:
        assert name in said, said
    return said


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("SDMI_STABLE_SECONDS", "abc"),
        ("SDMI_STABLE_SECONDS", "-1"),
        ("SDMI_WORKERS", "two"),
        ("SDMI_TASK_RUNNER", "processes"),
        ("SDMI_CHUNK_ROWS", "0"),
        ("SDMI_CHUNK_BYTES", "64MB"),
        ("SDMI_PUBLISH_MEMORY", "lots"),
        ("SDMI_PREFECT_SERVER_TIMEOUT", "soon"),
    ],
)
def test_run_with_a_setting_it_cannot_take_exits_3_naming_it_before_any_file_is_claimed(
    tmp_path, key_file, setting, value
):
    folder = _one_file_inbox(tmp_path)
    done = _sdmi_with({setting: value}, "run", "--home", str(tmp_path), "--key-file", str(key_file))
    said = _refused_as_configuration(done, setting, repr(value))
    assert said.index(f"{setting} harus") < said.index(f"{setting} must be")
    assert [p.name for p in folder.iterdir()] == ["satu.csv"]
    assert not Zones(tmp_path).ledger_db.exists()


def test_run_names_every_setting_that_is_wrong_at_once(tmp_path, key_file):
    done = _sdmi_with(
        {"SDMI_WORKERS": "two", "SDMI_CHUNK_ROWS": "-5"}, "run", "--home", str(tmp_path), "--key-file", str(key_file)
    )
    _refused_as_configuration(done, "SDMI_WORKERS", "SDMI_CHUNK_ROWS")


def test_publish_with_a_memory_limit_that_is_not_an_amount_exits_3_naming_it(tmp_path):
    done = _sdmi_with({"SDMI_PUBLISH_MEMORY": "lots"}, "publish", "--home", str(tmp_path))
    _refused_as_configuration(done, "SDMI_PUBLISH_MEMORY", "'lots'", "1GB")
    assert not Zones(tmp_path).releases.exists()


@pytest.mark.parametrize("keep", ["0", "-1"])
def test_publish_keeping_no_release_exits_3_before_building_anything(tmp_path, keep):
    done = _sdmi("publish", "--home", str(tmp_path), "--keep", keep)
    _refused_as_configuration(done, "--keep")
    assert "--keep must be 1 or more" in _said(done)
    assert not Zones(tmp_path).releases.exists()


def test_run_refuses_negative_stable_seconds_with_exit_3(tmp_path, key_file):
    folder = _one_file_inbox(tmp_path)
    done = _sdmi_with({}, "run", "--home", str(tmp_path), "--key-file", str(key_file), "--stable-seconds", "-3")
    said = _refused_as_configuration(done, "--stable-seconds")
    assert said.index("harus 0 atau lebih") < said.index("must be 0 or more")
    assert [p.name for p in folder.iterdir()] == ["satu.csv"]


def test_a_bad_setting_does_not_stop_a_command_that_does_not_read_it(tmp_path):
    done = _sdmi_with({"SDMI_WORKERS": "two"}, "status", "--home", str(tmp_path))
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_run_against_a_prefect_api_that_does_not_answer_exits_3_before_any_file_is_claimed(tmp_path, key_file):
    from pipelines.serve import free_port

    folder = _one_file_inbox(tmp_path)
    api = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    done = _sdmi_with(
        {"PREFECT_API_URL": api}, "run", "--home", str(tmp_path), "--key-file", str(key_file), "--stable-seconds", "0"
    )
    said = _refused_as_configuration(done, f"PREFECT_API_URL={api}")
    assert said.index("tidak dapat dihubungi") < said.index("cannot be reached")
    assert [p.name for p in folder.iterdir()] == ["satu.csv"]
    assert not Zones(tmp_path).ledger_db.exists()


def test_a_replaced_key_file_is_refused_before_any_file_is_claimed_and_a_rekey_replays_under_the_new_one(
    tmp_path, key_file
):
    """Every worker and record key would change under another key: refused (exit 3) until `replay --rekey`."""
    from pipelines.keys import create_key_file

    home = tmp_path / "home"
    _one_file_inbox(home)
    first = _sdmi_with({}, "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0")
    assert first.returncode == 0, _said(first)
    new_key = create_key_file(tmp_path / "new.key")
    (home / "inbox" / P3MI / "dua.csv").write_text(
        "Worker ID;National ID;Full Name;Gender;Destination;Departure Date\n"
        "W2;3507014507950029;Nama;Female;Taiwan;2024-04-01\n",
        encoding="cp1252",
    )
    refused = _sdmi_with({}, "run", "--home", str(home), "--key-file", str(new_key), "--stable-seconds", "0")
    _refused_as_configuration(refused, "sdmi replay --rekey")
    assert (home / "inbox" / P3MI / "dua.csv").is_file()  # not claimed
    rekeyed = _sdmi_with({}, "replay", "--rekey", "--home", str(home), "--key-file", str(new_key))
    assert rekeyed.returncode == 0, _said(rekeyed)
    again = _sdmi_with({}, "run", "--home", str(home), "--key-file", str(new_key), "--stable-seconds", "0")
    assert again.returncode == 0, _said(again)
    assert not (home / "inbox" / P3MI / "dua.csv").exists()
    (home / "inbox" / P3MI / "tiga.csv").write_text(
        "Worker ID;National ID;Full Name;Gender;Destination;Departure Date\n"
        "W3;3507014507950037;Nama;Female;Taiwan;2024-05-01\n",
        encoding="cp1252",
    )
    old = _sdmi_with({}, "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0")
    _refused_as_configuration(old, "sdmi replay --rekey")  # the new key is the data root's now

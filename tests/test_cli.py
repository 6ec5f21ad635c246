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
    assert sorted(p.name for p in (home / "inbox" / P3MI).iterdir()) == ["bukan_data.csv", "kosong.csv"]

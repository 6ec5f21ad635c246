"""`sdmi agency check` (a dry run that writes nothing) and `sdmi agency new` (a draft mapping)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from agency_factory import process_dropped
from typer.testing import CliRunner

from pipelines import config, demo, onboarding
from pipelines.cli import app
from pipelines.problems import ConfigError

P3MI = "p3mi_mitra_sejahtera"
SISKOP = "bp2mi_siskop2mi"
JATIM = "bp3mi_jatim"


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> tuple[Path, demo.DemoTruth]:
    directory = tmp_path_factory.mktemp("samples")
    return directory, demo.generate(directory, rows=1000)


def _file(samples: tuple[Path, demo.DemoTruth], agency: str) -> Path:
    return sorted((samples[0] / agency).iterdir())[0]


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*")] if path.exists() else []


def test_agency_check_writes_nothing_under_sdmi_home(samples, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SDMI_HOME", str(home))
    result = CliRunner().invoke(app, ["agency", "check", "--agency", P3MI, str(_file(samples, P3MI)), "--json"])
    assert result.exit_code in (0, 1), result.output
    assert _files_under(home) == []


def test_agency_check_masks_identifiers_in_the_preview(samples):
    report = onboarding.check(_file(samples, P3MI), config.agency(P3MI), preview_rows=3)
    assert len(report.preview) == 3
    for row in report.preview:
        for name in ("nik", "full_name", "passport_number", "birth_date"):
            assert row.get(name) in (onboarding.MASK, None)
    shown = json.dumps(report.as_dict(), default=str)
    assert not [x for x in samples[1].identifiers if x and x in shown]


def test_agency_check_counts_rows_per_rule_and_reconciles(samples):
    report = onboarding.check(_file(samples, P3MI), config.agency(P3MI))
    assert report.rows_read == samples[1].rows_by_file[f"{P3MI}/{_file(samples, P3MI).name}"]
    assert report.rows_read == report.rows_accepted + report.rows_quarantined
    critical = {r.rule_id for r in report.rules if r.severity == "critical"}
    assert critical and all(r.rows > 0 for r in report.rules)
    assert report.rows_quarantined > 0 and report.exit_code == 1


def test_agency_check_lists_matched_and_unmatched_columns(samples, tmp_path):
    source = _file(samples, SISKOP)
    lines = source.read_text(encoding="utf-8").splitlines()
    extra = tmp_path / "extra.csv"
    extra.write_text("\n".join([lines[0] + ",Catatan Petugas"] + [x + ",-" for x in lines[1:20]]), encoding="utf-8")
    report = onboarding.check(extra, config.agency(SISKOP))
    assert report.matched["nik"] and report.matched["destination_country"]
    assert report.unmatched_headers == ["Catatan Petugas"]


def test_agency_check_reports_a_file_that_would_be_rejected(tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n", encoding="utf-8")
    report = onboarding.check(junk, config.agency(P3MI))
    assert report.rejected and report.exit_code == 1


def _with_sep_line(source: Path, target: Path) -> None:
    """Excel's `sep=;` hint above the header: the header is on row 2, not the registered row 1."""
    target.write_bytes(b"sep=;\r\n" + source.read_bytes())


def _with_title_on_two_lines(source: Path, target: Path) -> None:
    """A title cell with a line break in it above the header: the header is on line 3, not row 1."""
    target.write_bytes(b'"Laporan\nPenempatan"\n' + source.read_bytes())


def _with_sheet_renamed(source: Path, target: Path) -> None:
    """The data sheet renamed (the registered sheet is `Penempatan`)."""
    import openpyxl

    workbook = openpyxl.load_workbook(source)
    workbook.worksheets[0].title = "Penempatan Okt 2025"
    workbook.save(target)


def _run_one(tmp_path: Path, key_file: Path, agency: str, path: Path) -> tuple[dict, object]:
    """The file through `process_file`, as `sdmi run` takes it from the inbox: its report's facts and ledger row."""
    zones, entry, _ = process_dropped(tmp_path / "home", key_file, agency, path.name, path.read_bytes())
    (facts,) = (zones.reports / agency).glob("*/report.json")
    return json.loads(facts.read_text(encoding="utf-8")), entry


@pytest.mark.parametrize(
    ("agency", "alter", "suffix"),
    [(P3MI, _with_sep_line, ".csv"), (SISKOP, _with_title_on_two_lines, ".csv"), (JATIM, _with_sheet_renamed, ".xlsx")],
    ids=["sep_line_above_the_header", "title_on_two_lines_above_the_header", "sheet_renamed"],
)
def test_agency_check_accepts_a_file_a_run_reads_by_detection_with_the_same_warning(
    samples, tmp_path, key_file, agency, alter, suffix
):
    sample = tmp_path / f"sample{suffix}"
    alter(_file(samples, agency), sample)
    facts, entry = _run_one(tmp_path, key_file, agency, sample)
    assert entry.status != "rejected", entry.reason_en
    run_detection = [w["en"] for w in facts["warnings"] if "read by detection" in w["en"]]
    assert len(run_detection) == 1

    report = onboarding.check(sample, config.agency(agency))

    assert report.rejected is None, report.rejected_reason
    assert (report.rows_read, report.rows_accepted) == (entry.rows_read, entry.rows_accepted)
    assert [w for w in report.warnings if "read by detection" in w] == run_detection


def test_agency_check_rejects_a_header_only_file_for_the_reason_a_run_gives(samples, tmp_path, key_file):
    header_only = tmp_path / "hanya_judul.csv"
    header_only.write_text(_file(samples, SISKOP).read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    _, entry = _run_one(tmp_path, key_file, SISKOP, header_only)
    report = onboarding.check(header_only, config.agency(SISKOP))
    assert entry.reason_code == report.rejected == "no_data_rows"
    assert report.rejected_reason == entry.reason_en and report.exit_code == 1


def test_agency_check_refuses_an_agency_whose_expectation_gx_cannot_build_before_reading_the_file(tmp_path):
    from agency_factory import agency_config

    cfg = agency_config(
        expectations=[{
            "rule_id": "test_agency.misspelt", "expectation": "expect_column_values_to_be_in_sett",
            "kwargs": {"column": "sex", "value_set": ["F"]}, "message_id": "Salah.", "message_en": "Wrong.",
        }]
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"test_agency\.misspelt"):
        onboarding.check(tmp_path / "not_there.csv", cfg)


def test_agency_new_drafts_a_mapping_that_loads(samples, tmp_path):
    drafted = onboarding.draft("agensi_baru", _file(samples, SISKOP))
    assert drafted.todo_required == []
    path = tmp_path / "agensi_baru.yaml"
    path.write_text(drafted.text, encoding="utf-8")
    cfg = config.load_agency_file(path)
    assert cfg.columns["nik"] == [drafted.matched["nik"]]
    assert cfg.record_id == [drafted.matched["source_record_id"]]


def test_drafted_mapping_processes_the_sample_like_the_onboarded_one(samples, tmp_path):
    source = _file(samples, SISKOP)
    path = tmp_path / "agensi_baru.yaml"
    path.write_text(onboarding.draft("agensi_baru", source).text, encoding="utf-8")
    drafted = onboarding.check(source, config.load_agency_file(path))
    assert drafted.rejected is None
    assert drafted.rows_read == onboarding.check(source, config.agency(SISKOP)).rows_read


def test_agency_new_leaves_a_missing_required_field_as_todo_until_resolved(tmp_path):
    sample = tmp_path / "tanpa_negara.csv"
    sample.write_text("NIK;Nama;Tanggal Berangkat\n3201010101900001;Siti;01/02/2024\n", encoding="utf-8")
    drafted = onboarding.draft("agensi_baru", sample)
    assert "destination_country" in drafted.todo_required
    path = tmp_path / "agensi_baru.yaml"
    path.write_text(drafted.text, encoding="utf-8")
    with pytest.raises(ConfigError, match="destination_country"):
        config.load_agency_file(path)
    resolved = yaml.safe_load(drafted.text)
    resolved["columns"] = {k: v for k, v in resolved["columns"].items() if v is not None}
    resolved["columns"]["destination_country"] = ["Negara"]
    path.write_text(yaml.safe_dump(resolved), encoding="utf-8")
    assert config.load_agency_file(path).columns["destination_country"] == ["Negara"]


def test_agency_new_drafts_a_mapping_from_a_header_only_template(samples, tmp_path):
    template = tmp_path / "template.csv"
    template.write_text(_file(samples, SISKOP).read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    drafted = onboarding.draft("agensi_baru", template)
    assert drafted.matched == onboarding.draft("agensi_baru", _file(samples, SISKOP)).matched
    assert drafted.todo_required == []
    path = tmp_path / "agensi_baru.yaml"
    path.write_text(drafted.text, encoding="utf-8")
    assert config.load_agency_file(path).columns["nik"] == [drafted.matched["nik"]]


def test_agency_new_drafts_a_mapping_from_a_header_only_xlsx_template(samples, tmp_path):
    import openpyxl

    from pipelines import mapping, readers

    sample = _file(samples, JATIM)
    header = [h for h in readers.open_file(sample, readers.ReadOptions()).header if h != mapping.ROW]
    template = tmp_path / "template.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.append(header)
    workbook.save(template)
    drafted = onboarding.draft("agensi_baru", template)
    assert drafted.matched == onboarding.draft("agensi_baru", sample).matched
    assert drafted.matched  # the header was read, not an empty draft


def test_agency_new_stdout_prints_a_draft_from_a_header_only_template(samples, tmp_path):
    template = tmp_path / "template.csv"
    template.write_bytes(_file(samples, P3MI).read_bytes().splitlines(keepends=True)[0])
    result = CliRunner().invoke(app, ["agency", "new", "agensi_baru", "--from", str(template), "--stdout"])
    assert result.exit_code == 0, result.output
    assert "agency: agensi_baru" in result.output and "delimiter: ;" in result.output


def test_agency_new_stdout_prints_the_draft_and_writes_no_file(samples):
    before = sorted(p.name for p in config.settings.AGENCIES_DIR.iterdir())
    result = CliRunner().invoke(app, ["agency", "new", "agensi_baru", "--from", str(_file(samples, P3MI)), "--stdout"])
    assert result.exit_code == 0, result.output
    assert "agency: agensi_baru" in result.output and "# TODO" in result.output
    assert sorted(p.name for p in config.settings.AGENCIES_DIR.iterdir()) == before


def test_agency_new_refuses_to_overwrite_an_onboarded_agency(samples):
    result = CliRunner().invoke(app, ["agency", "new", P3MI, "--from", str(_file(samples, P3MI))])
    assert result.exit_code == 3


# ------------------------------------------------------------------------------------------ drafts
SDMI = str(Path(sys.executable).with_name("sdmi"))


def _sdmi(agencies: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"SDMI_AGENCIES_DIR": str(agencies)}
    return subprocess.run([SDMI, *args], env=env, capture_output=True, text=True, timeout=300)


def _drafted(tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """`sdmi agency new` on a copy of the agencies folder, from a sample whose country column no alias knows."""
    agencies = tmp_path / "agencies"
    shutil.copytree(config.settings.AGENCIES_DIR, agencies)
    sample = tmp_path / "contoh.csv"
    sample.write_text("NIK;Nama;Jenis Kelamin;Tanggal Berangkat;Penempatan\n"
                      "3201014101900001;Siti;P;01/02/2024;Taiwan\n", encoding="utf-8")  # fmt: skip
    done = _sdmi(agencies, "agency", "new", "agensi_baru", "--from", str(sample))
    assert done.returncode == 0, done.stderr
    return agencies, done


def test_agency_new_writes_a_draft_that_stops_no_agency_from_running(tmp_path, key_file):
    agencies, _ = _drafted(tmp_path)
    done = _sdmi(agencies, "run", "--home", str(tmp_path / "home"), "--key-file", str(key_file), "--no-publish")
    assert done.returncode == 0, done.stderr
    draft = agencies / "agensi_baru.draft.yaml"
    assert "destination_country: null  # TODO" in draft.read_text(encoding="utf-8")
    assert not (agencies / "agensi_baru.yaml").exists()


def test_the_next_steps_agency_new_prints_work_as_written(tmp_path):
    agencies, done = _drafted(tmp_path)
    steps = done.stderr.splitlines()
    check = next(line.split(": ", 1)[1] for line in steps if ": sdmi agency check " in line)
    move = next(line.split(": ", 1)[1] for line in steps if ": mv " in line)
    draft = agencies / "agensi_baru.draft.yaml"
    resolved = re.sub(r"destination_country: null.*", "destination_country: [Penempatan]", draft.read_text("utf-8"))
    draft.write_text(resolved, encoding="utf-8")
    tried = _sdmi(agencies, *shlex.split(check)[1:], "--json")
    assert tried.returncode in (0, 1), tried.stderr
    assert json.loads(tried.stdout)["rejected"] is None and json.loads(tried.stdout)["rows_read"] == 1
    source, target = shlex.split(move)[1:]
    Path(source).rename(target)
    assert "agensi_baru" in config.agencies(agencies)


def test_agency_check_tries_a_mapping_of_any_name_when_its_agency_is_the_one_asked(samples, tmp_path):
    mapping = tmp_path / "percobaan.yaml"
    shutil.copy(config.settings.AGENCIES_DIR / f"{P3MI}.yaml", mapping)
    args = ["agency", "check", "--agency", P3MI, "--mapping", str(mapping), str(_file(samples, P3MI)), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.output)["agency"] == P3MI


def test_agency_check_refuses_a_mapping_of_another_agency_naming_both(samples, tmp_path):
    mapping = tmp_path / f"{P3MI}.yaml"
    shutil.copy(config.settings.AGENCIES_DIR / f"{P3MI}.yaml", mapping)
    args = ["agency", "check", "--agency", SISKOP, "--mapping", str(mapping), str(_file(samples, SISKOP))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert P3MI in result.output and SISKOP in result.output

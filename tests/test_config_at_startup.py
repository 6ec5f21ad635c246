"""Bad configuration stops a command before it touches a file: `sdmi run` exits 3 with a message naming the file
and the problem, in Indonesian and English, no traceback, and every inbox file is still where the agency put it.
Each case is a copy of the project (`SDMI_PROJECT_DIR`) with one defect; the real schemas/ are never edited."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_config_validation import AGENCY, MAPPING

from pipelines import settings
from pipelines.settings import Zones

SDMI = str(Path(sys.executable).with_name("sdmi"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _code_added_without_generate(project: Path) -> Path:
    with (project / "schemas" / "codelists" / "placement_schemes.csv").open("a", encoding="utf-8") as f:
        f.write("MAGANG,Magang,Internship,Magang|Internship|Pemagangan\n")
    return project / "expectations" / "placement.json"


def _code_list_misspelt(project: Path) -> Path:
    _edit(project / "schemas" / "placement.yaml", "    codelist: sectors\n", "    codelist: sector\n")
    return project / "schemas" / "placement.yaml"


def _rule_key_twice(project: Path) -> Path:
    _edit(project / "schemas" / "rules.yaml", "read.ragged_row:\n  severity: critical\n",
          "read.ragged_row:\n  severity: critical\n  severity: warning\n")  # fmt: skip
    return project / "schemas" / "rules.yaml"


def _rule_key_misspelt(project: Path) -> Path:
    _edit(project / "schemas" / "rules.yaml", "read.ragged_row:\n  severity: critical\n",
          "read.ragged_row:\n  severty: critical\n")  # fmt: skip
    return project / "schemas" / "rules.yaml"


def _mapping(project: Path) -> Path:
    return project / "schemas" / "agencies" / f"{AGENCY}.yaml"


def _date_format_duckdb_cannot_read(project: Path) -> Path:
    _edit(_mapping(project), 'date_formats: ["%Y-%m-%d"]', 'date_formats: ["%Y-%m-%q"]')
    return _mapping(project)


def _mapping_named_yml(project: Path) -> Path:
    return _mapping(project).rename(_mapping(project).with_suffix(".yml"))


def _value_map_to_no_code(project: Path) -> Path:
    _edit(_mapping(project), 'placement_scheme: {"P to P": P2P}', 'placement_scheme: {"P to P": PPP2}')
    return _mapping(project)


def _project(tmp_path: Path, defect: Callable[[Path], Path]) -> tuple[Path, Path]:
    """A copy of what SDMI_PROJECT_DIR holds (schemas, suite, SQL) and an agency of the tests' own (MAPPING),
    with one defect; the file it is in."""
    project = tmp_path / "project"
    for part in ("schemas", "expectations", "sql"):
        shutil.copytree(settings.PROJECT_DIR / part, project / part)
    _mapping(project).write_text(MAPPING, encoding="utf-8")
    return project, defect(project)


def _one_file_inbox(home: Path) -> Path:
    folder = home / "inbox" / AGENCY
    folder.mkdir(parents=True)
    header = "Worker ID;National ID;Full Name;Gender;Destination;Departure Date;Contract Length\n"
    row = "W1;3507014507950011;Nama;Female;Taiwan;2024-03-01;24 months\n"
    (folder / "satu.csv").write_text(header + row, encoding="cp1252")
    return folder


def _sdmi(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "SDMI_AGENCIES_DIR")}
    env["SDMI_PROJECT_DIR"] = str(project)
    return subprocess.run([SDMI, *args], env=env, capture_output=True, text=True, timeout=600)


def _refused(done: subprocess.CompletedProcess, named: Path) -> str:
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert done.returncode == 3, said + done.stdout[-2000:]
    assert "Traceback" not in said and "tidak valid / Invalid" in said, said
    assert named.name in said, said
    return said


DEFECTS = [
    _code_added_without_generate,
    _code_list_misspelt,
    _rule_key_twice,
    _rule_key_misspelt,
    _date_format_duckdb_cannot_read,
    _mapping_named_yml,
    _value_map_to_no_code,
]


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda d: d.__name__.strip("_"))
def test_run_with_bad_configuration_exits_3_naming_the_file_before_any_file_is_claimed(tmp_path, key_file, defect):
    project, named = _project(tmp_path, defect)
    home = tmp_path / "home"
    folder = _one_file_inbox(home)
    done = _sdmi(project, "run", "--home", str(home), "--key-file", str(key_file), "--stable-seconds", "0",
                 "--no-publish")  # fmt: skip
    _refused(done, named)
    assert [p.name for p in folder.iterdir()] == ["satu.csv"]
    assert not Zones(home).ledger_db.exists() and not Zones(home).raw.exists()


def test_agency_check_refuses_a_committed_suite_the_schema_and_code_lists_no_longer_build(tmp_path):
    project, suite = _project(tmp_path, _code_added_without_generate)
    sample = _one_file_inbox(tmp_path / "home") / "satu.csv"
    said = _refused(_sdmi(project, "agency", "check", "--agency", AGENCY, str(sample)), suite)
    assert "codelist.placement_scheme" in said and "sdmi schema generate" in said


def test_a_configuration_error_is_printed_as_written_brackets_and_the_value_given_included(tmp_path):
    project, mapping = _project(tmp_path, _mapping)
    _edit(mapping, "values:\n", "values:\n  sex: {1: M}\n")
    sample = _one_file_inbox(tmp_path / "home") / "satu.csv"
    said = _refused(_sdmi(project, "agency", "check", "--agency", AGENCY, str(sample)), mapping)
    assert "values.sex.1.[key]: Input should be a valid string (given: 1)" in said
    assert said.index("Pemetaan lembaga tidak valid") < said.index("Invalid agency mapping")

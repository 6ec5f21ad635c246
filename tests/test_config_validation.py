"""Configuration is data, checked for meaning when it is loaded: the schema, the agency mappings and the YAML
they are written in. What would fail later (a KeyError, a re.error, every row quarantined, a file claimed and
then failed) is refused here with a ConfigError that names the file and the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines import config, settings
from pipelines.problems import ConfigError
from pipelines.schema import load_schema_file

AGENCY = "agensi_uji"
# A recruitment company's mapping, written out here so that the cases below do not depend on any onboarded one.
MAPPING = """\
agency: agensi_uji
name: PT Agensi Uji (P3MI)
kind: recruitment_company
priority: 3
read:
  format: csv
  encoding: cp1252
  delimiter: ";"
  header_row: 1
record_id: [Worker ID]
columns:
  nik: [National ID]
  full_name: [Full Name]
  sex: [Gender]
  destination_country: [Destination]
  occupation_title: [Position]
  departure_date: [Departure Date]
date_formats: ["%Y-%m-%d"]
transforms:
  - extract: Contract Length
    pattern: '(\\d+)\\s*months?'
    into: contract_months
  - constant: "P to P"
    into: placement_scheme
values:
  placement_scheme: {"P to P": P2P}
"""


def _schema_with(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the real schema with one edit (the real file is never touched)."""
    text = (settings.SCHEMAS_DIR / "placement.yaml").read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "placement.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _mapping_with(tmp_path: Path, old: str, new: str) -> Path:
    """MAPPING with one edit, as `<agency>.yaml`."""
    assert old in MAPPING, old
    path = tmp_path / f"{AGENCY}.yaml"
    path.write_text(MAPPING.replace(old, new, 1), encoding="utf-8")
    return path


def _refused(path: Path, *named: str) -> str:
    with pytest.raises(ConfigError) as refused:
        config.load_agency_file(path) if path.name != "placement.yaml" else load_schema_file(path)
    said = str(refused.value)
    assert str(path) in said and "tidak valid / Invalid" in said, said
    for part in named:
        assert part in said, said
    return said


# ------------------------------------------------------------------------------------------ the schema
def test_a_schema_field_naming_a_code_list_that_does_not_exist_is_refused_on_load(tmp_path):
    path = _schema_with(tmp_path, "    codelist: sectors\n", "    codelist: sector\n")
    _refused(path, "fields.sector.codelist", "'sector'", "sector.csv")


CONTRACT_MONTHS = "  - name: contract_months\n    type: integer"
NIK_FORMAT = '        regex: "^[0-9]{16}$"'


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        pytest.param(CONTRACT_MONTHS, CONTRACT_MONTHS.replace("integer", "string"),
                     "rule 'between' needs a field of type integer", id="between-on-text"),
        pytest.param(NIK_FORMAT, NIK_FORMAT.replace("9]", "9"), "not a valid regular expression", id="bad-regex"),
        pytest.param("rule_id: contract_months.range", "rule_id: age.minimum_18", "'age.minimum_18' is used twice",
                     id="rule-id-twice"),
        pytest.param("min: {$PARAMETER: data_begins}", "min: '2007-01-01'", "limit is a parameter", id="date-limit"),
    ],
)  # fmt: skip
def test_a_schema_check_that_could_never_run_is_refused_on_load_naming_it(tmp_path, old, new, named):
    _refused(_schema_with(tmp_path, old, new), named)


def test_a_schema_error_names_the_field_and_the_value_given(tmp_path):
    marital_status = "  - name: marital_status\n    type: string"
    path = _schema_with(tmp_path, marital_status, marital_status.replace("string", "text"))
    _refused(path, "fields.marital_status.type", "(given: 'text')", "Skema tidak valid / Invalid schema")


def test_a_key_written_twice_in_the_schema_is_refused_naming_it(tmp_path):
    path = _schema_with(tmp_path, "    codelist: sectors\n", "    codelist: sectors\n    codelist: sex\n")
    _refused(path, "'codelist' is given twice")


# ------------------------------------------------------------------------------------------ YAML itself
def test_a_key_written_twice_in_an_agency_mapping_is_refused_naming_the_key_and_both_lines(tmp_path):
    departure = "  departure_date: [Departure Date]\n"
    path = _mapping_with(tmp_path, departure, departure + "  destination_country: [X]\n")
    lines = path.read_text(encoding="utf-8").splitlines()
    first, second = [n for n, line in enumerate(lines, 1) if line.startswith("  destination_country:")]
    _refused(path, "'destination_country' is given twice", f"line {first} and line {second}")


def test_a_mapping_saved_as_windows_1252_is_refused_naming_the_file_and_the_fix(tmp_path):
    path = tmp_path / f"{AGENCY}.yaml"
    path.write_bytes(MAPPING.replace("(P3MI)", "(P3MI) – Café").encode("cp1252"))
    _refused(path, "not UTF-8", "save it again as UTF-8")


def test_a_mapping_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / f"{AGENCY}.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MAPPING.encode("utf-8"))
    assert config.load_agency_file(path).agency == AGENCY


# ------------------------------------------------------------------------------------------ agency mappings
def test_an_extract_pattern_that_does_not_compile_is_refused_as_a_configuration_error(tmp_path):
    path = _mapping_with(tmp_path, r"pattern: '(\d+)\s*months?'", r"pattern: '(\d+\s*months?'")
    _refused(path, "transforms.0.extract.pattern", "not a valid regular expression", "missing )")


def test_a_footer_pattern_that_does_not_compile_is_refused_as_a_configuration_error(tmp_path):
    path = _mapping_with(tmp_path, "  header_row: 1\n", '  header_row: 1\n  footer_pattern: "^(total"\n')
    _refused(path, "read.footer_pattern", "not a valid regular expression")


def test_an_encoding_python_does_not_know_is_refused_on_load(tmp_path):
    _refused(_mapping_with(tmp_path, "encoding: cp1252", "encoding: windows-1252x"), "read.encoding", "windows-1252x")


@pytest.mark.parametrize(
    ("written", "named"),
    [("%Y-%m-%q", "Unrecognized format for strftime/strptime: %q"), ("yyyy-mm-dd", "does not read a year")],
)
def test_a_date_format_duckdb_cannot_read_dates_with_is_refused_on_load(tmp_path, written, named):
    path = _mapping_with(tmp_path, 'date_formats: ["%Y-%m-%d"]', f'date_formats: ["{written}"]')
    _refused(path, "date_formats", named)


def test_a_field_filled_by_a_column_and_by_a_transform_is_refused_since_one_would_be_dropped(tmp_path):
    path = _mapping_with(tmp_path, "  occupation_title: [Position]\n", "  occupation_title: [Position]\n"
                                   "  contract_months: [Contract Length]\n")  # fmt: skip
    _refused(path, "contract_months is filled by columns.contract_months and by transforms.0 (extract)")


def test_a_value_map_to_a_code_not_in_the_fields_code_list_is_refused_naming_value_and_list(tmp_path):
    path = _mapping_with(tmp_path, 'placement_scheme: {"P to P": P2P}', 'placement_scheme: {"P to P": PPP2}')
    _refused(path, "values.placement_scheme", "['PPP2']", "'placement_schemes'")


def test_a_misspelt_transform_key_is_one_error_naming_the_keys_a_transform_starts_with(tmp_path):
    said = _refused(_mapping_with(tmp_path, "  - extract: Contract Length", "  - extrakt: Contract Length"))
    assert "transforms.0: a transform starts with one of the keys: split, extract, join, constant" in said
    assert said.count("\n  - ") == 1, said


# ------------------------------------------------------------------------------------------ the agencies folder
def _agencies_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "agencies"
    shutil.copytree(settings.AGENCIES_DIR, folder)
    return folder


def test_a_mapping_named_yml_is_refused_naming_the_file_and_the_name_it_needs(tmp_path):
    folder = _agencies_copy(tmp_path)
    (folder / f"{AGENCY}.yml").write_text(MAPPING, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        config.agencies(folder)
    assert f"{AGENCY}.yml" in str(refused.value) and f"rename it to {AGENCY}.yaml" in str(refused.value)


def test_a_draft_beside_the_mappings_is_not_an_agency(tmp_path):
    folder = _agencies_copy(tmp_path)
    (folder / "agensi_baru.draft.yaml").write_text("agency: agensi_baru\ncolumns:\n  nik: null  # TODO\n")
    assert sorted(config.agencies(folder)) == sorted(p.stem for p in settings.AGENCIES_DIR.glob("*.yaml"))

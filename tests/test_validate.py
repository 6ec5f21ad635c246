"""The GX suite: derived from the schema, loaded without churn, row-level failures without echoing identifiers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pytest
from agency_factory import agency_config

from pipelines import validate
from pipelines.config import AgencyConfig
from pipelines.generated import artefacts
from pipelines.harmonise import harmonise
from pipelines.keys import load_secret
from pipelines.problems import ConfigError
from pipelines.schema import load_schema

NIK = "3507014507950001"


def _cfg(**extra) -> AgencyConfig:
    return agency_config(**{"data_begins": "2010-01-01", **extra})


def _harmonised(rows: list[dict], key_file, cfg: AgencyConfig | None = None) -> pa.Table:
    names = sorted({k for r in rows for k in r})
    table = pa.table(
        {
            **{n: pa.array([r.get(n) for r in rows], pa.string()) for n in names},
            "_source_row": pa.array(range(2, len(rows) + 2), pa.int64()),
        }
    )
    return harmonise(
        table,
        cfg or _cfg(),
        sha256="e" * 64,
        batch_id="b",
        received_at=datetime(2025, 1, 1, tzinfo=UTC),
        secret=load_secret(key_file),
    ).table


GOOD = {"nik": NIK, "destination_country": "Taiwan", "departure_date": "01/03/2024", "source_record_id": "A"}


def test_committed_generated_artefacts_match_the_schema():
    drifted = [str(p) for p, text in artefacts().items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert drifted == [], "run `make generate` (sdmi schema generate) and commit the result"


def test_a_committed_suite_unlike_what_the_schema_and_code_lists_build_is_refused_naming_the_fix(tmp_path):
    stale = validate.build_suite()
    scheme = next(e for e in stale["expectations"] if e["meta"]["rule_id"] == "codelist.placement_scheme")
    scheme["kwargs"]["value_set"].remove("P2P")  # as when P2P was added to the code list without `generate`
    path = tmp_path / "placement.json"
    path.write_text(json.dumps(stale, indent=2), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        validate.suite_for(_cfg(), path)
    said = str(refused.value)
    assert str(path) in said and "rules codelist.placement_scheme" in said and "`sdmi schema generate`" in said


def test_suite_has_a_rule_for_every_required_field_codelist_and_check():
    schema = load_schema()
    rule_ids = {e["meta"]["rule_id"] for e in validate.build_suite()["expectations"]}
    for f in schema.fields:
        assert (f"required.{f.name}" in rule_ids) == f.required
        assert (f"codelist.{f.name}" in rule_ids) == bool(f.codelist)
        for c in f.checks:
            assert c.rule_id in rule_ids
    for e in validate.build_suite()["expectations"]:
        assert e["meta"]["severity"] in ("critical", "warning")
        assert e["meta"]["message_id"] and e["meta"]["message_en"]


def test_running_the_suite_does_not_rewrite_the_committed_json(key_file):
    before = validate.SUITE_PATH.read_bytes()
    validate.validate(_harmonised([GOOD], key_file), _cfg())
    assert validate.SUITE_PATH.read_bytes() == before
    assert "id" not in json.loads(before)["expectations"][0]


def test_failing_rows_come_back_by_source_row_with_their_rules(key_file):
    rows = [
        GOOD,
        {**GOOD, "source_record_id": "B", "nik": "350701450795001"},  # 15 digits
        {**GOOD, "source_record_id": "C", "birth_date": "01/01/2010", "nik": None, "passport_number": "X1234567"},
        {**GOOD, "source_record_id": "A"},  # the same record id twice in one file
        {**GOOD, "source_record_id": "D", "departure_date": "01/03/2026"},
    ]
    issues = validate.validate(_harmonised(rows, key_file), _cfg(), run_date=date(2025, 1, 1)).to_pylist()
    by_rule = {}
    for i in issues:
        by_rule.setdefault(i["rule_id"], set()).add(i["source_row"])
    assert by_rule["nik.format"] == {3}
    assert by_rule["age.minimum_18"] == {4}
    assert by_rule["record_key.unique_in_batch"] == {2, 5}
    assert by_rule["departure_date.range"] == {6}
    assert all(i["severity"] == "critical" for i in issues)


def test_departure_before_the_agency_data_begins_fails(key_file):
    table = _harmonised([{**GOOD, "departure_date": "01/03/2005"}], key_file)
    issues = validate.validate(table, _cfg(), run_date=date(2025, 1, 1))
    assert "departure_date.range" in issues.column("rule_id").to_pylist()


def test_gx_results_never_echo_identifiers_of_failing_rows(key_file):
    bad_niks = ["12345678901234X", "3507014507950"]
    rows = [{**GOOD, "source_record_id": str(i), "nik": n} for i, n in enumerate(bad_niks)]
    table = _harmonised(rows, key_file)
    cfg = _cfg()
    result = validate.run_suite(validate._to_pandas(table), validate.suite_for(cfg), validate.parameters_for(cfg))
    text = json.dumps(result.to_json_dict(), default=str)
    assert "nik.format" in text  # the rule did fail
    for nik in bad_niks:
        assert nik not in text
    issues = validate.validate(table, cfg)
    nik_values = [i["value"] for i in issues.to_pylist() if i["field"] == "nik"]
    assert nik_values and all(v is None for v in nik_values)


def _only_asia(**changes) -> dict:
    return {
        "rule_id": "test_agency.only_asia",
        "expectation": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "destination_country", "value_set": ["HKG", "MYS"]},
        "severity": "warning",
        "message_id": "Negara di luar Asia.",
        "message_en": "Destination outside Asia.",
        **changes,
    }


def test_warning_rule_keeps_the_row_and_agency_expectations_apply(key_file):
    cfg = _cfg(expectations=[_only_asia()])
    table = _harmonised([{**GOOD, "contract_months": "120"}], key_file, cfg)
    issues = {i["rule_id"]: i for i in validate.validate(table, cfg).to_pylist()}
    assert issues["contract_months.range"]["severity"] == "warning"
    assert issues["contract_months.range"]["value"] == "120"
    assert issues["test_agency.only_asia"]["severity"] == "warning"


def _counting_configurations(monkeypatch) -> list[int]:
    """Count the configurations GX builds (its own property, which the memo calls)."""
    validate._gx_module()
    built = [0]
    plain = validate._plain_configuration

    def counted(expectation):
        built[0] += 1
        return plain(expectation)

    monkeypatch.setattr(validate, "_plain_configuration", counted)
    return built


def _failures_of_a_run(key_file) -> list:
    rows = [GOOD, {**GOOD, "source_record_id": "B", "nik": "350701450795001"},
            {**GOOD, "source_record_id": "D", "departure_date": "01/03/2026"}]  # fmt: skip
    table, cfg = _harmonised(rows, key_file), _cfg()
    result = validate.run_suite(
        validate._to_pandas(table), validate.suite_for(cfg), validate.parameters_for(cfg, date(2025, 1, 1))
    )
    return sorted(validate._failures(result))


def _run_suite_as_gx_does(monkeypatch):
    """`run_suite` with GX's own property: the memo is switched off for the duration of the call."""
    real = validate.run_suite

    def run(*args, **kwargs):
        from great_expectations.expectations.expectation import Expectation

        with monkeypatch.context() as m:
            m.setattr(Expectation, "configuration", property(validate._plain_configuration))
            return real(*args, **kwargs)

    return run


def test_a_validation_keeps_each_expectations_configuration_and_fails_the_same_rows(key_file, monkeypatch):
    built = _counting_configurations(monkeypatch)
    memoised = _failures_of_a_run(key_file)
    with_memo = built[0]
    monkeypatch.setattr(validate, "run_suite", _run_suite_as_gx_does(monkeypatch))
    built[0] = 0
    assert _failures_of_a_run(key_file) == memoised
    assert {rule[0] for rule, _ in memoised} >= {"departure_date.range", "nik.format"}
    assert with_memo * 5 < built[0], (with_memo, built[0])  # GX alone rebuilds one for every argument it reads


def test_outside_a_validation_gx_builds_a_fresh_configuration_each_time(monkeypatch):
    built = _counting_configurations(monkeypatch)
    import great_expectations as gx

    expectation = gx.expectations.ExpectColumnValuesToNotBeNull(column="nik")
    assert expectation.configuration is not expectation.configuration
    assert built[0] == 2


def test_gx_lists_failing_rows_from_the_index_without_looking_each_one_up(key_file, monkeypatch):
    rows = [{**GOOD, "source_record_id": str(i), "nik": "123"} for i in range(50)]  # every NIK fails its format
    table, cfg = _harmonised(rows, key_file), _cfg()
    frame = validate._to_pandas(table)
    monkeypatch.setattr(pd.DataFrame, "at", property(lambda self: pytest.fail("GX looked a failing row up")))
    result = validate.run_suite(frame, validate.suite_for(cfg), validate.parameters_for(cfg, date(2025, 1, 1)))
    failing = dict(validate._failures(result))
    nik_rule = next(rule for rule in failing if rule[0] == "nik.format")
    assert sorted(failing[nik_rule]) == list(range(2, 52))


def test_keys_checked_only_for_nulls_reach_gx_as_presence_and_fail_the_same_rows(key_file, monkeypatch):
    rows = [
        GOOD,
        {**GOOD, "source_record_id": "B", "nik": None},  # no NIK and no passport: no worker_key
        {**GOOD, "source_record_id": "C"},
        {**GOOD, "source_record_id": "D", "nik": None},
    ]
    table, cfg = _harmonised(rows, key_file), _cfg()
    handed: list[pd.DataFrame] = []
    real = validate.run_suite
    monkeypatch.setattr(validate, "run_suite", lambda df, *a, **kw: handed.append(df) or real(df, *a, **kw))
    issues = validate.validate(table, cfg, run_date=date(2025, 1, 1), scope="rows")

    rows_frame = handed[0]
    assert rows_frame["worker_key"].dtype == "float64"  # 1.0 or NaN, not a Python string per key
    assert rows_frame["worker_key"].isna().tolist() == [False, True, False, True]
    assert not rows_frame["record_key"].isna().any()
    failing = issues.filter(pa.compute.equal(issues["rule_id"], "required.worker_key"))["source_row"].to_pylist()
    assert sorted(failing) == [3, 5]


def test_a_repeated_key_fails_on_its_stand_in_exactly_as_on_its_values(key_file, monkeypatch):
    rows = [
        GOOD,
        {**GOOD, "source_record_id": "B"},
        {**GOOD, "source_record_id": "A"},
        {**GOOD, "source_record_id": "C"},
    ]
    table, cfg = _harmonised(rows, key_file), _cfg()
    handed: list[pd.DataFrame] = []
    real = validate.run_suite
    monkeypatch.setattr(validate, "run_suite", lambda df, *a, **kw: handed.append(df) or real(df, *a, **kw))
    issues = validate.validate(table, cfg, run_date=date(2025, 1, 1), scope="file")

    assert handed[0]["record_key"].dtype == "float64"  # a number per distinct key, not the key
    repeated = issues.filter(pa.compute.equal(issues["rule_id"], "record_key.unique_in_batch"))["source_row"]
    assert sorted(repeated.to_pylist()) == [2, 4]


def test_a_column_with_any_other_check_or_a_row_condition_reaches_gx_as_its_values():
    null = {"type": validate.NULL_CHECK, "kwargs": {"column": "worker_key"}}
    unique = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "record_key"}}
    regex = {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "nik", "regex": "^[0-9]{16}$"}}
    nik_null = {"type": validate.NULL_CHECK, "kwargs": {"column": "nik"}}
    key_null = {"type": validate.NULL_CHECK, "kwargs": {"column": "record_key"}}
    mostly = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "worker_key", "mostly": 0.9}}
    conditional = {
        "type": validate.NULL_CHECK,
        "kwargs": {"column": "sex", "row_condition": "nik.notnull()", "condition_parser": "pandas"},
    }
    assert validate.stand_ins([null, unique, key_null, regex, nik_null]) == {
        "worker_key": "presence",
        "record_key": "identity",
    }
    assert validate.stand_ins([null, mostly]) == {}
    assert validate.stand_ins([null, conditional]) == {}
    assert validate.stand_ins([{**null, "kwargs": {"column": "source_row"}}]) == {}  # the index


def _one_complete_validation(frame: pd.DataFrame, suite_dict: dict, parameters: dict):
    """The suite as GX runs it in one call with every failing row listed: what `run_suite` must agree with."""
    from great_expectations.core.expectation_suite import ExpectationSuite

    batch = validate._batch_definition().get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(
        ExpectationSuite(**suite_dict),
        expectation_parameters=parameters,
        result_format={**validate.COMPLETE, "unexpected_index_column_names": ["source_row"]},
    )


def test_failing_rows_are_the_same_as_in_one_complete_validation_of_the_suite(key_file):
    rows = [GOOD, {**GOOD, "source_record_id": "B", "nik": "350701450795001"},
            {**GOOD, "source_record_id": "C", "destination_country": None},
            {**GOOD, "source_record_id": "D", "departure_date": "01/03/2026"}]  # fmt: skip
    table, cfg = _harmonised(rows, key_file), _cfg()
    frame, suite = validate._to_pandas(table), validate.suite_for(cfg)
    parameters = validate.parameters_for(cfg, date(2025, 1, 1))
    result = validate.run_suite(frame, suite, parameters)
    reference = _one_complete_validation(frame, suite, parameters)
    assert sorted(validate._failures(result)) == sorted(validate._failures(reference))
    assert [r.success for r in result.results] == [r.success for r in reference.results]
    assert {rule[0] for rule, _ in validate._failures(result)} >= {"nik.format", "departure_date.range"}
    # an expectation that passed was asked only for its verdict
    assert all(r.result == {} for r in result.results if r.success)


def test_a_frame_above_the_verdict_first_size_is_validated_in_one_call_with_every_count(key_file, monkeypatch):
    rows = [GOOD, {**GOOD, "source_record_id": "B", "nik": "350701450795001"}]
    table, cfg = _harmonised(rows, key_file), _cfg()
    frame, suite = validate._to_pandas(table), validate.suite_for(cfg)
    parameters = validate.parameters_for(cfg, date(2025, 1, 1))
    small = validate.run_suite(frame, suite, parameters)
    monkeypatch.setattr(validate, "VERDICT_FIRST_ROWS", 1)
    large = validate.run_suite(frame, suite, parameters)
    assert validate._failures(large) == validate._failures(small)
    assert all("unexpected_count" in r.result for r in large.results if r.success)


def test_an_expectation_with_mostly_that_passes_still_reports_its_counts(key_file):
    cfg = _cfg(
        expectations=[
            {
                "rule_id": "test_agency.mostly_taiwan",
                "expectation": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "destination_country", "value_set": ["TWN"], "mostly": 0.5},
                "severity": "warning",
                "message_id": "Sebagian besar ke Taiwan.",
                "message_en": "Mostly to Taiwan.",
            }
        ]
    )
    rows = [GOOD, {**GOOD, "source_record_id": "B"},
            {**GOOD, "source_record_id": "C", "destination_country": "Malaysia"}]  # fmt: skip
    table = _harmonised(rows, key_file, cfg)
    result = validate.run_suite(validate._to_pandas(table), validate.suite_for(cfg), validate.parameters_for(cfg))
    mostly = next(r for r in result.results if r.expectation_config.meta["rule_id"] == "test_agency.mostly_taiwan")
    assert mostly.success
    assert mostly.result["unexpected_count"] == 1


def test_an_expectation_gx_cannot_build_stops_the_validation_instead_of_being_left_out(key_file):
    cfg = _cfg(expectations=[_only_asia(expectation="expect_column_values_to_be_in_sett")])
    table = _harmonised([GOOD], key_file, cfg)
    with pytest.raises(ConfigError, match=r"test_agency\.only_asia"):
        validate.validate(table, cfg)


def test_an_agency_is_refused_for_each_expectation_gx_cannot_run_with_its_reason():
    validate.check_agency(_cfg(expectations=[_only_asia()]))  # a sound one passes
    bad = _cfg(
        expectations=[
            _only_asia(expectation="expect_column_values_to_be_in_sett"),
            _only_asia(
                rule_id="test_agency.bad_regex",
                expectation="expect_column_values_to_match_regex",
                kwargs={"column": "destination_country", "regex": "("},
            ),
        ]
    )
    with pytest.raises(ConfigError) as refused:
        validate.check_agency(bad)
    assert "test_agency.only_asia" in str(refused.value) and "not found" in str(refused.value)
    assert "test_agency.bad_regex" in str(refused.value) and "missing )" in str(refused.value)


def test_every_onboarded_agency_is_checked_and_the_one_gx_cannot_run_is_named(tmp_path, monkeypatch):
    import shutil

    import yaml

    from pipelines import settings

    agencies = tmp_path / "agencies"
    shutil.copytree(settings.AGENCIES_DIR, agencies)
    mapping = agencies / "bp3mi_jatim.yaml"
    edited = {**yaml.safe_load(mapping.read_text(encoding="utf-8")), "expectations": [_only_asia(rule_id="jatim.x")]}
    edited["expectations"][0]["expectation"] = "expect_column_values_to_be_in_sett"
    mapping.write_text(yaml.safe_dump(edited, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(settings, "AGENCIES_DIR", agencies)
    with pytest.raises(ConfigError) as refused:
        validate.check_agencies()
    assert str(mapping) in str(refused.value) and "jatim.x" in str(refused.value)


def test_an_agency_expectation_on_a_column_the_schema_lacks_is_refused_on_load():
    with pytest.raises(ValueError, match="not fields of the harmonised schema"):
        _cfg(expectations=[_only_asia(kwargs={"column": "negara", "value_set": ["HKG"]})])


def test_an_agency_expectation_over_two_columns_judges_each_row(key_file):
    """A pair rule names its columns as column_A and column_B: both must reach GX, and the late row is flagged."""
    cfg = _cfg(
        expectations=[
            _only_asia(
                rule_id="test_agency.departure_after_birth",
                expectation="expect_column_pair_values_a_to_be_greater_than_b",
                kwargs={"column_A": "departure_date", "column_B": "birth_date"},
                severity="critical",
            )
        ]
    )
    rows = [GOOD, {**GOOD, "source_record_id": "B", "nik": None, "passport_number": "C1234567", "sex": "P",
                   "birth_date": "05/07/2025"}]  # fmt: skip
    issues = validate.validate(_harmonised(rows, key_file, cfg), cfg, run_date=date(2025, 8, 1)).to_pylist()
    assert [i["source_row"] for i in issues if i["rule_id"] == "test_agency.departure_after_birth"] == [3]


@pytest.mark.parametrize(
    ("expectation", "kwargs"),
    [
        ("expect_column_mean_to_be_between", {"column": "contract_months", "max_value": 10}),
        ("expect_table_row_count_to_be_between", {"min_value": 100}),
        ("expect_column_values_to_be_of_type", {"column": "contract_months", "type_": "int64"}),
    ],
)
def test_an_agency_expectation_that_judges_the_whole_column_is_refused_since_no_row_would_be_quarantined(
    expectation, kwargs
):
    with pytest.raises(ConfigError, match="judges the column or the table as a whole"):
        validate.check_agency(_cfg(expectations=[_only_asia(expectation=expectation, kwargs=kwargs)]))

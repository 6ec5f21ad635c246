"""Harmonise: mapped text -> typed values in the shared schema, codes from the code lists, pseudonymous keys.

What cannot be harmonised becomes a row issue, never an exception and never a guess. The work is set
operations in DuckDB over Arrow; Python touches only distinct values that need fuzzy matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from pipelines import codelists, keys, settings
from pipelines.config import AgencyConfig
from pipelines.keys import WorkerKeySecret
from pipelines.problems import ISSUE_SCHEMA
from pipelines.schema import PlacementSchema, load_schema

ROW = "_source_row"
MONTHS_ID = {
    "januari": "January", "februari": "February", "pebruari": "February", "maret": "March", "april": "April",
    "mei": "May", "juni": "June", "juli": "July", "agustus": "August", "september": "September",
    "oktober": "October", "november": "November", "nopember": "November", "desember": "December",
    "agt": "Aug", "agu": "Aug", "ags": "Aug", "agust": "Aug", "okt": "Oct", "des": "Dec", "sept": "Sep",
    "peb": "Feb", "nop": "Nov",
}  # fmt: skip
ISO_FORMATS = ["%Y-%m-%d", "%Y-%m-%d %H:%M:%S"]
DATE_FIELDS = ("birth_date", "departure_date")


@dataclass
class Harmonised:
    table: pa.Table  # every schema field, typed; direct identifiers still present (restricted zone only)
    issues: pa.Table  # ISSUE_SCHEMA


@cache
def rules() -> dict[str, dict]:
    return yaml.safe_load((settings.SCHEMAS_DIR / "rules.yaml").read_text(encoding="utf-8"))


def _rule(template_id: str, field: str, schema: PlacementSchema) -> tuple[str, str, str, str]:
    spec = rules()[template_id]
    severity = spec["severity"]
    if severity == "by_field":
        severity = "critical" if schema.field(field).required else "warning"
    msg = spec["message"]
    return (
        template_id.replace("{field}", field),
        severity,
        msg["id"].replace("{field}", field),
        msg["en"].replace("{field}", field),
    )


def hints(schema: PlacementSchema | None = None, cfg: AgencyConfig | None = None) -> dict[str, tuple[str, str]]:
    """rule_id -> what to do (id, en), for every rule a row can break; used by the agency report.

    A date is read only in the formats the agency's mapping declares (`cfg.date_formats`): the date hints show
    an example date written in the first of them and name its parts, so that following the hint is accepted.
    Without `cfg`, the formats every agency gets by default."""
    schema = schema or load_schema()
    date_format = (cfg.date_formats if cfg else AgencyConfig.model_fields["date_formats"].default_factory())[0]
    fills = _date_fills(date_format)
    out: dict[str, tuple[str, str]] = {}
    coded = [f.name for f in schema.fields if f.codelist]
    for template, spec in rules().items():
        targets = coded + list(DATE_FIELDS) + ["contract_months"] if "{field}" in template else [None]
        for name in targets:
            rid = template.replace("{field}", name) if name else template
            out[rid] = (_with_fills(spec["hint"]["id"], fills, "id"), _with_fills(spec["hint"]["en"], fills, "en"))
    for f in schema.fields:
        _, hint = f.required_message()
        out[f"required.{f.name}"] = (hint.id, hint.en)
        for c in f.checks:
            out[c.rule_id] = (c.hint.id, c.hint.en)
    if cfg is not None:  # the field's own hint cannot know the agency's format: the date hint says it
        for name in DATE_FIELDS:
            if f"required.{name}" in out:
                out[f"required.{name}"] = out[f"harmonise.bad_date.{name}"]
    return out


EXAMPLE_DATE = date(2024, 8, 17)  # day after the 12th: day and month cannot be mistaken for each other
# strptime directive -> the part's name (id, en); and, for month names, how the example writes them (id, en).
# Indonesian month names are read too (MONTHS_ID), so each language's example is accepted.
DATE_PARTS = {
    "%d": ("hari", "day"), "%-d": ("hari", "day"), "%m": ("bulan", "month"), "%-m": ("bulan", "month"),
    "%B": ("nama bulan", "month name"), "%b": ("nama bulan singkat", "short month name"),
    "%Y": ("tahun", "year"), "%y": ("tahun dua angka", "two-digit year"),
    "%H": ("jam", "hour"), "%M": ("menit", "minute"), "%S": ("detik", "second"),
}  # fmt: skip
EXAMPLE_MONTH_NAMES = {"%B": ("Agustus", "August"), "%b": ("Agu", "Aug")}


def _date_fills(date_format: str) -> dict[str, tuple[str, str]]:
    """{date_example} and {date_parts} of a date hint, (id, en), for one strptime format: '%d %B %Y' gives
    ('17 Agustus 2024', '17 August 2024') and ('hari, nama bulan, tahun', 'day, month name, year')."""
    example: list[tuple[str, str]] = []
    parts: list[tuple[str, str]] = []
    for piece in re.split(r"(%-?[A-Za-z%])", date_format):
        if piece in EXAMPLE_MONTH_NAMES:
            example.append(EXAMPLE_MONTH_NAMES[piece])
        elif piece.startswith("%") and len(piece) > 1:
            written = datetime.combine(EXAMPLE_DATE, datetime.min.time()).strftime(piece)
            example.append((written, written))
        else:
            example.append((piece, piece))
        if piece in DATE_PARTS:
            parts.append(DATE_PARTS[piece])
    return {
        "{date_example}": ("".join(e[0] for e in example), "".join(e[1] for e in example)),
        "{date_parts}": (", ".join(p[0] for p in parts), ", ".join(p[1] for p in parts)),
    }


def _with_fills(text: str, fills: dict[str, tuple[str, str]], language: str) -> str:
    at = 0 if language == "id" else 1
    for placeholder, values in fills.items():
        text = text.replace(placeholder, values[at])
    return text


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


PLAUSIBLE_YEARS = (1900, 2100)  # a worker's birth or departure; anything else is a typing slip, never a date


def _date_expr(column: str, formats: list[str]) -> str:
    """Day-first formats; Indonesian month names rewritten to English first, but only where there are letters.

    DuckDB's `%Y` reads a year of one to five digits: '03/01/23' would be the year 23, which no later step can
    hold (pandas' dates end at 1677) and no check would call wrong in time. A year outside PLAUSIBLE_YEARS
    leaves the date unread (`bad_date`). Two-digit-year formats an agency declares (`%y`) are tried first:
    they fail on a four-digit year, while `%Y` would take '23' as the year 23."""
    ordered = sorted([*formats, *ISO_FORMATS], key=lambda f: "%y" not in f)
    fmts = ", ".join(_sql_str(f) for f in ordered)
    named = f"lower({column})"
    for word, english in MONTHS_ID.items():
        named = f"regexp_replace({named}, '\\b{word}\\b', '{english}', 'g')"
    text = f"CASE WHEN regexp_matches({column}, '[A-Za-z]') THEN {named} ELSE {column} END"
    parsed = f"CAST(try_strptime({text}, [{fmts}]) AS DATE)"
    low, high = PLAUSIBLE_YEARS
    return f"CASE WHEN year({parsed}) BETWEEN {low} AND {high} THEN {parsed} END"  # once per distinct value


# A contract length is a whole number of months, with or without the unit, or of years (x 12): "24", "24 bulan",
# "24.0" (a spreadsheet's number), "2 tahun", "1,5 thn". Anything else is not read (`bad_number`): taking its
# first digits read "2 tahun" as 2 months and "0024" as 2.
MONTHS_UNIT = r"(bulan|bln|bl|months?|mos?)"
YEARS_UNIT = r"(tahun|thn|th|years?|yrs?)"


def _contract_months_expr(v: str) -> str:
    number = r"[0-9]+([.,][0-9]+)?"
    as_number = f"TRY_CAST(replace(regexp_extract({v}, '{number}'), ',', '.') AS DOUBLE)"
    return (
        f"CASE WHEN regexp_full_match({v}, '\\s*[0-9]+([.,]0+)?\\s*({MONTHS_UNIT}\\.?)?\\s*', 'i') "
        f"THEN TRY_CAST({as_number} AS BIGINT) "
        f"WHEN regexp_full_match({v}, '\\s*{number}\\s*{YEARS_UNIT}\\.?\\s*', 'i') "
        f"AND {as_number} * 12 = round({as_number} * 12) THEN TRY_CAST({as_number} * 12 AS BIGINT) END"
    )


def _per_distinct(
    con: duckdb.DuckDBPyConnection, columns: dict[str, pa.ChunkedArray], exprs: dict[str, Callable[[str], str]]
) -> dict[str, pa.Array]:
    """Each SQL expression (built for a column name) computed once per distinct value of its column and mapped
    back to the rows (NULL stays NULL). Files repeat a few agency names, contract lengths and dates on every
    row: the recruitment agency's two regular expressions over each row were ~0.16 of a 200,000-row chunk's
    0.8 CPU-seconds. All columns go in one statement, side by side (shorter ones padded with NULL): DuckDB
    plans each statement at a cost, ~5 ms, that a 50-row file notices four times over."""
    values = {name: pc.unique(columns[name].combine_chunks()).drop_null() for name in exprs}
    length = max(len(v) for v in values.values())
    padded = {name: pa.concat_arrays([v, pa.nulls(length - len(v), v.type)]) for name, v in values.items()}
    con.register("_distinct", pa.table(padded))
    try:
        select = ", ".join(
            f'{_quoted_name(name)} AS "{name}__v", {expr(_quoted_name(name))} AS "{name}__out"'
            for name, expr in exprs.items()
        )
        result = con.sql(f"SELECT {select} FROM _distinct").to_arrow_table()
    finally:
        con.unregister("_distinct")
    return {
        name: pc.take(
            result[f"{name}__out"], pc.index_in(columns[name], value_set=result[f"{name}__v"], skip_nulls=True)
        )
        for name in exprs
    }


def _quoted_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _hmac(message_sql: str) -> str:
    return f"sha256($opad || unhex(sha256($ipad || encode({message_sql}))))"


# the NIK's birth date digits: DD (+40 for women), YY read as the latest century that makes the worker 14+
NIK_DAY = "(CASE WHEN nik_dd > 40 THEN nik_dd - 40 ELSE nik_dd END)"
NIK_YEAR = (
    "(CASE WHEN 2000 + nik_yy <= year(coalesce(departure_date__parsed, current_date)) - 14 "
    "THEN 2000 + nik_yy ELSE 1900 + nik_yy END)"
)


def harmonise(
    mapped: pa.Table,
    cfg: AgencyConfig,
    *,
    sha256: str,
    batch_id: str,
    received_at: datetime,
    secret: WorkerKeySecret,
    schema: PlacementSchema | None = None,
) -> Harmonised:
    schema = schema or load_schema()
    with settings.scratch_duckdb() as con:
        return _harmonise(con, mapped, cfg, sha256, batch_id, received_at, secret, schema)


def _harmonise(
    con: duckdb.DuckDBPyConnection,
    mapped: pa.Table,
    cfg: AgencyConfig,
    sha256: str,
    batch_id: str,
    received_at: datetime,
    secret: WorkerKeySecret,
    schema: PlacementSchema,
) -> Harmonised:
    present = set(mapped.column_names)
    for name in schema.mapped_field_names():
        if name not in present:
            mapped = mapped.append_column(name, pa.nulls(mapped.num_rows, pa.string()))

    # ---- code lists: one match per distinct value, looked up in Arrow. With no join in the SQL below DuckDB
    # keeps the rows in their order, and reading the result back needs no sort (a 200,000-row chunk,
    # in-process: 0.85 -> 0.75 s, 1.25 -> 1.09 CPU-seconds; the same tables)
    coded = {f.name: f.codelist for f in schema.fields if f.codelist}
    source_of = {name: name for name in coded}
    if "occupation_code" not in present:
        source_of["occupation_code"] = "occupation_title"
    match_cols = []
    inexact: set[str] = set()  # fields with a value that did not match exactly: only these can get a message
    for name, listname in coded.items():
        src = source_of[name]
        values = pc.unique(mapped[src].combine_chunks()).drop_null()
        matches = codelists.match_values(listname, values.to_pylist())
        if pc.any(pc.is_in(matches["match"], value_set=pa.array(MESSAGE_MATCHES))).as_py():
            inexact.add(name)
        con.register(f"cl_{name}", matches)
        code = pc.take(matches["code"], pc.index_in(mapped[src], value_set=matches["value"]))
        mapped = mapped.append_column(f"{name}__code", code)
        # how each value matched is joined again only for the rows that get a message (see _issues): carried
        # in the working table it was a quarter of it (200,000 rows: 173 MB, 127 MB without)
        match_cols.append(f'm."{name}__code" AS "{name}__code", m."{src}" AS "{name}__raw"')
    per_distinct: dict[str, Callable[[str], str]] = {
        "recruitment_agency": lambda v: (
            f"nullif(trim(regexp_replace(regexp_replace(upper({v}), '[^A-Z0-9 ]', ' ', 'g'), '\\s+', ' ', 'g')), '')"
        ),
        "contract_months": _contract_months_expr,
        **dict.fromkeys(DATE_FIELDS, lambda v: _date_expr(v, cfg.date_formats)),
    }
    cleaned = _per_distinct(con, {name: mapped[name] for name in per_distinct}, per_distinct)
    for name, column in cleaned.items():
        mapped = mapped.append_column(f"{name}__clean", column)
    con.register("m", mapped)

    params = {
        "opad": secret.outer_pad,
        "ipad": secret.inner_pad,
        "agency": cfg.agency,
        "sha": sha256,
        "batch": batch_id,
        "received": received_at,
    }
    fingerprint_cols = ", ".join(f"coalesce(m.\"{c}\", '')" for c in schema.mapped_field_names())
    # One statement, read back as Arrow, which the rule checks scan in place. Each temporary table copied
    # every row again: the extra ones cost time and a chunk's peak memory, and this result as a temporary
    # table cost a 200,000-row chunk 0.95 -> 0.86 CPU-seconds (copied into DuckDB's storage, then out again).
    h = con.sql(
        f"""
        WITH s AS (
        SELECT m.{ROW} AS source_row,
               nullif(regexp_replace(m.nik, '[\\s\\p{{Z}}.\\-]', '', 'g'), '') AS nik,  -- Z: no-break spaces too
               nullif(upper(regexp_replace(m.passport_number, '[^A-Za-z0-9]', '', 'g')), '') AS passport_number,
               m.full_name, m.source_record_id, m.occupation_title,
               m.birth_date AS birth_date__raw, m.departure_date AS departure_date__raw,
               m.contract_months AS contract_months__raw,
               m.birth_date__clean AS birth_date__parsed,
               m.departure_date__clean AS departure_date__parsed,
               m.recruitment_agency__clean, m.contract_months__clean,
               CASE WHEN m.source_record_id IS NULL
                    THEN {_hmac("concat_ws('|', " + fingerprint_cols + ")")} END AS fingerprint,
               {", ".join(match_cols)}
        FROM m
        ),
        n AS (
        SELECT *,
            nik IS NOT NULL AND regexp_full_match(nik, '[0-9]{{16}}') AS nik_ok,
            {_hmac("'passport:' || passport_number")} AS passport_hmac,
            CASE WHEN regexp_full_match(nik, '[0-9]{{16}}') THEN
                CAST(substr(nik, 7, 2) AS INTEGER) END AS nik_dd,
            CASE WHEN regexp_full_match(nik, '[0-9]{{16}}') THEN
                CAST(substr(nik, 9, 2) AS INTEGER) END AS nik_mm,
            CASE WHEN regexp_full_match(nik, '[0-9]{{16}}') THEN
                CAST(substr(nik, 11, 2) AS INTEGER) END AS nik_yy
        FROM s
        ),
        d AS (
            SELECT *,
                CASE WHEN nik_ok THEN CASE WHEN nik_dd > 40 THEN 'F' ELSE 'M' END END AS nik_sex,
                -- arithmetic, not printf + strptime: 7x faster, the same dates and nulls
                CASE WHEN nik_ok AND nik_mm BETWEEN 1 AND 12 AND {NIK_DAY} BETWEEN 1 AND 31
                          AND {NIK_DAY} <= day(last_day(make_date({NIK_YEAR}, nik_mm, 1)))
                     THEN make_date({NIK_YEAR}, nik_mm, {NIK_DAY}) END AS nik_birth
            FROM n
        )
        SELECT
            CASE WHEN source_record_id IS NOT NULL THEN $agency || ':' || trim(source_record_id)
                 ELSE $agency || ':fp:' || substr(fingerprint, 1, 32) END AS record_key,
            $agency AS source_agency,
            source_record_id,
            $sha AS source_file_sha256,
            source_row,
            $batch AS batch_id,
            CAST($received AS TIMESTAMPTZ) AS ingested_at,
            -- the passport's key is the worker's where there is no valid NIK (NULL without a passport either)
            CASE WHEN nik_ok THEN {_hmac("'nik:' || nik")} ELSE passport_hmac END AS worker_key,
            -- 60 bits of it, a BIGINT: 8 bytes a record where the hex took 64 through staging and publishing
            {keys.DOCUMENT_KEY.format(key="passport_hmac")} AS document_key,
            nik, full_name, passport_number,
            coalesce(birth_date__parsed, nik_birth) AS birth_date,
            coalesce(sex__code, CASE WHEN sex__raw IS NULL THEN nik_sex END) AS sex,
            year(coalesce(birth_date__parsed, nik_birth)) AS birth_year,
            date_sub('year', coalesce(birth_date__parsed, nik_birth), departure_date__parsed) AS age_at_departure,
            education_level__code AS education_level,
            marital_status__code AS marital_status,
            coalesce(origin_province_code__code, left(origin_regency_code__code, 2)) AS origin_province_code,
            origin_regency_code__code AS origin_regency_code,
            destination_country__code AS destination_country,
            occupation_title,
            occupation_code__code AS occupation_code,
            sector__code AS sector,
            placement_scheme__code AS placement_scheme,
            recruitment_agency__clean AS recruitment_agency,
            departure_date__parsed AS departure_date,
            contract_months__clean AS contract_months,
            CAST(NULL AS VARCHAR) AS quality_flags,
            -- helpers for the issue checks below, dropped from the output
            nik_ok, nik_sex, nik_birth, birth_date__raw, birth_date__parsed, departure_date__raw,
            departure_date__parsed,
            contract_months__raw, {", ".join(f'"{c}__raw"' for c in coded)}
        FROM d""",
        params=params,
    ).to_arrow_table()
    con.register("h", h)
    issues = _issues(con, schema, coded, present | {source_of["occupation_code"]}, inexact)
    con.unregister("h")
    table = settings.owned_copy(h.select(schema.names()))  # not the helpers: they go with `h`
    del h
    rows = table["source_row"]
    if len(rows) > 1 and not pc.all(pc.less(rows[:-1], rows[1:])).as_py():  # DuckDB promises order; check it
        table = table.sort_by("source_row")
    return Harmonised(table.cast(schema.arrow_schema()), issues)


def _filled(template: str, fills: dict[str, str]) -> str:
    """SQL for a message with its placeholders replaced by SQL expressions ('-' where one is NULL)."""
    sql = _sql_str(template)
    for placeholder, expr in fills.items():
        sql = f"replace({sql}, '{placeholder}', coalesce({expr}, '-'))"
    return sql


def _suggestion_sentence(template_id: str, language: str) -> str:
    """SQL for a code-list message's `{suggestions}`: the rule's sentence ("Did you mean: ...") with the code
    list's suggestions in it, or nothing at all when there are none (never "Did you mean: -")."""
    sentence = rules()[template_id].get("suggestions", {}).get(language, "{suggestions}")
    return f"coalesce(replace({_sql_str(sentence)}, '{{suggestions}}', cl.suggestions), '')"


MESSAGE_MATCHES = ("unknown", "ambiguous", "fuzzy")  # how a value matched its code list, for each rule below


def _issues(
    con: duckdb.DuckDBPyConnection, schema: PlacementSchema, coded: dict, present: set[str], inexact: set[str]
) -> pa.Table:
    """One row per row and rule broken, with its message. Only the rules that some row breaks go into the
    query: DuckDB plans every part of a UNION, and planning all of them took ~0.08 s a chunk whatever its
    size (most of harmonise's time on a 50-row file). Which rules some row breaks is one small aggregate."""
    direct = set(schema.direct_identifiers())
    parts: list[str] = []
    checks: list[tuple[str, str]] = []  # (condition, its part): kept when some row meets the condition

    def add(rule: tuple[str, str, str, str], field: str, condition: str, value: str) -> None:
        rule_id, severity, msg_id, msg_en = rule
        shown = "NULL" if field in direct else f"CAST({value} AS VARCHAR)"
        fills = {"{value}": shown}
        checks.append((
            condition,
            f"SELECT source_row, {_sql_str(rule_id)} AS rule_id, {_sql_str(severity)} AS severity, "
            f"{_sql_str(field)} AS field, {shown} AS value, {_filled(msg_id, fills)} AS message_id, "
            f"{_filled(msg_en, fills)} AS message_en FROM h WHERE {condition}",
        ))  # fmt: skip

    # A code list's messages depend on the value alone: written once per distinct value that did not match
    # exactly, then joined to its rows, one pass per field (not one per field and rule).
    for name in coded:
        shown = "NULL" if name in direct else "cl.value"
        fills = {
            "{value}": shown,
            "{suggestions}": "cl.suggestions",
            "{code}": "cl.code",
            "{score}": "CAST(CAST(round(cl.score) AS INTEGER) AS VARCHAR)",
        }
        per_value = []
        for template, match in zip(("unknown_code", "ambiguous_code", "fuzzy_match"), MESSAGE_MATCHES, strict=True):
            rule_id, severity, msg_id, msg_en = _rule(f"harmonise.{template}.{{field}}", name, schema)
            fills_id, fills_en = (
                {**fills, "{suggestions}": _suggestion_sentence(f"harmonise.{template}.{{field}}", language)}
                for language in ("id", "en")
            )
            per_value.append(
                f"SELECT cl.value, {_sql_str(rule_id)} AS rule_id, {_sql_str(severity)} AS severity, {shown} AS shown, "
                f"{_filled(msg_id, fills_id)} AS message_id, {_filled(msg_en, fills_en)} AS message_en "
                f"FROM cl_{name} AS cl WHERE cl.match = '{match}'"
            )
        if name in inexact:
            parts.append(
                f"SELECT h.source_row, v.rule_id, v.severity, {_sql_str(name)} AS field, v.shown AS value, "
                f"v.message_id, v.message_en FROM h JOIN ({' UNION ALL '.join(per_value)}) AS v "
                f'ON v.value = h."{name}__raw"'
            )
        if name in present and not schema.field(name).required:
            raw = f'h."{name}__raw"'
            add(_rule("harmonise.missing_value.{field}", name, schema), name, f"{raw} IS NULL", raw)
    for name in DATE_FIELDS:
        add(
            _rule("harmonise.bad_date.{field}", name, schema),
            name,
            f"{name}__raw IS NOT NULL AND {name}__parsed IS NULL",
            f"{name}__raw",
        )
    add(
        _rule("harmonise.bad_number.{field}", "contract_months", schema),
        "contract_months",
        "contract_months__raw IS NOT NULL AND contract_months IS NULL",
        "contract_months__raw",
    )
    provinces = ", ".join(map(_sql_str, sorted(codelists.nik_province_codes())))
    nik_rules = {
        "nik.province": f"nik_ok AND left(nik, 2) NOT IN ({provinces})",
        "nik.birth_digits": "nik_ok AND nik_birth IS NULL",
        "nik.birth_date_mismatch": "nik_ok AND birth_date__parsed IS NOT NULL AND nik_birth IS NOT NULL "
        "AND birth_date__parsed <> nik_birth",
        "nik.sex_mismatch": "nik_ok AND sex IS NOT NULL AND nik_sex <> sex",
    }
    for rule_id, condition in nik_rules.items():
        spec = rules()[rule_id]
        add((rule_id, spec["severity"], spec["message"]["id"], spec["message"]["en"]), "nik", condition, "nik")
    spec = rules()["region.regency_outside_province"]
    add(
        ("region.regency_outside_province", spec["severity"], spec["message"]["id"], spec["message"]["en"]),
        "origin_regency_code",
        "origin_regency_code IS NOT NULL AND origin_province_code IS NOT NULL "
        "AND left(origin_regency_code, 2) <> origin_province_code",
        "origin_regency_code",
    )
    (broken,) = con.sql(
        "SELECT " + ", ".join(f"coalesce(bool_or({condition}), false)" for condition, _ in checks) + " FROM h"
    ).fetchall()
    parts += [part for (_, part), hit in zip(checks, broken, strict=True) if hit]
    if not parts:
        return ISSUE_SCHEMA.empty_table()
    sql = " UNION ALL ".join(parts) + " ORDER BY source_row, rule_id"
    return con.sql(sql).to_arrow_table().cast(ISSUE_SCHEMA)

"""Harmonise: mapped text -> typed values in the shared schema, codes from the code lists, pseudonymous keys.

What cannot be harmonised becomes a row issue, never an exception and never a guess. What a spreadsheet writes
for "no value" ('-', '0', 'N/A') is missing, not wrong: the NIK then supplies sex and birth date. The work is set
operations in DuckDB over Arrow; Python touches only distinct values that need fuzzy matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import codelists, keys, settings
from pipelines.config import AgencyConfig
from pipelines.keys import WorkerKeySecret
from pipelines.problems import ISSUE_SCHEMA, ConfigError
from pipelines.schema import PlacementSchema, Text, _Strict, load_schema

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


class RuleSpec(_Strict):
    """One row rule of rules.yaml: checked on load, so a misspelt key is refused by name, not a KeyError per file."""

    severity: Literal["critical", "warning", "by_field"]
    message: Text
    hint: Text
    suggestions: Text | None = None


def rules() -> dict[str, dict]:
    path = settings.SCHEMAS_DIR / "rules.yaml"
    return _rules_at(path, path.stat().st_mtime_ns)


@cache
def _rules_at(path: Path, mtime_ns: int) -> dict[str, dict]:
    from pydantic import ValidationError

    from pipelines.config import read_yaml

    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"Aturan tidak valid / Invalid rules: {path}: a mapping of rule ids is expected")
    try:
        return {rule: RuleSpec.model_validate(spec).model_dump(exclude_none=True) for rule, spec in raw.items()}
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Aturan tidak valid / Invalid rules: {path}: {problems}") from None


def rule_for(template_id: str, field: str, schema: PlacementSchema) -> tuple[str, str, str, str]:
    """A rules.yaml template made a field's rule: (rule id, severity, message id, message en)."""
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
    for template, spec in rules().items():
        targets = schema.names() if "{field}" in template else [None]  # every field a template can be about
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
    parsed = _parsed(column, ordered)
    low, high = PLAUSIBLE_YEARS
    return f"CASE WHEN year({parsed}) BETWEEN {low} AND {high} THEN {parsed} END"  # once per distinct value


def _parsed(column: str, formats: list[str]) -> str:
    """SQL: the text read as a date in the first of the formats that fits, else NULL."""
    named = f"lower({column})"
    for word, english in MONTHS_ID.items():
        named = f"regexp_replace({named}, '\\b{word}\\b', '{english}', 'g')"
    text = f"CASE WHEN regexp_matches({column}, '[A-Za-z]') THEN {named} ELSE {column} END"
    return f"CAST(try_strptime({text}, [{', '.join(_sql_str(f) for f in formats)}]) AS DATE)"


def _birth_century(short: str, parsed: str, departure: str) -> str:
    """SQL: the birth date, one read with a two-digit year (`short`, else `parsed`) put in the century the NIK's
    year takes (NIK_YEAR). strptime puts '68' in 2068 and '69' in 1969: a birth date that would make the worker
    younger than 14 in the departure year (or this year) is a century earlier. A 29 February that year does not
    have is no date."""
    earlier = f"({short} - INTERVAL 100 YEAR)"
    return (
        f"CASE WHEN {short} IS NULL THEN {parsed} "
        f"WHEN year({short}) <= year(coalesce({departure}, current_date)) - 14 THEN {short} "
        f"WHEN day({earlier}) = day({short}) THEN CAST({earlier} AS DATE) END"
    )


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
    con: duckdb.DuckDBPyConnection,
    columns: dict[str, pa.ChunkedArray],
    exprs: dict[str, Callable[[str], str]],
    distinct: dict[str, pa.Array],
) -> dict[str, pa.Array]:
    """Each SQL expression (built for a column name) computed once per distinct value of its column and mapped
    back to the rows (NULL stays NULL). Files repeat a few agency names, contract lengths and dates on every
    row: the recruitment agency's two regular expressions over each row were ~0.16 of a 200,000-row chunk's
    0.8 CPU-seconds. All columns go in one statement, side by side (shorter ones padded with NULL): DuckDB
    plans each statement at a cost, ~5 ms, that a 50-row file notices four times over. `distinct`: each
    column's distinct values, not null (worked out once, in `_without_placeholders`)."""
    values = {name: distinct[name] for name in exprs}
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


# A passport keys a worker (no NIK) and links records (document_key) only when it can be one: 6-12 letters and
# digits, both present. "N/A", "0", "TIDAK ADA" or "000000" would give every such record the same key, one worker.
PASSPORT_OK = (
    "(length(passport_number) BETWEEN 6 AND 12 AND regexp_matches(passport_number, '[A-Z]') "
    "AND regexp_matches(passport_number, '[0-9]'))"
)

# the NIK's birth date digits: DD (+40 for women), YY read as the latest century that makes the worker 14+
NIK_DAY = "(CASE WHEN nik_dd > 40 THEN nik_dd - 40 ELSE nik_dd END)"
NIK_YEAR = (
    "(CASE WHEN 2000 + nik_yy <= year(coalesce(departure_date__parsed, current_date)) - 14 "
    "THEN 2000 + nik_yy ELSE 1900 + nik_yy END)"
)


# Identifiers are not searched for placeholders: distinct on nearly every row, they would cost a pass over every
# row (a NIK or passport '-' is already empty once cleaned in SQL; '0' or 'N/A' is an invalid NIK or a passport).
NOT_BLANKED = frozenset({"source_record_id", "nik", "passport_number", "full_name"})
# Punctuation and spaces, ASCII and the few others spreadsheets put in an empty cell (dashes, ellipsis,
# no-break spaces): what `codelists.normalise` takes out of a value before `is_placeholder_key`. `\p{L}` would
# be exact but costs RE2 ~1.4 ms to compile for each column of each chunk.
PLACEHOLDER_PUNCTUATION = r"[[:punct:][:space:]\x{00A0}\x{00B7}\x{2010}-\x{2015}\x{2026}\x{202F}]+"
PLACEHOLDER_KEYS = pa.array(sorted(codelists.PLACEHOLDER_WORDS), pa.string())


def _placeholders(values: pa.Array) -> pa.Array:
    """The values that stand for no value ("-", "?", "0", "00/00/0000", "N/A", "tidak ada"), as
    `codelists.is_placeholder_key` has them. A value with a digit 1-9 never is one: the distinct birth dates of a
    chunk (12,000) are let through by one cheap test instead of each being rewritten."""
    candidates = values.filter(pc.invert(pc.match_substring_regex(values, "[1-9]")))
    key = pc.replace_substring_regex(pc.utf8_lower(candidates), PLACEHOLDER_PUNCTUATION, "")
    return candidates.filter(pc.or_(pc.equal(pc.utf8_ltrim(key, "0"), ""), pc.is_in(key, value_set=PLACEHOLDER_KEYS)))


def _without_placeholders(
    table: pa.Table, names: list[str]
) -> tuple[pa.Table, dict[str, pa.Array], dict[str, pa.ChunkedArray]]:
    """The table with the placeholders of these columns made NULL, each column's other distinct values, and
    the columns changed as they were sent (the record's fingerprint is of the row as sent).

    A '-' for sex is no sex written: the NIK's is taken, as for an empty cell (the code list never read '-' as a
    sex, but the cell was not empty, so the NIK was not asked), and a '-' birth date is no date, not a wrong one
    (`bad_date`, critical). The same holds for every field searched here: missing, never unknown or unreadable.
    The distinct values of all the columns are searched at once (one search a column cost a chunk ~4 ms)."""
    distinct = {name: pc.unique(table[name].combine_chunks()).drop_null() for name in names}
    found = _placeholders(pa.concat_arrays([values.cast(pa.string()) for values in distinct.values()]))
    as_sent: dict[str, pa.ChunkedArray] = {}
    if not len(found):
        return table, distinct, as_sent
    for name, values in distinct.items():
        here = pc.is_in(values.cast(pa.string()), value_set=found)
        if pc.any(here).as_py():
            as_sent[name] = table[name]
            column = pc.if_else(pc.is_in(table[name], value_set=found), pa.scalar(None, pa.string()), table[name])
            table = table.set_column(table.schema.get_field_index(name), name, column)
            distinct[name] = values.filter(pc.invert(here))
    return table, distinct, as_sent


def _outside_province(regency: pa.Array, province: pa.Array) -> pa.Array:
    """For rows whose regency was matched fuzzily: True where it is outside the province given, and not in one
    that province's regencies have moved to (`_successions`). A near spelling is no evidence against the
    province the agency wrote ("Kabupaten Badnung", Jawa Barat, is closest to Badung, Bali)."""
    ours = pc.utf8_slice_codeunits(regency, 0, 2)
    moved = pc.is_in(pc.binary_join_element_wise(ours, province, "<"), value_set=_successions())
    return pc.fill_null(pc.invert(pc.or_(pc.equal(ours, province), moved)), False)


def _regency_within_province(mapped: pa.Table, matches: pa.Table) -> tuple[pa.Table, bool]:
    """The regency code dropped where it was a fuzzy match outside the province given (`_outside_province`),
    those rows marked in `origin_regency_code__outside`; and whether there are any. Only the rows of fuzzy
    values are looked at: nothing to do in a chunk whose regencies all matched exactly."""
    src = "origin_regency_code"
    fuzzy = matches["value"].filter(pc.equal(matches["match"], codelists.FUZZY))
    if not len(fuzzy):
        return mapped, False
    rows = pc.indices_nonzero(pc.fill_null(pc.is_in(mapped[src], value_set=fuzzy), False))
    regency, province = (pc.take(mapped[f"{name}__code"], rows) for name in (src, "origin_province_code"))
    outside = rows.filter(_outside_province(regency, province))
    if not len(outside):
        return mapped, False
    marks = np.zeros(mapped.num_rows, dtype=bool)
    marks[outside.to_numpy()] = True
    flags = pa.array(marks)
    dropped = pc.if_else(flags, pa.scalar(None, pa.string()), mapped[f"{src}__code"])
    mapped = mapped.set_column(mapped.schema.get_field_index(f"{src}__code"), f"{src}__code", dropped)
    return mapped.append_column(f"{src}__outside", flags), True


def _province_of_record(provinces: pa.Array, regencies: pa.Array) -> str:
    """SQL: the origin province published. The regency's province where none is given, or where the one given
    is a province the regency's left (`Papua` with Kab. Merauke: 93 Papua Selatan since 2022, not 91): the
    same place under its old name, so no warning. Where they truly disagree (Jawa Timur with Kab. Cilacap),
    neither is known to be the wrong one: both are published as written and the row is flagged
    (`region.regency_outside_province`). `provinces`, `regencies`: the codes of the chunk, so that a chunk
    without such a pair pays nothing for the rule (~3 ms a 200,000-row chunk where there is one)."""
    regency, province = "origin_regency_code__code", "origin_province_code__code"
    given, found = set(provinces.drop_null().to_pylist()), {c[:2] for c in regencies.drop_null().to_pylist()}
    checks = " OR ".join(
        f"({province} = {_sql_str(old)} AND left({regency}, 2) = {_sql_str(new)})"
        for new, olds in sorted(codelists.province_predecessors().items())
        for old in sorted(olds)
        if old in given and new in found
    )
    moved = f" WHEN {checks} THEN left({regency}, 2)" if checks else ""
    return f"CASE WHEN {province} IS NULL THEN left({regency}, 2){moved} ELSE {province} END"


@cache
def _successions() -> pa.Array:
    """'93<91': a province code, '<', the code of a province it was part of (codelists.province_predecessors)."""
    pairs = [f"{new}<{old}" for new, olds in codelists.province_predecessors().items() for old in olds]
    return pa.array(sorted(pairs), pa.string())


def _informal_occupation(
    code: pa.ChunkedArray,
    occupations: pa.Table,
    occupation_rows: pa.ChunkedArray,
    sectors: pa.Table,
    sector_rows: pa.ChunkedArray,
) -> pa.ChunkedArray:
    """occupation_code as the job is in an informal-sector placement on the rows whose sector is INFORMAL
    (`codelists.informal_code`: a "Caregiver" in a household is 5322, not 5321). `occupations`, `sectors`: how
    each distinct value matched; `*_rows`: each row's position among them. The code of every (title, sector)
    pair is worked out once and each row takes its pair's: per-row comparisons cost a chunk ~7 ms, this ~1."""
    values, codes = occupations["value"].to_pylist(), occupations["code"].to_pylist()
    informal = [codelists.informal_code(v, c) for v, c in zip(values, codes, strict=True)]
    if not any(informal):
        return code
    household = [c == "INFORMAL" for c in sectors["code"].to_pylist()] + [False]  # last: no sector
    codes, informal = [*codes, None], [*informal, None]  # last: no title
    pairs = [i if i and home else c for c, i in zip(codes, informal, strict=True) for home in household]
    title = pc.fill_null(occupation_rows, len(codes) - 1)
    pair = pc.add(pc.multiply(title, len(household)), pc.fill_null(sector_rows, len(household) - 1))
    return pc.take(pa.array(pairs, pa.string()), pair)


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


def _with_plain_fields(
    con: duckdb.DuckDBPyConnection, h: pa.Table, mapped: pa.Table, schema: PlacementSchema
) -> pa.Table:
    """Schema fields the statement above has no rule for, as the agency sent them: a mapped field added to
    placement.yaml (text as is; numbers and ISO dates read, anything else empty) runs without a code change. A
    lineage or derived field needs its rule here: refused by name, before a file is processed wrongly."""
    for f in schema.fields:
        if f.name in h.column_names:
            continue
        if f.origin != "mapped" or f.name not in mapped.column_names:
            raise ConfigError(
                f"Skema / schema: kolom {f.name!r} ({f.origin}) belum punya aturan harmonisasi / field {f.name!r} "
                f"({f.origin}) has no harmonisation rule in pipelines/harmonise.py"
            )
        con.register("plain", mapped.select([ROW, f.name]))
        column = con.sql(
            f'SELECT TRY_CAST("{f.name}" AS {f.sql_type}) AS v FROM plain ORDER BY {ROW}'
        ).to_arrow_table()["v"]
        con.unregister("plain")
        h = h.append_column(pa.field(f.name, f.arrow_type), column.cast(f.arrow_type))
    return h


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
    # placeholders ('-', '0', 'N/A') out, each column's distinct values kept for the steps below; the columns as
    # sent kept for the record's fingerprint, which must not change with this rule
    searched = [name for name in schema.mapped_field_names() if name not in NOT_BLANKED]
    mapped, distinct, given = _without_placeholders(mapped, searched)

    # ---- code lists: one match per distinct value, looked up in Arrow. With no join in the SQL below DuckDB
    # keeps the rows in their order, and reading the result back needs no sort (a 200,000-row chunk,
    # in-process: 0.85 -> 0.75 s, 1.25 -> 1.09 CPU-seconds; the same tables)
    coded = {f.name: f.codelist for f in schema.fields if f.codelist}
    source_of = {name: name for name in coded}
    if "occupation_code" not in present:
        source_of["occupation_code"] = "occupation_title"
    match_cols = []
    inexact: set[str] = set()  # fields with a value that did not match exactly: only these can get a message
    matched: dict[str, pa.Table] = {}
    rows: dict[str, pa.ChunkedArray] = {}  # each row's position among its field's distinct values
    for name, listname in coded.items():
        src = source_of[name]
        matches = matched[name] = codelists.match_values(listname, distinct[src].to_pylist())
        if pc.any(pc.is_in(matches["match"], value_set=pa.array(MESSAGE_MATCHES))).as_py():
            inexact.add(name)
        con.register(f"cl_{name}", matches)
        rows[name] = pc.index_in(mapped[src], value_set=matches["value"])
        mapped = mapped.append_column(f"{name}__code", pc.take(matches["code"], rows[name]))
        # how each value matched is joined again only for the rows that get a message (see _issues): carried
        # in the working table it was a quarter of it (200,000 rows: 173 MB, 127 MB without)
        match_cols.append(f'm."{name}__code" AS "{name}__code", m."{src}" AS "{name}__raw"')
    mapped, outside = _regency_within_province(mapped, matched["origin_regency_code"])
    if pc.any(pc.equal(matched["sector"]["code"], "INFORMAL")).as_py():
        informal = _informal_occupation(
            mapped["occupation_code__code"],
            matched["occupation_code"],
            rows["occupation_code"],
            matched["sector"],
            rows["sector"],
        )
        at = mapped.schema.get_field_index("occupation_code__code")
        mapped = mapped.set_column(at, "occupation_code__code", informal)
    per_distinct: dict[str, Callable[[str], str]] = {
        "recruitment_agency": lambda v: (
            f"nullif(trim(regexp_replace(regexp_replace(upper({v}), '[^A-Z0-9 ]', ' ', 'g'), '\\s+', ' ', 'g')), '')"
        ),
        "contract_months": _contract_months_expr,
        **dict.fromkeys(DATE_FIELDS, lambda v: _date_expr(v, cfg.date_formats)),
    }
    columns = {name: mapped[name] for name in per_distinct}
    short_years = [f for f in cfg.date_formats if "%y" in f]
    if short_years:  # the birth date read in the two-digit-year formats alone, to put it in its century
        per_distinct["birth_date__short"] = lambda v: _parsed(v, short_years)
        columns["birth_date__short"], distinct["birth_date__short"] = mapped["birth_date"], distinct["birth_date"]
    cleaned = _per_distinct(con, columns, per_distinct, distinct)
    for name, column in cleaned.items():
        mapped = mapped.append_column(f"{name}__clean", column)
    for name, column in given.items():
        mapped = mapped.append_column(f"{name}__given", column)
    con.register("m", mapped)
    birth = (
        _birth_century("m.birth_date__short__clean", "m.birth_date__clean", "m.departure_date__clean")
        if short_years
        else "m.birth_date__clean"
    )
    outside_col = ', m."origin_regency_code__outside"' if outside else ""
    province = _province_of_record(matched["origin_province_code"]["code"], matched["origin_regency_code"]["code"])

    params = {
        "opad": secret.outer_pad,
        "ipad": secret.inner_pad,
        "agency": cfg.agency,
        "sha": sha256,
        "batch": batch_id,
        "received": received_at,
    }
    fingerprint_cols = ", ".join(
        f"coalesce(m.\"{c}{'__given' if c in given else ''}\", '')" for c in schema.mapped_field_names()
    )
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
               {birth} AS birth_date__parsed,
               m.departure_date__clean AS departure_date__parsed,
               m.recruitment_agency__clean, m.contract_months__clean,
               CASE WHEN m.source_record_id IS NULL
                    THEN {_hmac("concat_ws('|', " + fingerprint_cols + ")")} END AS fingerprint,
               {", ".join(match_cols)}{outside_col}
        FROM m
        ),
        n AS (
        SELECT *,
            nik IS NOT NULL AND regexp_full_match(nik, '[0-9]{{16}}') AS nik_ok,
            CASE WHEN {PASSPORT_OK} THEN {_hmac("'passport:' || passport_number")} END AS passport_hmac,
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
            {province} AS origin_province_code,
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
            contract_months__raw, {", ".join(f'"{c}__raw"' for c in coded)}{outside_col.replace("m.", "")}
        FROM d""",
        params=params,
    ).to_arrow_table()
    con.register("h", h)
    issues = _issues(con, schema, coded, present | {source_of["occupation_code"]}, inexact, outside=outside)
    con.unregister("h")
    h = _with_plain_fields(con, h, mapped, schema)
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
    con: duckdb.DuckDBPyConnection,
    schema: PlacementSchema,
    coded: dict,
    present: set[str],
    inexact: set[str],
    *,
    outside: bool = False,
) -> pa.Table:
    """One row per row and rule broken, with its message. Only the rules that some row breaks go into the
    query: DuckDB plans every part of a UNION, and planning all of them took ~0.08 s a chunk whatever its
    size (most of harmonise's time on a 50-row file). Which rules some row breaks is one small aggregate.
    `outside`: some rows' fuzzy regency was dropped (`_regency_within_province`): they are told the value is
    ambiguous, not that it was read as a code."""
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
            rule_id, severity, msg_id, msg_en = rule_for(f"harmonise.{template}.{{field}}", name, schema)
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
            dropped = ""
            if outside and name == "origin_regency_code":
                fuzzy_rule = _sql_str(rule_for("harmonise.fuzzy_match.{field}", name, schema)[0])
                dropped = f' AND NOT (h."{name}__outside" AND v.rule_id = {fuzzy_rule})'
                add(
                    rule_for("harmonise.ambiguous_code.{field}", name, schema),
                    name,
                    f'"{name}__outside"',
                    f'"{name}__raw"',
                )
            parts.append(
                f"SELECT h.source_row, v.rule_id, v.severity, {_sql_str(name)} AS field, v.shown AS value, "
                f"v.message_id, v.message_en FROM h JOIN ({' UNION ALL '.join(per_value)}) AS v "
                f'ON v.value = h."{name}__raw"{dropped}'
            )
        if name in present and not schema.field(name).required:
            raw = f'h."{name}__raw"'
            add(rule_for("harmonise.missing_value.{field}", name, schema), name, f"{raw} IS NULL", raw)
    for name in DATE_FIELDS:
        add(
            rule_for("harmonise.bad_date.{field}", name, schema),
            name,
            f"{name}__raw IS NOT NULL AND {name}__parsed IS NULL",
            f"{name}__raw",
        )
    add(
        rule_for("harmonise.bad_number.{field}", "contract_months", schema),
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

"""The shared schema (`schemas/placement.yaml`): loaded once, validated, and the source of every field list.

Validated for meaning too, not only for shape: everything generated from it (the GX suite, the DDL) and every
run trusts it, so a code list that does not exist, a check its field's type cannot take or a regular expression
that does not compile is refused on load, naming the file, before any file is claimed.
"""

from __future__ import annotations

import csv
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines import settings
from pipelines.config import SCHEMA, config_error, read_yaml, validation_problems
from pipelines.problems import Bilingual


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    id: str
    en: str

    def bilingual(self) -> Bilingual:
        return Bilingual(self.id, self.en)


class Check(_Strict):
    rule: Literal["unique", "pattern", "between"]
    rule_id: str
    severity: Literal["critical", "warning"] = "critical"
    message: Text
    hint: Text
    regex: str | None = None
    min: Any = None
    max: Any = None


# Suite parameters a `between` check may name as {$PARAMETER: name}: `validate.parameters_for` supplies them.
SUITE_PARAMETERS = ("run_date", "data_begins")
# The field types each check can judge: GX compares numbers and datetimes in `between`, text in `pattern`.
CHECK_TYPES = {"between": ("integer", "date", "timestamp"), "pattern": ("string",)}


def _bound_problem(bound: Any, field_type: str) -> str | None:
    """Why `bound` cannot be a `between` limit of a field of `field_type`, or None. A date's limit must be a
    parameter: GX cannot compare a date column with a date written out (every row fails with an error)."""
    if bound is None:
        return None
    if isinstance(bound, dict):
        if set(bound) != {"$PARAMETER"} or bound["$PARAMETER"] not in SUITE_PARAMETERS:
            return f"a parameter is {{$PARAMETER: name}} with name one of {list(SUITE_PARAMETERS)}, not {bound!r}"
        return None
    if field_type != "integer":
        return (
            f"{bound!r}: a {field_type}'s limit is a parameter, {{$PARAMETER: run_date}} or {{$PARAMETER: data_begins}}"
        )
    if isinstance(bound, bool) or not isinstance(bound, int | float):
        return f"{bound!r} is not a number"
    return None


def check_problems(field: FieldSpec, check: Check) -> list[str]:
    """What is wrong with one check of one field: a rule its type cannot take, or arguments it cannot use."""
    where = f"fields.{field.name}.checks.{check.rule_id}"
    allowed = CHECK_TYPES.get(check.rule)
    if allowed and field.type not in allowed:
        return [f"{where}: rule {check.rule!r} needs a field of type {' or '.join(allowed)}, not {field.type!r}"]
    problems = []
    if check.rule == "pattern":
        if check.regex is None:
            problems.append(f"{where}: rule 'pattern' needs a regex")
        else:
            try:
                re.compile(check.regex)
            except re.error as exc:
                problems.append(f"{where}: not a valid regular expression '{check.regex}': {exc}")
    elif check.regex is not None:
        problems.append(f"{where}: regex is only for rule 'pattern'")
    if check.rule == "between":
        if check.min is None and check.max is None:
            problems.append(f"{where}: rule 'between' needs a min, a max or both")
        problems += [f"{where}: {p}" for b in (check.min, check.max) if (p := _bound_problem(b, field.type))]
    elif check.min is not None or check.max is not None:
        problems.append(f"{where}: min and max are only for rule 'between'")
    return problems


class FieldMessages(_Strict):
    required: Text
    hint: Text


class FieldSpec(_Strict):
    name: str
    type: Literal["string", "integer", "date", "timestamp"]
    origin: Literal["lineage", "mapped", "derived"]
    pii: Literal["direct", "quasi", "none"]
    required: bool = False
    codelist: str | None = None
    aliases: list[str] = Field(default_factory=list)
    description: Text
    messages: FieldMessages | None = None
    checks: list[Check] = Field(default_factory=list)

    @property
    def published(self) -> bool:
        return self.pii != "direct"

    @property
    def arrow_type(self) -> pa.DataType:
        return {
            "string": pa.string(),
            "integer": pa.int64(),
            "date": pa.date32(),
            "timestamp": pa.timestamp("us", tz="UTC"),
        }[self.type]

    @property
    def sql_type(self) -> str:
        return {"string": "VARCHAR", "integer": "BIGINT", "date": "DATE", "timestamp": "TIMESTAMPTZ"}[self.type]

    def required_message(self) -> tuple[Bilingual, Bilingual]:
        if self.messages:
            return self.messages.required.bilingual(), self.messages.hint.bilingual()
        return (
            Bilingual(f"Kolom wajib '{self.name}' kosong.", f"Required field '{self.name}' is empty."),
            Bilingual(f"Isi kolom '{self.name}'.", f"Fill in '{self.name}'."),
        )


class PlacementSchema(_Strict):
    schema_version: str
    name: str
    title: Text
    grain: Text
    file_requirements: list[list[str]] = Field(default_factory=list)
    fields: list[FieldSpec]

    @model_validator(mode="after")
    def _means_something(self) -> PlacementSchema:
        problems = schema_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def mapped_field_names(self) -> list[str]:
        """Fields an agency column may map to: mapped ones, and derived ones an agency may send ready-made."""
        return [f.name for f in self.fields if f.origin == "mapped" or f.aliases]

    def published_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.published]

    def direct_identifiers(self) -> list[str]:
        return [f.name for f in self.fields if f.pii == "direct"]

    def arrow_schema(self, published_only: bool = False) -> pa.Schema:
        chosen = self.published_fields() if published_only else self.fields
        return pa.schema([pa.field(f.name, f.arrow_type) for f in chosen])


def codelist_path(name: str) -> Path:
    return settings.CODELISTS_DIR / f"{name}.csv"


@cache
def codelist_codes(name: str) -> frozenset[str]:
    """The codes of one code list, read with `csv` alone: checking the configuration at start-up must not pay for
    pandas, which building Arrow from Python lists imports (0.3-0.5 s; an idle `sdmi run` never needs it).
    From `settings.CODELISTS_DIR`, which follows SDMI_PROJECT_DIR."""
    with codelist_path(name).open(encoding="utf-8", newline="") as f:
        return frozenset(row.get("code") or "" for row in csv.DictReader(f))


def schema_problems(schema: PlacementSchema) -> list[str]:
    """Every way the schema would fail later (a KeyError in `generate`, GX failing every row, an agency blamed):
    field names and rule ids twice, a code list without its file, checks their field cannot take."""
    names = schema.names()
    problems = [f"field {n!r} is defined twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for group in schema.file_requirements:
        problems += [f"file_requirements: {n!r} is not a field" for n in group if n not in names]
    rule_ids: list[str] = []
    for f in schema.fields:
        if f.codelist and not codelist_path(f.codelist).is_file():
            missing = codelist_path(f.codelist)
            known = ", ".join(sorted(p.stem for p in settings.CODELISTS_DIR.glob("*.csv")))
            problems.append(f"fields.{f.name}.codelist: no code list {f.codelist!r} ({missing} does not exist; "
                            f"known: {known})")  # fmt: skip
        rule_ids += [f"required.{f.name}"] if f.required else []
        rule_ids += [f"codelist.{f.name}"] if f.codelist else []
        for c in f.checks:
            rule_ids.append(c.rule_id)
            problems += check_problems(f, c)
    problems += [f"rule id {r!r} is used twice" for r in sorted({r for r in rule_ids if rule_ids.count(r) > 1})]
    return problems


def load_schema_file(path: Path) -> PlacementSchema:
    raw = read_yaml(path)
    try:
        return PlacementSchema.model_validate(raw)
    except ValidationError as exc:
        raise config_error(path, *validation_problems(exc, raw), what=SCHEMA) from None


@cache
def load_schema() -> PlacementSchema:
    return load_schema_file(settings.SCHEMAS_DIR / "placement.yaml")

"""Agency onboarding files (`schemas/agencies/<agency>.yaml`), validated on load.

An agency is onboarded by one YAML file and no code; this module is the contract that file must meet.
Errors name the file, the key and what was expected.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines import settings
from pipelines.problems import ConfigError

AGENCY_CODE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadOptions(_Strict):
    """How to read one agency's files. Everything left out is detected."""

    format: Literal["auto", "csv", "xlsx", "json"] = "auto"
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | int | None = None  # name, or 0-based position
    header_row: int | None = Field(default=None, ge=1)  # 1-based, as a person sees it; None: find it
    footer_pattern: str | None = r"^\s*(total|jumlah|grand total|sub ?total)\b"
    records_path: str | None = None  # JSON: dotted path to the array of records
    max_bytes: int = 2 * 1024**3
    max_columns: int = 500
    xlsx_max_uncompressed_bytes: int = 200 * 1024**2  # zip-bomb guard: total size of the unpacked workbook
    xlsx_max_compression_ratio: float = 100.0  # zip-bomb guard: per member, uncompressed / compressed

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError("delimiter must be one character, e.g. ',' ';' '|' or a tab")
        return v

    @field_validator("footer_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v


class SplitTransform(_Strict):
    """One cell into several fields ("Jakarta, 12-05-1990" -> birth place, birth date)."""

    split: str  # source column (alias matched like any header)
    into: list[str | None]  # schema fields, None to drop that part
    separator: str = ","

    def sources(self) -> list[str]:
        return [self.split]

    def targets(self) -> list[str]:
        return [f for f in self.into if f]


class RegexTransform(_Strict):
    """Extract a field from a cell with a regular expression (first group, or the named group)."""

    extract: str
    pattern: str
    into: str

    def sources(self) -> list[str]:
        return [self.extract]

    def targets(self) -> list[str]:
        return [self.into]

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        re.compile(v)
        return v


class JoinTransform(_Strict):
    """Several cells into one field (first and last name)."""

    join: list[str]
    into: str
    separator: str = " "

    def sources(self) -> list[str]:
        return list(self.join)

    def targets(self) -> list[str]:
        return [self.into]


class ConstantTransform(_Strict):
    """A field every row of this agency has (a mission abroad: its destination country)."""

    constant: str
    into: str

    def sources(self) -> list[str]:
        return []

    def targets(self) -> list[str]:
        return [self.into]


Transform = Annotated[
    SplitTransform | RegexTransform | JoinTransform | ConstantTransform, Field(union_mode="left_to_right")
]


def expectation_columns(kwargs: dict) -> list[str]:
    """The columns an expectation reads, whichever of GX's column arguments names them."""
    return [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs] + list(kwargs.get("column_list", []))


class AgencyExpectation(_Strict):
    """An extra GX expectation for this agency only, on a harmonised field."""

    rule_id: str
    expectation: str  # GX expectation type, e.g. expect_column_values_to_be_in_set
    kwargs: dict
    severity: Literal["critical", "warning"] = "warning"
    message_id: str
    message_en: str


class AgencyConfig(_Strict):
    agency: str
    name: str
    kind: Literal["national", "provincial", "district", "recruitment_company", "mission", "other"]
    priority: int = Field(ge=1, le=99, description="lower wins when agencies disagree on a placement")
    data_begins: date = date(2007, 1, 1)
    read: ReadOptions = ReadOptions()
    record_id: list[str] = Field(default_factory=list, description="header aliases of the agency's record id")
    columns: dict[str, list[str]] = Field(description="schema field -> header aliases in this agency's files")
    values: dict[str, dict[str, str]] = Field(default_factory=dict, description="schema field -> value map")
    date_formats: list[str] = Field(default_factory=lambda: ["%d/%m/%Y", "%d-%m-%Y", "%Y-%m-%d"])
    transforms: list[Transform] = Field(default_factory=list)
    expectations: list[AgencyExpectation] = Field(default_factory=list)
    hold_threshold: float = Field(default=0.5, gt=0, le=1, description="share of failing rows that holds a file")
    source_file: str | None = None

    @field_validator("agency")
    @classmethod
    def _code(cls, v: str) -> str:
        if not AGENCY_CODE.match(v):
            raise ValueError("agency code must be lower-case letters, digits and _ (2-41 chars)")
        return v

    @field_validator("columns", "record_id", mode="before")
    @classmethod
    def _listify(cls, v: object) -> object:
        if isinstance(v, dict):
            return {k: [a] if isinstance(a, str) else a for k, a in v.items()}
        if isinstance(v, str):
            return [v]
        return v

    def transform_targets(self) -> set[str]:
        return {f for t in self.transforms for f in t.targets()}

    def provided_fields(self) -> set[str]:
        """Schema fields this agency's files can fill: mapped columns, the record id, transforms."""
        return set(self.columns) | ({"source_record_id"} if self.record_id else set()) | self.transform_targets()

    @model_validator(mode="after")
    def _fields_exist(self) -> AgencyConfig:
        from pipelines.schema import load_schema

        schema = load_schema()
        mappable = set(schema.mapped_field_names())
        targets = set(self.columns) | set(self.values) | self.transform_targets()
        unknown = sorted(x for x in targets if x not in mappable)
        if unknown:
            raise ValueError(f"unknown schema fields {unknown}; mappable fields are {sorted(mappable)}")
        fields = set(schema.names())
        for e in self.expectations:
            missing = sorted({str(c) for c in expectation_columns(e.kwargs) if c not in fields})
            if missing:
                raise ValueError(f"expectation {e.rule_id}: columns {missing} are not fields of the harmonised schema")
        return self


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid agency mapping"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  - {key}: {e['msg']}")
    return "\n".join(lines)


def load_agency_file(path: Path) -> AgencyConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    raw.setdefault("agency", path.stem)
    if raw["agency"] != path.stem:
        raise ConfigError(f"{path}: key 'agency' is {raw['agency']!r} but the file is named {path.stem!r}")
    try:
        cfg = AgencyConfig.model_validate({**raw, "source_file": str(path)})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None
    return cfg


@cache
def _load_all(directory: str) -> dict[str, AgencyConfig]:
    return {p.stem: load_agency_file(p) for p in sorted(Path(directory).glob("*.yaml"))}


def agencies(directory: Path | None = None) -> dict[str, AgencyConfig]:
    return _load_all(str(directory or settings.AGENCIES_DIR))


def agency(code: str, directory: Path | None = None) -> AgencyConfig:
    known = agencies(directory)
    if code not in known:
        raise ConfigError(
            f"agency {code!r} is not onboarded: no {code}.yaml in {directory or settings.AGENCIES_DIR} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    return known[code]

"""Agency onboarding files (`schemas/agencies/<agency>.yaml`), validated on load.

An agency is onboarded by one YAML file and no code; this module is the contract that file must meet.
Errors name the file, the key and what was expected. Every configuration YAML (agency mappings, the schema,
the rules) is read by `read_yaml`, which refuses what PyYAML would let pass silently: a key written twice.
A draft (`<code>.draft.yaml`, from `sdmi agency new`) lies beside the mappings but is not one of them.
"""

from __future__ import annotations

import codecs
import re
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines import settings
from pipelines.problems import ConfigError

AGENCY_CODE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
MAPPING_SUFFIX = ".yaml"
DRAFT_SUFFIX = ".draft.yaml"  # `sdmi agency new` writes here: never loaded as an agency until renamed


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not last-wins: a second
    `columns:` block silently replaced the whole mapping, a second alias list the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` may be overridden by the keys beside it: that is its purpose
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: PyYAML's own construct_mapping refuses it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (line {first} and line {line})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A configuration YAML file: UTF-8 (a byte-order mark allowed), no key twice in a mapping. Anything else
    is a ConfigError naming the file, never a traceback."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise config_error(path, f"bukan teks UTF-8 (byte ke-{exc.start}); simpan ulang sebagai UTF-8 / "
                                 f"not UTF-8 text (at byte {exc.start}): save it again as UTF-8") from None  # fmt: skip
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        detail = str(exc).replace('in "<unicode string>", ', "")
        raise config_error(path, f"YAML tidak valid / not valid YAML: {detail}") from None


def _duckdb_refusal(sql: str, value: str) -> str | None:
    """DuckDB's reason for refusing `sql` with `$v` = value, or None: the engine that will run it judges it."""
    con = settings.scratch_duckdb()
    try:
        con.execute(sql, {"v": value}).fetchall()
    except duckdb.Error as exc:
        return str(exc).removeprefix("Invalid Input Error: ")
    finally:
        con.close()
    return None


@lru_cache(maxsize=256)
def regex_problem(pattern: str) -> str | None:
    """Why DuckDB (RE2, which runs `extract` transforms) cannot compile `pattern`, or None."""
    return _duckdb_refusal("SELECT regexp_matches('', $v)", pattern)


# strptime directives naming each part of a date (DuckDB's; `%-d` is `%d` without the leading zero)
DATE_PART_DIRECTIVES = {"year": "Yy", "month": "mbBj", "day": "dj"}


@lru_cache(maxsize=256)
def date_format_problem(date_format: str) -> str | None:
    """Why `date_format` cannot read a date: a directive DuckDB's strptime (which reads the dates) does not know,
    or a part of the date missing (without %Y every date falls in 1900). None when it can."""
    if refused := _duckdb_refusal("SELECT try_strptime('', $v)", date_format):
        return refused
    directives = {d[-1] for d in re.findall(r"%-?[A-Za-z]", date_format)}
    missing = [part for part, letters in DATE_PART_DIRECTIVES.items() if not directives & set(letters)]
    if missing:
        return f"'{date_format}' does not read a {' and a '.join(missing)} (e.g. %d/%m/%Y, %Y-%m-%d, %d %B %Y)"
    return None


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

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            found = codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (e.g. utf-8, cp1252, utf-16)") from None
        if not getattr(found, "_is_text_encoding", True):
            raise ValueError(f"{v!r} is not a text encoding (e.g. utf-8, cp1252, utf-16)")
        return v

    @field_validator("footer_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            _python_regex(v)
        return v


def _python_regex(pattern: str) -> None:
    """A regular expression Python's `re` compiles (readers match footers with it); re.error is no ValueError,
    so pydantic would let it escape as a traceback."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression '{pattern}': {exc}") from None


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
        problem = regex_problem(v)
        if problem:
            raise ValueError(f"not a valid regular expression (RE2, as DuckDB runs it): {problem}")
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


TRANSFORM_KEYS = ("split", "extract", "join", "constant")


def _transform_kind(v: Any) -> str | None:
    """A transform's kind is the key it starts with: a misspelt one is then one error, not one per kind."""
    if isinstance(v, dict):
        return next((k for k in TRANSFORM_KEYS if k in v), None)
    return next((k for k in TRANSFORM_KEYS if hasattr(v, k)), None)


Transform = Annotated[
    Annotated[SplitTransform, Tag("split")]
    | Annotated[RegexTransform, Tag("extract")]
    | Annotated[JoinTransform, Tag("join")]
    | Annotated[ConstantTransform, Tag("constant")],
    Discriminator(
        _transform_kind,
        custom_error_type="transform_kind",
        custom_error_message="a transform starts with one of the keys: split, extract, join, constant",
    ),
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
    date_formats: list[str] = Field(default_factory=lambda: ["%d/%m/%Y", "%d-%m-%Y", "%Y-%m-%d"], min_length=1)
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

    @field_validator("date_formats")
    @classmethod
    def _readable_dates(cls, v: list[str]) -> list[str]:
        problems = [problem for f in v if (problem := date_format_problem(f))]
        if problems:
            raise ValueError("; ".join(problems))
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

    @model_validator(mode="after")
    def _each_field_filled_once(self) -> AgencyConfig:
        """A field filled twice keeps one source and silently drops the other (mapping takes the column over an
        extract, split or join, the first transform over a later one; a constant overrides the column)."""
        sources: dict[str, list[str]] = {name: [f"columns.{name}"] for name in self.columns}
        if self.record_id:
            sources.setdefault("source_record_id", []).append("record_id")
        for i, t in enumerate(self.transforms):
            for name in t.targets():
                sources.setdefault(name, []).append(f"transforms.{i} ({_transform_kind(t)})")
        twice = [f"{name} is filled by {' and by '.join(by)}" for name, by in sources.items() if len(by) > 1]
        if twice:
            raise ValueError("; ".join(twice) + ": only one of them would be used; keep one")
        return self

    @model_validator(mode="after")
    def _values_are_codes(self) -> AgencyConfig:
        """A value map of a coded field must give codes of its code list: any other value would be matched
        again as free text, and a typo (PPP2) would be a warning on every row instead of a refusal here."""
        from pipelines.schema import codelist_codes, load_schema

        schema = load_schema()
        problems = []
        for name, value_map in self.values.items():
            codelist = schema.field(name).codelist
            if not codelist:
                continue
            codes = codelist_codes(codelist)
            wrong = sorted({v for v in value_map.values() if v not in codes})
            if wrong:
                shown = ", ".join(sorted(codes)[:30]) + (", ..." if len(codes) > 30 else "")
                problems.append(f"values.{name}: {wrong} not codes of the code list {codelist!r} ({shown})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


SCHEMA = ("Skema", "schema")
AGENCY_MAPPING = ("Pemetaan lembaga", "agency mapping")
CONFIGURATION = ("Konfigurasi", "configuration")


def config_error(path: Path | str, *problems: str, what: tuple[str, str] = CONFIGURATION) -> ConfigError:
    """Every configuration error in one form: a bilingual lead naming what is wrong and the file, then each
    problem on a line of its own (pydantic's details stay in English)."""
    lead = f"{what[0]} tidak valid / Invalid {what[1]}: {path}"
    return ConfigError("\n".join([lead, *(f"  - {p}" for p in problems)]))


def _where(loc: tuple, raw: Any) -> str:
    """pydantic's location of an error, with a list item named by its `name` when it has one (a schema field)."""
    parts: list[str] = []
    node = raw
    for step in loc:
        if isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            node = node[step]
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(name if isinstance(name, str) else str(step))
        else:
            node = node.get(step) if isinstance(node, dict) else None
            parts.append(str(step))
    return ".".join(parts)


def validation_problems(err: ValidationError, raw: Any) -> list[str]:
    """One line per pydantic error: where, what was expected, and the value given when it is a plain one
    (pydantic's own `[type=..., input_value=...]` is the part that named it)."""
    lines = []
    for e in err.errors():
        message = str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"]
        given = e.get("input")
        if e["type"] not in ("value_error", "missing") and isinstance(given, str | int | float | bool):
            message += f" (given: {given!r})"
        where = _where(e["loc"], raw)
        lines += [f"{where}: {line}" if where else line for line in message.splitlines()]
    return lines


def agency_code_of(path: Path) -> str:
    """The agency a mapping file is named for: `<code>.yaml`, or `<code>.draft.yaml` for a draft."""
    for suffix in (DRAFT_SUFFIX, MAPPING_SUFFIX):
        if path.name.endswith(suffix):
            return path.name.removesuffix(suffix)
    return path.stem


def load_agency_file(path: Path, code: str | None = None) -> AgencyConfig:
    """One agency's mapping, validated. `code`: the agency it must be, whatever the file is called (a draft
    tried with `sdmi agency check --mapping`); by default the file's name says which."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        found = type(raw).__name__
        raise config_error(path, f"isinya harus pemetaan (kunci: nilai), bukan {found} / "
                                 f"expected a mapping (key: value) at the top level, found {found}")  # fmt: skip
    expected = code or agency_code_of(path)
    raw.setdefault("agency", expected)
    if raw["agency"] != expected:
        given = raw["agency"]
        if code:
            raise config_error(path, f"kunci 'agency' adalah {given!r}, bukan {code!r} seperti --agency / "
                                     f"key 'agency' is {given!r}, not {code!r} as --agency says")  # fmt: skip
        raise config_error(path, f"kunci 'agency' adalah {given!r} tetapi berkas bernama {path.name!r} / "
                                 f"key 'agency' is {given!r} but the file is named {path.name!r}")  # fmt: skip
    try:
        return AgencyConfig.model_validate({**raw, "source_file": str(path)})
    except ValidationError as exc:
        raise config_error(path, *validation_problems(exc, raw), what=AGENCY_MAPPING) from None


def is_draft(path: Path) -> bool:
    return path.name.lower().endswith((DRAFT_SUFFIX, ".draft.yml"))


def _misnamed(path: Path) -> bool:
    """A mapping the loader would pass over without a word (`.yml`, `.YAML`): the agency would not be onboarded."""
    return path.name.lower().endswith((".yml", ".yaml")) and not path.name.endswith(MAPPING_SUFFIX)


@cache
def _load_all(directory: str) -> dict[str, AgencyConfig]:
    folder = Path(directory)
    if not folder.is_dir():
        return {}
    # hidden files (macOS's `._x.yaml`, an editor's lock) are no mapping, as in the inbox
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and not is_draft(p))
    misnamed = [p for p in files if _misnamed(p)]
    if misnamed:
        problems = [
            f"{p.name}: pemetaan lembaga harus berakhiran .yaml, ganti nama menjadi {p.stem}.yaml / an agency mapping "
            f"must end in .yaml: rename it to {p.stem}.yaml (as it is, the agency is not onboarded)"
            for p in misnamed
        ]
        raise config_error(folder, *problems, what=AGENCY_MAPPING)
    return {agency_code_of(p): load_agency_file(p) for p in files if p.name.endswith(MAPPING_SUFFIX)}


def agencies(directory: Path | None = None) -> dict[str, AgencyConfig]:
    return _load_all(str(directory or settings.AGENCIES_DIR))


def agency(code: str, directory: Path | None = None) -> AgencyConfig:
    known = agencies(directory)
    if code not in known:
        folder = directory or settings.AGENCIES_DIR
        draft = folder / f"{code}{DRAFT_SUFFIX}"
        finish = (
            f" Draf {draft.name} ada: selesaikan, lalu ganti nama menjadi {code}.yaml." if draft.exists() else "",
            f" A draft {draft.name} exists: finish it, then rename it to {code}.yaml." if draft.exists() else "",
        )
        listed = ", ".join(sorted(known)) or "-"
        raise ConfigError(
            f"Lembaga {code!r} belum terdaftar: tidak ada {code}.yaml di {folder} (terdaftar: {listed}).{finish[0]} / "
            f"Agency {code!r} is not onboarded: no {code}.yaml in {folder} (known: {listed}).{finish[1]}"
        )
    return known[code]

"""The shared schema (`schemas/placement.yaml`): loaded once, validated, and the source of every field list."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines import settings
from pipelines.problems import Bilingual, ConfigError


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


def load_schema_file(path: Path) -> PlacementSchema:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        schema = PlacementSchema.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: invalid schema: {exc}") from None
    names = schema.names()
    if len(names) != len(set(names)):
        raise ConfigError(f"{path}: duplicate field names")
    return schema


@cache
def load_schema() -> PlacementSchema:
    return load_schema_file(settings.SCHEMAS_DIR / "placement.yaml")

"""The vocabulary of things that go wrong, shared by every stage.

A whole file that cannot be taken is a `FileRejected`; a row that cannot be taken is a row issue
(a record in the issues table: source_row, rule_id, severity, field, value, message_id, message_en).
Messages are always in Indonesian and English because agency officers read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

CRITICAL = "critical"
WARNING = "warning"

ISSUE_SCHEMA = pa.schema(
    [
        ("source_row", pa.int64()),
        ("rule_id", pa.string()),
        ("severity", pa.string()),
        ("field", pa.string()),
        ("value", pa.string()),
        ("message_id", pa.string()),
        ("message_en", pa.string()),
    ]
)


@dataclass(frozen=True)
class Bilingual:
    id: str
    en: str

    def __str__(self) -> str:
        return f"{self.id} / {self.en}"


class FileRejected(Exception):
    """The whole file cannot be taken; `code` is stable, the message is for the agency officer."""

    def __init__(self, code: str, message_id: str, message_en: str) -> None:
        super().__init__(f"{code}: {message_en}")
        self.code = code
        self.message = Bilingual(message_id, message_en)


class ConfigError(Exception):
    """A configuration file (schema, agency mapping, code list) is wrong; names the file and the key."""

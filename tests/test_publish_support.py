"""Fixtures for the publish tests: synthetic staged batches written exactly as the staging stage writes them.

Rows are generated in DuckDB SQL (so the large benchmark fixture is quick to make) and cast to the
published Arrow schema; nothing here is real personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import AgencyConfig
from pipelines.problems import ISSUE_SCHEMA
from pipelines.publish import BatchRef
from pipelines.schema import load_schema
from pipelines.settings import Zones

CODELISTS = {
    "countries": [
        ("HKG", "Hong Kong", "Hong Kong"),
        ("TWN", "Taiwan", "Taiwan"),
        ("MYS", "Malaysia", "Malaysia"),
        ("SGP", "Singapura", "Singapore"),
        ("SAU", "Arab Saudi", "Saudi Arabia"),
        ("JPN", "Jepang", "Japan"),
        ("KOR", "Korea Selatan", "South Korea"),
    ],
    "provinces": [
        ("32", "Jawa Barat", "West Java"),
        ("33", "Jawa Tengah", "Central Java"),
        ("35", "Jawa Timur", "East Java"),
        ("52", "Nusa Tenggara Barat", "West Nusa Tenggara"),
        ("61", "Kalimantan Barat", "West Kalimantan"),
    ],
    "regencies": [
        ("3201", "Kab. Bogor", "Bogor Regency"),
        ("3301", "Kab. Cilacap", "Cilacap Regency"),
        ("3501", "Kab. Pacitan", "Pacitan Regency"),
        ("5201", "Kab. Lombok Barat", "West Lombok"),
        ("6101", "Kab. Sambas", "Sambas Regency"),
    ],
    "occupations": [
        ("5322", "Pekerja perawatan pribadi", "Home-based personal care workers"),
        ("9111", "Pembantu rumah tangga", "Domestic cleaners and helpers"),
        ("7212", "Tukang las", "Welders"),
        ("6111", "Petani", "Field crop growers"),
        ("8322", "Pengemudi", "Car drivers"),
    ],
    "education_levels": [
        ("SD", "SD", "Primary"),
        ("SMP", "SMP", "Lower secondary"),
        ("SMA", "SMA", "Upper secondary"),
        ("S1", "S1", "Bachelor"),
    ],
    "marital_status": [("BK", "Belum kawin", "Single"), ("K", "Kawin", "Married"), ("CH", "Cerai hidup", "Divorced")],
    "sectors": [("formal", "Formal", "Formal"), ("informal", "Informal", "Informal")],
    "placement_schemes": [
        ("P2P", "P to P", "Private to private"),
        ("G2G", "G to G", "Government to government"),
        ("MANDIRI", "Perseorangan", "Individual"),
    ],
    "sex": [("F", "Perempuan", "Female"), ("M", "Laki-laki", "Male")],
}

# SQL fragments indexed by i (the placement number) so that two agencies reporting the same i agree.
_COUNTRIES = "['HKG','TWN','MYS','SGP','SAU','JPN','KOR']"
_PROVINCES = "['32','33','35','52','61']"
_OCCUPATIONS = "['5322','9111','7212','6111','8322']"


def write_codelists(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in CODELISTS.items():
        lines = ["code,name_id,name_en,variants"] + [f'{c},"{i}","{e}",' for c, i, e in rows]
        (directory / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def agencies() -> dict[str, AgencyConfig]:
    def cfg(code: str, kind: str, priority: int) -> AgencyConfig:
        return AgencyConfig(agency=code, name=code.upper(), kind=kind, priority=priority, columns={"nik": ["nik"]})

    return {
        "bp2mi": cfg("bp2mi", "national", 1),
        "disnaker_jatim": cfg("disnaker_jatim", "provincial", 5),
        "kbri_hk": cfg("kbri_hk", "mission", 9),
    }


def synth_sql(
    agency: str,
    batch_id: str,
    n: int,
    *,
    start: int = 0,
    step: int = 1,
    day_shift: int = 0,
    overrides: dict[str, str] | None = None,
) -> str:
    """SELECT of `n` synthetic accepted rows: placement i = start + k*step, cast to the published schema."""
    exprs = {
        "record_key": f"'{agency}:' || i::VARCHAR",
        "source_agency": f"'{agency}'",
        "source_record_id": "i::VARCHAR",
        "source_file_sha256": f"sha256('{batch_id}')",
        "source_row": "k + 2",
        "batch_id": f"'{batch_id}'",
        "ingested_at": "TIMESTAMPTZ '2025-01-15 03:00:00+00'",
        "worker_key": "sha256('worker-' || i::VARCHAR)",
        "document_key": "CAST('0x' || left(sha256('passport-' || i::VARCHAR), 15) AS BIGINT)",
        "sex": "CASE WHEN i % 7 < 4 THEN 'F' ELSE 'M' END",
        "birth_year": "1980 + i % 20",
        "age_at_departure": "25 + i % 20",
        "education_level": "['SD','SMP','SMA','S1'][i % 4 + 1]",
        "marital_status": "['BK','K','CH'][i % 3 + 1]",
        "origin_province_code": f"{_PROVINCES}[i % 5 + 1]",
        "origin_regency_code": "[ '3201','3301','3501','5201','6101'][i % 5 + 1]",
        "destination_country": f"{_COUNTRIES}[(i // 5) % 7 + 1]",
        "occupation_title": "'pekerja'",
        "occupation_code": f"{_OCCUPATIONS}[i % 5 + 1]",
        "sector": "CASE WHEN i % 5 < 3 THEN 'informal' ELSE 'formal' END",
        "placement_scheme": "['P2P','P2P','P2P','G2G','MANDIRI'][i % 5 + 1]",
        "recruitment_agency": "'PT CONTOH ' || (i % 50)::VARCHAR",
        "departure_date": f"DATE '2022-01-01' + ((i * 37) % 1000)::INTEGER + {day_shift}",
        "contract_months": "24",
        "quality_flags": "NULL",
    }
    exprs.update(overrides or {})
    cols = ", ".join(f"CAST({exprs[f.name]} AS {f.sql_type}) AS {f.name}" for f in load_schema().published_fields())
    return f"SELECT {cols} FROM (SELECT k, {start} + k * {step} AS i FROM range({n}) t(k))"


def stage(zones: Zones, batch_id: str, select_sql: str, issues: pa.Table | None = None) -> int:
    """Write `staging/<batch_id>/accepted.parquet` (and issues.parquet) like the staging stage; returns rows."""
    folder = zones.staging / batch_id
    folder.mkdir(parents=True, exist_ok=True)
    table = duckdb.sql(select_sql).arrow()
    if not isinstance(table, pa.Table):
        table = table.read_all()
    table = table.cast(load_schema().arrow_schema(published_only=True))
    pq.write_table(table, folder / "accepted.parquet")
    pq.write_table(issues if issues is not None else ISSUE_SCHEMA.empty_table(), folder / "issues.parquet")
    return table.num_rows


def issues(rows: Sequence[tuple[int, str, str, str]]) -> pa.Table:
    """Issue rows (source_row, rule_id, severity, field); values and messages are synthetic."""
    return pa.table(
        {
            "source_row": [r[0] for r in rows],
            "rule_id": [r[1] for r in rows],
            "severity": [r[2] for r in rows],
            "field": [r[3] for r in rows],
            "value": ["x"] * len(rows),
            "message_id": ["pesan"] * len(rows),
            "message_en": ["message"] * len(rows),
        },
        schema=ISSUE_SCHEMA,
    )


class Ledger:
    """Stages batches and keeps the BatchRef list the lead's ledger would pass to publish()."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones
        self.batches: list[BatchRef] = []

    def add(
        self,
        agency: str,
        select_sql: str | None = None,
        *,
        n: int = 100,
        status: str = "processed",
        quarantined: int = 0,
        warned: int = 0,
        issue_rows: pa.Table | None = None,
        **synth: object,
    ) -> BatchRef:
        seq = len(self.batches) + 1
        batch_id = f"b{seq:04d}-{agency}"
        rows = stage(self.zones, batch_id, select_sql or synth_sql(agency, batch_id, n, **synth), issue_rows)
        ref = BatchRef(
            batch_id=batch_id,
            agency=agency,
            sha256=f"{seq:064x}",
            file_name=f"{agency}_{seq}.csv",
            received_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=seq),
            seq=seq,
            status=status,
            rows_read=rows + quarantined,
            rows_accepted=rows,
            rows_quarantined=quarantined,
            rows_warned=warned,
        )
        self.batches.append(ref)
        return ref


@pytest.fixture
def zones(tmp_path: Path) -> Zones:
    return Zones(tmp_path / "sdmi").ensure()


@pytest.fixture
def codelists(tmp_path: Path) -> Path:
    return write_codelists(tmp_path / "codelists")


@pytest.fixture
def ledger(zones: Zones) -> Ledger:
    return Ledger(zones)

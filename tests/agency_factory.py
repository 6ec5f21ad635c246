"""A small, valid agency mapping for tests that need one; each test overrides what it is about."""

from __future__ import annotations

from pipelines.config import AgencyConfig


def agency_config(**overrides: object) -> AgencyConfig:
    base: dict = {
        "agency": "test_agency",
        "name": "Test",
        "kind": "district",
        "priority": 9,
        "columns": {"nik": ["NIK"], "destination_country": ["Negara"], "departure_date": ["Tgl"]},
    }
    return AgencyConfig.model_validate({**base, **overrides})

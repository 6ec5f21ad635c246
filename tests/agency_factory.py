"""Shared test helpers: a small, valid agency mapping (each test overrides what it is about), and one file
processed as a run processes it."""

from __future__ import annotations

from pathlib import Path

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


def process_dropped(home: Path, key_file: Path, agency: str, name: str, content: bytes):
    """`content` dropped as `inbox/<agency>/<name>` and taken as `sdmi run` takes it: claimed, then processed.
    Returns the zones, the file's ledger entry after processing, and the outcome."""
    from pipelines import config, inbox
    from pipelines.keys import load_secret
    from pipelines.ledger import Ledger
    from pipelines.process import process_file
    from pipelines.settings import Zones

    zones = Zones(home).ensure()
    ledger = Ledger(zones.ledger_db)
    path = zones.inbox / agency / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    claim = inbox.claim(zones, ledger, agency, path)
    outcome = process_file(zones, ledger, claim.entry, config.agency(agency), load_secret(key_file))
    return zones, ledger.get(claim.entry.sha256), outcome

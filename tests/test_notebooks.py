"""The analyst notebooks run top to bottom against a warehouse built by the publish stage."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
import test_publish_support as support
from nbclient import NotebookClient
from test_publish_support import Ledger, agencies

from pipelines import settings
from pipelines.publish import publish

NOTEBOOKS = sorted((settings.PROJECT_DIR / "notebooks").glob("*.py"))


codelists = support.codelists  # fixture
ledger = support.ledger  # fixture
zones = support.zones  # fixture


@pytest.fixture
def warehouse(zones, ledger: Ledger, codelists: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ledger.add("bp2mi", n=300)
    ledger.add("disnaker_jatim", n=60, step=5, day_shift=4, overrides={"sector": "'formal'"})
    ledger.add("kbri_hk", n=40, start=2000)
    assert publish(zones, ledger.batches, agencies(), codelists_dir=codelists).switched
    monkeypatch.setenv("SDMI_WAREHOUSE", str(zones.analyst_db))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return zones.analyst_db


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_without_error(warehouse: Path, path: Path, tmp_path: Path):
    nb = jupytext.read(path)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert len(NOTEBOOKS) >= 2


def _first_output(path: Path, cwd: Path) -> str:
    """The text of the notebook's first code cell that shows a result: its headline."""
    nb = jupytext.read(path)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return next(
        o["data"]["text/plain"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "execute_result"
    )


def test_the_overview_counts_a_worker_known_by_nik_and_by_passport_alone_once(
    zones, ledger: Ledger, codelists: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """Twenty workers known by NIK; the mission later reports five of them again with only their passport
    (another placement, 400 days on): 25 placements of 20 workers."""
    ledger.add("bp2mi", n=20)
    ledger.add("kbri_hk", n=5, day_shift=400, overrides={"worker_key": "sha256('passport-' || i::VARCHAR)"})
    assert publish(zones, ledger.batches, agencies(), codelists_dir=codelists).switched
    monkeypatch.setenv("SDMI_WAREHOUSE", str(zones.analyst_db))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    headline = _first_output(settings.PROJECT_DIR / "notebooks" / "01_placements_overview.py", tmp_path)
    header, row = headline.splitlines()
    assert header.split() == ["placements", "workers"] and row.split()[1:] == ["25", "20"]

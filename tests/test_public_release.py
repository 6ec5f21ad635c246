"""Open data: aggregates only, small cells suppressed, and no suppressed cell recoverable from the margins."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import test_publish_support as support
from test_publish_support import agencies

from pipelines.publish import TOTAL, publish, suppress

Cell = tuple[str, str]


codelists = support.codelists  # fixture
ledger = support.ledger  # fixture
zones = support.zones  # fixture


def attack(cells: dict[Cell, int | None]) -> dict[Cell, int]:
    """Recover suppressed cells the way an attacker with the published table would: in every row and column
    (margins included) with exactly one unknown cell, margin minus visible cells gives it; repeat."""
    known = {c: v for c, v in cells.items() if v is not None}
    rows: dict[str, list[Cell]] = {}
    cols: dict[str, list[Cell]] = {}
    for c in cells:
        rows.setdefault(c[0], []).append(c)
        cols.setdefault(c[1], []).append(c)
    recovered: dict[Cell, int] = {}
    progress = True
    while progress:
        progress = False
        for line, axis in [(v, 1) for v in rows.values()] + [(v, 0) for v in cols.values()]:
            unknown = [c for c in line if c not in known]
            if len(unknown) != 1:
                continue
            margin = next((c for c in line if c[axis] == TOTAL), None)
            if margin is None:
                continue
            target = unknown[0]
            interior = sum(known[c] for c in line if c != margin and c != target)
            known[target] = interior if target == margin else known[margin] - interior
            recovered[target] = known[target]
            progress = True
    return recovered


def with_margins(interior: dict[Cell, int]) -> dict[Cell, int]:
    cells: dict[Cell, int] = {}
    for (r, c), n in interior.items():
        for cell in ((r, c), (r, TOTAL), (TOTAL, c), (TOTAL, TOTAL)):
            cells[cell] = cells.get(cell, 0) + n
    return cells


@pytest.mark.parametrize("seed", range(40))
def test_suppression_resists_recovery_on_random_tables(seed):
    rnd = random.Random(seed)
    interior = {
        (f"r{i}", f"c{j}"): rnd.choice([1, 2, 3, 5, 8, 12, 20, 40, 200])
        for i in range(rnd.randint(1, 7))
        for j in range(rnd.randint(1, 5))
        if rnd.random() < 0.8
    }
    if not interior:
        return
    cells = with_margins(interior)
    hidden = suppress(cells, 10)
    assert all(c in hidden for c, n in cells.items() if 0 < n < 10)  # primary
    published = {c: (None if c in hidden else n) for c, n in cells.items()}
    assert attack(published) == {}


def test_threshold_is_configurable():
    cells = with_margins({("a", "x"): 4, ("a", "y"): 30, ("b", "x"): 30, ("b", "y"): 30})
    assert suppress(cells, 3) == {}
    hidden = suppress(cells, 5)
    assert hidden[("a", "x")] == "primary" and len(hidden) >= 4  # a row and a column need a partner each


def read_public(path: Path, meta: dict) -> dict[tuple, dict[Cell, int | None]]:
    pages: dict[tuple, dict[Cell, int | None]] = {}
    with path.open(encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            page = tuple(rec[d] for d in meta["page"])
            value = None if rec["placements"] == "" else int(rec["placements"])
            assert (value is None) == (rec["suppressed"] == "true")
            pages.setdefault(page, {})[(rec[meta["row"]], rec[meta["col"]])] = value
    return pages


@pytest.mark.parametrize("threshold", [10, 25])
def test_published_tables_suppress_small_cells_and_resist_recovery(zones, ledger, codelists, threshold):
    rare = (
        "CASE WHEN i % 97 = 0 THEN '61' WHEN i % 31 = 0 THEN '52' WHEN i % 13 = 0 THEN '35' "
        "WHEN i % 2 = 0 THEN '32' ELSE '33' END"
    )
    ledger.add(
        "bp2mi",
        n=1500,
        overrides={"origin_province_code": rare, "occupation_code": "CASE WHEN i % 41 = 0 THEN '7212' ELSE '9111' END"},
    )
    result = publish(zones, ledger.batches, agencies(), codelists_dir=codelists, suppress_below=threshold)
    assert result.switched, result.reason
    release = zones.current.resolve()
    manifest = json.loads((release / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["public"]) >= {
        "placements_by_month_destination",
        "placements_by_year_province_sex",
        "placements_by_year_sector_sex",
        "placements_by_year_occupation",
    }
    suppressed_somewhere = 0
    for name, meta in manifest["public"].items():
        assert (release / "public" / f"{name}.parquet").is_file()
        header = (release / "public" / f"{name}.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
        assert "worker_key" not in header and "record_key" not in header  # aggregates only
        for page, cells in read_public(release / "public" / f"{name}.csv", meta).items():
            visible = [v for v in cells.values() if v is not None]
            assert all(v >= threshold for v in visible), (name, page)
            assert attack(cells) == {}, (name, page)
            suppressed_somewhere += sum(v is None for v in cells.values())
            # margins are consistent with the visible interior wherever nothing is hidden
            if all(v is not None for v in cells.values()):
                assert cells[(TOTAL, TOTAL)] == sum(v for (r, c), v in cells.items() if TOTAL not in (r, c))
    assert suppressed_somewhere > 0  # the fixture does exercise suppression

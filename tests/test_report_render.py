"""The report page as a real browser shows it: headless Chromium renders, screenshots and prints it.

Chromium comes from the Debian package `chromium`. Where it is missing the fixture installs it when running as
root (apt-get, with a timeout); where that is impossible the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.problems import ISSUE_SCHEMA, Bilingual
from pipelines.report import HTML_NAME, FileReport, write_report

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT_S = 900
BROWSER_TIMEOUT_S = 120
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path to a Chromium binary, installing the Debian package once if we can."""
    found = _find_chromium()
    if found:
        return found
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        for cmd in (["apt-get", "update"], install):
            subprocess.run(cmd, check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium could not be installed with apt-get: {exc}")
    found = _find_chromium()
    if not found:
        pytest.skip("apt-get installed chromium but no chromium binary is on PATH")
    return found


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run with a fresh profile, so runs never share state or lock each other out."""
    with tempfile.TemporaryDirectory(prefix="sdmi-chromium-") as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=BROWSER_TIMEOUT_S,
            check=False,
        )


@pytest.fixture
def report_page(tmp_path: Path) -> Iterator[Path]:
    """A partly accepted file with rejected rows, warnings and a hostile file name."""
    n = 1234
    rows = pa.table(
        {
            "No Reg": [f"REG-{i}" for i in range(n)],
            "NIK": [f"32010101019{i:05d}" for i in range(n)],
            "Negara Tujuan": ["Hong Kong"] * n,
            "_source_row": list(range(2, n + 2)),
        }
    )
    issues = pa.Table.from_pylist(
        [
            {
                "source_row": r,
                "rule_id": "departure_date.range",
                "severity": "critical",
                "field": "departure_date",
                "value": "2099-08-17",
                "message_id": "Tanggal keberangkatan di masa depan.",
                "message_en": "Departure date is in the future.",
            }
            for r in [*range(12, 16), 40, *range(100, 157)]
        ],
        schema=ISSUE_SCHEMA,
    )
    report = FileReport(
        agency="bp2mi",
        agency_name="Badan Pelindungan Pekerja Migran Indonesia",
        file_name="Penempatan <script>alert(1)</script> Agustus.xlsx",
        sha256="ab" * 32,
        received_at=datetime(2024, 8, 20, 3, 5, tzinfo=UTC),
        status="processed",
        rows_read=n,
        rows_accepted=n - 62,
        rows_quarantined=62,
        rows_warned=7,
        warnings=[Bilingual("2 baris catatan kaki diabaikan.", "2 footer rows dropped.")],
    )
    hints = {"departure_date.range": Bilingual("Periksa tahun keberangkatan.", "Check the departure year.")}
    paths = write_report(tmp_path / "reports", report, issues, rows, {"NIK"}, hints)
    yield next(p for p in paths if p.name == HTML_NAME)


def test_report_page_renders_to_a_non_trivial_screenshot(chromium: str, report_page: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    result = run_chromium(chromium, f"--screenshot={png}", "--window-size=1200,1600", report_page.as_uri())
    assert png.exists(), result.stderr[-2000:]
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_rendered_dom_shows_the_row_counts(chromium: str, report_page: Path) -> None:
    result = run_chromium(chromium, "--dump-dom", report_page.as_uri())
    dom = result.stdout
    assert 'id="rows-read">1\u202f234<' in dom, result.stderr[-2000:]
    assert 'id="rows-accepted">1\u202f172<' in dom
    assert 'id="rows-quarantined">62<' in dom
    assert 'id="rows-warned">7<' in dom
    assert "<script>alert(1)</script>" not in dom  # the file name stayed text, never became an element


def test_report_page_prints_to_pdf(chromium: str, report_page: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    result = run_chromium(chromium, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", report_page.as_uri())
    assert pdf.exists(), result.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000

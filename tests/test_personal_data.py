"""No direct identifier leaves the restricted zones, and the secret key behind `worker_key` leaks nowhere.

One real `sdmi run` (subprocess) over a demo inbox; then every NIK, name and passport number the generator
wrote is searched for in everything the pipeline writes outside raw/, staging/, the inbox and the agencies'
own rejected_rows files: the warehouse (DuckDB tables read column by column as text, Parquet as rows and as
bytes), reports and their GX Data Docs, the ledger, the run's stdout/stderr, Prefect's home and database, and
the temporary directory the run used. The scanner is shown to catch a planted identifier in each kind of file.
"""

from __future__ import annotations

import codecs
import csv
import html
import io
import json
import os
import re
import shutil
import stat
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from chaos.harness import base_env, drop, inbox_files, prefect_api_url, run_sdmi

from pipelines import demo
from pipelines.keys import create_key_file
from pipelines.settings import CODELISTS_DIR

ROWS = 1500
RESTRICTED_DIRS = ("raw", "staging", "inbox", "secrets")  # zones DESIGN.md marks restricted, and the key
RESTRICTED_FILES = re.compile(r"^rejected_rows\.(csv|xlsx)$")  # the agency's own copy of its rejected rows

_DIGITS = re.compile(r"(?<!\d)\d{9,20}(?!\d)")
_PASSPORT = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]\d{7}(?!\d)")
# Words are runs of letters and digits: random text (base64 keys, ids) spells a short name such as "eka" between
# two digits now and then, and "3eka9" is one word here, never a name.
_WORD = re.compile(r"[^\W_]+(?:['’`][^\W_]+)*")


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text).replace("’", "'").replace("`", "'").casefold()


@dataclass
class Finding:
    where: str
    kind: str
    value_hint: str  # never the value itself: first two characters and the length

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} {self.value_hint}"


class Scanner:
    """Finds identifiers in text by tokenising, not by 4,000 substring searches: digit runs, passport-shaped
    tokens, and runs of 1-5 words compared with the set of names (case, accents' encoding and apostrophe
    style normalised). Values found in the public code lists (schemas/codelists) are ignored: a one-word
    name that is also a regency's name is reference data, not a leak."""

    def __init__(self, identifiers: Iterable[str], secrets: Iterable[str] = ()) -> None:
        ids = set(identifiers)
        self.numbers = {i for i in ids if i.isdigit()}
        self.passports = {i.upper() for i in ids if re.fullmatch(r"[A-Za-z]\d{7}", i)}
        names = {_norm(i) for i in ids - self.numbers - {i for i in ids if re.fullmatch(r"[A-Za-z]\d{7}", i)}}
        public = _norm(" ".join(p.read_text(encoding="utf-8") for p in CODELISTS_DIR.glob("*.csv")))
        public_words = set(_WORD.findall(public))
        self.names = {n for n in names if not (" " not in n and n in public_words)}
        self.longest = max((n.count(" ") + 1 for n in self.names), default=1)
        self.first_words = {n.split(" ", 1)[0] for n in self.names}
        self.secrets = [s for s in secrets if s]

    def text(self, text: str, where: str, shortest_name: int = 0) -> list[Finding]:
        """`shortest_name`: names shorter than this are not looked for (random bytes spell "Eka" now and then)."""
        found: list[Finding] = []
        variants = {text, html.unescape(text)}
        if "\\u" in text or "\\x" in text:
            variants.add(codecs.decode(text.encode("utf-8", "backslashreplace"), "unicode_escape", "replace"))
        for t in variants:
            for m in _DIGITS.findall(t):
                if m in self.numbers:
                    found.append(Finding(where, "NIK", f"{m[:2]}…({len(m)})"))
            for m in _PASSPORT.findall(t):
                if m.upper() in self.passports:
                    found.append(Finding(where, "passport", f"{m[:2]}…({len(m)})"))
            words = _WORD.findall(_norm(t))
            for i, word in enumerate(words):
                if word not in self.first_words:
                    continue
                for n in range(1, self.longest + 1):
                    candidate = " ".join(words[i : i + n])
                    if candidate in self.names and len(candidate) >= shortest_name:
                        found.append(Finding(where, "name", f"{candidate[:2]}…({len(candidate)})"))
            found += [Finding(where, "secret key", "(key material)") for s in self.secrets if s in t]
        return found

    def file(self, path: Path, label: str) -> list[Finding]:
        """Any file: DuckDB by its tables, Parquet as rows and as bytes, zip members, everything as bytes."""
        found: list[Finding] = []
        raw = path.read_bytes()
        if raw.startswith(b"\x00\x00\x00\x00") or path.suffix == ".duckdb" or raw[8:12] == b"DUCK":
            found += self.duckdb(path, label)
        if path.suffix == ".parquet":
            found += self.rows(duckdb.sql("SELECT * FROM read_parquet($p)", params={"p": str(path)}).fetchall(), label)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    found += self.text(z.read(member).decode("utf-8", "replace"), f"{label}!{member}")
        decoded = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8", "replace")
        # Compressed bytes spell a short one-word name by chance (a release's record_placement.parquet once held
        # "eka" between two non-letters). Such a file's rows or members are read above in full; in its bytes,
        # only names of 6 characters and more are looked for.
        compressed = path.suffix in (".parquet", ".duckdb") or zipfile.is_zipfile(path)
        found += self.text(decoded, label, shortest_name=6 if compressed else 0)
        return found

    def duckdb(self, path: Path, label: str) -> list[Finding]:
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error:
            return []  # not a DuckDB file after all (the byte scan still runs)
        found: list[Finding] = []
        try:
            for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                cols = [r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()]
                for col in cols:
                    values = con.execute(f'SELECT DISTINCT CAST("{col}" AS VARCHAR) FROM "{table}"').fetchall()
                    found += self.rows(values, f"{label}:{table}.{col}")
        finally:
            con.close()
        return found

    def rows(self, rows: Iterable[tuple], label: str) -> list[Finding]:
        return self.text("\n".join(" | ".join("" if v is None else str(v) for v in r) for r in rows), label)


def shared_files(root: Path, restricted: bool = True) -> Iterator[Path]:
    """Every regular file under `root` except the restricted zones (symlinks are followed via their target)."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if restricted and rel and rel[0] in RESTRICTED_DIRS:
            continue
        if RESTRICTED_FILES.match(path.name) or path.is_symlink() or not path.is_file():
            continue
        yield path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("personal")
    source = root / "source"
    truth = demo.generate(source, seed=31, rows=ROWS)
    key = create_key_file(root / "secrets" / "worker.key")
    home = root / "home"
    drop(source, home, inbox_files(source))
    _drop_damaged_files(source, home)
    run_tmp = root / "tmp"
    run_tmp.mkdir()
    env = base_env(prefect_api_url(), prefect_harness, TMPDIR=str(run_tmp))
    done = run_sdmi(home, key, env)
    assert done.normal, done.stderr[-1500:]
    (root / "logs").mkdir()
    (root / "logs" / "stdout.txt").write_text(done.stdout, encoding="utf-8")
    (root / "logs" / "stderr.txt").write_text(done.stderr, encoding="utf-8")
    scanner = Scanner(truth.identifiers, secrets=[key.read_text().strip()])
    return root, home, key, truth, scanner


def _drop_damaged_files(source: Path, home: Path) -> None:
    """Files whose damage puts a worker's values where a column name or a record should be: a national export
    without its header row (its first record read as the header), one with identifiers typed into other columns
    (quoted columns, published free-text columns, the record number, a row shifted by a field) and a KBRI file
    with a record written as an array of values. All are reported to the agency; none may quote those values or
    publish them."""
    national = sorted((source / "bp2mi_siskop2mi").glob("*.csv"))[0]
    lines = national.read_text(encoding="utf-8").splitlines(keepends=True)
    (home / "inbox" / "bp2mi_siskop2mi" / "tanpa_judul_kolom.csv").write_text("".join(lines[1:11]), encoding="utf-8")
    rows = list(csv.reader(io.StringIO("".join(lines[:21]))))
    header = rows[0]
    for row in rows[1:4]:  # a worker's own name and passport typed into the education and marital columns
        row[header.index("Pendidikan")] = row[header.index("Nama")]
        row[header.index("Status Perkawinan")] = row[header.index("No Paspor")]
    for row in rows[1:]:
        row[0] = row[0].replace("REG-", "MIS-")  # records of their own, superseding none of the demo's
    rows[4][header.index("Jabatan")] = rows[4][header.index("Nama")]  # a name in a published free-text column
    rows[5][0] = rows[5][header.index("NIK")]  # the NIK as the agency's record number (published as the record's id)
    rows[6][header.index("Nama P3MI")] = "PT " + rows[6][header.index("No Paspor")]
    rows[7].insert(2, "")  # one field too many: the passport lands under sex, the birth date under education
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    (home / "inbox" / "bp2mi_siskop2mi" / "kolom_tertukar.csv").write_text(out.getvalue(), encoding="utf-8")
    kbri = next((source / "kbri_kuala_lumpur").glob("*.json"))
    records = json.loads(kbri.read_text(encoding="utf-8"))["data"][:3]
    worker = records[2]["pekerja"]
    array_record = [records[2]["no_lapor"], worker["nama"], worker["nik"], worker["paspor"], worker["tanggal_lahir"]]
    damaged = {"sumber": "KBRI", "data": [records[0], array_record, records[1]]}
    (home / "inbox" / "kbri_kuala_lumpur" / "rekaman_larik.json").write_text(json.dumps(damaged), encoding="utf-8")


def _prefect_database_dir() -> Path:
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    return Path(url.split(":///", 1)[1]).parent


def test_the_scanner_sees_every_kind_of_identifier_the_demo_wrote(demo_run):
    *_, truth, scanner = demo_run
    assert len(scanner.numbers) > 1000 and len(scanner.passports) > 1000 and len(scanner.names) > 500
    assert len(truth.identifiers) == len(scanner.numbers) + len(scanner.passports) + sum(
        1 for i in truth.identifiers if not i.isdigit() and not re.fullmatch(r"[A-Za-z]\d{7}", i)
    )


def test_no_identifier_or_key_in_anything_written_outside_the_restricted_zones(demo_run, prefect_harness):
    root, home, _, _, scanner = demo_run
    places: list[tuple[str, Path, bool]] = [
        ("SDMI_HOME", home, True),
        ("logs", root / "logs", False),
        ("TMPDIR", root / "tmp", False),
        ("PREFECT_HOME", prefect_harness, False),
        ("Prefect database", _prefect_database_dir(), False),
    ]
    findings: list[Finding] = []
    scanned = 0
    for label, folder, restricted in places:
        for path in shared_files(folder, restricted):
            scanned += 1
            findings += scanner.file(path, f"{label}/{path.relative_to(folder)}")
    assert scanned > 30
    assert [str(f) for f in findings[:20]] == [], f"{len(findings)} finding(s)"


def test_the_warehouse_and_reports_were_scanned_not_skipped(demo_run):
    _, home, *_ = demo_run
    shared = {p.relative_to(home).parts[0] for p in shared_files(home)}
    assert {"warehouse", "reports", "state"} <= shared
    assert list((home / "warehouse").rglob("*.duckdb")) and list((home / "warehouse").rglob("*.parquet"))
    assert list((home / "reports").rglob("index.html"))


def test_the_damaged_files_were_reported_to_their_agencies(demo_run):
    """The scan above covers them only if they reached the ledger and the reports as problems."""
    _, home, *_ = demo_run
    headerless = json.loads(next((home / "reports").glob("*/*_tanpa_judul_kolom.csv_*/report.json")).read_text("utf-8"))
    assert headerless["status"] == "rejected" and "no header row" in json.dumps(headerless)
    array = next((home / "reports").glob("*/*_rekaman_larik.json_*"))
    assert json.loads((array / "report.json").read_text("utf-8"))["rows_quarantined"] == 1
    assert "read.not_an_object" in (array / "index.html").read_text("utf-8")
    swapped = next((home / "reports").glob("*/*_kolom_tertukar.csv_*"))
    assert "harmonise.unknown_code.education_level" in (swapped / "index.html").read_text("utf-8")


def test_every_report_with_rejected_rows_says_they_are_the_agencys_restricted_copy(demo_run):
    _, home, *_ = demo_run
    folders = [p.parent for p in (home / "reports").rglob("rejected_rows.csv")]
    assert folders
    for folder in folders:
        page = (folder / "index.html").read_text(encoding="utf-8")
        assert "Personal data — restricted" in page and "Data pribadi — terbatas" in page, folder


@pytest.mark.parametrize("kind", ["nik", "name", "passport"])
@pytest.mark.parametrize("where", ["duckdb", "parquet", "html", "sqlite", "log"])
def test_the_scan_catches_an_identifier_planted_in_a_copy(kind, where, demo_run, tmp_path):
    """Proof the scan can fail: one identifier planted in a copy of a file the pipeline wrote."""
    _, home, _, truth, scanner = demo_run
    pick = {
        "nik": lambda i: re.fullmatch(r"\d{16}", i),
        "passport": lambda i: re.fullmatch(r"[A-Z]\d{7}", i),
        "name": lambda i: " " in i,
    }[kind]
    value = sorted(i for i in truth.identifiers if pick(i))[0]
    current = home / "warehouse" / "current"
    if where == "duckdb":
        target = tmp_path / "copy.duckdb"
        shutil.copyfile(current / "sdmi.duckdb", target)
        os.chmod(target, 0o644)
        con = duckdb.connect(str(target))
        con.execute("UPDATE agencies SET name = ? WHERE code = (SELECT min(code) FROM agencies)", [value])
        con.close()
    elif where == "parquet":
        target = tmp_path / "copy.parquet"
        duckdb.sql(
            f"COPY (SELECT * REPLACE ($v AS name) FROM read_parquet($p)) TO '{target}' (FORMAT parquet)",
            params={"v": value, "p": str(next((current / "parquet" / "agencies").glob("*.parquet")))},
        )
    elif where == "html":
        page = next((home / "reports").rglob("index.html"))
        target = tmp_path / "index.html"
        target.write_text(page.read_text(encoding="utf-8").replace("</h1>", f" {html.escape(value)}</h1>", 1))
    elif where == "sqlite":
        import sqlite3

        target = tmp_path / "copy.sqlite"
        shutil.copyfile(home / "state" / "ledger.sqlite", target)
        con = sqlite3.connect(target)
        con.execute("UPDATE files SET reason_en = ? WHERE seq = 1", (f"bad value {value}",))
        con.commit()
        con.close()
    else:
        target = tmp_path / "run.log"
        target.write_text(f"INFO processing row {{'nama': {value.upper()!r}}}\n", encoding="utf-8")
    findings = scanner.file(target, where)
    assert findings, f"planted {kind} not found in {where}"


# ------------------------------------------------------------------------------------- the key itself


@pytest.fixture
def idle_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "inbox").mkdir(parents=True)
    return home


def _refused(result, *phrases: str, secret: str | None = None) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 3, (result.returncode, out[-800:])
    assert "Traceback" not in out
    for phrase in phrases:
        assert phrase in " ".join(out.split()), out[-800:]
    if secret:
        assert secret not in out and secret[:12] not in out


def test_sdmi_run_without_a_key_refuses_to_start(idle_home, prefect_harness):
    done = run_sdmi(idle_home, None, base_env(None, prefect_harness), timeout=120)
    _refused(done, "no secret key", "SDMI_KEY_FILE")


def test_sdmi_run_with_a_key_readable_by_others_refuses_and_never_prints_it(idle_home, key_file, prefect_harness):
    os.chmod(key_file, 0o644)
    assert key_file.stat().st_mode & stat.S_IROTH
    done = run_sdmi(idle_home, key_file, base_env(None, prefect_harness), timeout=120)
    _refused(done, "readable by others", "chmod 600", secret=key_file.read_text().strip())


def test_sdmi_run_with_the_key_named_twice_differently_refuses(idle_home, key_file, tmp_path, prefect_harness):
    other = create_key_file(tmp_path / "other.key")
    env = base_env(None, prefect_harness, SDMI_KEY_FILE=str(other))
    done = run_sdmi(idle_home, key_file, env, timeout=120)
    _refused(done, "given twice", secret=key_file.read_text().strip())
    assert other.read_text().strip() not in done.stdout + done.stderr


def test_sdmi_run_refuses_a_key_passed_in_the_environment_without_echoing_it(idle_home, key_file, prefect_harness):
    secret = "f" * 64
    env = base_env(None, prefect_harness, SDMI_KEY=secret)
    done = run_sdmi(idle_home, key_file, env, timeout=120)
    _refused(done, "SDMI_KEY is not supported", secret=secret)

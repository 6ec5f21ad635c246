"""The demo data generator: deterministic, realistic in the ways the pipeline relies on, and honest truth.

The files are read back here with plain pandas/openpyxl/json (not the pipeline's readers), so these tests
check what an agency officer would see in the files.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from pipelines import demo
from pipelines.config import load_agency_file
from pipelines.demo import DemoTruth, generate

AGENCY_DIR = Path(__file__).resolve().parent.parent / "schemas" / "agencies"
ROWS = 20_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoTruth]:
    directory = tmp_path_factory.mktemp("demo")
    return directory, generate(directory, seed=7, rows=ROWS)


# ------------------------------------------------------------------------------------------ reading back
_MONTHS = {m.lower(): i + 1 for i, m in enumerate(demo.MONTHS_ID)} | {
    m.lower(): i + 1 for i, m in enumerate(demo.MONTHS_ID_ABBR)
}
_ISO = {name.lower(): d[0] for d in demo.DESTINATIONS for name in d[4:7]} | {"hongkong": "HKG"}


def _date(value: object) -> date | None:
    """Parse the dates the demo writes; None where the date does not exist (the deliberate errors)."""
    if isinstance(value, datetime):
        return value.date()
    text = str(value or "").strip()
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    parts = text.split()
    if len(parts) == 3 and parts[1].lower() in _MONTHS:
        try:
            return date(int(parts[2]), _MONTHS[parts[1].lower()], int(parts[0]))
        except ValueError:
            return None
    return None


def _regency_codes() -> dict[str, str]:
    out = {}
    for regs in demo.REGENCIES.values():
        for code, name, city, _ in regs:
            out[("KOTA " if city else "KAB. ") + name.upper()] = code
    return out


def _frame(agency: str, file: str, first_row: int, cols: dict[str, list]) -> pd.DataFrame:
    df = pd.DataFrame(cols)
    df.insert(0, "source_row", range(first_row, first_row + len(df)))
    df.insert(0, "file", file)
    df.insert(0, "agency", agency)
    return df


def load(directory: Path) -> pd.DataFrame:
    """Every data row of every file, in one frame of common columns."""
    frames = []
    for path in sorted((directory / "bp2mi_siskop2mi").iterdir()):
        d = pd.read_csv(path, dtype=str, keep_default_na=False)
        frames.append(_frame("bp2mi_siskop2mi", path.name, 2, {
            "nik": d["NIK"], "name": d["Nama"], "passport": d["No Paspor"],
            "sex": d["Jenis Kelamin"].map({"L": "M", "P": "F"}), "birth": d["Tanggal Lahir"].map(_date),
            "regency": d["Kabupaten/Kota"], "country": d["Negara Tujuan"],
            "departure": d["Tanggal Berangkat"],
        }))  # fmt: skip
    path = next((directory / "bp3mi_jatim").iterdir())
    rows = list(openpyxl.load_workbook(path, read_only=True).active.iter_rows(values_only=True))
    header = list(rows[3])
    data = [dict(zip(header, r, strict=True)) for r in rows[4:-1]]
    frames.append(_frame("bp3mi_jatim", path.name, 5, {
        "nik": [r["NIK"] or "" for r in data], "name": [r["Nama PMI"] for r in data],
        "passport": [r["No. Paspor"] or "" for r in data],
        "sex": [{"Laki-laki": "M", "Perempuan": "F"}[r["Jenis Kelamin"]] for r in data],
        "birth": [_date(r["Tgl. Lahir"]) for r in data], "regency": [r["Kab/Kota Asal"] for r in data],
        "country": [r["Negara Penempatan"] for r in data], "departure": [r["Tgl Berangkat"] for r in data],
    }))  # fmt: skip
    path = next((directory / "p3mi_mitra_sejahtera").iterdir())
    d = pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    frames.append(_frame("p3mi_mitra_sejahtera", path.name, 2, {
        "nik": d["National ID"], "name": d["Full Name"], "passport": d["Passport No"],
        "sex": d["Gender"].map({"Male": "M", "Female": "F"}), "birth": d["Date of Birth"].map(_date),
        "regency": d["Home Regency"], "country": d["Destination"], "departure": d["Departure Date"],
    }))  # fmt: skip
    path = next((directory / "disnaker_kab_cilacap").iterdir())
    d = pd.read_csv(path, sep="\t", encoding="utf-16", dtype=str, keep_default_na=False)
    frames.append(_frame("disnaker_kab_cilacap", path.name, 2, {
        "nik": d["NIK"], "name": d["Nama"], "passport": "", "sex": d["L/P"].map({"L": "M", "P": "F"}),
        "birth": d["Tempat, Tgl Lahir"].str.split(", ").str[1].map(_date), "regency": "KAB. CILACAP",
        "country": d["Negara Tujuan"], "departure": d["Tgl Berangkat"],
    }))  # fmt: skip
    path = next((directory / "kbri_kuala_lumpur").iterdir())
    recs = json.loads(path.read_text(encoding="utf-8"))["data"]
    frames.append(_frame("kbri_kuala_lumpur", path.name, 1, {
        "nik": [r["pekerja"]["nik"] or "" for r in recs], "name": [r["pekerja"]["nama"] for r in recs],
        "passport": [r["pekerja"]["paspor"] or "" for r in recs],
        "sex": [{"L": "M", "P": "F"}[r["pekerja"]["jenis_kelamin"]] for r in recs],
        "birth": [_date(r["pekerja"]["tanggal_lahir"]) for r in recs],
        "regency": [r["pekerja"]["kabupaten_asal"] for r in recs], "country": "Malaysia",
        "departure": [r["penempatan"]["tanggal_berangkat"] for r in recs],
    }))  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    df["iso"] = df["country"].str.lower().map(_ISO)
    df["dep"] = df["departure"].map(_date)
    df["regency_code"] = df["regency"].str.upper().str.replace("KABUPATEN ", "KAB. ").map(_regency_codes())
    return df


def _clean(df: pd.DataFrame, truth: DemoTruth) -> pd.DataFrame:
    broken = {(b["file"], b["source_row"]) for b in truth.broken}
    return df[[k not in broken for k in zip(df["file"], df["source_row"], strict=True)]]


# ------------------------------------------------------------------------------------------ tests
def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=11, rows=3000)
    generate(tmp_path / "b", seed=11, rows=3000)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 6
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)
    xlsx = next((tmp_path / "a" / "bp3mi_jatim").iterdir())
    with zipfile.ZipFile(xlsx) as z:  # no clock time inside: runs seconds or days apart give the same bytes
        assert {i.date_time for i in z.infolist()} == {demo.FIXED_TIME.timetuple()[:6]}
        stamps = re.findall(rb">(\d{4}-\d\d-\d\dT[^<]*)<", z.read("docProps/core.xml"))
    assert stamps and set(stamps) == {demo.FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()}


def test_every_agency_yaml_validates() -> None:
    configs = [load_agency_file(AGENCY_DIR / f"{code}.yaml") for code in demo.AGENCIES]
    assert [c.agency for c in configs] == demo.AGENCIES
    assert len({c.priority for c in configs}) == 5
    assert {c.kind for c in configs} == {
        "national",
        "provincial",
        "recruitment_company",
        "district",
        "mission",
    }


def test_agency_yaml_aliases_find_the_demo_headers(dataset: tuple[Path, DemoTruth]) -> None:
    from pipelines.mapping import expected_headers, map_batch
    from pipelines.readers import read_file

    directory, truth = dataset
    for key, rows in truth.rows_by_file.items():
        agency, name = key.split("/")
        cfg = load_agency_file(AGENCY_DIR / f"{agency}.yaml")
        read = read_file(directory / agency / name, cfg.read, expected_headers(cfg))
        mapped = map_batch(read, cfg)
        assert read.table.num_rows == rows, key
        assert set(mapped.unmatched_headers) <= {"No", "penempatan.negara_bagian"}, key
        assert {"departure_date", "destination_country", "sex", "full_name"} <= set(mapped.table.column_names)


def test_about_61_percent_women(dataset: tuple[Path, DemoTruth]) -> None:
    df = load(dataset[0])
    assert len(df) == ROWS
    assert abs((df["sex"] == "F").mean() - 0.61) <= 0.03


def test_nik_encodes_birth_date_sex_and_region(dataset: tuple[Path, DemoTruth]) -> None:
    df = _clean(load(dataset[0]), dataset[1])
    df = df[df["nik"].str.len() == 16]  # workers registered with a passport only have no NIK
    assert len(df) > 0.8 * ROWS
    births = pd.to_datetime(df["birth"])
    day = births.dt.day + 40 * (df["sex"] == "F")
    expected = day.map("{:02d}".format) + births.dt.strftime("%m%y")
    assert (df["nik"].str[6:12] == expected).all()
    assert (df["nik"].str[:4] == df["regency_code"]).all()
    assert df["regency_code"].notna().all()


def test_top_destinations_rank_like_bp2mi(dataset: tuple[Path, DemoTruth]) -> None:
    counts = Counter(load(dataset[0])["iso"].dropna())
    ranked = [iso for iso, _ in counts.most_common()]
    assert ranked[:3] == ["HKG", "TWN", "MYS"]
    assert set(ranked[:7]) == {"HKG", "TWN", "MYS", "JPN", "SGP", "KOR", "SAU"}
    assert ranked.index("ITA") > 6


def test_p3mi_file_is_windows_1252(dataset: tuple[Path, DemoTruth]) -> None:
    raw = next((dataset[0] / "p3mi_mitra_sejahtera").iterdir()).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("cp1252")
    assert text.startswith("Worker ID;National ID;") and ("’" in text or "é" in text)


def test_truth_row_counts_match_the_files(dataset: tuple[Path, DemoTruth]) -> None:
    directory, truth = dataset
    read = load(directory).groupby(["agency", "file"]).size()
    assert {f"{a}/{f}": n for (a, f), n in read.items()} == truth.rows_by_file
    assert sum(truth.rows_by_file.values()) == truth.rows == ROWS


def test_truth_overlaps_are_niks_in_two_agencies(dataset: tuple[Path, DemoTruth]) -> None:
    df = load(dataset[0])
    df = df[df["nik"].str.len() == 16]
    agencies_per_nik = df.groupby("nik")["agency"].nunique()
    assert int((agencies_per_nik == 2).sum()) == dataset[1].overlaps == round(ROWS * demo.OVERLAP_SHARE)
    assert (agencies_per_nik <= 2).all()


def test_broken_rows_show_their_error_and_clean_rows_none(dataset: tuple[Path, DemoTruth]) -> None:
    directory, truth = dataset
    df = load(directory).set_index(["file", "source_row"])
    kinds = Counter(b["kind"] for b in truth.broken)
    assert set(kinds) == set(demo.EXPECTED_RULES) and abs(len(truth.broken) / ROWS - 0.03) < 0.005

    def age(r: pd.Series) -> int:
        b, d = r["birth"], r["dep"]
        return d.year - b.year - ((d.month, d.day) < (b.month, b.day))

    for b in truth.broken:
        r = df.loc[(b["file"], b["source_row"])]
        assert b["expected_rule"] == demo.EXPECTED_RULES[b["kind"]]
        check = {
            "unknown_country": lambda r: pd.isna(r["iso"]) and r["country"] in demo.UNKNOWN_COUNTRIES,
            "missing_worker_key": lambda r: r["nik"] == "" and r["passport"] == "",
            "nik_15_digits": lambda r: len(r["nik"]) == 15 and r["nik"].isdigit(),
            "underage": lambda r: 16 <= age(r) < 18,
            "impossible_date": lambda r: r["dep"] is None and str(r["departure"]).strip() != "",
        }[b["kind"]]
        assert check(r), b
    clean = _clean(df.reset_index(), truth)
    assert clean["iso"].notna().all() and clean["dep"].notna().all()
    assert ((clean["nik"].str.len() == 16) | (clean["passport"].str.len() == 8)).all()
    assert (clean.apply(age, axis=1) >= 18).all()


def test_identifiers_cover_every_nik_name_and_passport(dataset: tuple[Path, DemoTruth]) -> None:
    directory, truth = dataset
    df = load(directory)
    written = set(df["nik"]) | set(df["name"]) | set(df["passport"])
    assert written - {""} <= truth.identifiers

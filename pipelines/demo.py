"""Synthetic demo data: five agencies' files of PMI placements, with known overlaps and known errors.

Why: the pipeline needs realistic input to be exercised end to end (odd layouts, encodings, dates, spellings,
duplicates between agencies, broken rows) without touching anyone's personal data. Every NIK, name and
passport number here is made up; the distributions follow BP2MI's published 2024 figures so that the
warehouse's aggregates look plausible. `generate` also returns the truth (what is broken where, which
identifiers were written) so tests can check the pipeline's verdicts and scan its outputs for leaks.

Everything is vectorised (numpy for sampling, Arrow for strings, pyarrow.csv for writing), so
`rows=1_000_000` takes seconds. The one XLSX agency (bp3mi_jatim) is capped at `XLSX_MAX_ROWS` rows because
openpyxl writes cell by cell; East Java placements over the cap are reported through SISKOP2MI instead.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from openpyxl.cell import WriteOnlyCell

XLSX_MAX_ROWS = 10_000  # openpyxl writes cell by cell (~50k cells/s): the XLSX agency stays small
FIXED_TIME = datetime(2025, 11, 3, 8, 0, 0)  # inside XLSX metadata and zip entries: byte-identical files
DEPARTURE_FIRST = np.datetime64("2023-01-01")
DEPARTURE_LAST = np.datetime64("2025-10-31")
SISKOP_SPLIT = np.datetime64("2024-07-01")  # SISKOP2MI exports: 2023-01..2024-06 and 2024-07..2025-10
OVERLAP_SHARE = 0.02  # placements reported by SISKOP2MI and by a second agency
REDROP_SHARE = 0.005  # SISKOP2MI records sent again, corrected, in the later export
BROKEN_SHARE = 0.03

# ----------------------------------------------------------------------------------------- reference data
# Destinations, BP2MI 2024 placements. Columns: ISO alpha-3, placements, share of women, job profile,
# BP2MI's Indonesian name, English name (P3MI files), a careless district-office spelling.
DESTINATIONS: list[tuple[str, int, float, str, str, str, str]] = [
    ("HKG", 99_773, 0.97, "HKG", "Hong Kong", "Hong Kong", "Hongkong"),
    ("TWN", 84_581, 0.47, "TWN", "Taiwan", "Taiwan", "Taiwan R.O.C"),
    ("MYS", 51_723, 0.30, "MYS", "Malaysia", "Malaysia", "Malaysia"),
    ("JPN", 12_720, 0.40, "JPN", "Jepang", "Japan", "Jepang"),
    ("SGP", 10_819, 0.95, "SGP", "Singapura", "Singapore", "Singapore"),
    ("KOR", 10_750, 0.05, "KOR", "Korea Selatan", "South Korea", "Korsel"),
    ("SAU", 7_759, 0.85, "SAU", "Arab Saudi", "Saudi Arabia", "Saudi"),
    ("ITA", 3_535, 0.15, "SEA", "Italia", "Italy", "Italia"),
    ("BRN", 3_183, 0.50, "OTH", "Brunei Darussalam", "Brunei", "Brunei"),
    ("TUR", 2_630, 0.60, "OTH", "Turki", "Turkey", "Turki"),
    ("POL", 1_950, 0.20, "EUR", "Polandia", "Poland", "Polandia"),
    ("ARE", 1_480, 0.70, "ME", "Uni Emirat Arab", "United Arab Emirates", "Uni Emirat Arab"),
    ("ZMB", 820, 0.20, "OTH", "Zambia", "Zambia", "Zambia"),
    ("QAT", 760, 0.60, "ME", "Qatar", "Qatar", "Qatar"),
    ("KWT", 650, 0.80, "ME", "Kuwait", "Kuwait", "Kuwait"),
    ("MDV", 610, 0.30, "OTH", "Maladewa", "Maldives", "Maladewa"),
    ("PNG", 540, 0.15, "OTH", "Papua Nugini", "Papua New Guinea", "Papua Nugini"),
    ("HUN", 500, 0.25, "EUR", "Hongaria", "Hungary", "Hongaria"),
    ("SVK", 450, 0.25, "EUR", "Slowakia", "Slovakia", "Slowakia"),
    ("ROU", 420, 0.25, "EUR", "Rumania", "Romania", "Rumania"),
    ("HRV", 400, 0.25, "EUR", "Kroasia", "Croatia", "Kroasia"),
    ("NZL", 380, 0.30, "OTH", "Selandia Baru", "New Zealand", "Selandia Baru"),
    ("SLB", 300, 0.15, "OTH", "Kepulauan Solomon", "Solomon Islands", "Kepulauan Solomon"),
    ("BGR", 280, 0.25, "EUR", "Bulgaria", "Bulgaria", "Bulgaria"),
    ("DMA", 250, 0.30, "OTH", "Dominika", "Dominica", "Dominika"),
    ("OMN", 240, 0.70, "ME", "Oman", "Oman", "Oman"),
    ("BHR", 200, 0.70, "ME", "Bahrain", "Bahrain", "Bahrain"),
    ("AUS", 180, 0.40, "OTH", "Australia", "Australia", "Australia"),
    ("DEU", 170, 0.50, "EUR", "Jerman", "Germany", "Jerman"),
    ("USA", 160, 0.40, "SEA", "Amerika Serikat", "United States", "Amerika Serikat"),
    ("NLD", 140, 0.30, "EUR", "Belanda", "Netherlands", "Belanda"),
    ("FJI", 120, 0.20, "OTH", "Fiji", "Fiji", "Fiji"),
    ("MAC", 110, 0.90, "HKG", "Makau", "Macau", "Makau"),
    ("ESP", 100, 0.20, "SEA", "Spanyol", "Spain", "Spanyol"),
    ("GBR", 90, 0.30, "EUR", "Inggris", "United Kingdom", "Inggris"),
]
# Spellings no code list knows (an agency writing a region for a country): the 'unknown country' errors.
UNKNOWN_COUNTRIES = ["Timur Tengah", "Eropa", "Negeri Jiran", "Asia Pasifik", "Luar Negeri"]

# Provinces of origin (Kemendagri code, name, 2024 placements) and their regencies
# (Kemendagri code, name without KAB./KOTA, is_city, relative weight within the province).
PROVINCES: list[tuple[str, str, int]] = [
    ("35", "JAWA TIMUR", 79_001),
    ("33", "JAWA TENGAH", 66_297),
    ("32", "JAWA BARAT", 61_236),
    ("52", "NUSA TENGGARA BARAT", 30_342),
    ("18", "LAMPUNG", 25_016),
    ("12", "SUMATERA UTARA", 11_000),
    ("36", "BANTEN", 5_500),
    ("51", "BALI", 5_200),
    ("53", "NUSA TENGGARA TIMUR", 3_500),
    ("73", "SULAWESI SELATAN", 3_000),
    ("34", "DI YOGYAKARTA", 2_000),
    ("61", "KALIMANTAN BARAT", 1_800),
]


def _kabs(prov: str, names: str, boosts: dict[str, float] | None = None) -> list[tuple[str, str, bool, float]]:
    """Regencies numbered 01.. in the order given (Kemendagri order); cities start at 71."""
    out = []
    boosts = boosts or {}
    kab_no, city_no = 1, 71
    for raw in names.split(","):
        name = raw.strip()
        city = name.startswith("Kota ")
        bare = name.removeprefix("Kota ")
        if city:
            code, city_no = f"{prov}{city_no:02d}", city_no + 1
        else:
            code, kab_no = f"{prov}{kab_no:02d}", kab_no + 1
        out.append((code, bare, city, boosts.get(name, 0.3 if city else 1.0)))
    return out


REGENCIES: dict[str, list[tuple[str, str, bool, float]]] = {
    "35": _kabs(
        "35",
        "Pacitan, Ponorogo, Trenggalek, Tulungagung, Blitar, Kediri, Malang, Lumajang, Jember, Banyuwangi,"
        " Bondowoso, Situbondo, Probolinggo, Pasuruan, Sidoarjo, Mojokerto, Jombang, Nganjuk, Madiun,"
        " Magetan,"
        " Ngawi, Bojonegoro, Tuban, Lamongan, Gresik, Bangkalan, Sampang, Pamekasan, Sumenep, Kota Kediri,"
        " Kota Blitar, Kota Malang, Kota Probolinggo, Kota Pasuruan, Kota Mojokerto, Kota Madiun,"
        " Kota Surabaya, Kota Batu",
        {
            "Ponorogo": 3,
            "Blitar": 3,
            "Malang": 4,
            "Tulungagung": 3,
            "Banyuwangi": 3,
            "Kediri": 2,
            "Jember": 2,
            "Madiun": 2,
            "Trenggalek": 1.5,
            "Lamongan": 1.5,
            "Kota Surabaya": 0.6,
        },
    ),
    "33": _kabs(
        "33",
        "Cilacap, Banyumas, Purbalingga, Banjarnegara, Kebumen, Purworejo, Wonosobo, Magelang, Boyolali,"
        " Klaten, Sukoharjo, Wonogiri, Karanganyar, Sragen, Grobogan, Blora, Rembang, Pati, Kudus, Jepara,"
        " Demak, Semarang, Temanggung, Kendal, Batang, Pekalongan, Pemalang, Tegal, Brebes, Kota Magelang,"
        " Kota Surakarta, Kota Salatiga, Kota Semarang, Kota Pekalongan, Kota Tegal",
        {
            "Cilacap": 5,
            "Kendal": 3,
            "Brebes": 2.5,
            "Pati": 2,
            "Banyumas": 2,
            "Grobogan": 2,
            "Kebumen": 1.5,
            "Wonosobo": 1.5,
        },
    ),
    "32": _kabs(
        "32",
        "Bogor, Sukabumi, Cianjur, Bandung, Garut, Tasikmalaya, Ciamis, Kuningan, Cirebon, Majalengka,"
        " Sumedang, Indramayu, Subang, Purwakarta, Karawang, Bekasi, Bandung Barat, Pangandaran, Kota Bogor,"
        " Kota Sukabumi, Kota Bandung, Kota Cirebon, Kota Bekasi, Kota Depok, Kota Cimahi,"
        " Kota Tasikmalaya, Kota Banjar",
        {
            "Indramayu": 6,
            "Cirebon": 4,
            "Cianjur": 2,
            "Subang": 2.5,
            "Karawang": 2,
            "Majalengka": 2,
            "Sukabumi": 1.5,
        },
    ),
    "52": _kabs(
        "52",
        "Lombok Barat, Lombok Tengah, Lombok Timur, Sumbawa, Dompu, Bima, Sumbawa Barat, Lombok Utara,"
        " Kota Mataram, Kota Bima",
        {
            "Lombok Timur": 5,
            "Lombok Tengah": 4,
            "Lombok Barat": 2,
            "Dompu": 0.5,
            "Bima": 0.5,
            "Sumbawa Barat": 0.3,
        },
    ),
    "18": _kabs(
        "18",
        "Lampung Selatan, Lampung Tengah, Lampung Utara, Lampung Barat, Tulang Bawang, Tanggamus,"
        " Lampung Timur, Way Kanan, Pesawaran, Pringsewu, Mesuji, Tulang Bawang Barat, Pesisir Barat,"
        " Kota Bandar Lampung, Kota Metro",
        {"Lampung Timur": 4, "Lampung Tengah": 3, "Lampung Selatan": 2},
    ),
    "12": _kabs(
        "12",
        "Tapanuli Tengah, Tapanuli Utara, Tapanuli Selatan, Nias, Langkat, Karo, Deli Serdang, Simalungun,"
        " Asahan, Labuhanbatu, Dairi, Toba, Mandailing Natal, Kota Medan",
        {"Deli Serdang": 3, "Asahan": 2.5, "Langkat": 2, "Simalungun": 1.5, "Labuhanbatu": 1.5},
    ),
    "36": _kabs(
        "36",
        "Pandeglang, Lebak, Tangerang, Serang, Kota Tangerang, Kota Cilegon, Kota Serang",
        {"Serang": 2, "Tangerang": 2},
    ),
    "51": _kabs(
        "51",
        "Jembrana, Tabanan, Badung, Gianyar, Klungkung, Bangli, Karangasem, Buleleng, Kota Denpasar",
        {"Buleleng": 2, "Karangasem": 1.5},
    ),
    "53": _kabs(
        "53",
        "Kupang, Timor Tengah Selatan, Timor Tengah Utara, Belu, Alor, Flores Timur, Sikka, Ende, Ngada,"
        " Manggarai, Sumba Timur, Sumba Barat, Lembata, Kota Kupang",
        {"Flores Timur": 2, "Timor Tengah Selatan": 1.5},
    ),
    "73": _kabs(
        "73",
        "Kepulauan Selayar, Bulukumba, Bantaeng, Jeneponto, Takalar, Gowa, Sinjai",
        {"Bulukumba": 1.5, "Jeneponto": 1.5},
    ),
    "34": _kabs("34", "Kulon Progo, Bantul, Gunungkidul, Sleman, Kota Yogyakarta", {"Gunungkidul": 1.5}),
    "61": _kabs("61", "Sambas, Mempawah, Sanggau, Ketapang, Sintang, Kapuas Hulu", {"Sambas": 2.5}),
}
CILACAP = "3301"

# Job titles as BP2MI reports them; True where the job is in the informal (household) sector.
JOBS: list[tuple[str, bool]] = [
    ("House Maid", True),
    ("Caregiver", True),
    ("Worker", False),
    ("Plantation Worker", False),
    ("Domestic Worker", True),
    ("Construction Worker", False),
    ("Operator Production", False),
    ("Manufacturing Worker", False),
    ("Housekeeper And Family Cook", True),
    ("Fisherman", False),
    ("Elderly Caretaker (Informal)", True),
    ("Baby Sitter (Informal)", True),
    ("General Worker", False),
    ("Harvester", False),
]
_J = {name: i for i, (name, _) in enumerate(JOBS)}
# (profile, female) -> job mix. Hong Kong, Taiwan, Saudi: domestic and care; Malaysia: plantation and
# factories; Korea: manufacturing and fishing; Japan: care (formal there) and manufacturing.
JOB_MIX: dict[tuple[str, bool], dict[str, float]] = {
    ("HKG", True): {
        "Domestic Worker": 45,
        "House Maid": 25,
        "Caregiver": 12,
        "Baby Sitter (Informal)": 8,
        "Elderly Caretaker (Informal)": 6,
        "Housekeeper And Family Cook": 4,
    },
    ("HKG", False): {"Domestic Worker": 40, "Worker": 30, "General Worker": 30},
    ("TWN", True): {
        "Caregiver": 55,
        "Elderly Caretaker (Informal)": 15,
        "House Maid": 15,
        "Operator Production": 10,
        "Manufacturing Worker": 5,
    },
    ("TWN", False): {
        "Operator Production": 35,
        "Manufacturing Worker": 25,
        "Fisherman": 25,
        "Construction Worker": 10,
        "Worker": 5,
    },
    ("MYS", True): {
        "House Maid": 30,
        "Domestic Worker": 15,
        "Operator Production": 30,
        "Plantation Worker": 15,
        "Manufacturing Worker": 10,
    },
    ("MYS", False): {
        "Plantation Worker": 45,
        "Harvester": 15,
        "Construction Worker": 15,
        "General Worker": 10,
        "Manufacturing Worker": 10,
        "Worker": 5,
    },
    ("JPN", True): {"Caregiver": 50, "Manufacturing Worker": 30, "Operator Production": 20},
    ("JPN", False): {
        "Manufacturing Worker": 40,
        "Construction Worker": 25,
        "Fisherman": 15,
        "Operator Production": 20,
    },
    ("SGP", True): {
        "House Maid": 40,
        "Domestic Worker": 35,
        "Caregiver": 10,
        "Baby Sitter (Informal)": 10,
        "Housekeeper And Family Cook": 5,
    },
    ("SGP", False): {"General Worker": 50, "Construction Worker": 50},
    ("KOR", True): {"Manufacturing Worker": 70, "Operator Production": 30},
    ("KOR", False): {"Manufacturing Worker": 60, "Fisherman": 30, "Operator Production": 10},
    ("SAU", True): {"House Maid": 60, "Housekeeper And Family Cook": 20, "Domestic Worker": 20},
    ("SAU", False): {"Worker": 40, "General Worker": 30, "Housekeeper And Family Cook": 30},
    ("ME", True): {"House Maid": 50, "Housekeeper And Family Cook": 20, "Caregiver": 10, "Worker": 20},
    ("ME", False): {"Worker": 50, "General Worker": 30, "Construction Worker": 20},
    ("SEA", True): {"Worker": 70, "General Worker": 30},
    ("SEA", False): {"Fisherman": 60, "Worker": 40},
    ("EUR", True): {"Worker": 40, "Manufacturing Worker": 30, "Caregiver": 30},
    ("EUR", False): {"Worker": 35, "Construction Worker": 25, "Manufacturing Worker": 25, "Harvester": 15},
    ("OTH", True): {"Worker": 40, "House Maid": 30, "General Worker": 30},
    ("OTH", False): {"Worker": 40, "General Worker": 25, "Construction Worker": 20, "Fisherman": 15},
}

EDUCATION = ["SD", "SMP", "SMA", "D3", "S1"]
EDUCATION_P = [0.20, 0.38, 0.33, 0.04, 0.05]
EDUCATION_OLD = ["SD", "SLTP", "SLTA", "D3", "S1"]  # the district office still writes the pre-2003 names
MARITAL = ["Belum Kawin", "Kawin", "Cerai Hidup", "Cerai Mati"]
MARITAL_P = [0.35, 0.45, 0.15, 0.05]
SCHEMES = ["P to P", "G to G", "Mandiri"]  # BP2MI's spellings; P2P / G2G / MANDIRI in the code list
CONTRACTS = [24, 12, 36, 18, 48]
CONTRACTS_P = [0.82, 0.06, 0.08, 0.02, 0.02]
P3MI_NAMES = [
    "PT Sinar Jaya Mandiri",
    "PT Bina Karya Utama",
    "PT Putra Timur Raya",
    "PT Graha Insan Sejahtera",
    "PT Cahaya Andalan Nusantara",
    "PT Maju Bersama Perkasa",
    "PT Amanah Tenaga Mandiri",
    "PT Duta Mandiri Jaya",
    "PT Surya Global Persada",
    "PT Anugerah Karya Bahari",
]
MITRA = "PT Mitra Sejahtera Abadi"  # the recruitment company that sends its own file

# Made-up name parts. A few carry ’ or é, as Indonesian names do (Ma’ruf, Dédé): they exercise encodings.
FEMALE_GIVEN = [
    "Siti",
    "Sri",
    "Dewi",
    "Nur",
    "Ani",
    "Rina",
    "Yuli",
    "Eka",
    "Dwi",
    "Tri",
    "Puji",
    "Indah",
    "Fitri",
    "Lina",
    "Wulan",
    "Ratna",
    "Endang",
    "Sumiati",
    "Suyati",
    "Sulastri",
    "Kartini",
    "Yanti",
    "Rini",
    "Tuti",
    "Ernawati",
    "Nurul",
    "Umi",
    "Lilis",
    "Neng",
    "Euis",
    "Ayu",
    "Putri",
    "Novi",
    "Desi",
    "Eli",
    "Mar’atun",
    "Mu’awanah",
    "Dédé",
    "Nining",
    "Titin",
]
FEMALE_LAST = [
    "Rahayu",
    "Lestari",
    "Wahyuni",
    "Handayani",
    "Susanti",
    "Purwanti",
    "Mulyani",
    "Ningsih",
    "Astuti",
    "Suryani",
    "Wulandari",
    "Kurniasih",
    "Nurhayati",
    "Fatimah",
    "Aminah",
    "Khotimah",
    "Rohmah",
    "Maesaroh",
    "Hasanah",
    "Utami",
    "Sari",
    "Anggraini",
    "Yuliani",
    "Setyaningsih",
    "Solikhah",
    "Mardiyah",
    "Jamilah",
    "Zulaikha",
    "Rofi’ah",
]
MALE_GIVEN = [
    "Agus",
    "Budi",
    "Eko",
    "Joko",
    "Slamet",
    "Ahmad",
    "Muhammad",
    "Heru",
    "Bambang",
    "Dedi",
    "Hendra",
    "Rudi",
    "Wahyu",
    "Andi",
    "Arif",
    "Imam",
    "Rizki",
    "Fajar",
    "Doni",
    "Yusuf",
    "Sutrisno",
    "Sugeng",
    "Teguh",
    "Dédé",
    "André",
    "Ma’ruf",
    "Syafi’i",
    "Dadang",
    "Asep",
    "Ujang",
]
MALE_LAST = [
    "Santoso",
    "Prasetyo",
    "Nugroho",
    "Hidayat",
    "Setiawan",
    "Saputra",
    "Pratama",
    "Kurniawan",
    "Firmansyah",
    "Hariyanto",
    "Supriyadi",
    "Sugiono",
    "Wibowo",
    "Susanto",
    "Haryono",
    "Suyanto",
    "Gunawan",
    "Ramadhan",
    "Hakim",
    "Maulana",
    "Syahputra",
    "Mustofa",
    "Sholeh",
]
BIRTH_PLACES = ["Cilacap"] * 8 + ["Banyumas", "Kebumen", "Brebes", "Jakarta"]
MONTHS_ID = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
]
MONTHS_ID_ABBR = ["Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agt", "Sep", "Okt", "Nov", "Des"]

AGENCIES = [
    "bp2mi_siskop2mi",
    "bp3mi_jatim",
    "p3mi_mitra_sejahtera",
    "disnaker_kab_cilacap",
    "kbri_kuala_lumpur",
]
SISKOP, JATIM, P3MI, CILACAP_AG, KBRI = range(5)

# Broken-row kinds and the rule the pipeline is expected to report.
EXPECTED_RULES = {
    "unknown_country": "harmonise.unknown_code.destination_country",
    "missing_worker_key": "required.worker_key",
    "nik_15_digits": "nik.format",
    "underage": "age.minimum_18",
    "impossible_date": "harmonise.bad_date.departure_date",
}
KINDS = list(EXPECTED_RULES)
KIND_FIELD = {
    "unknown_country": "destination_country",
    "missing_worker_key": "nik",
    "nik_15_digits": "nik",
    "underage": "birth_date",
    "impossible_date": "departure_date",
}
# Which kinds each agency's layout can carry (a mission's destination is a constant; the district office
# keeps no passport, so a 15-digit NIK there would also lose the worker key and blur the expected rule).
AGENCY_KINDS: dict[int, list[str]] = {
    SISKOP: KINDS,
    JATIM: KINDS,
    P3MI: KINDS,
    CILACAP_AG: ["unknown_country", "missing_worker_key", "underage", "impossible_date"],
    KBRI: ["missing_worker_key", "nik_15_digits", "underage", "impossible_date"],
}
IMPOSSIBLE_DAYS = [(31, 2), (30, 2), (31, 4), (31, 6), (31, 9), (31, 11)]


# ----------------------------------------------------------------------------------------- truth
@dataclass
class DemoTruth:
    """What was written: enough to check the pipeline's verdicts and to scan its outputs for leaks."""

    seed: int
    rows: int
    identifiers: set[str] = field(default_factory=set)  # every NIK, full name and passport written
    broken: list[dict] = field(default_factory=list)  # agency, file, source_row, kind, field, expected_rule
    overlaps: int = 0  # placements in SISKOP2MI's export and in a second agency's file
    conflicts: int = 0  # of those, how many differ in one field (resolved by priority downstream)
    superseded: int = 0  # SISKOP2MI records sent again, corrected, in the later export (same record id)
    rows_by_file: dict[str, int] = field(default_factory=dict)  # "<agency>/<file>" -> data rows
    header_rows: dict[str, int] = field(default_factory=dict)  # "<agency>/<file>" -> header row (1-based)

    def to_json(self, path: Path, include_identifiers: bool = False) -> None:
        """Write the truth; identifiers are synthetic but look real, so they are left out unless asked for."""
        doc = {
            "seed": self.seed,
            "rows": self.rows,
            "overlaps": self.overlaps,
            "conflicts": self.conflicts,
            "superseded": self.superseded,
            "rows_by_file": self.rows_by_file,
            "header_rows": self.header_rows,
            "broken": self.broken,
            "expected_rules": EXPECTED_RULES,
        }
        if include_identifiers:
            doc["identifiers"] = sorted(self.identifiers)
        Path(path).write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")


# ----------------------------------------------------------------------------------------- helpers
def _ymd(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day of datetime64[D] values."""
    months = d.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _age(birth: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Completed years between two datetime64[D] arrays, by the calendar."""
    by, bm, bd = _ymd(birth)
    ay, am, ad = _ymd(at)
    return ay - by - ((am * 100 + ad) < (bm * 100 + bd))


def _pick(rng: np.random.Generator, n: int, weights: list[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").clip(0, len(p) - 1)


def _take(values: list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(idx, pa.int64()))


def _text(x: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(x), pa.string())


def _pad(x: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(_text(x), width=width, padding="0")


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _put(arr: pa.Array, mask: np.ndarray, values: pa.Array | list[str]) -> pa.Array:
    """Replace arr where mask holds, with values given for those positions in order."""
    if not mask.any():
        return arr
    full = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)
    full[mask] = values.to_pylist() if isinstance(values, pa.Array) else values
    return pa.array(full, pa.string())


def _strftime(d: np.ndarray, fmt: str) -> pa.Array:
    return pc.strftime(pa.array(d.astype("datetime64[s]")), format=fmt)


def _indonesian_date(d: np.ndarray, rng: np.random.Generator, abbreviated_share: float) -> pa.Array:
    """'5 Agt 2024' or '17 Agustus 2024', day not padded, as typed in a district office."""
    y, m, dd = _ymd(d)
    abbr = rng.random(len(d)) < abbreviated_share
    names = pc.if_else(pa.array(abbr), _take(MONTHS_ID_ABBR, m - 1), _take(MONTHS_ID, m - 1))
    return _join(_text(dd), names, _text(y), sep=" ")


# ----------------------------------------------------------------------------------------- population
@dataclass
class _Population:
    """One row per placement, as codes and numbers; each agency formats its share its own way."""

    n: int
    dest: np.ndarray
    female: np.ndarray
    prov: np.ndarray  # index into PROVINCES
    reg_code: np.ndarray  # int, 4-digit Kemendagri code
    birth: np.ndarray
    dep: np.ndarray
    job: np.ndarray
    scheme: np.ndarray
    edu: np.ndarray
    marital: np.ndarray
    contract: np.ndarray
    p3mi: np.ndarray  # index into P3MI_NAMES; -1 none (G to G, mandiri); -2 the reporting P3MI (MITRA)
    nik: np.ndarray  # int64
    passport: pa.Array
    name: pa.Array
    agency: np.ndarray
    kind: np.ndarray  # index into KINDS, -1 for a clean row


def _regency_tables() -> tuple[np.ndarray, dict[int, tuple[str, bool]]]:
    codes = [int(c) for p, _, _ in PROVINCES for c, _, _, _ in REGENCIES[p]]
    info = {int(c): (name, city) for p, _, _ in PROVINCES for c, name, city, _ in REGENCIES[p]}
    return np.array(codes), info


def _names(rng: np.random.Generator, female: np.ndarray, prov: np.ndarray) -> pa.Array:
    n = len(female)
    parts = _pick(rng, n, [0.12, 0.68, 0.20]) + 1
    given = pc.if_else(
        pa.array(female),
        _take(FEMALE_GIVEN, rng.integers(0, len(FEMALE_GIVEN), n)),
        _take(MALE_GIVEN, rng.integers(0, len(MALE_GIVEN), n)),
    )
    middle = pc.if_else(
        pa.array(female),
        _take(FEMALE_GIVEN, rng.integers(0, len(FEMALE_GIVEN), n)),
        _take(MALE_GIVEN, rng.integers(0, len(MALE_GIVEN), n)),
    )
    last = pc.if_else(
        pa.array(female),
        _take(FEMALE_LAST, rng.integers(0, len(FEMALE_LAST), n)),
        _take(MALE_LAST, rng.integers(0, len(MALE_LAST), n)),
    )
    two = _join(given, last, sep=" ")
    three = _join(given, middle, last, sep=" ")
    name = pc.if_else(pa.array(parts == 1), given, pc.if_else(pa.array(parts == 2), two, three))
    # Sasak names in West Nusa Tenggara: Baiq (women) and Lalu (men).
    ntb = (prov == [p for p, _, _ in PROVINCES].index("52")) & (rng.random(n) < 0.3)
    title = pc.if_else(pa.array(female), pa.scalar("Baiq "), pa.scalar("Lalu "))
    return pc.if_else(pa.array(ntb), _join(title, name), name)


def _passports(rng: np.random.Generator, n: int) -> pa.Array:
    """Letter + 7 digits, unique (a passport is the fallback worker key)."""
    letters = np.array(list("CXEBA"))
    which = _pick(rng, n, [0.45, 0.2, 0.25, 0.05, 0.05])
    number = rng.integers(1_000_000, 10_000_000, n)
    key = which * 10_000_000 + number
    for _ in range(20):
        _, first = np.unique(key, return_index=True)
        dup = np.ones(n, bool)
        dup[first] = False
        if not dup.any():
            break
        key[dup] = which[dup] * 10_000_000 + rng.integers(1_000_000, 10_000_000, int(dup.sum()))
    return _join(_take(list(letters), key // 10_000_000), _text(key % 10_000_000))


def _niks(rng: np.random.Generator, reg_code: np.ndarray, birth: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Region (4) + district (2) + DDMMYY (+40 on the day for women) + serial (4); unique."""
    y, m, d = _ymd(birth)
    district = rng.integers(1, 21, len(birth))
    day = d + 40 * female
    prefix = reg_code * 100 + district
    prefix = ((prefix * 100 + day) * 100 + m) * 100 + y % 100  # 12 digits
    order = np.argsort(prefix, kind="stable")
    sorted_prefix = prefix[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_prefix)) + 1]
    rank = np.arange(len(prefix)) - np.repeat(starts, np.diff(np.r_[starts, len(prefix)]))
    serial = np.empty_like(prefix)
    serial[order] = rank + 1 + (sorted_prefix * 7919) % 40
    return prefix * 10_000 + serial


def _population(rng: np.random.Generator, n: int) -> _Population:
    dest = _pick(rng, n, [w for _, w, *_ in DESTINATIONS])
    female = rng.random(n) < np.array([f for _, _, f, *_ in DESTINATIONS])[dest]
    prov = _pick(rng, n, [w for _, _, w in PROVINCES])
    reg_code = np.zeros(n, np.int64)
    for i, (p, _, _) in enumerate(PROVINCES):
        rows = np.flatnonzero(prov == i)
        regs = REGENCIES[p]
        reg_code[rows] = np.array([int(c) for c, *_ in regs])[_pick(rng, len(rows), [w for *_, w in regs])]

    # Agencies: the district office reports Cilacap, the provincial office part of East Java (capped: XLSX),
    # the embassy part of Malaysia, the P3MI its own P to P placements; SISKOP2MI everything else.
    agency = np.full(n, SISKOP)
    agency[reg_code == int(CILACAP)] = CILACAP_AG
    jatim = np.flatnonzero((prov == 0) & (rng.random(n) < 0.55))[:XLSX_MAX_ROWS]
    agency[jatim] = JATIM
    malaysia = dest == 2
    agency[malaysia & (agency == SISKOP) & (rng.random(n) < 0.35)] = KBRI
    # Small runs still give every agency a file: move a few SISKOP2MI rows over.
    floor = max(3, n // 500)
    for ag in (JATIM, CILACAP_AG, KBRI):
        short = floor - int((agency == ag).sum())
        if short > 0:
            pick = np.flatnonzero(agency == SISKOP)[:short]
            agency[pick] = ag
            if ag == JATIM:
                prov[pick] = 0
                reg_code[pick] = int(REGENCIES["35"][6][0])
            elif ag == CILACAP_AG:
                prov[pick] = 1
                reg_code[pick] = int(CILACAP)
            else:
                dest[pick] = 2

    profile = np.array([d[3] for d in DESTINATIONS])[dest]
    job = np.zeros(n, np.int64)
    for (prof, fem), mix in JOB_MIX.items():
        rows = np.flatnonzero((profile == prof) & (female == fem))
        choice = _pick(rng, len(rows), list(mix.values()))
        job[rows] = np.array([_J[j] for j in mix])[choice]

    # Schemes: Korea's EPS is G to G, some of Japan too; individuals (mandiri) ~7.5% elsewhere; P to P rest.
    iso = np.array([d[0] for d in DESTINATIONS])[dest]
    u = rng.random(n)
    scheme = np.zeros(n, np.int64)
    g2g_p = np.where(iso == "KOR", 0.85, np.where(iso == "JPN", 0.15, 0.0))
    scheme[u < g2g_p] = 1
    scheme[(u >= g2g_p) & (u < g2g_p + 0.075)] = 2
    p2p = scheme == 0
    mitra = p2p & (agency == SISKOP) & (rng.random(n) < 0.10)
    if mitra.sum() < floor:
        mitra[np.flatnonzero(p2p & (agency == SISKOP) & ~mitra)[: floor - int(mitra.sum())]] = True
    agency[mitra] = P3MI
    p3mi = np.where(p2p, rng.integers(0, len(P3MI_NAMES), n), -1)

    span = int((DEPARTURE_LAST - DEPARTURE_FIRST).astype(int)) + 1
    dep = DEPARTURE_FIRST + rng.integers(0, span, n).astype("timedelta64[D]")
    age = np.clip(np.round(rng.normal(29.5, 6.5, n)), 18, 50)
    birth = dep - np.round((age + rng.random(n)) * 365.2425).astype("timedelta64[D]")
    young = _age(birth, dep) < 18
    birth[young] -= np.timedelta64(3, "D")

    kind = np.full(n, -1)
    for ag, kinds in AGENCY_KINDS.items():
        rows = np.flatnonzero(agency == ag)
        k = round(len(rows) * BROKEN_SHARE)
        chosen = rng.choice(rows, size=min(k, len(rows)), replace=False)
        kind[chosen] = np.array([KINDS.index(x) for x in kinds])[np.arange(len(chosen)) % len(kinds)]
    underage = kind == KINDS.index("underage")
    birth[underage] = dep[underage] - np.round((16 + rng.random(int(underage.sum())) * 0.9) * 365.2425).astype(
        "timedelta64[D]"
    )

    return _Population(
        n=n,
        dest=dest,
        female=female,
        prov=prov,
        reg_code=reg_code,
        birth=birth,
        dep=dep,
        job=job,
        scheme=scheme,
        edu=_pick(rng, n, EDUCATION_P),
        marital=_pick(rng, n, MARITAL_P),
        contract=np.array(CONTRACTS)[_pick(rng, n, CONTRACTS_P)],
        p3mi=np.where(agency == P3MI, -2, p3mi),
        nik=_niks(rng, reg_code, birth, female),
        passport=_passports(rng, n),
        name=_names(rng, female, prov),
        agency=agency,
        kind=kind,
    )


# ----------------------------------------------------------------------------------------- per-file views
@dataclass
class _View:
    """Rows of one agency's file: population rows plus what differs in this copy."""

    idx: np.ndarray
    dep: np.ndarray
    contract: np.ndarray
    kind: np.ndarray
    record_id: pa.Array | None = None


def _view(pop: _Population, rows: np.ndarray, sort: bool = True) -> _View:
    rows = rows[np.lexsort((rows, pop.dep[rows]))] if sort else rows
    return _View(rows, pop.dep[rows].copy(), pop.contract[rows].copy(), pop.kind[rows].copy())


def _concat(*views: _View) -> _View:
    ids = [v.record_id for v in views]
    return _View(
        np.concatenate([v.idx for v in views]),
        np.concatenate([v.dep for v in views]),
        np.concatenate([v.contract for v in views]),
        np.concatenate([v.kind for v in views]),
        pa.concat_arrays(ids) if all(i is not None for i in ids) else None,
    )


def _subset(v: _View, mask: np.ndarray) -> _View:
    return _View(
        v.idx[mask],
        v.dep[mask],
        v.contract[mask],
        v.kind[mask],
        v.record_id.filter(pa.array(mask)) if v.record_id is not None else None,
    )


def _ordered(v: _View) -> _View:
    order = np.lexsort((v.idx, v.dep))
    rid = v.record_id.take(pa.array(order)) if v.record_id is not None else None
    return _View(v.idx[order], v.dep[order], v.contract[order], v.kind[order], rid)


class _Writer:
    """Formats the population's columns for one file and records its truth."""

    def __init__(self, pop: _Population, rng: np.random.Generator, truth: DemoTruth, directory: Path) -> None:
        self.pop, self.rng, self.truth, self.directory = pop, rng, truth, directory
        iso = np.array([d[0] for d in DESTINATIONS])
        informal = np.array([inf for _, inf in JOBS])[pop.job]
        self.informal = informal & ~((pop.job == _J["Caregiver"]) & (iso[pop.dest] == "JPN"))

    # ---- columns shared by several layouts
    def mask(self, v: _View, kind: str) -> np.ndarray:
        return v.kind == KINDS.index(kind)

    def nik(self, v: _View) -> pa.Array:
        text = _text(self.pop.nik[v.idx])
        short = self.mask(v, "nik_15_digits")
        text = _put(text, short, pc.utf8_slice_codeunits(text.filter(pa.array(short)), 0, 15))
        return _put(text, self.mask(v, "missing_worker_key"), [""] * int(self.mask(v, "missing_worker_key").sum()))

    def passport(self, v: _View) -> pa.Array:
        text = self.pop.passport.take(pa.array(v.idx))
        miss = self.mask(v, "missing_worker_key")
        return _put(text, miss, [""] * int(miss.sum()))

    def country(self, v: _View, column: int, upper: bool = False) -> pa.Array:
        names = [d[column] for d in DESTINATIONS]
        text = _take(names, self.pop.dest[v.idx])
        text = pc.utf8_upper(text) if upper else text
        bad = self.mask(v, "unknown_country")
        return _put(text, bad, _take(UNKNOWN_COUNTRIES, self.rng.integers(0, len(UNKNOWN_COUNTRIES), int(bad.sum()))))

    def departure(self, v: _View, formatted: pa.Array, style: str) -> pa.Array:
        bad = self.mask(v, "impossible_date")
        if not bad.any():
            return formatted
        year, _, _ = _ymd(v.dep[bad])
        picks = self.rng.integers(0, len(IMPOSSIBLE_DAYS), int(bad.sum()))
        out = []
        for y, p in zip(year.tolist(), picks.tolist(), strict=True):
            d, m = IMPOSSIBLE_DAYS[p]
            out.append(
                {
                    "dmy": f"{d:02d}/{m:02d}/{y}",
                    "iso": f"{y}-{m:02d}-{d:02d}",
                    "id": f"{d} {MONTHS_ID[m - 1]} {y}",
                }[style]
            )
        return _put(formatted, bad, out)

    def regency(self, v: _View, style: str) -> pa.Array:
        """'KAB. MALANG' / 'KOTA SURABAYA' (upper), or the mixed spellings of a provincial spreadsheet."""
        codes, info = _regency_tables()
        pos = np.searchsorted(np.sort(codes), self.pop.reg_code[v.idx])
        bare = [info[c][0] for c in np.sort(codes)]
        city = np.array([info[c][1] for c in np.sort(codes)])[pos]
        name = _take(bare, pos)
        if style == "upper":
            prefix = pc.if_else(pa.array(city), pa.scalar("KOTA "), pa.scalar("KAB. "))
            return pc.utf8_upper(_join(prefix, name))
        k = self.rng.integers(0, 3, len(pos))
        kab = _take(["KAB. ", "Kab. ", "Kabupaten "], k)
        kota = _take(["KOTA ", "Kota ", "Kota "], k)
        joined = _join(pc.if_else(pa.array(city), kota, kab), name)
        return pc.if_else(pa.array(k == 0), pc.utf8_upper(joined), joined)

    def province(self, v: _View, title: bool = False) -> pa.Array:
        text = _take([name for _, name, _ in PROVINCES], self.pop.prov[v.idx])
        return pc.utf8_title(text) if title else text

    def sector(self, v: _View, words: tuple[str, str]) -> pa.Array:
        return _take(list(words), self.informal[v.idx].astype(np.int64))

    def scheme(self, v: _View, words: list[str]) -> pa.Array:
        return _take(words, self.pop.scheme[v.idx])

    def recruiter(self, v: _View) -> pa.Array:
        p = self.pop.p3mi[v.idx]
        return _take(
            [*P3MI_NAMES, MITRA, ""],
            np.where(p == -2, len(P3MI_NAMES), np.where(p < 0, len(P3MI_NAMES) + 1, p)),
        )

    def job(self, v: _View) -> pa.Array:
        return _take([j for j, _ in JOBS], self.pop.job[v.idx])

    # ---- bookkeeping
    def record(
        self,
        agency: int,
        name: str,
        v: _View,
        first_data_row: int,
        columns: dict[str, pa.Array],
        identifier_columns: list[str],
    ) -> None:
        key = f"{AGENCIES[agency]}/{name}"
        self.truth.rows_by_file[key] = len(v.idx)
        self.truth.header_rows[key] = first_data_row - 1
        for c in identifier_columns:
            self.truth.identifiers.update(x for x in columns[c].to_pylist() if x)
        for i in np.flatnonzero(v.kind >= 0).tolist():
            kind = KINDS[v.kind[i]]
            self.truth.broken.append(
                {
                    "agency": AGENCIES[agency],
                    "file": name,
                    "source_row": first_data_row + i,
                    "kind": kind,
                    "field": KIND_FIELD[kind],
                    "expected_rule": EXPECTED_RULES[kind],
                }
            )

    def path(self, agency: int, name: str) -> Path:
        folder = self.directory / AGENCIES[agency]
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name


def _csv_bytes(columns: dict[str, pa.Array], delimiter: str, quote: bool) -> bytes:
    """pyarrow quotes every string when asked to quote, and quotes the header always: write that ourselves."""
    sink = io.BytesIO()
    if not quote:
        sink.write((delimiter.join(columns) + "\n").encode("utf-8"))
    options = pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed" if quote else "none", include_header=quote)
    pacsv.write_csv(pa.table(columns), sink, options)
    return sink.getvalue()


# ----------------------------------------------------------------------------------------- the five layouts
def _write_siskop(w: _Writer, views: list[tuple[str, _View]]) -> None:
    """National system export: UTF-8, comma, Indonesian headers, dd/mm/yyyy, BP2MI's country names."""
    for name, v in views:
        sex = _take(["L", "P"], w.pop.female[v.idx].astype(np.int64))
        cols = {
            "No Registrasi": v.record_id,
            "NIK": w.nik(v),
            "Nama": w.pop.name.take(pa.array(v.idx)),
            "No Paspor": w.passport(v),
            "Jenis Kelamin": sex,
            "Tanggal Lahir": _strftime(w.pop.birth[v.idx], "%d/%m/%Y"),
            "Pendidikan": _take(EDUCATION, w.pop.edu[v.idx]),
            "Status Perkawinan": _take(MARITAL, w.pop.marital[v.idx]),
            "Provinsi": w.province(v),
            "Kabupaten/Kota": w.regency(v, "upper"),
            "Negara Tujuan": w.country(v, 4),
            "Jabatan": w.job(v),
            "Sektor": w.sector(v, ("Formal", "Informal")),
            "Skema Penempatan": w.scheme(v, SCHEMES),
            "Nama P3MI": w.recruiter(v),
            "Tanggal Berangkat": w.departure(v, _strftime(v.dep, "%d/%m/%Y"), "dmy"),
            "Lama Kontrak (Bulan)": _text(v.contract),
        }
        w.path(SISKOP, name).write_bytes(_csv_bytes(cols, ",", quote=True))
        w.record(SISKOP, name, v, 2, cols, ["NIK", "Nama", "No Paspor"])


JATIM_TITLE_ROWS = 3  # title (merged), period, blank; the header is on row 4


def _write_jatim(w: _Writer, name: str, v: _View) -> None:
    """Provincial office spreadsheet: title rows, merged title, real Excel dates, a JUMLAH row below."""
    n = len(v.idx)
    record_id = _join("JTM-", _text(_ymd(v.dep)[0]), "-", _pad(np.arange(1, n + 1), 6))
    country = pc.replace_substring(w.country(v, 4, upper=True), "HONG KONG", "HONGKONG")
    dep_text = w.departure(v, pa.nulls(n, pa.string()), "dmy")  # only the impossible dates, typed as text
    cols = {
        "No": np.arange(1, n + 1).tolist(),
        "No. Pendaftaran": record_id.to_pylist(),
        "NIK": w.nik(v).to_pylist(),
        "Nama PMI": w.pop.name.take(pa.array(v.idx)).to_pylist(),
        "No. Paspor": w.passport(v).to_pylist(),
        "Jenis Kelamin": _take(["Laki-laki", "Perempuan"], w.pop.female[v.idx].astype(np.int64)).to_pylist(),
        "Tgl. Lahir": w.pop.birth[v.idx].astype(object).tolist(),
        "Pendidikan Terakhir": _take(EDUCATION, w.pop.edu[v.idx]).to_pylist(),
        "Kab/Kota Asal": w.regency(v, "mixed").to_pylist(),
        "Negara Penempatan": country.to_pylist(),
        "Jabatan": w.job(v).to_pylist(),
        "Sektor": w.sector(v, ("FORMAL", "INFORMAL")).to_pylist(),
        "Skema": w.scheme(v, ["PtoP", "GtoG", "Perseorangan"]).to_pylist(),
        "Nama P3MI": pc.utf8_upper(w.recruiter(v)).to_pylist(),
        "Tgl Berangkat": [t or d for t, d in zip(dep_text.to_pylist(), v.dep.astype(object).tolist(), strict=True)],
        "Masa Kontrak": v.contract.tolist(),
    }
    wb = openpyxl.Workbook(write_only=True)
    wb.properties.created = wb.properties.modified = FIXED_TIME
    wb.properties.creator = "BP3MI Jawa Timur"
    ws = wb.create_sheet("Penempatan")
    headers = list(cols)
    last = openpyxl.utils.get_column_letter(len(headers))
    ws.append(["REKAPITULASI PENEMPATAN PMI ASAL JAWA TIMUR"])
    ws.append([f"PERIODE: {_month_year(v.dep.min())} S.D. {_month_year(v.dep.max())}"])
    ws.append([])
    ws.merged_cells.add(f"A1:{last}1")
    ws.append(headers)
    dates = {headers.index("Tgl. Lahir"), headers.index("Tgl Berangkat")}

    def cell(value: object, j: int) -> object:
        if value == "":
            return None
        if j in dates and isinstance(value, date):
            c = WriteOnlyCell(ws, value=value)
            c.number_format = "DD/MM/YYYY"
            return c
        return value

    for row in zip(*cols.values(), strict=True):
        ws.append([cell(value, j) for j, value in enumerate(row)])
    ws.append(["JUMLAH", None, None, None, None, None, None, None, None, None, None, None, None, None, None, n])
    path = w.path(JATIM, name)
    buffer = io.BytesIO()
    wb.save(buffer)
    path.write_bytes(_fixed_zip(buffer.getvalue()))
    w.record(
        JATIM,
        name,
        v,
        JATIM_TITLE_ROWS + 2,
        {k: pa.array(cols[k]) for k in ("NIK", "Nama PMI", "No. Paspor")},
        ["NIK", "Nama PMI", "No. Paspor"],
    )


def _month_year(d: np.datetime64) -> str:
    y, m, _ = _ymd(np.array([d]))
    return f"{MONTHS_ID[int(m[0]) - 1].upper()} {int(y[0])}"


def _fixed_zip(data: bytes) -> bytes:
    """Re-pack an XLSX with fixed entry times: zip entries otherwise carry the time of writing."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=FIXED_TIME.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            content = src.read(item.filename)
            if item.filename == "docProps/core.xml":  # openpyxl stamps 'modified' with the time of saving
                stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(<)", rb"\g<1>" + stamp + rb"\g<2>", content)
            dst.writestr(info, content)
    return out.getvalue()


def _write_p3mi(w: _Writer, name: str, v: _View) -> None:
    """Recruitment company: ';' CSV in Windows-1252, English headers, ISO dates, Male/Female."""
    n = len(v.idx)
    cols = {
        "Worker ID": _join("MSA-", _pad(np.arange(1, n + 1) + 1000, 6)),
        "National ID": w.nik(v),
        "Full Name": w.pop.name.take(pa.array(v.idx)),
        "Gender": _take(["Male", "Female"], w.pop.female[v.idx].astype(np.int64)),
        "Date of Birth": _strftime(w.pop.birth[v.idx], "%Y-%m-%d"),
        "Passport No": w.passport(v),
        "Home Province": w.province(v, title=True),
        "Home Regency": w.regency(v, "mixed"),
        "Destination": w.country(v, 5),
        "Position": w.job(v),
        "Departure Date": w.departure(v, _strftime(v.dep, "%Y-%m-%d"), "iso"),
        "Contract Length": _join(_text(v.contract), pa.scalar(" months")),
    }
    text = _csv_bytes(cols, ";", quote=False).decode("utf-8").replace("\n", "\r\n")
    w.path(P3MI, name).write_bytes(text.encode("cp1252"))
    w.record(P3MI, name, v, 2, cols, ["National ID", "Full Name", "Passport No"])


def _write_cilacap(w: _Writer, name: str, v: _View) -> None:
    """District office: Excel 'Unicode text' (UTF-16, tab), 'Tempat, Tgl Lahir', month names, no record id."""
    n = len(v.idx)
    place = _take(BIRTH_PLACES, w.rng.integers(0, len(BIRTH_PLACES), n))
    born = _join(place, _indonesian_date(w.pop.birth[v.idx], w.rng, 0.0), sep=", ")
    careless = pa.array(w.rng.random(n) < 0.5)
    country = pc.if_else(careless, w.country(v, 6), w.country(v, 4))  # broken rows: unknown in both
    cols = {
        "No": _text(np.arange(1, n + 1)),
        "Nama": pc.utf8_upper(w.pop.name.take(pa.array(v.idx))),
        "NIK": w.nik(v),
        "L/P": _take(["L", "P"], w.pop.female[v.idx].astype(np.int64)),
        "Tempat, Tgl Lahir": born,
        "Pendidikan": _take(EDUCATION_OLD, w.pop.edu[v.idx]),
        "Negara Tujuan": country,
        "Jabatan": w.job(v),
        "Nama PPTKIS": w.recruiter(v),
        "Tgl Berangkat": w.departure(v, _indonesian_date(v.dep, w.rng, 0.5), "id"),
        "Lama Kontrak": _text(v.contract),
    }
    text = _csv_bytes(cols, "\t", quote=False).decode("utf-8").replace("\n", "\r\n")
    w.path(CILACAP_AG, name).write_bytes(text.encode("utf-16"))
    w.record(CILACAP_AG, name, v, 2, cols, ["NIK", "Nama"])


def _write_kbri(w: _Writer, name: str, v: _View) -> None:
    """Mission abroad: JSON document, records under "data", nested worker and placement objects."""
    n = len(v.idx)
    no_nik = (w.rng.random(n) < 0.3) & (v.kind < 0)  # registered at the embassy with a passport only
    nik = w.nik(v).to_pylist()
    nik = [None if (x == "" or drop) else x for x, drop in zip(nik, no_nik.tolist(), strict=True)]
    passport = [x or None for x in w.passport(v).to_pylist()]
    names = w.pop.name.take(pa.array(v.idx)).to_pylist()
    sex = _take(["L", "P"], w.pop.female[v.idx].astype(np.int64)).to_pylist()
    birth = _strftime(w.pop.birth[v.idx], "%Y-%m-%d").to_pylist()
    province = w.province(v).to_pylist()
    regency = w.regency(v, "upper").to_pylist()
    job = w.job(v).to_pylist()
    sector = w.sector(v, ("Formal", "Informal")).to_pylist()
    recruiter = [x or None for x in w.recruiter(v).to_pylist()]
    dep = w.departure(v, _strftime(v.dep, "%Y-%m-%d"), "iso").to_pylist()
    states = ["Johor", "Selangor", "Sabah", "Sarawak", "Pahang", "Perak", "Kuala Lumpur", "Negeri Sembilan"]
    state = _take(states, _pick(w.rng, n, [20, 25, 20, 12, 8, 7, 5, 3])).to_pylist()
    year = _ymd(v.dep)[0].tolist()
    records = []
    for i in range(n):
        records.append(
            {
                "no_lapor": f"KBRIKL/{year[i]}/{i + 1:06d}",
                "pekerja": {
                    "nama": names[i],
                    "nik": nik[i],
                    "paspor": passport[i],
                    "jenis_kelamin": sex[i],
                    "tanggal_lahir": birth[i],
                    "provinsi_asal": province[i],
                    "kabupaten_asal": regency[i],
                },
                "penempatan": {
                    "jabatan": job[i],
                    "sektor": sector[i],
                    "p3mi": recruiter[i],
                    "tanggal_berangkat": dep[i],
                    "lama_kontrak_bulan": int(v.contract[i]),
                    "negara_bagian": state[i],
                },
            }
        )
    # One record per line inside the document: json's C encoder only runs without indent.
    head = {
        "sumber": "KBRI Kuala Lumpur - Atase Ketenagakerjaan",
        "dibuat": "2025-11-03T08:00:00+08:00",
        "jumlah": n,
    }
    body = ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in records)
    text = json.dumps(head, ensure_ascii=False)[:-1] + ',\n "data": [\n  ' + body + "\n ]\n}\n"
    w.path(KBRI, name).write_text(text, encoding="utf-8")
    flat = {
        "nik": pa.array(nik, pa.string()),
        "nama": pa.array(names),
        "paspor": pa.array(passport, pa.string()),
    }
    w.record(KBRI, name, v, 1, flat, ["nik", "nama", "paspor"])


# ----------------------------------------------------------------------------------------- entry point
MIN_ROWS = 1000  # below this some agency's file would miss an error kind the demo shows


def generate(directory: Path, seed: int = 2024, rows: int = 6000) -> DemoTruth:
    """Write the five agencies' files under directory/<agency>/ and return what was written.

    `rows` is the number of data rows over all files, overlaps and re-sent records included.
    """
    if rows < MIN_ROWS:
        raise ValueError(f"rows must be at least {MIN_ROWS} so that every agency gets a file with every error kind")
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    n_overlap = round(rows * OVERLAP_SHARE)
    n_redrop = round(rows * REDROP_SHARE)
    pop = _population(rng, rows - n_overlap - n_redrop)
    mitra = np.flatnonzero(pop.agency == P3MI)
    if not any("’" in x or "é" in x for x in pop.name.take(pa.array(mitra)).to_pylist()):
        pop.name = _put(pop.name, np.arange(pop.n) == mitra[0], ["Siti Mu’awanah"])  # text only cp1252 encodes
    truth = DemoTruth(seed=seed, rows=rows)
    w = _Writer(pop, rng, truth, directory)

    # Overlaps: clean placements of the provincial office and the P3MI also reported by SISKOP2MI;
    # some a few days apart, some with one field differing (a conflict the priority resolves).
    candidates = np.flatnonzero(np.isin(pop.agency, [JATIM, P3MI]) & (pop.kind < 0))
    overlap = np.sort(rng.choice(candidates, size=n_overlap, replace=False))
    copies = _view(pop, overlap, sort=False)
    shift = rng.random(n_overlap) < 0.35
    copies.dep[shift] += rng.choice(np.array([-3, -2, -1, 1, 2, 3]), int(shift.sum())).astype("timedelta64[D]")
    copies.dep = np.clip(copies.dep, DEPARTURE_FIRST, DEPARTURE_LAST)
    conflict = (rng.random(n_overlap) < 0.3) & ~shift
    copies.contract[conflict] = np.where(copies.contract[conflict] == 24, 36, 24)
    truth.overlaps, truth.conflicts = n_overlap, int(conflict.sum())

    # SISKOP2MI: its own placements plus the overlap copies, with record ids in departure order;
    # then a few records of the first export corrected and sent again in the second.
    own = _view(pop, np.flatnonzero(pop.agency == SISKOP))
    both = _ordered(_concat(own, copies))
    year = _ymd(both.dep)[0]
    both.record_id = _join("REG-", _text(year), "-", _pad(np.arange(1, len(both.idx) + 1), 7))
    first = both.dep < SISKOP_SPLIT
    eligible = np.flatnonzero(
        first
        & (both.kind < 0)
        & (both.dep >= SISKOP_SPLIT - np.timedelta64(92, "D"))
        & np.isin(both.idx, overlap, invert=True)
    )
    again = np.zeros(len(both.idx), bool)
    again[rng.choice(eligible, size=n_redrop, replace=False)] = True
    resent = _subset(both, again)
    resent.contract = np.where(resent.contract == 24, 36, 24)
    truth.superseded = n_redrop
    file2 = _concat(resent, _subset(both, ~first))
    _write_siskop(
        w,
        [
            ("siskop2mi_penempatan_2023-01_2024-06.csv", _subset(both, first)),
            ("siskop2mi_penempatan_2024-07_2025-10.csv", file2),
        ],
    )

    _write_jatim(w, "Rekap_Penempatan_PMI_Jatim_2023-2025.xlsx", _view(pop, np.flatnonzero(pop.agency == JATIM)))
    _write_p3mi(w, "MSA_deployment_report_2023-2025.csv", _view(pop, np.flatnonzero(pop.agency == P3MI)))
    _write_cilacap(w, "DATA PMI CILACAP 2023-2025.txt", _view(pop, np.flatnonzero(pop.agency == CILACAP_AG)))
    _write_kbri(w, "kbri_kl_pendataan_pmi.json", _view(pop, np.flatnonzero(pop.agency == KBRI)))
    assert sum(truth.rows_by_file.values()) == rows
    return truth

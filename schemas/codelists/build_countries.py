"""Maintainer tool: regenerate countries.csv from pycountry (ISO 3166-1) plus SDMI's fixes.

Not part of the pipeline and not a project dependency. Run it in a throwaway environment:

    python -m venv /tmp/pyc && /tmp/pyc/bin/pip install pycountry
    /tmp/pyc/bin/python schemas/codelists/build_countries.py

Indonesian names come from pycountry's gettext catalogue (`iso3166-1`, language `id`). Where that
catalogue differs from what Indonesian agencies write (BP2MI's own spellings, e.g. "Taiwan" rather than
"Taiwan, Provinsi China", "Timor Leste" rather than "Timor Timur"), NAME_ID below wins and the
catalogue's name is kept as a variant. VARIANTS are spellings seen in agency files; only unambiguous
ones belong here (an alias that would point at two countries is dropped by pipelines/codelists.py anyway).
"""

from __future__ import annotations

import csv
import gettext
from pathlib import Path

import pycountry

HERE = Path(__file__).resolve().parent

# Indonesian names agencies actually use (BP2MI spellings first).
NAME_ID = {
    "TWN": "Taiwan",
    "TLS": "Timor Leste",
    "HUN": "Hungaria",
    "SVK": "Slovakia",
    "DMA": "Dominika",
    "CHN": "Tiongkok",
    "MAC": "Makau",
    "IRN": "Iran",
    "SYR": "Suriah",
    "LAO": "Laos",
    "RUS": "Rusia",
    "GBR": "Inggris",
    "CZE": "Ceko",
    "PSE": "Palestina",
    "BOL": "Bolivia",
    "VEN": "Venezuela",
    "MDA": "Moldova",
    "FRA": "Prancis",
    "VAT": "Vatikan",
    "FSM": "Mikronesia",
    "COD": "Republik Demokratik Kongo",
    "COG": "Kongo",
    "LBN": "Lebanon",
    "TZA": "Tanzania",
}

# English names where pycountry's ISO short name is awkward for reports.
NAME_EN = {
    "TWN": "Taiwan",
    "KOR": "South Korea",
    "PRK": "North Korea",
    "IRN": "Iran",
    "SYR": "Syria",
    "LAO": "Laos",
    "VNM": "Vietnam",
    "BOL": "Bolivia",
    "VEN": "Venezuela",
    "TZA": "Tanzania",
    "MDA": "Moldova",
    "RUS": "Russia",
    "COD": "Democratic Republic of the Congo",
    "COG": "Republic of the Congo",
    "PSE": "Palestine",
    "FSM": "Micronesia",
    "VAT": "Vatican City",
    "MAC": "Macao",
}

# Spellings seen in agency files (district offices, P3MI exports). Unambiguous only.
VARIANTS = {
    "HKG": ["Hongkong", "HK", "Hong Kong SAR", "HKSAR", "Hongkong SAR", "Hong Kong China", "Hongkong China"],
    "TWN": [
        "Taiwan R.O.C",
        "Taiwan ROC",
        "Taiwan (ROC)",
        "ROC",
        "Republic of China",
        "Taipei",
        "Chinese Taipei",
        "Taiwan Province of China",
        "Formosa",
        "TW",
    ],
    "MYS": [
        "Malaysia Barat",
        "Malaysia Timur",
        "Semenanjung Malaysia",
        "Sabah",
        "Sarawak",
        "MY",
        "Malaysian",
    ],
    "JPN": ["Japan", "Jepang", "Japang", "Nippon", "JP"],
    "SGP": ["Singapore", "SG"],
    "KOR": [
        "Korsel",
        "Korea Selatan",
        "Korea Republic",
        "Republic of Korea",
        "ROK",
        "Korea (Selatan)",
        "Korea Rep",
        "Korea South",
        "Republik Korea",
    ],
    "PRK": ["Korut", "Korea Utara", "DPRK", "Korea North"],
    "SAU": ["Saudi Arabia", "KSA", "Saudi", "Arab Saudia", "Kerajaan Arab Saudi", "Saudia Arabia", "SA"],
    "ARE": [
        "UEA",
        "UAE",
        "United Arab Emirates",
        "Emirat Arab",
        "Dubai",
        "Abu Dhabi",
        "Persatuan Emirat Arab",
        "AE",
    ],
    "BRN": ["Brunei", "Brunei Darusalam", "Brunai", "Brunei Darussalam", "BN"],
    "QAT": ["Katar", "QA"],
    "KWT": ["Kuwayt", "KW"],
    "OMN": ["Sultanate of Oman", "Kesultanan Oman", "OM"],
    "BHR": ["Bahrein", "BH"],
    "TUR": ["Turki", "Turkey", "Turkiye", "Republic of Turkey"],
    "POL": ["Polandia", "Poland", "Polska"],
    "HUN": ["Hongaria", "Hungary"],
    "SVK": ["Slowakia", "Slovak Republic", "Republik Slovakia"],
    "ROU": ["Rumania", "Romania", "Rumenia"],
    "HRV": ["Kroasia", "Croatia", "Kroatia"],
    "NZL": ["Selandia Baru", "New Zealand", "NZ"],
    "SLB": ["Pulau Solomon", "Kepulauan Solomon", "Solomon Islands", "Solomon"],
    "BGR": ["Bulgaria"],
    "DMA": ["Persemakmuran Dominika", "Commonwealth of Dominica", "Dominica"],
    "DOM": ["Republik Dominika", "Dominican Republic", "Republica Dominicana", "Dominican", "Rep. Dominika"],
    "MDV": ["Maladewa", "Maldives", "Maldive", "Republik Maladewa"],
    "PNG": ["Papua Nugini", "Papua New Guinea", "PNG", "Papua Niugini"],
    "ZMB": ["Zambia"],
    "ITA": ["Italia", "Italy"],
    # "AS" is Indonesian for Amerika Serikat and ISO alpha-2 for American Samoa: naming both, it is never guessed
    "USA": ["Amerika Serikat", "Amerika", "USA", "United States of America", "US", "U.S.A.", "AS"],
    "TLS": ["Timor-Leste", "East Timor", "Timor Timur", "RDTL", "Republik Demokratik Timor Leste"],
    "CHN": [
        "China",
        "Cina",
        "RRC",
        "RRT",
        "Republik Rakyat Tiongkok",
        "Republik Rakyat China",
        "PRC",
        "People's Republic of China",
        "Tiongkok (RRT)",
    ],
    "MAC": ["Macau", "Macao", "Makao"],
    "GBR": [
        "Britania Raya",
        "Inggris Raya",
        "United Kingdom",
        "UK",
        "Great Britain",
        "England",
        "Kerajaan Inggris",
    ],
    "DEU": ["Jerman", "Germany", "Deutschland"],
    "NLD": ["Belanda", "Netherlands", "Holland", "The Netherlands"],
    "FRA": ["Perancis", "France"],
    "ESP": ["Spanyol", "Spain"],
    "RUS": ["Russia", "Federasi Rusia"],
    "VNM": ["Vietnam", "Viet Nam"],
    "THA": ["Thailand", "Thailan", "Muangthai"],
    "PHL": ["Filipina", "Philippines", "Philipina"],
    "KHM": ["Kamboja", "Cambodia"],
    "MMR": ["Myanmar", "Burma", "Birma"],
    "LAO": ["Laos", "Lao PDR"],
    "JOR": ["Yordania", "Jordan", "Jordania"],
    "EGY": ["Mesir", "Egypt"],
    "IRQ": ["Irak", "Iraq"],
    "SYR": ["Syria", "Suriah"],
    "PSE": ["Palestine", "Palestina"],
    "DZA": ["Aljazair", "Algeria"],
    "MAR": ["Maroko", "Morocco"],
    "ZAF": ["Afrika Selatan", "South Africa", "Afsel"],
    "LBN": ["Libanon", "Lebanon"],
    "YEM": ["Yaman", "Yemen"],
    "CZE": ["Czech Republic", "Republik Ceko", "Czechia", "Cheko"],
    "GRC": ["Yunani", "Greece"],
    "CHE": ["Swiss", "Switzerland", "Swis"],
    "CYP": ["Siprus", "Cyprus"],
    "AUS": ["Australia", "Australi"],
    "CAN": ["Kanada", "Canada"],
    "BRA": ["Brasil", "Brazil"],
    "MEX": ["Meksiko", "Mexico"],
    "IRN": ["Iran", "Persia"],
    "LTU": ["Lituania", "Lithuania", "Lithuania"],
    "IRL": ["Irlandia", "Ireland"],
    "BEL": ["Belgia", "Belgium"],
    "SWE": ["Swedia", "Sweden"],
    "NOR": ["Norwegia", "Norway"],
    "FIN": ["Finlandia", "Finland"],
    "UKR": ["Ukraina", "Ukraine"],
    "FJI": ["Fiji", "Fiji Islands"],
    "CIV": ["Ivory Coast", "Cote d'Ivoire"],
    "VAT": ["Holy See", "Vatican"],
}


def main() -> None:
    t = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["id"])
    rows = []
    for c in sorted(pycountry.countries, key=lambda c: c.alpha_3):
        iso_name = c.name
        id_catalogue = t.gettext(iso_name)
        name_en = NAME_EN.get(c.alpha_3) or getattr(c, "common_name", None) or iso_name
        name_id = NAME_ID.get(c.alpha_3, id_catalogue)
        variants: list[str] = []
        for v in [
            iso_name,
            getattr(c, "common_name", None),
            getattr(c, "official_name", None),
            id_catalogue,
            *VARIANTS.get(c.alpha_3, []),
        ]:
            if v and v not in variants and v not in (name_id, name_en):
                variants.append(v)
        rows.append(
            {
                "code": c.alpha_3,
                "alpha2": c.alpha_2,
                "name_id": name_id,
                "name_en": name_en,
                "variants": "|".join(variants),
            }
        )
    with open(HERE / "countries.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["code", "alpha2", "name_id", "name_en", "variants"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} countries (pycountry {pycountry.__version__})")


if __name__ == "__main__":
    main()

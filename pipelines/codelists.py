"""Reference code lists (schemas/codelists/*.csv) and matching of free-text values onto their codes.

Agencies write the same country, province, regency, job title or education level in dozens of ways
("Hongkong", "HK", "Kab. Malang", "SLTA", "House maid"). Harmonisation turns each distinct spelling into a
code once, here, and records how sure it is. The rule throughout: a wrong code is worse than no code, so
an alias that points at two codes is never guessed, short strings are never fuzzy-matched, and a fuzzy match
needs both a high score and a clear margin over the next-best code. What a spreadsheet writes for "no value"
('-', '0', 'N/A', 'tidak ada') is empty in every list, never an alias.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

import pyarrow as pa
from rapidfuzz import fuzz, process

EXACT, FUZZY, AMBIGUOUS, UNKNOWN, EMPTY = "exact", "fuzzy", "ambiguous", "unknown", "empty"

MIN_FUZZY_LENGTH = 5  # shorter keys ("mali", "oman", "k 1") are matched exactly or not at all
FUZZY_MARGIN = 5.0  # best code must beat the best *other* code by this many points
FUZZY_CANDIDATES = 15
SUGGESTION_CUTOFF = 60.0
MAX_SUGGESTIONS = 3

MATCH_SCHEMA = pa.schema(
    [
        ("value", pa.string()),
        ("code", pa.string()),
        ("match", pa.string()),
        ("score", pa.float64()),
        ("suggestions", pa.string()),
    ]
)

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
# Word-level rewrites applied by every list: regency prefixes as district offices abbreviate them.
_PREFIX_REWRITES = (
    (re.compile(r"\bkabupaten administrasi\b"), "kabupaten"),
    (re.compile(r"\bkota administrasi\b"), "kota"),
    (re.compile(r"\bkota adm\b"), "kota"),
    (re.compile(r"\bkab adm\b"), "kabupaten"),
    (re.compile(r"\bkab\b"), "kabupaten"),
    (re.compile(r"\b(kodya|kotamadya|kotamadia)\b"), "kota"),
)
# Leading words that carry no information for one list ("Provinsi Jawa Timur", "Negara Malaysia").
_LIST_PREFIXES = {
    "provinces": ("provinsi", "propinsi", "prov", "province of", "province"),
    "countries": ("negara",),
}


def normalise(text: str | None) -> str:
    """Case-fold, strip accents, turn punctuation into spaces, collapse spaces, expand "kab." and "kodya".

    Every comparison goes through this one function so that an alias in a CSV and a value in an agency
    file meet in the same form: "KAB. CILACAP" and "Kabupaten  Cilacap" both become "kabupaten cilacap".
    """
    if text is None:
        return ""
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    key = " ".join(_PUNCT.sub(" ", plain).split())
    for pattern, replacement in _PREFIX_REWRITES:
        key = pattern.sub(replacement, key)
    return key


def normalise_for(name: str, text: str | None) -> str:
    """`normalise`, then drop prefixes that mean nothing for this list ("provinsi", "negara").

    Regencies also accept the English word order: "Malang Regency" -> "kabupaten malang",
    "Malang City" -> "kota malang".
    """
    key = normalise(text)
    for prefix in _LIST_PREFIXES.get(name, ()):
        if key.startswith(prefix + " "):
            key = key[len(prefix) + 1 :]
            break
    if name == "regencies":
        words = key.split()
        if len(words) > 1 and words[-1] == "regency":
            key = " ".join(["kabupaten", *words[:-1]])
        elif len(words) > 1 and words[-1] == "city" and words[0] not in ("kota", "kabupaten"):
            key = " ".join(["kota", *words[:-1]])
    return key


def _compact(key: str) -> str:
    """The key without spaces: "hong kong" and "hongkong", "s 1" and "s1" meet here."""
    return key.replace(" ", "")


# What spreadsheets write for "no value", as a compact key: besides punctuation alone ("-", "?", "...", which
# normalise to nothing) and zeros alone ("0", "00/00/0000"). Never an alias: "N/A" is not Namibia (NA). Not
# "none": that is an education level (no schooling).
PLACEHOLDER_WORDS = frozenset(
    {"na", "nan", "nil", "null", "kosong", "tidakada", "tdkada", "belumada", "tidakdiketahui", "unknown"}
)


def is_placeholder_key(key: str) -> bool:
    """True when a normalised key says "no value": empty, zeros only, or a PLACEHOLDER_WORDS word."""
    compact = _compact(key)
    return not compact.strip("0") or compact in PLACEHOLDER_WORDS


@cache
def load(name: str) -> pa.Table:
    """The code list `schemas/codelists/<name>.csv` as an Arrow table, every column a string, cached."""
    from pipelines import settings  # where SDMI_PROJECT_DIR puts them: the suite and publish read the same files

    path = settings.CODELISTS_DIR / f"{name}.csv"
    if not path.is_file():
        raise KeyError(f"no code list {name!r} in {settings.CODELISTS_DIR}")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns: dict[str, list[str]] = {field: [] for field in reader.fieldnames or []}
        for row in reader:
            for field in columns:
                columns[field].append(row.get(field) or "")
    return pa.table({field: pa.array(values, pa.string()) for field, values in columns.items()})


def codes(name: str) -> list[str]:
    """Every code of the list, in file order."""
    return load(name).column("code").to_pylist()


def labels(name: str) -> dict[str, tuple[str, str]]:
    """code -> (Indonesian name, English name), for reports and feedback to agencies."""
    table = load(name)
    return dict(
        zip(
            table.column("code").to_pylist(),
            zip(table.column("name_id").to_pylist(), table.column("name_en").to_pylist(), strict=True),
            strict=True,
        )
    )


@dataclass(frozen=True)
class _Index:
    """Every alias of one list: sure (one code) or ambiguous (several codes, or a title marked so)."""

    exact: dict[str, str]
    ambiguous: dict[str, tuple[str, ...]]
    compact_exact: dict[str, str]
    compact_ambiguous: dict[str, tuple[str, ...]]
    choices: list[str]  # all alias keys, sure or not, for fuzzy matching
    choice_codes: list[tuple[str, ...]]  # codes behind each choice (several for an ambiguous alias)
    ambiguous_markers: frozenset[str]  # aliases declared ambiguous though they name no code


def _raw_aliases(name: str) -> tuple[dict[str, set[str]], set[str]]:
    """alias key -> codes it names, and the keys declared ambiguous (job titles with status 'ambiguous')."""
    found: dict[str, set[str]] = {}
    declared_ambiguous: set[str] = set()
    table = load(name)
    for row in table.to_pylist():
        code = row["code"]
        # a country's ISO alpha-2 code too ("KR", "TL"); an Indonesian abbreviation that is another country's
        # code is a variant of that country as well, so it names two codes and stays ambiguous ("AS")
        spellings = [code, row.get("alpha2"), row["name_id"], row["name_en"], *(row.get("variants") or "").split("|")]
        for spelling in spellings:
            key = normalise_for(name, spelling)
            if key and not is_placeholder_key(key):
                found.setdefault(key, set()).add(code)
    if name == "occupations":
        for row in load("occupation_titles").to_pylist():
            key = normalise_for(name, row["title"])
            if not key:
                continue
            if row["status"] == "mapped":
                found.setdefault(key, set()).add(row["code"])
            else:
                declared_ambiguous.add(key)
                found.setdefault(key, set())
    return found, declared_ambiguous


@cache
def _index(name: str) -> _Index:
    found, declared = _raw_aliases(name)
    exact: dict[str, str] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    for key, key_codes in found.items():
        if len(key_codes) == 1 and key not in declared:
            exact[key] = next(iter(key_codes))
        else:
            ambiguous[key] = tuple(sorted(key_codes))
    compact: dict[str, set[str]] = {}
    compact_declared: set[str] = set()
    for key, key_codes in found.items():
        compact.setdefault(_compact(key), set()).update(key_codes)
        if key in declared:
            compact_declared.add(_compact(key))
    compact_exact = {k: next(iter(v)) for k, v in compact.items() if len(v) == 1 and k not in compact_declared}
    compact_ambiguous = {k: tuple(sorted(v)) for k, v in compact.items() if k not in compact_exact}
    choices = list(found)
    return _Index(
        exact=exact,
        ambiguous=ambiguous,
        compact_exact=compact_exact,
        compact_ambiguous=compact_ambiguous,
        choices=choices,
        choice_codes=[tuple(sorted(found[k])) for k in choices],
        ambiguous_markers=frozenset(declared),
    )


def alias_table(name: str) -> pa.Table:
    """Columns alias (normalised), code: every code, name and variant that names exactly one code.

    Aliases that name two codes ("malang": Kabupaten and Kota Malang) and job titles marked ambiguous are
    left out, so a join on this table can never pick one of several codes by accident.
    """
    exact = _index(name).exact
    return pa.table({"alias": pa.array(list(exact), pa.string()), "code": pa.array(list(exact.values()), pa.string())})


def _suggest(name: str, candidate_codes: Iterable[str]) -> str | None:
    """Up to three "Name (CODE)" for the feedback report, best first."""
    names = labels(name)
    seen: list[str] = []
    for code in candidate_codes:
        if code and code not in seen:
            seen.append(code)
        if len(seen) == MAX_SUGGESTIONS:
            break
    if not seen:
        return None
    return "; ".join(f"{names[c][0]} ({c})" if c in names else c for c in seen)


@lru_cache(maxsize=1)
def _regency_kinds() -> dict[str, str]:
    table = load("regencies")
    return dict(zip(table.column("code").to_pylist(), table.column("kind").to_pylist(), strict=True))


def _without_kind(key: str) -> tuple[str | None, str]:
    """A regency key split into its kind word ('kabupaten', 'kota' or None) and the name after it."""
    first, _, rest = key.partition(" ")
    return (first, rest) if first in ("kabupaten", "kota") and rest else (None, key)


@cache
def _regency_choices(kind: str | None) -> tuple[list[str], list[tuple[str, ...]]]:
    """Regency aliases without their kind word, each with the codes it names of that kind (any kind for None).

    Scored with the kind word, every "Kabupaten X" shared ten letters with every other: a typo in a short name
    then matched another province's regency ("Kab. Meranti" -> Merangin, Jambi, at 91; "Kabupaten ediri" ->
    Dairi, not Kediri): 22 of 24,265 one-letter typos of the official names got a wrong code, now 5 (2 of them
    other regencies' real names). "Kota X" never matches a Kabupaten, nor the reverse: the kind decides which
    codes count."""
    kinds = _regency_kinds()
    found: dict[str, set[str]] = {}
    for key, key_codes in zip(_index("regencies").choices, _index("regencies").choice_codes, strict=True):
        bare = _without_kind(key)[1]
        found.setdefault(bare, set()).update(c for c in key_codes if kind is None or kinds.get(c) == kind)
    choices = [bare for bare, bare_codes in found.items() if bare_codes]
    return choices, [tuple(sorted(found[bare])) for bare in choices]


def _fuzzy(name: str, index: _Index, key: str, threshold: float) -> tuple[str | None, str, float | None, str | None]:
    """Best fuzzy candidate: a code only above the threshold and a margin ahead of every other code.
    A regency is scored on its name alone, among the regencies of the kind it names (`_regency_choices`)."""
    choices, choice_codes, markers = index.choices, index.choice_codes, index.ambiguous_markers
    if name == "regencies":
        kind, key = _without_kind(key)
        choices, choice_codes = _regency_choices(kind)
    hits = process.extract(
        key,
        choices,
        scorer=fuzz.token_sort_ratio,
        limit=FUZZY_CANDIDATES,
        score_cutoff=SUGGESTION_CUTOFF,
    )
    if not hits:
        return None, UNKNOWN, None, None
    ranked_codes = [code for _, _, i in hits for code in choice_codes[i]]
    suggestions = _suggest(name, ranked_codes)
    best_alias, best_score, best_i = hits[0]
    best_codes = choice_codes[best_i]
    if best_score < threshold or len(key.replace(" ", "")) < MIN_FUZZY_LENGTH:
        return None, UNKNOWN, float(best_score), suggestions
    if len(best_codes) != 1 or best_alias in markers:
        return None, AMBIGUOUS, float(best_score), suggestions
    runner_up = max(
        (score for _, score, i in hits[1:] if choice_codes[i] != best_codes or not choice_codes[i]),
        default=0.0,
    )
    if best_score - runner_up < FUZZY_MARGIN:
        return None, AMBIGUOUS, float(best_score), suggestions
    return best_codes[0], FUZZY, float(best_score), suggestions


# "Arab Saudi (KSA)", "Domestic Worker / PLRT": a name and its abbreviation or translation, side by side
_TWO_PARTS = re.compile(r"^\s*([^()/]+?)\s*(?:\(([^()/]+)\)|/([^()/]+))\s*$")


def _alias_codes(index: _Index, key: str) -> set[str]:
    """The codes an alias names (also written without spaces): one, several when ambiguous, none if no alias."""
    if key in index.exact or _compact(key) in index.compact_exact:
        return {index.exact.get(key) or index.compact_exact[_compact(key)]}
    return set(index.ambiguous.get(key) or index.compact_ambiguous.get(_compact(key)) or ())


def _both_parts(name: str, index: _Index, value: str | None) -> tuple[str, ...]:
    """For "A (B)" or "A / B" where each part alone is an alias: the codes both parts can mean, one when they
    agree ("Arab Saudi (KSA)"; "Amerika Serikat (AS)", AS being American Samoa too), else every code either
    names (never guessed between). Empty when the value has no such form or a part is no alias."""
    found = _TWO_PARTS.match(value or "")
    if not found:
        return ()
    first, second = (_alias_codes(index, normalise_for(name, part)) for part in (found[1], found[2] or found[3]))
    if not first or not second:
        return ()
    return tuple(sorted(first & second if len(first & second) == 1 else first | second))


@lru_cache(maxsize=1 << 16)
def _fuzzy_once(name: str, key: str, threshold: float) -> tuple[str | None, str, float | None, str | None]:
    """A large file is harmonised in chunks that repeat the same odd spellings: score each one once."""
    return _fuzzy(name, _index(name), key, threshold)


def match_values(name: str, values: Iterable[str | None], threshold: float = 90.0) -> pa.Table:
    """One row per distinct input value: value, code (null unless sure), match, score, suggestions.

    match is 'exact' (an alias, score 100), 'fuzzy' (score >= threshold and a clear winner), 'ambiguous'
    (several codes fit: never guessed), 'unknown' or 'empty'. Exact aliases are a dict lookup, so files
    with many distinct but known spellings cost almost nothing; fuzzy work is done once per distinct value.
    """
    index = _index(name)
    out: dict[str, list[object]] = {field: [] for field in MATCH_SCHEMA.names}
    for value in dict.fromkeys(values):
        key = normalise_for(name, value)
        code: str | None = None
        score: float | None = None
        suggestions: str | None = None
        if is_placeholder_key(key):
            match = EMPTY
        elif key in index.exact:
            code, match, score = index.exact[key], EXACT, 100.0
        elif key in index.ambiguous:
            match, score, suggestions = AMBIGUOUS, 100.0, _suggest(name, index.ambiguous[key])
        elif _compact(key) in index.compact_exact:
            code, match, score = index.compact_exact[_compact(key)], EXACT, 100.0
        elif _compact(key) in index.compact_ambiguous:
            match, score = AMBIGUOUS, 100.0
            suggestions = _suggest(name, index.compact_ambiguous[_compact(key)])
        elif both := _both_parts(name, index, value):
            code, match, score = (both[0], EXACT, 100.0) if len(both) == 1 else (None, AMBIGUOUS, 100.0)
            suggestions = None if code else _suggest(name, both)
        else:
            code, match, score, suggestions = _fuzzy_once(name, key, threshold)
        out["value"].append(value)
        out["code"].append(code)
        out["match"].append(match)
        out["score"].append(score)
        out["suggestions"].append(suggestions)
    return pa.table(out, schema=MATCH_SCHEMA)


def nik_province_codes() -> set[str]:
    """Province codes valid as the first two NIK digits: today's 38 plus the codes of provinces they left.

    A NIK keeps the region of first registration, so a worker from Merauke registered before the 2022 split
    still has a NIK starting 91 although Merauke is now in Papua Selatan (93).
    """
    table = load("provinces")
    valid = set(table.column("code").to_pylist())
    for old in table.column("old_codes").to_pylist():
        valid.update(c for c in old.split("|") if c)
    return valid


@cache
def province_predecessors() -> dict[str, frozenset[str]]:
    """Province code -> the codes of every province it was part of (`old_codes`, followed back): 96 Papua Barat
    Daya -> {92, 91}, since Papua Barat itself left Papua. A record that still names the old province for a
    regency now in the new one ("Papua" with Kab. Merauke) is not a disagreement."""
    table = load("provinces")
    parents = {
        code: {c for c in old.split("|") if c}
        for code, old in zip(table.column("code").to_pylist(), table.column("old_codes").to_pylist(), strict=True)
    }
    out: dict[str, frozenset[str]] = {}
    for code in parents:
        seen: set[str] = set()
        todo = list(parents[code])
        while todo:
            old = todo.pop()
            if old not in seen:
                seen.add(old)
                todo.extend(parents.get(old, ()))
        out[code] = frozenset(seen)
    return out


@cache
def _informal_codes() -> dict[str, tuple[str, str]]:
    """Job title key (normalised, and without spaces) -> (its code, its code in an informal-sector placement)."""
    out: dict[str, tuple[str, str]] = {}
    for row in load("occupation_titles").to_pylist():
        if row.get("informal_code"):
            key = normalise_for("occupations", row["title"])
            out[key] = out[_compact(key)] = (row["code"], row["informal_code"])
    return out


def informal_code(title: str, code: str | None) -> str | None:
    """The unit group a job title coded `code` means in an informal-sector placement, where that differs
    (`informal_code` in occupation_titles.csv), else None. A bare "Caregiver" is 5321 (institution-based),
    the crosswalk having "Caregiver (Informal)" for 5322; in a private household it is 5322 (home-based).
    Only a title written as the crosswalk has it: a fuzzy spelling keeps the code (and message) it matched."""
    if code is None or code not in {base for base, _ in _informal_codes().values()}:
        return None
    key = normalise_for("occupations", title)
    base, informal = _informal_codes().get(key) or _informal_codes().get(_compact(key)) or (None, None)
    return informal if base == code else None

"""Onboarding an agency: check a sample file against a mapping, and draft a first mapping from its headers.

`check` is a dry run of the real stages (read -> map -> harmonise -> validate) on a file, with a throwaway
worker key, writing nothing anywhere: an engineer can try a new agency's file before it ever reaches an
inbox. Direct identifiers are masked in what it shows, and problems are counted per rule, never echoed.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from pipelines import config, mapping, readers, settings
from pipelines.config import AgencyConfig, ReadOptions
from pipelines.problems import ISSUE_SCHEMA, FileRejected
from pipelines.schema import PlacementSchema, load_schema

MASK = "****"
MASKED_ALWAYS = ("birth_date",)  # quasi-identifier, but with a name or NIK it identifies: never shown


@dataclass
class RuleCount:
    rule_id: str
    severity: str
    field: str | None
    rows: int
    message_en: str


@dataclass
class CheckReport:
    agency: str
    file: str
    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int | None = None
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_warned: int = 0
    matched: dict[str, str] = field(default_factory=dict)  # schema field -> header
    unmatched_headers: list[str] = field(default_factory=list)
    unmapped_fields: list[str] = field(default_factory=list)
    preview: list[dict[str, str | None]] = field(default_factory=list)  # masked
    rules: list[RuleCount] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rejected: str | None = None  # reason code when the file would be rejected
    rejected_reason: str | None = None

    @property
    def exit_code(self) -> int:
        """Like `sdmi run`: 1 when the agency would have to act on this file."""
        return 1 if self.rejected or self.rows_quarantined else 0

    def as_dict(self) -> dict:
        return {**self.__dict__, "rules": [r.__dict__ for r in self.rules], "exit_code": self.exit_code}


def masked_fields(schema: PlacementSchema) -> set[str]:
    return set(schema.direct_identifiers()) | set(MASKED_ALWAYS)


def _masked_preview_row(row: dict, schema: PlacementSchema, whole: bool = False) -> dict:
    """A mapped row as the check shows it: identifier columns masked, and any other value that holds the row's
    NIK, name, passport or birth date (typed into the wrong column) masked too, as a run's report masks it. A
    row with a field too many or too few (`whole`) has its values under other columns' names: all masked."""
    hidden = masked_fields(schema)

    def norm(value: object) -> str:
        return re.sub(r"[\W_]+", "", str(value).lower())

    identities = [n for k in hidden if row.get(k) is not None and len(n := norm(row[k])) >= 4]
    out = {}
    for k, v in row.items():
        if k == mapping.ROW:
            continue
        shown = v is None or (k not in hidden and not whole and not any(i in norm(v) for i in identities))
        out[k] = v if shown else MASK
    return out


def check(path: Path, cfg: AgencyConfig, preview_rows: int = 5, run_date: date | None = None) -> CheckReport:
    """Dry run of read -> map -> harmonise -> validate; nothing is written, the key is thrown away.

    The file is read and its header mapped by processing's own `process.read_and_map`: the declared layout,
    then detection when the file says otherwise, with the same warning. What a run would accept or reject
    before its first row, the check accepts or rejects too."""
    from pipelines import process, stage, validate
    from pipelines.keys import WorkerKeySecret

    # a configuration error (the schema, the rules, a suite not regenerated, expectations GX cannot run) stops
    # the check as it stops a run, before the file is read; other agencies' mappings are not this check's business
    validate.check_configuration(agencies=False)
    validate.check_agency(cfg)
    schema = load_schema()
    report = CheckReport(agency=cfg.agency, file=str(path))
    try:
        opened, _ = process.read_and_map(path, cfg, schema)
        read = opened.collect()  # rejects, as streaming in a run does, a file without data rows or a quote unclosed
        report.format, report.encoding, report.delimiter = read.format, read.encoding, read.delimiter
        report.header_row = read.header_row
        mapped = mapping.map_batch(read, cfg, schema)
    except FileRejected as rejected:
        report.rejected, report.rejected_reason = rejected.code, rejected.message.en
        return report
    report.matched = dict(mapped.matched)
    report.unmatched_headers = list(mapped.unmatched_headers)
    report.unmapped_fields = list(mapped.unmapped_fields)
    report.warnings += [w.en for w in [*read.warnings, *mapped.warnings]]
    shifted = read.row_issues.filter(pc.equal(read.row_issues["rule_id"], stage.RAGGED_ROW))
    ragged = set(shifted["source_row"].to_pylist())
    for row in mapped.table.slice(0, preview_rows).to_pylist():
        report.preview.append(_masked_preview_row(row, schema, whole=row.get(mapping.ROW) in ragged))
    sha = settings.sha256_file(path)
    throwaway = WorkerKeySecret.from_key(secrets.token_bytes(32), source="throwaway (agency check)")
    received = datetime.now(UTC).replace(microsecond=0)
    batch_id = f"{cfg.agency}-check-{sha[:8]}"
    harmonised = process.harmonise_chunk(mapped.table, cfg, sha, batch_id, received, throwaway, schema)
    gx_issues = validate.validate(harmonised.table, cfg, run_date=run_date, schema=schema)
    row_issues = read.row_issues.cast(ISSUE_SCHEMA) if read.row_issues.num_rows else ISSUE_SCHEMA.empty_table()
    issues = pa.concat_tables([row_issues, harmonised.issues, gx_issues])
    issues = stage.mask_identifier_values(issues, harmonised.table, schema)  # as a run stages them
    _, _, counts = stage.split(harmonised.table, issues, read.table, schema)
    report.rows_read, report.rows_accepted = counts.rows_read, counts.rows_accepted
    report.rows_quarantined, report.rows_warned = counts.rows_quarantined, counts.rows_warned
    report.rules = _rule_counts(issues)
    return report


def _rule_counts(issues: pa.Table) -> list[RuleCount]:
    """Rows per rule (a row breaking a rule twice counts once); critical first, then by rows."""
    rows: dict[tuple, set[int]] = {}
    messages: dict[tuple, str] = {}
    for r in issues.select(["source_row", "rule_id", "severity", "field", "message_en"]).to_pylist():
        key = (r["rule_id"], r["severity"], r["field"])
        rows.setdefault(key, set()).add(r["source_row"])
        messages.setdefault(key, r["message_en"] or "")
    out = [RuleCount(k[0], k[1], k[2], len(v), messages[k]) for k, v in rows.items()]
    return sorted(out, key=lambda r: (r.severity != "critical", -r.rows, r.rule_id))


# ------------------------------------------------------------------------------------------ draft
@dataclass
class Draft:
    code: str
    text: str  # the YAML, comments included
    matched: dict[str, str]  # schema field -> header
    unmatched_headers: list[str]
    todo_required: list[str]  # required fields left as `null  # TODO`: the file will not load until resolved


def known_aliases(schema: PlacementSchema, agencies_dir: Path | None = None) -> dict[str, list[str]]:
    """Schema field -> every header alias known: the schema's own, then every onboarded agency's."""
    out: dict[str, list[str]] = {name: [] for name in schema.mapped_field_names()}
    for f in schema.fields:
        if f.name in out:
            out[f.name] += f.aliases
    for cfg in config.agencies(agencies_dir).values():
        for name, aliases in cfg.columns.items():
            out.setdefault(name, []).extend(aliases)
        out.setdefault("source_record_id", []).extend(cfg.record_id)
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


def _required(schema: PlacementSchema) -> tuple[list[list[str]], set[str]]:
    mappable = set(schema.mapped_field_names())
    groups = [list(g) for g in schema.file_requirements]
    rows_required = {f.name for f in schema.fields if f.required and f.name in mappable}
    return groups, rows_required


def _q(value: object) -> str:
    """A YAML scalar, quoted when it needs to be."""
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000).strip().removesuffix("\n...")


def draft(code: str, path: Path, agencies_dir: Path | None = None) -> Draft:
    """Match the file's headers against known aliases and write a commented YAML for a person to finish.

    Only the file's layout and header are read, so a template with just the column names will do; a file the
    readers cannot take (empty, not a table) raises FileRejected."""
    if not config.AGENCY_CODE.match(code):
        raise ValueError("agency code must be lower-case letters, digits and _ (2-41 chars)")
    schema = load_schema()
    aliases = known_aliases(schema, agencies_dir)
    expected = {readers.normalise_header(a) for names in aliases.values() for a in names}
    read = readers.open_file(path, ReadOptions(), expected, header_only=True)  # no data row is needed
    headers = {readers.normalise_header(h): h for h in read.header if h != mapping.ROW}
    matched: dict[str, str] = {}
    used: set[str] = set()
    for name, names in aliases.items():
        for alias in names:
            hit = headers.get(readers.normalise_header(alias))
            if hit is not None and hit not in used:
                matched[name] = hit
                used.add(hit)
                break
    unmatched = [h for h in read.header if h not in used and h != mapping.ROW]
    groups, rows_required = _required(schema)
    todo: list[str] = []
    for group in groups:
        if not any(f in matched for f in group):
            todo += [f for f in group if f not in todo]
    todo += [f for f in sorted(rows_required) if f not in matched and f not in todo]
    text = _render(code, path, read, schema, matched, unmatched, todo, groups)
    return Draft(code, text, matched, unmatched, todo)


def _render(
    code: str,
    path: Path,
    read: readers.ReadResult,
    schema: PlacementSchema,
    matched: dict[str, str],
    unmatched: list[str],
    todo: list[str],
    groups: list[list[str]],
) -> str:
    fmt = read.format if read.format in ("csv", "xlsx", "json") else "auto"
    lines = [
        f"# Drafted by `sdmi agency new {code}` from {path.name} on {date.today().isoformat()}.",
        f"# A draft: `sdmi run` reads neither this file nor inbox/{code}/ until it is named {code}.yaml.",
        "# 1. Review every line and resolve each TODO.",
        f"# 2. Try it: sdmi agency check --agency {code} --mapping <this file> {shlex.quote(path.name)}",
        f"# 3. Rename it to {code}.yaml in the agencies folder: the agency is then onboarded.",
        f"agency: {code}",
        "name: TODO full name of the agency  # TODO",
        "kind: other  # TODO one of: national, provincial, district, recruitment_company, mission, other",
        "priority: 50  # TODO lower wins when agencies disagree on a placement (SISKOP2MI is 1)",
        "read:",
        f"  format: {fmt}",
    ]
    if read.encoding:
        lines.append(f"  encoding: {_q(read.encoding)}")
    if read.delimiter:
        lines.append(f"  delimiter: {_q(read.delimiter)}")
    if read.sheet:
        lines.append(f"  sheet: {_q(read.sheet)}")
    if read.header_row:
        lines.append(f"  header_row: {read.header_row}")
    if "source_record_id" in matched:
        lines.append(f"record_id: [{_q(matched['source_record_id'])}]")
    else:
        lines.append("# TODO record_id: [<header of the agency's own record id>]  (none matched; without it each")
        lines.append("#   record is identified by a fingerprint of its row, and corrections cannot supersede)")
    lines.append("columns:")
    required_any = {f: g for g in groups for f in g}
    for f in schema.mapped_field_names():
        if f == "source_record_id":
            continue
        if f in matched:
            lines.append(f"  {f}: [{_q(matched[f])}]")
        elif f in todo:
            group = required_any.get(f)
            why = (
                f"the file is rejected without one of: {' / '.join(group)}"
                if group
                else "required: rows without it are quarantined"
            )
            lines.append(f"  {f}: null  # TODO {why}; put its header alias here, or delete the line")
        else:
            lines.append(f"  # {f}: []  # not found (optional)")
    if unmatched:
        lines.append("# TODO columns in the file that no field uses (ignored unless mapped above):")
        lines += [f"#   - {_q(h)}" for h in unmatched]
    lines += [
        "values: {}  # TODO value maps to codes of the field's code list, e.g. sex: {Laki-laki: M, Perempuan: F}",
        'date_formats: ["%d/%m/%Y", "%d-%m-%Y", "%Y-%m-%d"]  # TODO check against the file',
        "",
    ]
    return "\n".join(lines)


def draft_path(code: str, directory: Path) -> Path:
    return directory / f"{code}{config.DRAFT_SUFFIX}"


def write_draft(result: Draft, directory: Path, overwrite: bool = False) -> Path:
    """Write the draft as `<code>.draft.yaml` beside the mappings. The loader passes drafts over: written as
    `<code>.yaml`, its `null  # TODO` stopped every agency's run until it was finished. An onboarded agency's
    own mapping is never written here."""
    target = draft_path(result.code, directory)
    onboarded = directory / f"{result.code}{config.MAPPING_SUFFIX}"
    if onboarded.exists() and not overwrite:
        raise FileExistsError(
            f"{onboarded} sudah ada: lembaga ini sudah terdaftar; --stdout mencetak draf untuk dibandingkan, --force "
            f"menulis {target.name} di sampingnya. / {onboarded} exists: the agency is already onboarded; --stdout "
            f"prints a draft to compare, --force writes {target.name} beside it."
        )
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} sudah ada; --force untuk menimpanya, --stdout untuk mencetak. / "
            f"{target} exists; --force overwrites it, --stdout prints the draft instead."
        )
    target.write_text(result.text, encoding="utf-8")
    return target


def next_steps(code: str, draft: Path, sample: Path) -> str:
    """What to do with a draft written by `sdmi agency new`, as commands that work when pasted."""
    onboarded = draft.with_name(f"{code}{config.MAPPING_SUFFIX}")
    check = f"sdmi agency check --agency {code} --mapping {shlex.quote(str(draft))} {shlex.quote(str(sample))}"
    return "\n".join(
        [
            "Langkah berikutnya / next steps:",
            f"  1. isi setiap TODO / resolve every TODO in {draft}",
            f"  2. coba / try it: {check}",
            f"  3. daftarkan / onboard it: mv {shlex.quote(str(draft))} {shlex.quote(str(onboarded))}",
            f"     (sampai saat itu `sdmi run` tidak membaca inbox/{code}/ / until then `sdmi run` does not read "
            f"inbox/{code}/)",
        ]
    )

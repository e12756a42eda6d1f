"""License import checks: every row against the database, the preview, the plan, and applying it.

``check_license_file`` reads a CSV or XLSX file held in memory (never written to disk), matches
its columns to ``ProviderLicenseResource``, cleans every cell with the column's widget, and
checks the rows together: providers by NPI, duplicate rows, one active license per provider and
state. It returns a ``Preview`` (counts, per-row changes and errors with the file's line
numbers and the column at fault) and a plan. ``apply_license_plan`` writes the plan through
``clinical.actions.licenses.import_licenses``, in one transaction, or writes nothing.

"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection

from clinical.actions import licenses as license_actions
from clinical.calendar import license_valid_sql
from clinical.imports.files import (
    DATE_FIELDS,
    FIELDS,
    PROGRESS_EVERY,
    FileError,
    Progress,
    Table,
    _is_blank,
    _no_progress,
    match_columns,
    read_table,
)
from clinical.imports.resources import ProviderLicenseResource
from clinical.models import LicenseStatus, ProviderLicense
from core.audit import Actor

# --- checking --------------------------------------------------------------------------------


@dataclass
class RowResult:
    """One data row's outcome: ``new``, ``updated``, ``unchanged`` or ``error``."""

    line: int
    outcome: str
    key: str
    errors: list[tuple[str, str]] = field(default_factory=list)  # (column heading, message)
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (column heading, before, after)
    routing: str = ""  # "starts" or "stops" when confirming changes whether it counts now for routing


@dataclass
class Preview:
    """What confirming the file would do, and why it cannot when it has errors."""

    file_name: str
    source: str
    rows: int
    blank_rows: int
    ignored_columns: list[str]
    counts: dict[str, int]
    routing: dict[str, int]  # licenses that would start and stop counting now, in their state's calendar
    results: list[RowResult]  # every row except the unchanged ones, in file order
    plan: dict  # for apply_license_plan: JSON-ready

    @property
    def has_errors(self) -> bool:
        return self.counts["error"] > 0

    def to_json(self) -> dict:
        """Return the preview without its plan, for storing and showing."""
        # Built by hand: dataclasses.asdict deep-copies, seconds for 50,000 rows.
        names = ("file_name", "source", "rows", "blank_rows", "counts", "routing")
        data = {name: getattr(self, name) for name in names}
        data["ignored_columns"] = self.ignored_columns
        data["results"] = [
            {"line": r.line, "outcome": r.outcome, "key": r.key, "errors": r.errors, "changes": r.changes,
             "routing": r.routing}
            for r in self.results
        ]  # fmt: skip
        return data


@dataclass
class _Row:
    line: int
    values: dict
    errors: list[tuple[str, str]]
    provider_id: int | None = None
    existing: tuple | None = None  # (id, *FIELDS) of the license it updates
    routing: str = ""


def check_license_file(data: bytes, file_name: str, *, max_rows: int, progress: Progress = _no_progress) -> Preview:
    """Read and check a license file without writing anything; return its ``Preview``."""
    progress("reading", 0, 0)
    table = read_table(data, file_name, max_rows=max_rows)
    resource = ProviderLicenseResource()
    columns, ignored = match_columns(table.headers, resource)
    if not table.rows:
        raise FileError("The file has a heading row but no licenses below it.")
    headings = {name: table.headers[index] for name, index in columns.items()}
    rows = [_clean_row(line, cells, columns, resource, headings) for line, cells in _counted(table.rows, progress)]
    progress("matching", len(rows), len(rows))
    _match_providers(rows, headings)
    licenses = _match_licenses(rows, set(columns))
    _check_expiry_after_issue(rows, headings)
    _check_duplicates(rows, headings)
    _check_one_active_per_state(rows, licenses, headings)
    _check_routing_now(rows)
    return _preview(rows, table, file_name, ignored, headings)


def _counted(rows: list, progress: Progress) -> Iterator:
    for done, row in enumerate(rows):
        if done % PROGRESS_EVERY == 0:
            progress("checking", done, len(rows))
        yield row


def _clean_row(line: int, cells: list, columns: dict[str, int], resource, headings: dict[str, str]) -> _Row:
    values, errors = {}, []
    for name, index in columns.items():
        raw = cells[index] if index < len(cells) else None
        if _is_blank(raw):
            if name in resource.required_columns:
                errors.append((headings[name], "is required"))
            values[name] = None if name in DATE_FIELDS else ""
            continue
        try:
            values[name] = resource.fields[name].widget.clean(raw)
        except ValueError as error:
            errors.append((headings[name], str(error)))
    return _Row(line, values, errors)


def _match_providers(rows: list[_Row], headings: dict[str, str]) -> None:
    npis = sorted({row.values["npi"] for row in rows if row.values.get("npi")})
    with connection.cursor() as cursor:
        cursor.execute("SELECT npi, id FROM clinical_provider WHERE npi = ANY(%s)", [npis])
        providers = dict(cursor.fetchall())
    for row in rows:
        npi = row.values.get("npi")
        row.provider_id = providers.get(npi)
        if npi and row.provider_id is None:
            row.errors.append((headings["npi"], f"no provider has NPI {npi}; add the provider first"))


def _license_key(provider, state, number) -> tuple:
    return provider, state, (number or "").casefold()


def _existing_licenses(provider_ids: list[int]) -> list[tuple]:
    """Return (id, provider_id, *FIELDS) of every license these providers hold."""
    columns = ", ".join(FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, provider_id, {columns} FROM clinical_providerlicense WHERE provider_id = ANY(%s)",  # noqa: S608 (column names are constants)
            [provider_ids],
        )
        return cursor.fetchall()


def _match_licenses(rows: list[_Row], present: set[str]) -> list[tuple]:
    """Attach to each row the license it updates (same provider, state and number), if any.

    Optional columns the file lacks keep the license's values; a new license gets the defaults.
    Return the licenses on record of the file's providers.
    """
    licenses = _existing_licenses(sorted({row.provider_id for row in rows if row.provider_id}))
    by_key = {_license_key(lic[1], lic[2], lic[3]): lic for lic in licenses}
    for row in rows:
        found = by_key.get(_license_key(row.provider_id, row.values.get("state"), row.values.get("license_number")))
        if found and row.provider_id:
            row.existing = (found[0], *found[2:])
        for name in FIELDS:
            if name not in present:
                row.values[name] = row.existing[1 + FIELDS.index(name)] if row.existing else _default(name)
    return licenses


def _default(name: str):
    return ProviderLicense._meta.get_field(name).get_default()


def _check_expiry_after_issue(rows: list[_Row], headings: dict[str, str]) -> None:
    """Refuse an expiry on or before the issue date, including an expiry on record the file keeps."""
    for row in rows:
        issued, expires = row.values.get("issued_on"), row.values.get("expires_on")
        if not (isinstance(issued, dt.date) and isinstance(expires, dt.date)) or expires > issued:
            continue
        if "expires_on" in headings:
            row.errors.append((headings["expires_on"], f"{expires} is not after the issue date {issued}"))
        else:
            row.errors.append((headings["issued_on"], f"{issued} is not before the expiry date on record {expires}"))


def _check_duplicates(rows: list[_Row], headings: dict[str, str]) -> None:
    first_line = {}
    for row in rows:
        if not all(row.values.get(name) for name in ("npi", "state", "license_number")):
            continue
        key = _license_key(row.values["npi"], row.values["state"], row.values["license_number"])
        if key in first_line:
            row.errors.append(
                (headings["license_number"], f"repeats line {first_line[key]} (same NPI, state and license number)")
            )
        else:
            first_line[key] = row.line


def _check_one_active_per_state(rows: list[_Row], licenses: list[tuple], headings: dict[str, str]) -> None:
    """Refuse rows that would leave a provider two active licenses in one state, counting those on record."""
    active = defaultdict(list)  # (provider, state) -> what would be active there
    candidates = [row for row in rows if row.provider_id and not row.errors]
    named = {row.existing[0] for row in rows if row.existing}  # licenses on record that the file sets
    for row in candidates:
        if row.values["status"] == LicenseStatus.ACTIVE:
            active[row.provider_id, row.values["state"]].append(f"line {row.line}")
    for lic in licenses:
        if lic[0] not in named and lic[5] == LicenseStatus.ACTIVE:
            active[lic[1], lic[2]].append(f"license {lic[3]} on record")
    for row in candidates:
        place = (row.provider_id, row.values["state"])
        if row.values["status"] == LicenseStatus.ACTIVE and len(active[place]) > 1:
            others = ", ".join(what for what in active[place] if what != f"line {row.line}")
            message = f"a second active license in {place[1]} for this provider ({others})"
            row.errors.append((headings["status"], message))


# Whether each license counts now, in its state's calendar (clinical.calendar), as on record (a)
# and as the file would leave it (b): one statement for the whole file.
_COUNTS_NOW_SQL = f"""
SELECT {license_valid_sql("a", "statement_timestamp()")}, {license_valid_sql("b", "statement_timestamp()")}
FROM unnest(%s::varchar[], %s::varchar[], %s::date[], %s::date[], %s::varchar[], %s::varchar[], %s::date[],
            %s::date[]) WITH ORDINALITY
     AS u(a_status, a_state, a_issued_on, a_expires_on, b_status, b_state, b_issued_on, b_expires_on, n)
CROSS JOIN LATERAL (SELECT a_status AS status, a_state AS state, a_issued_on AS issued_on, a_expires_on AS expires_on) a
CROSS JOIN LATERAL (SELECT b_status AS status, b_state AS state, b_issued_on AS issued_on, b_expires_on AS expires_on) b
ORDER BY n
"""  # noqa: S608 (no input in the text)
_ROUTING_FIELDS = ("status", "state", "issued_on", "expires_on")


def _check_routing_now(rows: list[_Row]) -> None:
    """Mark each clean row that would start or stop counting now for routing once confirmed."""
    clean = [row for row in rows if not row.errors]
    if not clean:
        return
    index = {name: i for i, name in enumerate(FIELDS, start=1)}
    before = [
        tuple(row.existing[index[name]] for name in _ROUTING_FIELDS) if row.existing else ("", "", None, None)
        for row in clean
    ]
    after = [tuple(row.values[name] for name in _ROUTING_FIELDS) for row in clean]
    columns = [list(column) for column in zip(*before, strict=True)] + [
        list(column) for column in zip(*after, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_NOW_SQL, columns)
        answers = cursor.fetchall()
    for row, (was, will) in zip(clean, answers, strict=True):
        row.routing = "starts" if will and not was else "stops" if was and not will else ""


# --- preview and plan ------------------------------------------------------------------------


def _preview(rows: list[_Row], table: Table, file_name: str, ignored: list[str], headings: dict[str, str]) -> Preview:
    counts = {"new": 0, "updated": 0, "unchanged": 0, "error": 0}
    routing = {"starts": 0, "stops": 0}
    results, plan = [], {"new": [], "changed": [], "expected": []}
    labels = {name: headings.get(name) or ProviderLicenseResource.fields[name].column_name for name in FIELDS}
    for row in rows:
        result = _result(row, labels)
        counts[result.outcome] += 1
        if result.routing:
            routing[result.routing] += 1
        if result.outcome != "unchanged":
            results.append(result)
        _add_to_plan(plan, row, result.outcome)
    return Preview(
        file_name=file_name, source=table.source, rows=len(rows), blank_rows=table.blank_rows,
        ignored_columns=ignored, counts=counts, routing=routing, results=results, plan=plan,
    )  # fmt: skip


def _key(row: _Row) -> str:
    return " ".join(str(row.values.get(name) or "?") for name in ("npi", "state", "license_number"))


def _result(row: _Row, labels: dict[str, str]) -> RowResult:
    if row.errors:
        return RowResult(row.line, "error", _key(row), errors=row.errors)
    after = [row.values[name] for name in FIELDS]
    if row.existing is None:
        changes = [(labels[name], "", _shown(value)) for name, value in zip(FIELDS, after, strict=True) if value]
        return RowResult(row.line, "new", _key(row), changes=changes, routing=row.routing)
    before = row.existing[1:]
    changes = [
        (labels[name], _shown(old), _shown(new))
        for name, old, new in zip(FIELDS, before, after, strict=True)
        if old != new
    ]
    return RowResult(row.line, "updated" if changes else "unchanged", _key(row), changes=changes, routing=row.routing)


def _shown(value) -> str:
    return "" if value is None else str(value)


def _json_values(values) -> list:
    return [value.isoformat() if isinstance(value, dt.date) else value for value in values]


def _add_to_plan(plan: dict, row: _Row, outcome: str) -> None:
    if outcome == "error":
        return
    after = _json_values(row.values[name] for name in FIELDS)
    if outcome == "new":
        plan["new"].append([row.provider_id, *after])
    elif outcome in ("updated", "unchanged"):
        plan["expected"].append([row.existing[0], *_json_values(row.existing[1:])])
        if outcome == "updated":
            plan["changed"].append([row.existing[0], row.provider_id, *after])


# --- applying --------------------------------------------------------------------------------


def _values(raw: list) -> dict:
    values = dict(zip(FIELDS, raw, strict=True))
    for name in DATE_FIELDS:
        values[name] = dt.date.fromisoformat(values[name]) if values[name] else None
    return values


def apply_license_plan(plan: dict, *, actor: Actor, file_name: str) -> dict[str, int]:
    """Write a checked file's plan in one transaction with history reason "import <file name>".

    Raise ``ActionError`` (nothing written) if a license the file names changed since the check.
    """
    new = [ProviderLicense(provider_id=provider_id, **_values(raw)) for provider_id, *raw in plan["new"]]
    changed = [ProviderLicense(pk=pk, provider_id=provider, **_values(raw)) for pk, provider, *raw in plan["changed"]]
    expected = {pk: tuple(_values(raw).values()) for pk, *raw in plan["expected"]}
    license_actions.import_licenses(
        new=new, changed=changed, expected=expected, actor=actor, reason=f"import {file_name}"
    )
    return {"new": len(new), "updated": len(changed), "unchanged": len(expected) - len(changed)}

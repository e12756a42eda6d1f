"""Benchmark of the license import (``manage.py bench_import``) on the real PostgreSQL and Redis.

Runs in its own database (``<DATABASE name>_import_bench``) and Redis database, so it never
touches the console's data. It builds providers and the licenses they hold, writes a license
file the way a state board would send it (a third updates or repeats licenses on record, the
rest are new), and times the two steps the console runs: the check (read, validate, preview
stored in Redis) and the confirm (claim the plan, apply it in one transaction).
"""

import csv
import datetime as dt
import io
import time

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from clinical.imports import jobs as import_jobs
from clinical.models import ProviderLicense
from clinical.reference import states
from clinical.validators import make_npi
from core.redis import get_redis

HEADINGS = ["NPI", "State", "License number", "License type", "Status", "Issued on", "Expires on", "Notes"]
_TABLES = (
    "clinical_historicalproviderlicense", "clinical_providerlicense", "clinical_historicalprovider",
    "clinical_provider", "search_outboxentry",
)  # fmt: skip
_PROVIDERS_SQL = """
INSERT INTO clinical_provider (first_name, last_name, npi, email, phone, specialty, is_active, availability, created_at)
SELECT 'Bench', 'Provider ' || n, npi, 'bench' || n || '@example.test', '+1415' || lpad(n::text, 7, '0'),
       'family_medicine', true, 'offline', now()
FROM unnest(%s::int[], %s::varchar[]) AS p(n, npi)
RETURNING id, npi
"""
_LICENSES_SQL = """
INSERT INTO clinical_providerlicense (provider_id, state, license_number, license_type, status, issued_on, expires_on,
                                      notes)
SELECT provider_id, state, number, 'MD', 'active', %s, %s, ''
FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[]) AS l(provider_id, state, number)
"""
LICENSES_PER_PROVIDER = 3


def reset() -> None:
    """Empty the tables the bench writes."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE")


def _state_of(provider: int, slot: int, codes: list[str]) -> str:
    # 17 and the number of codes are coprime: a provider's three slots fall in three states.
    return codes[(provider + 17 * slot) % len(codes)]


def prepare(rows: int) -> list[tuple[str, int]]:
    """Create the providers and the licenses on record; return (NPI, provider number) per provider."""
    reset()
    count = -(-rows // LICENSES_PER_PROVIDER)
    numbers = list(range(1, count + 1))
    npis = [make_npi(f"{700_000_000 + n:09d}") for n in numbers]
    codes = [row["code"] for row in states()]
    today = timezone.localdate()
    with connection.cursor() as cursor:
        cursor.execute(_PROVIDERS_SQL, [numbers, npis])
        ids = dict((npi, pk) for pk, npi in cursor.fetchall())
        cursor.execute(
            _LICENSES_SQL,
            [
                today - dt.timedelta(days=400), today + dt.timedelta(days=330), [ids[npi] for npi in npis],
                [_state_of(n, 0, codes) for n in numbers], [f"BENCH-{n}-0" for n in numbers],
            ],
        )  # fmt: skip
    return list(zip(npis, numbers, strict=True))


def license_file(providers: list[tuple[str, int]], rows: int, file_format: str) -> bytes:
    """Return a file of ``rows`` licenses: slot 0 updates (even providers) or repeats (odd) one on record."""
    codes = [row["code"] for row in states()]
    today = timezone.localdate()
    issued, old_expiry = today - dt.timedelta(days=400), today + dt.timedelta(days=330)
    table = []
    for slot in range(LICENSES_PER_PROVIDER):
        for npi, n in providers:
            expires = old_expiry if slot == 0 and n % 2 else today + dt.timedelta(days=730)
            row = [npi, _state_of(n, slot, codes), f"BENCH-{n}-{slot}", "MD", "active", issued, expires, ""]
            table.append(row)
    table = table[:rows]
    return _xlsx(table) if file_format == "xlsx" else _csv(table)


def _csv(table: list[list]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADINGS)
    writer.writerows(
        [[cell.strftime("%m/%d/%Y") if isinstance(cell, dt.date) else cell for cell in row] for row in table]
    )
    return out.getvalue().encode("utf-8-sig")


def _xlsx(table: list[list]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Licenses")
    sheet.append(HEADINGS)
    for row in table:
        sheet.append([int(row[0]), *row[1:]])  # NPIs as numbers, dates as date cells: as Excel keeps them
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def run(rows: int, file_format: str, *, report=lambda line: None) -> dict:
    """Prepare, write a file, then time the check and the confirm as the console runs them."""
    started = time.perf_counter()
    providers = prepare(rows)
    data = license_file(providers, rows, file_format)
    user, _ = get_user_model().objects.get_or_create(username="import-bench", defaults={"is_staff": True})
    report(f"{file_format}: {rows} rows, {len(data) / 1e6:.1f} MB, set up in {time.perf_counter() - started:.1f} s")
    with override_settings(IMPORT_BACKGROUND_BYTES=0):  # queue both steps, then run them here as the worker does
        job = import_jobs.create_job(user=user, file_name=f"bench.{file_format}", data=data)
        check_s = _timed(lambda: import_jobs.run_step(job.upload.pk, "check"))
        job = _reloaded(job, user, "previewed")
        preview_counts = job.counts()
        import_jobs.confirm_job(job)
        confirm_s = _timed(lambda: import_jobs.run_step(job.upload.pk, "apply"))
    _reloaded(job, user, "done")
    get_redis().delete(job.key)
    return {
        "format": file_format, "rows": rows, "bytes": len(data), "check_s": check_s, "confirm_s": confirm_s,
        "counts": preview_counts, "history_rows": _history_rows(f"import bench.{file_format}"),
    }  # fmt: skip


def _reloaded(job, user, phase: str) -> import_jobs.ImportJob:
    again = import_jobs.get_job(job.token, user)
    if again is None:
        raise RuntimeError("The job vanished; run the bench again.")
    if again.phase != phase or again.counts().get("error"):
        raise RuntimeError(f"The import ended as {again.phase}: {again.message} {again.counts()}")
    return again


def _timed(step) -> float:
    started = time.perf_counter()
    step()
    return round(time.perf_counter() - started, 2)


def _history_rows(reason: str) -> int:
    return ProviderLicense.history.filter(history_change_reason=reason).count()

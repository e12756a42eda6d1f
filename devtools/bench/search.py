"""``bench_search``: the queries support agents type, the search backend against the admin's default search.

Each query names one intended record, picked at random from the data (``generate_data``), and
is run the way the console runs it: the changelist's queryset, searched, counted by the admin's
paginator and its first page loaded. The default admin search is a plain ``ModelAdmin`` with
``search_fields`` and no prefixes (``icontains`` over every field, joins included) on the same
queryset. Besides latency, each engine is scored on whether the intended record is in its top 3.

A query can only have one intended record when it identifies one: targets are patients whose
full name (or, for a partial name, whose name prefixes) no other patient shares, except for
"name + date of birth", whose targets share their name with someone and are told apart by the
date, as callers are.
"""

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib import admin
from django.db import connection
from django.test import RequestFactory

from clinical.models import Patient, Visit
from ops_console.admin_site import ops_site

PAGE = 50  # rows a changelist page loads

KINDS = (
    "full name",
    "partial name",
    "misspelled name",
    "phone (415) 555-0101",
    "phone 415.555.0101",
    "phone +1 415 555 0101",
    "e-mail, other case",
    "MRN",
    "visit id",
    "name + date of birth",
)


@dataclass(frozen=True)
class Query:
    kind: str
    typed: str
    model: type  # Patient or Visit: the changelist an agent would search
    intended: int


@dataclass
class Timing:
    """Latencies (ms) and top-3 hits of one engine on one kind of query."""

    ms: list[float] = field(default_factory=list)
    hits: int = 0

    def p(self, fraction: float) -> float:
        """Return the nearest-rank percentile, in milliseconds."""
        ordered = sorted(self.ms)
        return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)] if ordered else 0.0

    @property
    def top3(self) -> float:
        return self.hits / len(self.ms) if self.ms else 0.0

    def summary(self) -> dict:
        mean = round(statistics.fmean(self.ms), 1) if self.ms else 0.0
        return {"n": len(self.ms), "p50_ms": round(self.p(0.5), 1), "p95_ms": round(self.p(0.95), 1),
                "mean_ms": mean, "top3": round(self.top3, 3)}  # fmt: skip


# --- picking the queries -------------------------------------------------------------------------

_UNIQUE_NAMES = """
SELECT p.id FROM clinical_patient p
WHERE NOT EXISTS (SELECT 1 FROM clinical_patient q
                  WHERE q.last_name = p.last_name AND q.first_name = p.first_name AND q.id <> p.id)
  AND NOT EXISTS (SELECT 1 FROM clinical_patient q WHERE q.phone = p.phone AND q.id <> p.id)
ORDER BY md5(p.id::text || %(seed)s) LIMIT %(limit)s
"""
_SHARED_NAMES = """
SELECT p.id FROM clinical_patient p
WHERE EXISTS (SELECT 1 FROM clinical_patient q
              WHERE q.last_name = p.last_name AND q.first_name = p.first_name AND q.id <> p.id)
  AND NOT EXISTS (SELECT 1 FROM clinical_patient q WHERE q.last_name = p.last_name
                  AND q.first_name = p.first_name AND q.date_of_birth = p.date_of_birth AND q.id <> p.id)
ORDER BY md5(p.id::text || %(seed)s) LIMIT %(limit)s
"""
_VISITS = "SELECT id FROM clinical_visit ORDER BY md5(id::text || %(seed)s) LIMIT %(limit)s"
_PREFIX_COUNT = "SELECT count(*) FROM clinical_patient WHERE last_name LIKE %s AND first_name LIKE %s"


def _ids(sql: str, seed: int, limit: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"seed": str(seed), "limit": limit})
        return [row[0] for row in cursor.fetchall()]


def _partial(patient: Patient) -> str | None:
    """Return the first letters of each name if they identify the patient, else None."""
    first, last = patient.first_name[:3], patient.last_name[:4]
    with connection.cursor() as cursor:
        cursor.execute(_PREFIX_COUNT, [f"{last}%", f"{first}%"])
        return f"{first.lower()} {last.lower()}" if cursor.fetchone()[0] == 1 else None


def misspell(name: str, rng: random.Random) -> str:
    """Return ``name`` with two neighbouring letters swapped (never the first letter)."""
    positions = [i for i in range(1, len(name) - 1) if name[i] != name[i + 1]]
    i = rng.choice(positions)
    return name[:i] + name[i + 1] + name[i] + name[i + 2 :]


def _phones(e164: str) -> list[str]:
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    return [f"({area}) {exchange}-{line}", f"{area}.{exchange}.{line}", f"+1 {area} {exchange} {line}"]


def _dob(patient: Patient, n: int) -> str:
    day = patient.date_of_birth
    return [f"{day:%Y-%m-%d}", f"{day:%m/%d/%Y}", f"{day.month}/{day.day}/{day:%y}"][n % 3]


def pick_queries(*, per_kind: int, seed: int) -> list[Query]:
    """Return ``per_kind`` queries of each kind, each naming its intended record."""
    rng = random.Random(seed)
    unique = Patient.objects.in_bulk(_ids(_UNIQUE_NAMES, seed, per_kind * 8))
    people = [unique[pk] for pk in sorted(unique, key=lambda pk: rng.random())]
    surnames = set(Patient.objects.values_list("last_name", flat=True).distinct())
    queries = []
    for n, p in enumerate(people[:per_kind]):
        queries += [
            Query("full name", f"{p.first_name} {p.last_name}", Patient, p.pk),
            *(Query(kind, typed, Patient, p.pk) for kind, typed in zip(KINDS[3:6], _phones(p.phone), strict=True)),
            Query("e-mail, other case", p.email.upper() if n % 2 else p.email.title(), Patient, p.pk),
            Query("MRN", p.mrn if n % 2 else p.mrn.lower(), Patient, p.pk),
        ]
    partial = [(p, typed) for p in people if (typed := _partial(p))][:per_kind]
    queries += [Query("partial name", typed, Patient, p.pk) for p, typed in partial]
    typos = [(p, misspell(p.last_name, rng)) for p in people if len(p.last_name) >= 5]
    typos = [(p, typo) for p, typo in typos if typo not in surnames][:per_kind]
    queries += [Query("misspelled name", f"{p.first_name} {typo}", Patient, p.pk) for p, typo in typos]
    shared = Patient.objects.in_bulk(_ids(_SHARED_NAMES, seed, per_kind))
    queries += [
        Query("name + date of birth", f"{p.first_name} {p.last_name} {_dob(p, n)}", Patient, p.pk)
        for n, p in enumerate(shared.values())
    ]
    visits = Visit.objects.in_bulk(_ids(_VISITS, seed, per_kind))
    queries += [Query("visit id", visit.public_id, Visit, pk) for pk, visit in visits.items()]
    return sorted(queries, key=lambda q: KINDS.index(q.kind))


# --- running them --------------------------------------------------------------------------------


class DefaultPatientSearch(admin.ModelAdmin):
    """The admin's default search: icontains over the fields an agent would search on."""

    search_fields = ["first_name", "last_name", "mrn", "phone", "email", "date_of_birth"]
    ordering = ["last_name", "first_name", "id"]


class DefaultVisitSearch(admin.ModelAdmin):
    search_fields = [
        "public_id", "patient__first_name", "patient__last_name", "patient__mrn",
        "provider__first_name", "provider__last_name", "provider__npi",
    ]  # fmt: skip
    ordering = ["-requested_at", "-id"]


def engines(request) -> dict[str, Callable[[Query], list[int]]]:
    """Return each engine as a function running a query as the changelist would, returning the first page's ids."""
    console = {Patient: ops_site.get_model_admin(Patient), Visit: ops_site.get_model_admin(Visit)}
    default = {Patient: DefaultPatientSearch(Patient, ops_site), Visit: DefaultVisitSearch(Visit, ops_site)}

    def run(model_admin, query: Query) -> list[int]:
        base = model_admin.get_queryset(request).order_by(*model_admin.get_ordering(request))
        found, duplicates = model_admin.get_search_results(request, base, query.typed)
        if duplicates:
            found = found.distinct()
        paginator = model_admin.get_paginator(request, found, PAGE)
        assert paginator.count >= 0  # counted (or estimated) as on every changelist page
        return [obj.pk for obj in paginator.page(1).object_list]

    return {
        "search backend": lambda query: run(console[query.model], query),
        "admin icontains": lambda query: run(default[query.model], query),
    }


def bench(queries: list[Query], *, user, repeat: int = 3) -> dict[str, dict[str, Timing]]:
    """Run every query on each engine; return timings per engine and kind.

    Each query runs ``repeat`` times and counts with its median time, so that a moment when
    another process has the CPU (these machines are shared) does not pass for the engine's.
    """
    request = RequestFactory().get("/")
    request.user = user
    results: dict[str, dict[str, Timing]] = {}
    for name, engine in engines(request).items():
        for query in queries[:: max(len(queries) // 10, 1)]:
            engine(query)  # warm the caches the measured runs will find warm in production too
        per_kind = results.setdefault(name, {kind: Timing() for kind in KINDS})
        for query in queries:
            ids, times = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                ids = engine(query)
                times.append((time.perf_counter() - started) * 1000)
            per_kind[query.kind].ms.append(statistics.median(times))
            per_kind[query.kind].hits += query.intended in ids[:3]
    return results


def overall(per_kind: dict[str, Timing]) -> Timing:
    total = Timing()
    for timing in per_kind.values():
        total.ms += timing.ms
        total.hits += timing.hits
    return total

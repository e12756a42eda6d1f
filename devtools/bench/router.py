"""Benchmarks of the router on the real PostgreSQL and Redis (``manage.py bench_router``).

Runs on the bench harness (``devtools.bench.harness``): its own database (``<DATABASE name>_bench``)
and Redis database, so it never touches the console's data or a running router's working set.
"""

import datetime as dt
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.db import connection
from django.utils import timezone

from clinical.actions import visits as visit_actions
from clinical.models import Availability, LicenseStatus, Patient, Provider, ProviderLicense, Visit, VisitStatus
from clinical.routing import lease
from clinical.routing import workingset as ws
from clinical.routing.engine import Router, RouterConfig
from clinical.validators import format_mrn, make_npi
from core.audit import Actor
from devtools import sampling

BASE_DIR = Path(__file__).resolve().parents[2]
_BENCH_TABLES = (
    "clinical_offer", "clinical_routerhealth", "clinical_routerlease",
    "clinical_visitevent", "clinical_historicalvisit", "clinical_visit", "clinical_historicalproviderlicense",
    "clinical_providerlicense", "clinical_historicalprovider", "clinical_apiclient", "clinical_historicalapiclient",
    "clinical_provider", "clinical_historicalpatient", "clinical_patient", "support_casenote",
    "support_historicalsupportcase", "support_supportcase",
)  # fmt: skip


def reset() -> None:
    """Empty the bench database's clinical and support tables."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(_BENCH_TABLES)} RESTART IDENTITY CASCADE")


def load(*, waiting: int, providers: int, licenses_each: int, seed: int, available: bool = True) -> None:
    """Insert providers (available, licensed in states drawn by population) and waiting visits."""
    rng = random.Random(seed)
    codes, weights = sampling.state_weights()
    today = timezone.localdate()
    now = timezone.now()
    people = Provider.objects.bulk_create(
        Provider(
            first_name="Bench", last_name=f"Provider{i}", npi=make_npi(f"{300000000 + i:09d}"),
            email=f"bench{i}@example.test", phone=f"+1617555{i % 10000:04d}", specialty="family_medicine",
            availability=Availability.AVAILABLE if available else Availability.OFFLINE,
            available_since=now - dt.timedelta(seconds=rng.randint(0, 3600)) if available else None,
        )
        for i in range(providers)
    )  # fmt: skip
    licenses = []
    for provider in people:
        chosen = set()
        while len(chosen) < licenses_each:
            chosen.add(rng.choices(codes, weights)[0])
        licenses += [
            ProviderLicense(
                provider=provider, state=state, license_number=f"B{provider.pk}-{state}", license_type="MD",
                status=LicenseStatus.ACTIVE, issued_on=today - dt.timedelta(days=400),
                expires_on=today + dt.timedelta(days=400),
            )
            for state in chosen
        ]  # fmt: skip
    ProviderLicense.objects.bulk_create(licenses, batch_size=5000)
    if waiting:
        _load_visits(waiting, rng, codes, weights, now)


def _load_visits(count: int, rng, codes, weights, now) -> None:
    patients = Patient.objects.bulk_create(
        Patient(
            mrn=format_mrn(9_000_000 + i), first_name="Bench", last_name=f"Patient{i}",
            date_of_birth=dt.date(1980, 1, 1), phone=f"+1212555{i % 10000:04d}",
        )
        for i in range(count)
    )  # fmt: skip
    # One patient per waiting visit: a patient has at most one open visit (clinical_visit_one_open_per_patient).
    Visit.objects.bulk_create(
        (
            Visit(
                patient=patient, located_state=rng.choices(codes, weights)[0], reason="bench",
                priority=rng.choices([0, 1, 2], [85, 12, 3])[0],
                requested_at=now - dt.timedelta(seconds=rng.randint(0, 1200)),
            )
            for patient in patients
        ),
        batch_size=5000,
    )  # fmt: skip


def throughput(r: redis.Redis, *, waiting: int, providers: int, seed: int) -> dict:
    """Measure routing decisions committed per second by one router on a backlog."""
    reset()
    r.flushdb()
    load(waiting=waiting, providers=providers, licenses_each=3, seed=seed)
    router = Router(r, RouterConfig(policy="longest_idle"))
    started = time.perf_counter()
    router.rebuild()
    rebuilt = time.perf_counter()
    decisions = 0
    while made := router.match():
        decisions += made
    elapsed = time.perf_counter() - rebuilt
    booked = list(Visit.objects.filter(status=VisitStatus.OFFERED).values_list("provider_id", flat=True))
    assert len(booked) == len(set(booked)) == decisions, "double booking in the benchmark"
    return {
        "waiting": waiting,
        "providers": providers,
        "decisions": decisions,
        "rebuild_s": round(rebuilt - started, 3),
        "match_s": round(elapsed, 3),
        "decisions_per_s": round(decisions / elapsed, 1) if elapsed else None,
    }


def latency(r: redis.Redis, *, redis_url: str, database_url: str, rate: float, duration: float, seed: int) -> dict:
    """Measure request-to-offer latency with a real router process at a Poisson arrival rate."""
    reset()
    r.flushdb()
    load(waiting=0, providers=int(rate * duration * 1.3) + 50, licenses_each=8, seed=seed)
    patients = Patient.objects.bulk_create(
        Patient(mrn=format_mrn(8_000_000 + i), first_name="Lat", last_name=f"P{i}", date_of_birth=dt.date(1990, 1, 1),
                phone="+12125550100")
        for i in range(int(rate * duration * 1.3) + 50)  # one per request: nobody is seen, so visits stay open
    )  # fmt: skip
    router = _start_router(database_url, redis_url)
    try:
        _wait_for_leader(r)
        requested = _arrivals(patients, rate=rate, duration=duration, seed=seed)
        time.sleep(1.0)
    finally:
        router.terminate()
        router.wait(timeout=10)
    rows = Visit.objects.filter(pk__in=requested).values_list("requested_at", "offered_at")
    waits = sorted((o - q).total_seconds() * 1000 for q, o in rows if o is not None)
    return {
        "rate_per_s": rate,
        "requests": len(requested),
        "offered": len(waits),
        "p50_ms": _pct(waits, 50),
        "p95_ms": _pct(waits, 95),
        "p99_ms": _pct(waits, 99),
        "max_ms": round(waits[-1], 1) if waits else None,
    }


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 1) if len(values) > 1 else values[0]


def _start_router(database_url: str, redis_url: str, **extra_env: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ROUTING_LEASE_SECONDS": "3",
        **extra_env,
    }
    return subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "run_router", "--name", "bench-router"],
        cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for_leader(r: redis.Redis) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        held = lease.current()
        if held and held["holder"] == "bench-router" and held["live"] and r.exists(ws.BUILT):
            return
        time.sleep(0.05)
    raise RuntimeError("the bench router did not take the lease within 20 s")


def _arrivals(patients, *, rate: float, duration: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    codes, weights = sampling.state_weights()
    actor = Actor.patient_app("bench")
    ids, start = [], time.monotonic()
    next_at = start
    fresh = iter(patients)  # each patient once: their visit stays open (offered) until the run ends
    while next_at - start < duration:
        time.sleep(max(0.0, next_at - time.monotonic()))
        visit = visit_actions.request_visit(
            patient=next(fresh), located_state=rng.choices(codes, weights)[0], reason="bench", actor=actor
        )
        ids.append(visit.pk)
        next_at += rng.expovariate(rate)
    return ids


def pgbench_single_connection(database_url: str, seconds: int = 5) -> float | None:
    """Return pgbench's simple-update TPS on one connection, for scale (None if pgbench is missing)."""
    if not shutil.which("pgbench"):
        return None
    db = connection.settings_dict
    args = ["-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432)] + (["-U", db["USER"]] if db["USER"] else [])
    name = f"{db['NAME']}_pgbench"
    subprocess.run(["createdb", *args, name], capture_output=True, check=False)  # noqa: S603, S607
    subprocess.run(["pgbench", *args, "-i", "-s", "1", "-q", name], capture_output=True, check=True)  # noqa: S603, S607
    out = subprocess.run(  # noqa: S603
        ["pgbench", *args, "-c", "1", "-j", "1", "-T", str(seconds), "-N", name],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    return round(float(match.group(1)), 1) if match else None

import time

from django.contrib.auth.models import AnonymousUser
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from clinical.models import Patient, Visit
from devtools.bench import harness
from devtools.bench import search as bench

TARGET_P95_MS = 100
TARGET_SPEEDUP = 10


class Command(BaseCommand):
    help = (
        "Time the queries support agents type (names, phones, e-mail, MRN, visit id, name + date of birth) "
        "through the search backend and through the admin's default icontains search; prints a table and "
        "one JSON line. Run it on generate_data's dataset, in a database of its own."
    )

    def add_arguments(self, parser):
        parser.add_argument("--per-kind", type=int, default=20, help="queries of each kind (default 20)")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--repeat", type=int, default=3, help="runs per query, its median counts (default 3)")
        harness.add_arguments(parser, redis_db=12, data_set=True)

    def handle(self, *args, per_kind, seed, repeat, database, redis_db, **options):
        if database:
            harness.use_database(database, create=False)
        harness.use_redis(redis_db)
        patients, visits = Patient.objects.count(), Visit.objects.count()
        if patients < 100:
            raise CommandError("Too little data: run `manage.py generate_data` first (in a database of its own).")
        with connection.cursor() as cursor:
            # Statistics for the search expression indexes, which a fresh migrate has not gathered.
            cursor.execute("ANALYZE clinical_patient, clinical_provider, clinical_providerlicense, support_supportcase")
        started = time.monotonic()
        queries = bench.pick_queries(per_kind=per_kind, seed=seed)
        self.stdout.write(
            f"bench_search: {patients:,} patients, {visits:,} visits, {len(queries)} queries "
            f"(each timed {repeat}x, its median counts)"
        )
        results = bench.bench(queries, user=AnonymousUser(), repeat=repeat)
        self.table(results)
        seconds = time.monotonic() - started
        summary = self.summary(results, patients=patients, visits=visits, seconds=seconds, repeat=repeat)
        harness.json_line(self.stdout.write, summary.pop("bench"), summary)

    def table(self, results) -> None:
        backend, default = results["search backend"], results["admin icontains"]
        head = (
            f"{'query':<24}{'n':>4} | {'backend p50':>11} {'p95':>8} {'top3':>6} | "
            f"{'icontains p50':>13} {'p95':>8} {'top3':>6} | {'p95 ×':>6}"
        )
        self.stdout.write(head)
        self.stdout.write("-" * len(head))
        for kind in [*bench.KINDS, "all"]:
            ours = bench.overall(backend) if kind == "all" else backend[kind]
            theirs = bench.overall(default) if kind == "all" else default[kind]
            if not ours.ms:
                continue
            self.stdout.write(
                f"{kind:<24}{len(ours.ms):>4} | {ours.p(0.5):>9.1f}ms {ours.p(0.95):>6.1f}ms {ours.top3:>6.0%} | "
                f"{theirs.p(0.5):>11.1f}ms {theirs.p(0.95):>6.1f}ms {theirs.top3:>6.0%} | "
                f"{theirs.p(0.95) / max(ours.p(0.95), 0.001):>5.0f}×"
            )

    def summary(self, results, *, patients: int, visits: int, seconds: float, repeat: int) -> dict:
        backend, default = results["search backend"], results["admin icontains"]
        ours, theirs = bench.overall(backend), bench.overall(default)
        worst_p95 = max(timing.p(0.95) for timing in backend.values() if timing.ms)
        worst_top3 = min(timing.top3 for timing in backend.values() if timing.ms)
        return {
            "bench": "search", "patients": patients, "visits": visits, "repeat": repeat,
            "seconds": round(seconds, 1),
            "backend": {"name": "postgres", **ours.summary()}, "admin_icontains": theirs.summary(),
            "speedup_p95": round(theirs.p(0.95) / max(ours.p(0.95), 0.001), 1),
            "kinds": {
                kind: {"backend": backend[kind].summary(), "admin_icontains": default[kind].summary()}
                for kind in bench.KINDS if backend[kind].ms
            },
            "targets": {
                "p95_le_100ms": worst_p95 <= TARGET_P95_MS,
                "speedup_ge_10x": theirs.p(0.95) >= TARGET_SPEEDUP * ours.p(0.95),
                "top3_every_kind": worst_top3 == 1.0,
            },
        }  # fmt: skip

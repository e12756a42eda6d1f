from django.core.management.base import BaseCommand, CommandError

from devtools.bench import harness
from devtools.bench import push as bench


class Command(BaseCommand):
    help = (
        "Benchmark push over websockets on the real server, relay, router, PostgreSQL and Redis (in a separate "
        "bench database): N app sockets, visits requested at a steady rate; commit→receive latency, lost and "
        "duplicate messages, and the apps' API requests per second with push against polling."
    )

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=2000, help="app sockets, patients and providers (2000)")
        parser.add_argument("--rate", type=float, default=40.0, help="visit requests per second (40)")
        parser.add_argument("--duration", type=float, default=60.0, help="seconds of visit requests (60)")
        parser.add_argument("--providers-share", type=float, default=0.2, help="share of the apps that are providers")
        parser.add_argument("--workers", type=int, default=2, help="ASGI server processes (2)")
        harness.add_arguments(parser, redis_db=11, data_set=False)
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--keep-logs", action="store_true", help="keep the server's and the relay's logs")

    def handle(self, *args, **opts):
        config = bench.PushConfig(
            clients=opts["clients"], rate=opts["rate"], duration=opts["duration"],
            providers_share=opts["providers_share"], workers=opts["workers"], seed=opts["seed"],
        )  # fmt: skip
        if not 0 < config.providers < config.clients or config.rate <= 0 or config.duration <= 0:
            raise CommandError("Give at least one patient and one provider, a positive --rate and --duration.")
        database_url = harness.scratch_database("push_bench")
        r, redis_url = harness.use_redis(opts["redis_db"])
        self.stdout.write(f"bench database: {database_url.rsplit('/', 1)[-1]}, Redis db {opts['redis_db']}")
        result = bench.run(
            config, r=r, database_url=database_url, redis_url=redis_url, progress=self.stdout.write,
            keep_logs=opts["keep_logs"],
        )  # fmt: skip
        self._table(result)
        harness.json_line(self.stdout.write, "push", result)

    def _table(self, result: dict) -> None:
        rows = [("measure", "result")] + [(name, text.format(**result)) for name, text in ROWS]
        met = ", ".join(f"{TARGETS[name]} {'met' if ok else 'NOT MET'}" for name, ok in result["targets"].items())
        harness.table(self.stdout.write, [*rows, ("targets", met)])


POLL = f"{bench.POLL_SECONDS:g} s"
ROWS = (
    ("sockets", "{clients} ({patients} patients, {providers} providers), connected in {connect_s} s; "
                "{sockets_dropped} dropped"),
    ("server", "{workers} ASGI workers, 1 push relay, 1 router; {server_tracebacks} tracebacks in their logs"),
    ("visits", "{visits_requested} requested at {rate}/s for {duration} s ({visit_requests_refused} refused, "
               "{no_idle_patient} skipped: every patient had a visit open), {visits_completed} completed"),
    ("messages received", "{messages_received}: {lost} lost, {duplicates} duplicates"),
    ("commit→receive p50/p95/p99", "{latency_p50_ms} / {latency_p95_ms} / {latency_p99_ms} ms (max "
                                   "{latency_max_ms}; the load process's own lag p99 {load_process_lag_p99_ms})"),
    ("  of which p50 / p99", "relay {relay_p50_ms} / {relay_p99_ms}, server (channel layer, access log) "
                             "{server_p50_ms} / {server_p99_ms}, to the socket {network_p50_ms} / {network_p99_ms} ms"),
    ("API requests/s, push", "{api_requests_per_s_push} ({api_errors} errors of {api_requests} requests "
                             "{api_errors_by_status}; p50/p99 {api_latency_p50_ms} / {api_latency_p99_ms} ms)"),
    (f"API requests/s, polling every {POLL}", f"{{api_requests_per_s_polling}} (computed: the same actions + "
                                              f"{{clients}} apps polling every {POLL})"),
    ("polling / push", "{ratio}× ({requests_per_visit} requests per visit, the visits' own actions, in both)"),
    ("load average (1 min)", "{load_average_1m}"),
)  # fmt: skip
TARGETS = {
    "sockets_held": "every socket held",
    "no_api_errors": "no API errors",
    "rate_held": "rate held",
    "p99_le_100_ms": f"p99 ≤ {bench.TARGET_P99_MS:g} ms",
    "no_lost": "0 lost",
    "no_duplicates": "0 duplicates",
    "ratio_ge_10": f"≥ {bench.TARGET_RATIO:g}× fewer requests",
}

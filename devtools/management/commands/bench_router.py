from django.core.management.base import BaseCommand

from clinical.models import Priority
from clinical.routing.policy import POLICIES
from devtools.bench import harness
from devtools.bench import router as bench
from devtools.bench.day import DayConfig, simulate_day, strict_priority


class Command(BaseCommand):
    help = (
        "Benchmark the router on the real PostgreSQL and Redis (in a separate bench database): "
        "decisions per second, request-to-offer latency, and a simulated day per fairness policy."
    )

    def add_arguments(self, parser):
        parser.add_argument("--waiting", type=int, default=10_000, help="waiting visits in the backlog (N)")
        parser.add_argument("--providers", type=int, default=2_000, help="available providers (M)")
        parser.add_argument("--rate", type=float, default=40.0, help="arrivals per second for the latency run")
        parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals for the latency run")
        parser.add_argument("--day-visits", type=int, default=6_000, help="visits in the simulated day")
        parser.add_argument("--day-providers", type=int, default=260, help="providers in the simulated day")
        parser.add_argument("--fair-load", type=float, default=1.1, help="load of the fairness day (1.1 = 110%%)")
        parser.add_argument("--fair-urgent", type=float, default=0.5, help="share of urgent visits in the fairness day")
        harness.add_arguments(parser, redis_db=14, data_set=False)
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--skip-latency", action="store_true")

    def handle(self, *args, **opts):
        database_url = harness.scratch_database("bench")
        r, redis_url = harness.use_redis(opts["redis_db"])
        self.stdout.write(f"bench database: {database_url.rsplit('/', 1)[-1]}, Redis db {opts['redis_db']}")
        self.stdout.write(f"throughput: {opts['waiting']} waiting visits, {opts['providers']} providers ...")
        result = {
            "throughput": bench.throughput(r, waiting=opts["waiting"], providers=opts["providers"], seed=opts["seed"])
        }
        if not opts["skip_latency"]:
            self.stdout.write(f"latency: {opts['rate']}/s for {opts['duration']} s through a router process ...")
            result["latency"] = bench.latency(
                r, redis_url=redis_url, database_url=database_url, rate=opts["rate"], duration=opts["duration"],
                seed=opts["seed"],
            )  # fmt: skip
        self.stdout.write("simulated day per policy ...")
        day = DayConfig(visits=opts["day_visits"], providers=opts["day_providers"], seed=opts["seed"])
        result["day"] = [simulate_day(policy, day) for policy in POLICIES]
        self.stdout.write(f"fairness day at {opts['fair_load']:.0%} load, {opts['fair_urgent']:.0%} urgent ...")
        result["fairness_day"] = self._fairness_day(opts)
        result["pgbench_single_connection_tps"] = bench.pgbench_single_connection(database_url)
        bench.reset()
        r.flushdb()
        self._table(result)
        harness.json_line(self.stdout.write, "router", result)

    def _fairness_day(self, opts) -> dict:
        """Run the overloaded day twice: the place in line the router uses now, and strict priority."""
        urgent = opts["fair_urgent"]
        day = DayConfig(
            seed=opts["seed"], providers=opts["day_providers"], load=opts["fair_load"], steady=True, national=True,
            mix={Priority.URGENT: urgent, Priority.ROUTINE: 1 - urgent},
        )  # fmt: skip
        return {
            "now": simulate_day("longest_idle", day),
            "strict_priority_before": simulate_day("longest_idle", day, key=strict_priority),
        }

    def _table(self, result):
        t = result["throughput"]
        rows = [
            ("backlog", f"{t['waiting']} waiting, {t['providers']} providers"),
            ("rebuild working set", f"{t['rebuild_s']} s"),
            ("decisions committed", f"{t['decisions']} in {t['match_s']} s"),
            ("decisions per second", f"{t['decisions_per_s']}"),
        ]
        if "latency" in result:
            lat = result["latency"]
            rows += [
                ("arrival rate", f"{lat['rate_per_s']}/s, {lat['requests']} requests, {lat['offered']} offered"),
                ("request→offer p50/p95/p99", f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']} ms"),
            ]
        for day in result["day"]:
            rows.append(
                (f"day: {day['policy']}", f"mean {day['mean_wait_s']} s, p90 {day['p90_wait_s']} s, "
                 f"served {day['served']}, expired {day['expired']}")
            )  # fmt: skip
        for name, run in (
            ("now", result["fairness_day"]["now"]),
            ("strict priority (before)", result["fairness_day"]["strict_priority_before"]),
        ):
            rows.append((f"fairness day, {name}", f"load {run['load']:.0%}, {run['visits']} visits, "
                         f"{run['expired']} expired"))  # fmt: skip
            for priority, numbers in run["priorities"].items():
                rows.append(
                    (f"  {priority}", f"{numbers['requested']} requested, {numbers['expired']} expired "
                     f"({numbers['expired_never_offered']} never offered), p90 wait {numbers['p90_wait_s']} s")
                )  # fmt: skip
        rows.append(("pgbench 1 connection", f"{result['pgbench_single_connection_tps']} tps (simple update, -N)"))
        harness.table(self.stdout.write, rows)

import json

from django.core.management.base import BaseCommand, CommandError

from devtools.soak import Soak, SoakConfig


class Command(BaseCommand):
    help = (
        "Soak the routing: real traffic through the API on a private PostgreSQL and Redis, two routers, and a "
        "schedule of faults (kill -9 and SIGSTOP of the leader, Redis FLUSHALL and downtime, a PostgreSQL restart, "
        "license suspensions, routers with skewed clocks); then check the invariants. Ends with a table and a "
        "JSON line; exits non-zero on any violation, lost visit or fault not healed."
    )

    def add_arguments(self, parser):
        defaults = SoakConfig()
        parser.add_argument("--minutes", type=float, default=defaults.minutes, help="length of the traffic")
        parser.add_argument("--rate", type=float, default=defaults.rate, help="visit requests per second")
        parser.add_argument("--providers", type=int, default=defaults.providers, help="providers the traffic plays")
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--redis-down-seconds", type=int, default=defaults.redis_down_seconds)

    def handle(self, *args, minutes, rate, providers, seed, redis_down_seconds, **options):
        if minutes < 1:
            raise CommandError("--minutes: at least 1 (the faults need room between them)")
        config = SoakConfig(minutes=minutes, rate=rate, providers=providers, seed=seed,
                            redis_down_seconds=redis_down_seconds)  # fmt: skip
        report = Soak(config, say=self._say).run()
        self._table(report)
        self.stdout.write(json.dumps(report, default=str))
        healthy = report["faults_healed"] and report["traffic_summary"]
        if report["violations"] or report["lost_visits"] or not healthy:
            raise CommandError("the soak found problems (see above)")

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _table(self, report: dict) -> None:
        rows = [(f"{fault['name']}", ("ok  " if fault["ok"] else "FAIL") + f" {fault['outcome']}")
                for fault in report["faults"]]  # fmt: skip
        traffic = report["traffic"]
        rows += [
            ("traffic", f"{traffic.get('requested', 0)} visits requested through the API, {report['visits_in_db']} "
                        f"in PostgreSQL; {traffic.get('offers', 0)} offers seen, {traffic.get('accepted', 0)} "
                        f"accepted, {traffic.get('completed', 0)} completed; {traffic.get('errors', 0)} API errors "
                        f"{traffic.get('error_kinds') or ''}"),
            ("visits by status", ", ".join(f"{s} {n}" for s, n in report["visits_by_status"].items())),
            ("lost visits", str(report["lost_visits"])),
        ]  # fmt: skip
        rows += [(f"invariant {name}", str(count)) for name, count in report["invariants"].items()]
        width = max(len(name) for name, _ in rows)
        self.stdout.write("")
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")

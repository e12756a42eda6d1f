"""``manage.py bench_load``: fifty console users and the apps at 40 visits a second, on a copy of a data set."""

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from devtools.bench import harness
from devtools.bench import load as bench


class Command(BaseCommand):
    help = (
        "Load test: Locust plays support agents, clinical ops and a lead in the console (headless) while "
        "simulate_traffic requests visits through the API with both routers running, on a copy of the data set. "
        "Prints p50/p95/p99 per page kind and for the API, errors, the router's request-to-offer time, and "
        "writes a CSV and a PNG of latency over time."
    )

    def add_arguments(self, parser):
        defaults = bench.LoadConfig()
        harness.add_arguments(parser, redis_db=11, data_set=True)
        parser.add_argument(
            "--users", type=int, default=defaults.users, help="console users (40:8:2 support:clinical ops:lead)"
        )
        parser.add_argument(
            "--duration", type=int, default=defaults.duration, help="seconds of load after sign-in (600)"
        )
        parser.add_argument("--rate", type=float, default=defaults.rate, help="visit requests a second (40)")
        parser.add_argument("--providers", type=int, default=defaults.providers, help="providers the simulation plays")
        parser.add_argument(
            "--simulations", type=int, default=defaults.simulations,
            help="simulate_traffic processes side by side, sharing the rate (4)",
        )  # fmt: skip
        parser.add_argument("--web-workers", type=int, default=defaults.web_workers, help="gunicorn workers (3)")
        parser.add_argument(
            "--warmup", type=int, default=defaults.warmup,
            help="seconds the simulated apps run before the console users start, their providers signing in over "
            "its first two thirds; the API's figures over it are printed apart (60)",
        )  # fmt: skip
        parser.add_argument("--out", type=Path, default=defaults.out, help="where the CSVs, PNG and logs go")
        parser.add_argument("--keep", action="store_true", help="keep the copy of the data set (<database>_load)")

    def handle(self, *args, database, redis_db, users, duration, rate, providers, simulations, web_workers, out, keep,
               warmup, **options):  # fmt: skip
        for name, value in (("--users", users), ("--duration", duration), ("--rate", rate), ("--providers", providers),
                            ("--web-workers", web_workers), ("--simulations", simulations)):  # fmt: skip
            if value <= 0:
                raise CommandError(f"{name}: must be more than 0, got {value}")
        if warmup < 0:
            raise CommandError(f"--warmup: must be 0 or more, got {warmup}")
        config = bench.LoadConfig(users=users, duration=duration, rate=rate, providers=providers, warmup=warmup,
                                  simulations=simulations, web_workers=web_workers, out=out.resolve())  # fmt: skip
        config.out.mkdir(parents=True, exist_ok=True)
        if database:
            harness.use_database(database, create=False)  # checks the name and that the data set exists
        source = connection.settings_dict["NAME"]
        started = time.monotonic()
        self.stderr.write(f"copying {source} to {source}_load …")
        try:
            copy = bench.copy_data_set(source)
        except RuntimeError as error:
            raise CommandError(str(error)) from None
        database_url = harness.use_database(copy, create=False)
        redis, redis_url = harness.use_redis(redis_db)
        redis.flushdb()
        password = bench.new_password()
        try:
            samples = {**bench.samples(), "accounts": bench.make_accounts(password), "password": password}
        except RuntimeError as error:
            bench.drop_database(copy)
            raise CommandError(str(error)) from None
        samples_path = config.out / "samples.json"
        samples_path.write_text(json.dumps(samples))
        self.stderr.write(f"data ready in {time.monotonic() - started:.0f} s; starting the stack")
        stack = bench.Stack(database_url=database_url, redis_url=redis_url, config=config)
        try:
            stack.start()
            self.stderr.write(
                f"load: {rate:g} visits/s, {warmup} s of warm-up, then {users} console users for {duration} s …"
            )
            counts, began, ended = bench.run(stack, config, samples_path)
        except RuntimeError as error:
            raise CommandError(str(error)) from None
        finally:
            stack.stop_all()
            samples_path.unlink(missing_ok=True)
        self.report(config, counts, began, ended, stack.tracebacks())
        if not keep:
            bench.drop_database(copy)
        redis.flushdb()

    def report(self, config, counts, began, ended, tracebacks) -> None:
        pages = bench.page_kinds(config.out / "load_stats.csv")
        api, warm = counts["api_ms"], counts["api_warmup"]
        router = bench.request_to_offer(began, ended)
        rows = [*pages, {"page": "API (the apps, as they waited)", "requests": api["n"], "errors": counts["api_errors"],
                         "p50_ms": api["p50"], "p95_ms": api["p95"], "p99_ms": api["p99"]},
                {"page": "router: visit request -> first offer", "requests": router["offered"], "errors": 0,
                 "p50_ms": router["p50_ms"], "p95_ms": router["p95_ms"], "p99_ms": router["p99_ms"]}]  # fmt: skip
        before = {"page": f"API during the warm-up and sign-in (not above; {config.warmup} s + the users' ramp)",
                  "requests": warm["n"], "errors": warm["errors"], "p50_ms": warm["p50"], "p95_ms": warm["p95"],
                  "p99_ms": warm["p99"]}  # fmt: skip
        bench.pages_csv([*rows, before], config.out / "load_pages.csv")
        png = config.out / "load_latency.png"
        why_not = bench.plot(config.out / "load_stats_history.csv", png)
        harness.table(self.stdout.write, bench.table_rows([*rows, before]))
        console_errors = sum(row["errors"] for row in pages)
        kinds = ", ".join(f"{n} x {kind}" for kind, n in sorted(counts["api_error_kinds"].items())) or "none"
        self.stdout.write(
            f"console: {sum(row['requests'] for row in pages):,} requests, {console_errors} errors; API: "
            f"{api['n']:,} requests, {counts['api_errors']} errors ({kinds}; {counts['conflicts']} conflicts over the "
            f"whole run, expected); simulated apps' own errors {counts['simulation_errors']}; visits requested "
            f"{router['requested']:,}, offered {router['offered']:,}; server tracebacks {tracebacks}"
        )
        self.stdout.write(f"CSV: {config.out / 'load_pages.csv'}; plot: {why_not or png}")
        worst = max((row["p95_ms"] or 0 for row in pages), default=None)
        harness.json_line(self.stdout.write, "load", {
            "users": config.users, "duration_s": config.duration, "rate": config.rate, "warmup_s": config.warmup,
            "window": [began.isoformat(), ended.isoformat()], "worst_console_p95_ms": worst,
            "api_p99_ms": api["p99"], "router_request_to_offer_p99_ms": router["p99_ms"],
            "console_errors": console_errors, "api_errors": counts["api_errors"], "server_tracebacks": tracebacks,
            "api_warmup": warm, "simulation_errors": counts["simulation_errors"],
            "pages": rows, "simulations": counts, "plot": None if why_not else str(png),
        })  # fmt: skip

from django.core.management.base import BaseCommand, CommandError

from devtools.bench import harness
from devtools.bench import imports as import_bench

LIMIT_S = 30.0  # the budget for each step of a 50,000-row file


class Command(BaseCommand):
    help = (
        "Benchmark the license import on the real PostgreSQL and Redis (in a separate database): "
        "generate a license file, then time its check (dry run) and its confirm."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=50_000, help="license rows in the file")
        parser.add_argument("--formats", default="csv,xlsx", help="comma-separated: csv, xlsx")
        harness.add_arguments(parser, redis_db=13, data_set=False)

    def handle(self, *args, **opts):
        formats = [name.strip() for name in opts["formats"].split(",") if name.strip()]
        if not formats or set(formats) - {"csv", "xlsx"} or opts["rows"] < 1:
            raise CommandError("--formats takes csv and/or xlsx; --rows at least 1.")
        database = harness.scratch_database("import_bench").rsplit("/", 1)[-1]
        harness.use_redis(opts["redis_db"])
        self.stdout.write(f"bench database: {database}, Redis db {opts['redis_db']}")
        results = [import_bench.run(opts["rows"], name, report=self.stdout.write) for name in formats]
        import_bench.reset()
        self._table(results)
        harness.json_line(self.stdout.write, "import", {"limit_s": LIMIT_S, "results": results})

    def _table(self, results: list[dict]) -> None:
        rows = [("file", "rows", "MB", "new / updated / unchanged", "dry run", "confirm", "history rows", "≤ 30 s")]
        for r in results:
            c = r["counts"]
            within = "yes" if max(r["check_s"], r["confirm_s"]) <= LIMIT_S else "NO"
            rows.append(
                (r["format"], str(r["rows"]), f"{r['bytes'] / 1e6:.1f}",
                 f"{c['new']} / {c['updated']} / {c['unchanged']}", f"{r['check_s']} s", f"{r['confirm_s']} s",
                 str(r["history_rows"]), within)
            )  # fmt: skip
        harness.table(self.stdout.write, rows)

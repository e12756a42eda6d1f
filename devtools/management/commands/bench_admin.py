from django.core.management.base import BaseCommand, CommandError

from devtools.bench import admin as benchadmin
from devtools.bench import harness


class Command(BaseCommand):
    help = (
        "Render every console changelist (default, filters, a search, a deep page) and change form N times "
        "as an ops lead, and the same pages through vanilla ModelAdmins; print p50/p95, queries and ratios."
    )

    def add_arguments(self, parser):
        parser.add_argument("--repeat", type=int, default=10, help="renders per page after one warm-up")
        parser.add_argument(
            "--vanilla-repeat",
            type=int,
            default=None,
            help="renders per vanilla twin (default: --repeat); fewer keep a run short when the console's pages "
            "are rendered more often for steadier medians (a vanilla page at 10M takes seconds)",
        )
        parser.add_argument("--deep-page", type=int, default=1000, help="page number for the deep-page test")
        harness.add_arguments(parser, redis_db=12, data_set=True)
        parser.add_argument("--only", default="", help="only the pages whose name contains this, e.g. statistics")
        parser.add_argument(
            "--sizes",
            default=None,
            metavar="DB,DB",
            help="run at each of these data sets (generate_data --database), smallest first, and print each page's "
            "p50/p95 at every size and its growth from the first to the last",
        )
        parser.add_argument(
            "--rounds",
            type=int,
            default=1,
            help="with --sizes: run the sizes in turn this many times and report each page's median round, so that a "
            "slow spell of a shared machine falls on every size alike",
        )
        parser.add_argument(
            "--base-url", default=None, help="time the pages through this running console (http://host:port) instead"
        )

    def handle(
        self, *args, repeat, deep_page, only, database, redis_db, base_url, sizes=None, rounds=1, vanilla_repeat=None,
        **options,
    ):  # fmt: skip
        if rounds < 1:
            raise CommandError(f"--rounds: give 1 or more, got {rounds}.")
        for name, value in (("--repeat", repeat), ("--vanilla-repeat", vanilla_repeat)):
            if value is not None and value < 1:
                raise CommandError(f"{name}: give 1 or more, got {value}.")
        vanilla_repeat = repeat if vanilla_repeat is None else vanilla_repeat
        if sizes:
            names = [name.strip() for name in sizes.split(",") if name.strip()]
            self._sizes(names, repeat, vanilla_repeat, deep_page, only, redis_db, rounds)
            return
        if database:
            harness.use_database(database, create=False)
        harness.use_redis(redis_db)
        progress = lambda name: self.stderr.write(f"  {name}", ending="\n")  # noqa: E731
        if base_url:
            try:
                rows = benchadmin.run_over_http(
                    base_url=base_url, repeat=repeat, deep_page=deep_page, only=only, progress=progress
                )
            except (ValueError, OSError) as error:
                raise CommandError(str(error) if isinstance(error, ValueError) else f"--base-url: {error}") from None
        else:
            rows = benchadmin.run(
                repeat=repeat, vanilla_repeat=vanilla_repeat, deep_page=deep_page, only=only, progress=progress
            )
        self._table(rows)
        # every changelist page
        ours = [r["ours"]["p95_ms"] for r in rows if not r["page"].endswith(" form") and "statistics" not in r["page"]]
        summary = {
            "repeat": repeat,
            "vanilla_repeat": None if base_url else vanilla_repeat,
            "served_by": base_url or "in-process (Django test client)",
            "worst_changelist_p95_ms": max(ours) if ours else None,
            "visit_list_p50_ms": next((r["ours"]["p50_ms"] for r in rows if r["page"] == "clinical.visit list"), None),
            "visit_list_ratio": next((r["ratio_p50"] for r in rows if r["page"] == "clinical.visit list"), None),
            "worst_statistics_p95_ms": max(
                (r["ours"]["p95_ms"] for r in rows if "statistics" in r["page"]), default=None
            ),
        }
        harness.json_line(self.stdout.write, "admin", {**summary, "pages": rows})
        failed = [
            f"{row['page']} ({side} {row[side]['status']})"
            for row in rows
            for side in ("ours", "vanilla")
            if row[side] and row[side]["status"] != 200
        ]
        if failed:  # a redirect or an error timed as if it were the page would be a false number
            raise CommandError(f"pages that did not render (status): {', '.join(failed)}")

    def _table(self, rows):
        header = (
            f"{'page':<48} {'ours p50':>9} {'p95':>8} {'q':>3} | {'vanilla p50':>11} {'p95':>8} {'q':>4} | {'x':>6}"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for row in rows:
            ours, vanilla = row["ours"], row["vanilla"]
            left = f"{row['page']:<48} {ours['p50_ms']:>9} {ours['p95_ms']:>8} {ours['queries']:>3}"
            if vanilla:
                right = (
                    f"{vanilla['p50_ms']:>11} {vanilla['p95_ms']:>8} {vanilla['queries']:>4} | {row['ratio_p50']:>6}"
                )
            else:
                right = f"{'(console only)':>25} | {'':>6}"
            self.stdout.write(f"{left} | {right}")

    def _sizes(
        self, databases: list[str], repeat: int, vanilla_repeat: int, deep_page: int, only: str, redis_db: int,
        rounds: int,
    ) -> None:  # fmt: skip
        """Run every page at each data set; print p50/p95 per size, the growth and the vanilla twin's."""
        if len(databases) < 2:
            raise CommandError("--sizes: name two data sets or more, smallest first, e.g. ops_data,ops_10m")
        harness.use_redis(redis_db)
        results, visits, terms = [[] for _ in databases], [0] * len(databases), None
        for round_ in range(1, rounds + 1):
            for index, name in enumerate(databases):  # the sizes in turn, round after round
                harness.use_database(name, create=False)
                terms = terms or benchadmin.search_terms()  # the first data set's words, typed at every size
                visits[index] = benchadmin.visit_count()
                self.stderr.write(f"{name}: {visits[index]:,} visits (round {round_} of {rounds})")
                rows = benchadmin.run(
                    repeat=repeat, vanilla_repeat=vanilla_repeat, deep_page=deep_page, only=only, terms=terms
                )
                results[index].append(rows)
        runs = [
            {"database": name, "visits": count, "pages": benchadmin.median_rounds(rounds_), "search_terms": terms}
            for name, count, rounds_ in zip(databases, visits, results, strict=True)
        ]
        table = benchadmin.size_table(runs)
        harness.table(self.stdout.write, table["rows"])
        typed = ", ".join(f"{label} {term!r}" for label, term in terms.items() if term)
        self.stdout.write(f"searches typed at every size (read on {databases[0]}): {typed}")
        self.stdout.write(
            f"worst page p95 at each size: {', '.join(f'{v} ms' for v in table['worst_p95_ms'])}; largest p50 growth "
            f"{table['worst_growth']}x ({table['worst_growth_page']})"
        )
        harness.json_line(
            self.stdout.write,
            "admin_sizes",
            {"repeat": repeat, "vanilla_repeat": vanilla_repeat, "rounds": rounds, **table, "runs": runs},
        )

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError

from clinical.routing import invariants


class Command(BaseCommand):
    help = (
        "Check the routing history in SQL, rule by rule: offers to providers not licensed at the offer instant, "
        "overlapping holds, accepts after the deadline, visits stuck past a timeout, timeouts without a case. "
        "Exits non-zero on any violation."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", type=dt.datetime.fromisoformat, help="only history from this instant (ISO 8601)")
        parser.add_argument(
            "--grace", type=int, help="seconds a timeout may run late before it counts (default: 2 leases + 5)"
        )
        parser.add_argument("--examples", type=int, default=5, help="examples shown per rule")

    def handle(self, *args, since=None, grace=None, examples=5, **options):
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        results = invariants.check(since=since, grace_seconds=grace, limit=examples)
        width = max(len(result.name) for result in results)
        for result in results:
            verdict = "ok" if not result.violations else f"{result.violations} violation(s)"
            self.stdout.write(f"{result.name.ljust(width)}  {verdict:>16}  {result.description}")
            for example in result.examples:
                self.stdout.write(f"{'':{width}}    e.g. {', '.join(str(value) for value in example)}")
        total = sum(result.violations for result in results)
        summary = {"check": "routing_invariants", "violations": total, **{r.name: r.violations for r in results}}
        self.stdout.write(json.dumps(summary))
        if total:
            raise CommandError(f"{total} routing invariant violation(s)")

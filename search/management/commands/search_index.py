import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search import indexer, outbox
from search.backends.elasticsearch import get_client
from search.documents import DOCUMENTS


class Command(BaseCommand):
    help = (
        "Elasticsearch indices: --rebuild loads a new versioned index per document and swaps its alias "
        "(zero downtime); --check reports the drift from PostgreSQL (missing, extra, outdated documents)."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--rebuild", action="store_true", help="build new indices and swap the aliases")
        action.add_argument("--check", action="store_true", help="compare every row with its document")
        parser.add_argument("--repair", action="store_true", help="with --check: queue the drifted records")
        parser.add_argument(
            "--missing-only", action="store_true", help="with --rebuild: only documents that have no index yet"
        )
        parser.add_argument("--document", choices=sorted(DOCUMENTS), action="append", help="only these documents")

    def handle(self, *args, rebuild, check, repair, missing_only, document, **options):
        if not settings.ELASTICSEARCH_URL:
            raise CommandError("ELASTICSEARCH_URL is not set: the PostgreSQL search backend has no index.")
        documents = [DOCUMENTS[name] for name in document or sorted(DOCUMENTS)]
        self.started = time.monotonic()
        if rebuild:
            if missing_only:
                documents = [doc for doc in documents if not get_client().indices.exists_alias(name=doc.alias)]
            counts = indexer.rebuild(get_client(), documents, progress=self.progress)
            rebuilt = ", ".join(f"{count:,} {name}s" for name, count in counts.items())
            self.stdout.write(f"rebuilt: {rebuilt or 'nothing (every index exists)'}")
            return
        drifted = [drift for drift in (indexer.check(get_client(), doc, progress=self.progress) for doc in documents)]
        for drift in drifted:
            self.report(drift)
            if repair and not drift.clean:
                outbox.record(DOCUMENTS[drift.document].label, drift.missing + drift.extra + drift.outdated)
        if not all(drift.clean for drift in drifted):
            hint = "queued for the worker" if repair else "run with --repair, or --rebuild"
            raise CommandError(f"the index has drifted from PostgreSQL ({hint}).")

    def report(self, drift: indexer.Drift) -> None:
        def sample(ids):
            return f" (e.g. {', '.join(map(str, ids[:5]))})" if ids else ""

        self.stdout.write(
            f"{drift.document}: {drift.rows:,} rows, {drift.documents:,} documents; "
            f"missing {len(drift.missing)}{sample(drift.missing)}, extra {len(drift.extra)}{sample(drift.extra)}, "
            f"outdated {len(drift.outdated)}{sample(drift.outdated)}"
        )

    def progress(self, what: str, done: int, total: int) -> None:
        """Draw a progress bar (in place on a terminal; every tenth of the way in a log)."""
        tty = sys.stdout.isatty()
        tenth = max(total // 10, 1)
        if not tty and done < total and done % tenth >= min(tenth, 2000):
            return
        filled = int(30 * done / total) if total else 30
        elapsed = time.monotonic() - self.started
        line = f"{what:<9} [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,}  {elapsed:6.1f} s"
        self.stdout.write(("\r" + line) if tty else line, ending="" if tty and done < total else "\n")

import sys
import time

from django.core.management.base import BaseCommand
from django.db import connection

from devtools.bench import harness
from devtools.generate import Generator, Sizes


class Command(BaseCommand):
    help = (
        "Top the database up to a large, consistent dataset for performance work (PostgreSQL COPY). "
        "Running it twice does not double the data; raise the sizes to add more."
    )

    def add_arguments(self, parser):
        parser.add_argument("--patients", type=int, default=100_000)
        parser.add_argument("--providers", type=int, default=5_000)
        parser.add_argument("--visits", type=int, default=1_000_000)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--database",
            default=None,
            help="database to fill (created and migrated if missing); default: DATABASE_URL",
        )

    def handle(self, *args, patients, providers, visits, seed, database, **options):
        if database:
            harness.use_database(database, create=True)
        started = time.monotonic()
        tty = sys.stdout.isatty()

        def progress(what: str, done: int, total: int) -> None:
            width = 30
            filled = int(width * done / total) if total else width
            bar = "#" * filled + "." * (width - filled)
            line = f"{what:<10} [{bar}] {done:,}/{total:,}  {time.monotonic() - started:6.1f} s"
            self.stdout.write(("\r" + line) if tty else line, ending="" if tty and done < total else "\n")

        size_before = _database_size()
        written = Generator(seed=seed, progress=progress).run(Sizes(patients, providers, visits))
        elapsed = time.monotonic() - started
        summary = ", ".join(f"{count:,} {name}" for name, count in written.items() if count)
        self.stdout.write(f"generate_data: wrote {summary or 'nothing (already at these sizes)'} in {elapsed:.1f} s")
        size_after = _database_size()
        self.stdout.write(
            f"disk: the database is {_gib(size_after)} GiB, {_gib(size_after - size_before)} GiB more than before "
            "(tables, indexes and their free space; pg_database_size)"
        )


def _database_size() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0]


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f}"

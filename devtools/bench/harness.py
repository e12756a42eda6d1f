"""The one harness every ``bench_*`` command (and ``generate_data``) runs on.

- **Its own database.** Benchmarks that write (router, import) switch to a scratch database
  (``<DATABASE name>_<suffix>``), created and migrated on first use and emptied after. Benchmarks
  that read a data set (admin, search) take ``--database NAME``: the database ``generate_data
  --database NAME`` filled, never the console's own unless asked.
- **Its own Redis database** (``--redis-db``), so a bench never touches a running router's
  working set or the console's counters.
- **A table and one JSON line** on stdout (``table``, ``json_line``): people read the first,
  scripts and README figures take the second.
"""

import json
import re
from collections.abc import Callable, Sequence
from urllib.parse import urlparse, urlunparse

import psycopg2
import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core.redis import get_redis

Write = Callable[[str], None]


def use_database(name: str, *, create: bool) -> str:
    """Switch this process's connection to database ``name`` and migrate it; return its URL.

    With ``create``, the database is created when missing (scratch databases, a new data set);
    without, a missing one is an error naming it (a bench must not time an empty database).
    """
    if not re.fullmatch(r"[A-Za-z0-9_]{1,63}", name):
        raise CommandError(f"--database: {name!r} is not a database name (letters, digits, _; at most 63).")
    db = connection.settings_dict
    admin = admin_connection()
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        missing = cursor.fetchone() is None
        if missing and not create:
            admin.close()
            raise CommandError(f"--database: no database {name!r}; fill one with `generate_data --database {name}`.")
        if missing:
            cursor.execute(f'CREATE DATABASE "{name}"')  # checked above: letters, digits and _ only
    admin.close()
    connection.close()
    connection.settings_dict["NAME"] = name
    call_command("migrate", verbosity=0)  # a no-op on an up-to-date database
    auth = f"{db['USER']}:{db['PASSWORD']}@" if db["USER"] else ""
    return f"postgres://{auth}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


def admin_connection():
    """Return an autocommit connection to the server's ``postgres`` database (to create, copy, drop databases)."""
    db = connection.settings_dict
    admin = psycopg2.connect(
        dbname="postgres", host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"] or None,
        password=db["PASSWORD"] or None,
    )  # fmt: skip
    admin.autocommit = True
    return admin


def scratch_database(suffix: str) -> str:
    """Switch to the bench's own scratch database ``<DATABASE name>_<suffix>``; return its URL."""
    return use_database(f"{connection.settings_dict['NAME']}_{suffix}", create=True)


def use_redis(db_number: int) -> tuple[redis.Redis, str]:
    """Point this process (and the events its actions publish) at the bench's own Redis database."""
    url = urlunparse(urlparse(settings.REDIS_URL)._replace(path=f"/{db_number}"))
    settings.REDIS_URL = url
    get_redis.cache_clear()
    return get_redis(), url


def add_arguments(parser, *, redis_db: int, data_set: bool) -> None:
    """Add the options every bench shares: ``--redis-db``, and ``--database`` for one that reads a data set."""
    parser.add_argument(
        "--redis-db", type=int, default=redis_db, help=f"Redis database the bench may flush ({redis_db})"
    )
    if data_set:
        parser.add_argument(
            "--database",
            default=None,
            help="database holding the data set (generate_data --database); default: DATABASE_URL",
        )


def table(write: Write, rows: Sequence[Sequence[object]]) -> None:
    """Write ``rows`` (the first is the header when it is followed by data) as aligned columns."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(max(map(len, cells), default=0))]
    for row in cells:
        write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())


def json_line(write: Write, bench: str, result: dict) -> None:
    """Write the bench's one JSON line: ``{"bench": name, ...}``."""
    write(json.dumps({"bench": bench, **result}))

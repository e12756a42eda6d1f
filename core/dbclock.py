"""The database's clock: the one clock every process agrees on.

Deadlines, waits and ages are computed from PostgreSQL's time, never from a process's own clock,
so two processes (a web server and a router, or two routers) never disagree about whether an offer
has expired, however far apart their clocks drift.
"""

import datetime as dt

from django.db import connections


def now(using: str = "default") -> dt.datetime:
    """Return the database server's current time (``clock_timestamp()``), timezone-aware."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]

"""Server-side prepared statements for the router's hot path: planned once per connection.

PostgreSQL spends longer planning the router's conditional statements (joins, locks, the calendar
function) than running them for a handful of rows: ~2.5 ms of a 3 ms offer. A prepared statement
is planned at most a few times per session and then runs from its cached plan.

A ``Statement`` is written with positional ``%s`` placeholders; it is prepared on a connection the
first time it runs there (every new connection starts with none, see ``_forget``). Prepared
statements belong to a session: run them on direct PostgreSQL connections, not through a pooler in
transaction mode.
"""

import itertools

from django.db.backends.signals import connection_created
from django.dispatch import receiver

_PREPARED = "ops_prepared"  # attribute of a Django connection wrapper: names prepared on its session


class Statement:
    """A SQL statement run as ``EXECUTE name(...)`` after a one-off ``PREPARE`` per connection."""

    def __init__(self, name: str, sql: str):
        counter = itertools.count(1)
        self.name = name
        self.arity = sql.count("%s")
        self.prepare_sql = f"PREPARE {name} AS " + "".join(
            part + (f"${next(counter)}" if i < self.arity else "") for i, part in enumerate(sql.split("%s"))
        )
        self.execute_sql = f"EXECUTE {name}({', '.join(['%s'] * self.arity)})" if self.arity else f"EXECUTE {name}"

    def execute(self, cursor, params: list | tuple = ()) -> None:
        """Run the statement on ``cursor`` (a Django cursor), preparing it first on a new connection."""
        prepared = cursor.db.__dict__.setdefault(_PREPARED, set())
        if self.name not in prepared:
            cursor.execute(self.prepare_sql)
            prepared.add(self.name)
        cursor.execute(self.execute_sql, list(params) or None)


@receiver(connection_created, dispatch_uid="core.prepared.forget")
def _forget(sender, connection, **kwargs) -> None:
    """A new session has no prepared statements yet."""
    connection.__dict__[_PREPARED] = set()

"""The leader's lease, kept in PostgreSQL: one router decides, a standby takes over when it dies.

The lease is the one row of ``clinical_routerlease``. Its expiry is the database's time, so a router
with a skewed clock neither holds on too long nor gives up early. Every takeover increments the
row's **epoch**; the leader writes only through actions that check that epoch in the same
transaction (``clinical.actions.visits._fence``), so once a standby has taken over, a paused old leader
that wakes up changes nothing.
"""

import datetime as dt

from django.db import OperationalError, connection, transaction

LOCK_NOT_AVAILABLE = "55P03"

# Take the lease if it is free or has run out (the standby), in one statement. It may wait for a
# leader's write that holds the row in share mode; ``lock_timeout`` keeps that wait short. A router
# coming back under the name of the holder whose lease ran out (a crashed leader, restarted by its
# supervisor) waits one more lease period: the standby that was waiting takes over first.
_TAKE_SQL = """
UPDATE clinical_routerlease
SET holder = %(name)s, epoch = epoch + 1, leader_since = clock_timestamp(),
    expires_at = clock_timestamp() + %(ttl)s
WHERE id = 1 AND (expires_at IS NULL
    OR expires_at < clock_timestamp() - CASE WHEN holder = %(name)s THEN %(ttl)s ELSE interval '0' END)
RETURNING epoch, leader_since
"""

# Extend the lease this router holds, as long as no takeover happened (same epoch).
_RENEW_SQL = """
UPDATE clinical_routerlease SET expires_at = clock_timestamp() + %(ttl)s
WHERE id = 1 AND holder = %(name)s AND epoch = %(epoch)s
RETURNING epoch, leader_since
"""

_RELEASE_SQL = """
UPDATE clinical_routerlease SET expires_at = NULL
WHERE id = 1 AND holder = %(name)s AND epoch = %(epoch)s
"""

_ENSURE_ROW_SQL = "INSERT INTO clinical_routerlease (id, holder, epoch) VALUES (1, '', 0) ON CONFLICT DO NOTHING"


class Lease:
    """A time-limited claim on leadership that the holder renews; ``epoch`` is set while held."""

    def __init__(self, *, seconds: int, name: str, lock_timeout_ms: int = 500):
        self.ttl = dt.timedelta(seconds=seconds)
        self.name = name
        self.lock_timeout_ms = lock_timeout_ms
        self.epoch: int | None = None
        self.leader_since: dt.datetime | None = None

    @property
    def token(self) -> str:
        """Return this router's name in the lease."""
        return self.name

    def hold(self) -> bool:
        """Renew the lease, or take it if it is free; return True while this router leads."""
        row = self._run(_RENEW_SQL) if self.epoch is not None else None
        if row is None:
            row = self._run(_TAKE_SQL, ensure_row=True)
        self.epoch, self.leader_since = row if row else (None, None)
        return row is not None

    def seconds_left(self) -> float:
        """Return how long until the current lease runs out, by the database's clock (0 if it has)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT greatest(0, coalesce(extract(epoch FROM expires_at - clock_timestamp()), 0)) "
                "FROM clinical_routerlease WHERE id = 1"
            )
            row = cursor.fetchone()
        return float(row[0]) if row else 0.0

    def release(self) -> None:
        """Give the lease up at a clean shutdown so the standby takes over at once."""
        if self.epoch is not None:
            self._run(_RELEASE_SQL, fetch=False)
        self.epoch = self.leader_since = None

    def _run(self, sql: str, *, fetch: bool = True, ensure_row: bool = False):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                if ensure_row:
                    cursor.execute(_ENSURE_ROW_SQL)
                cursor.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}")
                cursor.execute(sql, {"name": self.name, "ttl": self.ttl, "epoch": self.epoch})
                return cursor.fetchone() if fetch else None
        except OperationalError as error:
            if getattr(error.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
            return None  # the leader is mid-write on the row: not ours this round


# The lease as PostgreSQL has it; live while it has not run out by the database's clock. /readyz
# (ops_console.health) runs it on a connection of its own.
CURRENT_SQL = (
    "SELECT holder, epoch, leader_since, expires_at, coalesce(expires_at > clock_timestamp(), false) "
    "FROM clinical_routerlease WHERE id = 1"
)
CURRENT_FIELDS = ("holder", "epoch", "leader_since", "expires_at", "live")


def current() -> dict | None:
    """Return the lease as PostgreSQL has it: holder, epoch, leader since, expires at, and whether it is live."""
    with connection.cursor() as cursor:
        cursor.execute(CURRENT_SQL)
        row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip(CURRENT_FIELDS, row, strict=True))

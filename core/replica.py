"""Reads from the read replica, where they are safe: the database router and the replica's health.

With ``DATABASE_REPLICA_URL`` set, settings add the ``replica`` alias. Reads go there only while
``reading_from_replica()`` is on (the console turns it on for its read-only pages,
``ops_console.replica``), outside any transaction, for models that are not the sign-in's own
(sessions, users, permissions: a sign-in just written must be read back), and only while the
replica answers and is no more than ``OPS_REPLICA_MAX_LAG_SECONDS`` behind the primary. Every
write, and every read inside a transaction, goes to the primary.

Each connection names its database in ``application_name`` (``ops-console/default``,
``ops-console/replica``), so ``pg_stat_activity`` on either server shows who served a read.
"""

import contextvars
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connections, router

logger = logging.getLogger(__name__)

REPLICA = "replica"
PRIMARY = "default"
# The sign-in's own tables: read back at once after a write (a new session, a changed password).
PRIMARY_ONLY_APPS = frozenset({"sessions", "auth", "contenttypes", "admin", "ops_console"})

_replica_reads = contextvars.ContextVar("replica_reads", default=False)


def allow_replica_reads(allowed: bool) -> None:
    """Let this request's reads go to the replica (where safe), or stop them (at the request's end)."""
    _replica_reads.set(allowed)


@contextmanager
def reading_from_replica():
    """Let this context's reads go to the replica (where safe); restore the previous rule after."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


@dataclass
class ReplicaState:
    """What the last check of the replica found."""

    usable: bool
    lag_s: float | None
    reason: str
    checked_at: float


_state: ReplicaState | None = None
_state_lock = threading.Lock()


# Where the primary's WAL is now.
PRIMARY_WAL_SQL = "SELECT pg_current_wal_lsn()::text"
# A standby is caught up when it has replayed the primary's current WAL position (an idle primary
# writes nothing, so the last replayed transaction's age alone would look like lag); otherwise its
# lag is that transaction's age. Both NULL on a server that is not a standby. /readyz
# (core.health) runs it on a connection of its own.
REPLICA_LAG_SQL = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= %(primary_lsn)s::pg_lsn, "
    "extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float"
)


def replica_lag(caught_up: bool | None, age: float | None) -> float | None:
    """Return a standby's lag in seconds from ``REPLICA_LAG_SQL``'s answer (None: nothing replayed yet)."""
    return 0.0 if caught_up else age


def check_replica() -> ReplicaState:
    """Ask the replica how far behind the primary it is, now (no caching); never raise.

    The lag is ``replica_lag``'s; a server not in recovery is the primary itself (or a promoted
    replica): no lag.
    """
    try:
        with connections[PRIMARY].cursor() as cursor:
            cursor.execute(PRIMARY_WAL_SQL)
            primary_lsn = cursor.fetchone()[0]
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(REPLICA_LAG_SQL, {"primary_lsn": primary_lsn})
            in_recovery, caught_up, age = cursor.fetchone()
    except DatabaseError as error:
        connections[REPLICA].close()  # a broken connection is not reused
        return ReplicaState(False, None, f"unreachable: {str(error).strip().splitlines()[0][:200]}", time.monotonic())
    if not in_recovery:
        return ReplicaState(True, 0.0, "not a standby", time.monotonic())
    lag = replica_lag(caught_up, age)
    lag = float("inf") if lag is None else lag
    if lag > settings.OPS_REPLICA_MAX_LAG_SECONDS:
        return ReplicaState(False, lag, f"{lag:.1f} s behind", time.monotonic())
    return ReplicaState(True, lag, "caught up" if lag == 0 else f"{lag:.1f} s behind", time.monotonic())


def replica_state() -> ReplicaState:
    """Return the replica's state, checked at most every ``OPS_REPLICA_CHECK_SECONDS`` per process."""
    global _state
    with _state_lock:
        state = _state
        if state is None or time.monotonic() - state.checked_at >= settings.OPS_REPLICA_CHECK_SECONDS:
            state = _state = check_replica()
            if not state.usable:
                logger.warning("read replica skipped: %s", state.reason)
    return state


def forget_replica_state() -> None:
    """Drop the cached state, so the next read checks again (tests; after a failover)."""
    global _state
    with _state_lock:
        _state = None


class ReplicaRouter:
    """Django database router: reads to the replica when ``reading_from_replica`` allows it."""

    def db_for_read(self, model, **hints):
        if (
            REPLICA in settings.DATABASES
            and _replica_reads.get()
            and model._meta.app_label not in PRIMARY_ONLY_APPS
            and not connections[PRIMARY].in_atomic_block
            and replica_state().usable
        ):
            return REPLICA
        return PRIMARY

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the same data on both

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == PRIMARY  # the replica follows the primary's WAL


def read_cursor(model):
    """Return a cursor for raw reads of ``model``'s table: on the replica where the router would read it."""
    return connections[router.db_for_read(model)].cursor()

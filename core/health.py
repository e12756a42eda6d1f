"""Bounded probes of the console's dependencies for ``/readyz``: each answers within its timeout, hung or not.

A probe never borrows the process's own connections: a page's connection stuck on a hung server
is what the probe must not become. PostgreSQL gets a connection of its own in psycopg2's
asynchronous mode, every step waited for with ``select`` up to one deadline, so a server that
accepts the connection and then says nothing costs at most the timeout (``statement_timeout`` only
helps against a server that still answers, and caps the probe's queries there). Redis gets a
client of its own with short socket timeouts and no retries (redis-py retries three times by
default). ``ops_console.health`` decides which failures make the instance unready.
"""

import math
import selectors
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions
import redis
from django.conf import settings
from django_tasks_db.models import DBTaskResult
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.replica import PRIMARY, REPLICA, REPLICA_LAG_SQL, replica_lag

OK, WARN, FAIL, SKIPPED, UNKNOWN = "ok", "warn", "fail", "skipped", "unknown"
# Keys of a DATABASES entry's OPTIONS that are Django's, not libpq's.
_DJANGO_OPTIONS = frozenset({"isolation_level", "server_side_binding", "pool", "assume_role", "cursor_factory"})
OUTBOX_COUNT_CAP = 10_000  # counting a huge backlog exactly would itself be slow; "10000" means "at least"

# Whether the primary takes writes (a standby in recovery does not), and where its WAL is now.
PRIMARY_SQL = "SELECT pg_is_in_recovery(), CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END"
# The backlog of OutboxEntry (capped) and the age of its oldest entry: the lowest id, through the primary key.
OUTBOX_SQL = (
    "SELECT (SELECT count(*) FROM (SELECT FROM search_outboxentry LIMIT %(cap)s) AS capped), "
    "(SELECT extract(epoch FROM clock_timestamp() - created_at)::float FROM search_outboxentry ORDER BY id LIMIT 1)"
)

# Background jobs (django-tasks' database queue) ready to run: how many, and how long the oldest has
# waited. A job without a "run after" time carries django-tasks-db's far-future placeholder.
JOBS_SQL = f"""
    SELECT count(*), extract(epoch FROM clock_timestamp() - min(CASE WHEN run_after >= '9999-01-01'
           THEN enqueued_at ELSE greatest(run_after, enqueued_at) END))::float
    FROM {DBTaskResult._meta.db_table}
    WHERE status = 'READY' AND (run_after <= clock_timestamp() OR run_after >= '9999-01-01')
"""  # noqa: S608 - the only name put in is the task model's own table


@dataclass
class Check:
    """One dependency's answer.

    ``status`` is ``ok``, ``warn`` (trouble this instance serves through), ``fail``, ``skipped`` (not
    configured) or ``unknown`` (not asked: what it needs failed first).
    """

    status: str
    reason: str
    latency_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self, *, required: bool) -> dict[str, Any]:
        """Return the check as ``/readyz`` shows it."""
        shown = {"status": self.status, "required": required, "latency_ms": self.latency_ms, "reason": self.reason}
        return shown | self.details


class Probe:
    """A connection of the probe's own whose every step ends by its deadline."""

    def __init__(self, connection, deadline: float):
        self.connection = connection
        self.deadline = deadline

    def fetchone(self, sql: str, params: dict | None = None) -> tuple | None:
        """Run one statement and return its first row; raise ``TimeoutError`` past the deadline."""
        cursor = self.connection.cursor()
        cursor.execute(sql, params)
        self.wait()
        return cursor.fetchone()

    def wait(self) -> None:
        """Wait for the server's answer to what the connection last sent, until the deadline."""
        while (state := self.connection.poll()) != psycopg2.extensions.POLL_OK:
            remaining = self.deadline - time.monotonic()
            event = selectors.EVENT_READ if state == psycopg2.extensions.POLL_READ else selectors.EVENT_WRITE
            with selectors.DefaultSelector() as selector:
                selector.register(self.connection.fileno(), event)
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError("no answer in time")


@contextmanager
def probe_database(alias: str, *, timeout: float) -> Iterator[Probe]:
    """Yield a new connection to the ``DATABASES`` alias, open within ``timeout`` seconds; closed after."""
    deadline = time.monotonic() + timeout
    connection = psycopg2.connect(async_=True, **connect_params(settings.DATABASES[alias], timeout=timeout))
    try:
        probe = Probe(connection, deadline)
        probe.wait()
        yield probe
    finally:
        connection.close()


def connect_params(database: dict, *, timeout: float) -> dict[str, Any]:
    """Return psycopg2's connection parameters for a ``DATABASES`` entry, with the probe's limits."""
    options = {key: value for key, value in (database.get("OPTIONS") or {}).items() if key not in _DJANGO_OPTIONS}
    named = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}
    params = {**options, **{key: database[name] for key, name in named.items() if database.get(name)}}
    server_options = f"{options.get('options', '')} -c statement_timeout={int(timeout * 1000)}".strip()
    # libpq's own limit is whole seconds, at least 2: the probe's deadline is the one that counts.
    limits = {"options": server_options, "connect_timeout": max(2, math.ceil(timeout))}
    return params | limits | {"application_name": "ops-console/readyz"}


def check_primary(*, timeout: float, then: dict[str, Callable[[Probe], Check]]) -> dict[str, Check]:
    """Check the primary answers and takes writes; run each of ``then`` on the same connection after.

    Return ``postgresql`` (its ``details`` hold the primary's WAL position) and one check per name
    in ``then``, each ``unknown`` when the primary could not be asked.
    """
    started = time.perf_counter()
    try:
        with probe_database(PRIMARY, timeout=timeout) as probe:
            in_recovery, wal_lsn = probe.fetchone(PRIMARY_SQL)
            if in_recovery:
                primary = Check(FAIL, "read-only: the server is a standby in recovery", _since(started))
            else:
                primary = Check(OK, "answered", _since(started), {"wal_lsn": wal_lsn})
            return {"postgresql": primary} | {name: _run(check, probe) for name, check in then.items()}
    except (psycopg2.Error, TimeoutError) as error:
        reason = _first_line(error)
        return {"postgresql": Check(FAIL, reason, _since(started))} | {
            name: Check(UNKNOWN, f"not asked, PostgreSQL failed: {reason}") for name in then
        }


def _run(check: Callable[[Probe], Check], probe: Probe) -> Check:
    started = time.perf_counter()
    try:
        result = check(probe)
    except (psycopg2.Error, TimeoutError) as error:
        return Check(UNKNOWN, _first_line(error), _since(started))
    result.latency_ms = _since(started)
    return result


def check_replica(*, primary_lsn: str | None, timeout: float) -> Check:
    """Check the read replica (the ``replica`` alias, when configured) answers, and how far behind it is."""
    if REPLICA not in settings.DATABASES:
        return Check(SKIPPED, "no read replica configured")
    started = time.perf_counter()
    try:
        with probe_database(REPLICA, timeout=timeout) as probe:
            in_recovery, caught_up, age = probe.fetchone(REPLICA_LAG_SQL, {"primary_lsn": primary_lsn})
    except (psycopg2.Error, TimeoutError) as error:
        return Check(WARN, f"unreachable, pages read the primary: {_first_line(error)}", _since(started))
    result = replica_verdict(in_recovery=in_recovery, caught_up=caught_up, age=age)
    result.latency_ms = _since(started)
    return result


def replica_verdict(*, in_recovery: bool, caught_up: bool | None, age: float | None) -> Check:
    """Return the replica's check from what it said: a standby, caught up or how many seconds behind."""
    limit = settings.OPS_REPLICA_MAX_LAG_SECONDS
    if not in_recovery:
        # pg_last_xact_replay_timestamp() is NULL on a primary: there is no lag to tell.
        return Check(WARN, "not a standby: the replica alias reaches a server that is not in recovery")
    lag = replica_lag(caught_up, age)
    details = {"lag_seconds": None if lag is None else round(lag, 3), "max_lag_seconds": limit}
    if lag is None:
        return Check(WARN, "lag unknown: nothing replayed yet", details=details)
    if lag > limit:
        return Check(WARN, f"{lag:.1f} s behind (over {limit} s), pages read the primary", details=details)
    return Check(OK, "caught up" if lag == 0 else f"{lag:.1f} s behind", details=details)


def check_outbox(probe: Probe) -> Check:
    """Check the search outbox's backlog: its size (capped) and how long its oldest entry has waited."""
    count, age = probe.fetchone(OUTBOX_SQL, {"cap": OUTBOX_COUNT_CAP})
    limit = settings.SEARCH_OUTBOX_ALERT_MINUTES * 60
    details = {"entries": count, "oldest_seconds": None if age is None else round(age, 1)}
    if age is not None and age > limit:
        return Check(WARN, f"{count} waiting, the oldest for {age:.0f} s: Elasticsearch is behind", details=details)
    return Check(OK, f"{count} waiting", details=details)


def check_jobs(probe: Probe) -> Check:
    """Check the job queue: a job ready for longer than ``OPS_JOBS_ALERT_SECONDS`` means no worker takes it."""
    count, age = probe.fetchone(JOBS_SQL)
    details = {"ready": count, "oldest_seconds": None if age is None else round(age, 1)}
    if age is not None and age > settings.OPS_JOBS_ALERT_SECONDS:
        return Check(WARN, f"{count} waiting, the oldest for {age:.0f} s: is a job worker (run_jobs) running?",
                     details=details)  # fmt: skip
    return Check(OK, f"{count} waiting", details=details)


def check_redis(*, timeout: float) -> Check:
    """Check Redis answers PING within ``timeout`` (connecting and answering each), on a client of its own."""
    started = time.perf_counter()
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis.RedisError as error:
        return Check(FAIL, _first_line(error), _since(started))
    finally:
        client.close()
    return Check(OK, "answered", _since(started))


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]

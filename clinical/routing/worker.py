"""The routing worker loop: hold the lease, consume events, run timeouts and matching passes.

It survives its dependencies failing: Redis down (it waits, then rebuilds the working set from
PostgreSQL) and PostgreSQL restarting (it reconnects with backoff, re-takes or renews its lease and
rebuilds). It reports its health to PostgreSQL every second (``clinical_routerhealth``).
"""

import logging
import os
import socket
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from clinical.events import ROUTING_STREAM
from clinical.routing.engine import Router, RouterConfig
from clinical.routing.lease import Lease
from core.audit import Actor
from core.errors import Fenced

logger = logging.getLogger(__name__)
GROUP = "router"
CONSUMER = "leader"  # one name for whoever leads, so a new leader inherits unacknowledged events
TIMER_RESOLUTION = 0.25  # seconds between checks for due timeouts and lost data
HEALTH_SECONDS = 1.0
STANDBY_POLL = 0.5  # longest a standby waits between two attempts at the lease
BACKOFF_MAX = 5.0

_HEALTH_SQL = """
INSERT INTO clinical_routerhealth (name, host, pid, is_leader, epoch, leader_since, last_decision_at, offers_made,
                                   events_pending, events_lag_s, rebuilds, started_at, seen_at, last_error)
VALUES (%(name)s, %(host)s, %(pid)s, %(leading)s, %(epoch)s, %(leader_since)s,
        CASE WHEN %(decided)s THEN clock_timestamp() END, %(offers)s, %(pending)s, %(lag)s, %(rebuilds)s,
        clock_timestamp(), clock_timestamp(), %(error)s)
ON CONFLICT (name) DO UPDATE SET
    host = EXCLUDED.host, pid = EXCLUDED.pid, is_leader = EXCLUDED.is_leader, epoch = EXCLUDED.epoch,
    leader_since = EXCLUDED.leader_since,
    last_decision_at = CASE WHEN %(decided)s THEN clock_timestamp() ELSE clinical_routerhealth.last_decision_at END,
    offers_made = EXCLUDED.offers_made, events_pending = EXCLUDED.events_pending,
    events_lag_s = EXCLUDED.events_lag_s, rebuilds = EXCLUDED.rebuilds,
    started_at = CASE WHEN clinical_routerhealth.pid = EXCLUDED.pid THEN clinical_routerhealth.started_at
                      ELSE EXCLUDED.started_at END,
    seen_at = EXCLUDED.seen_at, last_error = EXCLUDED.last_error
"""


@dataclass
class WorkerStats:
    offered: int = 0
    offers_expired: int = 0
    visits_expired: int = 0
    visits_timed_out: int = 0
    events: int = 0
    rebuilds: int = 0
    takeovers: int = 0
    fenced: int = 0
    db_errors: int = 0
    redis_errors: int = 0
    started: float = field(default_factory=time.monotonic)


class RoutingWorker:
    """Run the router while holding the lease; stand by otherwise."""

    def __init__(self, r: redis.Redis, *, config: RouterConfig | None = None, name: str | None = None):
        self.r = r
        self.router = Router(r, config)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = Lease(seconds=settings.ROUTING_LEASE_SECONDS, name=self.name)
        self.leading = False
        self.stopping = False
        self.stats = WorkerStats()
        self._next_sweep = self._next_rebuild = self._next_timers = self._next_health = 0.0
        self._last_renew = 0.0
        self._drain_pending = False
        self._stale = False  # an error may have left the working set behind PostgreSQL
        self._decided = False
        self._last_error = ""
        self._backoff = 0.0

    # --- the loop -------------------------------------------------------------------------

    def run(self, *, until: float | None = None) -> WorkerStats:
        """Loop until stopped (or until the monotonic deadline ``until``), riding out failures."""
        try:
            while not self.stopping and (until is None or time.monotonic() < until):
                self._guarded_step()
        finally:
            self._shut_down()
        return self.stats

    def _guarded_step(self) -> None:
        try:
            self.step()
            self._backoff = 0.0
        except Fenced as error:
            self.stats.fenced += 1
            self._stand_down(f"fenced: {error}")
        except redis.RedisError as error:
            # Redis is disposable: once it answers again, the working set is rebuilt from PostgreSQL.
            self.stats.redis_errors += 1
            self._failed(f"Redis: {error}")
        except (OperationalError, InterfaceError) as error:
            # PostgreSQL restarting or unreachable: reconnect with backoff, never crash-loop.
            self.stats.db_errors += 1
            connection.close()
            self._failed(f"PostgreSQL: {error}".strip())

    def _failed(self, message: str) -> None:
        self._stale = True
        self._last_error = message[:300]
        self._backoff = min(BACKOFF_MAX, max(0.25, self._backoff * 2))
        logger.warning("router %s: %s; retrying in %.1f s", self.name, message.splitlines()[0], self._backoff)
        self._sleep(self._backoff)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def step(self) -> None:
        """Do one round: renew or take the lease; if leading, consume events, run timeouts and route."""
        close_old_connections()
        if not self._renew():
            self._report()
            # Look again just after the leader's lease would run out (at most every half second).
            self._sleep(min(STANDBY_POLL, self.lease.seconds_left() + 0.02))
            return
        if self._stale:
            self._take_over()
        self._consume(block_ms=200)
        # Match first: a visit whose event just arrived waits for no timer or sweep.
        made = self.router.match()
        self.stats.offered += made
        self._decided |= bool(made)
        self._timers()
        self._report()

    # --- leadership -----------------------------------------------------------------------

    def _renew(self) -> bool:
        now = time.monotonic()
        if self.leading and now - self._last_renew < settings.ROUTING_LEASE_SECONDS / 3:
            return True
        held = self.lease.hold()
        self._last_renew = now
        if held and not self.leading:
            logger.info("router %s: leading (epoch %s)", self.name, self.lease.epoch)
            self.stats.takeovers += 1
            self.leading = True
            self._take_over()
        elif not held and self.leading:
            self._stand_down("lost the lease")
        return held

    def _take_over(self) -> None:
        self.router.actor = Actor.router(epoch=self.lease.epoch)
        self._ensure_group()
        self._rebuild()
        self._drain_pending = True
        self._stale = False

    def _stand_down(self, why: str) -> None:
        if self.leading:
            logger.warning("router %s: %s; standing by", self.name, why)
        self.leading = False
        self.lease.epoch = None
        self.router.actor = Actor.router(epoch=-1)  # any write before the next takeover is refused

    def _shut_down(self) -> None:
        try:
            if self.leading:
                self.lease.release()
            self.leading = False
            self._report(force=True)
        except (OperationalError, InterfaceError) as error:
            logger.warning("router %s: could not release the lease (%s)", self.name, error)

    def _ensure_group(self) -> None:
        try:
            self.r.xgroup_create(ROUTING_STREAM, GROUP, id="$", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _rebuild(self) -> None:
        self.router.rebuild()
        self.stats.rebuilds += 1
        self._next_rebuild = time.monotonic() + settings.ROUTING_REBUILD_SECONDS

    # --- events and timers ----------------------------------------------------------------

    def _consume(self, *, block_ms: int) -> None:
        """Read new events (and any left unacknowledged by a previous leader), apply, acknowledge."""
        try:
            pending = []
            if self._drain_pending:  # events a previous leader read but did not acknowledge
                pending = self.r.xreadgroup(GROUP, CONSUMER, {ROUTING_STREAM: "0"}, count=500)
                self._drain_pending = bool(pending and pending[0][1])
            fresh = self.r.xreadgroup(GROUP, CONSUMER, {ROUTING_STREAM: ">"}, count=500, block=block_ms)
        except redis.ResponseError as error:
            # NOGROUP: the stream or group is gone; UNBLOCKED: it vanished while we were blocked on it.
            if "NOGROUP" not in str(error) and "UNBLOCKED" not in str(error):
                raise
            logger.warning("router: event stream lost (Redis flushed?); rebuilding from PostgreSQL")
            self._take_over()
            return
        handled = []
        for _, messages in (pending or []) + (fresh or []):
            for message_id, payload in messages:
                if payload:  # None when the stream was trimmed past a pending entry
                    self.router.handle(payload)
                handled.append(message_id)
        if handled:  # acknowledged after they were applied (at least once), in one round trip
            self.r.xack(ROUTING_STREAM, GROUP, *handled)
            self.stats.events += len(handled)

    def _timers(self) -> None:
        now = time.monotonic()
        if now < self._next_timers:
            return
        self._next_timers = now + TIMER_RESOLUTION
        if self.router.ensure_built():
            self.stats.rebuilds += 1
        elif now >= self._next_rebuild:
            self._rebuild()
        done = self.router.run_timeouts()
        self.stats.offers_expired += done["offer"]
        self.stats.visits_expired += done["wait"]
        self.stats.visits_timed_out += done["stuck"]
        self._decided |= any(done.values())
        if now >= self._next_sweep:
            self.router.withdraw_ineligible_offers()
            self._next_sweep = now + settings.ROUTING_SWEEP_SECONDS

    # --- health ---------------------------------------------------------------------------

    def _report(self, *, force: bool = False) -> None:
        """Write this router's health row (at most every ``HEALTH_SECONDS``)."""
        now = time.monotonic()
        if not force and now < self._next_health:
            return
        self._next_health = now + HEALTH_SECONDS
        pending, lag = self._backlog()
        params = {
            "name": self.name, "host": socket.gethostname(), "pid": os.getpid(), "leading": self.leading,
            "epoch": self.lease.epoch if self.leading else None,
            "leader_since": self.lease.leader_since if self.leading else None,
            "decided": self._decided, "offers": self.stats.offered, "pending": pending, "lag": lag,
            "rebuilds": self.stats.rebuilds, "error": self._last_error,
        }  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(_HEALTH_SQL, params)
        self._decided = False

    def _backlog(self) -> tuple[int, float | None]:
        """Return the events not yet applied (delivered but unacknowledged, plus not yet delivered) and
        the age in seconds of the oldest of them (None when there is none); ``(-1, None)`` if Redis cannot say.

        Ages are read against Redis's own clock, the one that stamped the events' ids.
        """
        try:
            groups = self.r.xinfo_groups(ROUTING_STREAM)
            group = next((g for g in groups if _text(g.get("name")) == GROUP), None)
            if group is None:
                return 0, None
            pending, undelivered = int(group.get("pending") or 0), int(group.get("lag") or 0)
            oldest = None
            if pending:
                oldest = self.r.xpending(ROUTING_STREAM, GROUP)["min"]
            elif undelivered:
                after = f"({_text(group['last-delivered-id'])}"
                first = self.r.xrange(ROUTING_STREAM, min=after, count=1)
                oldest = first[0][0] if first else None
            seconds, micros = self.r.time()
        except redis.RedisError:
            return -1, None
        if oldest is None:
            return pending + undelivered, None
        stamped_ms = int(_text(oldest).split("-")[0])
        return pending + undelivered, max(0.0, round(seconds + micros / 1e6 - stamped_ms / 1000, 3))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

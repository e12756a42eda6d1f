"""The routing worker loop: hold the lease, consume events, run timers and matching passes."""

import logging
import os
import socket
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import close_old_connections

from clinical.events import ROUTING_STREAM
from clinical.routing.engine import Router, RouterConfig
from clinical.routing.lease import Lease

logger = logging.getLogger(__name__)
GROUP = "router"
CONSUMER = "leader"  # one name for whoever leads, so a new leader inherits unacknowledged events
TIMER_RESOLUTION = 0.25  # seconds between checks for expired offers, long waits and lost data


@dataclass
class WorkerStats:
    offered: int = 0
    offers_expired: int = 0
    visits_expired: int = 0
    events: int = 0
    rebuilds: int = 0
    started: float = field(default_factory=time.monotonic)


class RoutingWorker:
    """Run the router while holding the lease; stand by otherwise."""

    def __init__(self, r: redis.Redis, *, config: RouterConfig | None = None, name: str | None = None):
        self.r = r
        self.router = Router(r, config)
        self.lease = Lease(
            r, seconds=settings.ROUTING_LEASE_SECONDS, name=name or f"{socket.gethostname()}:{os.getpid()}"
        )
        self.leading = False
        self.stopping = False
        self.stats = WorkerStats()
        self._next_sweep = self._next_rebuild = 0.0
        self._last_renew = 0.0
        self._next_timers = 0.0
        self._drain_pending = False

    def run(self, *, until: float | None = None) -> WorkerStats:
        """Loop until stopped (or until the monotonic deadline ``until``)."""
        try:
            while not self.stopping and (until is None or time.monotonic() < until):
                try:
                    self.step()
                except redis.RedisError as error:
                    # Redis is disposable: whatever it lost, the next round rebuilds from PostgreSQL.
                    logger.warning("router: Redis error (%s); retrying", error)
                    self.leading = False
                    time.sleep(1)
        finally:
            if self.leading:
                self.lease.release()
        return self.stats

    def step(self) -> None:
        """Do one round: renew or take the lease; if leading, consume events and route."""
        close_old_connections()
        if not self._renew():
            time.sleep(0.5)
            return
        self._consume(block_ms=200)
        self._timers()
        self.stats.offered += self.router.match()

    def _renew(self) -> bool:
        now = time.monotonic()
        if self.leading and now - self._last_renew < settings.ROUTING_LEASE_SECONDS / 3:
            return True
        held = self.lease.hold()
        self._last_renew = now
        if held and not self.leading:
            logger.info("router %s: leading", self.lease.token)
            self._take_over()
        elif not held and self.leading:
            logger.warning("router %s: lost the lease; standing by", self.lease.token)
        self.leading = held
        return held

    def _take_over(self) -> None:
        self._ensure_group()
        self._rebuild()
        self._drain_pending = True

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
        for _, messages in (pending or []) + (fresh or []):
            for message_id, payload in messages:
                if payload:  # None when the stream was trimmed past a pending entry
                    self.router.handle(payload)
                self.r.xack(ROUTING_STREAM, GROUP, message_id)
                self.stats.events += 1

    def _timers(self) -> None:
        now = time.monotonic()
        if now < self._next_timers:
            return
        self._next_timers = now + TIMER_RESOLUTION
        if self.router.ensure_built() or now >= self._next_rebuild:
            if now >= self._next_rebuild:
                self._rebuild()
            else:
                self.stats.rebuilds += 1
        self.stats.offers_expired += self.router.expire_offers()
        self.stats.visits_expired += self.router.expire_waits()
        if now >= self._next_sweep:
            self.router.withdraw_ineligible_offers()
            self._next_sweep = now + settings.ROUTING_SWEEP_SECONDS

"""The oversight worker: records the queue history, evaluates the alerts and delivers them.

Run two (``python manage.py run_oversight``): one works, holding a PostgreSQL advisory lock on
its connection; the other waits for the lock. If the working process dies, its connection ends,
PostgreSQL frees the lock and the standby takes over within a tick, starting after the last
recorded minute (``oversight.history``), so the history has no gap and no minute counted twice.
"""

import logging
import math
import os
import socket
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from oversight import history

logger = logging.getLogger(__name__)

LOCK_KEY = 0x0F5E_0001  # the advisory lock's key: "the oversight worker"
_TAKE_SQL = "SELECT pg_try_advisory_lock(%s)"
# Whether this session still holds it (a dropped and re-made connection does not).
_HELD_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
    "AND objid = %s AND objsubid = 1 AND granted)"
)
PRUNE_EVERY = 3600.0  # seconds between deletions of history past OPS_STATS_DAYS
BACKOFF_MAX = 10.0


@dataclass
class OversightStats:
    """What a worker did, for its exit line."""

    ticks: int = 0
    minutes: int = 0
    opened: int = 0
    resolved: int = 0
    delivered: int = 0
    takeovers: int = 0
    db_errors: int = 0


class OversightWorker:
    """One oversight process: works while it holds the lock, waits for it otherwise."""

    def __init__(self, *, name: str | None = None, tick_seconds: float | None = None):
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.tick = tick_seconds if tick_seconds is not None else settings.OPS_OVERSIGHT_TICK_SECONDS
        self.stopping = False
        self.holding = False
        self.stats = OversightStats()
        self._last_prune = 0.0
        self._new_holder = False
        self._last_ranked = -math.inf  # ranks on its first tick, and after a takeover
        self._backoff = 0.0

    def run(self, *, until: float | None = None) -> OversightStats:
        """Tick until stopped (or until the monotonic deadline ``until``), riding out PostgreSQL failures."""
        while not self.stopping and (until is None or time.monotonic() < until):
            started = time.monotonic()
            try:
                self.step()
                self._backoff = 0.0
            except (OperationalError, InterfaceError) as error:
                self.stats.db_errors += 1
                self.holding = False
                connection.close()  # the lock went with the session; the next tick asks again
                self._backoff = min(BACKOFF_MAX, max(0.5, self._backoff * 2))
                logger.warning("oversight %s: PostgreSQL: %s", self.name, str(error).strip().splitlines()[0])
            self._sleep(max(self._backoff, self.tick - (time.monotonic() - started)))
        connection.close()
        return self.stats

    def step(self) -> bool:
        """Do one tick if this process holds (or can take) the lock; return True if it worked."""
        if not self._hold():
            return False
        self.stats.ticks += 1
        if self._new_holder:
            # The last holder may have run code that wrote no totals or day rows (a deploy).
            history.roll_up_missing()
            self._new_holder = False
        # Catch up (after a first start or a failover) in bounded batches, a few per tick.
        for _ in range(8):
            recorded = history.record_due(writer=self.name)
            self.stats.minutes += recorded
            if not recorded or self.stopping:
                break
        from oversight import actions, delivery

        opened, resolved = actions.evaluate(by=self.name)
        self.stats.opened += len(opened)
        self.stats.resolved += len(resolved)
        self.stats.delivered += delivery.deliver_due()
        if time.monotonic() - self._last_ranked >= settings.OPS_STATS_PROVIDERS_SECONDS:
            history.rank_providers()
            self._last_ranked = time.monotonic()
        if time.monotonic() - self._last_prune > PRUNE_EVERY:
            history.prune()
            self._last_prune = time.monotonic()
        return True

    def _hold(self) -> bool:
        with connection.cursor() as cursor:
            if self.holding:
                cursor.execute(_HELD_SQL, [LOCK_KEY])
                self.holding = cursor.fetchone()[0]
            if not self.holding:
                cursor.execute(_TAKE_SQL, [LOCK_KEY])
                self.holding = cursor.fetchone()[0]
                if self.holding:
                    self.stats.takeovers += 1
                    self._last_ranked = -math.inf  # the last holder's ranking may be old
                    self._new_holder = True
                    logger.info("oversight %s: working (took the lock)", self.name)
        return self.holding

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

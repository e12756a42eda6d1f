"""Shared by the simulate_traffic tests: fast timings, and a router on a thread of the test process."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.db import connections

from clinical.routing.engine import RouterConfig
from clinical.routing.worker import RoutingWorker

# Seconds instead of minutes, so a few seconds show every step of a visit.
FAST = {
    "rate": 5.0,
    "cancel_rate": 0.15,
    "visit_minutes": (0.01, 0.03),
    "poll_seconds": (0.1, 0.2),
    "think_seconds": (0.1, 0.3),
    "connect_seconds": (0.1, 0.2),
    "cancel_after_seconds": (0.2, 1.5),
    "patient_poll_seconds": (0.3, 0.6),
    "retry_seconds": (0.3, 0.6),
    "shift_minutes": (0.03, 0.06),
    "break_minutes": (0.005, 0.01),
    "seed": 7,
}


@contextmanager
def routing(redis_client, *, seconds: float) -> Iterator[RoutingWorker]:
    """Route for the block (at most ``seconds``) with a 1 s offer timeout, so ignored offers come back quickly."""
    worker = RoutingWorker(redis_client, config=RouterConfig(offer_timeout=1), name="t")
    until = time.monotonic() + seconds

    def run():
        try:
            while not worker.stopping and time.monotonic() < until:
                try:
                    worker.run(until=until)
                except redis.ResponseError:
                    # Another run flushed the shared test Redis under a blocking read, which the
                    # worker does not survive yet ("UNBLOCKED the stream key no longer exists").
                    continue
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stopping = True
        thread.join()

import datetime as dt
import logging
import os
import signal
import socket
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.db.backends.signals import connection_created
from django.utils import timezone

from clinical.routing.engine import RouterConfig
from clinical.routing.policy import POLICIES
from clinical.routing.worker import RoutingWorker
from core.redis import get_redis

# Its lines are log lines (JSON, core.logs) like the worker's own, not a command's report.
logger = logging.getLogger(__name__)


def _session_settings(name: str):
    """Return a ``connection_created`` receiver that names this router's sessions in PostgreSQL
    (``application_name``, seen in ``pg_stat_activity``) and has PostgreSQL end its transaction if
    the process stops mid-way (SIGSTOP, a long pause) for longer than a lease: its share lock on the
    lease row then no longer holds up the standby's takeover, and its unfinished write is rolled back.
    """

    def receiver(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SET application_name = %s", [f"router:{name}"[:63]])
            cursor.execute("SET idle_in_transaction_session_timeout = %s", [f"{settings.ROUTING_LEASE_SECONDS}s"])

    return receiver


def _skew_process_clock(seconds: int) -> None:
    """Test-only (ROUTING_TEST_CLOCK_SKEW_SECONDS): shift this process's wall clock, so a soak can show
    that no deadline depends on it.
    """
    real_time, real_now = time.time, timezone.now
    time.time = lambda: real_time() + seconds
    timezone.now = lambda: real_now() + dt.timedelta(seconds=seconds)


class Command(BaseCommand):
    help = "Run the routing worker (leader or hot standby; run two for high availability)."

    def add_arguments(self, parser):
        parser.add_argument("--policy", choices=POLICIES, help="fairness policy (default: ROUTING_POLICY)")
        parser.add_argument("--name", help="name of this router in the lease (default: host:pid)")

    def handle(self, *args, policy=None, name=None, **options):
        config = RouterConfig()
        if policy:
            config.policy = policy
        if settings.ROUTING_TEST_CLOCK_SKEW_SECONDS:
            _skew_process_clock(settings.ROUTING_TEST_CLOCK_SKEW_SECONDS)
            logger.info("test setting: this router's clock is %+d s off", settings.ROUTING_TEST_CLOCK_SKEW_SECONDS)
        name = name or f"{socket.gethostname()}:{os.getpid()}"
        connection_created.connect(_session_settings(name), dispatch_uid="run_router.session", weak=False)
        connection.close()  # the next connection gets the settings
        worker = RoutingWorker(get_redis(), config=config, name=name)

        def stop(signum, frame):
            worker.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info("router %s: policy %s, waiting for the lease", worker.name, config.policy)
        stats = worker.run()
        logger.info(
            f"router {worker.name} stopped: {stats.offered} offers, {stats.offers_expired} offers expired, "
            f"{stats.visits_expired} visits expired, {stats.visits_timed_out} visits timed out, {stats.events} events, "
            f"{stats.rebuilds} rebuilds, {stats.takeovers} takeovers, {stats.fenced} fenced writes, "
            f"{stats.db_errors} PostgreSQL and {stats.redis_errors} Redis errors survived"
        )

"""``python manage.py run_oversight``: queue history, alerts and their delivery (``oversight.worker``)."""

import logging
import signal

from django.core.management.base import BaseCommand

from oversight.worker import OversightWorker

# Its lines are log lines (JSON, core.logs) like the worker's own, not a command's report.
logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Record the queue history, open and resolve alerts, send them; run two (one works, one waits)."

    def add_arguments(self, parser):
        parser.add_argument("--name", help="this worker's name in the history and alerts (default: host:pid)")

    def handle(self, *args, name=None, **options):
        worker = OversightWorker(name=name)

        def stop(signum, frame):
            worker.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info("oversight %s: every %g s while it holds the lock", worker.name, worker.tick)
        stats = worker.run()
        logger.info(
            f"oversight {worker.name} stopped: {stats.ticks} ticks, {stats.minutes} minutes recorded, "
            f"{stats.opened} alerts opened, {stats.resolved} resolved, {stats.delivered} notifications sent, "
            f"{stats.takeovers} takeovers, {stats.db_errors} PostgreSQL errors survived"
        )

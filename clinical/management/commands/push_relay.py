"""``python manage.py push_relay``: relay every visit transition to the websockets (``clinical.push.relay``)."""

import asyncio
import logging
import signal

from django.core.management.base import BaseCommand

from clinical.push.relay import Relay

# Its lines are log lines (JSON, core.logs) like the relay's own, not a command's report.
logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Push every visit transition to the apps' and console's websockets; SIGTERM or Ctrl-C stops it."

    def add_arguments(self, parser):
        parser.add_argument("--name", default=None, help="consumer name in the stream's group (default host-pid)")

    def handle(self, *args, name, **options):
        stats = asyncio.run(self._run(name))
        logger.info(
            f"push relay stopped: {stats.entries} entries, {stats.messages} messages, "
            f"{stats.heartbeats} heartbeats, {stats.errors} errors"
        )

    async def _run(self, name):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        relay = Relay(name=name)
        logger.info("push relay %s: relaying the push stream to the channel layer", relay.name)
        return await relay.run(stop)

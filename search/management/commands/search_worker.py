import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.models import OutboxEntry
from search.backends.elasticsearch import get_client
from search.worker import SearchWorker


class Command(BaseCommand):
    help = "Drain the search outbox into Elasticsearch in bulk, with retries and backoff (needs ELASTICSEARCH_URL)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="stop when nothing is due instead of waiting for more")

    def handle(self, *args, once=False, **options):
        if not settings.ELASTICSEARCH_URL:
            raise CommandError("ELASTICSEARCH_URL is not set: the PostgreSQL search backend needs no worker.")
        worker = SearchWorker(get_client())

        def stop(signum, frame):
            worker.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"search worker: {OutboxEntry.objects.count()} outbox entries waiting")
        if once:
            while not worker.stopping and worker.step().entries:
                pass
        else:
            worker.run()
        waiting = OutboxEntry.objects.count()
        self.stdout.write(
            f"search worker stopped: {worker.indexed} indexed, {worker.failed} retries, {waiting} waiting"
        )

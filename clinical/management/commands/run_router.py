import signal

from django.core.management.base import BaseCommand

from clinical.routing.engine import RouterConfig
from clinical.routing.policy import POLICIES
from clinical.routing.worker import RoutingWorker
from ops_console.redis import get_redis


class Command(BaseCommand):
    help = "Run the routing worker (leader or hot standby; run two for high availability)."

    def add_arguments(self, parser):
        parser.add_argument("--policy", choices=POLICIES, help="fairness policy (default: ROUTING_POLICY)")
        parser.add_argument("--name", help="name of this router in the lease (default: host:pid)")

    def handle(self, *args, policy=None, name=None, **options):
        config = RouterConfig()
        if policy:
            config.policy = policy
        worker = RoutingWorker(get_redis(), config=config, name=name)

        def stop(signum, frame):
            worker.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"router {worker.lease.token}: policy {config.policy}, waiting for the lease")
        stats = worker.run()
        self.stdout.write(
            f"router {worker.lease.token} stopped: {stats.offered} offers, {stats.offers_expired} offers expired, "
            f"{stats.visits_expired} visits expired, {stats.events} events, {stats.rebuilds} rebuilds"
        )

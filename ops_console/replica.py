"""Which console requests read from the read replica (``core.replica``): its read-only pages.

Changelists, the global search and the live queues with their statistics read from the replica
(with ``DATABASE_REPLICA_URL`` set). Everything else reads the primary: forms (about to be
edited), every POST and action, the sign-in; and so does every request of a user who saved
anything in the last ``OPS_READ_YOUR_WRITES_SECONDS``, so nobody sees a list without the change
they just made (the mark is kept in Redis, shared by every web process).
"""

from django.conf import settings

from core.redis import get_redis
from core.replica import REPLICA, allow_replica_reads

SAFE_METHODS = ("GET", "HEAD")
# The read-only pages (URL names in the console's namespace); every changelist besides.
READ_ONLY_PAGES = frozenset({"global_search", "live_queues", "live_queues_data"})


def _wrote_key(user_id: int) -> str:
    return f"ops:replica:wrote:{user_id}"


def is_read_only_page(request) -> bool:
    """Return True for a GET or HEAD of a console page that only reads (a list, search, statistics)."""
    match = getattr(request, "resolver_match", None)
    if request.method not in SAFE_METHODS or match is None or match.namespace != "ops":
        return False
    return match.url_name in READ_ONLY_PAGES or (match.url_name or "").endswith("_changelist")


def wrote_lately(user) -> bool:
    """Return True if the user saved something within ``OPS_READ_YOUR_WRITES_SECONDS``."""
    return bool(user.is_authenticated and get_redis().exists(_wrote_key(user.pk)))


class ReplicaReadsMiddleware:
    """Turn replica reads on for the read-only pages; remember who just wrote."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if REPLICA not in settings.DATABASES:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        finally:
            allow_replica_reads(False)
        user = getattr(request, "user", None)
        wrote = request.method not in SAFE_METHODS and response.status_code < 500
        if wrote and user is not None and user.is_authenticated and settings.OPS_READ_YOUR_WRITES_SECONDS:
            get_redis().set(_wrote_key(user.pk), 1, ex=settings.OPS_READ_YOUR_WRITES_SECONDS)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if REPLICA in settings.DATABASES and is_read_only_page(request) and not wrote_lately(request.user):
            allow_replica_reads(True)
        return None

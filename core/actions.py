"""Every write to the base layer's records: security events, and pruning the PHI access log.

PHI reads are recorded by ``core.access``; outbox entries by ``core.outbox``.
"""

import datetime as dt
import re
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.access import storable_text
from core.client_ip import client_ip
from core.models import SecurityEvent


def record_security_event(request, *, kind: str, detail: str = "") -> SecurityEvent:
    """Record a security-relevant request (who, from where, what path)."""
    user = getattr(request, "user", None)
    return SecurityEvent.objects.create(
        kind=kind,
        path=request.get_full_path()[:500],
        method=request.method[:10],
        ip=client_ip(request) or None,
        # A NUL in a header is refused by PostgreSQL: the probe or failed sign-in must be kept anyway.
        user_agent=storable_text(request.META.get("HTTP_USER_AGENT", ""), 500),
        user=user if user is not None and user.is_authenticated else None,
        detail=storable_text(detail, 500),
    )


PRUNE_BATCH = 10_000  # rows per DELETE: short transactions, no long lock on the log


def access_log_cutoff(duration: str, *, now: dt.datetime) -> dt.datetime:
    """Return ``now`` minus ``duration`` ("6y" calendar years, "90d" days); raise ValueError if unreadable."""
    match = re.fullmatch(r"\s*(\d+)\s*([yd])\s*", duration.lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"Give a duration such as 6y or 90d, got {duration!r}.")
    amount, unit = int(match[1]), match[2]
    if unit == "d":
        return now - dt.timedelta(days=amount)
    if now.month == 2 and now.day == 29:  # 29 February, N years back, may not exist
        now = now.replace(day=28)
    return now.replace(year=now.year - amount)


def prune_access_log(*, before: dt.datetime, progress: Callable[[int], None] = lambda n: None) -> int:
    """Delete access log rows recorded before ``before``, in batches, through the database's prune
    function (the table refuses any other delete); return how many.

    Refused (``ValueError``) if ``before`` is within ``OPS_ACCESS_LOG_MIN_RETENTION``.
    """
    keep_until = access_log_cutoff(settings.OPS_ACCESS_LOG_MIN_RETENTION, now=timezone.now())
    if before > keep_until:
        raise ValueError(
            f"The access log keeps every row {settings.OPS_ACCESS_LOG_MIN_RETENTION} at least "
            f"(OPS_ACCESS_LOG_MIN_RETENTION): nothing after {keep_until:%Y-%m-%d} may be pruned."
        )
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT support_prune_access_log(%s, %s)", [before, PRUNE_BATCH])
            count = cursor.fetchone()[0]
        deleted += count
        if count < PRUNE_BATCH:
            return deleted
        progress(deleted)

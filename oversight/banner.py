"""The open alerts banner on every console page, shown from a snapshot in Redis.

Pages query nothing for it: ``publish`` writes the snapshot (after each evaluation and each
acknowledgement commits) and pages read that one key. The snapshot lives ``TTL_SECONDS``, renewed
by every evaluation; when no evaluator runs it lapses and the banner goes (nothing on a miss).
"""

import json
import logging

import redis

from core.redis import get_redis
from oversight.selectors import open_alerts

logger = logging.getLogger(__name__)

KEY = "ops:oversight:banner"
TTL_SECONDS = 90  # several evaluations long: the oversight worker evaluates every few seconds
NEWEST = 3  # messages shown; the rest are counted


def publish() -> None:
    """Write the snapshot of the open alerts (count and newest messages) for the banner."""
    alerts = list(open_alerts().only("id", "message", "acknowledged_at"))
    snapshot = {
        "count": len(alerts),
        "unacknowledged": sum(alert.acknowledged_at is None for alert in alerts),
        "newest": [
            {"id": alert.pk, "message": alert.message, "acknowledged": alert.acknowledged_at is not None}
            for alert in alerts[:NEWEST]
        ],
    }
    try:
        get_redis().set(KEY, json.dumps(snapshot), ex=TTL_SECONDS)
    except redis.RedisError as error:  # the banner is a convenience: the alerts are in PostgreSQL
        logger.warning("alert banner not published: %s", error)


def banner_for(request) -> dict | None:
    """Return the banner for the request's user (who may view alerts), or None: no database query."""
    if not request.user.has_perm("oversight.view_alert"):
        return None
    if not hasattr(request, "_ops_alert_banner"):
        request._ops_alert_banner = _snapshot()
    return request._ops_alert_banner


def _snapshot() -> dict | None:
    try:
        raw = get_redis().get(KEY)
    except redis.RedisError:
        return None
    snapshot = json.loads(raw) if raw else None
    return snapshot if snapshot and snapshot["count"] else None

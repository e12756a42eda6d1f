"""Alert writes: open and resolve alerts as their conditions come and go; acknowledge them.

Nothing else changes an alert. Opening goes through the partial unique index
``oversight_alert_one_open`` (``INSERT … ON CONFLICT DO NOTHING``): however many evaluators run at
once, one condition has one open alert, and only the evaluator whose row went in writes its
notifications (``AlertDelivery``, one per configured channel, in the same transaction). The
banner's snapshot in Redis is refreshed once the change commits.
"""

import json

from django.db import connection, transaction
from django.db.models.functions import Now

from core import dbclock
from oversight import banner, delivery
from oversight.alerts import Condition, conditions
from oversight.models import Alert, AlertDelivery
from oversight.selectors import open_alerts

_OPEN_SQL = """
INSERT INTO oversight_alert (kind, subject, state, message, detail, opened_at, opened_by)
SELECT c.kind, c.subject, c.state, c.message, c.detail, %(now)s, %(by)s
FROM jsonb_to_recordset(%(conditions)s::jsonb) AS c (kind text, subject text, state text, message text, detail jsonb)
ON CONFLICT (kind, subject) WHERE resolved_at IS NULL DO NOTHING
RETURNING id
"""

_RESOLVE_SQL = """
UPDATE oversight_alert SET resolved_at = %(now)s WHERE id = ANY(%(ids)s) AND resolved_at IS NULL RETURNING id
"""


def evaluate(by: str) -> tuple[list[Alert], list[Alert]]:
    """Open an alert for each condition that holds and has none open; resolve those whose condition cleared.

    ``by`` names the process (kept as ``opened_by``). Return the alerts opened and resolved by
    this call: an alert another evaluator opened or resolved first is in neither.
    """
    now = dbclock.now()
    found = {(condition.kind, condition.subject): condition for condition in conditions(now)}
    with transaction.atomic():
        current = {(alert.kind, alert.subject): alert.pk for alert in open_alerts().only("kind", "subject")}
        resolved = _run(_RESOLVE_SQL, now=now, ids=[pk for key, pk in current.items() if key not in found])
        opened = _open([condition for key, condition in found.items() if key not in current], now=now, by=by)
        transaction.on_commit(banner.publish)
    changed = Alert.objects.in_bulk(opened + resolved) if opened or resolved else {}
    return [changed[pk] for pk in opened], [changed[pk] for pk in resolved]


def _open(new: list[Condition], *, now, by: str) -> list[int]:
    """Insert the alerts of ``new`` conditions no evaluator opened yet, with their deliveries; return their ids."""
    if not new:
        return []
    rows = json.dumps([condition._asdict() for condition in new])
    opened = _run(_OPEN_SQL, now=now, by=by, conditions=rows)
    AlertDelivery.objects.bulk_create(
        AlertDelivery(alert_id=pk, channel=channel, next_attempt_at=now)
        for pk in opened
        for channel in delivery.channels()
    )
    return opened


def _run(sql: str, **params) -> list[int]:
    if params.get("ids") == []:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def acknowledge(alert: Alert, user) -> bool:
    """Record that ``user`` saw the alert; return False if someone already had (the first one stays).

    An acknowledged alert stays open until its condition clears. A resolved alert may still be
    acknowledged: the record then says someone reviewed an alert that cleared before anyone acted.
    """
    with transaction.atomic():
        done = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=Now(), acknowledged_by=user
        )
        if done:
            transaction.on_commit(banner.publish)
    return bool(done)

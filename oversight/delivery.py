"""Notifications of alert openings: e-mail and a signed webhook, each retried with backoff until sent.

``AlertDelivery`` rows are an outbox, written with the alert they announce
(``oversight.actions.evaluate``). ``deliver_due`` claims a due row (``FOR UPDATE SKIP LOCKED``,
pushing its next attempt past the longest a send may take, so no other sender takes it
meanwhile), sends outside any transaction, then marks it sent, or schedules its retry: 10 s,
doubling, up to ``OPS_ALERT_RETRY_MAX_SECONDS``; after ``OPS_ALERT_DELIVERY_ATTEMPTS`` attempts it
gives up (``failed_at``). A sender that dies mid-send leaves the row to be retried once its claim
runs out: a receiver may then get one notification twice, which the e-mail's Message-ID and the
webhook's ``X-Ops-Delivery`` header let it recognise.

The webhook POSTs JSON signed with HMAC-SHA256 over ``"<timestamp>.<body>"`` (headers
``X-Ops-Timestamp`` and ``X-Ops-Signature: sha256=<hex>``); receivers check it with
``verify_signature``. Neither channel carries PHI: messages hold counts and state codes only.
"""

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.urls import reverse

from core import dbclock
from oversight.models import Alert, AlertDelivery, DeliveryChannel

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 10
CLAIM_SECONDS = 120  # longer than any one send may take (SMTP and webhook timeouts)
BATCH_SIZE = 20  # most sends per call, so that a tick of the worker stays short
SIGNATURE_MAX_AGE = 300  # seconds a receiver accepts a signed timestamp (replays are refused after)

_CLAIM_SQL = """
WITH due AS (
    SELECT id FROM oversight_alertdelivery
    WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE oversight_alertdelivery d SET attempts = d.attempts + 1, next_attempt_at = %(claimed_until)s
FROM due WHERE d.id = due.id
RETURNING d.id
"""

_SENT_SQL = """
UPDATE oversight_alertdelivery SET sent_at = clock_timestamp(), last_error = ''
WHERE id = %(id)s AND sent_at IS NULL
"""

# Schedule the next attempt, or give up after the last one.
_FAILED_SQL = """
UPDATE oversight_alertdelivery
SET last_error = %(error)s, next_attempt_at = %(retry_at)s,
    failed_at = CASE WHEN attempts >= %(attempts)s THEN clock_timestamp() END
WHERE id = %(id)s AND sent_at IS NULL
"""


class DeliveryError(Exception):
    """A notification was not accepted by its receiver."""


def channels() -> list[str]:
    """Return the channels configured now: e-mail with recipients, webhook with a URL."""
    configured = []
    if settings.OPS_ALERT_EMAILS:
        configured.append(DeliveryChannel.EMAIL)
    if settings.OPS_ALERT_WEBHOOK_URL:
        configured.append(DeliveryChannel.WEBHOOK)
    return configured


def deliver_due(now: dt.datetime | None = None) -> int:
    """Send the notifications due at ``now`` (the database's clock by default); return how many were sent.

    One at a time: each claim covers one send, however slow the receivers before it were.
    """
    now = now or dbclock.now()
    sent = 0
    for _ in range(BATCH_SIZE):
        delivery = _claim(now)
        if delivery is None:
            break
        try:
            _send(delivery)
        except (DeliveryError, OSError) as error:
            _record_failure(delivery, now, str(error) or type(error).__name__)
        else:
            sent += 1
            _execute(_SENT_SQL, {"id": delivery.pk})
    return sent


def retry_delay(attempts: int) -> dt.timedelta:
    """Return how long to wait after the ``attempts``-th failed attempt: 10 s, doubling, capped."""
    seconds = FIRST_RETRY_SECONDS * 2 ** min(attempts - 1, 30)
    return dt.timedelta(seconds=min(seconds, settings.OPS_ALERT_RETRY_MAX_SECONDS))


def _claim(now: dt.datetime) -> AlertDelivery | None:
    """Take the delivery due first, if any: its next attempt moves past the longest a send may take."""
    params = {"now": now, "claimed_until": now + dt.timedelta(seconds=CLAIM_SECONDS)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
    return AlertDelivery.objects.select_related("alert").get(pk=row[0]) if row else None


def _record_failure(delivery: AlertDelivery, now: dt.datetime, error: str) -> None:
    logger.warning(
        "alert %s by %s: attempt %s failed: %s", delivery.alert_id, delivery.channel, delivery.attempts, error
    )
    params = {
        "id": delivery.pk, "error": error[:500], "retry_at": now + retry_delay(delivery.attempts),
        "attempts": settings.OPS_ALERT_DELIVERY_ATTEMPTS,
    }  # fmt: skip
    _execute(_FAILED_SQL, params)


def _execute(sql: str, params: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _send(delivery: AlertDelivery) -> None:
    if delivery.channel == DeliveryChannel.EMAIL:
        send_email(delivery.alert)
    else:
        send_webhook(delivery)


# --- e-mail -----------------------------------------------------------------------------------


def send_email(alert: Alert) -> None:
    """E-mail the alert's opening to ``OPS_ALERT_EMAILS`` through Django's configured mail backend."""
    if not settings.OPS_ALERT_EMAILS:
        raise DeliveryError("OPS_ALERT_EMAILS is empty")
    message = EmailMessage(
        subject=f"[Ops alert] {alert.message}",
        body=_email_body(alert),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=settings.OPS_ALERT_EMAILS,
        headers={"Message-ID": message_id(alert)},
    )
    message.send()


def message_id(alert: Alert) -> str:
    """Return the Message-ID of the alert's e-mail: the same for every attempt at one opening."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "ops-console.invalid"
    return f"<ops-alert-{alert.pk}.{alert.opened_at:%Y%m%d%H%M%S}@{domain}>"


def _email_body(alert: Alert) -> str:
    return (
        f"{alert.message}\n\n"
        f"Alert: {alert.get_kind_display()}{f' ({alert.subject})' if alert.subject else ''}\n"
        f"Opened: {alert.opened_at:%Y-%m-%d %H:%M:%S %Z} by {alert.opened_by}\n"
        f"In the console: {alert_link(alert)}\n\n"
        "Acknowledge it in the console; it resolves by itself when the condition clears.\n"
    )


def alert_link(alert: Alert) -> str:
    """Return the link to the alert's page in the console (absolute with ``OPS_CONSOLE_URL``)."""
    return settings.OPS_CONSOLE_URL + reverse("ops:oversight_alert_change", args=[alert.pk])


# --- webhook ----------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Treat a redirect as a failure: urllib would repeat the POST as a GET, unsigned body lost."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def send_webhook(delivery: AlertDelivery) -> None:
    """POST the alert's opening, signed, to ``OPS_ALERT_WEBHOOK_URL``; raise unless it answers 2xx."""
    url, secret = settings.OPS_ALERT_WEBHOOK_URL, settings.OPS_ALERT_WEBHOOK_SECRET
    if not url:
        raise DeliveryError("OPS_ALERT_WEBHOOK_URL is not set")
    body = webhook_body(delivery.alert)
    timestamp = str(int(time.time()))
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (settings allow http(s) only)
    for name, value in {
        "Content-Type": "application/json",
        "User-Agent": "ops-console-alerts",
        "X-Ops-Delivery": str(delivery.pk),
        "X-Ops-Timestamp": timestamp,
        "X-Ops-Signature": sign(secret, timestamp, body),
    }.items():
        request.add_header(name, value)
    try:
        with _opener.open(request, timeout=settings.OPS_ALERT_WEBHOOK_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook answered {status}")


def webhook_body(alert: Alert) -> bytes:
    """Return the JSON the webhook receives: the alert, no PHI."""
    payload = {
        "alert": {
            "id": alert.pk, "kind": alert.kind, "subject": alert.subject, "state": alert.state,
            "message": alert.message, "opened_at": alert.opened_at.isoformat(), "url": alert_link(alert),
        },
    }  # fmt: skip
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-Ops-Signature`` value: ``sha256=`` and the HMAC of ``timestamp.body``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, max_age: int | None = SIGNATURE_MAX_AGE
) -> bool:
    """Return True if ``signature`` signs ``timestamp.body`` with ``secret`` and the timestamp is recent.

    For receivers: pass the raw request body and the ``X-Ops-Timestamp`` and ``X-Ops-Signature``
    headers. A timestamp more than ``max_age`` seconds from the receiver's clock is refused (a
    replayed request); ``max_age=None`` skips that check.
    """
    if max_age is not None:
        try:
            if abs(time.time() - int(timestamp)) > max_age:
                return False
        except ValueError:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)

"""Notifications of alert openings: to a real SMTP server and a real webhook receiver, in process."""

import datetime as dt
import json
import threading
import time

from django.db import connection

from core import dbclock
from oversight import actions, delivery
from oversight.models import AlertDelivery
from tests.builders import make_patient, make_visit
from tests.oversight.conftest import WEBHOOK_SECRET, lead_router


def _open_one_alert():
    """Open one alert (patients waiting in TX, nobody to see them); return it."""
    make_visit(patient=make_patient(first_name="Jane", last_name="Roe", state="TX"), state="TX")
    (alert,), _ = actions.evaluate("tests")
    return alert


def test_it_e_mails_an_alert_opening_once_through_a_real_smtp_server(router, smtp_server):
    alert = _open_one_alert()
    assert delivery.deliver_due() == 1
    assert delivery.deliver_due(dbclock.now() + dt.timedelta(hours=1)) == 0  # sent: never again
    (message,) = smtp_server.messages
    assert smtp_server.envelopes[0].rcpt_tos == ["oncall@ops.example", "lead@ops.example"]
    assert message["Subject"] == "[Ops alert] TX: 1 waiting, no licensed provider on shift"
    assert message["From"] == "Ops Console <alerts@ops.example>"
    assert (
        message["Message-ID"]
        == delivery.message_id(alert)
        == f"<ops-alert-{alert.pk}.{alert.opened_at:%Y%m%d%H%M%S}@ops.example>"
    )
    body = message.get_payload(decode=True).decode()
    assert f"/oversight/alert/{alert.pk}/change/" in body
    assert "Jane" not in body and "Roe" not in body
    row = AlertDelivery.objects.get()
    assert (row.attempts, row.last_error, row.failed_at) == (1, "", None) and row.sent_at


def test_it_posts_an_alert_opening_once_to_a_webhook_with_a_valid_signature(router, webhook, settings):
    settings.OPS_CONSOLE_URL = "https://ops.example.com"
    alert = _open_one_alert()
    assert delivery.deliver_due() == 1
    assert delivery.deliver_due(dbclock.now() + dt.timedelta(hours=1)) == 0
    (request,) = webhook.requests
    headers, body = request["headers"], request["body"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Ops-Delivery"] == str(AlertDelivery.objects.get().pk)
    assert headers["X-Ops-Signature"].startswith("sha256=")
    assert delivery.verify_signature(WEBHOOK_SECRET, headers["X-Ops-Timestamp"], body, headers["X-Ops-Signature"])
    assert json.loads(body) == {
        "alert": {
            "id": alert.pk, "kind": "no_provider", "subject": "TX", "state": "TX",
            "message": "TX: 1 waiting, no licensed provider on shift", "opened_at": alert.opened_at.isoformat(),
            "url": f"https://ops.example.com/ops/oversight/alert/{alert.pk}/change/",
        }
    }  # fmt: skip


def test_it_refuses_a_tampered_body_a_wrong_secret_and_an_old_timestamp():
    body, now = b'{"alert":{"id":1}}', str(int(time.time()))
    signature = delivery.sign("secret", now, body)
    assert delivery.verify_signature("secret", now, body, signature)
    assert not delivery.verify_signature("secret", now, body.replace(b"1", b"2"), signature)
    assert not delivery.verify_signature("other", now, body, signature)
    old = str(int(time.time()) - 600)
    assert not delivery.verify_signature("secret", old, body, delivery.sign("secret", old, body))
    assert delivery.verify_signature("secret", old, body, delivery.sign("secret", old, body), max_age=None)
    assert not delivery.verify_signature("secret", "soon", body, signature)


def test_it_retries_a_failed_webhook_with_backoff_and_delivers_it_once(router, webhook):
    webhook.statuses = [500]
    _open_one_alert()
    now = dbclock.now()
    assert delivery.deliver_due(now) == 0
    row = AlertDelivery.objects.get()
    assert (row.attempts, row.last_error, row.sent_at, row.failed_at) == (1, "webhook answered 500", None, None)
    assert row.next_attempt_at == now + dt.timedelta(seconds=10)
    assert delivery.deliver_due(now + dt.timedelta(seconds=9)) == 0  # not due yet: nothing sent
    assert len(webhook.requests) == 1
    assert delivery.deliver_due(now + dt.timedelta(seconds=10)) == 1
    assert delivery.deliver_due(now + dt.timedelta(hours=1)) == 0
    assert [r["headers"]["X-Ops-Delivery"] for r in webhook.requests] == [str(row.pk)] * 2  # one id to de-duplicate
    row.refresh_from_db()
    assert (row.attempts, row.last_error, row.failed_at) == (2, "", None) and row.sent_at


def test_it_gives_up_after_the_last_attempt(router, webhook, settings):
    settings.OPS_ALERT_DELIVERY_ATTEMPTS = 3
    webhook.statuses = [503] * 10
    _open_one_alert()
    at = dbclock.now()
    for expected_wait in (10, 20):
        delivery.deliver_due(at)
        row = AlertDelivery.objects.get()
        assert (row.next_attempt_at - at, row.failed_at) == (dt.timedelta(seconds=expected_wait), None)
        at = row.next_attempt_at
    delivery.deliver_due(at)
    row = AlertDelivery.objects.get()
    assert (row.attempts, row.sent_at, row.last_error) == (3, None, "webhook answered 503") and row.failed_at
    assert delivery.deliver_due(at + dt.timedelta(days=1)) == 0
    assert len(webhook.requests) == 3


def test_it_counts_an_unreachable_receiver_as_a_failed_attempt(router, webhook, settings):
    settings.OPS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/unreachable"
    _open_one_alert()
    assert delivery.deliver_due() == 0
    row = AlertDelivery.objects.get()
    assert row.attempts == 1 and row.last_error and row.sent_at is None


def test_it_waits_ten_seconds_doubling_up_to_the_maximum(settings):
    settings.OPS_ALERT_RETRY_MAX_SECONDS = 600
    waits = [delivery.retry_delay(attempts).total_seconds() for attempts in range(1, 10)]
    assert waits == [10, 20, 40, 80, 160, 320, 600, 600, 600]


def test_it_leaves_a_claimed_delivery_to_no_other_sender(router, webhook):
    _open_one_alert()
    now = dbclock.now()
    assert delivery._claim(now).attempts == 1
    assert delivery.deliver_due(now + dt.timedelta(seconds=60)) == 0  # another sender, mid-send of the first
    assert webhook.requests == []


def test_it_sends_each_notification_once_with_two_senders_at_once(transactional_db, webhook, settings):
    settings.OPS_ALERT_EMAILS = []
    lead_router()
    for state in ("TX", "NV", "OR"):
        make_visit(state=state)
    actions.evaluate("tests")
    webhook.delay = 0.2  # a slow receiver: the other sender runs while each POST is in flight
    barrier, sent = threading.Barrier(2), []

    def sender():
        try:
            barrier.wait()
            sent.append(delivery.deliver_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(sent) == 3
    assert sorted(json.loads(r["body"])["alert"]["subject"] for r in webhook.requests) == ["NV", "OR", "TX"]
    assert AlertDelivery.objects.filter(sent_at__isnull=False, attempts=1).count() == 3

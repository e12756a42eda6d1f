"""Fixtures for the alerts: a router leading, a real SMTP server and a real webhook receiver, in process."""

import datetime as dt

import pytest

from clinical.routing.lease import Lease
from clinical.routing.models import RouterLease
from core import dbclock
from tests.oversight import servers

WEBHOOK_SECRET = "webhook-test-secret"


def lead_router() -> None:
    """Give the lease to a router for an hour, so that no ``no_router`` condition holds."""
    assert Lease(seconds=3600, name="tests:router").hold()


def leaderless_for(seconds: float) -> None:
    """Make the router's lease run out ``seconds`` ago (test set-up only)."""
    Lease(seconds=3600, name="tests:router").hold()  # takes the lease if nobody holds it yet
    expired = dbclock.now() - dt.timedelta(seconds=seconds)
    RouterLease.objects.filter(pk=1).update(holder="tests:router", expires_at=expired)


@pytest.fixture
def router(db):
    """A router leads: the alerts under test are the queue's, not the router's."""
    lead_router()


@pytest.fixture
def smtp_server(settings):
    """Run a real SMTP server (aiosmtpd) on a free local port; point Django's SMTP backend at it."""
    with servers.smtp_server() as (inbox, port):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # pytest-django sets locmem
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
        settings.OPS_ALERT_EMAILS = ["oncall@ops.example", "lead@ops.example"]
        settings.DEFAULT_FROM_EMAIL = "Ops Console <alerts@ops.example>"
        yield inbox


@pytest.fixture
def webhook(settings):
    """Run a real HTTP server that receives the webhook; configure the console to POST to it."""
    with servers.webhook_receiver() as (receiver, url):
        settings.OPS_ALERT_WEBHOOK_URL = url
        settings.OPS_ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
        yield receiver

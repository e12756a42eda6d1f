"""Alerts: patients wait in a state nobody licensed there covers; a lead is warned, acknowledges,
and the alert resolves by itself once a provider licensed there goes on shift.
"""

import json
import signal
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from clinical.calendar import license_valid_sql
from oversight.delivery import verify_signature
from tests.e2e.conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.e2e

OPEN_WITHIN = 60  # seconds from the first patient waiting unserved to the alert, e-mail and webhook

# A state where a provider is licensed now, nobody licensed there is on shift and nobody waits yet;
# one of its licensed providers (offline) to call in later.
_UNCOVERED_SQL = """
SELECT l.state, min(p.npi)
FROM clinical_providerlicense l JOIN clinical_provider p ON p.id = l.provider_id AND p.is_active
WHERE {valid}
GROUP BY l.state
HAVING bool_and(p.availability = 'offline')
   AND NOT EXISTS (SELECT 1 FROM clinical_visit v WHERE v.located_state = l.state AND v.status = 'waiting')
ORDER BY l.state LIMIT 1
""".replace("{valid}", license_valid_sql("l", "statement_timestamp()"))


def _wait_for(what: str, seconds: float, probe):
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.5)


def _alert_for(stack, state: str):
    rows = stack.query(
        "SELECT id, opened_at, message, resolved_at FROM oversight_alert "
        "WHERE kind = 'no_provider' AND subject = %s ORDER BY id",
        (state,),
    )
    return rows[0] if rows else None


def _go_on_shift(stack, npi: str) -> None:
    """The provider's app: a token for the provider, then ``available: true`` through the API."""
    token = stack.manage("create_api_client", "--name", f"e2e app {npi}", "--scope", "provider", "--provider", npi)
    request = urllib.request.Request(  # noqa: S310 - the stack's own http://127.0.0.1 URL
        f"{stack.url}/api/v1/providers/{npi}/availability",
        data=json.dumps({"available": True}).encode(),
        headers={"Authorization": f"Bearer {token.strip()}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert json.loads(response.read())["availability"] in ("available", "reserved")


def test_it_warns_a_lead_who_acknowledges_and_the_alert_resolves_when_a_provider_goes_on_shift(stack, console):
    state, npi = stack.query(_UNCOVERED_SQL)[0]
    (started,) = stack.query("SELECT clock_timestamp()")[0]
    # The simulation's patients request visits there; it plays no provider.
    stack.start(
        "unserved-traffic", sys.executable, "manage.py", "simulate_traffic", "--states", state, "--providers", "0",
        "--rate", "0.5", "--seed", "16", "--base-url", stack.url,
    )  # fmt: skip
    try:
        _journey(stack, console, state, npi, started)
    finally:
        stack.stop("unserved-traffic", signal.SIGINT, seconds=30)  # as Ctrl-C: it withdraws its visits


def _journey(stack, console, state: str, npi: str, started) -> None:
    first_waiting = _wait_for(
        f"the simulation's first patient waiting in {state}", 60,
        lambda: stack.query(
            "SELECT min(requested_at) FROM clinical_visit WHERE located_state = %s AND requested_at > %s",
            (state, started),
        )[0][0],
    )  # fmt: skip
    alert_id, opened_at, message, _ = _wait_for("the alert", OPEN_WITHIN, lambda: _alert_for(stack, state))
    assert (opened_at - first_waiting).total_seconds() <= OPEN_WITHIN

    # The e-mail reached the SMTP server, and the webhook receiver got one signed POST for it.
    mail = _wait_for(
        "the alert e-mail", OPEN_WITHIN, lambda: [m for m in stack.inbox.messages if message in m["Subject"]]
    )
    assert len(mail) == 1 and "oncall@ops.example" in mail[0]["To"]
    posts = _wait_for(
        "the webhook POST",
        OPEN_WITHIN,
        lambda: [r for r in stack.webhook.requests if json.loads(r["body"])["alert"]["id"] == alert_id],
    )
    time.sleep(3)  # a second POST for the same opening would have come by now (the worker ticks every 2 s)
    posts = [r for r in stack.webhook.requests if json.loads(r["body"])["alert"]["id"] == alert_id]
    assert len(posts) == 1
    headers = posts[0]["headers"]
    assert verify_signature(WEBHOOK_SECRET, headers["X-Ops-Timestamp"], posts[0]["body"], headers["X-Ops-Signature"])

    # The lead sees the banner on any page, follows it to the alert and acknowledges it.
    page = console.sign_in("lead")
    banner = page.locator(".ops-alert-banner")
    expect(banner).to_be_visible()
    banner.get_by_role("link").first.click()  # "N open alerts": the list of open alerts
    expect(page.locator("#result_list")).to_contain_text(message)
    page.goto(f"{stack.console}oversight/alert/?kind__exact=no_provider&state__exact={state}")
    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator("body")).to_contain_text(message)
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(".messagelist")).to_contain_text("Alert acknowledged.")
    (acknowledged_by,) = stack.query(
        "SELECT u.username FROM oversight_alert a JOIN auth_user u ON u.id = a.acknowledged_by_id WHERE a.id = %s",
        (alert_id,),
    )[0]
    assert acknowledged_by == "lead"

    # A provider licensed there goes on shift: the alert resolves by itself, nobody touching it.
    _go_on_shift(stack, npi)
    resolved = _wait_for("the alert to resolve", 20, lambda: _alert_for(stack, state)[3])
    assert resolved is not None
    page.reload()
    expect(page.locator("body")).to_contain_text("Resolved")
    assert console.csp_violations == []

"""The alerts in the console: the banner, the list, the change page and acknowledging."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinical.reference import STATE_CHOICES
from oversight import actions, banner
from oversight.models import Alert
from tests.builders import make_visit
from tests.conftest import PASSWORD

LIST = reverse("ops:oversight_alert_changelist")


@pytest.fixture
def alert(router, redis_client, django_capture_on_commit_callbacks):
    """An open alert (patients waiting in TX, nobody to see them), its banner snapshot published."""
    make_visit(state="TX")
    with django_capture_on_commit_callbacks(execute=True):
        (opened,), _ = actions.evaluate("tests")
    return opened


def _change(alert: Alert) -> str:
    return reverse("ops:oversight_alert_change", args=[alert.pk])


def _acknowledge(alert: Alert) -> str:
    return reverse("ops:oversight_alert_acknowledge", args=[alert.pk])


@pytest.mark.parametrize(("role", "shown"), [("lead", True), ("clinical_ops", True), ("engineer", True),
                                             ("support_agent", False), ("outsider", False)])  # fmt: skip
def test_it_shows_the_banner_to_the_roles_that_act_on_alerts(client, request, alert, role, shown):
    client.force_login(request.getfixturevalue(role))
    page = client.get(reverse("ops:index")).content.decode()
    assert ("ops-alert-banner" in page) is shown
    assert ("TX: 1 waiting, no licensed provider on shift" in page) is shown
    if shown:
        assert "1 open alert (1 not acknowledged)" in page
        assert f'href="{LIST}?status=open"' in page and f'href="{_change(alert)}"' in page


def test_it_shows_the_banner_without_a_database_query(client, lead, alert, redis_client):
    client.force_login(lead)
    url = reverse("ops:clinical_visit_changelist")
    client.get(url)  # warm process-wide caches outside the counts
    with CaptureQueriesContext(connection) as shown:
        assert "ops-alert-banner" in client.get(url).content.decode()
    redis_client.delete(banner.KEY)
    with CaptureQueriesContext(connection) as missed:
        assert "ops-alert-banner" not in client.get(url).content.decode()  # nothing on a miss
    assert len(shown) == len(missed)


def test_it_shows_every_console_page_when_redis_is_down(client, lead, alert, settings):
    from core.redis import get_redis

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    get_redis.cache_clear()
    try:
        client.force_login(lead)
        response = client.get(reverse("ops:index"))
    finally:
        get_redis.cache_clear()
    assert response.status_code == 200 and b"ops-alert-banner" not in response.content


def test_it_acknowledges_alerts_with_the_admin_action(client, lead, alert):
    client.force_login(lead)
    response = client.post(LIST, {"action": "acknowledge", "_selected_action": [alert.pk], "index": "0"})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == lead and alert.resolved_at is None


@pytest.mark.parametrize("role", ["lead", "clinical_ops", "engineer"])
def test_it_acknowledges_an_alert_from_its_change_page(client, request, alert, role):
    user = request.getfixturevalue(role)
    client.force_login(user)
    page = client.get(_change(alert)).content.decode()
    assert 'id="acknowledge_form"' in page and f'action="{_acknowledge(alert)}"' in page
    response = client.post(_acknowledge(alert))
    assert (response.status_code, response["Location"]) == (302, _change(alert))
    alert.refresh_from_db()
    assert alert.acknowledged_by == user
    assert 'id="acknowledge_form"' not in client.get(_change(alert)).content.decode()


def test_it_acknowledges_with_the_page_csrf_token_and_refuses_without_it(lead, alert):
    browser = Client(enforce_csrf_checks=True)
    browser.login(username=lead.username, password=PASSWORD)
    assert browser.post(_acknowledge(alert)).status_code == 403
    page = browser.get(_change(alert)).content.decode()
    form = re.search(r'id="acknowledge_form".*?name="csrfmiddlewaretoken" value="([^"]+)"', page, re.S)
    assert browser.post(_acknowledge(alert), {"csrfmiddlewaretoken": form.group(1)}).status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == lead


@pytest.mark.parametrize("role", ["support_agent", "outsider"])
def test_it_refuses_acknowledging_to_roles_that_do_not_act_on_alerts(client, request, alert, role):
    client.force_login(request.getfixturevalue(role))
    assert client.get(_change(alert)).status_code == 403
    assert client.post(_acknowledge(alert)).status_code == 403
    action = {"action": "acknowledge", "_selected_action": [alert.pk], "index": "0"}
    assert client.post(LIST, action).status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_it_acknowledges_only_by_post_and_keeps_the_first_acknowledgement(client, lead, engineer, alert):
    client.force_login(engineer)
    assert client.get(_acknowledge(alert)).status_code == 405
    client.post(_acknowledge(alert))
    client.force_login(lead)
    response = client.post(_acknowledge(alert), follow=True)
    assert "Someone had already acknowledged this alert." in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_by == engineer
    assert client.post(reverse("ops:oversight_alert_acknowledge", args=["nope"])).status_code == 404


def test_it_shows_the_deliveries_read_only_on_the_change_page(client, lead, settings, router, redis_client):
    settings.OPS_ALERT_EMAILS = ["oncall@ops.example"]
    make_visit(state="TX")
    (alert,), _ = actions.evaluate("tests")
    client.force_login(lead)
    response = client.get(_change(alert))
    (inline,) = response.context["inline_admin_formsets"]
    assert [form.original.channel for form in inline] == ["email"]
    assert not inline.has_add_permission and not inline.has_change_permission
    assert response.context["has_change_permission"] is False and response.context["has_delete_permission"] is False


def test_it_filters_the_list_by_status_kind_and_state(client, lead, router, redis_client):
    for state in ("TX", "NV", "OR"):
        make_visit(state=state)
    actions.evaluate("tests")
    actions.acknowledge(Alert.objects.get(subject="NV"), lead)
    client.force_login(lead)

    def listed(query: str) -> list[str]:
        return [alert.subject for alert in client.get(f"{LIST}?{query}").context["cl"].result_list]

    assert listed("status=unacknowledged&kind__exact=no_provider") == ["TX", "OR"]  # newest first
    assert listed("status=acknowledged") == ["NV"]
    assert listed("state__exact=OR") == ["OR"]
    assert listed("status=resolved") == []


def _grow(count: int, states, lead) -> None:
    """Open ``count`` more alerts (one state each), acknowledging every other one."""
    for _ in range(count):
        make_visit(state=next(states))
    opened, _ = actions.evaluate("tests")
    for alert in opened[::2]:
        actions.acknowledge(alert, lead)


def test_it_lists_alerts_with_constant_queries_as_they_grow(client, lead, router, redis_client):
    states = iter(code for code, _ in STATE_CHOICES)
    client.force_login(lead)
    counts = []
    for size in (3, 30):
        _grow(size - Alert.objects.count(), states, lead)
        client.get(LIST)  # warm process-wide caches outside the counts
        with CaptureQueriesContext(connection) as queries:
            response = client.get(LIST)
        assert len(response.context["cl"].result_list) == size
        counts.append(len(queries))
    assert counts[0] == counts[1]

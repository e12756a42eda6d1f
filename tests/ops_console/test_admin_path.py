"""The console lives on its private path; /admin/ is a 404 that ops leads can see in the console."""

import pytest
from django.conf import settings
from django.urls import reverse

from support.models import SecurityEvent


@pytest.mark.parametrize("path", ["/admin/", "/admin", "/admin/login/", "/admin/auth/user/?q=x"])
def test_it_answers_404_under_admin_and_records_a_security_event(client, db, path):
    response = client.get(path, HTTP_USER_AGENT="sqlmap/1.7", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 404
    event = SecurityEvent.objects.get()
    assert (event.kind, event.path, event.ip, event.user_agent) == ("admin_probe", path, "203.0.113.9", "sqlmap/1.7")


def test_it_serves_the_console_on_its_private_path(client, lead):
    client.force_login(lead)
    assert reverse("ops:index") == f"/{settings.OPS_ADMIN_PATH}"
    response = client.get(reverse("ops:index"))
    assert response.status_code == 200
    assert b"Waiting now" in response.content


def test_it_sends_anonymous_users_to_the_console_login(client, db):
    response = client.get(reverse("ops:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("ops:login"))


def test_it_shows_security_events_to_leads_only(client, lead, support_agent, db):
    client.get("/admin/")
    url = reverse("ops:support_securityevent_changelist")
    client.force_login(support_agent)
    assert client.get(url).status_code == 403
    client.force_login(lead)
    response = client.get(url)
    assert response.status_code == 200
    assert b"/admin/" in response.content

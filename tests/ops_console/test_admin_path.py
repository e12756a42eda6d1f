"""The console lives on its private path; /admin/ is a 404 that ops leads can see in the console."""

import pytest
from django.conf import settings
from django.urls import reverse

from core.models import SecurityEvent


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
    url = reverse("ops:core_securityevent_changelist")
    client.force_login(support_agent)
    assert client.get(url).status_code == 403
    client.force_login(lead)
    response = client.get(url)
    assert response.status_code == 200
    assert b"/admin/" in response.content


def test_it_keeps_leads_from_granting_superuser_or_raw_permissions(client, lead, support_agent, db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from ops_console import roles

    boss = get_user_model().objects.create_superuser("root-user", "root@ops.example", "x-very-long-pass-99")
    client.force_login(lead)
    url = reverse("ops:auth_user_change", args=[support_agent.pk])
    form = client.get(url).content.decode()
    assert 'name="is_superuser"' not in form and 'name="user_permissions"' not in form
    engineer_group = Group.objects.get(name=roles.ENGINEER)
    response = client.post(url, {
        "username": "support", "first_name": "", "last_name": "", "email": "support@ops.example",
        "is_active": "on", "is_staff": "on", "groups": [engineer_group.pk], "is_superuser": "on",
    })  # fmt: skip
    assert response.status_code == 302
    support_agent.refresh_from_db()
    assert not support_agent.is_superuser
    assert list(support_agent.groups.values_list("name", flat=True)) == [roles.ENGINEER]
    assert client.get(reverse("ops:auth_user_change", args=[boss.pk])).status_code in (200, 403)
    assert client.post(reverse("ops:auth_user_change", args=[boss.pk]), {"username": "x"}).status_code == 403


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("support/accesslog/?patient=12&kind__exact=view", "core/accesslog/?patient=12&kind__exact=view"),
        ("support/securityevent/", "core/securityevent/"),
        ("support/accesslog/7/change/", "core/accesslog/7/change/"),
    ],
)
def test_it_sends_bookmarks_of_the_moved_audit_pages_to_their_new_address(client, lead, old, new):
    client.force_login(lead)
    response = client.get(f"/{settings.OPS_ADMIN_PATH}{old}")
    assert (response.status_code, response["Location"]) == (301, f"/{settings.OPS_ADMIN_PATH}{new}")


def test_it_keeps_support_case_pages_where_they_were(client, lead):
    client.force_login(lead)
    assert client.get(f"/{settings.OPS_ADMIN_PATH}support/supportcase/").status_code == 200

"""Sign-in lockout per username and per address, audited; sessions that end when idle."""

import time

import pytest
from django.urls import reverse

from ops_console.signin import LAST_SEEN
from support.models import SecurityEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.usefixtures("fast_passwords", "redis_client")

LOCKED = "Too many failed sign-ins"


def sign_in(client, username: str, password: str, ip: str = "198.51.100.1"):
    return client.post(reverse("ops:login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(response) -> bool:
    return response.status_code == 302


def test_it_locks_a_username_after_five_failures_even_with_the_right_password(client, support_agent):
    for n in range(5):
        assert not signed_in(sign_in(client, "support", "wrong", ip=f"198.51.100.{n + 10}"))
    response = sign_in(client, "support", PASSWORD, ip="198.51.100.99")
    assert not signed_in(response)
    assert LOCKED in response.content.decode()
    kinds = list(SecurityEvent.objects.values_list("kind", flat=True))
    assert sorted(kinds) == ["sign_in_failed"] * 5 + ["sign_in_locked"]
    assert set(SecurityEvent.objects.values_list("detail", flat=True)) == {"support"}


def test_it_locks_an_address_that_guesses_many_usernames(client, support_agent, lead):
    for n in range(5):
        sign_in(client, f"guess{n}", "wrong", ip="203.0.113.50")
    assert LOCKED in sign_in(client, "lead", PASSWORD, ip="203.0.113.50").content.decode()
    assert signed_in(sign_in(client, "support", PASSWORD, ip="203.0.113.51"))


def test_it_says_so_on_the_fifth_failure(client, support_agent):
    responses = [sign_in(client, "support", "wrong") for _ in range(5)]
    assert LOCKED not in responses[3].content.decode()
    assert LOCKED in responses[4].content.decode()


def test_it_locks_for_the_configured_minutes(client, support_agent, redis_client, settings):
    settings.OPS_LOGIN_LOCK_MINUTES = 7
    for _ in range(5):
        sign_in(client, "support", "wrong")
    assert 6 * 60 < redis_client.ttl("ops:signin:locked:user:support") <= 7 * 60
    redis_client.delete("ops:signin:locked:user:support", "ops:signin:locked:ip:198.51.100.1")
    assert signed_in(sign_in(client, "support", PASSWORD))


def test_it_forgets_a_username_s_failures_once_it_signs_in(client, support_agent):
    for _ in range(4):
        sign_in(client, "support", "wrong", ip="198.51.100.7")
    assert signed_in(sign_in(client, "support", PASSWORD, ip="198.51.100.8"))
    client.logout()
    for _ in range(4):
        sign_in(client, "support", "wrong", ip="198.51.100.9")
    assert signed_in(sign_in(client, "support", PASSWORD, ip="198.51.100.10"))


def test_it_matches_usernames_whatever_their_case(client, support_agent):
    for name in ["SUPPORT", "Support", "support", "sUpport", "supporT"]:
        sign_in(client, name, "wrong", ip="198.51.100.20")
    assert LOCKED in sign_in(client, "support", PASSWORD, ip="198.51.100.21").content.decode()


# --- idle sessions ---------------------------------------------------------------------------


def _idle_for(client, seconds: int) -> None:
    session = client.session
    session[LAST_SEEN] = int(time.time()) - seconds
    session.save()


def test_it_ends_a_session_idle_longer_than_the_setting(client, support_agent, settings):
    settings.OPS_SESSION_IDLE_MINUTES = 15
    client.force_login(support_agent)
    _idle_for(client, 16 * 60)
    response = client.get(reverse("ops:index"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("ops:login"))
    assert client.get(reverse("ops:index")).status_code == 302  # signed out, not just redirected once


def test_it_keeps_a_session_in_use(client, support_agent, settings):
    settings.OPS_SESSION_IDLE_MINUTES = 15
    client.force_login(support_agent)
    _idle_for(client, 14 * 60)
    assert client.get(reverse("ops:index")).status_code == 200
    assert int(time.time()) - client.session[LAST_SEEN] < 5  # the clock restarted


def test_it_starts_the_idle_clock_at_sign_in(client, support_agent):
    assert signed_in(sign_in(client, "support", PASSWORD))
    assert int(time.time()) - client.session[LAST_SEEN] < 5

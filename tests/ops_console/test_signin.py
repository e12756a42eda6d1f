"""Sign-in lockout per username and per address, audited; sessions that end when idle."""

import ipaddress
import time

import pytest
from django.test import Client
from django.urls import reverse

from core.models import SecurityEvent
from ops_console.signin import LAST_SEEN
from tests.conftest import PASSWORD

pytestmark = pytest.mark.usefixtures("fast_passwords", "redis_client", "two_factor_on")


@pytest.fixture
def two_factor_on(settings):
    """Sign in as production does: with two-factor sign-in required for the editing roles."""
    settings.OPS_REQUIRE_2FA = True


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


@pytest.mark.parametrize("fields", [{"username": "lead", "password": ""}, {"username": "", "password": "x"}, {}])
def test_it_counts_a_sign_in_with_an_empty_field_as_a_failure(client, lead, redis_client, fields):
    response = client.post(reverse("ops:login"), fields, REMOTE_ADDR="198.51.100.20")
    assert response.status_code == 200 and not signed_in(response)
    assert SecurityEvent.objects.filter(kind="sign_in_failed").count() == 1
    assert redis_client.get("ops:signin:failures:ip:198.51.100.20") == "1"


TRUSTED = ["10.0.0.0/8"]


def test_it_counts_failures_per_client_behind_a_trusted_proxy(client, support_agent, lead, settings):
    settings.OPS_TRUSTED_PROXIES = [ipaddress.ip_network(net) for net in TRUSTED]
    for n in range(5):
        client.post(reverse("ops:login"), {"username": f"guess{n}", "password": "x"}, REMOTE_ADDR="10.0.0.2",
                    HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.7")  # fmt: skip
    guesser = client.post(reverse("ops:login"), {"username": "lead", "password": PASSWORD}, REMOTE_ADDR="10.0.0.2",
                          HTTP_X_FORWARDED_FOR="203.0.113.9")  # fmt: skip
    assert LOCKED in guesser.content.decode()
    other = client.post(reverse("ops:login"), {"username": "support", "password": PASSWORD}, REMOTE_ADDR="10.0.0.2",
                        HTTP_X_FORWARDED_FOR="198.51.100.44")  # fmt: skip
    assert signed_in(other)  # the proxy's address is not locked: only the guesser's
    assert set(SecurityEvent.objects.filter(kind="sign_in_failed").values_list("ip", flat=True)) == {"203.0.113.9"}


def test_it_ignores_a_forwarded_address_from_an_untrusted_client(client, support_agent, settings):
    settings.OPS_TRUSTED_PROXIES = [ipaddress.ip_network(net) for net in TRUSTED]
    for n in range(5):
        client.post(reverse("ops:login"), {"username": f"guess{n}", "password": "x"}, REMOTE_ADDR="198.51.100.3",
                    HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")  # fmt: skip
    assert set(SecurityEvent.objects.values_list("ip", flat=True)) == {"198.51.100.3"}
    response = client.post(reverse("ops:login"), {"username": "support", "password": PASSWORD},
                           REMOTE_ADDR="198.51.100.3", HTTP_X_FORWARDED_FOR="203.0.113.77")  # fmt: skip
    assert LOCKED in response.content.decode()


def test_it_lets_a_lead_unlock_a_locked_user_and_their_address(client, support_agent, lead, redis_client, settings):
    for _ in range(5):
        sign_in(client, "support", "wrong", ip="198.51.100.30")
    assert LOCKED in sign_in(client, "support", PASSWORD, ip="198.51.100.30").content.decode()
    settings.OPS_REQUIRE_2FA = False  # the lead's own code is test_twofactor's business
    lead_client = Client()
    lead_client.force_login(lead)
    url = reverse("ops:auth_user_changelist")
    lead_client.post(url, {"action": "unlock_sign_in", "_selected_action": [support_agent.pk]})
    assert SecurityEvent.objects.filter(kind="sign_in_unlocked", detail="support", user=lead).exists()
    assert signed_in(sign_in(client, "support", PASSWORD, ip="198.51.100.30"))

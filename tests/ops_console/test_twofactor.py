"""Two-factor sign-in (TOTP) for the editing roles: the codes, the gate, setup, verify, lockout, reset."""

import base64
import re
import time
from io import StringIO
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography.fernet import Fernet
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from core.models import SecurityEvent
from ops_console import fieldcrypt, roles
from ops_console.models import BackupCode, PendingTotpSecret, TotpDevice
from ops_console.twofactor import totp
from ops_console.twofactor.actions import do_confirm_totp_device
from ops_console.twofactor.policy import requires_two_factor
from tests.builders import make_provider
from tests.conftest import PASSWORD
from tests.ops_console.conftest import database_snapshot
from tests.ops_console.test_headers import blocked_by_policy
from tests.ops_console.test_settings import _manage

pytestmark = pytest.mark.usefixtures("fast_passwords", "redis_client")

SETUP, VERIFY = "ops:two_factor_setup", "ops:two_factor_verify"
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.fixture
def two_factor_on(settings):
    settings.OPS_REQUIRE_2FA = True


def enroll(user) -> str:
    """Give ``user`` a confirmed authenticator, as the setup page would; return its secret."""
    secret = totp.new_secret()
    request = RequestFactory().post("/ops/two-factor/setup/", REMOTE_ADDR="198.51.100.5")
    request.user = user
    do_confirm_totp_device(request, user=user, secret=secret, code=totp.code_at(secret, time.time()))
    return secret


def pending(user) -> str:
    """Return the secret the setup page shows ``user`` (kept encrypted in the database, not in the session)."""
    return fieldcrypt.decrypt(PendingTotpSecret.objects.get(user=user).secret)


def fresh_code(secret: str) -> str:
    """Return the next step's code: the current one was spent on enrolling (inside the drift window)."""
    return totp.code_at(secret, time.time() + totp.STEP_SECONDS)


def wrong_code(secret: str) -> str:
    """Return a well-formed code that no step in the drift window accepts."""
    return next(
        f"{n:06d}" for n in range(0, 1_000_000, 7919) if totp.matching_step(secret, f"{n:06d}", at=time.time()) is None
    )


def give_code(client, code: str, next_url: str = ""):
    return client.post(reverse(VERIFY), {"code": code, "next": next_url}, REMOTE_ADDR="198.51.100.1")


def verified(client, user) -> str:
    """Sign ``user`` in with an enrolled device and a correct code; return the device secret."""
    secret = enroll(user)
    client.force_login(user)
    assert give_code(client, fresh_code(secret)).status_code == 302
    return secret


def sent_to(response, name: str) -> bool:
    return response.status_code == 302 and urlparse(response["Location"]).path == reverse(name)


def sign_in(client, username: str, password: str = PASSWORD):
    return client.post(reverse("ops:login"), {"username": username, "password": password}, REMOTE_ADDR="198.51.100.1")


# --- the codes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_it_computes_the_rfc_6238_sha1_test_vectors(at, code):
    assert totp.code_at(RFC_SECRET, at, digits=8) == code


def test_it_accepts_a_code_one_step_early_or_late_and_no_further():
    secret, now = totp.new_secret(), 1_700_000_015.0
    step = totp.step_at(now)
    for offset in (-1, 0, 1):
        code = totp.code_at(secret, now + offset * totp.STEP_SECONDS)
        assert totp.matching_step(secret, code, at=now) == step + offset
    for offset in (-2, 2):
        assert totp.matching_step(secret, totp.code_at(secret, now + offset * totp.STEP_SECONDS), at=now) is None


def test_it_reads_codes_typed_with_spaces_and_refuses_malformed_ones():
    secret, now = totp.new_secret(), 1_700_000_015.0
    code = totp.code_at(secret, now)
    assert totp.matching_step(secret, f" {code[:3]} {code[3:]} ", at=now) == totp.step_at(now)
    for bad in ("", "12345", "1234567", "abcdef", code + "0"):
        assert totp.matching_step(secret, bad, at=now) is None


def test_it_makes_a_new_160_bit_secret_each_time():
    secrets = {totp.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(len(base64.b32decode(secret)) == 20 for secret in secrets)


# --- who is asked -----------------------------------------------------------------------------


def test_it_asks_the_roles_that_can_edit_and_nobody_else(personas, superuser):
    asked = {role: requires_two_factor(user) for role, user in personas.items()}
    assert asked == {
        roles.SUPPORT_AGENT: False,
        roles.CLINICAL_OPS: True,
        roles.ENGINEER: False,
        roles.OPS_LEAD: True,
        None: False,
    }
    assert requires_two_factor(superuser)


@pytest.mark.usefixtures("two_factor_on")
@pytest.mark.parametrize("persona", ["support_agent", "engineer"])
def test_it_does_not_ask_the_support_agent_or_the_engineer(client, request, persona):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("ops:index")).status_code == 200
    assert client.get(reverse("ops:clinical_visit_changelist")).status_code == 200


def test_it_asks_nobody_when_the_setting_is_off(client, clinical_ops, settings):
    settings.OPS_REQUIRE_2FA = False
    enroll(clinical_ops)
    client.force_login(clinical_ops)
    assert client.get(reverse("ops:clinical_provider_changelist")).status_code == 200


def test_it_is_on_by_default_and_can_be_turned_off():
    show = "from django.conf import settings; print(settings.OPS_REQUIRE_2FA)"
    production = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 60}
    assert _manage("shell", "-c", show, **production).stdout.split()[-1] == "True"
    assert _manage("shell", "-c", show, OPS_REQUIRE_2FA="0", **production).stdout.split()[-1] == "False"


# --- the gate ---------------------------------------------------------------------------------


def _console_urls() -> list[str]:
    autocomplete = reverse("ops:autocomplete") + "?app_label=clinical&model_name=providerlicense&field_name=provider"
    return [
        reverse("ops:index"),
        reverse("ops:clinical_provider_changelist"),
        reverse("ops:clinical_providerlicense_add"),
        reverse("ops:clinical_providerlicense_import"),
        reverse("ops:clinical_provider_export"),
        reverse("ops:live_queues"),
        reverse("ops:live_queues_data"),
        reverse("ops:global_search") + "?q=garcia",
        reverse("ops:slow_pages"),
        reverse("ops:password_change"),
        autocomplete,
        "/no-such-page/",
    ]


@pytest.mark.usefixtures("two_factor_on")
@pytest.mark.parametrize("url", _console_urls())
def test_it_sends_an_editing_role_without_a_device_to_setup_from_any_console_page(client, clinical_ops, url):
    client.force_login(clinical_ops)
    response = client.get(url)
    assert sent_to(response, SETUP), url
    assert parse_qs(urlparse(response["Location"]).query)["next"] == [url]


@pytest.mark.usefixtures("two_factor_on")
@pytest.mark.parametrize("url", _console_urls()[:4])
def test_it_sends_an_editing_role_with_a_device_to_verify_until_the_code_is_given(client, lead, url):
    enroll(lead)
    client.force_login(lead)
    assert sent_to(client.get(url), VERIFY)


@pytest.mark.usefixtures("two_factor_on")
@pytest.mark.parametrize("persona", ["clinical_ops", "lead"])
def test_it_refuses_a_post_before_the_code_and_changes_nothing(client, db, request, persona):
    provider = make_provider(states=("CA",))
    user = request.getfixturevalue(persona)
    client.force_login(user)
    before = database_snapshot()
    form = {"first_name": "Changed", "last_name": "Name", "npi": provider.npi, "specialty": "family_medicine"}
    response = client.post(reverse("ops:clinical_provider_change", args=[provider.pk]), form)
    assert response.status_code == 403
    response = client.post(reverse("ops:clinical_providerlicense_import"), {"format": "0"})
    assert response.status_code == 403
    assert database_snapshot() == before
    provider.refresh_from_db()
    assert provider.first_name != "Changed"


@pytest.mark.usefixtures("two_factor_on")
def test_it_leaves_the_api_and_static_files_alone(client, clinical_ops):
    client.force_login(clinical_ops)
    assert client.get("/api/v1/visits/1").status_code == 401  # the API's own answer: no bearer token
    assert not sent_to(client.get("/static/ops_console/console.css"), SETUP)


@pytest.mark.usefixtures("two_factor_on")
def test_it_lets_an_unverified_user_sign_out(client, clinical_ops):
    client.force_login(clinical_ops)
    response = client.post(reverse("ops:logout"))
    assert response.status_code == 200
    assert sent_to(client.get(reverse("ops:index")), "ops:login")


# --- setup ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("two_factor_on")
def test_it_shows_a_secret_grouped_in_fours_and_its_otpauth_uri(client, clinical_ops):
    client.force_login(clinical_ops)
    page = client.get(reverse(SETUP)).content.decode()
    secret = pending(clinical_ops)
    assert " ".join(secret[i : i + 4] for i in range(0, 32, 4)) in page
    assert f"otpauth://totp/Ops%20Console:clinops?secret={secret}&amp;issuer=Ops%20Console" in page
    assert '<svg width="' in page and 'class="qrline"' in page  # the QR code, drawn on the server
    client.get(reverse(SETUP))
    assert pending(clinical_ops) == secret  # a reload shows the same secret
    assert all(secret not in str(s.get_decoded()) for s in Session.objects.all())
    assert secret not in PendingTotpSecret.objects.get(user=clinical_ops).secret  # encrypted at rest


@pytest.mark.usefixtures("two_factor_on")
def test_it_confirms_the_device_with_a_right_code_only(client, clinical_ops):
    client.force_login(clinical_ops)
    client.get(reverse(SETUP))
    secret = pending(clinical_ops)
    response = client.post(reverse(SETUP), {"code": wrong_code(secret)})
    assert response.status_code == 200 and "That code is not right" in response.content.decode()
    assert not TotpDevice.objects.exists()
    next_url = reverse("ops:clinical_provider_changelist")
    response = client.post(reverse(SETUP), {"code": totp.code_at(secret, time.time()), "next": next_url})
    assert response.status_code == 200 and f'href="{next_url}"' in response.content.decode()
    device = TotpDevice.objects.get(user=clinical_ops)
    assert device.plain_secret == secret and device.secret != secret and device.last_used_step is not None
    assert not PendingTotpSecret.objects.exists()
    assert client.get(next_url).status_code == 200
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.TWO_FACTOR_ENABLED)
    assert (event.user, event.detail) == (clinical_ops, "clinops")


@pytest.mark.usefixtures("two_factor_on")
def test_it_never_shows_a_confirmed_secret_again(client, clinical_ops):
    secret = verified(client, clinical_ops)
    assert not PendingTotpSecret.objects.exists()
    page = client.get(reverse(SETUP)).content.decode()  # re-enrolling: a new secret
    assert secret not in page and secret[:4] + " " + secret[4:8] not in page
    client.logout()
    client.force_login(clinical_ops)
    response = client.get(reverse(SETUP))
    assert sent_to(response, VERIFY)  # replacing a device takes a code from it first
    assert secret not in client.get(reverse(VERIFY)).content.decode()


@pytest.mark.usefixtures("two_factor_on")
def test_it_replaces_a_device_only_once_the_new_one_is_confirmed(client, lead):
    old = verified(client, lead)
    client.get(reverse(SETUP))
    new = pending(lead)
    assert TotpDevice.objects.get(user=lead).plain_secret == old  # an abandoned setup loses nothing
    # A verified session is not enough: replacing takes a fresh code from the current device.
    refused = client.post(reverse(SETUP), {"code": totp.code_at(new, time.time())})
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    wrong = client.post(reverse(SETUP), {"code": totp.code_at(new, time.time()), "current_code": wrong_code(old)})
    assert "That code is not right" in wrong.content.decode()
    assert TotpDevice.objects.get(user=lead).plain_secret == old
    TotpDevice.objects.filter(user=lead).update(last_used_step=None)  # as if the last code was a minute ago
    codes = {"code": totp.code_at(new, time.time()), "current_code": totp.code_at(old, time.time())}
    replaced = client.post(reverse(SETUP), codes)
    assert replaced.status_code == 200 and "backup codes" in replaced.content.decode()
    assert TotpDevice.objects.get(user=lead).plain_secret == new
    assert client.get(reverse("ops:index")).status_code == 200


# --- verify -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("two_factor_on")
def test_it_opens_the_console_once_the_right_code_is_given(client, clinical_ops):
    secret = enroll(clinical_ops)
    client.force_login(clinical_ops)
    next_url = reverse("ops:clinical_providerlicense_changelist")
    assert "Enter the 6-digit code" in client.get(reverse(VERIFY), {"next": next_url}).content.decode()
    response = give_code(client, fresh_code(secret), next_url)
    assert response.status_code == 302 and response["Location"] == next_url
    assert client.get(next_url).status_code == 200
    assert client.get(reverse("ops:index")).status_code == 200


@pytest.mark.usefixtures("two_factor_on")
def test_it_cycles_the_session_key_when_the_code_is_right(client, clinical_ops):
    secret = enroll(clinical_ops)
    client.force_login(clinical_ops)
    before = client.session.session_key
    give_code(client, fresh_code(secret))
    assert client.session.session_key != before
    assert client.get(reverse("ops:index")).status_code == 200


@pytest.mark.usefixtures("two_factor_on")
def test_it_refuses_a_code_already_used(client, clinical_ops):
    secret = enroll(clinical_ops)
    code = fresh_code(secret)
    client.force_login(clinical_ops)
    assert give_code(client, code).status_code == 302
    client.logout()
    client.force_login(clinical_ops)
    response = give_code(client, code)
    assert response.status_code == 200 and "That code is not right" in response.content.decode()
    assert sent_to(client.get(reverse("ops:index")), VERIFY)
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.TWO_FACTOR_FAILED)
    assert event.detail == "clinops (a code already used)"


@pytest.mark.usefixtures("two_factor_on")
def test_it_goes_on_only_to_pages_on_this_site(client, clinical_ops):
    secret = enroll(clinical_ops)
    client.force_login(clinical_ops)
    response = give_code(client, fresh_code(secret), "https://evil.example/ops/")
    assert response["Location"] == reverse("ops:index")


@pytest.mark.usefixtures("two_factor_on")
def test_it_locks_out_after_the_configured_wrong_codes_with_security_events(client, clinical_ops, settings):
    settings.OPS_LOGIN_MAX_FAILURES = 3
    secret = enroll(clinical_ops)
    wrong = wrong_code(secret)
    client.force_login(clinical_ops)
    responses = [give_code(client, wrong) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 302]
    assert sent_to(responses[-1], "ops:login")  # signed out
    assert sent_to(client.get(reverse("ops:index")), "ops:login")
    assert "Too many failed sign-ins" in sign_in(client, "clinops").content.decode()  # even the password
    kinds = sorted(SecurityEvent.objects.values_list("kind", flat=True))
    assert kinds == ["sign_in_locked", "two_factor_enabled"] + ["two_factor_failed"] * 3


@pytest.mark.usefixtures("two_factor_on")
def test_it_refuses_the_right_code_while_locked_out(client, clinical_ops, settings):
    settings.OPS_LOGIN_MAX_FAILURES = 2
    secret = enroll(clinical_ops)
    used = TotpDevice.objects.get(user=clinical_ops).last_used_step
    client.force_login(clinical_ops)
    for _ in range(2):
        give_code(client, wrong_code(secret))
    client.force_login(clinical_ops)  # a session that was signed in before the lock
    assert sent_to(give_code(client, fresh_code(secret)), "ops:login")
    assert TotpDevice.objects.get(user=clinical_ops).last_used_step == used  # the code was not spent
    assert sent_to(client.get(reverse("ops:index")), "ops:login")


@pytest.mark.usefixtures("two_factor_on")
def test_it_keeps_counting_wrong_codes_across_right_passwords(client, clinical_ops, settings):
    settings.OPS_LOGIN_MAX_FAILURES = 3
    secret = enroll(clinical_ops)
    wrong = wrong_code(secret)
    for _ in range(2):
        assert sign_in(client, "clinops").status_code == 302
        assert give_code(client, wrong).status_code == 200
    assert sign_in(client, "clinops").status_code == 302
    assert sent_to(give_code(client, wrong), "ops:login")


@pytest.mark.usefixtures("two_factor_on")
def test_it_asks_for_the_code_after_a_password_sign_in(client, lead):
    secret = enroll(lead)
    response = sign_in(client, "lead")
    assert response.status_code == 302
    assert sent_to(client.get(response["Location"]), VERIFY)
    assert give_code(client, fresh_code(secret)).status_code == 302
    assert client.get(reverse("ops:index")).status_code == 200


# --- reset ------------------------------------------------------------------------------------


def _reset(client, *users):
    return client.post(
        reverse("ops:auth_user_changelist"),
        {"action": "reset_two_factor", "_selected_action": [user.pk for user in users]},
    )


@pytest.mark.usefixtures("two_factor_on")
def test_it_lets_a_lead_reset_a_device_audited_and_ends_the_user_s_session(client, lead, clinical_ops):
    from django.test import Client

    victim = Client()
    verified(victim, clinical_ops)
    assert victim.get(reverse("ops:index")).status_code == 200
    verified(client, lead)
    assert _reset(client, clinical_ops).status_code == 302
    assert not TotpDevice.objects.filter(user=clinical_ops).exists()
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.TWO_FACTOR_RESET)
    assert (event.user, event.detail) == (lead, "clinops")
    assert sent_to(victim.get(reverse("ops:index")), "ops:login")  # the session with the old device ends
    victim.force_login(clinical_ops)
    assert sent_to(victim.get(reverse("ops:index")), SETUP)


@pytest.mark.usefixtures("two_factor_on")
def test_it_shows_the_lead_who_has_set_up_two_factor(client, lead, clinical_ops, support_agent):
    verified(client, lead)
    enroll(clinical_ops)
    page = client.get(reverse("ops:auth_user_changelist")).content.decode()
    assert page.count('alt="True"') >= 2 and 'alt="False"' in page


def test_it_does_not_let_a_support_agent_reset_a_device(client, support_agent, clinical_ops):
    enroll(clinical_ops)
    client.force_login(support_agent)
    assert _reset(client, clinical_ops).status_code == 403
    assert TotpDevice.objects.filter(user=clinical_ops).exists()
    assert not SecurityEvent.objects.filter(kind=SecurityEvent.Kind.TWO_FACTOR_RESET).exists()


def test_it_does_not_let_a_lead_reset_a_superuser_s_device(client, lead, superuser):
    enroll(superuser)
    client.force_login(lead)
    _reset(client, superuser)
    assert TotpDevice.objects.filter(user=superuser).exists()


# --- the pages under the content security policy ----------------------------------------------


@pytest.mark.usefixtures("two_factor_on")
def test_it_serves_setup_and_verify_under_the_policy_with_no_inline_code(client, clinical_ops, lead):
    client.force_login(clinical_ops)
    enroll(lead)
    pages = [client.get(reverse(SETUP))]
    client.force_login(lead)
    pages.append(client.get(reverse(VERIFY)))
    for response in pages:
        assert response.status_code == 200
        assert "script-src 'self'" in response["Content-Security-Policy"]
        assert blocked_by_policy(response.content.decode()) == []


# --- backup codes and secrets at rest ---------------------------------------------------------


def _codes_from_setup(client, user) -> list[str]:
    client.force_login(user)
    client.get(reverse(SETUP))
    page = client.post(reverse(SETUP), {"code": totp.code_at(pending(user), time.time())}).content.decode()
    return re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", page)


@pytest.mark.usefixtures("two_factor_on")
def test_it_gives_ten_backup_codes_once_stored_only_as_hashes(client, clinical_ops):
    codes = _codes_from_setup(client, clinical_ops)
    assert len(codes) == len(set(codes)) == 10
    stored = list(BackupCode.objects.filter(user=clinical_ops).values_list("code_hash", flat=True))
    assert len(stored) == 10 and not any(code.replace("-", "") in "".join(stored) for code in codes)


@pytest.mark.usefixtures("two_factor_on")
def test_it_signs_in_with_a_backup_code_once(client, clinical_ops):
    codes = _codes_from_setup(Client(), clinical_ops)
    client.force_login(clinical_ops)
    assert give_code(client, codes[0].upper().replace("-", " ")).status_code == 302
    assert SecurityEvent.objects.filter(kind="two_factor_backup_used", detail="clinops").count() == 1
    client.logout()
    client.force_login(clinical_ops)
    again = give_code(client, codes[0])
    assert again.status_code == 200 and "That code is not right" in again.content.decode()
    assert BackupCode.objects.filter(user=clinical_ops, used_at__isnull=True).count() == 9


def test_it_reencrypts_every_secret_with_a_new_key(db, settings, clinical_ops):
    secret = enroll(clinical_ops)
    old_key, new_key = settings.OPS_FIELD_KEY, Fernet.generate_key().decode()
    settings.OPS_FIELD_KEY, settings.OPS_FIELD_OLD_KEYS = new_key, [old_key]
    fieldcrypt._fernet.cache_clear()
    try:
        call_command("rotate_field_key", stdout=StringIO())
        settings.OPS_FIELD_OLD_KEYS = []
        fieldcrypt._fernet.cache_clear()
        assert TotpDevice.objects.get(user=clinical_ops).plain_secret == secret  # the new key alone reads it
    finally:
        fieldcrypt._fernet.cache_clear()

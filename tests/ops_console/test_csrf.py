"""CSRF: every state-changing console request is refused without the token, and works with it.

Each case is sent twice by a client that enforces CSRF checks, as a browser's would be: first
without the token (403, and nothing in the database changed, nor what the request does), then
the same request with the token (it does what it should). The list of requests is derived from
the role matrix (what the superuser may add, change, delete, revert, export; every action), so
a new model or action is covered without anyone remembering to add it here.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.urls import reverse

from clinical.models import ImportUpload, ProviderLicense
from core.models import AccessLog
from ops_console.models import TotpDevice
from ops_console.twofactor import totp
from ops_console.twofactor.actions import do_confirm_totp_device
from tests.conftest import PASSWORD
from tests.ops_console.conftest import database_snapshot
from tests.ops_console.test_role_matrix import (
    ACTION_DONE,
    ACTIONS,
    ADDED,
    CHANGES,
    EXPORT_FORM,
    MATRIX,
    MODELS,
    NEW_PASSWORD,
    _fresh,
    _license_file,
    _rows,
    _url,
    action_data,
    add_data,
    change_data,
    make_records,
    page_url,
    prepare_action,
    revert_setup,
    user_password_data,
)

pytestmark = pytest.mark.usefixtures("fast_passwords", "redis_client")


@pytest.fixture
def records(db) -> dict:
    return make_records()


@dataclass
class Sent:
    """A state-changing request: where, what (fresh each time: uploads are read once), and its effect."""

    url: str
    data: Callable[[], dict]
    done: Callable[[], bool]


@dataclass
class Context:
    client: Client  # signed in as whoever builds the forms (the superuser)
    browser: Client  # enforces CSRF checks
    superuser: object
    records: dict


def _model_requests() -> list[str]:
    kinds = [
        f"{model} {column}"
        for model in MODELS
        for column in ("add", "change", "delete", "revert", "export")
        if MATRIX["superuser", model][column]
    ]
    return kinds + [f"action {action}" for action in _rows(ACTIONS)]


OTHER_REQUESTS = [
    "import upload",
    "import confirm",
    "import cancel",
    "login",
    "logout",
    "password change",
    "user password",
    "two-factor setup",
    "two-factor verify",
]
STATE_CHANGING = _model_requests() + OTHER_REQUESTS


# --- building each request as the superuser would send it ------------------------------------


def _model_request(kind: str, ctx: Context) -> Sent:
    model, column = kind.split(" ")
    record = ctx.records[model]
    if column == "add":
        data = add_data(ctx.client, ctx.superuser, model, ctx.records)
        return Sent(_url(model, "add"), lambda: data, type(record)._default_manager.filter(**ADDED[model]).exists)
    if column == "change":
        data, (name, value) = change_data(ctx.client, ctx.superuser, model, ctx.records), CHANGES[model]
        return Sent(_url(model, "change", record.pk), lambda: data, lambda: getattr(_fresh(record), name) == value)
    if column == "delete":
        return Sent(_url(model, "delete", record.pk), lambda: {"post": "yes"}, lambda: _fresh(record) is None)
    if column == "export":
        return Sent(_url(model, "export"), lambda: EXPORT_FORM, AccessLog.objects.filter(kind="export").exists)
    name, original = CHANGES[model][0], getattr(record, CHANGES[model][0])
    url, data = revert_setup(ctx.client, ctx.superuser, model, ctx.records)
    return Sent(url, lambda: data, lambda: getattr(_fresh(record), name) == original)


def _action_request(kind: str, ctx: Context) -> Sent:
    action = kind.split(" ")[1]
    record = prepare_action(action, ctx.records)
    data = action_data(action, record)
    url = _url(action.split(":")[0], "changelist")
    return Sent(url, lambda: data, lambda: ACTION_DONE[action](record, ctx.superuser))


def _upload(ctx: Context) -> str:
    """Upload a license file as the superuser; return the token of its checked job."""
    ctx.client.force_login(ctx.superuser)
    response = ctx.client.post(_url("clinical.providerlicense", "import"), {"file": _license_file(ctx.records)})
    return response["Location"].rstrip("/").rsplit("/", 1)[1]


def _import_request(kind: str, ctx: Context, redis) -> Sent:
    if kind == "import upload":
        url = _url("clinical.providerlicense", "import")
        return Sent(url, lambda: {"file": _license_file(ctx.records)}, lambda: bool(redis.keys("ops:import:*")))
    token = _upload(ctx)
    if kind == "import confirm":
        applied = ProviderLicense.objects.filter(license_number="OR-9").exists
        return Sent(_url("clinical.providerlicense", "import_confirm", token), dict, applied)
    phase = lambda: ImportUpload.objects.get(token=token).status  # noqa: E731
    return Sent(_url("clinical.providerlicense", "import_cancel", token), dict, lambda: phase() == "cancelled")


def _enroll(user) -> str:
    secret = totp.new_secret()
    do_confirm_totp_device(_request_for(user), user=user, secret=secret, code=totp.code_at(secret, time.time()))
    return secret


def _request_for(user):
    from django.test import RequestFactory

    request = RequestFactory().post("/ops/two-factor/setup/", REMOTE_ADDR="198.51.100.5")
    request.user = user
    return request


def _account_request(kind: str, ctx: Context) -> Sent:
    su, browser = ctx.superuser, ctx.browser
    signed_in = lambda: "_auth_user_id" in browser.session  # noqa: E731
    if kind == "login":
        data = {"username": su.username, "password": PASSWORD, "next": reverse("ops:index")}
        return Sent(reverse("ops:login"), lambda: data, signed_in)
    if kind == "logout":
        return Sent(reverse("ops:logout"), dict, lambda: not signed_in())
    if kind == "password change":
        data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
        return Sent(reverse("ops:password_change"), lambda: data, lambda: _fresh(su).check_password(NEW_PASSWORD))
    if kind == "user password":
        data, colleague = user_password_data(ctx.client, su, ctx.records), ctx.records["auth.user"]
        url = page_url("user-password", ctx.records)
        return Sent(url, lambda: data, lambda: _fresh(colleague).check_password(NEW_PASSWORD))
    return _two_factor_request(kind, ctx)


def _two_factor_request(kind: str, ctx: Context) -> Sent:
    su, browser = ctx.superuser, ctx.browser
    if kind == "two-factor setup":
        uri = browser.get(reverse("ops:two_factor_setup")).context["uri"]
        secret = parse_qs(urlparse(uri).query)["secret"][0]
        code = lambda: {"code": totp.code_at(secret, time.time())}  # noqa: E731
        return Sent(reverse("ops:two_factor_setup"), code, TotpDevice.objects.filter(user=su).exists)
    secret = _enroll(su)
    used = TotpDevice.objects.get(user=su).last_used_step
    next_code = lambda: {"code": totp.code_at(secret, time.time() + totp.STEP_SECONDS)}  # noqa: E731
    return Sent(
        reverse("ops:two_factor_verify"), next_code, lambda: TotpDevice.objects.get(user=su).last_used_step != used
    )


def _build(kind: str, ctx: Context, redis) -> Sent:
    if kind.startswith("action "):
        return _action_request(kind, ctx)
    if kind.startswith("import "):
        return _import_request(kind, ctx, redis)
    if kind in OTHER_REQUESTS:
        return _account_request(kind, ctx)
    return _model_request(kind, ctx)


def _csrf_token(browser: Client, signed_in: bool) -> str:
    """Return the token a page's form would carry (the page sets the cookie it matches)."""
    browser.get(reverse("ops:password_change" if signed_in else "ops:login"))
    return browser.cookies["csrftoken"].value


# --- the test -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STATE_CHANGING)
def test_it_refuses_a_state_changing_request_without_the_csrf_token(client, superuser, records, redis_client, kind):
    browser = Client(enforce_csrf_checks=True)
    if kind != "login":
        browser.force_login(superuser)
    sent = _build(kind, Context(client, browser, superuser, records), redis_client)
    before = database_snapshot()
    refused = browser.post(sent.url, sent.data())
    assert refused.status_code == 403
    assert database_snapshot() == before
    assert not sent.done()
    token = _csrf_token(browser, signed_in=kind != "login")
    accepted = browser.post(sent.url, {**sent.data(), "csrfmiddlewaretoken": token})
    assert accepted.status_code in (200, 302)
    assert sent.done()


def test_it_covers_every_model_the_matrix_lets_the_superuser_write():
    writes = {(m, c) for m in MODELS for c in ("add", "change", "delete", "revert") if MATRIX["superuser", m][c]}
    assert {tuple(kind.split(" ")) for kind in STATE_CHANGING if " " in kind and "." in kind.split(" ")[0]} >= writes
    assert len(STATE_CHANGING) == len(set(STATE_CHANGING))

"""Every console page carries the Content-Security-Policy and needs nothing it forbids."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from clinical.actions import api_clients as api_client_actions
from clinical.models import Visit
from ops_console.admin_site import ops_site
from oversight import actions as oversight_actions
from oversight import banner
from tests.builders import SYSTEM, make_patient, make_provider, make_visit
from tests.ops_console.conftest import make_access_log, make_case, make_security_event

pytestmark = pytest.mark.usefixtures("fast_passwords", "redis_client")


class InlineCode(HTMLParser):
    """Collect what a strict policy would block: inline scripts, event handler attributes, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and not attrs.get("src") and attrs.get("type") != "application/json":
            self.found.append(f"inline <script> {attrs}")
        self.found += [f"<{tag} {name}=…>" for name in attrs if name.startswith("on")]
        self.found += [f"<{tag} {name}=javascript:…>" for name, v in attrs.items() if "javascript:" in (v or "")]
        if tag == "style":
            self.found.append("inline <style>")


def blocked_by_policy(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


@pytest.fixture
def console_pages(db) -> list[str]:
    """Return the list, add, change and history page of every registered model, and the console's own pages."""
    patient = make_patient()
    visit = make_visit(patient=patient)
    make_provider(states=("CA",))
    make_case(patient=patient, visit=visit, notes=1)
    make_security_event()
    make_access_log(patient)
    api_client_actions.create_api_client(name="csp-app", scope="patient", patient=patient, actor=SYSTEM)
    oversight_actions.evaluate("tests")  # an alert (patients wait in CA, nobody available)
    banner.publish()  # and its banner on every page
    urls = [reverse("ops:index"), reverse("ops:live_queues"), reverse("ops:slow_pages"), reverse("ops:password_change")]
    urls += [reverse("ops:global_search") + "?q=garcia", reverse("ops:clinical_providerlicense_import")]
    urls += [reverse("ops:clinical_providerlicense_export"), reverse("ops:clinical_provider_export")]
    for model in ops_site._registry:
        info = f"ops:{model._meta.app_label}_{model._meta.model_name}"
        record = model._default_manager.order_by("pk").first()
        urls += [reverse(f"{info}_changelist"), reverse(f"{info}_add")]
        urls += [reverse(f"{info}_change", args=[record.pk]), reverse(f"{info}_history", args=[record.pk])]
    return urls + [reverse("ops:clinical_visit_changelist") + "?q=" + Visit.objects.get().public_id]


def test_it_sends_the_policy_on_every_console_page_and_no_page_needs_inline_code(client, superuser, console_pages):
    client.force_login(superuser)
    checked = 0
    for url in console_pages:
        response = client.get(url)
        if response.status_code == 403:  # add pages of append-only records
            continue
        assert response.status_code == 200, url
        assert "script-src 'self'" in response["Content-Security-Policy"], url
        assert blocked_by_policy(response.content.decode()) == [], url
        checked += 1
    assert checked >= 35, checked


def test_it_sends_the_policy_on_the_login_page_and_on_errors(client, db):
    for url in [reverse("ops:login"), "/no-such-page/", "/api/v1/visits/nope"]:
        response = client.get(url)
        assert response["Content-Security-Policy"].startswith("default-src 'self'"), url
        assert blocked_by_policy(response.content.decode()) == [], url


def test_it_allows_no_inline_script_or_style_in_the_policy(settings):
    policy = settings.OPS_CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


def test_it_keeps_the_other_production_headers(client, db, settings):
    response = client.get(reverse("ops:login"))
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_it_finds_inline_code_a_page_would_need():
    html = '<script>go()</script><script type="application/json">{}</script><a href="javascript:go()" onclick="go()">'
    assert len(blocked_by_policy(html + '<script src="/static/x.js"></script><style>a{}</style>')) == 4

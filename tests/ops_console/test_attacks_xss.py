"""Stored XSS: script and attribute payloads in every free-text field are rendered as text everywhere.

For each payload, every free-text field a writer can fill (patient, provider and user names,
addresses, e-mails where the validator allows, visit reasons, cancel details, license numbers,
notes and change reasons, support case subjects and notes, API client names, security event
details and user agents, search terms kept in the access log, request paths kept by the
timing recorder) is written the way the console's writers write it: through the actions, the
console's own forms and the real requests. Then every page that shows them is rendered as a
superuser (and as a support agent, where the role may open it) and parsed with the standard
library's HTML parser: the payload must appear as text or as an attribute's value, and no
element may carry an event handler, a ``javascript:`` URL, an inline script running it or a
frame. The live queues feed must be valid JSON, and the scripts that render data must insert
it as text (``textContent``), never as HTML.
"""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.test import RequestFactory
from django.urls import reverse

from clinical.actions import api_clients as api_client_actions
from clinical.actions import licenses as license_actions
from clinical.actions import offers as offer_actions
from clinical.actions import providers as provider_actions
from clinical.actions import visits as visit_actions
from clinical.models import Patient, VisitEvent
from core import actions as core_actions
from core.audit import Actor
from core.models import AccessLog, SecurityEvent
from support import actions as support_actions
from tests.builders import SYSTEM, make_patient, make_provider, make_visit

pytestmark = pytest.mark.usefixtures("fast_passwords", "redis_client")

XSS_PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "javascript:alert(1)",
    "</textarea><svg onload=alert(1)>",
    "{{7*7}}{% debug %}",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "\u202e<b onclick=alert(1)>gpj.exe\u202c",
    "</script><script>alert(1)</script><!--",
    '<a href="javascript:alert(1)">x</a>',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
)
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background"}
FORBIDDEN_ELEMENTS = {"iframe", "frame", "object", "embed", "base"}
# Scripts that put data fetched from the server into the page.
STATIC_SCRIPTS = sorted(Path(settings.BASE_DIR).glob("*/static/**/*.js"))
HTML_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment", "eval(")


class PageScan(HTMLParser):
    """Collect a page's text and attribute values, and every construct that would run a payload."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.seen: list[str] = []
        self.problems: list[str] = []
        self._script_src: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in FORBIDDEN_ELEMENTS:
            self.problems.append(f"<{tag}> element")
        if tag == "script":
            self._script_src = dict(attrs).get("src") or ""
            if self._script_src and not _same_origin(self._script_src):
                self.problems.append(f"script from {self._script_src!r}")
        for name, value in attrs:
            value = value or ""
            self.seen.append(value)
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name in URL_ATTRIBUTES and value.strip().lower().replace("\x00", "").startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name == "srcdoc":
                self.problems.append(f"<{tag} srcdoc>")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "script":
            self._script_src = None

    def handle_endtag(self, tag):
        if tag == "script":
            self._script_src = None

    def handle_data(self, data):
        if self._script_src is not None and "alert" in data:
            self.problems.append(f"inline script running {data.strip()[:60]!r}")
        self.seen.append(data)


def _same_origin(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


def scan(html: str) -> PageScan:
    """Return the parsed page."""
    parser = PageScan()
    parser.feed(html)
    parser.close()
    return parser


def _quoted_email(payload: str, n: int) -> str:
    """Return an e-mail whose quoted local part is the payload, when the validator allows it."""
    candidate = '"' + payload.replace("\\", "").replace('"', "") + f'"@x{n}.example.test'
    try:
        validate_email(candidate)
    except ValidationError:
        return f"plain{n}@example.test"
    return candidate


def store_payload_everywhere(payload: str, *, client, lead, superuser, support_agent, django_user_model) -> dict:
    """Write ``payload`` into every free-text field, as the console's writers do; return the records."""
    provider = make_provider(first_name=payload, last_name=payload, states=("CA",), available=True, expires_in_days=10)
    provider.email = _quoted_email(payload, 1)
    provider = provider_actions.save_provider(provider, actor=SYSTEM, reason=payload)
    license = provider.licenses.get()
    license.license_number, license.notes = payload[:40], payload
    license_actions.save_license(license, actor=SYSTEM, reason=payload)

    patient = make_patient(first_name=payload, last_name=payload)
    client.force_login(lead)  # a console edit: the history and the lead's "recent actions" name the patient
    response = client.post(
        reverse("ops:clinical_patient_change", args=[patient.pk]),
        {
            "first_name": payload, "last_name": payload, "date_of_birth": "1985-03-02",
            "email": _quoted_email(payload, 2), "phone": patient.phone, "address_line1": payload,
            "address_line2": payload, "city": payload[:100], "state": "CA", "postal_code": "90210",
            "change_reason": payload,
        },
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    patient.refresh_from_db()
    assert patient.address_line1 == payload

    visit = make_visit(patient=patient, reason=payload)
    offer_actions.offer_visit(visit, provider, actor=Actor.router())
    visit_actions.cancel_visit(visit, actor=Actor.patient_app(payload), detail=payload)
    make_visit(patient=patient, reason=payload)  # still waiting: the dashboard and live queues count it

    case = support_actions.open_case(subject=payload[:200], patient=patient, visit=visit, note=payload, actor=SYSTEM)
    support_actions.add_note(case, body=payload, actor=SYSTEM)
    support_actions.save_case(case, actor=SYSTEM, reason=payload)
    api_client, _ = api_client_actions.create_api_client(
        name=payload[:100], scope="patient", patient=patient, actor=SYSTEM
    )
    user = django_user_model.objects.create_user(
        "xss-user", "xss@ops.example", "x", first_name=payload[:150], last_name=payload[:150], is_staff=True
    )
    probe = RequestFactory().get("/admin/", HTTP_USER_AGENT=payload, REMOTE_ADDR="203.0.113.9")
    event = core_actions.record_security_event(probe, kind=SecurityEvent.Kind.ADMIN_PROBE, detail=payload)
    client.force_login(support_agent)
    assert client.get(reverse("ops:global_search"), {"q": payload}, HTTP_USER_AGENT=payload).status_code == 200
    client.force_login(superuser)
    client.get(reverse("ops:clinical_visit_change", args=[payload]))  # a path the slow pages report links to
    return {
        "provider": provider, "license": license, "patient": patient, "visit": visit, "case": case,
        "api_client": api_client, "user": user, "event": event,
        "access": AccessLog.objects.get(terms=payload[:200]),
        "cancel": VisitEvent.objects.get(visit=visit, to_status="cancelled"),
    }  # fmt: skip


def _url(record, view: str, *args) -> str:
    return reverse(f"ops:{record._meta.app_label}_{record._meta.model_name}_{view}", args=args or [record.pk])


def changelists(r: dict) -> list[tuple[str, str, dict]]:
    """Return (name, url, params) of each changelist, with a search or filter that lists the record."""
    mrn, npi = r["patient"].mrn, r["provider"].npi
    return [
        ("patients", reverse("ops:clinical_patient_changelist"), {"q": mrn}),
        ("visits", reverse("ops:clinical_visit_changelist"), {"q": mrn}),
        ("visits, unsearched", reverse("ops:clinical_visit_changelist"), {}),
        ("visit events", reverse("ops:clinical_visitevent_changelist"), {"q": r["visit"].public_id}),
        ("providers", reverse("ops:clinical_provider_changelist"), {"q": npi}),
        ("licenses", reverse("ops:clinical_providerlicense_changelist"), {"q": npi}),
        ("support cases", reverse("ops:support_supportcase_changelist"), {"q": mrn}),
        ("API clients", reverse("ops:clinical_apiclient_changelist"), {"q": r["api_client"].token_prefix}),
        ("security events", reverse("ops:core_securityevent_changelist"), {"q": "203.0.113.9"}),
        ("users", reverse("ops:auth_user_changelist"), {"q": "xss-user"}),
        ("access log", reverse("ops:core_accesslog_changelist"), {"kind__exact": "search"}),
    ]


def change_pages(r: dict) -> list[tuple[str, str, dict]]:
    """Return (name, url, params) of each record's change page."""
    names = ("patient", "visit", "provider", "license", "case", "api_client", "user", "event", "cancel", "access")
    return [(f"{name} page", _url(r[name], "change"), {}) for name in names]


def history_pages(r: dict) -> list[tuple[str, str, dict]]:
    """Return (name, url, params) of each history page and of old versions."""
    names = ("patient", "visit", "provider", "license", "case", "api_client")
    pages = [(f"{name} history", _url(r[name], "history"), {}) for name in names]
    for name in ("patient", "visit", "license", "case"):
        record = r[name]
        for version in (record.history.earliest(), record.history.latest()):
            url = _url(record, "simple_history", record.pk, version.history_id)
            pages.append((f"{name} version {version.history_id}", url, {}))
    return pages


def search_pages(r: dict) -> list[tuple[str, str, dict]]:
    """Return (name, url, params) of the global search by the patient's MRN and the provider's NPI."""
    search = reverse("ops:global_search")
    return [("search by MRN", search, {"q": r["patient"].mrn}), ("search by NPI", search, {"q": r["provider"].npi})]


def dashboard_pages(r: dict) -> list[tuple[str, str, dict]]:
    """Return (name, url, params) of the dashboard, the live queues and the slow pages report."""
    return [
        ("dashboard", reverse("ops:index"), {}),
        ("live queues", reverse("ops:live_queues"), {}),
        ("slow pages", reverse("ops:slow_pages"), {}),
    ]


SURFACES = {
    "changelists": changelists,
    "change pages": change_pages,
    "history": history_pages,
    "global search": search_pages,
    "dashboard": dashboard_pages,
}
# Pages that show no free text at all: only counts and state codes.
WITHOUT_FREE_TEXT = {"live queues"}


def assert_rendered_as_text(html: str, payload: str, page: str, *, shown: bool) -> None:
    """Fail if the page would run the payload, or (when ``shown``) if it does not show it as text."""
    parsed = scan(html)
    assert not parsed.problems, (page, parsed.problems)
    if shown:
        assert any(payload in chunk for chunk in parsed.seen), f"{page} does not show the payload: {html}"


@pytest.fixture
def world(request, client, lead, superuser, support_agent, django_user_model):
    payload = request.param
    records = store_payload_everywhere(
        payload, client=client, lead=lead, superuser=superuser, support_agent=support_agent,
        django_user_model=django_user_model,
    )  # fmt: skip
    return payload, records


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("world", XSS_PAYLOADS, ids=range(len(XSS_PAYLOADS)), indirect=True)
def test_it_renders_every_stored_payload_as_text(client, superuser, lead, support_agent, world, surface):
    payload, records = world
    # The superuser's forms show values in inputs, the support agent's read-only pages as text; the
    # lead's dashboard lists the patient the lead edited (recent actions).
    readers = (superuser, support_agent, lead) if surface == "dashboard" else (superuser, support_agent)
    for name, url, params in SURFACES[surface](records):
        for user in readers:
            client.force_login(user)
            response = client.get(url, params)
            if response.status_code == 403 and user != superuser:
                continue
            assert response.status_code == 200, (name, user.username, response.status_code)
            shown = name not in WITHOUT_FREE_TEXT and user != support_agent
            assert_rendered_as_text(response.content.decode(), payload, f"{name} as {user.username}", shown=shown)


@pytest.mark.parametrize("world", XSS_PAYLOADS[:2], ids=range(2), indirect=True)
def test_it_serves_the_live_queues_feed_as_valid_json(client, support_agent, world):
    client.force_login(support_agent)
    response = client.get(reverse("ops:live_queues_data"))
    assert response["Content-Type"] == "application/json"
    data = json.loads(response.content)
    assert data["totals"]["waiting"] == 1 and [row["state"] for row in data["states"]] == ["CA"]


def test_it_inserts_fetched_data_as_text_in_every_script():
    assert STATIC_SCRIPTS, "the console's scripts were found"
    for script in STATIC_SCRIPTS:
        source = script.read_text()
        assert not [sink for sink in HTML_SINKS if sink in source], script.name
        assert "textContent" in source or "fetch(" not in source, script.name


def test_it_finds_what_the_scanner_must_refuse():
    unsafe = [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "<a href=' javascript:alert(1)'>x</a>",
        '<iframe srcdoc="x"></iframe>',
        "<svg onload=alert(1)>",
        "<script src='https://evil.example/x.js'></script>",
    ]
    assert all(scan(html).problems for html in unsafe)
    assert not scan('<p title="&lt;script&gt;">&lt;script&gt;alert(1)&lt;/script&gt;</p>').problems


def test_it_keeps_a_payload_a_form_would_store_unchanged(db, lead, client):
    patient = make_patient()
    client.force_login(lead)
    payload = XSS_PAYLOADS[1]
    client.post(
        reverse("ops:clinical_patient_change", args=[patient.pk]),
        {
            "first_name": payload, "last_name": "Doe", "date_of_birth": "1985-03-02", "phone": patient.phone,
            "state": "CA", "change_reason": "typo",
        },
    )  # fmt: skip
    assert Patient.objects.get(pk=patient.pk).first_name == payload  # stored as typed, escaped when shown
    assert LogEntry.objects.filter(object_id=str(patient.pk), user=lead).exists()

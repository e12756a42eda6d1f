"""The role matrix over HTTP: every persona against every console URL and method.

The expected tables below are written out by hand, not derived from ``ops_console/roles.py``,
so that a drift in the roles (or in a ModelAdmin's permission hooks) fails a named cell here:

- ``EXPECTED_MATRIX``: per persona and registered model, the changelist, change page, add,
  change, delete, history, an old version and its revert, import and export;
- ``EXPECTED_ACTIONS``: each admin action (enumerated from the ModelAdmins, so a new one
  without a row fails ``test_it_has_an_expected_row_for_every_action``);
- ``EXPECTED_AUTOCOMPLETE``: each autocomplete field, and a few foreign keys the console does
  not offer as autocomplete (probes that must be refused to everyone);
- ``EXPECTED_PAGES``: the console's own pages.

Every refused state-changing request also proves that nothing in the database changed. Anonymous,
inactive and non-staff users (the last two holding the Ops lead role) are swept over every request of
the tables and sent to the login page. ``COMBINATIONS`` counts the persona × URL × method
combinations covered::

    DJANGO_SETTINGS_MODULE=ops_console.settings .venv/bin/python -c \\
        "import django; django.setup(); from tests.ops_console import test_role_matrix as m; print(m.COMBINATIONS)"
"""

import time
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.urls import NoReverseMatch, URLPattern, URLResolver, reverse

from clinical.actions import api_clients as api_client_actions
from clinical.actions import providers as provider_actions
from clinical.actions import visits as visit_actions
from clinical.models import Availability, VisitStatus
from clinical.reference import SPECIALTY_CHOICES
from core.models import SecurityEvent
from ops_console import roles, signin, toolbar
from ops_console import urls as site_urls
from ops_console.admin_site import ops_site
from ops_console.models import TotpDevice
from ops_console.twofactor import totp
from ops_console.twofactor.actions import do_confirm_totp_device
from oversight import actions as oversight_actions
from oversight.models import Alert
from tests.builders import SYSTEM, make_patient, make_provider, make_visit, new_npi
from tests.conftest import PASSWORD
from tests.ops_console.conftest import database_snapshot, make_access_log, make_case, make_security_event

pytestmark = pytest.mark.usefixtures("fast_passwords")

PERSONAS = ("support_agent", "clinical_ops", "engineer", "lead", "outsider", "superuser")

# y = allowed, - = refused, . = the console has no such page for this model.
# "view" is the change page GET, "change" its POST; "old" is an old version's page GET
# (history/<id>/), "revert" its POST; "add", "delete", "import" and "export" are a GET and a POST.
COLUMN_METHODS = {
    "changelist": ("GET", "POST", "HEAD"), "view": ("GET", "HEAD"), "add": ("GET", "POST"), "change": ("POST",),
    "delete": ("GET", "POST"), "history": ("GET", "POST", "HEAD"), "old": ("GET", "HEAD"), "revert": ("POST",),
    "import": ("GET", "POST"), "export": ("GET", "POST"),
}  # fmt: skip
COLUMNS = tuple(COLUMN_METHODS)

EXPECTED_MATRIX = """
persona        model                     changelist view add change delete history old revert import export
support_agent  clinical.provider         y          y    -   -      -      y       y   -      .      -
support_agent  clinical.providerlicense  y          y    -   -      -      y       y   -      -      -
support_agent  clinical.patient          y          y    -   -      -      y       y   -      .      .
support_agent  clinical.visit            y          y    -   -      -      y       y   -      .      .
support_agent  clinical.visitevent       y          y    -   -      -      y       .   .      .      .
support_agent  clinical.apiclient        -          -    -   -      -      -       -   -      .      .
support_agent  support.supportcase       y          y    y   y      -      y       y   y      .      .
support_agent  core.securityevent        -          -    -   -      -      -       .   .      .      .
support_agent  core.accesslog            -          -    -   -      -      -       .   .      .      .
support_agent  auth.user                 -          -    -   -      -      -       .   .      .      .
support_agent  auth.group                -          -    -   -      -      -       .   .      .      .
support_agent  oversight.alert           -          -    -   -      -      -       .   .      .      .
clinical_ops   clinical.provider         y          y    y   y      -      y       y   y      .      y
clinical_ops   clinical.providerlicense  y          y    y   y      -      y       y   y      y      y
clinical_ops   clinical.patient          y          y    -   -      -      y       y   -      .      .
clinical_ops   clinical.visit            y          y    -   -      -      y       y   -      .      .
clinical_ops   clinical.visitevent       y          y    -   -      -      y       .   .      .      .
clinical_ops   clinical.apiclient        -          -    -   -      -      -       -   -      .      .
clinical_ops   support.supportcase       y          y    -   -      -      y       y   -      .      .
clinical_ops   core.securityevent        -          -    -   -      -      -       .   .      .      .
clinical_ops   core.accesslog            -          -    -   -      -      -       .   .      .      .
clinical_ops   auth.user                 -          -    -   -      -      -       .   .      .      .
clinical_ops   auth.group                -          -    -   -      -      -       .   .      .      .
clinical_ops   oversight.alert           y          y    -   -      -      y       .   .      .      .
engineer       clinical.provider         y          y    -   -      -      y       y   -      .      -
engineer       clinical.providerlicense  y          y    -   -      -      y       y   -      -      -
engineer       clinical.patient          y          y    -   -      -      y       y   -      .      .
engineer       clinical.visit            y          y    -   -      -      y       y   -      .      .
engineer       clinical.visitevent       y          y    -   -      -      y       .   .      .      .
engineer       clinical.apiclient        -          -    -   -      -      -       -   -      .      .
engineer       support.supportcase       y          y    -   -      -      y       y   -      .      .
engineer       core.securityevent        -          -    -   -      -      -       .   .      .      .
engineer       core.accesslog            -          -    -   -      -      -       .   .      .      .
engineer       auth.user                 -          -    -   -      -      -       .   .      .      .
engineer       auth.group                -          -    -   -      -      -       .   .      .      .
engineer       oversight.alert           y          y    -   -      -      y       .   .      .      .
lead           clinical.provider         y          y    y   y      -      y       y   y      .      y
lead           clinical.providerlicense  y          y    y   y      -      y       y   y      y      y
lead           clinical.patient          y          y    y   y      -      y       y   y      .      .
lead           clinical.visit            y          y    y   y      -      y       y   y      .      .
lead           clinical.visitevent       y          y    -   -      -      y       .   .      .      .
lead           clinical.apiclient        y          y    y   y      -      y       y   -      .      .
lead           support.supportcase       y          y    y   y      y      y       y   y      .      .
lead           core.securityevent        y          y    -   -      -      y       .   .      .      .
lead           core.accesslog            y          y    -   -      -      y       .   .      .      .
lead           auth.user                 y          y    y   y      -      y       .   .      .      .
lead           auth.group                y          y    -   -      -      y       .   .      .      .
lead           oversight.alert           y          y    -   -      -      y       .   .      .      .
outsider       clinical.provider         -          -    -   -      -      -       -   -      .      -
outsider       clinical.providerlicense  -          -    -   -      -      -       -   -      -      -
outsider       clinical.patient          -          -    -   -      -      -       -   -      .      .
outsider       clinical.visit            -          -    -   -      -      -       -   -      .      .
outsider       clinical.visitevent       -          -    -   -      -      -       .   .      .      .
outsider       clinical.apiclient        -          -    -   -      -      -       -   -      .      .
outsider       support.supportcase       -          -    -   -      -      -       -   -      .      .
outsider       core.securityevent        -          -    -   -      -      -       .   .      .      .
outsider       core.accesslog            -          -    -   -      -      -       .   .      .      .
outsider       auth.user                 -          -    -   -      -      -       .   .      .      .
outsider       auth.group                -          -    -   -      -      -       .   .      .      .
outsider       oversight.alert           -          -    -   -      -      -       .   .      .      .
superuser      clinical.provider         y          y    y   y      -      y       y   y      .      y
superuser      clinical.providerlicense  y          y    y   y      -      y       y   y      y      y
superuser      clinical.patient          y          y    y   y      -      y       y   y      .      .
superuser      clinical.visit            y          y    y   y      -      y       y   y      .      .
superuser      clinical.visitevent       y          y    -   -      -      y       .   .      .      .
superuser      clinical.apiclient        y          y    y   y      -      y       y   -      .      .
superuser      support.supportcase       y          y    y   y      y      y       y   y      .      .
superuser      core.securityevent        y          y    -   -      -      y       .   .      .      .
superuser      core.accesslog            y          y    -   -      -      y       .   .      .      .
superuser      auth.user                 y          y    y   y      -      y       .   .      .      .
superuser      auth.group                y          y    -   -      -      y       .   .      .      .
superuser      oversight.alert           y          y    -   -      -      y       .   .      .      .
"""

# Each admin action, POSTed from the changelist with one record selected.
EXPECTED_ACTIONS = """
action                                  support_agent clinical_ops engineer lead outsider superuser
clinical.provider:set_offline           -             y            -        y    -        y
clinical.providerlicense:mark_verified  -             y            -        y    -        y
clinical.visit:cancel_visits            -             -            -        y    -        y
clinical.apiclient:revoke               -             -            -        y    -        y
support.supportcase:delete_selected     -             -            -        y    -        y
auth.user:reset_two_factor              -             -            -        y    -        y
auth.user:unlock_sign_in                -             -            -        y    -        y
oversight.alert:acknowledge             -             y            y        y    -        y
"""

# GET autocomplete/?app_label=&model_name=&field_name= (the source field) with a term matching
# one record of the target model. Allowed only for a field a page the user may open offers,
# with the view permission on the target.
EXPECTED_AUTOCOMPLETE = """
field                                 support_agent clinical_ops engineer lead outsider superuser
clinical.providerlicense.provider     y             y            y        y    -        y
clinical.visit.patient                y             y            y        y    -        y
clinical.apiclient.provider           -             -            -        y    -        y
clinical.apiclient.patient            -             -            -        y    -        y
support.supportcase.patient           y             y            y        y    -        y
support.supportcase.visit             y             y            y        y    -        y
support.supportcase.assignee          -             -            -        -    -        -
core.accesslog.user                   -             -            -        -    -        -
clinical.visitevent.visit             -             -            -        -    -        -
clinical.visit.provider               -             -            -        -    -        -
"""
# Foreign keys no console page offers as an autocomplete: refused to everyone, superusers too.
NOT_OFFERED = {
    "support.supportcase.assignee",
    "core.accesslog.user",
    "clinical.visitevent.visit",
    "clinical.visit.provider",
}

# The console's own pages (GET; user-password also POST). app:* and view-on-site refuse with a
# 404 (the admin's), every other page with a 403.
EXPECTED_PAGES = """
page                    support_agent clinical_ops engineer lead outsider superuser
index                   y             y            y        y    y        y
app:auth                -             -            -        y    -        y
app:clinical            y             y            y        y    -        y
app:support             y             y            y        y    -        y
live                    y             y            y        y    -        y
live-data               y             y            y        y    -        y
search                  y             y            y        y    -        y
slow-pages              -             -            y        y    -        y
password-change         y             y            y        y    y        y
password-change-done    y             y            y        y    y        y
jsi18n                  y             y            y        y    y        y
user-password           -             -            -        y    -        y
view-on-site            -             -            -        -    -        -
"""


def _parse_matrix(table: str) -> dict[tuple[str, str], dict[str, bool | None]]:
    header, *rows = [line.split() for line in table.strip().splitlines()]
    assert tuple(header[2:]) == COLUMNS
    cell = {"y": True, "-": False, ".": None}
    return {(persona, model): dict(zip(COLUMNS, map(cell.get, cells), strict=True)) for persona, model, *cells in rows}


def _parse_grid(table: str) -> dict[tuple[str, str], bool]:
    """Parse a table with one row per URL and one column per persona."""
    header, *rows = [line.split() for line in table.strip().splitlines()]
    assert tuple(header[1:]) == PERSONAS
    return {(persona, row[0]): cell == "y" for row in rows for persona, cell in zip(PERSONAS, row[1:], strict=True)}


MATRIX = _parse_matrix(EXPECTED_MATRIX)
MODELS = list(dict.fromkeys(model for _, model in MATRIX))
ACTIONS = _parse_grid(EXPECTED_ACTIONS)
AUTOCOMPLETE = _parse_grid(EXPECTED_AUTOCOMPLETE)
PAGES = _parse_grid(EXPECTED_PAGES)
PAGE_METHODS = {"user-password": ("GET", "POST")}
NOT_FOUND_PAGES = {"app:auth", "app:clinical", "app:support", "view-on-site"}


def _rows(grid: dict) -> list[str]:
    return list(dict.fromkeys(row for _, row in grid))


def _requests_per_persona() -> int:
    """Return the URL × method pairs the tables cover, for one persona."""
    matrix = sum(
        len(COLUMN_METHODS[column])
        for (persona, _), cells in MATRIX.items()
        if persona == PERSONAS[0]
        for column, allowed in cells.items()
        if allowed is not None
    )
    pages = sum(len(PAGE_METHODS.get(page, ("GET",))) for page in _rows(PAGES))
    return matrix + len(_rows(ACTIONS)) + len(_rows(AUTOCOMPLETE)) + pages


REQUESTS_PER_PERSONA = _requests_per_persona()
SWEPT = ("anonymous", "inactive", "non_staff")  # refused everything: sent to the login page
COMBINATIONS = REQUESTS_PER_PERSONA * (len(PERSONAS) + len(SWEPT))


def _cells(column: str):
    return [
        pytest.param(persona, model, cells[column], id=f"{persona}-{model}-{'allowed' if cells[column] else 'refused'}")
        for (persona, model), cells in MATRIX.items()
        if cells[column] is not None
    ]


def _grid_cells(grid: dict):
    return [
        pytest.param(persona, row, allowed, id=f"{persona}-{row}-{'allowed' if allowed else 'refused'}")
        for (persona, row), allowed in grid.items()
    ]


# --- the records every cell works on --------------------------------------------------------


@pytest.fixture
def records(db) -> dict:
    """Return one record of every model the console lists, keyed by ``app_label.model_name``."""
    return make_records()


def make_records() -> dict:
    """Create one record of every model the console lists; return them by ``app_label.model_name``."""
    provider = make_provider(states=("CA", "NV"))
    patient = make_patient(last_name="Matrix")
    visit = make_visit(patient=patient)
    colleague = get_user_model().objects.create_user("colleague", "colleague@ops.example", PASSWORD, is_staff=True)
    return {
        "clinical.provider": provider,
        "clinical.providerlicense": provider.licenses.order_by("state").first(),
        "clinical.patient": patient,
        "clinical.visit": visit,
        "clinical.visitevent": visit.events.get(),
        "clinical.apiclient": api_client_actions.create_api_client(
            name="matrix-app", scope="provider", provider=provider, actor=SYSTEM
        )[0],
        "support.supportcase": make_case(patient=patient, visit=visit, notes=1),
        "core.securityevent": make_security_event(),
        "core.accesslog": make_access_log(patient),
        "auth.user": colleague,
        "auth.group": Group.objects.get(name=roles.SUPPORT_AGENT),
        # Patients wait in CA and its one licensed provider is offline: the alert opens.
        "oversight.alert": _alert_opened(kind="no_provider", subject="CA"),
    }


def _alert_opened(**condition) -> Alert:
    """Evaluate the alert conditions; return the alert opened for ``condition``."""
    oversight_actions.evaluate("tests")
    return Alert.objects.get(resolved_at__isnull=True, **condition)


@pytest.fixture
def user_for(request, superuser):
    """Return a function that returns the user for a persona's fixture name."""
    return request.getfixturevalue


def _url(model: str, view: str, *args) -> str:
    return reverse(f"ops:{model.replace('.', '_')}_{view}", args=args)


# --- what a browser would post --------------------------------------------------------------


class _FormFields(HTMLParser):
    """Collect the name/value pairs a browser would submit from the form with ``form_id``."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside, self.pairs = form_id, False, []
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        elif not self.inside or "disabled" in attrs:
            return
        elif tag == "input":
            self._input(attrs)
        elif tag == "select":
            self._select = {"name": attrs.get("name"), "multiple": "multiple" in attrs, "options": []}
        elif tag == "option" and self._select is not None:
            self._select["options"].append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea":
            self._textarea = [attrs.get("name"), ""]

    def _input(self, attrs):
        kind = attrs.get("type", "text")
        if not attrs.get("name") or kind in ("submit", "button", "reset", "file", "image"):
            return
        if kind in ("checkbox", "radio") and "checked" not in attrs:
            return
        self.pairs.append((attrs["name"], attrs.get("value", "on" if kind in ("checkbox", "radio") else "")))

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            chosen = [value for value, selected in self._select["options"] if selected]
            if not chosen and not self._select["multiple"] and self._select["options"]:
                chosen = [self._select["options"][0][0]]
            self.pairs += [(self._select["name"], value) for value in chosen]
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.pairs.append((self._textarea[0], self._textarea[1].removeprefix("\n")))
            self._textarea = None


def form_data(response, form_id: str) -> dict[str, list[str]]:
    """Return the data of ``form_id`` in the page as a browser would post it unchanged."""
    parser = _FormFields(form_id)
    parser.feed(response.content.decode())
    data: dict[str, list[str]] = {}
    for name, value in parser.pairs:
        if name:
            data.setdefault(name, []).append(value)
    return data


def _page_form(client, superuser, url: str, form_id: str) -> dict[str, list[str]]:
    """Return the form on ``url`` as the superuser sees it (empty if even they may not open it)."""
    client.force_login(superuser)
    response = client.get(url)
    data = form_data(response, form_id) if response.status_code == 200 else {}
    data.pop("csrfmiddlewaretoken", None)  # the test client does not check it; test_csrf.py does
    return data


# Fields that make a valid new record of each model (merged over the add form's defaults).
def _new_record_fields(model: str, records: dict) -> dict[str, str]:
    patient, visit = records["clinical.patient"], records["clinical.visit"]
    return {
        "clinical.provider": {
            "first_name": "Lin", "last_name": "Added", "npi": new_npi(), "email": "lin@example.test",
            "phone": "+14155550199", "specialty": SPECIALTY_CHOICES[0][0], "change_reason": "matrix",
        },
        "clinical.providerlicense": {
            "provider": str(records["clinical.provider"].pk), "state": "OR", "license_number": "Added-1",
            "license_type": "MD", "status": "pending", "issued_on": "2024-01-02", "expires_on": "",
        },
        "clinical.patient": {
            "first_name": "Ann", "last_name": "Added", "date_of_birth": "1990-01-02", "phone": "+12125550188",
            "state": "CA",
        },
        # A patient without an open visit: one open visit per patient.
        "clinical.visit": {
            "patient": str(make_patient(last_name="Newvisit").pk), "located_state": "CA", "priority": "0",
            "reason": "Added",
        },
        "clinical.visitevent": {"visit": str(visit.pk), "to_status": "cancelled", "detail": "Added"},
        "clinical.apiclient": {"name": "Added", "scope": "patient", "provider": "", "patient": str(patient.pk)},
        "support.supportcase": {
            "subject": "Added", "category": "other", "priority": "1", "status": "open", "patient": str(patient.pk),
        },
        "core.securityevent": {"kind": "admin_probe", "path": "/Added", "method": "GET"},
        "core.accesslog": {"kind": "view", "path": "/Added"},
        "auth.user": {"username": "Added", "password1": "Added-pass-2026!", "password2": "Added-pass-2026!"},
        "auth.group": {"name": "Added"},
        "oversight.alert": {"kind": "no_router", "subject": "Added", "message": "Added", "opened_by": "Added"},
    }[model]  # fmt: skip


# How each model's new record is found after an add.
ADDED = {
    "clinical.provider": {"last_name": "Added"},
    "clinical.providerlicense": {"license_number": "Added-1"},
    "clinical.patient": {"last_name": "Added"},
    "clinical.visit": {"reason": "Added"},
    "clinical.visitevent": {"detail": "Added"},
    "clinical.apiclient": {"name": "Added"},
    "support.supportcase": {"subject": "Added"},
    "core.securityevent": {"path": "/Added"},
    "core.accesslog": {"path": "/Added"},
    "auth.user": {"username": "Added"},
    "auth.group": {"name": "Added"},
    "oversight.alert": {"subject": "Added"},
}

# The field each change POST edits, and its new value.
CHANGES = {
    "clinical.provider": ("last_name", "Changed"),
    "clinical.providerlicense": ("notes", "Changed"),
    "clinical.patient": ("city", "Changed"),
    "clinical.visit": ("reason", "Changed"),
    "clinical.visitevent": ("detail", "Changed"),
    "clinical.apiclient": ("name", "Changed"),
    "support.supportcase": ("subject", "Changed"),
    "core.securityevent": ("detail", "Changed"),
    "core.accesslog": ("detail", "Changed"),
    "auth.user": ("first_name", "Changed"),
    "auth.group": ("name", "Changed"),
    "oversight.alert": ("message", "Changed"),
}


def _form_id(model: str) -> str:
    return f"{model.split('.')[1]}_form"


def add_data(client, superuser, model: str, records: dict) -> dict:
    """Return what the add form posts for a valid new record of ``model``."""
    data = _page_form(client, superuser, _url(model, "add"), _form_id(model))
    return {**data, **_new_record_fields(model, records)}


def change_data(client, superuser, model: str, records: dict) -> dict:
    """Return what the change form posts to make the ``CHANGES`` edit on the model's record."""
    data = _page_form(client, superuser, _url(model, "change", records[model].pk), _form_id(model))
    field_name, value = CHANGES[model]
    return {**data, field_name: value, "change_reason": "matrix"}


def revert_setup(client, superuser, model: str, records: dict) -> tuple[str, dict]:
    """Make the ``CHANGES`` edit as the superuser; return the first version's URL and its revert form."""
    record = records[model]
    first = record.history.order_by("history_id").first().history_id
    response = client.post(_url(model, "change", record.pk), change_data(client, superuser, model, records))
    assert response.status_code == 302, _errors(response)
    url = _url(model, "simple_history", record.pk, first)
    return url, _page_form(client, superuser, url, f"historical{model.split('.')[1]}_form")


def _errors(response) -> list:
    """Return the form and inline errors of a re-rendered admin form, for failure messages."""
    if response.context is None or "adminform" not in response.context:
        return []
    inlines = response.context.get("inline_admin_formsets", [])
    return [
        response.context["adminform"].form.errors,
        *(i.formset.errors + [i.formset.non_form_errors()] for i in inlines),
    ]


def _assert_refused(response, before: dict, status: int = 403) -> None:
    assert response.status_code == status
    assert database_snapshot() == before


# --- the model matrix, one test case per cell -------------------------------------------------


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("changelist"))
def test_it_lists_a_model_only_for_roles_that_may_view_it(client, user_for, persona, model, allowed, records):
    client.force_login(user_for(persona))
    response = client.get(_url(model, "changelist"))
    assert response.status_code == (200 if allowed else 403)
    if allowed:
        assert response.context["cl"].result_count >= 1
        assert response.context["has_add_permission"] is MATRIX[persona, model]["add"]


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("view"))
def test_it_shows_a_record_only_to_roles_that_may_view_it(client, user_for, persona, model, allowed, records):
    client.force_login(user_for(persona))
    response = client.get(_url(model, "change", records[model].pk))
    assert response.status_code == (200 if allowed else 403)
    if allowed:
        expected = MATRIX[persona, model]
        assert response.context["has_change_permission"] is expected["change"]
        assert response.context["has_delete_permission"] is expected["delete"]


# The read pages, and the other methods they answer as a read: a POST that only redraws the page
# (a list, a history), and HEAD. Each must be refused as the GET is, or recorded as the GET is.
READ_PAGES = {
    "changelist": lambda model, record: _url(model, "changelist"),
    "view": lambda model, record: _url(model, "change", record.pk),
    "history": lambda model, record: _url(model, "history", record.pk),
    "old": lambda model, record: _url(model, "simple_history", record.pk,
                                      record.history.order_by("history_id").first().history_id),
}  # fmt: skip


def _read_cells():
    return [
        pytest.param(persona, model, column, method, allowed, id=f"{persona}-{model}-{column}-{method}")
        for column in READ_PAGES
        for persona, model, allowed in (cell.values for cell in _cells(column))
        for method in COLUMN_METHODS[column]
        if method != "GET"
    ]


@pytest.mark.parametrize(("persona", "model", "column", "method", "allowed"), _read_cells())
def test_it_answers_a_post_or_head_of_a_read_page_as_its_get_and_records_the_read(
    client, user_for, persona, model, column, method, allowed, records
):
    record = records[model]
    client.force_login(user_for(persona))
    before = database_snapshot()
    response = getattr(client, method.lower())(READ_PAGES[column](model, record))
    assert response.status_code == (200 if allowed else 403)
    after = database_snapshot()
    read = after.pop("core.accesslog")[len(before.pop("core.accesslog")) :]
    assert after == before  # a read writes nothing but its record
    phi = allowed and getattr(ops_site._registry[type(record)], "phi_access", False)
    assert [(row["method"], row["user_id"]) for row in read] == (
        [(method, response.wsgi_request.user.pk)] if phi else []
    )


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("add"))
def test_it_adds_a_record_only_for_roles_that_may_add_it(client, user_for, persona, model, allowed, records, superuser):
    data = add_data(client, superuser, model, records)
    model_class = type(records[model])
    client.force_login(user_for(persona))
    before = database_snapshot()
    form_page, posted = client.get(_url(model, "add")), client.post(_url(model, "add"), data)
    if allowed:
        assert form_page.status_code == 200
        assert posted.status_code == 302, _errors(posted)
        assert model_class._default_manager.filter(**ADDED[model]).count() == 1
    else:
        assert form_page.status_code == 403
        _assert_refused(posted, before)


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("change"))
def test_it_changes_a_record_only_for_roles_that_may_change_it(
    client, user_for, persona, model, allowed, records, superuser
):
    record = records[model]
    data = change_data(client, superuser, model, records)
    field_name, value = CHANGES[model]
    user = user_for(persona)
    client.force_login(user)
    before = database_snapshot()
    response = client.post(_url(model, "change", record.pk), data)
    if allowed:
        assert response.status_code == 302, _errors(response)
        record.refresh_from_db()
        assert getattr(record, field_name) == value
        if hasattr(record, "history"):
            latest = record.history.latest()
            assert (latest.history_user, latest.history_change_reason) == (user, "matrix")
    else:
        _assert_refused(response, before)


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("delete"))
def test_it_deletes_a_record_only_for_roles_that_may_delete_it(client, user_for, persona, model, allowed, records):
    record = records[model]
    client.force_login(user_for(persona))
    before = database_snapshot()
    confirm_page = client.get(_url(model, "delete", record.pk))
    response = client.post(_url(model, "delete", record.pk), {"post": "yes"})
    if allowed:
        assert confirm_page.status_code == 200
        assert response.status_code == 302
        assert not type(record)._default_manager.filter(pk=record.pk).exists()
    else:
        assert confirm_page.status_code == 403
        _assert_refused(response, before)


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("history"))
def test_it_shows_history_only_to_roles_that_may_view_the_record(client, user_for, persona, model, allowed, records):
    client.force_login(user_for(persona))
    response = client.get(_url(model, "history", records[model].pk))
    assert response.status_code == (200 if allowed else 403)


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("old"))
def test_it_shows_an_old_version_only_to_roles_that_may_view_the_record(
    client, user_for, persona, model, allowed, records
):
    record = records[model]
    version = record.history.order_by("history_id").first().history_id
    client.force_login(user_for(persona))
    response = client.get(_url(model, "simple_history", record.pk, version))
    assert response.status_code == (200 if allowed else 403)
    if allowed:
        assert response.context["revert_disabled"] is not MATRIX[persona, model]["revert"]


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("revert"))
def test_it_reverts_to_an_old_version_only_for_roles_that_may_change_the_record(
    client, user_for, persona, model, allowed, records, superuser
):
    record = records[model]
    field_name, _ = CHANGES[model]
    original = getattr(record, field_name)
    url, data = revert_setup(client, superuser, model, records)
    user = user_for(persona)
    client.force_login(user)
    before = database_snapshot()
    response = client.post(url, data)
    record.refresh_from_db()
    if allowed:
        assert response.status_code == 302, _errors(response)
        assert getattr(record, field_name) == original
        assert record.history.latest().history_user == user
    else:
        _assert_refused(response, before)
        assert getattr(record, field_name) == CHANGES[model][1]


def _license_file(records) -> SimpleUploadedFile:
    provider = records["clinical.provider"]
    rows = f"NPI,State,License number,License type,Status,Issued on\r\n{provider.npi},OR,OR-9,MD,active,2024-01-02\r\n"
    return SimpleUploadedFile("licenses.csv", rows.encode())


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("import"))
def test_it_imports_only_for_roles_with_the_import_permission(
    client, user_for, persona, model, allowed, records, redis_client
):
    client.force_login(user_for(persona))
    before = database_snapshot()
    page, posted = (
        client.get(_url(model, "import")),
        client.post(_url(model, "import"), {"file": _license_file(records)}),
    )
    if allowed:
        assert (page.status_code, posted.status_code) == (200, 302)
        assert client.get(posted["Location"]).context["preview"]["counts"]["new"] == 1
    else:
        assert page.status_code == 403
        _assert_refused(posted, before)
        assert redis_client.keys("ops:import:*") == []


EXPORT_FORM = {"format": "0", "resource": "0"}  # CSV, the model's only resource


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("export"))
def test_it_exports_only_for_roles_with_the_export_permission(client, user_for, persona, model, allowed, records):
    client.force_login(user_for(persona))
    before = database_snapshot()
    page, posted = client.get(_url(model, "export")), client.post(_url(model, "export"), EXPORT_FORM)
    if allowed:
        assert (page.status_code, posted.status_code) == (200, 200)
        assert posted["Content-Disposition"].startswith("attachment")
    else:
        assert page.status_code == 403
        _assert_refused(posted, before)


def test_it_has_no_page_where_the_matrix_has_none():
    for model in MODELS:
        cells = MATRIX["superuser", model]
        assert all(MATRIX[persona, model].keys() == cells.keys() for persona in PERSONAS)
        for column, view in (("old", "simple_history"), ("import", "import"), ("export", "export")):
            args = (1, 1) if view == "simple_history" else ()
            if cells[column] is None:
                assert all(MATRIX[persona, model][column] is None for persona in PERSONAS), (model, column)
                with pytest.raises(NoReverseMatch):
                    _url(model, view, *args)
            else:
                assert _url(model, view, *args), (model, column)
        assert (cells["old"] is None) == (cells["revert"] is None), model


# --- admin actions --------------------------------------------------------------------------


def _enroll(user) -> None:
    secret = totp.new_secret()
    request = RequestFactory().post("/ops/two-factor/setup/", REMOTE_ADDR="198.51.100.5")
    request.user = user
    do_confirm_totp_device(request, user=user, secret=secret, code=totp.code_at(secret, time.time()))


def _fresh(record):
    return type(record)._default_manager.filter(pk=record.pk).first()


# What each action needs first, and how to tell it ran on the record.
ACTION_SETUP = {
    "clinical.provider:set_offline": lambda r: provider_actions.set_provider_availability(
        r, available=True, actor=SYSTEM
    ),
    "auth.user:reset_two_factor": _enroll,
    "auth.user:unlock_sign_in": lambda r: signin.record_failure(username=r.get_username(), ip="198.51.100.6"),
}
ACTION_DONE = {
    "clinical.provider:set_offline": lambda r, user: _fresh(r).availability == Availability.OFFLINE,
    "clinical.providerlicense:mark_verified": lambda r, user: _fresh(r).verified_by == user,
    "clinical.visit:cancel_visits": lambda r, user: r.events.filter(
        to_status=VisitStatus.CANCELLED, staff_user=user
    ).exists(),
    "clinical.apiclient:revoke": lambda r, user: not _fresh(r).is_active,
    "support.supportcase:delete_selected": lambda r, user: _fresh(r) is None,
    "auth.user:reset_two_factor": lambda r, user: not TotpDevice.objects.filter(user=r).exists(),
    "auth.user:unlock_sign_in": lambda r, user: SecurityEvent.objects.filter(
        kind="sign_in_unlocked", detail=r.get_username(), user=user
    ).exists(),
    "oversight.alert:acknowledge": lambda r, user: _fresh(r).acknowledged_by == user,
}


def action_data(action: str, record) -> dict:
    """Return the changelist POST that runs ``action`` on ``record`` (delete_selected confirmed)."""
    return {"action": action.split(":")[1], "_selected_action": [record.pk], "index": "0", "post": "yes"}


def prepare_action(action: str, records: dict):
    """Return the record ``action`` works on, made ready for it (e.g. a provider who is available)."""
    record = records[action.split(":")[0]]
    ACTION_SETUP.get(action, lambda r: None)(record)
    return record


@pytest.mark.parametrize(("persona", "action", "allowed"), _grid_cells(ACTIONS))
def test_it_runs_an_action_only_for_roles_allowed_to(client, user_for, persona, action, allowed, records):
    model = action.split(":")[0]
    record = prepare_action(action, records)
    user = user_for(persona)
    client.force_login(user)
    before = database_snapshot()
    response = client.post(_url(model, "changelist"), action_data(action, record))
    if allowed:
        assert response.status_code == 302
        assert ACTION_DONE[action](record, user)
        return
    assert not ACTION_DONE[action](record, user)
    if MATRIX[persona, model]["changelist"]:
        # The action is not offered to them: the changelist comes back and nothing ran.
        assert response.status_code == 200
        assert action.split(":")[1] not in [
            name for name, _ in ops_site._registry[type(record)].get_action_choices(response.wsgi_request)
        ]
        after = database_snapshot()
        # Redrawing a list of PHI reads it, whatever the method: that one row is all that changed.
        read = after.pop("core.accesslog")[len(before.pop("core.accesslog")) :]
        assert after == before
        assert [(row["kind"], row["method"]) for row in read] == (
            [("list", "POST")] if ops_site._registry[type(record)].phi_access else []
        )
    else:
        _assert_refused(response, before)


# --- autocomplete ---------------------------------------------------------------------------


def autocomplete_params(source: str, records: dict) -> tuple[dict, object]:
    """Return the autocomplete query for the ``source`` field with a term matching one target record."""
    app_label, model_name, field_name = source.split(".")
    target = apps.get_model(app_label, model_name)._meta.get_field(field_name).remote_field.model
    record = records[target._meta.label_lower]
    term = {
        "clinical.provider": lambda r: r.npi,
        "clinical.patient": lambda r: r.last_name,
        "clinical.visit": lambda r: r.public_id,
        "auth.user": lambda r: r.username,
    }[target._meta.label_lower](record)
    return {"app_label": app_label, "model_name": model_name, "field_name": field_name, "term": term}, record


@pytest.mark.parametrize(("persona", "source", "allowed"), _grid_cells(AUTOCOMPLETE))
def test_it_autocompletes_only_offered_fields_for_roles_that_may_view_both_ends(
    client, user_for, persona, source, allowed, records
):
    params, target = autocomplete_params(source, records)
    client.force_login(user_for(persona))
    response = client.get(reverse("ops:autocomplete"), params)
    assert response.status_code == (200 if allowed else 403)
    if allowed:
        assert str(target.pk) in [row["id"] for row in response.json()["results"]]
    else:
        assert params["term"].encode() not in response.content


# --- the console's own pages ----------------------------------------------------------------


def page_url(page: str, records: dict) -> str:
    """Return the URL of one of the console's own pages."""
    patient, colleague = records["clinical.patient"], records["auth.user"]
    if page.startswith("app:"):
        return reverse("ops:app_list", args=[page.split(":")[1]])
    return {
        "index": lambda: reverse("ops:index"),
        "live": lambda: reverse("ops:live_queues"),
        "live-data": lambda: reverse("ops:live_queues_data"),
        "search": lambda: reverse("ops:global_search") + f"?q={patient.last_name}",
        "slow-pages": lambda: reverse("ops:slow_pages"),
        "password-change": lambda: reverse("ops:password_change"),
        "password-change-done": lambda: reverse("ops:password_change_done"),
        "jsi18n": lambda: reverse("ops:jsi18n"),
        "user-password": lambda: reverse("ops:auth_user_password_change", args=[colleague.pk]),
        "view-on-site": lambda: reverse(
            "ops:view_on_site", args=[ContentType.objects.get_for_model(patient).pk, patient.pk]
        ),
    }[page]()


NEW_PASSWORD = "Another-pass-2026!"


def user_password_data(client, superuser, records) -> dict:
    """Return the admin's set-password form for the colleague, filled with ``NEW_PASSWORD``."""
    data = _page_form(client, superuser, page_url("user-password", records), "user_form")
    return {**data, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}


@pytest.mark.parametrize(("persona", "page", "allowed"), _grid_cells(PAGES))
def test_it_opens_a_console_page_only_for_roles_allowed_to(
    client, user_for, persona, page, allowed, records, superuser
):
    url = page_url(page, records)
    posted = user_password_data(client, superuser, records) if "POST" in PAGE_METHODS.get(page, ()) else None
    client.force_login(user_for(persona))
    response = client.get(url)
    refusal = 404 if page in NOT_FOUND_PAGES else 403
    assert response.status_code == (200 if allowed else refusal)
    if posted is not None:
        before = database_snapshot()
        response = client.post(url, posted)
        assert response.status_code == (302 if allowed else refusal)
        assert _fresh(records["auth.user"]).check_password(NEW_PASSWORD) is allowed
        if not allowed:
            assert database_snapshot() == before


# --- completeness: every model, action, autocomplete field and URL has a row ------------------


def _superuser_request():
    request = RequestFactory().get("/")
    request.user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    return request


def test_it_covers_every_model_the_console_lists():
    registered = {model._meta.label_lower for model in ops_site._registry}
    assert registered == set(MODELS)


def test_it_has_an_expected_row_for_every_action():
    request = _superuser_request()
    registered = {
        f"{model._meta.label_lower}:{name}"
        for model, model_admin in ops_site._registry.items()
        for name in model_admin.get_actions(request)
    }
    assert registered == set(_rows(ACTIONS))
    assert registered == set(ACTION_DONE)


def test_it_has_an_expected_row_for_every_autocomplete_field():
    request = _superuser_request()
    offered = {
        f"{page.model._meta.label_lower}.{name}"
        for model_admin in ops_site._registry.values()
        for page in (model_admin, *model_admin.get_inline_instances(request))
        for name in page.get_autocomplete_fields(request)
    }
    assert offered == set(_rows(AUTOCOMPLETE)) - NOT_OFFERED
    assert not offered & NOT_OFFERED


# Where each console URL name is covered: a matrix column, a table, or another test file.
MODEL_URLS = {
    "changelist": "changelist",
    "add": "add",
    "change": "view and change",
    "delete": "delete",
    "history": "history",
    "simple_history": "old and revert",
    "import": "import",
    "export": "export",
    "import_job": "test_path_privileges.py (import jobs)",
    "import_progress": "test_path_privileges.py (import jobs)",
    "import_confirm": "test_path_privileges.py (import jobs)",
    "import_cancel": "test_path_privileges.py (import jobs)",
    "import_report": "test_path_privileges.py (import jobs)",
    "password_change": "EXPECTED_PAGES user-password",
    "acknowledge": "tests/oversight/test_admin.py (acknowledge an alert from its page)",
}
SITE_URLS = {
    "index": "index",
    "app_list": "app:*",
    "live_queues": "live",
    "live_queues_data": "live-data",
    "global_search": "search",
    "slow_pages": "slow-pages",
    "password_change": "password-change",
    "password_change_done": "password-change-done",
    "jsi18n": "jsi18n",
    "view_on_site": "view-on-site",
    "autocomplete": "EXPECTED_AUTOCOMPLETE",
    "login": "public: test_signin.py",
    "logout": "every signed-in user: test_csrf.py",
    "two_factor_setup": "every signed-in user: test_twofactor.py, test_csrf.py",
    "two_factor_verify": "every signed-in user: test_twofactor.py, test_csrf.py",
}


def _url_names(patterns) -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            names |= _url_names(pattern.url_patterns)
        elif pattern.name:
            names.add(pattern.name)
    return names


def test_it_has_an_expected_row_for_every_console_url():
    prefixes = [model.replace(".", "_") + "_" for model in MODELS]
    uncovered = []
    for name in _url_names(ops_site.get_urls()):
        prefix = next((p for p in prefixes if name.startswith(p) and name[len(p) :] in MODEL_URLS), None)
        if prefix is None and name not in SITE_URLS:
            uncovered.append(name)
    assert uncovered == [], "console URLs without an expected row"


# Named URLs outside the console: open to everyone, signed in or not (load balancers send no cookie).
PUBLIC_URLS = {
    "healthz": "everyone: test_health.py",
    "readyz": "everyone: test_health.py",
}


def test_it_has_an_expected_row_for_every_named_url_outside_the_console():
    named = {pattern.name for pattern in site_urls.urlpatterns if isinstance(pattern, URLPattern) and pattern.name}
    assert named == set(PUBLIC_URLS)


@pytest.mark.parametrize("persona", [*PERSONAS, "anonymous"])
def test_it_answers_the_public_urls_to_everyone(client, user_for, persona, redis_client):
    if persona != "anonymous":
        client.force_login(user_for(persona))
    for name in PUBLIC_URLS:
        assert client.get(reverse(name)).status_code == 200, name


# --- anonymous, inactive and non-staff users: sent to the login page, nothing changed ---------


@dataclass
class ConsoleRequest:
    label: str
    method: str
    url: str
    data: dict = field(default_factory=dict)


def every_request(records: dict) -> list[ConsoleRequest]:
    """Return every request the tables cover, for one persona (POSTs with minimal data)."""
    found = []
    for model in MODELS:
        record, cells = records[model], MATRIX["superuser", model]
        urls = {
            "changelist": _url(model, "changelist"), "view": _url(model, "change", record.pk),
            "add": _url(model, "add"), "change": _url(model, "change", record.pk),
            "delete": _url(model, "delete", record.pk), "history": _url(model, "history", record.pk),
        }  # fmt: skip
        if cells["old"] is not None:
            version = record.history.order_by("history_id").first().history_id
            urls["old"] = urls["revert"] = _url(model, "simple_history", record.pk, version)
        for column in ("import", "export"):
            if cells[column] is not None:
                urls[column] = _url(model, column)
        for column, url in urls.items():
            found += [ConsoleRequest(f"{model} {column}", m, url) for m in COLUMN_METHODS[column]]
    for action in _rows(ACTIONS):
        model = action.split(":")[0]
        found.append(ConsoleRequest(action, "POST", _url(model, "changelist"), action_data(action, records[model])))
    for source in _rows(AUTOCOMPLETE):
        params, _ = autocomplete_params(source, records)
        found.append(ConsoleRequest(f"autocomplete {source}", "GET", reverse("ops:autocomplete"), params))
    for page in _rows(PAGES):
        found += [ConsoleRequest(page, m, page_url(page, records)) for m in PAGE_METHODS.get(page, ("GET",))]
    return found


@pytest.fixture
def swept_user(request, lead):
    """Return a signed-in user the console must treat as signed out: none, inactive, or not staff."""
    kind = request.param
    if kind == "inactive":
        lead.is_active = False
    elif kind == "non_staff":
        lead.is_staff = False
    lead.save()
    return None if kind == "anonymous" else lead


@pytest.mark.parametrize("swept_user", SWEPT, indirect=True)
def test_it_sends_users_without_console_access_to_the_login_page_from_every_request(client, swept_user, records):
    if swept_user is not None:
        client.force_login(swept_user)
    catalog = every_request(records)
    assert len(catalog) == REQUESTS_PER_PERSONA
    before = database_snapshot()
    for sent in catalog:
        response = getattr(client, sent.method.lower())(sent.url, sent.data)
        assert response.status_code == 302, sent
        assert response["Location"].startswith(reverse("ops:login")), sent
    assert database_snapshot() == before


# --- around the matrix ----------------------------------------------------------------------


def test_it_shows_the_outsider_a_console_with_no_models_and_no_numbers(client, outsider, records):
    client.force_login(outsider)
    response = client.get(reverse("ops:index"))
    assert response.status_code == 200
    assert response.context["app_list"] == []
    assert "dashboard" not in response.context


def test_it_shows_the_support_agent_a_visit_timeline(client, support_agent, records):
    visit = records["clinical.visit"]
    visit_actions.cancel_visit(visit, actor=SYSTEM, detail="patient hung up")
    client.force_login(support_agent)
    response = client.get(_url("clinical.visit", "change", visit.pk))
    assert response.status_code == 200
    assert "patient hung up" in response.content.decode()


def test_it_lists_no_history_model_so_nobody_deletes_history_in_the_console():
    registered = {model._meta.label_lower for model in ops_site._registry}
    assert not any(label.split(".")[1].startswith("historical") for label in registered)
    for label in ("clinical_historicalvisit", "clinical_historicalpatient", "clinical_historicalprovider"):
        with pytest.raises(NoReverseMatch):
            reverse(f"ops:{label}_delete", args=[1])


@pytest.mark.parametrize("role", ["support_agent", "engineer"])
def test_it_offers_no_bulk_action_to_read_mostly_roles(client, request, role, records):
    """Read-mostly roles change no records in bulk; acknowledging alerts (``EXPECTED_ACTIONS``) is theirs to do."""
    acting = {action.split(":")[0] for (persona, action), allowed in ACTIONS.items() if persona == role and allowed}
    client.force_login(request.getfixturevalue(role))
    for model in (m for (p, m), cells in MATRIX.items() if p == role and cells["changelist"] and m not in acting):
        response = client.get(_url(model, "changelist"))
        assert response.context["action_form"] is None, model


def test_it_gives_import_and_export_permissions_only_to_clinical_ops_and_leads(personas):
    perms = {f"clinical.{verb}_{m}" for m in ("provider", "providerlicense") for verb in ("import", "export")}
    holders = {role for role, user in personas.items() if any(user.has_perm(perm) for perm in perms)}
    assert holders == {roles.CLINICAL_OPS, roles.OPS_LEAD}


@pytest.mark.parametrize(
    ("role", "profiles"),
    [("support_agent", False), ("clinical_ops", False), ("engineer", True), ("lead", False), ("outsider", False)],
)
def test_it_shows_the_debug_toolbar_only_to_engineers(rf, request, role, profiles):
    http_request = rf.get("/ops/")
    http_request.user = request.getfixturevalue(role)
    assert toolbar.show_toolbar(http_request) is profiles


def test_it_counts_the_role_url_method_combinations():
    assert COMBINATIONS == REQUESTS_PER_PERSONA * 9
    assert len(MODELS) * 8 < REQUESTS_PER_PERSONA  # every model: list, view, add×2, change, delete×2, history


def test_it_hides_the_debug_toolbar_from_a_superuser_who_is_not_an_engineer(rf, superuser, engineer):
    http_request = rf.get("/ops/")
    http_request.user = superuser
    assert superuser.has_perm("ops_console.use_debug_toolbar") and not toolbar.show_toolbar(http_request)
    superuser.groups.add(*engineer.groups.all())
    http_request = rf.get("/ops/")
    http_request.user = superuser
    assert toolbar.show_toolbar(http_request)

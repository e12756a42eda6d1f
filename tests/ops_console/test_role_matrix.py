"""The role matrix over HTTP: who may list, view, add, change, delete and read history of what.

The expected matrix below is written out by hand, not derived from ``ops_console/roles.py``,
so that a drift in the roles (or in a ModelAdmin's permission hooks) fails a named cell here.
Every refused write also proves that nothing in the database changed.
"""

from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import NoReverseMatch, reverse

from clinical import actions
from clinical.models import Provider, VisitStatus
from clinical.reference import SPECIALTY_CHOICES
from ops_console import roles, toolbar
from ops_console.admin_site import ops_site
from tests.builders import SYSTEM, make_patient, make_provider, make_visit, new_npi
from tests.conftest import PASSWORD
from tests.ops_console.conftest import database_snapshot, make_access_log, make_case, make_security_event

pytestmark = pytest.mark.usefixtures("fast_passwords")

COLUMNS = ("changelist", "view", "add", "change", "delete", "history")

# y = allowed, - = refused. "view" is the change page GET, "change" its POST; "add" and
# "delete" cover both the GET and the POST.
EXPECTED_MATRIX = """
persona        model                     changelist view add change delete history
support_agent  clinical.provider         y          y    -   -      -      y
support_agent  clinical.providerlicense  y          y    -   -      -      y
support_agent  clinical.patient          y          y    -   -      -      y
support_agent  clinical.visit            y          y    -   -      -      y
support_agent  clinical.visitevent       y          y    -   -      -      y
support_agent  clinical.apiclient        -          -    -   -      -      -
support_agent  support.supportcase       y          y    y   y      -      y
support_agent  support.securityevent     -          -    -   -      -      -
support_agent  support.accesslog         -          -    -   -      -      -
support_agent  auth.user                 -          -    -   -      -      -
support_agent  auth.group                -          -    -   -      -      -
clinical_ops   clinical.provider         y          y    y   y      -      y
clinical_ops   clinical.providerlicense  y          y    y   y      -      y
clinical_ops   clinical.patient          y          y    -   -      -      y
clinical_ops   clinical.visit            y          y    -   -      -      y
clinical_ops   clinical.visitevent       y          y    -   -      -      y
clinical_ops   clinical.apiclient        -          -    -   -      -      -
clinical_ops   support.supportcase       y          y    -   -      -      y
clinical_ops   support.securityevent     -          -    -   -      -      -
clinical_ops   support.accesslog         -          -    -   -      -      -
clinical_ops   auth.user                 -          -    -   -      -      -
clinical_ops   auth.group                -          -    -   -      -      -
engineer       clinical.provider         y          y    -   -      -      y
engineer       clinical.providerlicense  y          y    -   -      -      y
engineer       clinical.patient          y          y    -   -      -      y
engineer       clinical.visit            y          y    -   -      -      y
engineer       clinical.visitevent       y          y    -   -      -      y
engineer       clinical.apiclient        -          -    -   -      -      -
engineer       support.supportcase       y          y    -   -      -      y
engineer       support.securityevent     -          -    -   -      -      -
engineer       support.accesslog         -          -    -   -      -      -
engineer       auth.user                 -          -    -   -      -      -
engineer       auth.group                -          -    -   -      -      -
lead           clinical.provider         y          y    y   y      -      y
lead           clinical.providerlicense  y          y    y   y      -      y
lead           clinical.patient          y          y    y   y      -      y
lead           clinical.visit            y          y    y   y      -      y
lead           clinical.visitevent       y          y    -   -      -      y
lead           clinical.apiclient        y          y    y   y      -      y
lead           support.supportcase       y          y    y   y      y      y
lead           support.securityevent     y          y    -   -      -      y
lead           support.accesslog         y          y    -   -      -      y
lead           auth.user                 y          y    y   y      -      y
lead           auth.group                y          y    -   -      -      y
outsider       clinical.provider         -          -    -   -      -      -
outsider       clinical.providerlicense  -          -    -   -      -      -
outsider       clinical.patient          -          -    -   -      -      -
outsider       clinical.visit            -          -    -   -      -      -
outsider       clinical.visitevent       -          -    -   -      -      -
outsider       clinical.apiclient        -          -    -   -      -      -
outsider       support.supportcase       -          -    -   -      -      -
outsider       support.securityevent     -          -    -   -      -      -
outsider       support.accesslog         -          -    -   -      -      -
outsider       auth.user                 -          -    -   -      -      -
outsider       auth.group                -          -    -   -      -      -
superuser      clinical.provider         y          y    y   y      -      y
superuser      clinical.providerlicense  y          y    y   y      -      y
superuser      clinical.patient          y          y    y   y      -      y
superuser      clinical.visit            y          y    y   y      -      y
superuser      clinical.visitevent       y          y    -   -      -      y
superuser      clinical.apiclient        y          y    y   y      -      y
superuser      support.supportcase       y          y    y   y      y      y
superuser      support.securityevent     y          y    -   -      -      y
superuser      support.accesslog         y          y    -   -      -      y
superuser      auth.user                 y          y    y   y      -      y
superuser      auth.group                y          y    -   -      -      y
"""


def _parse_matrix(table: str) -> dict[tuple[str, str], dict[str, bool]]:
    header, *rows = [line.split() for line in table.strip().splitlines()]
    assert tuple(header[2:]) == COLUMNS
    return {
        (persona, model): dict(zip(COLUMNS, (c == "y" for c in cells), strict=True)) for persona, model, *cells in rows
    }


MATRIX = _parse_matrix(EXPECTED_MATRIX)
MODELS = list(dict.fromkeys(model for _, model in MATRIX))


def _cells(column: str):
    return [
        pytest.param(
            persona, model, allowed[column], id=f"{persona}-{model}-{'allowed' if allowed[column] else 'refused'}"
        )
        for (persona, model), allowed in MATRIX.items()
    ]


# --- the records every cell works on --------------------------------------------------------


@pytest.fixture
def records(db) -> dict:
    """Return one record of every model the console lists, keyed by ``app_label.model_name``."""
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
        "clinical.apiclient": actions.create_api_client(name="matrix-app", scope="patient", actor=SYSTEM)[0],
        "support.supportcase": make_case(patient=patient, visit=visit, notes=1),
        "support.securityevent": make_security_event(),
        "support.accesslog": make_access_log(patient),
        "auth.user": colleague,
        "auth.group": Group.objects.get(name=roles.SUPPORT_AGENT),
    }


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
    return form_data(response, form_id) if response.status_code == 200 else {}


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
        "clinical.visit": {"patient": str(patient.pk), "located_state": "CA", "priority": "0", "reason": "Added"},
        "clinical.visitevent": {"visit": str(visit.pk), "to_status": "cancelled", "detail": "Added"},
        "clinical.apiclient": {"name": "Added", "scope": "patient", "provider": ""},
        "support.supportcase": {
            "subject": "Added", "category": "other", "priority": "1", "status": "open", "patient": str(patient.pk),
        },
        "support.securityevent": {"kind": "admin_probe", "path": "/Added", "method": "GET"},
        "support.accesslog": {"kind": "view", "path": "/Added", "method": "GET"},
        "auth.user": {"username": "Added", "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
        "auth.group": {"name": "Added"},
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
    "support.securityevent": {"path": "/Added"},
    "support.accesslog": {"path": "/Added"},
    "auth.user": {"username": "Added"},
    "auth.group": {"name": "Added"},
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
    "support.securityevent": ("detail", "Changed"),
    "support.accesslog": ("detail", "Changed"),
    "auth.user": ("first_name", "Changed"),
    "auth.group": ("name", "Changed"),
}


def _form_id(model: str) -> str:
    return f"{model.split('.')[1]}_form"


def _errors(response) -> list:
    """Return the form and inline errors of a re-rendered admin form, for failure messages."""
    if response.context is None or "adminform" not in response.context:
        return []
    inlines = response.context.get("inline_admin_formsets", [])
    return [
        response.context["adminform"].form.errors,
        *(i.formset.errors + [i.formset.non_form_errors()] for i in inlines),
    ]


def _assert_refused(response, before: dict) -> None:
    assert response.status_code == 403
    assert database_snapshot() == before


# --- the matrix, one test case per cell ------------------------------------------------------


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


@pytest.mark.parametrize(("persona", "model", "allowed"), _cells("add"))
def test_it_adds_a_record_only_for_roles_that_may_add_it(client, user_for, persona, model, allowed, records, superuser):
    data = _page_form(client, superuser, _url(model, "add"), _form_id(model))
    data.update(_new_record_fields(model, records))
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
    data = _page_form(client, superuser, _url(model, "change", record.pk), _form_id(model))
    field, value = CHANGES[model]
    data.update({field: value, "change_reason": "matrix"})
    user = user_for(persona)
    client.force_login(user)
    before = database_snapshot()
    response = client.post(_url(model, "change", record.pk), data)
    if allowed:
        assert response.status_code == 302, _errors(response)
        record.refresh_from_db()
        assert getattr(record, field) == value
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


def test_it_shows_the_outsider_a_console_with_no_models_and_no_numbers(client, outsider, records):
    client.force_login(outsider)
    response = client.get(reverse("ops:index"))
    assert response.status_code == 200
    assert response.context["app_list"] == []
    assert "dashboard" not in response.context


def test_it_sends_anonymous_visitors_to_the_login_page(client, records):
    response = client.get(_url("clinical.patient", "change", records["clinical.patient"].pk))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("ops:login"))


def test_it_shows_the_support_agent_a_visit_timeline(client, support_agent, records):
    visit = records["clinical.visit"]
    actions.cancel_visit(visit, actor=SYSTEM, detail="patient hung up")
    client.force_login(support_agent)
    response = client.get(_url("clinical.visit", "change", visit.pk))
    assert response.status_code == 200
    assert "patient hung up" in response.content.decode()


def test_it_covers_every_model_the_console_lists():
    registered = {model._meta.label_lower for model in ops_site._registry}
    assert registered == set(MODELS)


def test_it_lists_no_history_model_so_nobody_deletes_history_in_the_console():
    registered = {model._meta.label_lower for model in ops_site._registry}
    assert not any(label.split(".")[1].startswith("historical") for label in registered)
    for label in ("clinical_historicalvisit", "clinical_historicalpatient", "clinical_historicalprovider"):
        with pytest.raises(NoReverseMatch):
            reverse(f"ops:{label}_delete", args=[1])


# --- actions, revert, autocomplete and tools -------------------------------------------------


def _cancel_visits(client, visit):
    return client.post(
        _url("clinical.visit", "changelist"),
        {"action": "cancel_visits", "_selected_action": [visit.pk], "index": "0"},
    )


@pytest.mark.parametrize("role", ["support_agent", "clinical_ops", "engineer"])
def test_it_refuses_the_cancel_action_to_roles_without_cancel_permission(client, request, role, records):
    visit = records["clinical.visit"]
    client.force_login(request.getfixturevalue(role))
    before = database_snapshot()
    response = _cancel_visits(client, visit)
    # The action is not offered to them, so the changelist comes back with no action run.
    assert response.status_code == 200
    assert response.context["action_form"] is None
    assert database_snapshot() == before


def test_it_refuses_the_cancel_action_to_the_outsider(client, outsider, records):
    client.force_login(outsider)
    before = database_snapshot()
    _assert_refused(_cancel_visits(client, records["clinical.visit"]), before)


def test_it_cancels_selected_visits_for_the_lead(client, lead, records):
    visit = records["clinical.visit"]
    client.force_login(lead)
    response = _cancel_visits(client, visit)
    assert response.status_code == 302
    visit.refresh_from_db()
    assert visit.status == VisitStatus.CANCELLED
    assert visit.events.order_by("id").last().staff_user == lead


def _provider_with_two_versions(records) -> tuple[Provider, int]:
    """Rename the provider; return it and the history id of its version before the rename."""
    provider = records["clinical.provider"]
    first_version = provider.history.order_by("history_id").first().history_id
    provider.last_name = "Renamed"
    actions.save_provider(provider, actor=SYSTEM, reason="renamed")
    return provider, first_version


def _revert_url(provider: Provider, version: int) -> str:
    return reverse("ops:clinical_provider_simple_history", args=[provider.pk, version])


@pytest.mark.parametrize("role", ["support_agent", "engineer"])
def test_it_refuses_a_history_revert_to_read_only_roles(client, request, role, records, superuser):
    provider, version = _provider_with_two_versions(records)
    data = _page_form(client, superuser, _revert_url(provider, version), "historicalprovider_form")
    client.force_login(request.getfixturevalue(role))
    assert client.get(_revert_url(provider, version)).status_code == 200
    before = database_snapshot()
    _assert_refused(client.post(_revert_url(provider, version), data), before)
    provider.refresh_from_db()
    assert provider.last_name == "Renamed"


def test_it_reverts_a_provider_to_an_older_version_for_the_lead(client, lead, records, superuser):
    provider, version = _provider_with_two_versions(records)
    data = _page_form(client, superuser, _revert_url(provider, version), "historicalprovider_form")
    client.force_login(lead)
    response = client.post(_revert_url(provider, version), data)
    assert response.status_code == 302, _errors(response)
    provider.refresh_from_db()
    assert provider.last_name == provider.history.get(history_id=version).last_name
    assert provider.history.latest().history_user == lead


def _autocomplete_patients(client, term: str):
    url = reverse("ops:autocomplete")
    return client.get(url, {"app_label": "support", "model_name": "supportcase", "field_name": "patient", "term": term})


def test_it_returns_no_patients_to_the_outsider_from_autocomplete(client, outsider, records):
    client.force_login(outsider)
    response = _autocomplete_patients(client, "Matrix")
    assert response.status_code == 403
    assert b"Matrix" not in response.content
    visit_field = client.get(
        reverse("ops:autocomplete"), {"app_label": "clinical", "model_name": "visit", "field_name": "patient"}
    )
    assert visit_field.status_code == 403


def test_it_returns_patients_from_autocomplete_to_the_support_agent(client, support_agent, records):
    client.force_login(support_agent)
    response = _autocomplete_patients(client, "Matrix")
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(records["clinical.patient"].pk)]


@pytest.mark.parametrize("role", ["support_agent", "engineer"])
def test_it_offers_no_bulk_action_to_read_mostly_roles(client, request, role, records):
    client.force_login(request.getfixturevalue(role))
    for model in (m for (p, m), allowed in MATRIX.items() if p == role and allowed["changelist"]):
        response = client.get(_url(model, "changelist"))
        assert response.context["action_form"] is None, model


IMPORT_EXPORT = [
    f"clinical.{verb}_{model}" for model in ("provider", "providerlicense") for verb in ("import", "export")
]


@pytest.mark.parametrize("role", ["support_agent", "engineer", "outsider"])
def test_it_gives_no_import_or_export_to_roles_without_it(client, request, role, records):
    persona = request.getfixturevalue(role)
    assert not [perm for perm in IMPORT_EXPORT if persona.has_perm(perm)]
    client.force_login(persona)
    for model in ("clinical.provider", "clinical.providerlicense"):
        for view in ("import", "export"):
            try:
                url = _url(model, view)
            except NoReverseMatch:
                continue  # the console has no such page (yet): nothing to refuse
            assert client.get(url).status_code == 403, url


def _license_file(records) -> SimpleUploadedFile:
    provider = records["clinical.provider"]
    rows = f"NPI,State,License number,License type,Status,Issued on\r\n{provider.npi},OR,OR-9,MD,active,2024-01-02\r\n"
    return SimpleUploadedFile("licenses.csv", rows.encode())


EXPORT_FORM = {"format": "0", "resource": "0"}  # CSV, the model's only resource
EXPORTED = ("clinical.provider", "clinical.providerlicense")


@pytest.mark.parametrize("role", ["clinical_ops", "lead", "superuser"])
def test_it_gives_import_and_export_to_roles_with_it(client, request, role, records, redis_client):
    client.force_login(request.getfixturevalue(role))
    for model, view in (("clinical.providerlicense", "import"), *((m, "export") for m in EXPORTED)):
        assert client.get(_url(model, view)).status_code == 200, (model, view)
    for model in EXPORTED:
        response = client.post(_url(model, "export"), EXPORT_FORM)
        assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment"), model
    response = client.post(_url("clinical.providerlicense", "import"), {"file": _license_file(records)})
    assert response.status_code == 302
    assert client.get(response["Location"]).context["preview"]["counts"]["new"] == 1


@pytest.mark.parametrize("role", ["support_agent", "engineer", "outsider"])
def test_it_refuses_import_and_export_posts_to_roles_without_them(client, request, role, records, redis_client):
    client.force_login(request.getfixturevalue(role))
    before = database_snapshot()
    for model in EXPORTED:
        _assert_refused(client.post(_url(model, "export"), EXPORT_FORM), before)
    _assert_refused(client.post(_url("clinical.providerlicense", "import"), {"file": _license_file(records)}), before)
    assert redis_client.keys("ops:import:*") == []


@pytest.mark.parametrize(
    ("role", "profiles"),
    [("support_agent", False), ("clinical_ops", False), ("engineer", True), ("lead", False), ("outsider", False)],
)
def test_it_shows_the_debug_toolbar_only_to_engineers(rf, request, role, profiles):
    http_request = rf.get("/ops/")
    http_request.user = request.getfixturevalue(role)
    assert toolbar.show_toolbar(http_request) is profiles

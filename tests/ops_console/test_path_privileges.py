"""Least privilege on the console's paths beyond the role matrix.

Users holding a single permission (not a role) show that each page checks the permission it
needs, not just "is in some role": the global search's sections, the live pages, autocomplete
(source and target), import and export whatever django-import-export's settings say, history
revert and its rules, and license import jobs, which belong to the user who started them.
"""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from clinical.actions import licenses as license_actions
from clinical.actions import visits as visit_actions
from clinical.models import ImportUpload, LicenseStatus, ProviderLicense, VisitStatus
from support.models import SupportCase
from tests.builders import SYSTEM, make_patient, make_provider, make_visit
from tests.conftest import PASSWORD
from tests.ops_console.conftest import database_snapshot, make_case
from tests.ops_console.test_role_matrix import (
    EXPORT_FORM,
    _license_file,
    _page_form,
    _url,
    revert_setup,
)

pytestmark = pytest.mark.usefixtures("fast_passwords")


@pytest.fixture
def holder(db):
    """Return a function that makes a staff user holding exactly the given permissions."""

    def make(*names: str):
        user = get_user_model().objects.create_user("holder", "holder@ops.example", PASSWORD, is_staff=True)
        for name in names:
            app_label, codename = name.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        return get_user_model().objects.get(pk=user.pk)  # no stale permission cache

    return make


@pytest.fixture
def people(db) -> dict:
    """Return a patient, their visit and a support case about it, each findable by 'Leakcheck'."""
    patient = make_patient(last_name="Leakcheck")
    visit = make_visit(patient=patient, reason="Leakcheck visit")
    case = make_case(patient=patient, visit=visit)
    return {"patient": patient, "visit": visit, "case": case}


# --- global search --------------------------------------------------------------------------

SEARCH_SECTIONS = {
    "support_agent": ["patient", "provider", "visit", "case"],
    "clinical_ops": ["patient", "provider", "visit", "case"],
    "engineer": ["patient", "provider", "visit", "case"],
    "lead": ["patient", "provider", "visit", "case"],
    "superuser": ["patient", "provider", "visit", "case"],
}


def _search(client, terms: str):
    return client.get(reverse("ops:global_search"), {"q": terms})


@pytest.mark.parametrize(("persona", "sections"), SEARCH_SECTIONS.items())
def test_it_searches_the_sections_each_role_may_view(client, request, persona, sections, people):
    client.force_login(request.getfixturevalue(persona))
    response = _search(client, "Leakcheck")
    assert response.status_code == 200
    assert [found.section.document for found in response.context["found"]] == sections


def test_it_refuses_the_global_search_to_the_outsider(client, outsider, people):
    client.force_login(outsider)
    response = _search(client, "Leakcheck")
    assert response.status_code == 403
    assert b"Leakcheck" not in response.content


def test_it_shows_only_patients_to_a_user_who_may_view_only_patients(client, holder, people):
    client.force_login(holder("clinical.view_patient"))
    response = _search(client, "Leakcheck")
    assert [found.section.document for found in response.context["found"]] == ["patient"]
    assert [obj for obj, _ in response.context["found"][0].rows] == [people["patient"]]
    page = response.content.decode()
    assert people["visit"].public_id not in page
    assert people["case"].subject not in page


# --- live pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ops:live_queues", "ops:live_queues_data"])
def test_it_refuses_the_live_pages_without_the_visit_view_permission(client, holder, name, people):
    client.force_login(holder("clinical.view_patient", "clinical.view_provider"))
    assert client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("name", ["ops:live_queues", "ops:live_queues_data"])
def test_it_opens_the_live_pages_with_the_visit_view_permission_alone(client, holder, name, people):
    client.force_login(holder("clinical.view_visit"))
    assert client.get(reverse(name)).status_code == 200


# --- autocomplete: both ends ----------------------------------------------------------------


def _autocomplete(client, model: str, field_name: str, term: str):
    app_label, model_name = model.split(".")
    params = {"app_label": app_label, "model_name": model_name, "field_name": field_name, "term": term}
    return client.get(reverse("ops:autocomplete"), params)


def test_it_refuses_autocomplete_of_a_target_the_user_may_not_view(client, holder, people):
    client.force_login(holder("support.view_supportcase", "support.add_supportcase", "support.change_supportcase"))
    response = _autocomplete(client, "support.supportcase", "patient", "Leakcheck")
    assert response.status_code == 403
    assert b"Leakcheck" not in response.content


def test_it_refuses_autocomplete_from_a_page_the_user_may_not_open(client, holder, people):
    client.force_login(holder("clinical.view_patient"))
    response = _autocomplete(client, "support.supportcase", "patient", "Leakcheck")
    assert response.status_code == 403
    assert b"Leakcheck" not in response.content


def test_it_autocompletes_with_the_view_permission_on_both_ends(client, holder, people):
    client.force_login(holder("clinical.view_patient", "support.view_supportcase"))
    response = _autocomplete(client, "support.supportcase", "patient", "Leakcheck")
    assert [row["id"] for row in response.json()["results"]] == [str(people["patient"].pk)]


def test_it_refuses_autocomplete_of_a_field_no_page_offers_even_to_a_superuser(client, superuser, people):
    client.force_login(superuser)
    assert _autocomplete(client, "support.supportcase", "assignee", "root").status_code == 403
    assert _autocomplete(client, "auth.user", "groups", "Support").status_code == 403
    assert _autocomplete(client, "support.supportcase", "patient", "Leakcheck").status_code == 200


# --- import and export: the permission, whatever django-import-export's settings say -----------


@pytest.fixture
def import_export_codes_unset(settings):
    """Without these settings django-import-export lets every console user import and export."""
    settings.IMPORT_EXPORT_IMPORT_PERMISSION_CODE = None
    settings.IMPORT_EXPORT_EXPORT_PERMISSION_CODE = None


def test_it_configures_import_export_permission_codes_explicitly():
    assert (settings.IMPORT_EXPORT_IMPORT_PERMISSION_CODE, settings.IMPORT_EXPORT_EXPORT_PERMISSION_CODE) == (
        "import",
        "export",
    )


@pytest.mark.usefixtures("import_export_codes_unset")
@pytest.mark.parametrize("persona", ["support_agent", "engineer"])
def test_it_refuses_import_and_export_without_the_permission_even_with_the_codes_unset(
    client, request, persona, db, redis_client
):
    provider = make_provider(states=("CA",))
    client.force_login(request.getfixturevalue(persona))
    before = database_snapshot()
    for model in ("clinical.provider", "clinical.providerlicense"):
        assert client.get(_url(model, "export")).status_code == 403
        assert client.post(_url(model, "export"), EXPORT_FORM).status_code == 403
        assert client.get(_url(model, "changelist")).context["has_export_permission"] is False
    upload = client.post(
        _url("clinical.providerlicense", "import"), {"file": _license_file({"clinical.provider": provider})}
    )
    assert upload.status_code == 403
    assert database_snapshot() == before
    assert redis_client.keys("ops:import:*") == []


@pytest.mark.usefixtures("import_export_codes_unset")
def test_it_still_exports_for_clinical_ops_with_the_codes_unset(client, clinical_ops):
    make_provider(states=("CA",))
    client.force_login(clinical_ops)
    response = client.post(_url("clinical.providerlicense", "export"), EXPORT_FORM)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")


# --- revert from history: a change like any other ---------------------------------------------


def test_it_keeps_history_records_uneditable_from_the_console():
    assert not getattr(settings, "SIMPLE_HISTORY_EDIT", False)


def test_it_refuses_to_revert_a_visit_that_has_ended_without_a_server_error(client, lead, superuser, db):
    visit = make_visit()
    records = {"clinical.visit": visit}
    url, data = revert_setup(client, superuser, "clinical.visit", records)
    visit_actions.cancel_visit(visit, actor=SYSTEM, detail="patient left")
    client.force_login(lead)
    before = database_snapshot()
    response = client.post(url, data)
    assert response.status_code == 302
    assert database_snapshot() == before
    assert "Not reverted" in str(list(client.get(response["Location"]).context["messages"])[0])
    visit.refresh_from_db()
    assert (visit.status, visit.reason) == (VisitStatus.CANCELLED, "Changed")


def _suspended_license():
    """Return a license, suspended after it was issued, and the history id of its active version."""
    license = make_provider(states=("CA",)).licenses.get()
    active = license.history.latest().history_id
    license_actions.change_license_status(license, LicenseStatus.SUSPENDED, actor=SYSTEM, reason="board order")
    return license, active


def test_it_asks_a_reason_to_revert_a_license_to_another_status(client, lead, superuser):
    license, active = _suspended_license()
    url = _url("clinical.providerlicense", "simple_history", license.pk, active)
    data = _page_form(client, superuser, url, "historicalproviderlicense_form")
    client.force_login(lead)
    before = database_snapshot()
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert "change_reason" in refused.context["adminform"].form.errors
    assert database_snapshot() == before
    response = client.post(url, {**data, "change_reason": "board lifted the suspension"})
    assert response.status_code == 302
    license.refresh_from_db()
    assert license.status == LicenseStatus.ACTIVE
    latest = license.history.latest()
    assert (latest.history_user, latest.history_change_reason) == (lead, "board lifted the suspension")


def test_it_never_brings_a_deleted_case_back_from_its_history(client, lead, superuser, db):
    case = make_case(patient=make_patient())
    records = {"support.supportcase": case}
    url, data = revert_setup(client, superuser, "support.supportcase", records)
    client.force_login(lead)
    assert client.post(_url("support.supportcase", "delete", case.pk), {"post": "yes"}).status_code == 302
    before = database_snapshot()
    response = client.post(url, data)
    assert response.status_code == 403
    assert database_snapshot() == before
    assert not SupportCase.objects.filter(pk=case.pk).exists()


# --- license import jobs belong to whoever started them ---------------------------------------

# The pages of a job clinical ops started: owner y, another importer 404 (not found: a job is
# no one else's business), a role without import 403.
JOB_PAGES = {
    "import_job": "GET",
    "import_progress": "GET",
    "import_report": "GET",
    "import_confirm": "POST",
    "import_cancel": "POST",
}
JOB_ACCESS = {
    "clinical_ops": 200,
    "lead": 404,
    "superuser": 404,
    "support_agent": 403,
    "engineer": 403,
    "outsider": 403,
}


@pytest.fixture
def clinops_job(client, clinical_ops, redis_client) -> str:
    """Return the token of a checked license file clinical ops uploaded, waiting for confirmation."""
    provider = make_provider(states=("CA",))
    client.force_login(clinical_ops)
    response = client.post(
        _url("clinical.providerlicense", "import"), {"file": _license_file({"clinical.provider": provider})}
    )
    token = response["Location"].rstrip("/").rsplit("/", 1)[1]
    assert client.get(response["Location"]).context["preview"]["counts"]["new"] == 1
    client.logout()
    return token


@pytest.mark.parametrize(("persona", "status"), JOB_ACCESS.items())
def test_it_shows_and_runs_an_import_job_only_for_the_user_who_started_it(
    client, request, persona, status, clinops_job, redis_client
):
    client.force_login(request.getfixturevalue(persona))
    before = database_snapshot()
    for page, method in JOB_PAGES.items():
        if persona == "clinical_ops" and page in ("import_confirm", "import_cancel"):
            continue  # the owner's own confirm and cancel: tested in tests/clinical/test_import_export.py
        response = getattr(client, method.lower())(_url("clinical.providerlicense", page, clinops_job))
        assert response.status_code == status, page
    assert database_snapshot() == before
    assert ImportUpload.objects.get(token=clinops_job).status == "previewed"
    assert not ProviderLicense.objects.filter(license_number="OR-9").exists()


# --- accounts: a lead manages roles, never superusers or raw permissions -----------------------


def test_it_ignores_superuser_and_permission_fields_a_lead_posts(client, lead, superuser, db):
    colleague = get_user_model().objects.create_user("colleague", "c@ops.example", PASSWORD, is_staff=True)
    url = reverse("ops:auth_user_change", args=[colleague.pk])
    data = _page_form(client, superuser, url, "user_form")
    data.pop("is_superuser", None)
    data.pop("user_permissions", None)
    any_permission = Permission.objects.get(codename="delete_visit")
    client.force_login(lead)
    response = client.post(
        url, {**data, "first_name": "Changed", "is_superuser": "on", "user_permissions": [any_permission.pk]}
    )
    assert response.status_code == 302
    colleague.refresh_from_db()
    assert colleague.first_name == "Changed"
    assert (colleague.is_superuser, list(colleague.user_permissions.all())) == (False, [])


def test_it_refuses_a_lead_changing_a_superusers_account_or_password(client, lead, superuser):
    client.force_login(lead)
    before = database_snapshot()
    change = client.post(reverse("ops:auth_user_change", args=[superuser.pk]), {"username": "taken", "is_active": ""})
    password = client.post(
        reverse("ops:auth_user_password_change", args=[superuser.pk]),
        {"password1": "Another-pass-2026!", "password2": "Another-pass-2026!", "usable_password": "true"},
    )
    assert (change.status_code, password.status_code) == (403, 403)
    assert database_snapshot() == before


# --- debug toolbar: the Engineer role only, when it is on ----------------------------------------


@pytest.mark.skipif(not settings.OPS_DEBUG_TOOLBAR, reason="OPS_DEBUG_TOOLBAR is off: no toolbar URLs are mounted")
@pytest.mark.parametrize(
    ("persona", "status"),
    [("engineer", 200), ("support_agent", 404), ("clinical_ops", 404), ("lead", 404), ("outsider", 404)],
)
def test_it_answers_the_debug_toolbar_only_to_engineers(client, request, persona, status):
    client.force_login(request.getfixturevalue(persona))
    response = client.get("/__debug__/render_panel/", {"store_id": "none", "panel_id": "SQLPanel"})
    assert response.status_code == status

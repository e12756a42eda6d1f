"""The outbox, for real: every write path records its rows in its own transaction, and only then."""

import pytest
from django.db import transaction
from django.urls import reverse

from clinical.actions import licenses as license_actions
from clinical.actions import offers as offer_actions
from clinical.actions import patients as patient_actions
from clinical.models import Patient
from core.models import OutboxEntry
from support import actions as support_actions
from tests.builders import SYSTEM, make_license, make_patient, make_provider, make_visit
from tests.conftest import PASSWORD

pytestmark = pytest.mark.usefixtures("elasticsearch_configured")


def entries() -> list[tuple[str, int]]:
    """Return the waiting entries as ``(label, id)``, oldest first."""
    return list(OutboxEntry.objects.order_by("id").values_list("label", "object_id"))


def test_it_records_nothing_without_elasticsearch(db, settings):
    settings.ELASTICSEARCH_URL = None
    make_visit()
    assert entries() == []


def test_it_records_a_new_patient_with_the_records_that_copy_its_name(db):
    patient = make_patient()
    visit = make_visit(patient=patient)
    case = support_actions.open_case(subject="Call back", patient=patient, visit=visit, actor=SYSTEM)
    OutboxEntry.objects.all().delete()
    patient.last_name = "Renamed"
    patient_actions.save_patient(patient, actor=SYSTEM)
    assert set(entries()) == {
        ("clinical.patient", patient.pk), ("clinical.visit", visit.pk), ("support.supportcase", case.pk)
    }  # fmt: skip


def test_it_records_every_visit_transition_and_the_providers_it_touches(db):
    provider = make_provider(states=("CA",), available=True)
    visit = make_visit()
    OutboxEntry.objects.all().delete()
    offer_actions.offer_visit(visit, provider, actor=SYSTEM)  # the router's set-based path
    assert set(entries()) == {("clinical.visit", visit.pk), ("clinical.provider", provider.pk)}
    OutboxEntry.objects.all().delete()
    offer_actions.accept_visit(visit, provider=provider, actor=SYSTEM)
    assert set(entries()) == {("clinical.visit", visit.pk), ("clinical.provider", provider.pk)}


def test_it_records_the_provider_of_a_license_on_every_license_write(db):
    provider = make_provider(states=())
    OutboxEntry.objects.all().delete()
    license = make_license(provider, "NV")
    license_actions.change_license_status(license, "suspended", actor=SYSTEM, reason="board order")
    license_actions.verify_license(license, actor=SYSTEM)
    assert entries() == [("clinical.provider", provider.pk)] * 3


def test_it_records_both_providers_when_a_license_moves(db):
    first, second = make_provider(states=()), make_provider(states=())
    license = make_license(first, "NV")
    OutboxEntry.objects.all().delete()
    license.provider = second
    license_actions.save_license(license, actor=SYSTEM, reason="entered on the wrong provider")
    assert set(entries()) == {("clinical.provider", first.pk), ("clinical.provider", second.pk)}


def test_it_records_a_support_case_saved_through_the_action(db):
    case = support_actions.open_case(subject="Billing", patient=make_patient(), actor=SYSTEM)
    assert ("support.supportcase", case.pk) in entries()


@pytest.mark.django_db(transaction=True)
def test_it_records_nothing_when_the_transaction_rolls_back():
    with pytest.raises(RuntimeError), transaction.atomic():
        make_visit()
        assert entries()  # written with the change...
        raise RuntimeError("the request failed")
    assert entries() == []  # ...and gone with it
    assert not Patient.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_commits_the_entries_with_the_change_even_though_elasticsearch_is_unreachable():
    visit = make_visit()  # ELASTICSEARCH_URL points at a closed port: the write does not notice
    assert ("clinical.visit", visit.pk) in entries()


def test_it_records_a_case_deleted_in_the_console(client, lead):
    lead.set_password(PASSWORD)
    lead.save()
    case = support_actions.open_case(subject="Duplicate", patient=make_patient(), actor=SYSTEM)
    OutboxEntry.objects.all().delete()
    client.force_login(lead)
    url = reverse("ops:support_supportcase_delete", args=[case.pk])
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert entries() == [("support.supportcase", case.pk)]


def test_it_records_cases_deleted_in_bulk_from_the_changelist(client, lead):
    cases = [support_actions.open_case(subject=f"Spam {n}", patient=make_patient(), actor=SYSTEM) for n in range(3)]
    OutboxEntry.objects.all().delete()
    client.force_login(lead)
    response = client.post(
        reverse("ops:support_supportcase_changelist"),
        {"action": "delete_selected", "_selected_action": [case.pk for case in cases], "post": "yes"},
    )
    assert response.status_code == 302
    assert sorted(entries()) == sorted(("support.supportcase", case.pk) for case in cases)

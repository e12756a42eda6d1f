"""The PHI access log: one row per view, list, search, export and API read; append-only; pruned by age."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clinical import actions
from ops_console.audit import Actor
from support.actions import access_log_cutoff
from support.models import AccessLog
from tests.builders import make_patient, make_provider, make_visit


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _url(model: str, view: str, *args) -> str:
    return reverse(f"ops:{model.replace('.', '_')}_{view}", args=args)


def test_it_records_one_row_with_every_id_when_patients_are_listed(client, support_agent):
    patients = [make_patient(last_name=f"Listed{n}") for n in range(3)]
    client.force_login(support_agent)
    response = client.get(_url("clinical.patient", "changelist"), HTTP_USER_AGENT="Firefox", REMOTE_ADDR="10.0.0.9")
    assert response.status_code == 200
    row = AccessLog.objects.get()
    assert (row.kind, row.user, row.model, row.ip, row.user_agent) == (
        "list", support_agent, "clinical.patient", "10.0.0.9", "Firefox"
    )  # fmt: skip
    assert sorted(row.object_ids) == sorted(str(p.pk) for p in patients)
    assert sorted(row.patient_ids) == sorted(p.pk for p in patients)
    assert row.path == _url("clinical.patient", "changelist")


def test_it_records_the_patients_of_the_visits_listed(client, support_agent):
    visits = [make_visit(), make_visit()]
    client.force_login(support_agent)
    client.get(_url("clinical.visit", "changelist"))
    row = AccessLog.objects.get()
    assert (row.kind, row.model) == ("list", "clinical.visit")
    assert sorted(row.object_ids) == sorted(str(v.pk) for v in visits)
    assert sorted(row.patient_ids) == sorted(v.patient_id for v in visits)


@pytest.mark.parametrize("rows", [3, 30])
def test_it_writes_one_insert_whatever_the_number_of_rows_listed(client, support_agent, rows):
    for n in range(rows):
        make_patient(last_name=f"Bulk{n}")
    client.force_login(support_agent)
    with CaptureQueriesContext(connection) as queries:
        client.get(_url("clinical.patient", "changelist"))
    touching = [q["sql"] for q in queries if "support_accesslog" in q["sql"]]
    assert len(touching) == 1 and touching[0].startswith("INSERT")
    assert len(AccessLog.objects.get().object_ids) == rows


def test_it_records_one_row_per_view_of_a_patient_or_visit_page(client, support_agent):
    visit = make_visit()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "change", visit.patient_id))
    client.get(_url("clinical.visit", "change", visit.pk))
    rows = list(AccessLog.objects.order_by("id").values_list("kind", "model", "object_ids", "patient_ids"))
    assert rows == [
        ("view", "clinical.patient", [str(visit.patient_id)], [visit.patient_id]),
        ("view", "clinical.visit", [str(visit.pk)], [visit.patient_id]),
    ]


def test_it_records_each_history_page_of_a_visit_as_a_view(client, support_agent):
    visit = make_visit()
    client.force_login(support_agent)
    assert client.get(_url("clinical.visit", "history", visit.pk)).status_code == 200
    old = reverse("ops:clinical_visit_simple_history", args=[visit.pk, visit.history.earliest().history_id])
    assert client.get(old).status_code == 200
    rows = list(AccessLog.objects.values_list("kind", "source", "object_ids", "patient_ids"))
    assert rows == [("view", "history", [str(visit.pk)], [visit.patient_id])] * 2


def test_it_records_a_changelist_search_once_with_the_rows_it_showed(client, support_agent):
    patient = make_patient(last_name="Okonkwo")
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "changelist"), {"q": "okonkwo"})
    row = AccessLog.objects.get()
    assert (row.kind, row.terms, row.object_ids) == ("search", "okonkwo", [str(patient.pk)])
    assert row.patient_ids == [patient.pk]


def test_it_records_nothing_for_pages_that_show_no_phi(client, support_agent):
    make_provider(states=("CA",))
    client.force_login(support_agent)
    client.get(_url("clinical.provider", "changelist"))
    assert not AccessLog.objects.exists()


def test_it_records_nothing_when_the_page_is_refused(client, outsider):
    patient = make_patient()
    client.force_login(outsider)
    assert client.get(_url("clinical.patient", "change", patient.pk)).status_code == 403
    assert client.get(_url("clinical.patient", "changelist")).status_code == 403
    assert not AccessLog.objects.exists()


def test_it_records_an_api_read_of_a_visit_with_the_client(client, db):
    api_client, token = actions.create_api_client(name="patient-app", scope="patient", actor=Actor.system())
    visit = make_visit()
    response = client.get(f"/api/v1/visits/{visit.public_id}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    row = AccessLog.objects.get()
    assert (row.kind, row.api_client, row.user, row.object_ids) == ("api_read", api_client, None, [str(visit.pk)])
    assert row.patient_ids == [visit.patient_id]


def test_it_shows_leads_who_read_a_patient(client, support_agent, lead):
    patient = make_patient()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "changelist"))
    client.force_login(lead)
    html = client.get(_url("clinical.patient", "change", patient.pk)).content.decode()
    readers = html[html.index('id="phi-readers"') :]
    assert "support" in readers and "lead" in readers


def test_it_hides_who_read_a_patient_from_other_roles(client, support_agent):
    patient = make_patient()
    client.force_login(support_agent)
    assert 'id="phi-readers"' not in client.get(_url("clinical.patient", "change", patient.pk)).content.decode()


def test_it_filters_the_access_log_by_patient_user_and_date(client, support_agent, lead):
    seen, other = make_patient(), make_patient()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "change", seen.pk))
    client.get(_url("clinical.patient", "change", other.pk))
    client.force_login(lead)

    def listed(**params):
        response = client.get(_url("support.accesslog", "changelist"), params)
        assert response.status_code == 200
        return [row.object_ids for row in response.context["cl"].result_list]

    assert listed(patient=seen.pk) == [[str(seen.pk)]]
    assert listed(patient="not-a-number") == []
    assert len(listed(user=support_agent.pk)) == 2
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)  # as the date filter's links
    assert len(listed(at__gte=str(today), at__lt=str(today + dt.timedelta(days=1)))) == 2
    assert listed(at__gte="2001-01-01 00:00:00+00:00", at__lt="2001-01-02 00:00:00+00:00") == []


def test_it_refuses_every_write_to_the_access_log_even_to_a_superuser(client, support_agent, django_user_model):
    patient = make_patient()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "change", patient.pk))
    row = AccessLog.objects.get()
    client.force_login(django_user_model.objects.create_superuser("root", "root@ops.example", "x"))
    assert client.get(_url("support.accesslog", "add")).status_code == 403
    assert client.post(_url("support.accesslog", "delete", row.pk), {"post": "yes"}).status_code == 403
    assert client.post(_url("support.accesslog", "change", row.pk), {"detail": "x"}).status_code == 403
    assert AccessLog.objects.filter(pk=row.pk, detail="").exists()


# --- pruning ---------------------------------------------------------------------------------


def _row_aged(**age) -> AccessLog:
    return AccessLog.objects.create(kind="view", model="clinical.patient", at=timezone.now() - dt.timedelta(**age))


def test_it_prunes_only_rows_older_than_the_duration(db):
    old, kept = _row_aged(days=365 * 6 + 10), _row_aged(days=365 * 6 - 10)
    out = StringIO()
    call_command("prune_access_log", "--older-than", "6y", stdout=out)
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not AccessLog.objects.filter(pk=old.pk).exists()
    assert "Deleted 1 access log rows." in out.getvalue()


def test_it_reads_durations_in_years_and_days():
    now = dt.datetime(2028, 2, 29, 12, tzinfo=dt.UTC)
    assert access_log_cutoff("6y", now=now) == dt.datetime(2022, 2, 28, 12, tzinfo=dt.UTC)
    assert access_log_cutoff("90d", now=now) == now - dt.timedelta(days=90)


@pytest.mark.parametrize("duration", ["6", "0y", "six years", "-1d", "6m"])
def test_it_refuses_a_duration_it_cannot_read(db, duration):
    with pytest.raises(CommandError, match="6y or 90d"):
        call_command("prune_access_log", f"--older-than={duration}", stdout=StringIO())

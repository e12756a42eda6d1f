"""What the clinical console pages show: provider availability and visits today, waiting filters, a patient's visits."""

import csv
import datetime as dt
import io

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from clinical.models import LicenseStatus, Visit
from core.audit import Actor
from tests.builders import SYSTEM, make_license, make_past_visit, make_provider, make_visit


def test_it_lists_each_providers_availability_and_visits_today(client, support_agent):
    busy = make_provider(states=("CA",), available=True, last_name="Busyton")
    idle = make_provider(states=("CA",), last_name="Idleton")
    for _ in range(2):
        visit = offer_actions.offer_visit(make_visit(), busy, actor=Actor.router())
        visit_actions.cancel_visit(visit, actor=Actor.patient_app())
    yesterday = offer_actions.offer_visit(make_visit(), busy, actor=Actor.router())
    Visit.objects.filter(pk=yesterday.pk).update(requested_at=timezone.now() - dt.timedelta(days=2))
    client.force_login(support_agent)
    response = client.get(reverse("ops:clinical_provider_changelist") + "?o=6")
    rows = {p.pk: p for p in response.context["cl"].result_list}
    assert (rows[busy.pk].visits_today, rows[idle.pk].visits_today) == (2, 0)
    html = response.content.decode()
    assert "Reserved (offer out)" in html and "Offline" in html


def test_it_filters_visits_waiting_longer_than_n_minutes(client, support_agent):
    old = make_visit()
    Visit.objects.filter(pk=old.pk).update(requested_at=timezone.now() - dt.timedelta(minutes=20))
    make_visit()
    client.force_login(support_agent)
    response = client.get(reverse("ops:clinical_visit_changelist") + "?waiting_over=15")
    assert [v.pk for v in response.context["cl"].result_list] == [old.pk]


def test_it_shows_a_providers_licenses_each_a_link_to_its_own_form(client, clinical_ops, support_agent):
    provider = make_provider(states=("CA", "NV"))
    licenses = list(provider.licenses.order_by("state"))
    page = reverse("ops:clinical_provider_change", args=[provider.pk])
    client.force_login(clinical_ops)

    html = client.get(page).content.decode()

    panel = html[html.index('id="provider-licenses"') :]
    for license in licenses:
        assert reverse("ops:clinical_providerlicense_change", args=[license.pk]) in panel
        assert license.license_number in panel
    assert f"{reverse('ops:clinical_providerlicense_add')}?provider={provider.pk}" in panel
    # No license field on the provider's form: a status change goes through the license form and its reason.
    assert 'name="licenses-' not in html
    client.force_login(support_agent)
    assert "Add a license for this provider" not in client.get(page).content.decode()  # cannot add one


def test_it_shows_a_patients_latest_visits_in_the_consoles_time_zone(client, support_agent, settings):
    settings.TIME_ZONE = "America/New_York"
    visit = make_visit()
    requested = dt.datetime(2026, 7, 1, 2, 30, tzinfo=dt.UTC)  # 22:30 the day before in New York (EDT)
    Visit.objects.filter(pk=visit.pk).update(requested_at=requested)
    client.force_login(support_agent)
    html = client.get(reverse("ops:clinical_patient_change", args=[visit.patient_id])).content.decode()
    assert "2026-06-30 22:30" in html and "2026-07-01 02:30" not in html


def test_it_lists_a_patients_ten_latest_visits_newest_first_with_their_providers(client, support_agent):
    provider = make_provider(states=("CA",), available=True, first_name="Grace", last_name="Hopperton")
    patient = make_visit().patient
    visit_actions.cancel_visit(Visit.objects.get(patient=patient), actor=Actor.system("tests"))
    for _ in range(11):
        make_past_visit(patient=patient)
    offered = offer_actions.offer_visit(make_visit(patient=patient), provider, actor=Actor.router())
    client.force_login(support_agent)
    html = client.get(reverse("ops:clinical_patient_change", args=[patient.pk])).content.decode()
    panel = html[
        html.index('<table class="ops-inline-table">') : html.index("</table>", html.index("ops-inline-table"))
    ]
    latest = list(Visit.objects.filter(patient=patient).order_by("-requested_at", "-id")[:10])
    shown = [public_id for public_id in (str(v.public_id) for v in latest) if public_id in panel]
    assert shown == [str(v.public_id) for v in latest] and panel.count("<tr>") == 11  # a header row and ten
    assert [panel.index(public_id) for public_id in shown] == sorted(panel.index(public_id) for public_id in shown)
    assert str(offered.public_id) in panel and "Grace Hopperton" in panel and "Offered" in panel


def test_it_shows_the_states_a_provider_can_take_patients_from_out_of_its_license_panels_one_query(
    client, clinical_ops
):
    provider = make_provider(states=("NY", "CA"), last_name="Panelton")
    make_license(provider, "TX", expires_in_days=-1)  # expired yesterday in Texas
    make_license(provider, "AZ", status=LicenseStatus.SUSPENDED)
    client.force_login(clinical_ops)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("ops:clinical_provider_change", args=[provider.pk]))

    html = response.content.decode()
    states = html[html.index("Can take patients from") :]
    assert "CA, NY</div>" in states[: states.index('id="provider-licenses"')]
    panel = html[html.index('id="provider-licenses"') :]
    assert [panel.index(f"<td>{state}</td>") for state in ("AZ", "CA", "NY", "TX")] == sorted(
        panel.index(f"<td>{state}</td>") for state in ("AZ", "CA", "NY", "TX")
    )  # every license in the panel, by state; only the two that count now among the states
    assert sum("clinical_providerlicense" in query["sql"] for query in queries.captured_queries) == 1


def test_it_reads_a_providers_own_pages_without_the_lists_count_and_prefetch(client, lead):
    provider = make_provider(states=("NY", "CA"), last_name="Pageton")
    client.force_login(lead)

    form = client.get(reverse("ops:clinical_provider_change", args=[provider.pk]))
    history = client.get(reverse("ops:clinical_provider_history", args=[provider.pk]))
    listed = client.get(reverse("ops:clinical_provider_changelist"))

    assert form.status_code == history.status_code == listed.status_code == 200
    assert not hasattr(form.context["original"], "visits_today")
    assert not hasattr(form.context["original"], "valid_licenses")
    assert "CA, NY" in form.content.decode()  # the states it can take patients from, read by the form itself
    assert not hasattr(history.context["object"], "visits_today")
    row = next(p for p in listed.context["cl"].result_list if p.pk == provider.pk)
    assert row.visits_today == 0 and [lic.state for lic in row.valid_licenses] == ["CA", "NY"]


def test_it_exports_providers_sorted_by_visits_today_as_the_list_is(client, lead):
    busy = make_provider(available=True, last_name="Busyexport")
    idle = make_provider(last_name="Idleexport")
    visit_actions.cancel_visit(offer_actions.offer_visit(make_visit(), busy, actor=Actor.router()), actor=SYSTEM)
    client.force_login(lead)
    url = reverse("ops:clinical_provider_export") + "?o=-6"  # the list sorted by visits today, most first

    answer = client.post(url, {"format": "0", "resource": "0"})

    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert [row["NPI"] for row in rows] == [busy.npi, idle.npi]

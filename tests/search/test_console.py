"""Search in the console: changelist boxes through the backend, the global search page, the search log."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinical.actions import offers as offer_actions
from clinical.actions import patients as patient_actions
from core.models import AccessLog
from support.actions import open_case
from tests.builders import SYSTEM, make_patient, make_provider, make_visit

pytestmark = pytest.mark.usefixtures("fast_passwords")


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def garcias(db):
    """Two Maria Garcias (CA, NY), a Mario Garcias, and an unrelated patient."""
    return {
        "ca": make_patient(first_name="Maria", last_name="Garcia", state="CA", phone="+14155550101"),
        "ny": make_patient(first_name="Maria", last_name="Garcia", state="NY"),
        "mario": make_patient(first_name="Mario", last_name="Garcias", state="CA"),
        "other": make_patient(first_name="John", last_name="Okafor", state="CA"),
    }


def listed(response) -> list[int]:
    """Return the primary keys of the changelist rows, in order."""
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def changelist(model: str) -> str:
    return reverse(f"ops:{model.replace('.', '_')}_changelist")


def test_it_lists_search_results_by_relevance(client, support_agent, garcias):
    client.force_login(support_agent)
    response = client.get(changelist("clinical.patient"), {"q": "maria garcai"})
    assert response.status_code == 200
    found = listed(response)
    assert set(found[:2]) == {garcias["ca"].pk, garcias["ny"].pk}
    assert garcias["other"].pk not in found


def test_it_keeps_list_filters_when_searching(client, support_agent, garcias):
    client.force_login(support_agent)
    response = client.get(changelist("clinical.patient"), {"q": "maria garcia", "state__exact": "NY"})
    assert listed(response) == [garcias["ny"].pk]


def test_it_sorts_by_a_column_when_asked_and_still_searches(client, support_agent, garcias):
    client.force_login(support_agent)
    response = client.get(changelist("clinical.patient"), {"q": "garcia", "o": "-0"})  # MRN (first column), descending
    expected = sorted([garcias["ca"], garcias["ny"], garcias["mario"]], key=lambda p: p.mrn, reverse=True)
    assert listed(response) == [p.pk for p in expected]


def test_it_lists_each_visit_once_when_both_its_patient_and_provider_match(client, support_agent):
    patient = make_patient(first_name="Ada", last_name="Garcia")
    provider = make_provider(first_name="Ada", last_name="Garcia", states=("CA",), available=True)
    visit = make_visit(patient=patient)
    offer_actions.offer_visit(visit, provider, actor=SYSTEM)
    client.force_login(support_agent)
    assert listed(client.get(changelist("clinical.visit"), {"q": "ada garcia"})) == [visit.pk]


def test_it_finds_a_visit_by_the_phone_number_of_its_patient(client, support_agent, garcias):
    visit = make_visit(patient=garcias["ca"])
    make_visit(patient=garcias["ny"])
    client.force_login(support_agent)
    assert listed(client.get(changelist("clinical.visit"), {"q": "(415) 555-0101"})) == [visit.pk]


def test_it_records_each_changelist_search_with_the_rows_it_showed(client, support_agent, garcias):
    client.force_login(support_agent)
    client.get(changelist("clinical.patient"), {"q": "okafor"})
    record = AccessLog.objects.get()
    assert (record.user, record.kind, record.terms) == (support_agent, "search", "okafor")
    assert record.model == "clinical.patient"
    assert (record.source, record.object_ids) == ("list", [str(garcias["other"].pk)])


def test_it_searches_autocomplete_through_the_backend(client, support_agent, garcias):
    client.force_login(support_agent)
    params = {"term": "garcai", "app_label": "support", "model_name": "supportcase", "field_name": "patient"}
    response = client.get(reverse("ops:autocomplete"), params)
    ids = [int(row["id"]) for row in response.json()["results"]]
    assert set(ids[:2]) == {garcias["ca"].pk, garcias["ny"].pk}
    record = AccessLog.objects.get()
    assert (record.kind, record.model, record.source) == ("search", "clinical.patient", "autocomplete")


# --- the global search page -------------------------------------------------------------------


def search_page(client, terms: str):
    return client.get(reverse("ops:global_search"), {"q": terms})


def test_it_finds_every_type_of_record_from_one_box(client, support_agent, garcias):
    visit = make_visit(patient=garcias["ca"])
    case = open_case(subject="Garcia asked for a refund", patient=garcias["ca"], visit=visit, actor=SYSTEM)
    provider = make_provider(first_name="Luis", last_name="Garcia", states=())
    client.force_login(support_agent)
    response = search_page(client, "garcia")
    assert response.status_code == 200
    sections = {found.section.document: [obj for obj, _ in found.rows] for found in response.context["found"]}
    assert set(sections["patient"]) == {garcias["ca"], garcias["ny"], garcias["mario"]}
    assert sections["provider"] == [provider]
    assert sections["visit"] == [visit]
    assert sections["case"] == [case]
    html = response.content.decode()
    assert html.index("<h2>Patients</h2>") < html.index("<h2>Providers</h2>") < html.index("<h2>Visits</h2>")


def test_it_shows_which_field_matched(client, support_agent, garcias):
    visit = make_visit(patient=garcias["ca"])
    client.force_login(support_agent)
    rows = {found.section.document: found.rows for found in search_page(client, "415-555-0101").context["found"]}
    assert rows["patient"] == [(garcias["ca"], ["phone"])]
    assert rows["visit"] == [(visit, ["patient phone"])]
    by_id = search_page(client, visit.public_id.lower()).context["found"]
    assert [(f.section.document, f.rows) for f in by_id if f.rows] == [("visit", [(visit, ["visit id"])])]
    page = search_page(client, "Maria Garcia 3/2/85")
    assert "date of birth" in page.content.decode()
    assert page.context["read_as"] == ["name", "date of birth"]


def test_it_shows_each_role_only_the_types_it_may_view(client, clinical_ops, garcias):
    client.force_login(clinical_ops)
    documents = [found.section.document for found in search_page(client, "garcia").context["found"]]
    assert documents == ["patient", "provider", "visit", "case"]


def test_it_refuses_the_page_to_staff_without_a_clinical_role(client, outsider):
    client.force_login(outsider)
    assert search_page(client, "garcia").status_code == 403


def test_it_records_the_search_and_everything_it_showed_in_one_row(client, support_agent, garcias):
    visit = make_visit(patient=garcias["ca"])
    client.force_login(support_agent)
    search_page(client, "(415) 555-0101")
    record = AccessLog.objects.get()
    assert (record.kind, record.source, record.patient_ids) == ("search", "global search", [garcias["ca"].pk])
    assert record.object_ids == [f"clinical.patient:{garcias['ca'].pk}", f"clinical.visit:{visit.pk}"]


def test_it_puts_a_search_box_on_every_console_page(client, support_agent):
    client.force_login(support_agent)
    html = client.get(reverse("ops:index")).content.decode()
    assert f'action="{reverse("ops:global_search")}"' in html


def _grow(count: int) -> None:
    for n in range(count):
        patient = make_patient(first_name="Maria", last_name="Garcia")
        visit = make_visit(patient=patient)
        open_case(subject=f"Garcia call back {n}", patient=patient, visit=visit, actor=SYSTEM)
        make_provider(first_name="Luis", last_name="Garcia", states=("CA", "NV"))


def test_it_renders_the_page_in_the_same_queries_whatever_it_finds(client, support_agent, django_assert_num_queries):
    client.force_login(support_agent)
    _grow(2)
    with CaptureQueriesContext(connection) as small:
        search_page(client, "garcia")
    _grow(18)
    with django_assert_num_queries(len(small)):
        response = search_page(client, "garcia")
    assert [len(found.rows) for found in response.context["found"]] == [10, 10, 10, 10]
    assert all(found.more for found in response.context["found"])


def test_it_shows_the_date_of_birth_a_patient_was_found_by(client, support_agent):
    patient = make_patient(first_name="Ines", last_name="Moreau")
    patient.date_of_birth = dt.date(1971, 12, 9)
    patient_actions.save_patient(patient, actor=SYSTEM)
    client.force_login(support_agent)
    rows = search_page(client, "moreau 12/9/1971").context["found"][0].rows
    assert rows == [(patient, ["name", "date of birth"])]


def test_it_says_a_name_typed_with_two_letters_swapped_matched_by_name(client, support_agent):
    patient = make_patient(first_name="Grace", last_name="Adams")
    client.force_login(support_agent)
    assert search_page(client, "admas").context["found"][0].rows == [(patient, ["name"])]


def test_it_lists_elasticsearch_hits_in_their_order_read_from_postgresql(
    client, support_agent, garcias, settings, monkeypatch
):
    from tests.search.test_elasticsearch import ScoredSearch

    settings.ELASTICSEARCH_URL, settings.SEARCH_BACKEND = "http://127.0.0.1:9", "elasticsearch"
    ranking = ScoredSearch(
        [(garcias["other"].pk, 3.0), (garcias["ny"].pk, 2.0), (999_999, 1.5), (garcias["ca"].pk, 1.0)]
    )
    monkeypatch.setattr("search.backends.elasticsearch.get_client", lambda: ranking)
    client.force_login(support_agent)
    response = client.get(changelist("clinical.patient"), {"q": "whatever the index says", "state__exact": "CA"})
    assert listed(response) == [garcias["other"].pk, garcias["ca"].pk]  # NY filtered out, 999999 no longer exists

"""The PostgreSQL backend, for real: what support agents type finds the intended record first."""

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from clinical.actions import offers as offer_actions
from clinical.actions import patients as patient_actions
from clinical.actions import visits as visit_actions
from clinical.models import Patient, Provider, ProviderLicense, Visit, VisitEvent
from search.query import parse
from search.selectors import search
from support.actions import open_case
from support.models import SupportCase
from tests.builders import SYSTEM, make_license, make_past_visit, make_patient, make_provider, make_visit

pytestmark = pytest.mark.django_db


def patient(first: str, last: str, *, dob=dt.date(1985, 3, 2), phone=None, email=None, state="CA") -> Patient:
    """Register a patient through the action, with the name, date of birth and contact given."""
    found = make_patient(first_name=first, last_name=last, phone=phone, state=state)
    found.date_of_birth = dob
    if email:
        found.email = email
    return patient_actions.save_patient(found, actor=SYSTEM, reason="test data")


def ranked(model, typed: str, document: str, queryset=None) -> list:
    return list(search(queryset if queryset is not None else model.objects.all(), parse(typed), document=document))


@pytest.fixture
def people():
    """Patients whose names share first names, last names and letters."""
    return {
        "maria": patient("Maria", "Garcia", dob=dt.date(1985, 3, 2), phone="+14155550101"),
        "marie": patient("Marie", "Garcia", dob=dt.date(1990, 7, 14)),
        "mario": patient("Mario", "Garcias", dob=dt.date(1985, 3, 2)),
        "maria_smith": patient("Maria", "Smith", dob=dt.date(1985, 3, 2)),
        "john": patient("John", "Okafor", dob=dt.date(1979, 11, 30), email="John.Okafor@Example.test"),
    }


@pytest.mark.parametrize(
    ("typed", "intended"),
    [
        ("Maria Garcia", "maria"),
        ("garcia maria", "maria"),
        ("Garcia, Maria", "maria"),
        ("mari garc", "maria"),
        ("maria garcai", "maria"),
        ("mraia garcia", "maria"),
        ("Maria Garcia 3/2/85", "maria"),
        ("(415) 555-0101", "maria"),
        ("415.555.0101", "maria"),
        ("+1 415 555 0101", "maria"),
        ("JOHN.OKAFOR@example.TEST", "john"),
        ("okafr", "john"),
        ("garsia", "maria"),
        ("maria gracia", "maria"),  # two letters swapped
    ],
)
def test_it_ranks_the_intended_patient_first(people, typed, intended):
    assert ranked(Patient, typed, "patient")[0] == people[intended]


def test_it_prefers_the_name_in_the_order_typed():
    roberts = patient("William", "Roberts")
    wilsons = [patient("Robert", "Wilson") for _ in range(3)]
    found = ranked(Patient, "wil robe", "patient")
    assert found[0] == roberts and set(found[1:]) == set(wilsons)


def test_it_prefers_the_name_with_two_letters_swapped_over_others_as_close_by_trigrams():
    weber = patient("Jason", "Weber")
    others = [patient("Jason", "Webb"), patient("Jason", "West"), patient("Jason", "Wells")]
    found = ranked(Patient, "Jason Weebr", "patient")
    assert found[0] == weber and set(found[1:]) <= set(others)


@pytest.mark.parametrize("typed", ["Mei Mednoza", "mednoza", "Mednoza, Mei"])
def test_it_finds_a_name_with_two_letters_swapped_that_trigrams_miss(typed):
    mendoza = patient("Mei", "Mendoza")
    others = [patient("Mei", "Chen"), patient("Mai", "Mendez"), patient("Ana", "Mendoza-Ruiz")]
    found = ranked(Patient, typed, "patient")
    assert found[0] == mendoza and set(found[1:]) <= set(others)


def test_it_finds_a_provider_by_a_last_name_with_two_letters_swapped():
    ahmed = make_provider(first_name="Omar", last_name="Ahmed", states=())
    make_provider(first_name="Omar", last_name="Hamid", states=())
    assert ranked(Provider, "ahemd", "provider")[0] == ahmed


def test_it_finds_a_patient_by_mrn_typed_in_lower_case(people):
    assert ranked(Patient, people["john"].mrn.lower(), "patient") == [people["john"]]


def test_it_requires_both_name_and_date_of_birth_when_both_are_typed(people):
    found = ranked(Patient, "Maria 1985-03-02", "patient")
    assert set(found[:2]) == {people["maria"], people["maria_smith"]}
    assert found[2:] == [people["mario"]]  # one letter off, born that day too
    assert ranked(Patient, "Garcia 07/14/1990", "patient") == [people["marie"]]


def test_it_finds_patients_by_date_of_birth_alone(people):
    found = set(ranked(Patient, "03/02/1985", "patient"))
    assert found == {people["maria"], people["mario"], people["maria_smith"]}


def test_it_finds_nothing_for_input_no_record_can_match(people):
    assert ranked(Patient, "!!!", "patient") == []
    assert ranked(Patient, "Zbigniew Qwerty", "patient") == []


def test_it_narrows_the_queryset_it_is_given_so_filters_still_apply(people):
    other_state = patient("Maria", "Garcia", state="NY")
    found = ranked(Patient, "maria garcia", "patient", queryset=Patient.objects.filter(state="NY"))
    assert found == [other_state]


def test_it_never_finds_a_patient_whose_transaction_rolled_back(people):
    with pytest.raises(RuntimeError), transaction.atomic():
        patient("Rollback", "Ghost")
        assert ranked(Patient, "rollback ghost", "patient")  # visible inside its own transaction
        raise RuntimeError("the request failed")
    assert ranked(Patient, "rollback ghost", "patient") == []


def test_it_finds_providers_by_npi_license_number_and_name():
    ada = make_provider(first_name="Ada", last_name="Lovelace", states=())
    other = make_provider(first_name="Grace", last_name="Hopper", states=())
    license = make_license(ada, "NV")
    assert ranked(Provider, ada.npi, "provider") == [ada]
    assert ranked(Provider, license.license_number.lower().replace("-", " ").replace(" ", ""), "provider") == [ada]
    assert ranked(Provider, "lovelase", "provider") == [ada]
    assert ranked(Provider, "hopper", "provider") == [other]


def test_it_finds_visits_by_id_and_by_their_patient_or_provider(people):
    provider = make_provider(first_name="Ada", last_name="Lovelace", states=("CA",), available=True)
    first = visit_actions.cancel_visit(make_visit(patient=people["maria"]), actor=SYSTEM, detail="Asked again later.")
    second = make_visit(patient=people["maria"])
    offer_actions.offer_visit(second, provider, actor=SYSTEM)
    unrelated = make_visit(patient=people["john"])
    assert ranked(Visit, first.public_id.lower().replace("-", ""), "visit") == [first]
    assert set(ranked(Visit, "maria garcia", "visit")[:2]) == {first, second}
    assert ranked(Visit, "lovelace", "visit") == [second]
    assert unrelated not in ranked(Visit, "maria garcia", "visit")


def test_it_finds_support_cases_by_number_subject_visit_and_patient(people):
    visit = make_visit(patient=people["john"])
    case = open_case(patient=people["john"], visit=visit, subject="Refund for a dropped video call", actor=SYSTEM)
    other = open_case(patient=people["maria"], subject="Billing address", actor=SYSTEM)
    assert ranked(SupportCase, f"#{case.pk}", "case") == [case]
    assert ranked(SupportCase, "refund dropped", "case") == [case]
    assert ranked(SupportCase, visit.public_id, "case") == [case]
    assert ranked(SupportCase, "maria garcia", "case") == [other]


def test_it_finds_rows_through_a_related_record_in_its_order():
    ada = make_provider(first_name="Ada", last_name="Lovelace", states=("CA", "NV"))
    make_provider(first_name="Grace", last_name="Hopper", states=("CA",))
    found = list(search(ProviderLicense.objects.all(), parse("lovelace"), document="provider", path="provider"))
    assert set(found) == set(ada.licenses.all())
    visit = make_visit()
    events = list(search(VisitEvent.objects.all(), parse(visit.public_id), document="visit", path="visit"))
    assert events == list(visit.events.all())


@pytest.mark.parametrize("size", [3, 30])
def test_it_searches_in_the_same_queries_whatever_the_number_of_matches(django_assert_num_queries, size):
    for n in range(size):
        patient("Maria", f"Garcia{'x' * (n % 3)}")
        make_visit(patient=Patient.objects.latest("pk"))
    with django_assert_num_queries(1):
        assert len(ranked(Patient, "maria garcia", "patient")) == size
    # The patients' names, the patients of the best ones, the providers ranked, the visits.
    with django_assert_num_queries(4):
        assert len(ranked(Visit, "maria garcia", "visit")) == size


def test_it_ranks_the_people_a_visit_search_follows_once_for_its_count_and_its_page():
    maria = patient("Maria", "Garcia")
    visits = [make_past_visit(patient=maria) for _ in range(3)]
    found = search(Visit.objects.all(), parse("maria garcia"), document="visit")
    with CaptureQueriesContext(connection) as queries:
        assert found.count() == 3
        assert set(found[:2]) | set(found[2:]) == set(visits)
    assert len(queries) == 3
    assert not any("similarity" in query["sql"].lower() for query in queries.captured_queries)


def test_it_lists_cases_found_by_subject_words_alone_in_the_lists_order_from_its_index(people):
    cases = [
        open_case(patient=people["john"], subject=f"Visit {n} expired after 30 min", actor=SYSTEM) for n in range(3)
    ]
    SupportCase.objects.filter(pk=cases[1].pk).update(created_at=cases[2].created_at + dt.timedelta(minutes=1))
    found = search(SupportCase.objects.order_by("-created_at", "-id"), parse("expired"), document="case")
    assert list(found) == [cases[1], cases[2], cases[0]]
    assert {case.search_score for case in found} == {found[0].search_score}  # all rank the same
    sql, params = found.all()[:100].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # No sort by a score: the newest-first index is walked until the page is full.
    assert "support_case_created_idx" in plan and "Sort" not in plan, plan

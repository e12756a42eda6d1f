"""A patient name search scores the patients' distinct names, kept by triggers, and reads a page from the first few.

The names table (``search_patientname``) must hold, at every commit, each name's number of
patients, whatever wrote them (the console, the API, a bulk COPY, an UPDATE of many rows, a
TRUNCATE); and every page of a name search must be the page the full sort of the patients gives.
"""

import importlib

import pytest
from django.db import InternalError, connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinical.models import Patient
from core.pagination import EstimatedCountPaginator
from search import selectors
from search.backends.postgres import People
from search.changelist import SearchPaginator
from search.models import PatientName
from search.query import parse
from search.selectors import search
from tests.builders import make_patient

pytestmark = pytest.mark.django_db

ORDER = ("last_name", "first_name", "id")  # the patient list's own order (PatientAdmin.ordering)


def _recount() -> dict[tuple[str, str], int]:
    rows = Patient.objects.values("first_name", "last_name").annotate(n=Count("id")).order_by()
    return {(row["first_name"], row["last_name"]): row["n"] for row in rows}


def _kept() -> dict[tuple[str, str], int]:
    return {(n.first_name, n.last_name): n.patients for n in PatientName.objects.all()}


def _patient(first: str, last: str, n: int) -> Patient:
    return Patient(
        mrn=f"T{n:08d}", first_name=first, last_name=last, date_of_birth="1980-01-01", email=f"t{n}@example.test",
        phone=f"+1212555{n:04d}", address_line1="1 Main St", city="Springfield", state="CA", postal_code="90210",
    )  # fmt: skip


def test_it_keeps_each_names_count_through_every_kind_of_write():
    ann = make_patient(first_name="Ann", last_name="Smith")
    make_patient(first_name="Ann", last_name="Smith")
    bob = make_patient(first_name="Bob", last_name="Smith")
    assert _kept() == _recount() == {("Ann", "Smith"): 2, ("Bob", "Smith"): 1}

    Patient.objects.bulk_create([_patient("Cy", "Jones", n) for n in range(3)] + [_patient("Ann", "Smith", 9)])
    assert _kept() == _recount()
    assert _kept()[("Ann", "Smith")] == 3

    Patient.objects.filter(pk=bob.pk).update(last_name="Smyth")  # renamed: Bob Smith is nobody's name now
    Patient.objects.filter(pk=ann.pk).update(phone="+12125550199")  # not a name: nothing to count
    Patient.objects.filter(last_name="Jones").update(first_name="Di")  # many at once
    assert _kept() == _recount()
    assert ("Bob", "Smith") not in _kept() and ("Cy", "Jones") not in _kept()

    Patient.objects.filter(first_name="Di").delete()
    Patient.objects.filter(pk=ann.pk).update(first_name="Bob", last_name="Smyth")
    assert _kept() == _recount() == {("Ann", "Smith"): 2, ("Bob", "Smyth"): 2}

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for no deferred foreign-key check
        cursor.execute("TRUNCATE clinical_patient CASCADE")
    assert _kept() == {}


def test_it_counts_nothing_that_rolled_back():
    make_patient(first_name="Ann", last_name="Smith")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_patient(first_name="Ann", last_name="Smith")
        make_patient(first_name="Eve", last_name="Smith")
        raise RuntimeError("the request failed after the save")
    assert _kept() == _recount() == {("Ann", "Smith"): 1}


def test_it_refuses_a_count_below_zero_rather_than_keep_a_wrong_one():
    """The names table is only ever the patients' recount: a name missing from it fails the delete, loudly."""
    patient = make_patient(first_name="Ann", last_name="Smith")
    PatientName.objects.all().delete()
    with pytest.raises(InternalError, match="search_patientname lacks 1 name"), transaction.atomic():
        Patient.objects.filter(pk=patient.pk).delete()


def test_it_backfills_the_names_of_the_patients_already_there():
    for first in ("Ann", "Ann", "Bob"):
        make_patient(first_name=first, last_name="Smith")
    PatientName.objects.all().delete()
    migration = importlib.import_module("search.migrations.0007_patient_names")
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL.sql[0])
    assert _kept() == _recount() == {("Ann", "Smith"): 2, ("Bob", "Smith"): 1}


@pytest.fixture
def namesakes():
    """Patients sharing names in uneven numbers, so that pages end inside a name and inside a tie."""
    people = {
        ("Alan", "Smith"): 4, ("Beth", "Smith"): 1, ("Carl", "Smith"): 3, ("Dana", "Smith"): 2,
        ("Al", "Smith"): 2, ("Erin", "Smyth"): 3, ("Fay", "Smithers"): 2, ("Gil", "Smith-Jones"): 1,
        ("Smith", "Adams"): 2, ("Hal", "Jones"): 3,
    }  # fmt: skip
    made = []
    for (first, last), count in people.items():
        made += [make_patient(first_name=first, last_name=last, state="NY" if len(made) % 3 else "CA")
                 for _ in range(count)]  # fmt: skip
    return made


def found_count(query) -> int:
    return search(Patient.objects.order_by(*ORDER), query, document="patient").count()


def _pages(paginator_class, queryset, per_page: int) -> list[list[int]]:
    paginator = paginator_class(queryset, per_page)
    return [[patient.pk for patient in paginator.page(number).object_list] for number in paginator.page_range]


@pytest.mark.parametrize("typed", ["Smith", "smith alan", "Smyth", "Smtih", "Adams Smith", "Zyxwvut"])
def test_it_shows_every_page_as_the_full_sort_does(namesakes, typed):
    found = search(Patient.objects.order_by(*ORDER), parse(typed), document="patient")
    full = list(found.values_list("pk", flat=True))
    assert SearchPaginator(found, 5).count == len(full)
    for per_page in (1, 2, 3, 4, 7, 50):
        assert _pages(SearchPaginator, found, per_page) == _pages(EstimatedCountPaginator, found, per_page), per_page
        paginator = SearchPaginator(found, per_page)
        assert paginator.count == len(full)
        assert paginator.names is not None  # counted from the names, read from the first of them
        assert [pk for page in _pages(SearchPaginator, found, per_page) for pk in page] == full


def test_it_reads_a_page_from_the_names_that_fill_it(namesakes, django_assert_num_queries):
    found = search(Patient.objects.order_by(*ORDER), parse("Smith"), document="patient")
    paginator = SearchPaginator(found, 2)
    smiths = found.count()
    assert smiths == 17  # not Erin Smyth, Hal Jones, Smith Adams
    best = list(found.values_list("pk", flat=True)[:2])
    with django_assert_num_queries(2):  # the names (and so the count), then the page's patients
        assert paginator.count == smiths
        assert [p.pk for p in paginator.page(1).object_list] == best
    narrowed = paginator.first_rows(found, 2)
    assert 2 <= narrowed.count() < smiths  # the patients of the best names, not every Smith


def test_it_counts_the_rows_of_a_filtered_or_sorted_search_not_the_names(namesakes):
    in_ny = search(Patient.objects.filter(state="NY").order_by(*ORDER), parse("Smith"), document="patient")
    paginator = SearchPaginator(in_ny, 3)
    assert paginator.count == in_ny.count() < found_count(parse("Smith"))
    assert paginator.names is None
    assert _pages(SearchPaginator, in_ny, 3) == _pages(EstimatedCountPaginator, in_ny, 3)
    by_city = search(Patient.objects.order_by("city", "id"), parse("Smith"), document="patient")
    by_city = by_city.order_by("city", "-search_score")
    paginator = SearchPaginator(by_city, 3)
    assert paginator.count == found_count(parse("Smith"))
    assert paginator.names is None
    assert [p.pk for p in paginator.page(2).object_list] == [p.pk for p in by_city[3:6]]


def test_it_ranks_a_name_with_a_phone_or_birth_date_on_the_patients_themselves(namesakes):
    alan = namesakes[0]
    for typed in (f"Smith {alan.phone}", "Smith 1985-03-02"):
        found = search(Patient.objects.order_by(*ORDER), parse(typed), document="patient")
        paginator = SearchPaginator(found, 3)
        assert paginator.count == found.count()
        assert paginator.names is None, typed


def test_it_pages_the_console_patient_search_from_the_names(client, support_agent, namesakes):
    Patient.objects.bulk_create([_patient(first, "Smith", n) for n, first in enumerate(["Zed", "Ann", "Ivy"] * 20)])
    client.force_login(support_agent)
    full = [p.pk for p in search(Patient.objects.order_by(*ORDER), parse("Smith"), document="patient")]
    assert len(full) == 60 + 17
    url = reverse("ops:clinical_patient_changelist")
    for number, rows in ((1, full[:50]), (2, full[50:])):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, {"q": "Smith", "p": number})
        assert response.status_code == 200
        assert response.context["cl"].result_count == 77
        assert [p.pk for p in response.context["cl"].result_list] == rows
        assert any("search_patientname" in query["sql"] for query in queries)
    filtered = client.get(url, {"q": "Smith", "state__exact": "NY"})
    assert [p.pk for p in filtered.context["cl"].result_list] == [
        pk for pk in full if Patient.objects.get(pk=pk).state == "NY"
    ]


def test_it_shows_the_global_searchs_best_patients_from_their_names(namesakes, lead):
    for typed in ("Smith", "alan smith", "Smtih"):
        full = list(search(Patient.objects.all(), parse(typed), document="patient").values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as queries:
            found = selectors.global_search(lead, parse(typed), per_section=3)
        patients = next(section for section in found if section.section.document == "patient")
        assert [obj.pk for obj, _ in patients.rows] == full[:3], typed
        assert patients.more == (len(full) > 3)
        assert any("search_patientname" in query["sql"] for query in queries)


def test_it_ranks_the_patients_a_visit_or_case_search_follows_from_their_names(namesakes, django_assert_num_queries):
    for typed in ("Smith", "alan smith", "Smtih", "Smith 1985-03-02"):
        people = People(parse(typed))
        everyone = Patient.objects.filter(people.where()).annotate(s=people.score()).order_by("-s", "pk")
        full = list(everyone.values_list("pk", flat=True))
        for limit in (1, 2, 3, 5, 8, 100):
            with django_assert_num_queries(2 if people.name_alone() else 1):  # the names, then their patients
                assert people.ranked(Patient, limit=limit) == full[:limit], (typed, limit)

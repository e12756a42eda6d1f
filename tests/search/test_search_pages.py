"""Search pages read what they show and no more, and show exactly what the full sort shows.

A visit search's page reads only the rows that can fill it; other searches count their matches
in the query that ranks them for the first page.
"""

import datetime as dt
import random
import re
from html import unescape

import pytest
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.views.main import ChangeList
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clinical.models import Patient, Visit
from core.pagination import EstimatedCountPaginator
from search.backends import first_rows
from search.changelist import SearchPaginator
from search.query import parse
from search.selectors import search
from support.actions import open_case
from support.models import SupportCase
from tests.builders import SYSTEM, make_past_visit, make_patient, make_provider

pytestmark = pytest.mark.django_db

LIST_ORDER = ("-requested_at", "-id")  # the visit list's own order (VisitAdmin.ordering)


@pytest.fixture
def smiths():
    """Visits of patients and providers named Smith: some both, many at the same minute, in two states."""
    rng = random.Random(18)
    patients = [make_patient(first_name=first, last_name="Smith") for first in ("Alan", "Beth", "Carl", "Dana")]
    patients += [make_patient(first_name="Erin", last_name="Smyth"), make_patient(first_name="Fay", last_name="Jones")]
    providers = [make_provider(first_name=first, last_name="Smith") for first in ("Gus", "Hal", "Ida")]
    providers.append(make_provider(first_name="Joe", last_name="Brown"))
    minutes = [timezone.now() - dt.timedelta(minutes=rng.randrange(6)) for _ in range(6)]  # ties on purpose
    for _ in range(80):
        visit = make_past_visit(patient=rng.choice(patients), state=rng.choice(["CA", "NY"]))
        provider = rng.choice([*providers, None])
        Visit.objects.filter(pk=visit.pk).update(provider=provider, requested_at=rng.choice(minutes))
    return patients, providers


def _pages(paginator_class, queryset, per_page: int) -> list[list[int]]:
    paginator = paginator_class(queryset, per_page)
    return [[visit.pk for visit in paginator.page(number).object_list] for number in paginator.page_range]


def _found(typed: str, **filters):
    rows = Visit.objects.select_related("patient", "provider").filter(**filters).order_by(*LIST_ORDER)
    return search(rows, parse(typed), document="visit")


def test_it_shows_every_page_as_the_full_sort_does(smiths):
    for filters in ({}, {"located_state": "NY"}, {"provider__isnull": True}, {"patient__first_name": "Beth"}):
        found = _found("Smith", **filters)
        assert found.count() > 3, filters
        for per_page in (1, 2, 3, 7, 50):
            expected = _pages(EstimatedCountPaginator, found, per_page)
            assert _pages(SearchPaginator, found, per_page) == expected, (filters, per_page)


def test_it_reads_only_the_rows_that_can_fill_the_first_page(smiths):
    found = _found("Smith")
    narrowed = first_rows(found, 2)
    assert narrowed is not None
    assert len(list(narrowed)) < found.count()
    assert list(narrowed.values_list("pk", flat=True)[:2]) == list(found.values_list("pk", flat=True)[:2])


def test_it_does_not_narrow_a_list_sorted_by_a_column_or_a_search_by_visit_id(smiths):
    found = _found("Smith")
    assert first_rows(found.order_by("patient__last_name", "-search_score"), 2) is None
    visit = Visit.objects.filter(patient__last_name="Smith").first()
    assert first_rows(_found(visit.public_id), 2) is None
    patients = search(Patient.objects.all(), parse("Smith"), document="patient")
    assert first_rows(patients, 2) is None


def test_it_pages_the_console_visit_search_through_the_narrowed_rows(client, support_agent, smiths):
    client.force_login(support_agent)
    full = [visit.pk for visit in _found("Smith")]
    assert len(full) > 50  # two pages of the console's 50
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("ops:clinical_visit_changelist") + "?q=Smith&p=2")
    assert response.status_code == 200
    assert [visit.pk for visit in response.context["cl"].result_list] == full[50:100]
    assert any("WITH TIES" in query["sql"] for query in queries)


def test_it_keeps_every_row_of_the_last_people_read():
    """The first three: the best patient's and provider's two shared visits, then the second provider's newest.

    Read best person first, the first six rows are the two shared visits twice and two of the
    second patient's: the second provider's newest visit, third in the list, comes after them.
    """
    now = timezone.now()
    ann, bob = make_patient(first_name="Ann", last_name="Smith"), make_patient(first_name="Bob", last_name="Smith")
    cy, di = make_provider(first_name="Cy", last_name="Smith"), make_provider(first_name="Di", last_name="Smith")
    other = make_patient(first_name="Quinn", last_name="Jones")

    def visit(patient, provider, minutes_ago):
        made = make_past_visit(patient=patient)
        Visit.objects.filter(pk=made.pk).update(provider=provider, requested_at=now - dt.timedelta(minutes=minutes_ago))
        return made.pk

    shared = [visit(ann, cy, 10), visit(ann, cy, 11)]
    [visit(bob, None, minutes) for minutes in (5, 6, 7)]
    newest_of_di = visit(other, di, 1)
    [visit(other, di, minutes) for minutes in (2, 3)]
    found = _found("Smith")
    assert list(found.values_list("pk", flat=True)[:3]) == [*shared, newest_of_di]
    assert list(first_rows(found, 3).values_list("pk", flat=True)[:3]) == [*shared, newest_of_di]


def test_it_counts_a_filtered_patient_search_with_its_first_page(smiths, django_assert_num_queries):
    """Filtered, the names' counts are not the rows' (``test_patient_names``): the first page's query counts them."""
    in_ca = Patient.objects.filter(state="CA").order_by("last_name", "first_name", "id")
    found = search(in_ca, parse("Smith"), document="patient")
    expected = list(found)
    assert len(expected) == 4  # the four Smiths
    for per_page in (1, 3, 10):
        paginator = SearchPaginator(found, per_page)
        with django_assert_num_queries(1):  # the count and the first page, at once
            assert paginator.count == len(expected)
            assert list(paginator.page(1).object_list) == expected[:per_page]
        assert [list(paginator.page(n).object_list) for n in paginator.page_range][1:] == [
            expected[start : start + per_page] for start in range(per_page, len(expected), per_page)
        ]


def test_it_counts_an_empty_search_and_a_sorted_one(smiths):
    nobody = search(Patient.objects.order_by("last_name"), parse("Zyxwvut"), document="patient")
    assert SearchPaginator(nobody, 2).count == 0
    sorted_by_city = search(Patient.objects.order_by("city", "id"), parse("Smith"), document="patient")
    sorted_by_city = sorted_by_city.order_by("city", "-search_score")
    paginator = SearchPaginator(sorted_by_city, 3)
    assert paginator.count == 4
    assert [p.pk for p in paginator.page(1).object_list] == [p.pk for p in sorted_by_city[:3]]


def test_it_leaves_a_case_search_by_subject_words_to_its_list_order():
    """Every match ranks the same: the page stops at its last row, so the count is its own query."""
    patient = make_patient()
    for n in range(3):
        open_case(subject=f"License expired in Texas {n}", patient=patient, actor=SYSTEM)
    found = search(SupportCase.objects.order_by("-created_at", "-id"), parse("expired"), document="case")
    paginator = SearchPaginator(found, 2)
    with CaptureQueriesContext(connection) as queries:
        assert paginator.count == 3
        assert len(paginator.page(1).object_list) == 2
    assert not any("OVER ()" in query["sql"] for query in queries)


@pytest.mark.parametrize(
    ("changelist", "params"),
    [
        ("ops:clinical_provider_changelist", {}),
        ("ops:clinical_provider_changelist", {"q": "Smith & Sons", "is_active__exact": "1", "o": "2"}),
        ("ops:clinical_patient_changelist", {"q": "Smith", "state__exact": "CA"}),
        ("ops:clinical_visit_changelist", {"q": "Smith", "_popup": "1", "_to_field": "id"}),
    ],
)
def test_it_links_each_row_as_django_would_with_the_lists_filters(client, lead, smiths, changelist, params):
    """Each row's link is worked out from one reverse() a page: the same link as Django's own."""
    client.force_login(lead)
    response = client.get(reverse(changelist), params)
    assert response.status_code == 200
    cl = response.context["cl"]
    model_admin = cl.model_admin
    preserved = model_admin.get_preserved_filters(response.wsgi_request)
    assert bool(preserved) == bool(params) and cl.row_filters == preserved
    expected = [
        add_preserved_filters({"preserved_filters": preserved, "opts": cl.opts}, ChangeList.url_for_result(cl, row))
        for row in cl.result_list
    ]
    assert expected  # rows to link
    html = response.content.decode()
    links = re.findall(r'<th class="field-[\w_]+"><a href="([^"]+)"', html)
    assert [unescape(link) for link in links] == expected

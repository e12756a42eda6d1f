"""Changelists estimate large counts from PostgreSQL statistics and say so; small ones stay exact."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinical.models import ProviderLicense, Visit
from core import pagination
from tests.builders import make_license, make_provider, make_visit


def _analyze():
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE clinical_visit")


def test_it_counts_exactly_when_the_list_is_small(client, support_agent):
    make_visit()
    client.force_login(support_agent)
    response = client.get(reverse("ops:clinical_visit_changelist"))
    assert response.context["cl"].result_count == 1
    assert not response.context["cl"].paginator.is_estimate
    assert b"about 1" not in response.content


def test_it_estimates_unfiltered_and_filtered_counts_and_says_so(client, support_agent, monkeypatch):
    for _ in range(30):
        make_visit()
    _analyze()
    monkeypatch.setattr(pagination, "EXACT_BELOW", 10)
    client.force_login(support_agent)
    response = client.get(reverse("ops:clinical_visit_changelist"))
    cl = response.context["cl"]
    assert cl.paginator.is_estimate
    assert abs(cl.result_count - Visit.objects.count()) <= 5
    assert b"about " in response.content
    filtered = client.get(reverse("ops:clinical_visit_changelist") + "?status__exact=waiting")
    assert filtered.context["cl"].paginator.is_estimate
    assert filtered.context["cl"].result_count > 0


def test_it_runs_no_count_star_on_a_large_unfiltered_list(
    client, support_agent, monkeypatch, django_assert_max_num_queries
):
    from django.test.utils import CaptureQueriesContext

    for _ in range(12):
        make_visit()
    _analyze()
    monkeypatch.setattr(pagination, "EXACT_BELOW", 10)
    client.force_login(support_agent)
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("ops:clinical_visit_changelist"))
    assert not [q for q in queries if "COUNT(*)" in q["sql"].upper()]


def test_it_counts_a_search_that_matches_nothing(client, support_agent):
    make_visit()
    client.force_login(support_agent)
    response = client.get(reverse("ops:clinical_visit_changelist") + "?q=Nobody+Matches+This")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0


def test_it_serves_deep_pages_in_order_with_a_late_row_lookup(client, support_agent, monkeypatch):
    visits = [make_visit() for _ in range(9)]
    monkeypatch.setattr(pagination, "DEEP_OFFSET", 2)
    from clinical.admin import VisitAdmin

    monkeypatch.setattr(VisitAdmin, "list_per_page", 2)
    client.force_login(support_agent)
    newest_first = [v.pk for v in sorted(visits, key=lambda v: (v.requested_at, v.pk), reverse=True)]
    for page in (1, 2, 3):
        response = client.get(reverse("ops:clinical_visit_changelist") + f"?p={page}")
        assert [v.pk for v in response.context["cl"].result_list] == newest_first[(page - 1) * 2 : page * 2]


def test_it_reads_the_expiry_filters_license_pages_by_key_and_the_others_at_once(client, lead, monkeypatch):
    """Under the expiry filter a license page is its keys, then those rows with their joins; others one query."""
    from clinical.admin import ProviderLicenseAdmin

    provider = make_provider(states=("CA", "NY", "TX", "FL", "WA"))
    for state in ("OR", "NV", "AZ"):
        make_license(provider, state, expires_in_days=20)
    monkeypatch.setattr(ProviderLicenseAdmin, "list_per_page", 2)
    client.force_login(lead)
    url = reverse("ops:clinical_providerlicense_changelist")
    for params, expected, by_key in (
        ({}, ProviderLicense.objects.order_by("state", "provider_id", "id"), False),
        ({"status__exact": "active"}, ProviderLicense.objects.order_by("state", "provider_id", "id"), False),
        ({"expiry": "30"}, ProviderLicense.objects.filter(state__in=["OR", "NV", "AZ"]).order_by("state", "id"), True),
    ):
        keys = [lic.pk for lic in expected]
        for page in (1, 2):
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url, {**params, "p": page})
            shown = response.context["cl"].result_list
            assert [lic.pk for lic in shown] == keys[(page - 1) * 2 : page * 2], (params, page)
            assert all(lic.provider.last_name for lic in shown)  # joined with the page's rows
            reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and "COUNT(" not in q["sql"]]
            rows = [sql for sql in reads if 'FROM "clinical_providerlicense"' in sql]  # not its count or estimate
            keys_first = any(sql.startswith('SELECT "clinical_providerlicense"."id" AS "pk"') for sql in rows)
            by_keys = any('"clinical_providerlicense"."id" IN (' in sql and "clinical_provider" in sql for sql in rows)
            assert (keys_first, by_keys, len(rows)) == ((True, True, 2) if by_key else (False, False, 1)), params


def test_it_counts_up_to_the_cap_and_says_at_least_when_the_estimate_was_far_too_low(
    client, support_agent, monkeypatch
):
    for _ in range(12):
        make_visit()
    monkeypatch.setattr(pagination, "EXACT_BELOW", 10)
    monkeypatch.setattr(pagination, "estimated_count", lambda queryset: 3)  # a planner far below the truth
    client.force_login(support_agent)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("ops:clinical_visit_changelist") + "?status__exact=waiting")

    cl = response.context["cl"]
    assert (cl.result_count, cl.paginator.is_lower_bound, cl.paginator.is_estimate) == (10, True, False)
    assert "at least 10" in response.content.decode()
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1 and "LIMIT 10" in counts[0]  # it stops counting at the cap


def test_it_counts_exactly_below_the_cap_whatever_the_estimate(client, support_agent, monkeypatch):
    for _ in range(9):
        make_visit()
    monkeypatch.setattr(pagination, "EXACT_BELOW", 10)
    monkeypatch.setattr(pagination, "estimated_count", lambda queryset: 3)
    client.force_login(support_agent)

    response = client.get(reverse("ops:clinical_visit_changelist") + "?status__exact=waiting")

    cl = response.context["cl"]
    assert (cl.result_count, cl.paginator.is_lower_bound) == (9, False)
    assert "at least" not in response.content.decode()

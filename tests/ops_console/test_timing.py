"""The request timing recorder and the Slow pages report."""

from django.test import override_settings
from django.urls import reverse

from core import timing
from tests.builders import make_visit


def test_it_records_time_and_queries_per_console_page_and_reports_the_slowest(client, engineer, redis_client):
    make_visit()
    client.force_login(engineer)
    for _ in range(3):
        client.get(reverse("ops:clinical_visit_changelist"))
    client.get(reverse("ops:index"))
    stats = {s.endpoint: s for s in timing.slow_pages()}
    visits = stats["GET ops:clinical_visit_changelist"]
    assert visits.count == 3 and visits.mean_queries >= 3
    assert visits.p50_ms <= visits.p95_ms <= visits.max_ms
    assert visits.path == reverse("ops:clinical_visit_changelist")
    page = client.get(reverse("ops:slow_pages"))
    assert page.status_code == 200
    assert b"GET ops:clinical_visit_changelist" in page.content


def test_it_keeps_memory_bounded(redis_client):
    for i in range(timing.SAMPLES + 40):
        timing.record("GET ops:index", "/ops/", float(i), 3)
    for i in range(timing.ENDPOINTS + 10):
        timing.record(f"GET ops:page_{i}", "/ops/x/", 1.0, 1)
    assert redis_client.llen(timing.SAMPLES_KEY.format("GET ops:index")) == timing.SAMPLES
    assert redis_client.zcard(timing.ENDPOINTS_KEY) == timing.ENDPOINTS


def test_it_ignores_requests_outside_the_console_and_api(client, db, redis_client):
    client.get("/admin/")
    client.get("/static/nothing.css")
    assert redis_client.zcard(timing.ENDPOINTS_KEY) == 0


def test_it_records_api_endpoints(client, db, redis_client):
    client.get("/api/v1/visits/ZZZZ-ZZZZ")
    assert "GET api:visit" in {s.endpoint for s in timing.slow_pages()}


def test_it_shows_slow_pages_to_engineers_and_leads_only(client, personas, redis_client):
    url = reverse("ops:slow_pages")
    for role, user in personas.items():
        client.force_login(user)
        expected = 200 if role in ("Engineer", "Ops lead") else 403
        assert client.get(url).status_code == expected, role


def test_it_never_fails_a_request_when_redis_is_down(client, engineer, redis_client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        from core.redis import get_redis

        get_redis.cache_clear()
        try:
            client.force_login(engineer)
            assert client.get(reverse("ops:index")).status_code == 200
        finally:
            get_redis.cache_clear()

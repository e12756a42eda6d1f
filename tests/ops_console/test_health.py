"""/healthz and /readyz as a load balancer sees them: fast answers, 503 when a required dependency fails."""

import datetime as dt
import socket
import time

import pytest
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from clinical.imports.jobs import run_import_step
from clinical.routing.lease import Lease
from core import timing
from core.health import OK, SKIPPED, UNKNOWN, WARN, replica_verdict
from core.models import AccessLog, OutboxEntry
from tests.search.stub_es import free_port

pytestmark = pytest.mark.usefixtures("fast_passwords")

# What a hung dependency may cost: the probes' timeout here, and the most a test waits for the answer.
TIMEOUT_SECONDS = 1
ANSWER_WITHIN_SECONDS = 4
# Changing DATABASES under a running test: the probes read it, the test's own connection does not.
overrides_databases = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


@pytest.fixture(autouse=True)
def _short_probes(settings, redis_client):
    settings.OPS_HEALTH_TIMEOUT_SECONDS = TIMEOUT_SECONDS


@pytest.fixture
def silent_port():
    """Return a port whose listener accepts connections and never says a word: a hung server."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def router_leading(transactional_db):
    """A router holding the lease, committed where /readyz's own connection sees it."""
    Lease(seconds=60, name="router-1").hold()


def database_at(settings, alias: str, **changes) -> None:
    """Point the ``alias`` entry of DATABASES at the test database, with ``changes`` (another port)."""
    settings.DATABASES = {**settings.DATABASES, alias: {**settings.DATABASES["default"], **changes}}


def ready(client: Client):
    started = time.monotonic()
    response = client.get("/readyz")
    return response, response.json(), time.monotonic() - started


def test_it_answers_alive_without_asking_any_dependency(client, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "no-store" in response["Cache-Control"]


def test_it_is_ready_when_every_dependency_answers(client, router_leading):
    response, body, _ = ready(client)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert body["status"] == "ok"
    checks = body["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {
        "postgresql": OK, "router": OK, "jobs": OK, "outbox": SKIPPED, "replica": SKIPPED, "redis": OK,
    }  # fmt: skip
    assert {name for name, check in checks.items() if check["required"]} == {"postgresql", "redis"}
    assert checks["router"]["holder"] == "router-1" and checks["router"]["reason"] == "router-1 leads"
    assert all(check["latency_ms"] >= 0 and isinstance(check["reason"], str) for check in checks.values())


def test_it_answers_unavailable_fast_when_redis_refuses(client, db, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response, body, took = ready(client)
    assert response.status_code == 503 and took < ANSWER_WITHIN_SECONDS
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["status"] == "fail" and "refused" in body["checks"]["redis"]["reason"]
    assert body["checks"]["postgresql"]["status"] == OK


def test_it_answers_unavailable_within_the_timeout_when_redis_hangs(client, db, settings, silent_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{silent_port}/0"
    response, body, took = ready(client)
    assert response.status_code == 503 and TIMEOUT_SECONDS <= took < ANSWER_WITHIN_SECONDS
    assert body["checks"]["redis"]["status"] == "fail" and "timeout" in body["checks"]["redis"]["reason"].lower()


@overrides_databases
def test_it_answers_unavailable_fast_when_postgresql_refuses(client, db, settings):
    database_at(settings, "default", PORT=str(free_port()))
    response, body, took = ready(client)
    assert response.status_code == 503 and took < ANSWER_WITHIN_SECONDS
    checks = body["checks"]
    assert checks["postgresql"]["status"] == "fail" and checks["postgresql"]["required"]
    assert "refused" in checks["postgresql"]["reason"]
    assert checks["router"]["status"] == UNKNOWN and checks["redis"]["status"] == OK


@overrides_databases
def test_it_answers_unavailable_within_the_timeout_when_postgresql_hangs(client, db, settings, silent_port):
    database_at(settings, "default", PORT=str(silent_port))
    response, body, took = ready(client)
    assert response.status_code == 503 and TIMEOUT_SECONDS <= took < ANSWER_WITHIN_SECONDS
    assert body["checks"]["postgresql"] == {
        "status": "fail", "required": True, "latency_ms": body["checks"]["postgresql"]["latency_ms"],
        "reason": "no answer in time",
    }  # fmt: skip


def test_it_stays_ready_but_degraded_when_no_router_leads(client, transactional_db):
    response, body, _ = ready(client)
    assert (response.status_code, body["status"]) == (200, "degraded")
    assert body["checks"]["router"] == {
        "status": WARN, "required": False, "latency_ms": body["checks"]["router"]["latency_ms"],
        "reason": "no router has led yet: visits are not routed",
    }  # fmt: skip


def test_it_reports_a_lease_that_ran_out_by_the_database_clock(client, transactional_db):
    lease = Lease(seconds=2, name="router-2")
    assert lease.hold()
    time.sleep(2.2)
    response, body, _ = ready(client)
    assert (response.status_code, body["checks"]["router"]["status"]) == (200, WARN)
    assert body["checks"]["router"]["reason"] == "no router leading: router-2's lease has run out"


@overrides_databases
def test_it_reports_a_replica_alias_that_reaches_a_primary_as_not_a_standby(client, router_leading, settings):
    database_at(settings, "replica")
    response, body, _ = ready(client)
    assert (response.status_code, body["status"]) == (200, "degraded")
    replica = body["checks"]["replica"]
    assert (replica["status"], replica["required"]) == (WARN, False)
    assert replica["reason"].startswith("not a standby")


@overrides_databases
def test_it_stays_ready_when_the_replica_is_down(client, router_leading, settings):
    database_at(settings, "replica", PORT=str(free_port()))
    response, body, took = ready(client)
    assert (response.status_code, body["status"]) == (200, "degraded") and took < ANSWER_WITHIN_SECONDS
    assert body["checks"]["replica"]["status"] == WARN
    assert body["checks"]["replica"]["reason"].startswith("unreachable, pages read the primary")


@pytest.mark.parametrize(
    ("caught_up", "age", "status", "reason", "lag"),
    [
        (True, 500.0, OK, "caught up", 0.0),
        (False, 3.25, OK, "3.2 s behind", 3.25),
        (False, 45.0, WARN, "45.0 s behind (over 30 s), pages read the primary", 45.0),
        (False, None, WARN, "lag unknown: nothing replayed yet", None),
    ],
)
def test_it_tells_a_standbys_lag(settings, caught_up, age, status, reason, lag):
    settings.OPS_REPLICA_MAX_LAG_SECONDS = 30
    check = replica_verdict(in_recovery=True, caught_up=caught_up, age=age)
    assert (check.status, check.reason, check.details["lag_seconds"]) == (status, reason, lag)


def test_it_reports_the_outbox_backlog_when_elasticsearch_is_configured(client, router_leading, settings):
    settings.ELASTICSEARCH_URL = "http://127.0.0.1:9200"
    settings.SEARCH_OUTBOX_ALERT_MINUTES = 10
    old = timezone.now() - dt.timedelta(minutes=15)
    OutboxEntry.objects.bulk_create(
        [OutboxEntry(label="clinical.patient", object_id=n, created_at=old) for n in (1, 2)]
    )
    response, body, _ = ready(client)
    assert (response.status_code, body["status"]) == (200, "degraded")
    outbox = body["checks"]["outbox"]
    assert (outbox["status"], outbox["entries"]) == (WARN, 2) and 899 < outbox["oldest_seconds"] < 960


def test_it_reports_a_job_that_no_worker_takes(client, router_leading, settings):
    settings.OPS_JOBS_ALERT_SECONDS = 60
    waiting = run_import_step.enqueue(0, "check")
    response, body, _ = ready(client)
    assert (body["checks"]["jobs"]["status"], body["checks"]["jobs"]["ready"]) == (OK, 1)

    DBTaskResult.objects.filter(id=waiting.id).update(enqueued_at=timezone.now() - dt.timedelta(seconds=90))
    response, body, _ = ready(client)

    assert (response.status_code, body["status"]) == (200, "degraded")
    jobs = body["checks"]["jobs"]
    assert (jobs["status"], jobs["ready"]) == (WARN, 1) and 89 < jobs["oldest_seconds"] < 150
    assert jobs["reason"].endswith("is a job worker (run_jobs) running?")


def test_it_answers_over_plain_http_when_https_is_required(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/ops/login/").status_code == 301  # the console is redirected; the probes are not
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response["X-Request-ID"]


def test_it_answers_get_and_head_only_and_needs_no_csrf_token(db):
    client = Client(enforce_csrf_checks=True)
    for path in ("/healthz", "/readyz"):
        assert client.head(path).status_code == 200, path
        for method in ("post", "put", "patch", "delete"):
            assert getattr(client, method)(path).status_code == 405, (path, method)


def test_it_sets_no_cookie_and_records_no_access_and_no_timing_sample(client, db, redis_client):
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.cookies == {} and "Set-Cookie" not in response, path
    assert not AccessLog.objects.exists()
    assert timing.slow_pages() == []


def test_it_answers_a_signed_in_editor_who_has_not_given_a_code(client, clinical_ops, settings):
    settings.OPS_REQUIRE_2FA = True
    client.force_login(clinical_ops)
    assert client.get("/ops/").status_code == 302  # sent to set up two-factor sign-in
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200

"""Structured logs and request ids: one JSON object per line; a request's id in its lines, header and access-log row."""

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from clinical.actions import api_clients as api_client_actions
from clinical.routing import lease
from core.logs import JsonFormatter, RequestContextFilter, TextFormatter
from core.models import AccessLog
from core.request_id import RequestIdAsgiMiddleware
from tests.builders import SYSTEM, make_patient, make_provider
from tests.clinical.processes import database_url, wait_for

BASE_DIR = Path(__file__).resolve().parents[2]
ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def log_lines():
    """Return a function that returns the JSON objects logged since the test began, as the console logs them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    root, requests = logging.getLogger(), logging.getLogger("ops.request")
    root.addHandler(handler)
    level, requests.level = requests.level, logging.DEBUG  # the probes' lines too
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    requests.setLevel(level)


def _record(**extra) -> logging.LogRecord:
    record = logging.getLogger("clinical.routing.worker").makeRecord(
        "clinical.routing.worker", logging.WARNING, __file__, 1, "router %s: %s", ("router-1", "standing by"), None
    )
    record.__dict__.update(extra)
    return record


def test_it_writes_a_record_as_one_json_object_with_time_level_logger_and_message():
    entry = json.loads(JsonFormatter().format(_record(status=200)))
    assert ISO_UTC_MS.fullmatch(entry.pop("time"))
    assert entry == {
        "level": "WARNING", "logger": "clinical.routing.worker", "message": "router router-1: standing by",
        "status": 200,
    }  # fmt: skip


def test_it_puts_an_exception_in_one_string_field_on_the_same_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["exc_info"].startswith("Traceback") and "ValueError: bad" in json.loads(line)["exc_info"]


def test_it_writes_the_same_fields_as_text_for_a_person():
    line = TextFormatter().format(_record(request_id="abc", status=503))
    assert re.fullmatch(
        r"\S+Z WARNING clinical\.routing\.worker: router router-1: standing by  \[request_id=abc status=503\]", line
    )


def test_it_returns_a_new_request_id_on_every_response_redirects_included(client, db, settings):
    first, second = client.get(reverse("ops:login")), client.get(reverse("ops:login"))
    assert GENERATED.fullmatch(first["X-Request-ID"]) and first["X-Request-ID"] != second["X-Request-ID"]
    settings.SECURE_SSL_REDIRECT = True
    redirected = Client().get(reverse("ops:login"))  # a new client: middleware read the setting as it started
    assert redirected.status_code == 301 and GENERATED.fullmatch(redirected["X-Request-ID"])


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("lb-7f3a.9_Z-1", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("a" * 500, False),
        ("id\nERROR forged line", False),
        ('id" , "level": "ERROR', False),
        ("", False),
        ("idé", False),
    ],
)
def test_it_keeps_a_sane_incoming_request_id_and_replaces_any_other(client, db, sent, kept):
    response = client.get(reverse("ops:login"), HTTP_X_REQUEST_ID=sent)
    assert response["X-Request-ID"] == sent if kept else GENERATED.fullmatch(response["X-Request-ID"])


def test_it_logs_one_request_line_with_the_request_and_the_user(client, support_agent, log_lines):
    client.force_login(support_agent)
    response = client.get(reverse("ops:index") + "?q=Garcia", HTTP_X_REQUEST_ID="req-1")
    assert response.status_code == 200
    (line,) = [line for line in log_lines() if line["logger"] == "ops.request"]
    assert ISO_UTC_MS.fullmatch(line.pop("time")) and line.pop("duration_ms") > 0
    assert line == {
        "level": "INFO", "logger": "ops.request", "message": "GET /ops/ 200", "status": 200,
        "request_id": "req-1", "method": "GET", "path": "/ops/", "user_id": support_agent.pk,
    }  # fmt: skip


def test_it_names_the_api_client_of_an_api_request(client, db, log_lines, redis_client):
    provider = make_provider(states=("CA",))
    api_client, token = api_client_actions.create_api_client(
        name="dr-app", scope="provider", provider=provider, actor=SYSTEM
    )
    response = client.get(f"/api/v1/providers/{provider.npi}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    (line,) = [line for line in log_lines() if line["logger"] == "ops.request"]
    assert (line["api_client_id"], line["status"]) == (api_client.pk, 200) and "user_id" not in line


def test_it_gives_lines_logged_during_a_request_its_id_but_never_the_query_string(client, db, log_lines):
    response = client.get("/no-such-page/?q=Garcia")
    assert response.status_code == 404
    lines = log_lines()
    (not_found,) = [line for line in lines if line["logger"] == "django.request"]
    assert not_found["request_id"] == response["X-Request-ID"] and not_found["path"] == "/no-such-page/"
    assert not_found["status_code"] == 404 and "request" not in not_found
    assert "Garcia" not in json.dumps(lines)


def test_it_logs_passing_health_probes_at_debug(client, db, log_lines, redis_client):
    client.get("/healthz")
    (line,) = [line for line in log_lines() if line["logger"] == "ops.request"]
    assert (line["level"], line["status"], line["path"]) == ("DEBUG", 200, "/healthz")


def test_it_stores_the_request_id_on_the_access_log_row(client, support_agent):
    make_patient(last_name="Logged")
    client.force_login(support_agent)
    url = reverse("ops:clinical_patient_changelist")
    kept, generated = client.get(url, HTTP_X_REQUEST_ID="req-42"), client.get(url)
    rows = list(AccessLog.objects.order_by("id").values_list("request_id", flat=True))
    assert rows == ["req-42", generated["X-Request-ID"]] and kept["X-Request-ID"] == "req-42"


def test_it_gives_a_websocket_a_request_id_in_its_lines_and_its_handshake(log_lines):
    async def app(scope, receive, send):
        await receive()
        logging.getLogger("clinical.api.consumers").warning("connected")
        await send({"type": "websocket.accept"})

    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws/v1/", "headers": [(b"x-request-id", b"ws-1")]}
    asyncio.run(RequestIdAsgiMiddleware(app)(scope, receive, send))
    assert sent == [{"type": "websocket.accept", "headers": [(b"x-request-id", b"ws-1")]}]
    (line,) = [line for line in log_lines() if line["message"] == "connected"]
    assert (line["request_id"], line["method"], line["path"]) == ("ws-1", "WEBSOCKET", "/ws/v1/")


def test_it_writes_the_routers_lines_as_json(transactional_db, redis_client, settings):
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL, "DJANGO_DEBUG": "0"}
    env |= {"OPS_LOG_FORMAT": "json", "OPS_LOG_LEVEL": "INFO", "ROUTING_LEASE_SECONDS": "3"}
    router = subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "run_router", "--name", "router-json"],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: (lease.current() or {}).get("holder") == "router-json")
    finally:
        router.terminate()
        out, err = router.communicate(timeout=20)
    lines = [json.loads(line) for line in err.splitlines()]  # every line, or this fails
    assert out == "" and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    messages = [line["message"] for line in lines]
    assert messages[0] == "router router-json: policy longest_idle, waiting for the lease"
    assert any(re.fullmatch(r"router router-json: leading \(epoch \d+\)", message) for message in messages)
    assert messages[-1].startswith("router router-json stopped:")


def test_it_never_logs_the_query_string_of_a_websocket_connect():
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws/v1/?resume=TQE4-JJHR%3A0"), None,
    )  # fmt: skip
    RequestContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == '127.0.0.1:5000 - "WebSocket /ws/v1/" [accepted]'

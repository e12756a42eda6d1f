"""The web server as run in production (gunicorn_conf.py, uvicorn workers): its probes and its log lines."""

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clinical.processes import database_url
from tests.search.stub_es import free_port

BASE_DIR = Path(__file__).resolve().parents[2]


def _get(port: int, path: str, **headers) -> tuple[int, http.client.HTTPMessage]:
    """GET a path as a load balancer does: plain HTTP, no redirect followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers
    finally:
        connection.close()


@pytest.fixture
def web(db, settings):
    """Start gunicorn on the test database; yield its port and a function that stops it and returns its output."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL, "DJANGO_DEBUG": "0"}
    env |= {"OPS_HTTPS": "1", "OPS_LOG_FORMAT": "json", "OPS_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(  # noqa: S603 - our own server with fixed arguments
        [sys.executable, "-m", "gunicorn", "-c", "ops_console/gunicorn_conf.py", "ops_console.asgi:application",
         "-k", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--graceful-timeout", "2"],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip

    def stop() -> str:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        return server.communicate(timeout=20)[0]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            _get(port, "/healthz")
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield port, stop
    finally:
        stop()


def test_it_serves_the_probes_over_http_and_writes_every_line_as_json(web):
    port, stop = web
    assert _get(port, "/healthz")[0] == 200
    assert _get(port, "/readyz")[0] == 200  # no router leads: reported, still ready
    status, headers = _get(port, "/no-such-page/?q=Garcia", **{"X-Request-ID": "probe-1"})
    redirect_status, _ = _get(port, "/ops/login/")
    output = stop()
    lines = [json.loads(line) for line in output.splitlines()]  # every line, or this fails
    assert (status, headers["X-Request-ID"], redirect_status) == (301, "probe-1", 301)
    assert {"gunicorn.error", "ops.request"} <= {line["logger"] for line in lines}
    requests = [line for line in lines if line["logger"] == "ops.request"]
    assert [(line["path"], line["status"]) for line in requests] == [("/no-such-page/", 301), ("/ops/login/", 301)]
    assert requests[0]["request_id"] == "probe-1" and "Garcia" not in output
    assert "uvicorn.access" not in {line["logger"] for line in lines}, output  # no access lines of its own

"""The real push stack for the websocket tests: the ASGI server (gunicorn + uvicorn worker) and the relay.

Both run as processes of their own on the test database and the tests' Redis database; tests
connect real websocket clients (``websockets``) to it and change visits through the actions.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings

from clinical.push.publish import PUSH_STREAM
from clinical.push.relay import GROUP
from tests.clinical.processes import database_url
from tests.search.stub_es import free_port

BASE_DIR = Path(__file__).resolve().parents[2]
HEARTBEAT_SECONDS = 1
LOGS = BASE_DIR / "test-artifacts" / "push-logs"


@dataclass
class PushServer:
    """The ASGI server and the relay, restartable (``kill_web``, ``start_web``)."""

    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ops_console.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_DEBUG": "0",
            "OPS_HTTPS": "0",
            "OPS_REQUIRE_2FA": "0",
            "OPS_PUSH_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }

    def _start(self, name: str, *command: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        with open(LOGS / f"{name}.log", "ab") as log:  # kept for a failing test's post-mortem
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our own commands
                command, cwd=BASE_DIR, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_web(self) -> None:
        """Start the ASGI server and wait until it answers."""
        self._start(
            "web", sys.executable, "-m", "gunicorn", "ops_console.asgi:application", "-k",
            "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
            "--graceful-timeout", "2",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/api/v1/ping", timeout=2)  # noqa: S310 - http://127.0.0.1
            except urllib.error.HTTPError:
                return  # an answer (404): serving
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError("the ASGI server did not answer within 30 s")

    def start_relay(self) -> None:
        """Start the push relay and wait until it reads the stream (its consumer group exists)."""
        r = redis.Redis.from_url(settings.REDIS_URL)
        r.delete(PUSH_STREAM)  # a group left by an earlier relay must not pass for this one's
        self._start("relay", sys.executable, "manage.py", "push_relay", "--name", "test-relay")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if any(group["name"] == GROUP.encode() for group in r.xinfo_groups(PUSH_STREAM)):
                    return
            except redis.ResponseError:  # no stream yet
                pass
            time.sleep(0.1)
        raise RuntimeError("the push relay did not start reading within 30 s")

    def kill(self, name: str) -> None:
        """Kill a process and its children at once (SIGKILL), as a crash of the host would."""
        process = self.processes.pop(name, None)
        if process is not None:
            os.killpg(process.pid, signal.SIGKILL)  # gunicorn's workers too, not only its master
            process.wait(10)

    def stop(self) -> None:
        """Stop everything (SIGTERM, then SIGKILL)."""
        for name, process in list(self.processes.items()):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            self.processes.pop(name)

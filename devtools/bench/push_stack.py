"""The processes under ``bench_push``: the ASGI server, the push relay and one router, as in production."""

import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import redis

from clinical.push.publish import PUSH_STREAM
from clinical.push.relay import GROUP as RELAY_GROUP
from devtools.bench import router as bench
from devtools.services import free_port, wait_until

BASE_DIR = Path(__file__).resolve().parents[2]


class Stack:
    """The ASGI server, the push relay and one router, on the bench database and Redis database."""

    def __init__(self, *, database_url: str, redis_url: str, workers: int):
        self.database_url, self.redis_url, self.workers = database_url, redis_url, workers
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs = Path(tempfile.mkdtemp(prefix="bench_push_"))
        self.env = {
            "DJANGO_DEBUG": "0", "OPS_HTTPS": "0", "OPS_REQUIRE_2FA": "0", "PYTHONUNBUFFERED": "1",
            # One load process makes every app's requests from one address: never throttle it.
            "API_RATE_PER_TOKEN": "1000000", "API_RATE_PER_ADDRESS": "1000000",
        }  # fmt: skip

    def start(self, r: redis.Redis) -> None:
        """Start the server and the relay, then the router; return once all three are serving."""
        r.delete(PUSH_STREAM)  # a group an earlier relay left must not pass for this one's
        self._spawn(
            "server", "-m", "gunicorn", "ops_console.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--backlog", "2048",
            "--keep-alive", "120", "--graceful-timeout", "5",
        )  # fmt: skip
        self._spawn("relay", "manage.py", "push_relay", "--name", "bench-relay")
        self._wait("server", self._serving, 60)
        self._wait("relay", lambda: self._relay_ready(r), 30)
        self.processes["router"] = bench._start_router(self.database_url, self.redis_url, **self.env)
        bench._wait_for_leader(r)

    def _spawn(self, name: str, *arguments: str) -> None:
        env = {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, **self.env}
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our own server and commands, fixed arguments
                [sys.executable, *arguments], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def _wait(self, name: str, ready, timeout: float) -> None:
        process = self.processes[name]
        started = wait_until(lambda: process.poll() is not None or ready(), timeout, every=0.2)
        if not started or process.poll() is not None:
            tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"bench_push: the {name} did not start within {timeout:.0f} s:\n{tail}")

    def _serving(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/ping", timeout=2)  # noqa: S310 - http://127.0.0.1
        except urllib.error.HTTPError:
            return True  # an answer (404): serving
        except (urllib.error.URLError, OSError):
            return False
        return True

    @staticmethod
    def _relay_ready(r: redis.Redis) -> bool:
        # The relay reads only what is published after its group exists: wait for the group.
        try:
            return any(group["name"] in (RELAY_GROUP, RELAY_GROUP.encode()) for group in r.xinfo_groups(PUSH_STREAM))
        except redis.ResponseError:
            return False

    def stop(self, name: str) -> None:
        """Stop one process: SIGTERM, then SIGKILL after 10 s."""
        process = self.processes.pop(name, None)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def tracebacks(self) -> int:
        """Return how many tracebacks the server and the relay have logged (errors the apps may not see)."""
        return sum(log.read_text(errors="replace").count("Traceback") for log in self.logs.iterdir())

    def stop_all(self, *, keep_logs: bool) -> None:
        """Stop every process still running; remove their logs unless asked to keep them."""
        for name in list(self.processes):
            self.stop(name)
        if keep_logs:
            return
        for log in self.logs.iterdir():
            log.unlink()
        self.logs.rmdir()

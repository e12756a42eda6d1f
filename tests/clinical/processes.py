"""Real processes for the routing tests: routers running ``manage.py run_router``, a private Redis."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from devtools.services import PrivateRedis, wait_until

__all__ = ["PrivateRedis", "database_url", "start_router", "wait_for"]

BASE_DIR = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 15.0, every: float = 0.1) -> bool:
    """Return True as soon as ``predicate()`` is true, False if it is not within ``timeout`` seconds."""
    return wait_until(predicate, timeout, every)


def database_url() -> str:
    """Return the URL of the test database, for a process of its own."""
    db = connection.settings_dict
    return f"postgres://{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_router(name: str, *, lease_seconds: int = 3, redis_url: str | None = None, **env) -> subprocess.Popen:
    """Start a router process on the test database and the tests' Redis (or ``redis_url``)."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url or settings.REDIS_URL,
        "ROUTING_LEASE_SECONDS": str(lease_seconds),
        "DJANGO_DEBUG": "0",
        **{key: str(value) for key, value in env.items()},
    }
    return subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "run_router", "--name", name],
        cwd=BASE_DIR,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

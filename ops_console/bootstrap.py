"""First-run set-up that must happen before Django can start.

Write a local ``.env`` with a generated ``DJANGO_SECRET_KEY`` (git-ignored, never committed)
and create the PostgreSQL database named by ``DATABASE_URL`` when it does not exist.
Run as ``python -m ops_console.bootstrap``.
"""

import base64
import os
import secrets
import sys
from pathlib import Path

import psycopg2
from psycopg2 import sql

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = BASE_DIR / ".env"


def ensure_local_secret(name: str, make) -> None:
    """Append ``name=<make()>`` to the local ``.env`` on first run, unless the environment or the file has it."""
    existing = ENV_FILE.read_text() if ENV_FILE.exists() else ""
    if os.environ.get(name) or f"{name}=" in existing:
        return
    with ENV_FILE.open("a") as env:
        env.write(f"{name}={make()}\n")
    ENV_FILE.chmod(0o600)
    print(f"bootstrap: wrote a new local {name} to {ENV_FILE.name}")


def ensure_secret_key() -> None:
    """Generate a local secret key on first run unless the environment provides one."""
    ensure_local_secret("DJANGO_SECRET_KEY", lambda: secrets.token_urlsafe(50))


def ensure_field_key() -> None:
    """Generate a local key for secrets at rest (``OPS_FIELD_KEY``, a Fernet key) on first run."""
    ensure_local_secret("OPS_FIELD_KEY", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())


def ensure_database() -> None:
    """Create the database from the settings when it is missing."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ops_console.settings")
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {"host": db["HOST"] or None, "port": db["PORT"] or None, "user": db["USER"] or None}
    params["password"] = db["PASSWORD"] or None
    connection = psycopg2.connect(dbname="postgres", **params)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            print(f"bootstrap: created database {db['NAME']}")
    connection.close()


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    ensure_secret_key()
    ensure_field_key()
    ensure_database()

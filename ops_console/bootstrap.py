"""First-run set-up that must happen before Django can start.

Write a local ``.env`` with a generated ``DJANGO_SECRET_KEY`` (git-ignored, never committed)
and create the PostgreSQL database named by ``DATABASE_URL`` when it does not exist.
Run as ``python -m ops_console.bootstrap``.
"""

import os
import secrets
import sys
from pathlib import Path

import psycopg2
from psycopg2 import sql

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = BASE_DIR / ".env"


def ensure_secret_key() -> None:
    """Generate a local secret key on first run unless the environment provides one."""
    existing = ENV_FILE.read_text() if ENV_FILE.exists() else ""
    if os.environ.get("DJANGO_SECRET_KEY") or "DJANGO_SECRET_KEY=" in existing:
        return
    with ENV_FILE.open("a") as env:
        env.write(f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\n")
    ENV_FILE.chmod(0o600)
    print(f"bootstrap: wrote a new local DJANGO_SECRET_KEY to {ENV_FILE.name}")


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
    ensure_database()

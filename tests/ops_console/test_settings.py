"""Settings come from the environment through typed helpers; production passes check --deploy."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core import env

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("helper", "value", "message"),
    [
        (lambda: env.env_bool("X_FLAG", False), "maybe", "X_FLAG must be a boolean"),
        (lambda: env.env_int("X_NUM", 1, minimum=1), "ten", "X_NUM must be an integer"),
        (lambda: env.env_int("X_NUM", 1, minimum=1), "0", "X_NUM must be at least 1"),
        (lambda: env.env_database("X_DB", "postgres://h/db"), "mysql://h/db", "X_DB must be a postgres:// URL"),
        (lambda: env.env_database("X_DB", "postgres://h/db"), "postgres://h/", "X_DB must name a database"),
        (lambda: env.env_redis_url("X_REDIS", "redis://h"), "http://h", "X_REDIS must be a redis:// URL"),
        (lambda: env.env_path_prefix("X_PATH", "ops/"), "admin/", "must not be served under /admin/"),
        (lambda: env.env_choice("X_POLICY", "a", ("a", "b")), "c", "X_POLICY must be one of a, b"),
    ],
)
def test_it_names_the_variable_when_a_value_is_bad(monkeypatch, helper, value, message):
    for name in ("X_FLAG", "X_NUM", "X_DB", "X_REDIS", "X_PATH", "X_POLICY"):
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        helper()


def test_it_parses_values_and_defaults(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    monkeypatch.setenv("X_DB", "postgresql://ops:s%40cret@db.internal:6543/console")
    monkeypatch.delenv("X_UNSET", raising=False)
    assert env.env_bool("X_FLAG", False) is True
    assert env.env_list("X_LIST", []) == ["a.example", "b.example"]
    assert env.env_int("X_UNSET", 7) == 7
    assert env.env_path_prefix("X_UNSET", "/internal/ops") == "internal/ops/"
    db = env.env_database("X_DB", "postgres://h/db")
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "ops", "s@cret", "db.internal", "6543", "console",
    )  # fmt: skip


def _manage(*args, **overrides):
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "OPS_"))}
    environment.update(overrides)
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=environment, capture_output=True, text=True, check=False
    )


def test_it_passes_check_deploy_in_the_production_configuration():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DJANGO_DEBUG="0", OPS_HTTPS="1", DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="ops.example.com",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off():
    # An empty variable wins over the local .env file, as any set variable does.
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "ops_console.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_it_runs_the_consoles_statements_without_jit_compilation(db):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"  # a short statement's compile cost more than it saved
        cursor.execute("SHOW pg_trgm.word_similarity_threshold")
        assert cursor.fetchone()[0] == "0.5"

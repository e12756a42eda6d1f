"""bench_push runs the real server, relay and router against a few app sockets, and reports what they received."""

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection


@pytest.fixture
def bench_database(django_db_setup, django_db_blocker):
    """Let the bench switch to its scratch database (``<test database>_push_bench``); switch back after."""
    test_database = connection.settings_dict["NAME"]
    with django_db_blocker.unblock():
        yield
        connection.close()
        connection.settings_dict["NAME"] = test_database


def test_it_prints_a_table_and_a_json_line_with_nothing_lost_or_duplicated(bench_database):
    out = StringIO()
    # The tests' own Redis database: the bench points the process at the one it is given.
    test_redis_db = settings.REDIS_URL.rsplit("/", 1)[1]
    call_command(
        "bench_push", "--clients", "20", "--rate", "2", "--duration", "5", "--workers", "1",
        "--redis-db", test_redis_db, stdout=out, stderr=StringIO(),
    )  # fmt: skip
    lines = out.getvalue().strip().splitlines()
    assert any(line.startswith("commit→receive p50/p95/p99") for line in lines)
    result = json.loads(lines[-1])
    assert result["bench"] == "push" and result["clients"] == 20
    assert result["visits_requested"] > 0 and result["messages_received"] > 0
    assert result["lost"] == 0 and result["duplicates"] == 0 and result["sockets_dropped"] == 0
    assert result["api_requests_per_s_polling"] > result["api_requests_per_s_push"] > 0

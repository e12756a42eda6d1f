"""bench_load: Locust's console users and the simulated apps against the real stack, on a copy of a data set.

A short run on a small data set of its own (``<test database>_loadsrc``, filled by generate_data):
the table, the JSON line, the CSVs and the plot, the copy dropped and nothing left running.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.db import connection

from devtools.bench import load as bench

ROOT = Path(__file__).resolve().parents[2]


def _admin(sql: str) -> list[tuple]:
    db = connection.settings_dict
    admin = psycopg2.connect(dbname="postgres", host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                             user=db["USER"] or None, password=db["PASSWORD"] or None)  # fmt: skip
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql)
        rows = cursor.fetchall() if cursor.description else []
    admin.close()
    return rows


@pytest.fixture
def data_set(django_db_setup):
    """A small generated data set of the test's own; dropped after, with any copy of it."""
    name = f"{connection.settings_dict['NAME']}_loadsrc"
    for suffix in ("_load", ""):
        _admin(f"DROP DATABASE IF EXISTS {name}{suffix} WITH (FORCE)")
    yield name
    for suffix in ("_load", ""):
        _admin(f"DROP DATABASE IF EXISTS {name}{suffix} WITH (FORCE)")


def _manage(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPS_LOG_LEVEL": "WARNING"}
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_it_measures_the_api_in_the_window_and_the_warm_up_apart(tmp_path):
    (tmp_path / "api-times-0.txt").write_text("99.0 900.00 200\n99.5 - 0\n100.0 10.00 200\n101.0 20.00 409\n")
    (tmp_path / "api-times-1.txt").write_text("102.0 30.00 500\n150.0 5.00 200\n")
    summaries = [{"simulation": "a", "errors": 3, "requested": 2}, {"simulation": "b", "errors": 1, "requested": 1}]
    merged = bench.merge_counts(summaries, sorted(tmp_path.glob("api-times-*.txt")), window=(100.0, 150.0))
    assert merged["api_ms"] == {"n": 3, "p50": 20.0, "p95": 30.0, "p99": 30.0, "max": 30.0}
    assert (merged["api_errors"], merged["api_error_kinds"]) == (1, {"500": 1})  # a 409 is expected, not an error
    warm = merged["api_warmup"]
    assert (warm["requests"], warm["n"], warm["errors"], warm["error_kinds"]) == (2, 1, 1, {"no answer": 1})
    # 4 counted by the simulations: 1 in the window, 1 in the warm-up, none after; 2 were their own.
    assert (merged["simulation_errors"], merged["requested"], merged["simulations"]) == (2, 3, 2)


def test_it_loads_the_console_and_the_api_and_reports_every_page_kind(data_set, tmp_path):
    made = _manage("generate_data", "--database", data_set, "--patients", "400", "--providers", "60",
                   "--visits", "1500", timeout=300)  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    redis_db = settings.REDIS_URL.rsplit("/", 1)[1]  # the tests' own: the bench flushes the one it is given

    done = _manage(
        "bench_load", "--database", data_set, "--users", "6", "--duration", "20", "--rate", "2",
        "--providers", "20", "--simulations", "2", "--web-workers", "1", "--redis-db", redis_db, "--warmup", "6",
        "--out", str(tmp_path), timeout=600,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("page kind") and any(line.startswith("API (the apps") for line in lines)
    result = json.loads(lines[-1])
    assert result["bench"] == "load" and result["users"] == 6 and result["console_errors"] == 0
    pages = {row["page"]: row for row in result["pages"]}
    assert sum(row["requests"] for name, row in pages.items() if not name.startswith(("API", "router"))) > 10
    assert pages["API (the apps, as they waited)"]["requests"] > 0 and result["api_p99_ms"] > 0
    assert result["warmup_s"] == 6 and result["api_warmup"]["requests"] > 0  # the providers signed in before
    assert any(line.startswith("API during the warm-up") for line in lines)
    assert pages["router: visit request -> first offer"]["requests"] > 0
    assert result["simulations"]["simulations"] == 2 and result["simulations"]["requested"] > 0
    assert (tmp_path / "load_pages.csv").read_text().startswith("page,requests,errors,p50_ms,p95_ms,p99_ms")
    assert (tmp_path / "load_stats_history.csv").exists()
    if result["plot"]:  # drawn by Debian's chromium when it is installed (make test installs it)
        assert Path(result["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _admin(f"SELECT 1 FROM pg_database WHERE datname = '{data_set}_load'") == []  # noqa: S608 - the copy is gone
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)  # noqa: S603, S607
    assert left.stdout == "", f"processes left: {left.stdout}"

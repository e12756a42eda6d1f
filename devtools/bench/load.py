"""``bench_load``: the console floor and the apps at once, on a copy of a data set.

- **The data.** A copy of the data set (``CREATE DATABASE <name>_load TEMPLATE <name>``), so the
  run's writes (visits, case notes, license notes, sessions) never change what ``bench_admin``
  reads; dropped after unless ``--keep``. Bench accounts per role and the records people open
  (``samples``) are taken from it.
- **The stack.** gunicorn with uvicorn workers (the console, the API and ``/ws/``), the push relay
  and both routers (leader and standby), as ``make run`` starts them, on the bench's own Redis
  database; sign-in without the second factor (its cost is at sign-in only), no API rate limits
  (one load process is every app's address).
- **The load.** ``simulate_traffic`` requests visits through the API at ``--rate`` a second, its
  providers answering offers and holding visits (sped up, so that they free up as fast as visits
  arrive), its apps on websockets; Locust (``devtools/load/locustfile.py``, headless, a process
  of its own) plays the console's users with their think times.
- **The figures.** Per page kind p50/p95/p99 and errors (Locust's CSV), the API's time as the
  apps waited (simulate_traffic), each visit's request→first offer from the rows (PostgreSQL's
  clocks), a CSV of every page kind and a PNG of latency over time (the console's own SVG chart,
  drawn by Debian's chromium through Playwright).
"""

import csv
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.db import connection

from clinical.routing import lease
from devtools.bench import harness
from devtools.services import free_port, wait_until
from devtools.simulate_http import latency_summary
from ops_console import roles

BASE_DIR = Path(__file__).resolve().parents[2]
LOCUSTFILE = BASE_DIR / "devtools" / "load" / "locustfile.py"
ROLES = {"support": roles.SUPPORT_AGENT, "clinops": roles.CLINICAL_OPS, "lead": roles.OPS_LEAD}
ACCOUNTS = {"support": 40, "clinops": 8, "lead": 2}  # one per simulated person at the default 50 users


@dataclass
class LoadConfig:
    users: int = 50
    duration: int = 600  # seconds of load, after the users have signed in
    rate: float = 40.0  # visit requests a second through the API
    spawn_rate: float = 5.0  # console users started a second
    providers: int = 1500  # providers the simulation plays
    patients: int = 3000  # patients it plays: enough that a free one is there for every arrival
    simulations: int = 4  # simulate_traffic processes side by side, each with its part of the people and rate
    speed: float = 10.0  # divides every delay of the simulated apps (visits of 1-2 min take 6-12 s)
    # Seconds before the console users start: the providers sign in over its first two thirds
    # (sockets, availability) and the queues fill. Measured apart, not in the run's figures.
    warmup: int = 60
    web_workers: int = 3
    out: Path = field(default_factory=lambda: BASE_DIR / "test-artifacts" / "load")
    seed: int = 7


# --- the data -------------------------------------------------------------------------------------


def copy_data_set(source: str) -> str:
    """Create ``<source>_load`` as a copy of the data set (replacing an earlier one); return its name."""
    target = f"{source}_load"
    connection.close()
    admin = harness.admin_connection()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')  # names checked by the harness
            try:
                cursor.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
            except psycopg2.errors.ObjectInUse as error:
                raise RuntimeError(
                    f"cannot copy {source!r} while something is connected to it (a running console or bench?): "
                    f"{str(error).strip()}"
                ) from None
    finally:
        admin.close()
    return target


def drop_database(name: str) -> None:
    connection.close()
    admin = harness.admin_connection()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def make_accounts(password: str, counts: dict[str, int] = ACCOUNTS) -> dict[str, list[str]]:
    """Create the bench's console accounts, per role (one password hash for all); return their names."""
    roles.sync_roles()
    hashed, users = make_password(password), get_user_model()
    names = {role: [f"load-{role}-{n:02d}" for n in range(1, count + 1)] for role, count in counts.items()}
    users.objects.filter(username__startswith="load-").delete()
    for role, usernames in names.items():
        created = users.objects.bulk_create(
            [users(username=name, password=hashed, is_staff=True, email=f"{name}@ops.example") for name in usernames]
        )
        Group.objects.get(name=ROLES[role]).user_set.add(*created)
    return names


# (what, column, table, how many): sampled by block (TABLESAMPLE SYSTEM), so that a 10M-row table
# costs what a small one does; the share of blocks read is sized from the table's row estimate.
SAMPLES = [
    ("surnames", "DISTINCT last_name", "clinical_patient", 200),
    ("phones", "phone", "clinical_patient", 200),
    ("patients", "id", "clinical_patient", 500),
    ("visits", "id", "clinical_visit", 500),
    ("cases", "id", "support_supportcase", 200),
    ("licenses", "id", "clinical_providerlicense", 200),
    ("npis", "npi", "clinical_provider", 200),
]


def samples() -> dict[str, list]:
    """Return the records the simulated people open, sampled from the data set."""
    found = {}
    with connection.cursor() as cursor:
        for name, column, table, wanted in SAMPLES:
            cursor.execute("SELECT greatest(reltuples, 1) FROM pg_class WHERE oid = %s::regclass", [table])
            percent = min(100.0, max(0.01, 100.0 * wanted * 4 / cursor.fetchone()[0]))
            cursor.execute(f"SELECT {column} FROM {table} TABLESAMPLE SYSTEM (%s) LIMIT %s", [percent, wanted])  # noqa: S608 - fixed names
            found[name] = [row[0] for row in cursor.fetchall()]
    found["phones"] = [p for p in found["phones"] if p and p.startswith("+1") and len(p) == 12]
    found["phones"] = [f"({p[2:5]}) {p[5:8]}-{p[8:]}" for p in found["phones"]]  # as callers read them out
    empty = [name for name, values in found.items() if not values]
    if empty:
        raise RuntimeError(f"the data set has no {', '.join(empty)}: fill it with generate_data first")
    return found


# --- the processes --------------------------------------------------------------------------------


class Stack:
    """The web server, the push relay and two routers on the copy; the simulation and Locust after."""

    def __init__(self, *, database_url: str, redis_url: str, config: LoadConfig):
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = config.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {
            **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DJANGO_DEBUG": "0",
            "OPS_HTTPS": "0", "OPS_REQUIRE_2FA": "0", "PYTHONUNBUFFERED": "1", "OPS_LOG_LEVEL": "WARNING",
            "API_RATE_PER_TOKEN": "1000000", "API_RATE_PER_ADDRESS": "1000000",
            "OPS_STATIC_ROOT": str(config.out / "static"),  # served by whitenoise, as make run does
        }  # fmt: skip

    def start(self) -> None:
        """Start the server, relay and routers; return once the server answers and a router leads."""
        venv = Path(sys.executable).parent
        subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=BASE_DIR, env=self.env,
            check=True, timeout=300,
        )  # fmt: skip
        self.spawn(
            "web", str(venv / "gunicorn"), "-c", "ops_console/gunicorn_conf.py", "ops_console.asgi:application",
            "-k", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.config.web_workers), "--backlog", "2048", "--keep-alive", "120",
            "--graceful-timeout", "5",
        )  # fmt: skip
        self.spawn("push-relay", sys.executable, "manage.py", "push_relay", "--name", "load-relay")
        for name in ("load-router-1", "load-router-2"):
            self.spawn(name, sys.executable, "manage.py", "run_router", "--name", name)
        if not wait_until(self._serving, 60, every=0.3):
            raise RuntimeError(f"bench_load: the web server did not answer within 60 s:\n{self.log_tail('web')}")
        if not wait_until(self._leading, 30, every=0.3):
            raise RuntimeError(f"bench_load: no router led within 30 s:\n{self.log_tail('load-router-1')}")

    def spawn(self, name: str, *argv: str, env: dict | None = None) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own server and commands
                argv, cwd=BASE_DIR, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = process
        return process

    def _serving(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/healthz", timeout=2)  # noqa: S310 - http://127.0.0.1
        except (urllib.error.URLError, OSError):
            return False
        return True

    @staticmethod
    def _leading() -> bool:
        held = lease.current()
        return bool(held and held["live"] and held["holder"].startswith("load-router-"))

    def log_tail(self, name: str, size: int = 2000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def tracebacks(self) -> int:
        """Return how many tracebacks the server, relay and routers logged (errors no client saw)."""
        names = ("web", "push-relay", "load-router-1", "load-router-2")
        return sum(self.log_tail(name, size=10**9).count("Traceback") for name in names)

    def stop_all(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after 10 s."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


def run(stack: Stack, config: LoadConfig, samples_path: Path) -> tuple[dict, dt.datetime, dt.datetime]:
    """Run the simulations and Locust side by side; return the simulations' counts and the load's window.

    One simulate_traffic process sends its requests one after another (about 60 a second here):
    ``simulations`` of them, each playing its own part of the patients and providers at its share
    of the rate, keep 40 visits a second going. They start ``warmup`` seconds before the console
    users, their providers signing in over it; the window measured starts once the users have
    signed in too. The API's figures before it are reported apart (``api_warmup``).
    """
    ramp = config.users / config.spawn_rate + 5  # the users sign in before the measured minutes start
    n = config.simulations
    simulations = {
        f"simulate_traffic-{k}": stack.spawn(
            f"simulate_traffic-{k}",
            sys.executable,
            "manage.py",
            "simulate_traffic",
            "--base-url",
            stack.url,
            "--rate",
            str(config.rate / n),
            "--providers",
            str(config.providers // n),
            "--patients",
            str(config.patients // n),
            "--part",
            f"{k}/{n}",
            "--speed",
            str(config.speed),
            "--visit-minutes",
            "1-2",
            "--duration",
            str(config.warmup + config.duration + ramp),
            "--sign-in-seconds",
            f"{config.warmup * 2 / 3:g}",
            "--seed",
            str(config.seed + k),
            "--json",
            "--api-times",
            str(stack.logs / f"api-times-{k}.txt"),
        )  # fmt: skip
        for k in range(n)
    }
    locust_env = {**stack.env, "OPS_LOAD_SAMPLES": str(samples_path), "PYTHONPATH": str(BASE_DIR)}
    _keep_running(stack, simulations, config.warmup)
    locust = stack.spawn(
        "locust", str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless",
        "--users", str(config.users), "--spawn-rate", str(config.spawn_rate),
        "--run-time", f"{int(config.duration + ramp)}s",
        "--host", stack.url, "--csv", str(config.out / "load"), "--csv-full-history", "--only-summary",
        "--stop-timeout", "10", "--loglevel", "WARNING", "--exit-code-on-error", "0", "--reset-stats",
        env=locust_env,
    )  # fmt: skip
    _keep_running(stack, {"locust": locust, **simulations}, ramp)  # Locust resets its figures once all signed in
    began = _db_now()
    timeout = config.duration + 120
    for name, process in (("locust", locust), *simulations.items()):
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"bench_load: {name} still running after {timeout:.0f} s:\n{stack.log_tail(name)}"
            ) from None
        if process.returncode:
            raise RuntimeError(f"bench_load: {name} exited with {process.returncode}:\n{stack.log_tail(name)}")
    ended = _db_now()
    summaries = [_summary(stack, name) for name in simulations]
    window = (began.timestamp(), ended.timestamp())
    return merge_counts(summaries, sorted(stack.logs.glob("api-times-*.txt")), window=window), began, ended


def _keep_running(stack: Stack, processes: dict[str, subprocess.Popen], seconds: float) -> None:
    """Wait ``seconds``; fail at once if one of ``processes`` ends meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                ended = f"bench_load: {name} exited with {process.returncode} before the load began"
                raise RuntimeError(f"{ended}:\n{stack.log_tail(name)}")
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))


def _summary(stack: Stack, name: str) -> dict:
    lines = stack.log_tail(name, 10**7).splitlines()
    found = next((json.loads(line) for line in reversed(lines) if line.startswith('{"simulation"')), None)
    if found is None:
        raise RuntimeError(f"bench_load: {name} printed no summary:\n{stack.log_tail(name)}")
    return found


def merge_counts(summaries: list[dict], api_time_files, *, window: tuple[float, float]) -> dict:
    """Add the simulations' counts up; the API's figures come from every request (``simulate_traffic --api-times``).

    ``window`` (Unix seconds, start and end) is the load measured: ``api_ms`` and ``api_errors``
    are the requests started in it, ``api_warmup`` those started before it (sign-in and warm-up).
    ``simulation_errors`` are the errors the simulations counted that were not an API answer's
    (an exception in a simulated app).
    """
    merged: dict = {}
    for summary in summaries:
        for name, value in summary.items():
            if isinstance(value, int) and not isinstance(value, bool):
                merged[name] = merged.get(name, 0) + value
    calls = read_api_log(api_time_files)
    start, end = window
    measured = api_figures([call for call in calls if start <= call[0] < end])
    before = api_figures([call for call in calls if call[0] < start])
    after = api_figures([call for call in calls if call[0] >= end])  # signing off once the load stopped
    merged["api_ms"] = {name: measured[name] for name in ("n", "p50", "p95", "p99", "max")}
    merged["api_errors"], merged["api_error_kinds"] = measured["errors"], measured["error_kinds"]
    merged["api_warmup"] = before
    merged["simulation_errors"] = max(
        merged.get("errors", 0) - measured["errors"] - before["errors"] - after["errors"], 0
    )
    merged["simulations"] = len(summaries)
    return merged


def read_api_log(paths) -> list[tuple[float, float | None, int]]:
    """Return every request of the simulations' ``--api-times`` files: (start, ms or None, status)."""
    calls = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                at, waited, status = line.split()
                calls.append((float(at), None if waited == "-" else float(waited), int(status)))
    return calls


def api_figures(calls: list[tuple[float, float | None, int]]) -> dict:
    """Return the answered requests' count and percentiles, and the errors by kind, as simulate_traffic counts them.

    An error is a request nothing answered (``no answer``) or answered with neither a 2xx nor a
    409 (a conflict the apps expect: an offer already taken, a provider already busy).
    """
    kinds: dict[str, int] = {}
    for _, _, status in calls:
        if status != 409 and not 200 <= status < 300:
            kind = "no answer" if status == 0 else str(status)
            kinds[kind] = kinds.get(kind, 0) + 1
    figures = latency_summary([waited for _, waited, _ in calls if waited is not None])
    return {**figures, "requests": len(calls), "errors": sum(kinds.values()), "error_kinds": kinds}


def _db_now() -> dt.datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def new_password() -> str:
    return secrets.token_urlsafe(18)


# --- the figures ----------------------------------------------------------------------------------

PERCENTILES = ("50%", "95%", "99%")


def page_kinds(stats_csv: Path) -> list[dict]:
    """Return one row per page kind from Locust's stats CSV (sign-in excluded), slowest p95 first."""
    rows = []
    with stats_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] in ("Aggregated", "sign in", "sign-in page") or not row["Request Count"]:
                continue
            rows.append({
                "page": row["Name"], "requests": int(row["Request Count"]), "errors": int(row["Failure Count"]),
                "p50_ms": _ms(row["50%"]), "p95_ms": _ms(row["95%"]), "p99_ms": _ms(row["99%"]),
            })  # fmt: skip
    return sorted(rows, key=lambda row: -(row["p95_ms"] or 0))


def _ms(value: str) -> float | None:
    return None if value in ("", "N/A") else round(float(value), 1)


REQUEST_TO_OFFER_SQL = """
    SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY wait)
    FROM (SELECT extract(epoch FROM (SELECT min(o.offered_at) FROM clinical_offer o WHERE o.visit_id = v.id)
                         - v.requested_at) * 1000 AS wait
          FROM clinical_visit v WHERE v.requested_at >= %s AND v.requested_at < %s) AS waits
    WHERE wait IS NOT NULL
"""


def request_to_offer(began: dt.datetime, ended: dt.datetime) -> dict:
    """Return, from the rows, each visit requested in the window's time to its first offer (ms)."""
    with connection.cursor() as cursor:
        cursor.execute(REQUEST_TO_OFFER_SQL, [began, ended])
        offered, (p50, p95, p99) = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM clinical_visit WHERE requested_at >= %s AND requested_at < %s", [began, ended]
        )
        requested = cursor.fetchone()[0]
    rounded = [None if value is None else round(value, 1) for value in (p50, p95, p99)]
    return {
        "requested": requested,
        "offered": offered,
        "p50_ms": rounded[0],
        "p95_ms": rounded[1],
        "p99_ms": rounded[2],
    }


def latency_over_time(history_csv: Path) -> tuple[list[dt.datetime], dict[str, list[float | None]]]:
    """Return the console's aggregated p50/p95/p99 per second of the run (Locust's history CSV)."""
    times, series = [], {p: [] for p in PERCENTILES}
    with history_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] != "Aggregated":
                continue
            times.append(dt.datetime.fromtimestamp(int(row["Timestamp"]), tz=dt.UTC))
            for p in PERCENTILES:
                series[p].append(_ms(row[p]))
    return times, series


def plot(history_csv: Path, png: Path) -> str | None:
    """Draw latency over time as a PNG (the console's SVG chart, rasterized by chromium); return why not, or None."""
    from oversight.charts import COLORS, Series, line_chart

    times, series = latency_over_time(history_csv)
    if len(times) < 2:
        return "too short a run to plot"
    svg = line_chart(
        title="Console pages, every kind together: response time over the run (Locust, 10 s window)",
        times=times, value_label="ms", time_format="%H:%M:%S",
        tick_every=dt.timedelta(minutes=1) if len(times) > 180 else dt.timedelta(seconds=15),
        series=[Series(f"p{p.rstrip('%')}", series[p], COLORS[i]) for i, p in enumerate(PERCENTILES)],
    )  # fmt: skip
    png.with_suffix(".svg").write_text(str(svg))
    page = png.with_suffix(".html")  # the chart with the console's chart styles, for chromium to draw
    page.write_text(
        "<!doctype html><meta charset='utf-8'><style>body{margin:0;background:#fff;font-family:sans-serif}"
        "svg{width:1140px;height:390px} text{font-size:11px;fill:#444} .ops-chart-title{font-size:13px;"
        f"font-weight:600;fill:#222}} .ops-chart-axis-label{{font-size:12px;fill:#222}}</style>{svg}"
    )
    try:
        return _rasterize(page, png)
    finally:
        page.unlink()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip


def _rasterize(page: Path, png: Path) -> str | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "Playwright is not installed (make deps-test): the chart is left as SVG"
    if not CHROMIUM.exists():
        return f"no {CHROMIUM} (apt-get install chromium): the chart is left as SVG"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1140, "height": 390})
            tab.goto(page.as_uri())
            tab.locator("svg").screenshot(path=str(png))
        finally:
            browser.close()
    return None


def pages_csv(rows: list[dict], path: Path) -> None:
    """Write the per-kind figures (with the API and the router) as a CSV."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["page", "requests", "errors", "p50_ms", "p95_ms", "p99_ms"])
        writer.writeheader()
        writer.writerows(rows)


def table_rows(rows: list[dict]) -> list[list]:
    header = ["page kind", "requests", "errors", "p50 ms", "p95 ms", "p99 ms"]
    return [header] + [[r["page"], r["requests"], r["errors"], r["p50_ms"], r["p95_ms"], r["p99_ms"]] for r in rows]

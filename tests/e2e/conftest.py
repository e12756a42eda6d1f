"""The real stack for the browser journeys, and Debian's chromium driven by Playwright.

One stack per run of this package: a fresh database with the demo seed, gunicorn with uvicorn
workers (ops_console/asgi.py; debug off, whitenoise, debug toolbar for engineers), the router, the
push relay, the search worker and the oversight worker, on a Redis database of their own. Its
alerts go to a real SMTP server and a webhook receiver that this process runs. The search worker
feeds a stub Elasticsearch node (searches stay on PostgreSQL): that keeps the outbox and its worker
in the loop without a JVM. Tests talk to it over HTTP only; when they check a row they read the
stack's database with psycopg2, never through pytest-django.
"""

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
import redis
from django.conf import settings
from playwright.sync_api import expect, sync_playwright

from search.documents import DOCUMENTS
from tests.oversight.servers import Inbox, Receiver, smtp_server, webhook_receiver
from tests.search.stub_es import StubNode, free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Smaller than `make run`'s demo (10,000 visits): seeds in a few seconds, still every kind of row.
SEED_SIZE = ["--providers", "150", "--patients", "1000", "--visits", "3000"]
# Refusals of the strict Content-Security-Policy that cost nothing but looks: django-simple-history's
# history list has `<p class="paginator" style="border-top: 0">`; refused, the paginator keeps a border.
KNOWN_CSP_REFUSALS = [("/history/", "Applying inline style")]
READY_SECONDS = 60
STOP_SECONDS = 10
# The stack's own Redis database: never the console's (0) nor the unit tests' (OPS_TEST_REDIS_DB).
REDIS_DB = int(os.environ.get("OPS_E2E_REDIS_DB", "9"))
# Read at collection, before pytest-django renames the database to its test database.
_DATABASE = dict(settings.DATABASES["default"])

_phase_reports = pytest.StashKey[dict]()
# Pages refresh by polling every few seconds and the machine is shared: wait up to 10 s by default.
expect.set_options(timeout=10_000)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, so its fixtures know at teardown whether it failed."""
    report = yield
    item.stash.setdefault(_phase_reports, {})[report.when] = report
    return report


def _failed(request) -> bool:
    reports = request.node.stash.get(_phase_reports, {})
    return any(report.failed for report in reports.values())


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """The running processes, where they answer, and how to read the stack's database."""

    url: str
    env: dict[str, str]
    db: dict[str, str]
    logs: Path
    search_node: StubNode
    inbox: Inbox  # the alert e-mails, received by a real SMTP server in this process
    webhook: Receiver  # the alert webhook's signed POSTs, received by a real HTTP server here
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def console(self) -> str:
        """Return the console's URL, e.g. ``http://127.0.0.1:8765/ops/``."""
        return f"{self.url}/{settings.OPS_ADMIN_PATH}"

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run a management command against the stack and return its output; raise if it fails."""
        done = subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self, name: str, *command: str) -> subprocess.Popen:
        """Start ``command`` in its own process group, its output in ``logs/<name>.log``."""
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - the stack's own commands
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes[name] = process
        return process

    def stop(self, name: str, sig: int = signal.SIGTERM, *, seconds: float = STOP_SECONDS) -> None:
        """Signal the process group of ``name`` and wait for it; kill it if it lingers."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def check_running(self) -> None:
        """Fail with the log's tail if a process of the stack has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"{name} exited with {process.returncode}:\n{tail}")

    def wait_for_document(self, document: str, object_id: int, seconds: float = 15) -> dict:
        """Return the search document the worker sent for the record, waiting for it if need be."""
        docs = self.search_node.docs[DOCUMENTS[document].alias]
        deadline = time.monotonic() + seconds
        while str(object_id) not in docs:
            if time.monotonic() > deadline:
                pytest.fail(f"the search worker did not index {document} {object_id} within {seconds} s")
            time.sleep(0.2)
        return docs[str(object_id)]

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        """Return the rows of one statement run on the stack's database (its own connection)."""
        with psycopg2.connect(**self.db) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else []
        connection.close()
        return rows


def _connect_kwargs(name: str) -> dict[str, str]:
    keys = {"NAME": "dbname", "USER": "user", "PASSWORD": "password", "HOST": "host", "PORT": "port"}
    kwargs = {arg: _DATABASE[key] for key, arg in keys.items() if _DATABASE.get(key)}
    return {**kwargs, "dbname": name}


def _database_url(db: dict[str, str]) -> str:
    auth = db.get("user", "") + (f":{db['password']}" if db.get("password") else "")
    netloc = (f"{auth}@" if auth else "") + db.get("host", "") + (f":{db['port']}" if db.get("port") else "")
    return f"postgres://{netloc}/{db['dbname']}"


def _admin(sql: str) -> None:
    """Run ``sql`` (CREATE/DROP DATABASE) on the server's maintenance database."""
    connection = psycopg2.connect(**_connect_kwargs("postgres"))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close()


WEBHOOK_SECRET = secrets.token_urlsafe(32)


def _stack_env(db: dict[str, str], static_root: str, search_url: str, smtp_port: int, hook: str) -> dict[str, str]:
    """Return the environment of every stack process: production-like serving on plain HTTP, alerts
    sent to the SMTP server and webhook receiver this process runs, checked every 2 s.
    """
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ops_console.settings",
        "DATABASE_URL": _database_url(db),
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "0",
        "OPS_HTTPS": "0",
        "OPS_DEBUG_TOOLBAR": "1",
        "OPS_REQUIRE_2FA": "0",
        "OPS_STATIC_ROOT": static_root,
        "ELASTICSEARCH_URL": search_url,
        "SEARCH_BACKEND": "postgres",
        "PYTHONUNBUFFERED": "1",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        "OPS_ALERT_EMAILS": "oncall@ops.example",
        "OPS_ALERT_WEBHOOK_URL": hook,
        "OPS_ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OPS_OVERSIGHT_TICK_SECONDS": "2",
    }


def _wait_until_ready(stack: Stack) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while True:
        stack.check_running()
        try:
            with urllib.request.urlopen(f"{stack.console}login/", timeout=5) as response:  # noqa: S310 - http://127.0.0.1
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the console did not answer within {READY_SECONDS} s (logs in {stack.logs})")
        time.sleep(0.3)


def _prepare(stack: Stack) -> None:
    """Migrate and seed the fresh database, collecting static files meanwhile."""
    collect = subprocess.Popen(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=stack.env
    )
    stack.manage("migrate", "--noinput", "-v0")
    stack.manage("seed_demo", *SEED_SIZE)
    if collect.wait(120):
        pytest.fail("collectstatic failed")


def _serve(stack: Stack) -> None:
    port = free_port()
    stack.url = f"http://127.0.0.1:{port}"
    manage = [sys.executable, "manage.py"]
    stack.start(
        "web", sys.executable, "-m", "gunicorn", "ops_console.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "--access-logfile", "-", "--graceful-timeout", "5",
    )  # fmt: skip
    stack.start("router", *manage, "run_router", "--name", "e2e-router")
    stack.start("push-relay", *manage, "push_relay", "--name", "e2e-relay")
    stack.start("search-worker", *manage, "search_worker")
    stack.start("oversight", *manage, "run_oversight", "--name", "e2e-oversight")
    _wait_until_ready(stack)


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    """Start the whole console on a fresh seeded database; stop it and drop the database after."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}): `make test` as root installs it")
    name = f"{_DATABASE['NAME']}_e2e_{os.getpid()}"
    db = _connect_kwargs(name)
    logs = ARTIFACTS / "e2e-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in [*logs.glob("*.log"), *ARTIFACTS.glob("test_it_*")]:  # a previous run's
        old.unlink()
    aliases = {doc.alias for doc in DOCUMENTS.values()}
    redis_client = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}")
    with (
        tempfile.TemporaryDirectory(prefix="ops-e2e-static-") as static_root,
        StubNode(free_port(), aliases) as node,
        smtp_server() as (inbox, smtp_port),
        webhook_receiver() as (webhook, hook),
    ):
        search_url = f"http://127.0.0.1:{node.server.server_address[1]}"
        env = _stack_env(db, static_root, search_url, smtp_port, hook)
        stack = Stack(url="", env=env, db=db, logs=logs, search_node=node, inbox=inbox, webhook=webhook)
        _admin(f'DROP DATABASE IF EXISTS "{name}"')
        _admin(f'CREATE DATABASE "{name}"')
        redis_client.flushdb()
        try:
            _prepare(stack)
            _serve(stack)
            yield stack
        finally:
            for process in list(stack.processes):
                stack.stop(process)
            redis_client.flushdb()
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def traffic(stack) -> Iterator:
    """Return a function that starts the traffic simulation; it stops after the test as on Ctrl-C.

    Patients are located anywhere, also where no simulated provider practises, so that some wait.
    """

    def start() -> None:
        stack.start(
            "traffic", sys.executable, "manage.py", "simulate_traffic", "--gentle", "--all-states",
            "--rate", "1", "--seed", "7", "--base-url", stack.url,
        )  # fmt: skip

    yield start
    # SIGINT, as Ctrl-C: the simulation withdraws its waiting visits and revokes its API clients.
    stack.stop("traffic", signal.SIGINT, seconds=30)


# --- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser(stack):
    """Return Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """Signs personas in, each in a browser context of its own, and remembers the last page used."""

    def __init__(self, browser, stack: Stack):
        self.browser, self.stack = browser, stack
        self.pages: list = []
        self.csp_violations: list[str] = []

    def sign_in(self, username: str):
        """Return a page signed in as ``username`` through the console's login form."""
        context = self.browser.new_context(base_url=self.stack.url, viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("console", self._watch)
        self.pages.append(page)
        page.goto(f"{self.stack.console}login/")
        page.fill("#id_username", username)
        page.fill("#id_password", settings.OPS_DEMO_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        return page

    def _watch(self, message) -> None:
        if message.type != "error" or "Content Security Policy" not in message.text:
            return
        url = message.location.get("url", "")
        if not any(part in url and text in message.text for part, text in KNOWN_CSP_REFUSALS):
            self.csp_violations.append(f"{url}: {message.text}")

    @property
    def last_page(self):
        """Return the page the journey used last."""
        return self.pages[-1] if self.pages else None


@pytest.fixture
def console(request, browser, stack) -> Iterator[Console]:
    """Open the console for a journey; save its last page (and on failure its HTML) under test-artifacts/."""
    stack.check_running()
    console = Console(browser, stack)
    yield console
    page = console.last_page
    if page is not None and not page.is_closed():
        name = request.node.name
        page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        if _failed(request):
            page.screenshot(path=ARTIFACTS / f"{name}-failure.png", full_page=True)
            (ARTIFACTS / f"{name}-failure.html").write_text(page.content())
    for page in console.pages:
        page.context.close()

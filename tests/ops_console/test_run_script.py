"""`make run`'s supervisor, ops_console/bin/run.sh, run for real on a database of its own.

Each test starts run.sh (no simulation, one web worker) on a free port with DATABASE_URL on
``ops_runsh`` and Redis database 8, then kills, stops or interrupts it the way a person or the OS
would. The processes it started are found by a token in their environment (``/proc/<pid>/environ``),
so a test sees every one of them, gunicorn's workers included, and nothing of anybody else's.
OPS_RUN_DIR points run.sh's access log and its list of started services at the test's temporary
directory: stopping never touches the machine's PostgreSQL or Redis.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import redis
from django.conf import settings

from tests.search.stub_es import free_port

ROOT = Path(__file__).resolve().parents[2]
RUN_SH = ROOT / "ops_console" / "bin" / "run.sh"
DATABASE = "ops_runsh"
DATABASE_URL = f"postgres://127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/8"
STOP_SECONDS = 6  # run.sh's SIGTERM grace before SIGKILL
READY_SECONDS = 60


def _admin(sql: str) -> None:
    connection = psycopg2.connect(host="127.0.0.1", port=5432, dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close()


@pytest.fixture(scope="module")
def runsh_database(tmp_path_factory) -> Iterator[Path]:
    """Create and migrate the console's database and collect the static files, as `make run`'s
    set-up would; yield the static root; drop the database (and empty the Redis database) after.
    """
    _admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    _admin(f"CREATE DATABASE {DATABASE}")
    static_root = tmp_path_factory.mktemp("runsh-static")
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "OPS_STATIC_ROOT": str(static_root)}
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=300
        )
    yield static_root
    _admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    redis.Redis.from_url(REDIS_URL).flushdb()


@dataclass
class Console:
    """run.sh running, where it answers, and how to find what it started."""

    process: subprocess.Popen
    token: str
    url: str
    output: Path

    @property
    def login(self) -> str:
        return f"{self.url}/{settings.OPS_ADMIN_PATH}login/"

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        """Return the end of run.sh's output without the web server's request lines."""
        kept = [line for line in self.log().splitlines() if '"ops.request"' not in line]
        return "\n".join(kept[-lines:])

    def children(self) -> dict[int, str]:
        """Return pid -> command line of every live process run.sh started (not run.sh itself)."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.process.pid:
                continue
            try:
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if f"OPS_RUNSH_TEST={self.token}".encode() in environ.split(b"\0") and state != "Z":
                found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        return found

    def child(self, fragment: str) -> int:
        """Return the pid of the one child whose command line contains ``fragment``."""
        pids = [pid for pid, cmdline in self.children().items() if fragment in cmdline]
        assert len(pids) == 1, f"{fragment!r}: {pids} in {self.children()}"
        return pids[0]

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        connection = psycopg2.connect(host="127.0.0.1", port=5432, dbname=DATABASE)
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        connection.close()
        return rows

    def routers(self) -> dict[str, tuple[int, bool]]:
        """Return name -> (pid, is_leader) of the routers that reported in the last two seconds."""
        rows = self.query(
            "SELECT name, pid, is_leader FROM clinical_routerhealth WHERE seen_at > now() - interval '2 seconds'"
        )
        return {name: (pid, leader) for name, pid, leader in rows}

    def lease(self) -> tuple[str, int]:
        """Return the holder and epoch of a live routing lease ('' and the epoch if it has run out)."""
        [(holder, epoch, live)] = self.query(
            "SELECT holder, epoch, coalesce(expires_at > clock_timestamp(), false) FROM clinical_routerlease"
        )
        return (holder if live else "", epoch)

    def stopped_within(self, seconds: float) -> float:
        """Return how long run.sh took to exit; fail if it takes longer than ``seconds``."""
        began = time.monotonic()
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run.sh still running after {seconds} s:\n{self.log_tail()}")
        return time.monotonic() - began


def _answers(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - http://127.0.0.1
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def _eventually(condition: Callable[[], object], seconds: float, what: str, console: Console) -> object:
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}\n--- run.sh output ---\n{console.log_tail()}")
        time.sleep(0.2)
    return result


def _start(tmp_path: Path, static_root: Path, *, port: int | None = None) -> Console:
    # A fresh lease and no router health left from the previous test: its routers may have been killed.
    _admin_db("UPDATE clinical_routerlease SET holder = '', expires_at = NULL")
    _admin_db("DELETE FROM clinical_routerhealth")
    redis.Redis.from_url(REDIS_URL).flushdb()
    token, port = secrets.token_hex(8), port or free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ops_console.settings",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "SIMULATE": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "OPS_RUN_DIR": str(tmp_path),
        "OPS_STATIC_ROOT": str(static_root),
        "OPS_RUNSH_TEST": token,
        "PYTHONUNBUFFERED": "1",
        # The shortest lease: a killed leader's is taken over within 2 s.
        "ROUTING_LEASE_SECONDS": "2",
    }
    output = tmp_path / "run.log"
    with output.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - the script under test
            [str(RUN_SH)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Console(process=process, token=token, url=f"http://127.0.0.1:{port}", output=output)


def _admin_db(sql: str) -> None:
    with psycopg2.connect(host="127.0.0.1", port=5432, dbname=DATABASE) as connection:
        connection.cursor().execute(sql)
    connection.close()


def _ready(console: Console) -> None:
    """Wait until the console answers and both routers report, one of them leading."""
    _eventually(lambda: _answers(console.login) == 200, READY_SECONDS, "the console answers", console)
    _eventually(
        lambda: len(console.routers()) == 2 and console.lease()[0], READY_SECONDS, "two routers, one leads", console
    )


@contextmanager
def _cleaned_up(console: Console) -> Iterator[Console]:
    """Yield ``console``; then stop run.sh, kill whatever it left, and fail if it left anything."""
    try:
        yield console
    finally:
        if console.process.poll() is None:
            console.process.terminate()
            try:
                console.process.wait(STOP_SECONDS + 10)
            except subprocess.TimeoutExpired:
                os.killpg(console.process.pid, signal.SIGKILL)
                console.process.wait()
        left = console.children()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"run.sh left processes behind: {left}"


@pytest.fixture
def console(runsh_database, tmp_path) -> Iterator[Console]:
    """Start run.sh and wait until it serves; after the test, clean up (and fail if anything was left)."""
    with _cleaned_up(_start(tmp_path, runsh_database)) as started:
        _ready(started)
        yield started


def test_it_restarts_a_killed_router_while_the_other_leads_and_the_web_serves(console):
    leader, epoch = console.lease()
    leader_pid = console.routers()[leader][0]
    assert leader_pid in console.children()
    statuses, polling = [], threading.Event()

    def poll():
        while not polling.is_set():
            statuses.append(_answers(console.login))
            time.sleep(0.2)

    standby = next(name for name in console.routers() if name != leader)

    def taken_over():
        holder, now = console.lease()
        routers = console.routers()
        return now == epoch + 1 and holder == standby and routers[holder][0] in console.children()

    def both_back():
        routers, children = console.routers(), console.children()
        return (
            len(routers) == 2
            and routers[leader][0] != leader_pid
            and all(pid in children for pid, _ in routers.values())
            and [leading for _, leading in routers.values()].count(True) == 1
        )

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        os.kill(leader_pid, signal.SIGKILL)
        # The lease passes on when it runs out, to the standby: the restarted router, back under the
        # old holder's name, waits one more lease period (clinical.routing.lease).
        _eventually(taken_over, 10, f"the standby {standby} takes the lease", console)
        _eventually(both_back, 15, f"{leader} restarted: one router leads, the other stands by", console)
        time.sleep(1)  # the web server keeps answering a little after the restart too
    finally:
        polling.set()
        poller.join()
    assert f"{leader} exited (code 137, SIGKILL); restarting in 1 s" in console.log()
    assert len(statuses) >= 10
    assert set(statuses) == {200}, statuses


def test_it_stops_every_process_it_started_on_sigterm(console):
    children = console.children()
    assert len(children) >= 7, children  # gunicorn master and worker, relay, two routers, two oversight

    console.process.send_signal(signal.SIGTERM)

    assert console.stopped_within(STOP_SECONDS + 4) < STOP_SECONDS, "every child stopped on SIGTERM"
    assert console.children() == {}
    assert "did not stop" not in console.log()
    assert console.process.returncode == 0


def test_it_stops_a_child_restarted_just_before_the_stop(console):
    relay = console.child("push_relay")
    os.kill(relay, signal.SIGKILL)
    _eventually(lambda: "push-relay exited" in console.log(), 5, "run.sh notices", console)
    restarted = _eventually(
        lambda: [pid for pid, cmdline in console.children().items() if "push_relay" in cmdline], 5, "restart", console
    )
    assert restarted != [relay]

    console.process.send_signal(signal.SIGTERM)

    console.stopped_within(STOP_SECONDS + 4)
    assert console.children() == {}


def test_it_leaves_nothing_behind_after_two_quick_ctrl_c(console):
    # Ctrl-C signals the terminal's foreground process group: run.sh and its non-session children.
    os.killpg(console.process.pid, signal.SIGINT)
    time.sleep(0.1)
    os.killpg(console.process.pid, signal.SIGINT)

    console.stopped_within(STOP_SECONDS + 4)
    assert console.children() == {}
    assert console.log().count("Stopping Ops Console") == 1


def test_it_kills_a_child_that_ignores_sigterm(console):
    # A stopped process cannot act on SIGTERM: it hangs just as one that ignores it would.
    os.kill(console.child("--name oversight-2"), signal.SIGSTOP)

    console.process.send_signal(signal.SIGTERM)

    took = console.stopped_within(STOP_SECONDS + 4)
    assert took > STOP_SECONDS - 1.5, "the others had their grace"
    assert console.children() == {}
    assert f"oversight-2 did not stop within {STOP_SECONDS} s: killed" in console.log()


def test_it_stops_when_the_web_server_cannot_start(runsh_database, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with _cleaned_up(_start(tmp_path, runsh_database, port=taken.getsockname()[1])) as console:
            console.stopped_within(30)  # gunicorn tries to bind for 5 s

    assert console.process.returncode == 1
    assert "web failed as it started (code 1): stopping" in console.log()

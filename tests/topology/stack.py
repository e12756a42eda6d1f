"""The production topology on one machine, built from deploy/: what the topology test runs.

- PostgreSQL: a primary of the test's own and a hot standby streaming from it (``clusters``).
- Redis: the machine's, on a database of the test's own (``OPS_TOPOLOGY_REDIS_DB``, default 6).
- Two app servers (``ops-console-web.service``'s command line, ``OPS_WEB_BIND`` each on a free
  port), the two routers, the push relay and the job worker, each started with its unit's command
  line and environment and env.example's settings (secrets filled in, addresses the test's).
- Debian's nginx with deploy/nginx/ops-console.conf (host ``ops.test``, a certificate made now,
  free ports) in front of the two app servers.

Every process runs in a session of its own, its output in ``<directory>/<name>.log``; stopping one
sends SIGTERM to its process group and SIGKILL after ``STOP_SECONDS``.
"""

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.topology import clusters, deploy
from tests.topology.client import Client

HOST = "ops.test"
WEB_SERVERS = ("web-1", "web-2")
DATABASE = "ops_console"
REDIS_DB = int(os.environ.get("OPS_TOPOLOGY_REDIS_DB", "6"))
STOP_SECONDS = 10
NGINX = Path(shutil.which("nginx") or "/usr/sbin/nginx")
UNIT = {name: deploy.DEPLOY / "systemd" / f"ops-console-{name}.service" for name in ("web", "jobs", "push-relay")}
UNIT["router"] = deploy.DEPLOY / "systemd" / "ops-console-router@.service"
# Shorter than production so that the test waits seconds, not minutes; everything else is env.example's.
TEST_SETTINGS = {
    "OPS_READ_YOUR_WRITES_SECONDS": "4",  # how long a person who saved reads the primary
    "OPS_REPLICA_CHECK_SECONDS": "1",  # how often the replica's lag is asked
    "IMPORT_BACKGROUND_BYTES": "2048",  # a file of a few hundred rows goes to the job worker
    "WEB_CONCURRENCY": "2",  # worker processes per app server: two app servers on two cores
    "OPS_ALERT_EMAILS": "",  # no oversight worker here
}


def why_not_available() -> str | None:
    """Return why the topology cannot be built on this machine, or None when it can."""
    if not NGINX.exists():
        return "nginx is not installed and could not be (`make test` installs Debian's nginx as root)"
    if not shutil.which("openssl"):
        return "openssl is not installed: no certificate for the proxy"
    return clusters.why_not_available()


@dataclass
class Topology:
    directory: Path
    primary: clusters.Primary
    standby: clusters.Standby
    https_port: int = field(default_factory=clusters.free_port)
    http_port: int = field(default_factory=clusters.free_port)
    web_ports: dict[str, int] = field(default_factory=lambda: {name: clusters.free_port() for name in WEB_SERVERS})
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    people: dict[tuple[str, str], Client] = field(default_factory=dict)  # signed-in browsers, by user and address

    # --- building it ----------------------------------------------------------------------------

    def configure(self) -> None:
        """Write the environment, the certificate and nginx's configuration."""
        static_root = self.directory / "static"
        self.env = {
            **deploy.production_env(),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.directory), "LANG": "C.UTF-8",
            "DATABASE_URL": self.primary.url(DATABASE), "DATABASE_REPLICA_URL": self.standby.url(DATABASE),
            "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}", "DJANGO_ALLOWED_HOSTS": HOST,
            "OPS_CONSOLE_URL": self.base_url, "OPS_STATIC_ROOT": str(static_root),
            **TEST_SETTINGS,
        }  # fmt: skip
        self.certificate, _ = deploy.make_certificate(self.directory, HOST)
        site = self.directory / "ops-console.conf"
        site.write_text(
            deploy.nginx_site(
                directory=self.directory, host=HOST, static_root=str(static_root), http_port=self.http_port,
                https_port=self.https_port, upstreams=tuple(f"127.0.0.1:{port}" for port in self.web_ports.values()),
                ipv6=False,
            )
        )  # fmt: skip
        (self.directory / "nginx.conf").write_text(deploy.nginx_main(directory=self.directory, site=site))

    def prepare_database(self) -> None:
        """Create, migrate and seed the console's database on the primary; collect the static files."""
        self.primary.query(f"CREATE DATABASE {DATABASE}")
        self.manage("migrate", "--noinput", "-v0", timeout=600)
        self.manage("seed_demo", "--providers", "60", "--patients", "300", "--visits", "600", timeout=600)
        self.manage("collectstatic", "--noinput", "-v0")

    def start_all(self) -> None:
        """Start the app servers, routers, relay, job worker and nginx; wait until the proxy answers."""
        for name in self.web_ports:
            self.start_web(name)
        self.start_unit("router-1", UNIT["router"], instance="router-1")
        self.start_unit("router-2", UNIT["router"], instance="router-2")
        self.start_unit("push-relay", UNIT["push-relay"])
        self.start_unit("jobs", UNIT["jobs"])
        self.start("nginx", [str(NGINX), "-p", f"{self.directory}/", "-c", str(self.directory / "nginx.conf")])
        for name, port in self.web_ports.items():
            self.wait_until(lambda port=port: self.answers(f"http://{HOST}:{port}/healthz"), f"{name} answering")
        self.wait_until(lambda: self.answers(f"{self.base_url}/healthz"), "the proxy answering")

    def start_web(self, name: str) -> None:
        """Start one app server as ``ops-console-web.service`` does, listening on its own port."""
        bind = f"127.0.0.1:{self.web_ports[name]}"
        self.start_unit(name, UNIT["web"], extra={"OPS_WEB_BIND": bind})

    def start_unit(self, name: str, path: Path, *, instance: str = "", extra: dict | None = None) -> None:
        env = {**self.env, **deploy.unit_environment(path), **(extra or {})}
        self.start(name, deploy.exec_start(path, instance=instance, env=env), env=env)

    def start(self, name: str, argv: list[str], *, env: dict | None = None) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(  # noqa: S603 - the units' own command lines
            argv, cwd=deploy.ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    # --- running it -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.https_port}"

    def tls(self) -> ssl.SSLContext:
        """Return a client context that trusts the test's certificate only (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def client(self, source: str = "127.0.0.1") -> Client:
        return Client(base=self.base_url, context=self.tls(), source=source)

    def answers(self, url: str) -> bool:
        try:
            return Client(base=url.rsplit("/", 1)[0], context=self.tls()).get(url).status == 200
        except OSError:
            return False

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run a management command with the topology's settings; return its output, raise if it fails."""
        done = subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args], cwd=deploy.ROOT, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Signal ``name``'s process group; SIGKILL it if it is still there after STOP_SECONDS."""
        process = self.processes.pop(name, None)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _kill_group(process.pid)  # a worker its master left behind

    def check_running(self) -> None:
        """Fail, with its log's end, if a process of the topology has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Return the rows of one statement on the primary's console database."""
        return self.primary.query(sql, params, dbname=DATABASE)

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, decode_responses=True)

    @staticmethod
    def wait_until(condition: Callable[[], object], what: str, *, timeout: float = 60) -> object:
        """Return ``condition()`` once it is truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s")
            time.sleep(0.2)
        return result

    def teardown(self) -> list[int]:
        """Stop every process and both servers; return the pids of any process still alive after."""
        pids = [process.pid for process in self.processes.values()]
        for name in list(self.processes):
            self.stop(name)
        self.standby.stop("immediate")
        self.primary.stop("immediate")
        self.redis().flushdb()
        return [pid for pid in pids if _alive(pid)] + self.leftovers()

    def leftovers(self) -> list[int]:
        """Return the pids of live processes whose command line names the topology's directory."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            except OSError:
                continue
            if str(self.directory).encode() in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)

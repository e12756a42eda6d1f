"""Two PostgreSQL servers of the topology test's own: a primary, and a hot standby streaming from it.

The primary is a new cluster (``initdb``) on a free port, set up to be copied: ``wal_level =
replica`` and a ``replication`` line in its ``pg_hba.conf``. The machine's own server is never
reconfigured for a test. The standby is ``pg_basebackup -R -X stream`` of the primary, started on
another free port. Both log every statement with the connection's ``application_name``, so a test
can see which server answered a page (the console tags its connections ``ops-console/default``
and ``ops-console/replica``).

PostgreSQL refuses to run as root: as root, every server program runs as the ``postgres`` OS user,
which owns the directories. Both servers listen on 127.0.0.1 and on a socket in their directory.
"""

import os
import pwd
import shutil
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path

import psycopg2

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
SUPERUSER = "postgres"
# A hot standby refuses to start with less of these than its primary has: the same values for both.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "fsync": "off",
    "full_page_writes": "off",
    "wal_level": "replica",
    "max_wal_senders": "5",
    "hot_standby": "on",
    "wal_receiver_status_interval": "1s",
    "log_statement": "'all'",
    "log_line_prefix": "'%m [%p] app=%a '",
    "lc_messages": "'C'",
}


def server_bin() -> Path | None:
    """Return the newest installed PostgreSQL's ``bin`` directory (None if there is none)."""
    versions = sorted(
        (path for path in PG_ROOT.glob("*") if (path / "bin" / "postgres").exists()),
        key=lambda path: int(path.name) if path.name.isdigit() else 0,
    )
    return versions[-1] / "bin" if versions else None


def why_not_available() -> str | None:
    """Return why the clusters cannot be made here, or None when they can."""
    bin_dir = server_bin()
    if bin_dir is None or not (bin_dir / "pg_basebackup").exists():
        return f"no PostgreSQL server programs under {PG_ROOT} (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} OS user to run PostgreSQL as"
    return None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """One PostgreSQL server in a directory of its own: start, stop, and statements and logs to read."""

    def __init__(self, directory: Path, name: str):
        self.bin_dir = server_bin()
        self.directory = directory / name
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.directory.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, SERVER_USER, SERVER_USER)

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one of PostgreSQL's programs as a user it accepts (``postgres`` when we are root)."""
        argv = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603 - PostgreSQL's own programs
        if check and done.returncode:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{self.log_tail()}")
        return done

    def write_configuration(self) -> None:
        """Write postgresql.conf and pg_hba.conf (trust on 127.0.0.1, replication included)."""
        lines = [f"{name} = {value}" for name, value in SETTINGS.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{self.directory}'"]
        hba = "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
        for name, text in (("postgresql.conf", "\n".join(lines) + "\n"), ("pg_hba.conf", hba)):
            (self.data / name).write_text(text)
            if os.geteuid() == 0:
                shutil.chown(self.data / name, SERVER_USER, SERVER_USER)

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "start", "-w", "-t", "60")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: connections are cut, nothing committed is lost)."""
        if self.data.exists() and self.is_running():
            self.run("pg_ctl", "-D", str(self.data), "stop", "-m", mode, "-w", "-t", "60", check=False)

    def is_running(self) -> bool:
        """Return True while the server's postmaster runs."""
        return self.run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def url(self, dbname: str) -> str:
        return f"postgres://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres"):
        connection = psycopg2.connect(
            host=self.host, port=self.port, dbname=dbname, user=SUPERUSER, connect_timeout=5,
            application_name="topology-test",
        )  # fmt: skip
        connection.autocommit = True
        return connection

    def query(self, sql: str, params: tuple | list = (), *, dbname: str = "postgres") -> list[tuple]:
        """Return the rows of one statement (autocommit, a connection of its own)."""
        with closing(self.connect(dbname)) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def statements(self, fragment: str) -> list[str]:
        """Return the statements logged since the server started that contain ``fragment`` (any case)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "statement:" in line and fragment.lower() in line.lower()]

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def wait_for(self, condition, what: str, *, timeout: float = 30) -> None:
        """Poll ``condition`` until it holds; fail with the server's log after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} in {timeout} s; log of {self.directory.name}:\n{self.log_tail()}")
            time.sleep(0.1)


class Primary(Cluster):
    """A new cluster set up to be copied by a streaming standby."""

    def create(self) -> None:
        """Run initdb, configure and start the server."""
        self.run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self.write_configuration()
        self.start()

    def current_wal(self) -> str:
        return self.query("SELECT pg_current_wal_lsn()::text")[0][0]


class Standby(Cluster):
    """A hot standby copied from ``primary`` with ``pg_basebackup -R`` and streaming from it."""

    def __init__(self, directory: Path, name: str, primary: Primary):
        super().__init__(directory, name)
        self.primary = primary

    def create(self) -> None:
        """Copy the primary, configure the copy as this server, start it and wait until it has caught up."""
        self.run(
            "pg_basebackup", "-h", self.primary.host, "-p", str(self.primary.port), "-U", SUPERUSER,
            "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self.write_configuration()  # the copy came with the primary's port and socket directory
        self.start()
        assert self.query("SELECT pg_is_in_recovery()")[0][0], "the copy is not a standby"
        self.wait_caught_up(timeout=60)

    def wait_caught_up(self, *, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        target = self.primary.current_wal()
        sql = "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)"
        self.wait_for(lambda: self.query(sql, [target])[0][0], f"replay of {target}", timeout=timeout)

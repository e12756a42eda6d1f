"""``soak_routing``: real traffic through the real stack while faults hit it, then the invariant check.

The soak runs its own PostgreSQL cluster and Redis server (``devtools.services``), because it
restarts, flushes and stops them: the machine's own services, which ``make run`` and the tests
use, are never touched. On them it starts the console under gunicorn, two routers, and
``simulate_traffic`` driving patients and providers through the JSON API, then injects the faults
of ``SCHEDULE`` at even intervals, measuring how long each takes to heal. At the end it stops the
traffic, lets the routers settle, and runs ``check_routing_invariants`` over the whole history.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection, connections

from clinical.actions import licenses as license_actions
from clinical.models import LicenseStatus, Offer, ProviderLicense, Visit
from clinical.routing import invariants, lease
from clinical.routing.models import RouterHealth
from core.audit import Actor, ActorKind
from core.redis import get_redis
from devtools.services import PrivatePostgres, PrivateRedis, free_port, wait_until

BASE_DIR = Path(__file__).resolve().parent.parent
SOAK_ACTOR = Actor.system("soak_routing")
OPEN = ("waiting", "offered", "accepted", "connecting", "in_progress")


@dataclass
class SoakConfig:
    minutes: float = 10.0
    rate: float = 0.6  # visit requests per second (the played providers finish about that many)
    providers: int = 40  # providers the traffic plays
    seed: int = 2026
    lease_seconds: int = 3
    offer_timeout: int = 20
    max_wait: int = 120
    skew_seconds: int = 30
    redis_down_seconds: int = 60
    suspensions: int = 5
    log_dir: Path = BASE_DIR / ".run" / "soak"


@dataclass
class FaultResult:
    at: float  # seconds into the soak
    name: str
    outcome: str
    took_s: float | None = None  # time to heal (a new leader, routing again), when it applies
    ok: bool = True


@dataclass
class Stack:
    """The soak's processes, each in its own session so a signal reaches only the one meant."""

    config: SoakConfig
    database_url: str
    redis_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    serial: int = 0

    def env(self, **extra) -> dict:
        return {
            **os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "DJANGO_DEBUG": "0",
            "OPS_HTTPS": "0", "OPS_REQUIRE_2FA": "0", "ROUTING_LEASE_SECONDS": str(self.config.lease_seconds),
            "ROUTING_OFFER_TIMEOUT": str(self.config.offer_timeout), "ROUTING_MAX_WAIT": str(self.config.max_wait),
            "ROUTING_SWEEP_SECONDS": "2", "ROUTING_REBUILD_SECONDS": "30", "DATABASE_CONN_MAX_AGE": "0",
            "PYTHONUNBUFFERED": "1", **{key: str(value) for key, value in extra.items()},
        }  # fmt: skip

    def spawn(self, name: str, args: list[str], **env) -> subprocess.Popen:
        log = open(self.config.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it until it exits
        process = subprocess.Popen(  # noqa: S603 - our own programs with fixed arguments
            args, cwd=BASE_DIR, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def manage(self, *args: str, **env) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env(**env), capture_output=True, text=True,
            check=True,
        )  # fmt: skip

    def start_web(self) -> None:
        self.manage("collectstatic", "--noinput", "-v0")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.spawn("web", [gunicorn, "ops_console.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "3",
                           "--graceful-timeout", "5"])  # fmt: skip

    def start_router(self, *, skew: int = 0) -> str:
        self.serial += 1
        name = f"router-{self.serial}" + (f"-skew{skew:+d}s" if skew else "")
        extra = {"ROUTING_TEST_CLOCK_SKEW_SECONDS": skew} if skew else {}
        self.spawn(name, [sys.executable, "manage.py", "run_router", "--name", name], **extra)
        return name

    def start_traffic(self, seconds: float) -> None:
        config = self.config
        self.spawn("traffic", [
            sys.executable, "manage.py", "simulate_traffic", "--base-url", f"http://127.0.0.1:{self.port}",
            "--rate", str(config.rate), "--providers", str(config.providers), "--duration", str(seconds),
            "--seed", str(config.seed), "--visit-minutes", "0.5-2", "--json",
        ])  # fmt: skip

    def routers(self) -> dict[str, subprocess.Popen]:
        return {name: p for name, p in self.processes.items() if name.startswith("router-") and p.poll() is None}

    def stop(self, name: str, *, timeout: float = 15) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in ["traffic", *[n for n in self.processes if n != "traffic"]]:
            self.stop(name, timeout=20 if name == "traffic" else 10)


class Soak:
    """One soak: set up, traffic and faults on a schedule, settle, check."""

    def __init__(self, config: SoakConfig, say: Callable[[str], None]):
        self.config, self.say = config, say
        self.pg = PrivatePostgres()
        self.redis = PrivateRedis()
        self.stack: Stack | None = None
        self.faults: list[FaultResult] = []
        self.started = 0.0
        self.suspended: list[int] = []

    # --- the run --------------------------------------------------------------------------

    def run(self) -> dict:
        """Run the soak and return its report; always leaves nothing running."""
        try:
            self._set_up()
            self._traffic_and_faults()
            return self._report(self._settle())
        finally:
            if self.stack:
                self.stack.stop_all()
            connections.close_all()
            self.redis.stop()
            self.pg.stop()

    def _set_up(self) -> None:
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        for old in self.config.log_dir.glob("*.log"):
            old.unlink()
        self.say("private PostgreSQL and Redis ...")
        self.pg.init()
        self.pg.start()
        self.pg.create_database("ops_soak")
        self.redis.start()
        self.stack = Stack(self.config, self.pg.database_url("ops_soak"), self.redis.url)
        self.say("migrate and seed (providers, licenses, patients) ...")
        self.stack.manage("migrate", "--noinput", "-v0")
        self.stack.manage("seed_demo", "--visits", "0", "--providers", "120", "--patients", "2000")
        self._use_private_services()
        self.stack.start_web()
        for _ in range(2):
            self.stack.start_router()
        if not wait_until(self._leading, timeout=30):
            raise RuntimeError("no router took the lease within 30 s (see .run/soak/router-*.log)")

    def _use_private_services(self) -> None:
        """Point this process's own connections (checks, license changes) at the soak's services."""
        connection.close()
        db = connection.settings_dict
        db.update(NAME="ops_soak", HOST="127.0.0.1", PORT=str(self.pg.port), USER="postgres", PASSWORD="")
        db["CONN_MAX_AGE"] = 0
        settings.REDIS_URL = self.redis.url
        get_redis.cache_clear()

    def _traffic_and_faults(self) -> None:
        seconds = self.config.minutes * 60
        schedule = self.schedule()
        gap = seconds / (len(schedule) + 1)
        self.say(f"traffic for {self.config.minutes:g} min; faults every {gap:.0f} s:")
        for i, (name, _) in enumerate(schedule, start=1):
            self.say(f"  {_clock(i * gap)}  {name}")
        self.started = time.monotonic()
        self.stack.start_traffic(seconds)
        for i, (name, fault) in enumerate(schedule, start=1):
            self._sleep_until(i * gap)
            at = time.monotonic() - self.started
            result = fault()
            result.at, result.name = at, name
            self.faults.append(result)
            self.say(f"{_clock(at)}  {name}: {result.outcome}")
        self._sleep_until(seconds)

    def _sleep_until(self, offset: float) -> None:
        while (left := self.started + offset - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))

    # --- faults ---------------------------------------------------------------------------

    def schedule(self) -> list[tuple[str, Callable[[], FaultResult]]]:
        skew = self.config.skew_seconds
        return [
            ("kill -9 the leader", self.kill_leader),
            (f"SIGSTOP the leader for {2 * self.config.lease_seconds} s, then SIGCONT", self.pause_leader),
            (f"suspend {self.config.suspensions} licenses in use", self.suspend_licenses),
            ("Redis FLUSHALL", self.flush_redis),
            ("PostgreSQL restart", self.restart_postgres),
            ("reinstate the suspended licenses", self.reinstate_licenses),
            (f"a router with its clock {skew:+d} s takes over", lambda: self.skewed_takeover(skew)),
            (f"a router with its clock {-skew:+d} s takes over", lambda: self.skewed_takeover(-skew)),
            (f"Redis down for {self.config.redis_down_seconds} s", self.redis_down),
        ]

    def kill_leader(self) -> FaultResult:
        return self._kill_and_replace()

    def _kill_and_replace(self, *, replacement_skew: int = 0) -> FaultResult:
        before = self._current()
        self.stack.processes[before["holder"]].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        took = self._takeover_after(before["epoch"], killed)
        self.stack.start_router(skew=replacement_skew)
        after = self._current()
        return self._takeover_result(f"{before['holder']} killed; {after['holder']} led", took)

    def pause_leader(self) -> FaultResult:
        before = self._current()
        process = self.stack.processes[before["holder"]]
        process.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        took = self._takeover_after(before["epoch"], paused)
        time.sleep(max(0.0, paused + 2 * self.config.lease_seconds - time.monotonic()))
        process.send_signal(signal.SIGCONT)
        stood_down = wait_until(lambda: not self._health(before["holder"]).get("is_leader"), timeout=15)
        late = self._writes_after_takeover(before["epoch"])
        result = self._takeover_result(
            f"{before['holder']} paused; {self._current()['holder']} led", took,
            extra=f"; {before['holder']} resumed as standby: {'yes' if stood_down else 'NO'}, "
                  f"writes with its old epoch after the takeover: {late}",
        )  # fmt: skip
        result.ok = result.ok and stood_down and late == 0
        return result

    def skewed_takeover(self, skew: int) -> FaultResult:
        current = self._current()["holder"]
        for name in self.stack.routers():
            if name != current:
                self.stack.stop(name)
        skewed = self.stack.start_router(skew=skew)
        wait_until(lambda: self._health(skewed), timeout=20)
        result = self._kill_and_replace()
        result.ok = result.ok and self._current()["holder"] == skewed
        result.outcome += f" (clock {skew:+d} s)"
        return result

    def flush_redis(self) -> FaultResult:
        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        flushed = time.monotonic()
        rebuilt = wait_until(lambda: client.exists("rt:built"), timeout=30, every=0.05)
        took = time.monotonic() - flushed
        return FaultResult(0, "", f"working set rebuilt from PostgreSQL after {took:.1f} s", took, rebuilt)

    def restart_postgres(self) -> FaultResult:
        connections.close_all()
        started = time.monotonic()
        self.pg.restart()
        restarted = time.monotonic()
        routing = wait_until(lambda: self._leader_reported_since(restarted), timeout=60, every=0.2)
        took = time.monotonic() - started
        return FaultResult(0, "", f"restarted in {restarted - started:.1f} s; routers reporting again after "
                                  f"{took:.1f} s", took, routing)  # fmt: skip

    def redis_down(self) -> FaultResult:
        self.redis.stop()
        time.sleep(self.config.redis_down_seconds)
        self.redis.start()
        back = time.monotonic()
        client = redis.Redis.from_url(self.redis.url)
        rebuilt = wait_until(lambda: client.exists("rt:built"), timeout=60, every=0.1)
        took = time.monotonic() - back
        return FaultResult(0, "", f"back; working set rebuilt after {took:.1f} s", took, rebuilt)

    def suspend_licenses(self) -> FaultResult:
        wanted = self.config.suspensions
        in_use = list(Offer.objects.filter(outcome__isnull=True).values_list("license_id", flat=True))
        licenses = list(ProviderLicense.objects.filter(pk__in=in_use, status=LicenseStatus.ACTIVE)[:wanted])
        if len(licenses) < wanted:
            licenses += list(
                ProviderLicense.objects.valid_at().exclude(pk__in=[lic.pk for lic in licenses])
                .filter(provider__availability__in=["available", "busy"])[: wanted - len(licenses)]
            )  # fmt: skip
        for license in licenses:
            license_actions.change_license_status(
                license, LicenseStatus.SUSPENDED, actor=SOAK_ACTOR, reason="soak: board"
            )
        self.suspended = [license.pk for license in licenses]
        held = Offer.objects.filter(license_id__in=self.suspended, outcome__isnull=True)
        withdrawn = wait_until(lambda: not held.exists(), timeout=15)
        with_offer = len(set(in_use) & set(self.suspended))
        outcome = f"{len(licenses)} suspended ({with_offer} with an offer out); their offers withdrawn: " + (
            "yes" if withdrawn else "NO"
        )
        return FaultResult(0, "", outcome, None, withdrawn)

    def reinstate_licenses(self) -> FaultResult:
        for license in ProviderLicense.objects.filter(pk__in=self.suspended):
            license_actions.change_license_status(
                license, LicenseStatus.ACTIVE, actor=SOAK_ACTOR, reason="soak: reinstated"
            )
        return FaultResult(0, "", f"{len(self.suspended)} reinstated")

    # --- measuring ------------------------------------------------------------------------

    def _current(self) -> dict:
        held = lease.current()
        return held if held and held["live"] else {"holder": None, "epoch": held["epoch"] if held else 0}

    def _leading(self) -> bool:
        return bool(self._current()["holder"])

    def _takeover_after(self, epoch: int, since: float) -> float | None:
        taken = wait_until(lambda: (self._current().get("epoch") or 0) > epoch and self._leading(), timeout=30,
                           every=0.05)  # fmt: skip
        return time.monotonic() - since if taken else None

    def _takeover_result(self, what: str, took: float | None, *, extra: str = "") -> FaultResult:
        limit = self.config.lease_seconds + 1.0  # the lease, plus a standby's check (0.5 s at most) and margin
        ok = took is not None and took <= limit
        shown = "never" if took is None else f"after {took:.1f} s"
        return FaultResult(0, "", f"{what} {shown} (lease {self.config.lease_seconds} s){extra}", took, ok)

    def _health(self, name: str) -> dict:
        row = RouterHealth.objects.filter(name=name).values().first()
        return row or {}

    def _leader_reported_since(self, instant: float) -> bool:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM clinical_routerhealth WHERE is_leader "
                    "AND seen_at > clock_timestamp() - interval '1 second'"
                )
                return cursor.fetchone()[0] > 0 and time.monotonic() > instant
        except Exception:  # noqa: BLE001 - the server is still coming back
            connections.close_all()
            return False

    def _writes_after_takeover(self, epoch: int) -> int:
        since = self._current().get("leader_since")
        return Offer.objects.filter(router_epoch=epoch, offered_at__gte=since).count() if since else -1

    # --- the end --------------------------------------------------------------------------

    def _settle(self) -> dict:
        """Stop the traffic (it withdraws what waits), let the routers time out what is left."""
        self.say("stopping the traffic; settling ...")
        traffic = self.stack.processes["traffic"]
        try:
            traffic.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.stack.stop("traffic")
        deadline = self.config.max_wait + self.config.offer_timeout + 15
        wait_until(lambda: not Visit.objects.filter(status__in=OPEN[:2]).exists(), timeout=deadline, every=1)
        return _last_json(self.config.log_dir / "traffic.log")

    def _report(self, traffic: dict) -> dict:
        results = invariants.check(grace_seconds=2 * self.config.lease_seconds + 5)
        run = traffic.get("simulation", "")
        requested_in_db = Visit.history.filter(
            history_type="+", history_actor=ActorKind.PATIENT, history_actor_label__startswith="sim-patient-",
            history_actor_label__contains=f"-{run} for MRN",
        ).count() if run else 0  # fmt: skip
        lost = max(0, traffic.get("requested", 0) - requested_in_db)
        by_status = _by_status()
        return {
            "soak": "routing", "minutes": self.config.minutes, "rate_per_s": self.config.rate,
            "faults": [fault.__dict__ for fault in self.faults],
            "traffic": traffic, "visits_in_db": requested_in_db, "visits_by_status": by_status,
            "lost_visits": lost, "violations": sum(r.violations for r in results),
            "invariants": {r.name: r.violations for r in results},
            "faults_healed": all(fault.ok for fault in self.faults), "traffic_summary": bool(traffic),
        }  # fmt: skip


def _by_status() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM clinical_visit GROUP BY status ORDER BY status")
        return dict(cursor.fetchall())


def _last_json(path: Path) -> dict:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"

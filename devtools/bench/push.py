"""Benchmark of push over websockets (``manage.py bench_push``): N app sockets, visits at a steady rate.

Runs on the bench harness (``devtools.bench.harness``): its own database (``<DATABASE name>_push_bench``)
and Redis database. The processes under test run on them as in production: the ASGI server
(gunicorn with uvicorn workers), the push relay and one router. One load process plays every app:
all the sockets in one event loop (``websockets``), the API requests from a pool of threads on
keep-alive connections. Patients request visits at ``rate`` per second and never poll; providers
answer the offers pushed to them (accept, connected, complete 1–4 s later), so they free up again.

Per pushed message: commit → receive, its ``published_at`` (stamped when the transaction's
on-commit hook published it) to the moment its socket received it, both on this machine's clock.
Afterwards PostgreSQL's timeline says what every socket should have received (``lost``), and no
socket may receive a version of a visit twice (``duplicates``).
"""

import asyncio
import datetime as dt
import http.client
import json
import os
import random
import secrets
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clinical.actions.api_clients import hash_token
from clinical.models import ApiClient, ApiScope, Patient, Provider, ProviderLicense, Visit, VisitEvent, VisitStatus
from clinical.validators import format_mrn
from devtools.bench import router as bench
from devtools.bench.push_stack import Stack

POLL_SECONDS = 3.0  # the apps' polling interval without push
TARGET_P99_MS = 100.0
TARGET_RATIO = 10.0
DRAIN_SECONDS = 2.0  # after the last transition, before the sockets close
CONNECT_BATCH = 100  # sockets opening at once: well inside the server's listen backlog
HTTP_THREADS = 32
RATE_HELD = 0.95  # share of rate × duration the visits requested must reach
LICENSES_EACH = 8  # states per provider, drawn by population (bench_router's loader)
VISIT_STATES = 3  # visits are located in the states most providers are licensed in
PUSHED = ("visit", "offer_withdrawn")
STAGES = ("relay", "server", "network")  # the relay's share, the server's (channel layer, access log), the wire's
PATIENT, PROVIDER = ApiScope.PATIENT.value, ApiScope.PROVIDER.value  # plain strings: socket keys in sets
TERMINAL = {VisitStatus.COMPLETED, VisitStatus.CANCELLED, VisitStatus.EXPIRED, VisitStatus.FAILED}
_EXTRA_TABLES = ("support_accesslog", "search_outboxentry")  # besides bench_router's: what the API writes


@dataclass(frozen=True)
class PushConfig:
    """One run: how many apps, how many visit requests a second, for how long, on how many server processes."""

    clients: int = 2000
    rate: float = 40.0
    duration: float = 60.0
    providers_share: float = 0.2
    workers: int = 2
    seed: int = 2026

    @property
    def providers(self) -> int:
        return max(1, round(self.clients * self.providers_share))

    @property
    def patients(self) -> int:
        return self.clients - self.providers


@dataclass(eq=False)
class App:
    """One simulated app: whose socket it is (``("patient", id)`` or ``("provider", id)``) and its token."""

    key: tuple[str, int]
    token: str
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    socket: ClientConnection | None = None

    @property
    def is_provider(self) -> bool:
        return self.key[0] == PROVIDER


# --- set-up and clean-up -------------------------------------------------------------------


def reset() -> None:
    """Empty bench_router's tables and what the API and the sockets write (access log, outbox)."""
    bench.reset()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(_EXTRA_TABLES)} RESTART IDENTITY CASCADE")


def set_up(config: PushConfig) -> tuple[list[App], list[str]]:
    """Load available licensed providers and patients, one API token each; return the apps and the visits' states."""
    reset()
    bench.load(waiting=0, providers=config.providers, licenses_each=LICENSES_EACH, seed=config.seed)
    patients = Patient.objects.bulk_create(
        Patient(mrn=format_mrn(7_000_000 + i), first_name="Push", last_name=f"Patient{i}",
                date_of_birth=dt.date(1985, 1, 1), phone="+12125550100")
        for i in range(config.patients)
    )  # fmt: skip
    owners = [(PROVIDER, pk) for pk in Provider.objects.order_by("pk").values_list("pk", flat=True)]
    owners += [(PATIENT, patient.pk) for patient in patients]
    return [App(owner, token) for owner, token in zip(owners, _issue_tokens(owners), strict=True)], _visit_states()


def _issue_tokens(owners: list[tuple[str, int]]) -> list[str]:
    """Create one API client per app in bulk: the token format and hash ``create_api_client`` uses."""
    now = timezone.now()
    expires = now + dt.timedelta(days=settings.OPS_API_TOKEN_DAYS)
    clients, tokens = [], []
    for i, (scope, pk) in enumerate(owners):
        prefix = f"b{i:07x}"  # unique, and hex as the token check expects
        tokens.append(f"opc_{prefix}_{secrets.token_urlsafe(32)}")
        clients.append(
            ApiClient(
                name=f"bench-push-{scope}-{pk}", scope=scope, token_prefix=prefix, token_hash=hash_token(tokens[-1]),
                created_at=now, expires_at=expires, **{f"{scope}_id": pk},
            )
        )  # fmt: skip
    ApiClient.objects.bulk_create(clients, batch_size=2000)
    return tokens


def _visit_states() -> list[str]:
    counts = ProviderLicense.objects.values("state").annotate(n=Count("id")).order_by("-n", "state")
    return [row["state"] for row in counts[:VISIT_STATES]]


# --- the apps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One API request an app made: when it started (``time.monotonic()``), how long it took, its status (0: none)."""

    at: float
    seconds: float
    status: int


class Http:
    """The apps' API calls, one keep-alive connection per thread; each call noted with its start and status."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()
        self.calls: list[Call] = []

    def call(self, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
        """Send one request to ``/api/v1/<path>``; return its status and JSON body."""
        started = time.monotonic()
        status, data = self._send(method, f"/api/v1/{path}", token, None if body is None else json.dumps(body))
        self.calls.append(Call(started, time.monotonic() - started, status))  # atomic: no lock between threads
        return status, data

    def _send(self, method: str, path: str, token: str, body: str | None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, _json(response.read())
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                # A kept-alive connection the server closed meanwhile: the request never reached it.
                conn.close()
                if not reused or attempt == 2:
                    return 0, {"error": str(error)}
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                return 0, {"error": str(error)}
        return 0, {}

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self.local, "conn", None) is None:
            self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return self.local.conn


def _json(raw: bytes) -> dict:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}  # e.g. a plain-text 500 page
    return data if isinstance(data, dict) else {}


@dataclass
class Outcome:
    """What the load process saw."""

    connect_s: float = 0.0
    arrivals: tuple[float, float] = (0.0, 0.0)  # time.monotonic() of the first request and the end of arrivals
    requested: int = 0
    refused: int = 0  # visit requests not answered 201
    no_idle_patient: int = 0
    disconnects: int = 0
    received: Counter = field(default_factory=Counter)  # (socket key, visit id, version) -> times received
    latencies_ms: list[float] = field(default_factory=list)
    # Where each live message's time went: published → relayed → sent by the server → received.
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    loop_lags_ms: list[float] = field(default_factory=list)  # this process's own delays, part of every latency


class Load:
    """Every app: all the sockets in this event loop, their API requests from a pool of threads."""

    def __init__(self, apps: list[App], *, port: int, config: PushConfig, states: list[str], progress):
        self.apps, self.config, self.states, self.progress = apps, config, states, progress
        self.url = f"ws://127.0.0.1:{port}/ws/v1/"
        self.http = Http(port)
        self.pool = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="bench-push-http")
        self.rng = random.Random(config.seed)
        self.idle = deque(app for app in apps if not app.is_provider)  # patients without an open visit
        self.outcome = Outcome()
        self.reacting = True
        self.closing = False
        self.listeners: list[asyncio.Task] = []
        self.tasks: set[asyncio.Task] = set()  # visit requests and providers' answers under way

    async def run(self, stop_router) -> Outcome:
        """Connect every socket, request visits for ``duration`` s, stop the router, drain, close."""
        started = time.monotonic()
        await self._connect_all()
        self.outcome.connect_s = round(time.monotonic() - started, 1)
        self.progress(f"{len(self.apps)} sockets connected in {self.outcome.connect_s} s; requesting visits ...")
        probe = asyncio.create_task(self._probe_loop())
        self.outcome.arrivals = await self._arrivals()
        probe.cancel()
        self.reacting = False
        for task in list(self.tasks):
            task.cancel()  # providers waiting to complete a visit: the run is over
        await asyncio.to_thread(self.pool.shutdown, wait=True)  # requests under way finish
        await asyncio.to_thread(stop_router)  # no transition after this: what PostgreSQL holds is final
        await asyncio.sleep(DRAIN_SECONDS)
        self.closing = True
        await asyncio.gather(*(app.socket.close() for app in self.apps if app.socket))
        await asyncio.gather(*self.listeners)
        return self.outcome

    async def _probe_loop(self, every: float = 0.05) -> None:
        """Note how late this event loop wakes up: a late loop delays every receive time it stamps."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(every)
            self.outcome.loop_lags_ms.append((time.monotonic() - asked - every) * 1000)

    async def _connect_all(self) -> None:
        for start in range(0, len(self.apps), CONNECT_BATCH):
            await asyncio.gather(*(self._connect(app) for app in self.apps[start : start + CONNECT_BATCH]))
        await asyncio.wait_for(asyncio.gather(*(app.hello.wait() for app in self.apps)), timeout=60)

    async def _connect(self, app: App) -> None:
        # No permessage-deflate: the apps' platform websocket clients do not offer it by default.
        app.socket = await connect(
            self.url, additional_headers={"Authorization": f"Bearer {app.token}"}, open_timeout=60,
            ping_interval=None, compression=None,
        )  # fmt: skip
        self.listeners.append(asyncio.create_task(self._listen(app)))

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _listen(self, app: App) -> None:
        try:
            async for raw in app.socket:
                received_at = time.time()
                message = json.loads(raw)
                if message.get("type") in PUSHED:
                    self._note(app, message, received_at)
                elif message.get("type") == "hello":
                    app.hello.set()
        except ConnectionClosed:
            pass
        if not self.closing:
            self.outcome.disconnects += 1

    def _note(self, app: App, message: dict, received_at: float) -> None:
        seen = (app.key, message["visit"]["id"], message["version"])
        self.outcome.received[seen] += 1
        if self.outcome.received[seen] > 1:
            return  # a duplicate: counted, not acted on
        self.outcome.latencies_ms.append((received_at - message["published_at"]) * 1000)
        stamps = (message["published_at"], message.get("relayed_at"), message.get("sent_at"), received_at)
        if None not in stamps:
            for stage, start, end in zip(STAGES, stamps, stamps[1:], strict=False):
                self.outcome.stages_ms[stage].append((end - start) * 1000)
        if message["type"] != "visit":
            return
        to = message["event"]["to"]
        if not app.is_provider and to in TERMINAL:
            self.idle.append(app)  # the patient may ask for another visit
        elif app.is_provider and to == VisitStatus.OFFERED and self.reacting:
            self._spawn(self._serve(app, message["visit"]["id"]))

    async def _arrivals(self) -> tuple[float, float]:
        start = next_at = time.monotonic()
        report_at = start + 10
        while next_at - start < self.config.duration:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self._spawn(self._request_visit())
            next_at += self.rng.expovariate(self.config.rate)
            if time.monotonic() >= report_at:
                report_at += 10
                received = sum(self.outcome.received.values())
                self.progress(f"  {next_at - start:.0f} s: {self.outcome.requested} visits, {received} messages")
        return start, start + self.config.duration

    async def _request_visit(self) -> None:
        if not self.idle:
            self.outcome.no_idle_patient += 1
            return
        app = self.idle.popleft()
        body = {"located_state": self.rng.choice(self.states), "reason": "bench push", "priority": "routine"}
        status = await self._call("POST", "visits", app, body)
        if status == 201:
            self.outcome.requested += 1
        else:
            self.outcome.refused += 1
            self.idle.append(app)

    async def _serve(self, app: App, public_id: str) -> None:
        """Answer an offer as a provider's app does: accept, connected, and complete 1–4 s later."""
        if await self._call("POST", f"visits/{public_id}/accept", app) != 200:
            return
        if await self._call("POST", f"visits/{public_id}/connected", app) != 200:
            return
        await asyncio.sleep(self.rng.uniform(1.0, 4.0))
        await self._call("POST", f"visits/{public_id}/complete", app)

    async def _call(self, method: str, path: str, app: App, body: dict | None = None) -> int:
        loop = asyncio.get_running_loop()
        status, _ = await loop.run_in_executor(self.pool, self.http.call, method, path, app.token, body)
        return status


# --- the run and its figures ---------------------------------------------------------------


def run(
    config: PushConfig, *, r: redis.Redis, database_url: str, redis_url: str, progress, keep_logs: bool = False
) -> dict:
    """Run the benchmark on the bench database and Redis database; return its figures (and empty both)."""
    r.flushdb()
    progress(f"loading {config.patients} patients, {config.providers} providers and their tokens ...")
    apps, states = set_up(config)
    stack = Stack(database_url=database_url, redis_url=redis_url, workers=config.workers)
    try:
        progress(f"starting the ASGI server ({config.workers} workers), the push relay and a router ...")
        stack.start(r)
        load = Load(apps, port=stack.port, config=config, states=states, progress=progress)
        outcome = asyncio.run(load.run(lambda: stack.stop("router")))
        return {**figures(config, outcome, load.http.calls), "server_tracebacks": stack.tracebacks()}
    finally:
        stack.stop_all(keep_logs=keep_logs)
        if keep_logs:
            progress(f"server and relay logs kept in {stack.logs}")
        reset()
        r.flushdb()


def figures(config: PushConfig, outcome: Outcome, calls: list[Call]) -> dict:
    """Return the run's figures: latency, lost and duplicate messages, the apps' API request rates."""
    latencies = sorted(outcome.latencies_ms)
    got = {(key, version) for key, _, version in outcome.received}
    lost = len(_expected() - got)
    duplicates = sum(times - 1 for times in outcome.received.values())
    push_rate = _request_rate(calls, outcome.arrivals)
    polling_rate = round(push_rate + config.clients / POLL_SECONDS, 1)
    ratio = round(polling_rate / push_rate, 2) if push_rate else None
    p99 = bench._pct(latencies, 99)
    # Every visit asked for was requested: else the server fell behind (and the ratio flatters it).
    rate_held = not outcome.no_idle_patient and outcome.requested >= RATE_HELD * config.rate * config.duration
    errors = dict(Counter(str(call.status) for call in calls if not 200 <= call.status < 300))  # 0: no answer
    api_ms = sorted(call.seconds * 1000 for call in calls)
    return {
        "clients": config.clients, "patients": config.patients, "providers": config.providers,
        "workers": config.workers, "rate": config.rate, "duration": config.duration,
        "connect_s": outcome.connect_s, "visits_requested": outcome.requested,
        "visits_completed": Visit.objects.filter(status=VisitStatus.COMPLETED).count(),
        "visit_requests_refused": outcome.refused, "no_idle_patient": outcome.no_idle_patient,
        "messages_received": sum(outcome.received.values()),
        "latency_p50_ms": bench._pct(latencies, 50), "latency_p95_ms": bench._pct(latencies, 95),
        "latency_p99_ms": p99, "latency_max_ms": round(latencies[-1], 1) if latencies else None,
        "load_process_lag_p99_ms": bench._pct(sorted(outcome.loop_lags_ms), 99),
        **{f"{stage}_p{pct}_ms": bench._pct(sorted(times), pct) for stage, times in outcome.stages_ms.items()
           for pct in (50, 99)},
        "requests_per_visit": round(len(calls) / outcome.requested, 2) if outcome.requested else None,
        "lost": lost, "duplicates": duplicates, "sockets_dropped": outcome.disconnects,
        "api_requests": len(calls), "api_errors": sum(errors.values()), "api_errors_by_status": errors,
        "api_latency_p50_ms": bench._pct(api_ms, 50), "api_latency_p99_ms": bench._pct(api_ms, 99),
        "api_requests_per_s_push": push_rate, "api_requests_per_s_polling": polling_rate,
        "polling_computed": True, "ratio": ratio,
        "targets": {
            "sockets_held": outcome.disconnects == 0, "no_api_errors": not errors,
            "rate_held": rate_held,
            "p99_le_100_ms": p99 is not None and p99 <= TARGET_P99_MS, "no_lost": lost == 0,
            # A ratio measured while the server fell behind counts requests the apps could not make.
            "no_duplicates": duplicates == 0, "ratio_ge_10": rate_held and ratio is not None and ratio >= TARGET_RATIO,
        },
        "load_average_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def _expected() -> set[tuple[tuple[str, int], int]]:
    """Return every (socket, version) PostgreSQL's timeline says was pushed (``clinical.push.messages``).

    The visit's patient gets every event; the provider an event names gets it too (as the visit,
    or as ``offer_withdrawn``).
    """
    expected = set()
    for version, patient_id, provider_id in VisitEvent.objects.values_list("pk", "visit__patient_id", "provider_id"):
        expected.add(((PATIENT, patient_id), version))
        if provider_id is not None:
            expected.add(((PROVIDER, provider_id), version))
    return expected


def _request_rate(calls: list[Call], arrivals: tuple[float, float]) -> float:
    """Return the apps' API requests per second in the steady part of the arrivals (after a warm-up)."""
    first, end = arrivals
    start = first + min(5.0, (end - first) / 4)  # providers complete their first visits 1–4 s in
    counted = sum(1 for call in calls if start <= call.at < end)
    return round(counted / (end - start), 1) if end > start else 0.0

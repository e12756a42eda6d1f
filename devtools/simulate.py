"""Simulated traffic through the real JSON API, so the queues move for a demo or under load.

Patients request visits (located by state population, with realistic priorities and reasons)
and some cancel; providers go online, poll for offers, accept, reject or ignore them, hold
visits for a realistic time and take breaks. It all runs on one thread: a heap of due actions,
each one HTTP request whose reply decides what that patient or provider does next. Only the
set-up (which providers and patients to play, their API clients) and the final revocation of
those clients touch the database.
"""

import heapq
import http.client
import itertools
import json
import logging
import random
import secrets
import statistics
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

from django.db import connection, transaction
from django.utils import timezone

from clinical.actions import api_clients as api_client_actions
from clinical.models import OPEN_STATUSES, ApiClient, ApiScope, Availability, Patient, Provider, ProviderLicense, Visit
from core.audit import Actor
from devtools import sampling

logger = logging.getLogger(__name__)

ACTOR = Actor.system("simulate_traffic")
Span = tuple[float, float]  # (low, high) for a uniform draw
PRIORITY_MIX = {"routine": 85, "elevated": 12, "urgent": 3}
WAITING = ("waiting", "offered")  # what the patient app shows as "finding a provider"
FINAL = ("completed", "cancelled", "expired", "failed")
PATIENT_POOL = 500  # patients the simulation plays (one token each); one open visit each at a time
MIN_POLL_SECONDS = 0.1  # even at high --speed, do not hammer the server
SIGN_OFF_SECONDS = 10.0
LOG_IN_SECONDS = (0.0, 5.0)  # providers come online over the first seconds, not all in one burst


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Every delay is divided by ``speed``; the arrival ``rate`` is not."""

    base_url: str = "http://127.0.0.1:8000"
    rate: float = 0.5  # new visit requests per second
    providers: int = 40
    seed: int | None = None
    cancel_rate: float = 0.05
    speed: float = 1.0
    visit_minutes: Span = (8.0, 20.0)
    all_states: bool = False  # False: patients are located where the played providers are licensed
    accept: float = 0.85
    reject: float = 0.10  # the rest ignore the offer until the router takes it back
    fail_rate: float = 0.02
    poll_seconds: Span = (1.0, 2.0)
    think_seconds: Span = (2.0, 8.0)
    connect_seconds: Span = (3.0, 10.0)
    cancel_after_seconds: Span = (5.0, 90.0)
    patient_poll_seconds: Span = (5.0, 10.0)
    retry_seconds: Span = (5.0, 15.0)
    shift_minutes: Span = (10.0, 40.0)
    break_minutes: Span = (2.0, 10.0)
    request_timeout: float = 5.0

    def __post_init__(self):
        checks = {
            "base_url": self.base_url.startswith(("http://", "https://")),
            "rate": self.rate >= 0,
            "providers": self.providers >= 0,
            "speed": self.speed > 0,
            "cancel_rate": 0 <= self.cancel_rate <= 1,
            "accept": min(self.accept, self.reject) >= 0 and self.accept + self.reject <= 1,
            "visit_minutes": 0 <= self.visit_minutes[0] <= self.visit_minutes[1],
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not valid.")


# `make run`: a visit request every few seconds, short visits and enough providers to keep up
# (about 0.33 visits/s, see ``capacity``), so a newcomer sees the queues move and drain.
GENTLE = {
    "rate": 0.25,
    "providers": 60,
    "visit_minutes": (1.0, 3.0),
    "shift_minutes": (4.0, 10.0),
    "break_minutes": (0.5, 2.0),
}


def config_for(*, gentle: bool = False, **options) -> SimConfig:
    """Return the configuration: defaults, then the gentle preset if asked, then the options given."""
    chosen = {name: value for name, value in options.items() if value is not None}
    return SimConfig(**{**(GENTLE if gentle else {}), **chosen})


def capacity(config: SimConfig) -> float:
    """Return roughly how many visits per second the played providers can finish."""

    def mean(span: Span) -> float:
        return sum(span) / 2

    cycle = mean(config.visit_minutes) * 60 + mean(config.think_seconds) + mean(config.connect_seconds)
    on_duty = mean(config.shift_minutes) / (mean(config.shift_minutes) + mean(config.break_minutes))
    return config.providers * config.accept * on_duty * config.speed / (cycle + mean(config.poll_seconds))


# --- decisions ------------------------------------------------------------------------------


@cache
def visit_reasons() -> tuple[str, ...]:
    """Return the visit reasons of the demo fixture."""
    return tuple(sampling.people()["visit_reasons"])


class Behaviour:
    """Every random choice the simulated patients and providers make, from one seeded source."""

    def __init__(self, config: SimConfig, rng: random.Random):
        self.config, self.rng = config, rng

    def state(self, among: Collection[str] | None = None) -> str:
        """Return where a new patient is, weighted by 2020 population (within ``among`` if given)."""
        return sampling.random_state(self.rng, among)

    def priority(self) -> str:
        """Return a visit priority: mostly routine, a few elevated, rarely urgent."""
        return sampling.weighted(self.rng, PRIORITY_MIX)

    def reason(self) -> str:
        """Return why the patient asks for a visit."""
        return self.rng.choice(visit_reasons())

    def answer(self) -> str:
        """Return how a provider answers an offer: accept, reject or ignore."""
        config = self.config
        return sampling.weighted(
            self.rng, {"accept": config.accept, "reject": config.reject, "ignore": 1 - config.accept - config.reject}
        )

    def cancels(self) -> bool:
        """Return True if this patient will cancel before a provider takes the visit."""
        return self.rng.random() < self.config.cancel_rate

    def fails(self) -> bool:
        """Return True if this visit will end as failed (the call drops)."""
        return self.rng.random() < self.config.fail_rate

    def arrival_gap(self) -> float:
        """Return seconds until the next visit request (a Poisson process at ``rate``)."""
        return self.rng.expovariate(self.config.rate)

    def seconds(self, span: Span) -> float:
        """Return a delay drawn from ``span`` seconds, divided by ``speed``."""
        return self.rng.uniform(*span) / self.config.speed

    def minutes(self, span: Span) -> float:
        """Return a delay drawn from ``span`` minutes, in seconds, divided by ``speed``."""
        return self.seconds(span) * 60

    def poll(self) -> float:
        """Return seconds until the provider app asks again."""
        return max(MIN_POLL_SECONDS, self.seconds(self.config.poll_seconds))


# --- counting and HTTP ---------------------------------------------------------------------


@dataclass
class Stats:
    """What the simulation did and saw, for the live summary line and the final report."""

    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    requested: int = 0
    waiting: int = 0
    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    expired: int = 0
    requests: int = 0
    conflicts: int = 0
    errors: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    last_error: str = ""
    offer_seconds: list[float] = field(default_factory=list)
    withdrawn_at_stop: int = 0
    finished_at_stop: int = 0
    signed_off: int = 0

    def p50(self) -> float | None:
        """Return the median seconds from a visit request to its first offer, as polling saw it."""
        return statistics.median(self.offer_seconds) if self.offer_seconds else None

    def elapsed(self) -> str:
        """Return the run time as m:ss."""
        minutes, seconds = divmod(int((self.ended or time.monotonic()) - self.started), 60)
        return f"{minutes}:{seconds:02d}"

    def line(self) -> str:
        """Return the live one-line summary."""
        p50 = self.p50()
        return (
            f"{self.elapsed()} requested {self.requested} waiting {self.waiting}"
            f" | offers {self.offers} acc {self.accepted} rej {self.rejected} ign {self.ignored}"
            f" | completed {self.completed} cancelled {self.cancelled} failed {self.failed}"
            f" | 409 {self.conflicts} err {self.errors} | p50 offer {'-' if p50 is None else f'{p50:.1f}s'}"
        )

    def report(self) -> list[str]:
        """Return the final summary, a few lines in plain words."""
        p50 = self.p50()
        lines = [
            f"ran {self.elapsed()}: {self.requested} visits requested, {self.waiting} waiting when stopped",
            f"offers {self.offers}: {self.accepted} accepted, {self.rejected} rejected, {self.ignored} ignored;"
            f" request to first offer p50 {'-' if p50 is None else f'{p50:.1f} s'}",
            f"visits: {self.completed} completed, {self.failed} failed, {self.cancelled} cancelled by patients,"
            f" {self.expired} seen expired",
            f"at stop: {self.withdrawn_at_stop} waiting visits withdrawn, {self.finished_at_stop} offers or visits"
            f" wrapped up, {self.signed_off} providers signed off",
            f"HTTP: {self.requests} requests, {self.conflicts} conflicts (409, expected), {self.errors} errors",
        ]
        if self.errors:
            kinds = ", ".join(f"{count} x {kind}" for kind, count in self.error_kinds.most_common())
            lines.append(f"errors: {kinds}; last: {self.last_error}")
        return lines

    def counts(self) -> dict:
        """Return every count, for a machine to read."""
        names = (
            "requested", "waiting", "offers", "accepted", "rejected", "ignored", "completed", "cancelled", "failed",
            "expired", "requests", "conflicts", "errors", "withdrawn_at_stop", "finished_at_stop",
        )  # fmt: skip
        return {**{name: getattr(self, name) for name in names}, "error_kinds": dict(self.error_kinds)}

    def count_error(self, kind: str, message: str) -> None:
        """Count an error of ``kind`` (an HTTP status or an exception name) and keep its message."""
        self.errors += 1
        self.error_kinds[kind] += 1
        self.last_error = message[:300]


@dataclass(frozen=True)
class Reply:
    """An API answer: ``status`` 0 means no HTTP answer came (refused, timed out, unreadable)."""

    status: int
    data: dict

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _json(raw: bytes) -> dict:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class Api:
    """Call the JSON API with the standard library; count conflicts and errors, never raise."""

    def __init__(self, base_url: str, *, timeout: float, stats: Stats):
        self.root = base_url.rstrip("/") + "/api/v1/"
        self.timeout, self.stats = timeout, stats
        self.unanswered = 0  # consecutive requests with no HTTP answer

    def get(self, path: str, token: str) -> Reply:
        """GET ``/api/v1/<path>``."""
        return self.call("GET", path, token)

    def post(self, path: str, token: str, body: dict | None = None) -> Reply:
        """POST a JSON body to ``/api/v1/<path>``."""
        return self.call("POST", path, token, body or {})

    def call(self, method: str, path: str, token: str, body: dict | None = None) -> Reply:
        """Send one request and count its outcome."""
        self.stats.requests += 1
        reply = self.send(method, path, token, body)
        self.unanswered = self.unanswered + 1 if reply.status == 0 else 0
        if reply.status == 409:
            self.stats.conflicts += 1
        elif not reply.ok:
            error = reply.data.get("error")
            message = error.get("message", "") if isinstance(error, dict) else ""
            kind = str(reply.status) if reply.status else "no answer"
            self.stats.count_error(kind, f"{method} {path}: {kind} {message}")
        return reply

    def send(self, method: str, path: str, token: str | None, body: dict | None = None) -> Reply:
        """Send one request without counting it."""
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.root + path, data=data, headers=headers, method=method)  # noqa: S310 - http(s) only, checked by SimConfig
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return Reply(response.status, _json(response.read()))
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                return Reply(error.code, {"error": {"message": f"redirected to {error.headers.get('Location')}"}})
            return Reply(error.code, _json(_read(error)))
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out (URLError is an OSError)
            return Reply(0, {"error": {"message": str(error)}})


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # report a redirect (e.g. to https:// with OPS_HTTPS=1) instead of half-following it


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def _read(error: urllib.error.HTTPError) -> bytes:
    try:
        return error.read()
    except (OSError, http.client.HTTPException):
        return b""


# --- set-up and clean-up (the only database access) -----------------------------------------


@dataclass
class Session:
    """The API clients, providers and patients one run plays; the clients are revoked at the end."""

    run_id: str
    patient_tokens: dict[str, str]  # MRN -> the token of the patient app acting for that patient
    provider_tokens: list[tuple[str, str]]  # (NPI, token)
    mrns: list[str]
    states: list[str]  # where patients may be located; empty means anywhere
    clients: list[ApiClient]
    revoked: int = 0


def providers_to_play(count: int, rng: random.Random) -> list[Provider]:
    """Return up to ``count`` active providers licensed somewhere today, those not holding a visit first."""
    licensed = ProviderLicense.objects.valid_at().values("provider_id")
    candidates = list(
        Provider.objects.filter(is_active=True, pk__in=licensed).only("npi", "availability").order_by("pk")
    )
    rng.shuffle(candidates)
    candidates.sort(key=lambda provider: provider.availability in (Availability.RESERVED, Availability.BUSY))
    return candidates[:count]


def patient_pool(rng: random.Random, size: int = PATIENT_POOL) -> list[Patient]:
    """Return the patients who will request visits (none with a visit open now)."""
    busy = Visit.objects.filter(status__in=OPEN_STATUSES).values("patient_id")
    patients = list(Patient.objects.exclude(pk__in=busy).order_by("pk").only("mrn")[: size * 2])
    rng.shuffle(patients)
    return patients[:size]


@transaction.atomic
def open_session(config: SimConfig) -> Session:
    """Choose providers and patients and create this run's API clients (tokens are shown only once)."""
    rng = random.Random(config.seed)
    run_id = f"{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    players = providers_to_play(config.providers, rng)
    clients, provider_tokens, patient_tokens = [], [], {}
    for patient in patient_pool(rng):
        client, token = api_client_actions.create_api_client(
            name=f"sim-patient-{patient.mrn}-{run_id}", scope=ApiScope.PATIENT, patient=patient, actor=ACTOR
        )
        clients.append(client)
        patient_tokens[patient.mrn] = token
    for provider in players:
        client, token = api_client_actions.create_api_client(
            name=f"sim-provider-{provider.npi}-{run_id}", scope=ApiScope.PROVIDER, provider=provider, actor=ACTOR
        )
        clients.append(client)
        provider_tokens.append((provider.npi, token))
    mrns = list(patient_tokens)
    return Session(run_id, patient_tokens, provider_tokens, mrns, _covered_states(config, players), clients)


def _covered_states(config: SimConfig, players: list[Provider]) -> list[str]:
    if config.all_states or not players:
        return []
    licenses = ProviderLicense.objects.valid_at().filter(provider__in=players)
    return sorted(set(licenses.values_list("state", flat=True)))


def close_session(session: Session) -> int:
    """Revoke the run's API clients; return how many were revoked."""
    for client in session.clients:
        api_client_actions.revoke_api_client(client, actor=ACTOR, reason=f"simulation {session.run_id} ended")
        session.revoked += 1
    return session.revoked


@contextmanager
def session_for(config: SimConfig) -> Iterator[Session]:
    """Open a session and revoke its clients on the way out, however the run ends."""
    session = open_session(config)
    try:
        yield session
    finally:
        # The run only talks HTTP: the connection opened at the start may have died meanwhile
        # (a PostgreSQL restart), so revoke over a fresh one then.
        if connection.connection is not None and not connection.in_atomic_block and not connection.is_usable():
            connection.close()
        close_session(session)


# --- the simulation -------------------------------------------------------------------------


class Timeline:
    """A heap of (due, sequence, action): run what is due, in order, on this thread."""

    def __init__(self):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()

    def at(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` in ``delay`` seconds."""
        heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._sequence), action))

    def run_next(self, *, on_error: Callable[[Exception], None]) -> float:
        """Run the next action if it is due; return seconds until the next one is due."""
        if self._heap and self._heap[0][0] <= time.monotonic():
            action = heapq.heappop(self._heap)[2]
            try:
                action()
            except Exception as error:  # one surprising reply must not end the whole run
                on_error(error)
        return self._heap[0][0] - time.monotonic() if self._heap else 1.0


@dataclass
class SimVisit:
    """A visit one of the simulated patients requested, while it waits for a provider."""

    id: str
    mrn: str
    requested: float  # time.monotonic() when the request was sent
    status: str = "waiting"
    offered: bool = False


@dataclass
class SimProvider:
    """A provider the simulation plays; exactly one action of theirs is due at any time."""

    npi: str
    token: str
    ignoring: str | None = None  # the offer they let run out
    shift_ends: float = 0.0


class Simulation:
    """Patients and providers acting through the API until stopped or out of time."""

    def __init__(
        self,
        config: SimConfig,
        session: Session,
        *,
        on_summary: Callable[[Stats], None] | None = None,
        summary_every: float = 5.0,
    ):
        self.config, self.session = config, session
        self.behaviour = Behaviour(config, random.Random(config.seed))
        self.stats = Stats()
        self.api = Api(config.base_url, timeout=config.request_timeout, stats=self.stats)
        self.timeline = Timeline()
        self.providers = [SimProvider(npi, token) for npi, token in session.provider_tokens]
        self.visits: dict[str, SimVisit] = {}  # waiting for a provider
        self.open_patients: dict[str, str] = {}  # visit id -> MRN, until the visit ends
        self.on_summary, self.summary_every = on_summary, summary_every
        self.stopping = False

    def wait_for_server(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the server to answer at all (e.g. while gunicorn boots)."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            if self.api.send("GET", "", None).status:
                return True
            time.sleep(0.5)
        return False

    def run(self, *, duration: float | None = None) -> Stats:
        """Run until ``stopping`` is set or ``duration`` seconds pass, sign off, and return the stats."""
        self._start()
        deadline = None if duration is None else self.stats.started + duration
        while not self.stopping and (deadline is None or time.monotonic() < deadline):
            due_in = self.timeline.run_next(on_error=self._crashed)
            if due_in > 0:
                left = 0.2 if deadline is None else deadline - time.monotonic()
                time.sleep(max(0.0, min(due_in, 0.2, left)))
        self.snapshot().ended = time.monotonic()
        self.sign_off()
        return self.stats

    def snapshot(self) -> Stats:
        """Return the stats with the number of visits waiting as the simulation knows it."""
        self.stats.waiting = len(self.visits)
        return self.stats

    def _start(self) -> None:
        self.stats.started = time.monotonic()
        for provider in self.providers:
            self._later(provider, self.behaviour.seconds(LOG_IN_SECONDS), self._go_online)
        if self.config.rate > 0:
            self.timeline.at(0, self._arrive)
        if self.on_summary:
            self.timeline.at(self.summary_every, self._summarize)

    def _summarize(self) -> None:
        self.timeline.at(self.summary_every, self._summarize)
        self.on_summary(self.snapshot())

    def _crashed(self, error: Exception) -> None:
        logger.debug("simulate_traffic: action failed", exc_info=error)
        self.stats.count_error(type(error).__name__, repr(error))

    # --- patients -------------------------------------------------------------------------

    def _arrive(self) -> None:
        """Request a visit for a patient through the patient app; some will cancel later."""
        self.timeline.at(self.behaviour.arrival_gap(), self._arrive)
        mrn = self._free_patient()
        if mrn is None:
            return
        b = self.behaviour
        body = {
            "located_state": b.state(self.session.states),
            "reason": b.reason(),
            "priority": b.priority(),
        }
        sent = time.monotonic()
        reply = self.api.post("visits", self.session.patient_tokens[mrn], body)
        if reply.status != 201 or not reply.data.get("id"):
            return
        visit = SimVisit(reply.data["id"], mrn, sent)
        self.visits[visit.id] = visit
        self.open_patients[visit.id] = mrn
        self.stats.requested += 1
        self.timeline.at(b.seconds(self.config.patient_poll_seconds), lambda: self._check(visit))
        if b.cancels():
            self.timeline.at(b.seconds(self.config.cancel_after_seconds), lambda: self._cancel(visit))

    def _free_patient(self) -> str | None:
        """Return a patient without a visit waiting (a few tries), or None if there are no patients."""
        if not self.session.mrns:
            return None
        busy = set(self.open_patients.values())  # one open visit per patient (the database insists)
        for _ in range(5):
            mrn = self.behaviour.rng.choice(self.session.mrns)
            if mrn not in busy:
                return mrn
        return None

    def _check(self, visit: SimVisit) -> None:
        """Poll the visit as the patient app does while it shows "finding a provider"."""
        if visit.id not in self.visits:
            return
        reply = self.api.get(f"visits/{visit.id}", self.session.patient_tokens[visit.mrn])
        if reply.ok:
            self._note(reply.data)
        elif reply.status == 404:
            self.visits.pop(visit.id, None)
        if visit.id in self.visits:
            self.timeline.at(self.behaviour.seconds(self.config.patient_poll_seconds), lambda: self._check(visit))

    def _cancel(self, visit: SimVisit) -> None:
        """Cancel a visit still waiting or offered; once a provider has it, the patient stays."""
        if visit.id not in self.visits:
            return
        reply = self.api.post(f"visits/{visit.id}/cancel", self.session.patient_tokens[visit.mrn])
        if reply.ok:
            self.stats.cancelled += 1
            self._note(reply.data)

    def _note(self, data: dict) -> None:
        """Learn a visit's status from any reply that shows it; stop tracking it once it left the queue."""
        if data.get("status") in FINAL:
            self.open_patients.pop(data.get("id", ""), None)
        visit = self.visits.get(data.get("id", ""))
        if visit is None:
            return
        visit.status = data.get("status", visit.status)
        if visit.status == "offered" and not visit.offered:
            visit.offered = True
            self.stats.offer_seconds.append(time.monotonic() - visit.requested)
        if visit.status not in WAITING:
            del self.visits[visit.id]
            self.stats.expired += visit.status == "expired"

    # --- providers ------------------------------------------------------------------------

    def _later(self, provider: SimProvider, delay: float, step: Callable, *args) -> None:
        """Schedule the provider's next step; if it raises, the provider goes back to polling."""

        def run():
            try:
                step(provider, *args)
            except Exception as error:  # keep this provider alive for the rest of the run
                self._crashed(error)
                self._later(provider, self.behaviour.seconds(self.config.retry_seconds), self._poll)

        self.timeline.at(delay, run)

    def _go_online(self, provider: SimProvider) -> None:
        reply = self.api.post(f"providers/{provider.npi}/availability", provider.token, {"available": True})
        if reply.ok or reply.status == 409:  # 409: they hold an offer or a visit; the next poll picks it up
            provider.shift_ends = time.monotonic() + self.behaviour.minutes(self.config.shift_minutes)
            self._later(provider, self.behaviour.poll(), self._poll)
        else:
            self._later(provider, self.behaviour.seconds(self.config.retry_seconds), self._go_online)

    def _poll(self, provider: SimProvider) -> None:
        """Ask for the provider's state as the provider app does, and act on what it shows."""
        reply = self.api.get(f"providers/{provider.npi}", provider.token)
        if not reply.ok:
            return self._later(provider, self.behaviour.seconds(self.config.retry_seconds), self._poll)
        held = reply.data.get("visit")
        if held:
            self._note(held)
        if held and held["status"] == "offered":
            return self._offered(provider, held["id"])
        if held:
            return self._resume(provider, held)
        provider.ignoring = None
        if reply.data.get("availability") == Availability.OFFLINE:
            # The router set them offline after an ignored offer (or staff did): back after a break.
            return self._later(provider, self.behaviour.minutes(self.config.break_minutes), self._go_online)
        if time.monotonic() >= provider.shift_ends:
            return self._later(provider, 0, self._take_break)
        self._later(provider, self.behaviour.poll(), self._poll)

    def _offered(self, provider: SimProvider, visit_id: str) -> None:
        if provider.ignoring == visit_id:  # still letting it run out
            return self._later(provider, self.behaviour.poll(), self._poll)
        self.stats.offers += 1
        answer = self.behaviour.answer()
        if answer == "ignore":
            self.stats.ignored += 1
            provider.ignoring = visit_id
            return self._later(provider, self.behaviour.poll(), self._poll)
        step = self._accept if answer == "accept" else self._reject
        self._later(provider, self.behaviour.seconds(self.config.think_seconds), step, visit_id)

    def _resume(self, provider: SimProvider, held: dict) -> None:
        """Carry on with a visit the provider already holds (e.g. after a failed request or an earlier run)."""
        delay = self.behaviour.seconds(self.config.connect_seconds)
        if held["status"] == "in_progress":
            return self._later(provider, delay, self._end, held["id"], "complete")
        self._later(provider, delay, self._connect, held["id"])

    def _reject(self, provider: SimProvider, visit_id: str) -> None:
        if self._act(provider, visit_id, "reject"):
            self.stats.rejected += 1
        self._later(provider, self.behaviour.poll(), self._poll)

    def _accept(self, provider: SimProvider, visit_id: str) -> None:
        if not self._act(provider, visit_id, "accept"):  # e.g. 409: the patient cancelled meanwhile
            return self._later(provider, self.behaviour.poll(), self._poll)
        self.stats.accepted += 1
        self._later(provider, self.behaviour.seconds(self.config.connect_seconds), self._connect, visit_id)

    def _connect(self, provider: SimProvider, visit_id: str) -> None:
        if not self._act(provider, visit_id, "connected"):
            return self._later(provider, self.behaviour.poll(), self._poll)
        length = self.behaviour.minutes(self.config.visit_minutes)
        if self.behaviour.fails():
            return self._later(provider, length * self.behaviour.rng.random(), self._end, visit_id, "fail")
        self._later(provider, length, self._end, visit_id, "complete")

    def _end(self, provider: SimProvider, visit_id: str, verb: str) -> None:
        if self._act(provider, visit_id, verb):
            self.stats.completed += verb == "complete"
            self.stats.failed += verb == "fail"
        self._later(provider, self.behaviour.poll(), self._poll)

    def _take_break(self, provider: SimProvider) -> None:
        reply = self.api.post(f"providers/{provider.npi}/availability", provider.token, {"available": False})
        if reply.ok:
            return self._later(provider, self.behaviour.minutes(self.config.break_minutes), self._go_online)
        self._later(provider, 0, self._poll)  # an offer came in first (409): answer it, break later

    def _act(self, provider: SimProvider, visit_id: str, verb: str) -> bool:
        reply = self.api.post(f"visits/{visit_id}/{verb}", provider.token)
        if reply.ok:
            self._note(reply.data)
        return reply.ok

    # --- stopping -------------------------------------------------------------------------

    def sign_off(self, *, seconds: float = SIGN_OFF_SECONDS) -> None:
        """Leave the data tidy: patients withdraw visits still waiting, providers finish and go offline."""
        deadline = time.monotonic() + seconds
        steps = [(self._withdraw, visit) for visit in list(self.visits.values())]
        steps += [(self._sign_off, provider) for provider in self.providers]
        for step, target in steps:
            if time.monotonic() > deadline or self.api.unanswered >= 3:  # the server is gone
                return
            try:
                step(target)
            except Exception as error:  # the rest should still sign off
                self._crashed(error)

    def _withdraw(self, visit: SimVisit) -> None:
        if self.api.post(f"visits/{visit.id}/cancel", self.session.patient_tokens[visit.mrn]).ok:
            self.stats.withdrawn_at_stop += 1
            self.visits.pop(visit.id, None)

    def _sign_off(self, provider: SimProvider) -> None:
        reply = self.api.get(f"providers/{provider.npi}", provider.token)
        held = reply.data.get("visit") if reply.ok else None
        if held:
            status = held["status"]
            verbs = {"offered": ["reject"], "in_progress": ["complete"]}.get(status, ["connected", "complete"])
            if all(self._act(provider, held["id"], verb) for verb in verbs):
                self.stats.finished_at_stop += 1
        payload = {"available": False}
        if self.api.post(f"providers/{provider.npi}/availability", provider.token, payload).ok:
            self.stats.signed_off += 1

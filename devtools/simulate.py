"""Simulated traffic through the real JSON API, so the queues move for a demo or under load.

Patients request visits (located by state population, with realistic priorities and reasons)
and some cancel; providers go online, poll for offers, accept, reject or ignore them, hold
visits for a realistic time and take breaks. It all runs on one thread: a heap of due actions,
each one HTTP request whose reply decides what that patient or provider does next. Only the
set-up (which providers and patients to play, their API clients) and the final revocation of
those clients touch the database.
"""

import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache

from clinical.models import Availability
from devtools import sampling
from devtools.simulate_http import Api, Stats
from devtools.simulate_session import Session

logger = logging.getLogger(__name__)

Span = tuple[float, float]  # (low, high) for a uniform draw
PRIORITY_MIX = {"routine": 85, "elevated": 12, "urgent": 3}
WAITING = ("waiting", "offered")  # what the patient app shows as "finding a provider"
FINAL = ("completed", "cancelled", "expired", "failed")
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

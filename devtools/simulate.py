"""Simulated traffic through the real JSON API, so the queues move for a demo or under load.

Patients request visits (located by state population, with realistic priorities and reasons)
and some cancel; providers go online, wait for offers, accept, reject or ignore them, hold
visits for a realistic time and take breaks. Like the apps, they listen on ``/ws/v1/`` and poll
the ``GET``s only while their socket is down or silent (``simulate_push``). It all runs on one
thread: a heap of due actions, each at most one HTTP request whose reply (or what was pushed)
decides what that patient or provider does next, and between them the pushed messages are
applied. Only the set-up (which providers and patients to play, their API clients) and the final
revocation of those clients touch the database.
"""

import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clinical.models import Availability
from devtools.simulate_config import MIN_POLL_SECONDS, Behaviour, SimConfig
from devtools.simulate_http import Api, Stats
from devtools.simulate_push import ProviderView, PushFeed, PushFeeds, socket_url
from devtools.simulate_session import Session

logger = logging.getLogger(__name__)

WAITING = ("waiting", "offered")  # what the patient app shows as "finding a provider"
FINAL = ("completed", "cancelled", "expired", "failed")
SIGN_OFF_SECONDS = 10.0


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
    feed: PushFeed | None = None  # their app's socket (None: it only polls)
    view: ProviderView = field(init=False)

    def __post_init__(self):
        self.view = ProviderView(self.npi)


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
        self.feeds: PushFeeds | None = None  # the apps' sockets (None: --no-push, they only poll)
        if config.push:
            url = socket_url(config.base_url)
            self.feeds = PushFeeds(url, silent_seconds=config.silent_seconds, open_timeout=config.request_timeout)
        self.patient_feeds: dict[str, PushFeed] = {}  # MRN -> the socket of a patient with an open visit
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
        try:
            self._start()
            deadline = None if duration is None else self.stats.started + duration
            while not self.stopping and (deadline is None or time.monotonic() < deadline):
                due_in = self.timeline.run_next(on_error=self._crashed)
                left = 0.2 if deadline is None else deadline - time.monotonic()
                self._apply_pushes(wait=max(0.0, min(due_in, 0.2, left)))
            self.snapshot().ended = time.monotonic()
            self.sign_off()
        finally:
            if self.feeds is not None:
                self.feeds.close_all()
        return self.stats

    def snapshot(self) -> Stats:
        """Return the stats with the number of visits waiting as the simulation knows it."""
        self.stats.waiting = len(self.visits)
        return self.stats

    def _start(self) -> None:
        self.stats.started = time.monotonic()
        for provider in self.providers:
            self._later(provider, self.behaviour.sign_in(), self._sign_in)
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

    # --- pushes ---------------------------------------------------------------------------

    def _apply_pushes(self, *, wait: float) -> None:
        """Apply what the sockets pushed, waiting up to ``wait`` seconds for it (the loop's idle time)."""
        if self.feeds is None:
            time.sleep(wait)
            return
        for feed, message in self.feeds.drain(wait):
            try:
                self._apply(feed, message)
            except Exception as error:  # one surprising message must not end the whole run
                self._crashed(error)

    def _apply(self, feed: PushFeed, message: dict) -> None:
        """Apply a pushed message unless a message of that version or a newer one was applied for its visit."""
        if not feed.versions.newer(message):
            return
        self.stats.pushes += 1
        if message["type"] == "visit":
            self._note(message["visit"])
        if isinstance(feed.owner, SimProvider):
            feed.owner.view.pushed(message)

    def _listening(self, feed: PushFeed | None) -> bool:
        """Return True if ``feed`` is live (read what it pushed); count a fallback when it stops being so."""
        if feed is None:
            return False
        live = feed.live()
        self.stats.fallbacks += feed.was_live and not live
        feed.was_live = live
        return live

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
        if self.feeds is not None:  # the patient app listens while the patient has a visit open
            token = self.session.patient_tokens[mrn]
            self.patient_feeds[mrn] = self.feeds.open(token, owner=mrn, watch=(visit.id,))
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
        """Look at the visit as the patient app does while it shows "finding a provider": pushed, or a poll."""
        if visit.id not in self.visits:
            return
        if not self._listening(self.patient_feeds.get(visit.mrn)):
            self.stats.polls += 1
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
            mrn = self.open_patients.pop(data.get("id", ""), None)
            feed = self.patient_feeds.pop(mrn, None)
            if feed is not None:  # nothing open any more: the patient app stops listening
                feed.close()
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

    def _sign_in(self, provider: SimProvider) -> None:
        """Open the provider app: its socket (when pushing), then the provider goes online."""
        if self.feeds is not None and provider.feed is None:
            provider.feed = self.feeds.open(provider.token, owner=provider)
        self._go_online(provider)

    def _go_online(self, provider: SimProvider) -> None:
        reply = self.api.post(f"providers/{provider.npi}/availability", provider.token, {"available": True})
        if reply.ok or reply.status == 409:  # 409: they hold an offer or a visit; the next poll picks it up
            provider.view.offline = False
            provider.shift_ends = time.monotonic() + self.behaviour.minutes(self.config.shift_minutes)
            self._later(provider, self.behaviour.poll(), self._poll)
        else:
            self._later(provider, self.behaviour.seconds(self.config.retry_seconds), self._go_online)

    def _poll(self, provider: SimProvider) -> None:
        """Look at the provider's state as the provider app shows it (pushed, or a GET), and act on it."""
        listening, view = self._listening(provider.feed), provider.view
        if listening and view.lagging():  # the socket has not shown their own last action yet
            return self._later(provider, self.behaviour.poll(), self._poll)
        state = view.as_reply() if listening and view.awaited is None else self._get_state(provider)
        if state is None:
            return self._later(provider, self.behaviour.seconds(self.config.retry_seconds), self._poll)
        self._act_on(provider, state)

    def _get_state(self, provider: SimProvider) -> dict | None:
        """Poll ``GET providers/<npi>``; return what it answered, or None if it did not."""
        self.stats.polls += 1
        reply = self.api.get(f"providers/{provider.npi}", provider.token)
        if not reply.ok:
            return None
        provider.view.polled(reply.data)
        return reply.data

    def _act_on(self, provider: SimProvider, state: dict) -> None:
        """Answer an offer, carry on with a visit, or wait, take a break or come back, as ``state`` shows."""
        held = state.get("visit")
        if held:
            self._note(held)
        if held and held["status"] == "offered":
            return self._offered(provider, held["id"])
        if held:
            return self._resume(provider, held)
        provider.ignoring = None
        if state.get("availability") == Availability.OFFLINE:
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
            provider.view.offline = True
            return self._later(provider, self.behaviour.minutes(self.config.break_minutes), self._go_online)
        # An offer came in first (409): answer it, break later (once its push is in, when listening).
        self._later(provider, MIN_POLL_SECONDS if provider.feed is not None else 0, self._poll)

    def _act(self, provider: SimProvider, visit_id: str, verb: str) -> bool:
        reply = self.api.post(f"visits/{visit_id}/{verb}", provider.token)
        if reply.ok:
            self._note(reply.data)
        if reply.ok or reply.status == 409:  # the app knows what it did; its socket must show it before it trusts it
            provider.view.acted(visit_id, reply.data if reply.ok else None)
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

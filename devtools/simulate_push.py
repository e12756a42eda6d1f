"""simulate_traffic's websockets: each app's socket to ``/ws/v1/``, read on a thread of its own.

A ``PushFeed`` reads one token's socket on a daemon thread that reconnects with backoff (0.5 s
doubling to 5 s) and resumes (in the URL) from the versions it applied on every (re)connect, so
the server replays what it missed. Messages go to one queue that the simulation's single thread
drains (``PushFeeds.drain``) and applies: a message is applied only if its version is higher than
the last one applied for its visit. A feed is ``live()`` while its socket is open, resumed, and
heard from (a heartbeat will do) within ``silent_seconds``; otherwise its app polls.

``ProviderView`` is what a provider app shows from its socket: the visit it holds and whether
the router set it offline, kept from pushes (and its last ``GET`` while it polled).
"""

import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlencode

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = (0.5, 5.0)  # first retry, longest wait
RESUME_VISITS = 20  # a resume names the visits applied most recently (the server takes up to 100)
RECV_SECONDS = 0.5  # how often a reader thread looks whether it should close
PUSH_LAG_SECONDS = 3.0  # a provider whose own action is not pushed back within this long asks with a GET
APPLIED = ("visit", "offer_withdrawn")
HOLDING = {"offered": 1, "accepted": 2, "connecting": 3, "in_progress": 4}  # how far along a provider's hold is
LET_GO = 5  # the provider no longer holds the visit (it ended, or moved on without them)


def socket_url(base_url: str) -> str:
    """Return the apps' websocket URL for the console at ``base_url`` (http→ws, https→wss)."""
    scheme, _, rest = base_url.rstrip("/").partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/v1/"


class Versions:
    """The highest version applied per visit, most recently applied last (thread-safe)."""

    def __init__(self):
        self._applied: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def newer(self, message: dict) -> bool:
        """Return True, and note its version, if ``message`` is newer than anything applied for its visit."""
        visit = message.get("visit")
        visit_id = visit.get("id") if isinstance(visit, dict) else None
        version = message.get("version")
        if not isinstance(visit_id, str) or type(version) is not int:
            return False
        with self._lock:
            if version <= self._applied.get(visit_id, 0):
                return False
            self._applied[visit_id] = version
            self._applied.move_to_end(visit_id)
        return True

    def watch(self, visit_id: str) -> None:
        """Name ``visit_id`` in the next resumes (from its first event if none was applied yet)."""
        with self._lock:
            self._applied.setdefault(visit_id, 0)
            self._applied.move_to_end(visit_id)

    def recent(self, count: int = RESUME_VISITS) -> dict[str, int]:
        """Return the versions of the ``count`` visits applied most recently, for a resume."""
        with self._lock:
            return dict(list(self._applied.items())[-count:])


class PushFeed:
    """One token's socket, read on a daemon thread until ``close``; ``owner`` says whose app it is."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        owner: object,
        inbox: queue.SimpleQueue,
        silent_seconds: float,
        open_timeout: float = 5.0,
    ):
        self.url, self.token, self.owner, self.inbox = url, token, owner, inbox
        self.silent_seconds, self.open_timeout = silent_seconds, open_timeout
        self.versions = Versions()
        self.was_live = False  # what the simulation saw at its last look (to count fallbacks)
        self.connection = 0  # how many times the socket opened; the reader thread counts
        self.synced = -1  # the connection whose ``resumed`` the simulation has applied
        self.last_heard = 0.0
        self._socket: ClientConnection | None = None
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._read, name="simulate-push", daemon=True)

    def start(self) -> "PushFeed":
        """Start reading (and reconnecting) on the feed's thread."""
        self.thread.start()
        return self

    def connected(self) -> bool:
        """Return True while the socket is open (whether or not anything arrives on it)."""
        return self._socket is not None

    def live(self) -> bool:
        """Return True while the socket is open, resumed and heard from within ``silent_seconds``."""
        return (
            self.connected()
            and self.synced == self.connection
            and time.monotonic() - self.last_heard <= self.silent_seconds
        )

    def close(self) -> None:
        """Close the socket and stop reconnecting (the thread ends within ``RECV_SECONDS``)."""
        self._closing.set()

    def _read(self) -> None:
        delay = BACKOFF_SECONDS[0]
        while not self._closing.is_set():
            opened = self.connection
            try:
                self._listen()
            except (OSError, WebSocketException) as error:  # refused, reset, closed, handshake refused (403)
                logger.debug("simulate_traffic: socket %s: %r", self.url, error)
            except Exception:  # a surprise must not end the feed: it reconnects
                logger.exception("simulate_traffic: socket %s failed", self.url)
            if self.connection != opened:
                delay = BACKOFF_SECONDS[0]  # it was open: the first retry comes soon again
            self._closing.wait(delay)
            delay = min(delay * 2, BACKOFF_SECONDS[1])

    def _listen(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        # Resumed in the URL: the server replays before anything live, so nothing arrives out of order.
        resume = ",".join(f"{visit}:{version}" for visit, version in self.versions.recent().items())
        url = f"{self.url}?{urlencode({'resume': resume})}"
        with connect(url, additional_headers=headers, open_timeout=self.open_timeout, close_timeout=1) as socket:
            self.connection += 1
            self._socket = socket
            try:
                while not self._closing.is_set():
                    try:
                        self._heard(socket.recv(timeout=RECV_SECONDS))
                    except TimeoutError:
                        continue
            finally:
                self._socket = None

    def _heard(self, raw: str | bytes) -> None:
        self.last_heard = time.monotonic()
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") in (*APPLIED, "resumed"):
            self.inbox.put((self, self.connection, message))
        elif isinstance(message, dict) and message.get("type") == "error":
            logger.debug("simulate_traffic: socket %s refused a message: %s", self.url, message)


class PushFeeds:
    """Every socket of one run and the one queue their messages arrive on."""

    def __init__(self, url: str, *, silent_seconds: float, open_timeout: float = 5.0):
        self.url, self.silent_seconds, self.open_timeout = url, silent_seconds, open_timeout
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.feeds: list[PushFeed] = []

    def open(self, token: str, *, owner: object, watch: tuple[str, ...] = ()) -> PushFeed:
        """Open a socket for ``token``; its resumes name the visits in ``watch`` from their start."""
        feed = PushFeed(
            self.url,
            token,
            owner=owner,
            inbox=self.inbox,
            silent_seconds=self.silent_seconds,
            open_timeout=self.open_timeout,
        )
        for visit_id in watch:
            feed.versions.watch(visit_id)
        self.feeds = [known for known in self.feeds if known.thread.is_alive()]
        self.feeds.append(feed)
        return feed.start()

    def drain(self, wait: float) -> list[tuple[PushFeed, dict]]:
        """Return the visit messages that arrived, waiting up to ``wait`` seconds for the first.

        A ``resumed`` is not returned: it marks its feed synced (live), after the replay it ends
        has been returned, so the simulation applies the replay before it trusts the feed.
        """
        got = []
        try:
            item = self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
            while True:
                feed, connection, message = item
                if message["type"] == "resumed":
                    feed.synced = connection
                else:
                    got.append((feed, message))
                item = self.inbox.get_nowait()
        except queue.Empty:
            return got

    def close_all(self, *, seconds: float = 2.0) -> None:
        """Close every socket, waiting up to ``seconds`` for them to be closed."""
        for feed in self.feeds:
            feed.close()
        deadline = time.monotonic() + seconds
        for feed in self.feeds:
            feed.thread.join(max(0.0, deadline - time.monotonic()))
        self.feeds = []


def hold_rank(visit: dict, npi: str) -> int:
    """Return how far along provider ``npi``'s hold of ``visit`` is (``LET_GO`` if they do not hold it)."""
    mine = (visit.get("provider") or {}).get("npi") == npi
    return HOLDING.get(visit.get("status"), LET_GO) if mine else LET_GO


@dataclass
class Awaited:
    """A provider's own action its socket has not shown yet: at least ``rank`` on ``visit_id``."""

    visit_id: str
    rank: int
    until: float  # time.monotonic() after which the app asks with a GET instead


@dataclass
class ProviderView:
    """What a provider app shows from its socket: the visit it holds and whether the router set it offline."""

    npi: str
    held: dict | None = None
    offline: bool = False
    awaited: Awaited | None = None

    def pushed(self, message: dict) -> None:
        """Apply a ``visit`` or ``offer_withdrawn`` message (newer than any applied for its visit)."""
        visit = message["visit"]
        holding = self.held is not None and self.held["id"] == visit["id"]
        rank = hold_rank(visit, self.npi) if message["type"] == "visit" else LET_GO
        if message["type"] == "offer_withdrawn" and message.get("outcome") == "expired" and holding:
            self.offline = True  # the router sets a provider offline when their offer runs out
        if rank < LET_GO:
            self.held = visit
        elif holding:
            self.held = None
        if self.awaited is not None and self.awaited.visit_id == visit["id"] and rank >= self.awaited.rank:
            self.awaited = None

    def polled(self, data: dict) -> None:
        """Take what a ``GET providers/<npi>`` answered as the state pushes build on."""
        self.held, self.awaited = data.get("visit"), None
        self.offline = data.get("availability") == "offline"

    def acted(self, visit_id: str, reply: dict | None) -> None:
        """Note the provider's own action on ``visit_id`` (its visit as answered; None: refused, 409)."""
        rank = LET_GO if reply is None else hold_rank(reply, self.npi)
        self.awaited = Awaited(visit_id, rank, time.monotonic() + PUSH_LAG_SECONDS)

    def lagging(self) -> bool:
        """Return True while the socket has not shown the provider's own last action (and it is not overdue)."""
        return self.awaited is not None and time.monotonic() < self.awaited.until

    def as_reply(self) -> dict:
        """Return the state as ``GET providers/<npi>`` would show what the simulation reads of it."""
        return {"visit": self.held, "availability": "offline" if self.offline else "available"}

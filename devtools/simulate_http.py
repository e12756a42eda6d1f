"""What simulate_traffic counts, and its HTTP client of the JSON API (standard library only)."""

import http.client
import json
import logging
import math
import statistics
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


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
    pushes: int = 0  # messages the sockets pushed (visit, offer_withdrawn) that were applied
    polls: int = 0  # GETs the apps made to look at a visit or a provider's state
    fallbacks: int = 0  # times an app's socket stopped being live and it polled instead
    # Every API request: (wall-clock start, ms as the app waited or None if unanswered, HTTP status or 0),
    # so that a load test can take its measured window and leave its warm-up out.
    api_log: list[tuple[float, float | None, int]] = field(default_factory=list)

    @property
    def api_ms(self) -> list[float]:
        """Return each answered API request's time, as the app waited (a refusal has none)."""
        return [waited for _, waited, _ in self.api_log if waited is not None]

    def p50(self) -> float | None:
        """Return the median seconds from a visit request to its first offer, as the patients saw it."""
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
            f" | push {self.pushes} poll {self.polls} fallback {self.fallbacks}"
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
            f"push: {self.pushes} messages applied, {self.polls} polls, {self.fallbacks} fallbacks to polling",
        ]
        if self.api_ms:
            api = self.api_latency()
            lines.append(f"API time as the apps waited: p50 {api['p50']} ms, p95 {api['p95']} ms, p99 {api['p99']} ms")
        if self.errors:
            kinds = ", ".join(f"{count} x {kind}" for kind, count in self.error_kinds.most_common())
            lines.append(f"errors: {kinds}; last: {self.last_error}")
        return lines

    def counts(self) -> dict:
        """Return every count, for a machine to read."""
        names = (
            "requested", "waiting", "offers", "accepted", "rejected", "ignored", "completed", "cancelled", "failed",
            "expired", "requests", "conflicts", "errors", "withdrawn_at_stop", "finished_at_stop", "pushes", "polls",
            "fallbacks",
        )  # fmt: skip
        return {
            **{name: getattr(self, name) for name in names},
            "error_kinds": dict(self.error_kinds),
            "api_ms": self.api_latency(),
        }

    def api_latency(self) -> dict:
        """Return the answered API requests' count and p50/p95/p99/max in ms (nearest rank)."""
        return latency_summary(self.api_ms)

    def count_error(self, kind: str, message: str) -> None:
        """Count an error of ``kind`` (an HTTP status or an exception name) and keep its message."""
        self.errors += 1
        self.error_kinds[kind] += 1
        self.last_error = message[:300]


def latency_summary(times_ms: list[float]) -> dict:
    """Return the count and nearest-rank p50/p95/p99 and max of request times in ms (None when there are none)."""
    ordered = sorted(times_ms)
    if not ordered:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def rank(fraction: float) -> float:
        return round(ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)], 1)

    return {"n": len(ordered), "p50": rank(0.5), "p95": rank(0.95), "p99": rank(0.99), "max": round(ordered[-1], 1)}


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
        at, started = time.time(), time.perf_counter()
        reply = self.send(method, path, token, body)
        # Answered: its time is the server's and the network's (a refusal has none).
        waited = (time.perf_counter() - started) * 1000 if reply.status else None
        self.stats.api_log.append((at, waited, reply.status))
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

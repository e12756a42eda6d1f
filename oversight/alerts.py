"""The alert conditions true now, read from the visit, provider, router and outbox rows.

Each condition names what it is about (``subject``: a state, a state and priority, or nothing) so
that an open alert is matched to the condition that opened it. Times come from the database's
clock (``now``, passed in): a condition is judged the same by every process. Messages and details
carry counts and state codes only, never a patient. The console's reads of alerts are in
``oversight.selectors``.

- ``no_provider``: a state with visits in status ``waiting`` (not yet offered to anyone) and no
  provider on shift who is active and licensed there now (the state's calendar): none available,
  none with an offer out, none in a visit. Providers on shift but all busy are a capacity problem,
  which ``wait_over_target`` reports; counting only the idle ones would close and reopen this alert
  at every offer. An ``offered`` visit has a provider holding it, so it does not make a state unserved.
- ``wait_over_target``: per state and priority, the longest wait of a visit not yet accepted
  (``waiting`` or ``offered``: an offer that is declined or ignored sends the visit back, and the
  patient waited all along) is past the priority's target (``clinical.sla``). Counting offered
  visits too keeps the alert from resolving and reopening at each offer of the same visit.
- ``no_router``: no router has held the lease for more than two lease periods
  (``ROUTING_LEASE_SECONDS``); see ``leaderless_since``.
- ``outbox_stale``: with Elasticsearch configured, the search outbox's oldest entry is older than
  ``SEARCH_OUTBOX_ALERT_MINUTES``.
"""

import datetime as dt
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from clinical.calendar import license_valid_sql
from clinical.models import Priority
from clinical.sla import sla_targets
from oversight.models import AlertKind

# Per state and priority, the visits not yet accepted: how many wait unoffered, how long the
# oldest has waited; with the providers who could take the state's patients now.
_QUEUE_SQL = """
WITH queue AS (
    SELECT located_state AS state, priority, count(*) FILTER (WHERE status = 'waiting') AS waiting,
           count(*) AS queued, min(requested_at) AS oldest
    FROM clinical_visit WHERE status IN ('waiting', 'offered') GROUP BY located_state, priority
), on_shift AS (
    SELECT l.state, count(DISTINCT p.id) AS on_shift
    FROM clinical_provider p
    JOIN clinical_providerlicense l ON l.provider_id = p.id AND {license_valid}
    WHERE p.availability IN ('available', 'reserved', 'busy') AND p.is_active AND l.state IN (SELECT state FROM queue)
    GROUP BY l.state
)
SELECT q.state, q.priority, q.waiting, q.queued, extract(epoch FROM %(now)s - q.oldest), coalesce(a.on_shift, 0)
FROM queue q LEFT JOIN on_shift a USING (state)
ORDER BY q.state, q.priority DESC
""".replace("{license_valid}", license_valid_sql("l", "%(now)s"))

# The lease, the last report of the router named in it, and when the first known router started.
_ROUTER_SQL = """
SELECT l.expires_at, l.holder, l.leader_since,
       (SELECT h.seen_at FROM clinical_routerhealth h WHERE h.name = l.holder),
       (SELECT min(h.started_at) FROM clinical_routerhealth h)
FROM (VALUES (1)) AS one (id) LEFT JOIN clinical_routerlease l ON l.id = one.id
"""

# The oldest entry is the one with the lowest id (ids are handed out as entries are written): a
# primary key lookup, however many entries pile up while Elasticsearch is away.
_OUTBOX_SQL = "SELECT created_at FROM search_outboxentry ORDER BY id LIMIT 1"


class Condition(NamedTuple):
    """An alert condition that holds now."""

    kind: str
    subject: str
    state: str
    message: str
    detail: dict


def conditions(now: dt.datetime) -> list[Condition]:
    """Return the alert conditions that hold at ``now`` (the database's clock), in a few queries."""
    return [*_queue_conditions(now), *_router_conditions(now), *_outbox_conditions(now)]


def _queue_conditions(now: dt.datetime) -> list[Condition]:
    with connection.cursor() as cursor:
        cursor.execute(_QUEUE_SQL, {"now": now})
        rows = cursor.fetchall()
    targets = sla_targets()
    found, unserved = [], {}
    for state, priority, waiting, queued, longest, on_shift in rows:
        if waiting and not on_shift:
            unserved[state] = unserved.get(state, 0) + waiting
        if float(longest) > targets[priority]:
            found.append(_wait_over_target(state, priority, queued, float(longest), targets[priority]))
    return [_no_provider(state, waiting) for state, waiting in unserved.items()] + found


def _no_provider(state: str, waiting: int) -> Condition:
    message = f"{state}: {waiting} waiting, no licensed provider on shift"
    return Condition(AlertKind.NO_PROVIDER, state, state, message, {"waiting": waiting})


def _wait_over_target(state: str, priority: int, queued: int, longest: float, target: int) -> Condition:
    label = Priority(priority).label.lower()
    message = f"{state} {label}: longest wait {_duration(longest)}, target {_duration(target)}"
    detail = {"priority": label, "waiting": queued, "longest_wait_s": round(longest), "target_s": target}
    return Condition(AlertKind.WAIT_OVER_TARGET, f"{state}/{label}", state, message, detail)


def _router_conditions(now: dt.datetime) -> list[Condition]:
    with connection.cursor() as cursor:
        cursor.execute(_ROUTER_SQL)
        expires_at, holder, leader_since, holder_seen_at, first_started = cursor.fetchone()
    since = leaderless_since(expires_at, holder, leader_since, holder_seen_at, first_started)
    if since is not None and now - since <= dt.timedelta(seconds=2 * settings.ROUTING_LEASE_SECONDS):
        return []
    if since is None:
        message, detail = "No router has ever led", {"since": None}
    else:
        message = f"No router leading for {_duration((now - since).total_seconds())}"
        detail = {"since": since.isoformat(), "last_leader": holder or None}
    return [Condition(AlertKind.NO_ROUTER, "", "", message, detail)]


def leaderless_since(expires_at, holder, leader_since, holder_seen_at, first_started) -> dt.datetime | None:
    """Return since when no router leads (a time in the future while one does), or None for "ever".

    - The lease has an expiry: it ran out then (or runs out then, if still held).
    - No expiry but a holder: the holder released it at a clean shutdown, right before its last
      health report (``seen_at``); without that row, when it took the lease (earlier: the alert
      comes sooner rather than later).
    - Never held (no row, or no holder): since the first router started, if any was ever seen;
      None when none ever ran, which counts as leaderless for long enough: nobody routes.
    """
    if expires_at is not None:
        return expires_at
    if holder:
        return holder_seen_at or leader_since
    return first_started


def _outbox_conditions(now: dt.datetime) -> list[Condition]:
    if not settings.ELASTICSEARCH_URL:
        return []  # the outbox is written only for Elasticsearch (search.outbox.enabled)
    with connection.cursor() as cursor:
        cursor.execute(_OUTBOX_SQL)
        row = cursor.fetchone()
    if row is None:
        return []
    age = (now - row[0]).total_seconds()
    if age <= settings.SEARCH_OUTBOX_ALERT_MINUTES * 60:
        return []
    message = f"Search outbox: oldest entry waiting {_duration(age)}"
    return [Condition(AlertKind.OUTBOX_STALE, "", "", message, {"oldest_age_s": round(age)})]


def _duration(seconds: float) -> str:
    """Return a wait as people say it: "45 s", "12 min", "2 h 5 min"."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"

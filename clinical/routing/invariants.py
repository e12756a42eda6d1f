"""The routing promise, checked against the whole recorded history in SQL.

Each rule is one query returning the rows that break it (at most ``limit`` of them as examples,
and their count). ``check_routing_invariants`` runs them all; the soak runs it after its faults.
"""

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from clinical.actions import timeouts as timeout_actions
from clinical.calendar import license_valid_sql

# The version of each license in force at an offer's instant: its latest history record dated at
# or before it (history dates come from the database's clock, taken after the license's row lock,
# which an offer holds in share mode). A license with no history at all counts as it is now.
_OFFERED_UNLICENSED_SQL = """
WITH versions AS (
    SELECT h.id, h.provider_id, h.state, h.status, h.issued_on, h.expires_on, h.history_date AS since,
           h.history_id AS seq
    FROM clinical_historicalproviderlicense h
    UNION ALL
    SELECT l.id, l.provider_id, l.state, l.status, l.issued_on, l.expires_on, '-infinity', 0
    FROM clinical_providerlicense l
    WHERE NOT EXISTS (SELECT 1 FROM clinical_historicalproviderlicense h WHERE h.id = l.id)
)
SELECT o.id, v.public_id, o.provider_id, v.located_state, o.offered_at
FROM clinical_offer o JOIN clinical_visit v ON v.id = o.visit_id
WHERE o.offered_at >= %(since)s AND NOT EXISTS (
    SELECT 1 FROM (SELECT DISTINCT id FROM versions WHERE provider_id = o.provider_id AND state = v.located_state) c
    CROSS JOIN LATERAL (
        SELECT * FROM versions x WHERE x.id = c.id AND x.since <= o.offered_at
        ORDER BY x.since DESC, x.seq DESC LIMIT 1
    ) asof
    WHERE asof.provider_id = o.provider_id AND asof.state = v.located_state AND {license_valid}
)
ORDER BY o.offered_at
""".replace("{license_valid}", license_valid_sql("asof", "o.offered_at"))

# What a provider held and when: each offer while open, each accepted visit until it ended.
_OVERLAPS_SQL = """
WITH held AS (
    SELECT o.provider_id, o.offered_at AS starts, coalesce(o.decided_at, 'infinity') AS ends, v.public_id
    FROM clinical_offer o JOIN clinical_visit v ON v.id = o.visit_id
    WHERE o.offered_at >= %(since)s
    UNION ALL
    SELECT v.provider_id, v.accepted_at, coalesce(v.ended_at, v.cancelled_at, 'infinity'), v.public_id
    FROM clinical_visit v WHERE v.accepted_at >= %(since)s AND v.provider_id IS NOT NULL
), ordered AS (
    SELECT *, max(ends) OVER (PARTITION BY provider_id ORDER BY starts, ends
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS busy_until
    FROM held
)
SELECT provider_id, public_id, starts, busy_until FROM ordered WHERE starts < busy_until ORDER BY starts
"""

_LATE_ACCEPT_SQL = """
SELECT o.id, v.public_id, o.provider_id, o.expires_at, o.decided_at
FROM clinical_offer o JOIN clinical_visit v ON v.id = o.visit_id
WHERE o.outcome = 'accepted' AND o.decided_at >= o.expires_at AND o.offered_at >= %(since)s
ORDER BY o.decided_at
"""

_STUCK_SQL = """
SELECT v.public_id, v.status, v.requested_at FROM clinical_visit v
WHERE (v.status = 'waiting' AND v.requested_at < clock_timestamp() - %(max_wait)s - %(grace)s)
   OR (v.status IN ('accepted', 'connecting') AND v.accepted_at < clock_timestamp() - %(connect)s - %(grace)s)
   OR (v.status = 'in_progress' AND v.started_at < clock_timestamp() - %(running)s - %(grace)s)
   OR (v.status = 'offered' AND EXISTS (
        SELECT 1 FROM clinical_offer o
        WHERE o.visit_id = v.id AND o.outcome IS NULL AND o.expires_at < clock_timestamp() - %(grace)s))
ORDER BY v.requested_at
"""

# Expired visits, and visits the router failed because they timed out, each need a support case.
_NO_CASE_SQL = """
SELECT v.public_id, v.status, v.ended_at FROM clinical_visit v
WHERE v.ended_at >= %(since)s AND (
    v.status = 'expired' OR (v.status = 'failed' AND EXISTS (
        SELECT 1 FROM clinical_visitevent e
        WHERE e.visit_id = v.id AND e.to_status = 'failed' AND e.actor_kind = 'router'))
) AND NOT EXISTS (SELECT 1 FROM support_supportcase c WHERE c.visit_id = v.id)
ORDER BY v.ended_at
"""

RULES = {
    "offer_to_unlicensed_provider": (
        _OFFERED_UNLICENSED_SQL, "an offer to a provider not licensed in the visit's state at the offer instant",
    ),
    "overlapping_holds": (_OVERLAPS_SQL, "a provider holding two offers or visits at once"),
    "accept_after_deadline": (_LATE_ACCEPT_SQL, "an offer accepted at or after its deadline"),
    "stuck_past_timeout": (_STUCK_SQL, "a visit in a non-final status past its timeout"),
    "timed_out_without_case": (_NO_CASE_SQL, "an expired or timed-out visit without a support case"),
}  # fmt: skip


@dataclass
class RuleResult:
    name: str
    description: str
    violations: int
    examples: list[tuple]


def check(*, since: dt.datetime | None = None, grace_seconds: int | None = None, limit: int = 5) -> list[RuleResult]:
    """Run every rule over the history (from ``since``, all of it by default); return what each found."""
    grace = grace_seconds if grace_seconds is not None else 2 * settings.ROUTING_LEASE_SECONDS + 5
    params = {
        "since": since or dt.datetime.min.replace(tzinfo=dt.UTC),
        "grace": dt.timedelta(seconds=grace),
        "max_wait": dt.timedelta(seconds=settings.ROUTING_MAX_WAIT),
        "connect": timeout_actions.stuck_limit("accepted"),
        "running": timeout_actions.stuck_limit("in_progress"),
    }
    results = []
    with connection.cursor() as cursor:
        for name, (sql, description) in RULES.items():
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            results.append(RuleResult(name, description, len(rows), rows[:limit]))
    return results

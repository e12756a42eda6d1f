"""Offer records derived from visit timelines, for visits written before offers were records
(migration ``clinical.0007``) and for the bulk writers that build timelines directly (the demo
seed, ``generate_data``).

Each ``waiting → offered`` event starts an offer to its provider; the visit's next event decides it:
accepted, cancelled, or back to waiting as rejected, expired or withdrawn (by its detail). An offer
with no next event is open if the visit is still offered to that provider.
"""

import datetime as dt

OFFERS_FROM_TIMELINE_SQL = """
INSERT INTO clinical_offer (visit_id, provider_id, offered_at, expires_at, outcome, decided_at)
SELECT e.visit_id, e.provider_id, e.at,
       CASE WHEN n.to_status = 'accepted' THEN greatest(e.at + %(timeout)s, n.at + interval '1 ms')
            WHEN n.to_status = 'waiting' AND n.detail LIKE '%%expired'
                THEN greatest(least(e.at + %(timeout)s, n.at), e.at + interval '1 ms')
            ELSE e.at + %(timeout)s END,
       CASE WHEN n.id IS NULL AND v.status = 'offered' AND v.provider_id = e.provider_id THEN NULL
            WHEN n.id IS NULL THEN 'withdrawn'
            WHEN n.to_status = 'accepted' THEN 'accepted'
            WHEN n.to_status = 'waiting' AND n.detail LIKE 'offer withdrawn%%' THEN 'withdrawn'
            WHEN n.to_status = 'waiting' AND n.detail LIKE '%%expired' THEN 'expired'
            WHEN n.to_status = 'waiting' THEN 'declined'
            ELSE 'cancelled' END,
       CASE WHEN n.id IS NULL AND v.status = 'offered' AND v.provider_id = e.provider_id THEN NULL
            ELSE coalesce(n.at, e.at) END
FROM (
    SELECT e.id, e.visit_id, e.provider_id, e.at, e.to_status,
           lead(e.id) OVER (PARTITION BY e.visit_id ORDER BY e.at, e.id) AS next_id
    FROM clinical_visitevent e
    WHERE e.id > %(events_after)s AND e.visit_id IN (
        SELECT v.id FROM clinical_visit v
        WHERE v.offer_count > 0 AND v.id BETWEEN %(first)s AND %(last)s
          AND NOT EXISTS (SELECT 1 FROM clinical_offer o WHERE o.visit_id = v.id)
    )
) e
JOIN clinical_visit v ON v.id = e.visit_id
LEFT JOIN clinical_visitevent n ON n.id = e.next_id
WHERE e.to_status = 'offered' AND e.provider_id IS NOT NULL
"""


def derive_offers(cursor, *, offer_timeout: int, first: int = 0, last: int = 2**62, events_after: int = 0) -> int:
    """Write the offer records of every offered visit (with an id in ``first``…``last``) that has
    none yet; return how many.

    ``events_after``: the visits' events all have greater ids (a bulk writer that has just
    written them), so only those are read, by the primary key, instead of the whole timeline
    table: a loader that has dropped the ``visit_id`` index would otherwise scan every event
    of every earlier chunk again.
    """
    params = {
        "timeout": dt.timedelta(seconds=offer_timeout), "first": first, "last": last, "events_after": events_after,
    }  # fmt: skip
    cursor.execute(OFFERS_FROM_TIMELINE_SQL, params)
    return cursor.rowcount

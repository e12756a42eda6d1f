"""Reads of the clinical domain, with their joins applied, for the console and the API."""

import datetime as dt

from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from clinical.calendar import LicenseValidAt, license_valid_sql, states_licensed_at
from clinical.models import (
    PROVIDER_HOLDING_STATUSES,
    Availability,
    LicenseStatus,
    Offer,
    Patient,
    Priority,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
    VisitStatus,
)
from clinical.sla import sla_targets
from core import dbclock
from core.replica import read_cursor


def visits_for_list() -> QuerySet[Visit]:
    """Return visits with patient and provider names joined, for lists."""
    return Visit.objects.select_related("patient", "provider").only(
        "public_id", "located_state", "status", "priority", "requested_at", "offered_at", "accepted_at",
        "started_at", "ended_at", "cancelled_at", "offer_count",
        "patient__mrn", "patient__first_name", "patient__last_name",
        "provider__first_name", "provider__last_name", "provider__npi",
    )  # fmt: skip


def visit_timeline(visit: Visit) -> QuerySet[VisitEvent]:
    """Return a visit's events in order with the staff user and provider joined."""
    return VisitEvent.objects.filter(visit=visit).select_related("staff_user", "provider").order_by("at", "id")


def events_for_list() -> QuerySet[VisitEvent]:
    """Return visit events with their visit, staff user and provider joined."""
    return VisitEvent.objects.select_related("visit", "staff_user", "provider")


def providers_for_list() -> QuerySet[Provider]:
    """Return providers annotated with ``visits_today`` (requested since local midnight).

    A correlated subquery, so only the rows on the page are counted (index: provider, -requested_at).
    """
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = (
        Visit.objects.filter(provider=OuterRef("pk"), requested_at__gte=midnight)
        .order_by()
        .values("provider")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Provider.objects.annotate(visits_today=Coalesce(Subquery(today), 0))


def licenses_for_list() -> QuerySet[ProviderLicense]:
    """Return licenses with provider and verifier joined, each with ``counts_now`` (the state's calendar)."""
    return ProviderLicense.objects.select_related("provider", "verified_by").annotate(counts_now=LicenseValidAt())


def licenses_of(provider_id) -> QuerySet[ProviderLicense]:
    """Return every license of one provider, by state, with who verified it (one query).

    Each carries ``counts_now``: whether it counts now in its state's calendar (the database's
    clock), so the provider's form reads the states it can take patients from in the same query.
    """
    return (
        ProviderLicense.objects.filter(provider_id=provider_id)
        .select_related("verified_by")
        .only(*LICENSE_PANEL_FIELDS, "verified_by__username")
        .annotate(counts_now=LicenseValidAt())
        .order_by("state", "id")
    )


LICENSE_PANEL_FIELDS = ("id", "state", "license_number", "license_type", "status", "issued_on", "expires_on",
                        "verified_by", "verified_at")  # fmt: skip


def licensed_states_now(provider: Provider) -> list[str]:
    """Return the states the provider can take patients from now (each state's own calendar), sorted."""
    return states_licensed_at(provider.pk)


def patient_recent_visits(patient: Patient, limit: int = 10) -> QuerySet[Visit]:
    """Return the patient's latest visits, newest first, with what the patient page shows of each.

    Index: clinical_visit_patient_idx (patient, -requested_at). The patient is not joined again
    (the page is theirs) and only the shown columns are read: the visit, when, where, its status
    and its provider's name.
    """
    return (
        Visit.objects.filter(patient=patient)
        .select_related("provider")
        .only("public_id", "requested_at", "located_state", "status", "provider__first_name", "provider__last_name")
        .order_by("-requested_at", "-id")[:limit]
    )


def waiting_by_state() -> list[dict]:
    """Return, per state with waiting visits, how many wait and since when the oldest waits."""
    return list(
        Visit.objects.filter(status=VisitStatus.WAITING)
        .values("located_state")
        .annotate(waiting=Count("id"), oldest=Min("requested_at"))
        .order_by("-waiting", "located_state")
    )


def licenses_expiring(within_days: int = 30) -> QuerySet[ProviderLicense]:
    """Return licenses that count now but will not in ``within_days`` days: they expire in between,
    by the state's calendar.
    """
    return expiring_within(licenses_for_list(), within_days).order_by("expires_on", "id")


# Every US zone's date is within a day of the UTC date (UTC-11 to UTC+10); one more day of margin
# covers this process's clock against the database's. Licenses whose dates are further from today
# than that count (or not) in every zone of their state: the calendar rule is asked of the others.
_SURE = dt.timedelta(days=2)


def expiring_within(licenses: QuerySet[ProviderLicense], within_days: int) -> QuerySet[ProviderLicense]:
    """Filter to licenses that count now and stop counting within ``within_days`` days (the state's calendar).

    Only the licenses expiring near either end of the window, or issued in the last days, are
    checked against the calendar rule: at 20,000 providers that is a tenth of the calls.
    """
    utc_today = timezone.now().date()
    surely = Q(
        issued_on__lte=utc_today - _SURE,
        expires_on__gte=utc_today + _SURE,
        expires_on__lt=utc_today + dt.timedelta(days=within_days) - _SURE,
    )
    exactly = Q(LicenseValidAt()) & ~Q(LicenseValidAt(at=Now() + dt.timedelta(days=within_days)))
    return licenses.filter(
        # An index range (active, expiry date near) before the rule.
        status=LicenseStatus.ACTIVE,
        expires_on__gte=utc_today - dt.timedelta(days=1),
        expires_on__lte=utc_today + dt.timedelta(days=within_days + 1),
    ).filter(surely | exactly)


def lapsed(licenses: QuerySet[ProviderLicense]) -> QuerySet[ProviderLicense]:
    """Filter to licenses past their expiry date in their state's calendar (whatever their status).

    Those that expired more than a couple of days ago have in every zone: only the last days' are
    checked against the calendar rule.
    """
    utc_today = timezone.now().date()
    surely = Q(expires_on__lt=utc_today - _SURE)
    exactly = ~Q(LicenseValidAt(status="active", issued_on=dt.date.min))
    return licenses.filter(expires_on__lte=utc_today + dt.timedelta(days=1)).filter(surely | exactly)


def dashboard_summary() -> dict:
    """Return the clinical numbers the console's home page shows (the site adds the other apps')."""
    return {
        "waiting_by_state": waiting_by_state(),
        "providers_available": Provider.objects.filter(availability=Availability.AVAILABLE).count(),
        "providers_in_visits": Provider.objects.filter(
            availability__in=[Availability.RESERVED, Availability.BUSY]
        ).count(),
        "expiring_licenses": list(licenses_expiring()[:15]),
        "expiring_count": licenses_expiring().count(),
    }


# What the apps see of a visit (``clinical.api.payloads.visit_json``): nothing else is read.
API_VISIT_FIELDS = (
    "public_id", "status", "patient_id", "patient__mrn", "located_state", "priority", "reason", "offer_count",
    "provider_id", "provider__npi", "provider__first_name", "provider__last_name",
    "requested_at", "offered_at", "accepted_at", "started_at", "ended_at", "cancelled_at",
)  # fmt: skip


def _for_api(visits: QuerySet[Visit]) -> QuerySet[Visit]:
    """Return ``visits`` with what the API shows of them joined: patient, provider and open offer, unordered.

    The open offer's id and deadline are ``open_offer_id`` and ``offer_expires_at``. Only the
    columns the API shows: the apps' requests read a visit two or three times each, and compiling
    every column of three tables was most of their cost.
    """
    open_offer = Offer.objects.filter(visit=OuterRef("pk"), outcome__isnull=True).order_by()
    return (
        visits.select_related("patient", "provider")
        .only(*API_VISIT_FIELDS)
        .annotate(
            open_offer_id=Subquery(open_offer.values("id")[:1]),
            offer_expires_at=Subquery(open_offer.values("expires_at")[:1]),
        )
        .order_by()
    )


def visit_for_api(public_id: str) -> Visit | None:
    """Return a visit by public id with patient, provider and open offer joined, or None."""
    return next(iter(_for_api(Visit.objects.filter(public_id=public_id.upper()))[:1]), None)


def visit_owners(public_id: str) -> tuple[int, int, int | None] | None:
    """Return a visit's ``(id, patient id, provider id)`` by public id, or None: who may act on it."""
    rows = Visit.objects.filter(public_id=public_id.upper()).order_by().values_list("pk", "patient_id", "provider_id")
    return next(iter(rows[:1]), None)


def visit_held_by(provider: Provider) -> Visit | None:
    """Return the visit the provider holds now (offered to them or in progress with them)."""
    held = Visit.objects.filter(provider=provider, status__in=PROVIDER_HOLDING_STATUSES)
    return next(iter(_for_api(held).order_by("-requested_at", "-id")[:1]), None)


def was_offered(visit: Visit | int, provider_id: int) -> bool:
    """Return True if the visit was ever offered to the provider."""
    return Offer.objects.filter(visit=visit, provider_id=provider_id).exists()


def visit_offers(visit: Visit) -> QuerySet[Offer]:
    """Return a visit's offers in order, with the provider joined (the visit page's offer table)."""
    return Offer.objects.filter(visit=visit).select_related("provider").order_by("offered_at", "id")


_LIVE_STATES_SQL = """
WITH waiting AS (
    SELECT located_state AS state, count(*) AS waiting, min(requested_at) AS oldest
    FROM clinical_visit WHERE status = 'waiting' GROUP BY located_state
), offers AS (
    SELECT located_state AS state, count(*) AS offers FROM clinical_visit WHERE status = 'offered'
    GROUP BY located_state
), available AS (
    SELECT l.state, count(DISTINCT p.id) AS available
    FROM clinical_provider p
    JOIN clinical_providerlicense l ON l.provider_id = p.id AND {license_valid}
    WHERE p.availability = 'available' AND p.is_active
    GROUP BY l.state
)
SELECT s.state, coalesce(w.waiting, 0), w.oldest, coalesce(a.available, 0), coalesce(o.offers, 0)
FROM (SELECT state FROM waiting UNION SELECT state FROM offers UNION SELECT state FROM available) s
LEFT JOIN waiting w USING (state) LEFT JOIN offers o USING (state) LEFT JOIN available a USING (state)
ORDER BY coalesce(w.waiting, 0) DESC, s.state
""".replace("{license_valid}", license_valid_sql("l", "statement_timestamp()"))


def left_queue_sql(alias: str = "") -> str:
    """Return SQL for when a visit left the queue: accepted, cancelled or expired, whichever came first.

    The same expression as the index ``clinical_visit_left_idx``, so PostgreSQL reads a window from it.
    """
    v = f"{alias}." if alias else ""
    return f"COALESCE({v}accepted_at, {v}cancelled_at, CASE WHEN {v}status = 'expired' THEN {v}ended_at END)"


_LIVE_WAITS_SQL = """
WITH gone AS (
    SELECT {left} AS left_at, extract(epoch FROM {left} - requested_at) AS wait_s,
           CASE WHEN accepted_at IS NOT NULL THEN 'accepted'
                WHEN cancelled_at IS NOT NULL THEN 'cancelled' ELSE 'expired' END AS how
    FROM clinical_visit WHERE {left} >= %(since)s
)
SELECT date_bin(%(bucket)s, left_at, %(since)s) AS bucket, count(*),
       count(*) FILTER (WHERE how = 'accepted'), count(*) FILTER (WHERE how = 'cancelled'),
       count(*) FILTER (WHERE how = 'expired'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_s), percentile_cont(0.9) WITHIN GROUP (ORDER BY wait_s)
FROM gone GROUP BY ROLLUP (1) ORDER BY 1 NULLS LAST
""".replace("{left}", left_queue_sql())


# SLA attainment per priority over the window: of the visits that left the queue, those accepted
# within their priority's target wait (a cancelled or expired visit missed it).
_LIVE_SLA_SQL = """
SELECT t.priority, t.seconds, count(v.id),
       count(v.id) FILTER (WHERE v.accepted_at <= v.requested_at + make_interval(secs => t.seconds))
FROM unnest(%(priorities)s::int[], %(seconds)s::int[]) AS t(priority, seconds)
LEFT JOIN clinical_visit v ON v.priority = t.priority AND {left} >= %(since)s
GROUP BY t.priority, t.seconds ORDER BY t.priority DESC
""".replace("{left}", left_queue_sql("v"))


# What each routing worker last reported, and how long ago by the database's clock.
_ROUTERS_SQL = """
SELECT name, host, is_leader, epoch, leader_since, last_decision_at, offers_made, events_pending, events_lag_s,
       rebuilds,
       extract(epoch FROM statement_timestamp() - seen_at), last_error
FROM clinical_routerhealth ORDER BY is_leader DESC, name
"""
ROUTER_SILENT_SECONDS = 10  # a router not heard from for this long is shown as silent


def live_queues(*, window: dt.timedelta = dt.timedelta(hours=1), bucket_minutes: int = 5) -> dict:
    """Return the live queues: per state waiting, longest wait, available providers and offers out;
    median and p90 wait over the window of every visit that left the queue in it (request to
    acceptance, cancellation or expiry), overall and per time bucket; SLA attainment per priority
    (``clinical.sla``); and the routers' health.
    """
    now = dbclock.now()
    since = now - window
    with read_cursor(Visit) as cursor:  # the replica's, on a read-only page (core.replica)
        cursor.execute(_LIVE_STATES_SQL)
        per_state = [
            {"state": state, "waiting": waiting, "longest_wait_s": int((now - oldest).total_seconds()) if oldest else 0,
             "available": available, "offers": offers}
            for state, waiting, oldest, available, offers in cursor.fetchall()
        ]  # fmt: skip
        cursor.execute(_LIVE_WAITS_SQL, {"since": since, "bucket": dt.timedelta(minutes=bucket_minutes)})
        rows = cursor.fetchall()
        targets = sla_targets()
        cursor.execute(_LIVE_SLA_SQL, {"priorities": list(targets), "seconds": list(targets.values()), "since": since})
        sla = [_sla_row(*row) for row in cursor.fetchall()]
        cursor.execute(_ROUTERS_SQL)
        routers = [_router_row(*row) for row in cursor.fetchall()]
    overall = next((row for row in rows if row[0] is None), (None, 0, 0, 0, 0, None, None))
    return {
        "at": now.isoformat(),
        "states": per_state,
        "totals": {key: sum(row[key] for row in per_state) for key in ("waiting", "available", "offers")},
        "window_minutes": int(window.total_seconds() // 60),
        # Every visit that left the queue in the window counts, not the accepted alone: a patient
        # who gave up or expired after a long wait is the wait that matters most.
        "left": overall[1],
        "accepted": overall[2],
        "cancelled": overall[3],
        "expired": overall[4],
        "median_wait_s": _round(overall[5]),
        "p90_wait_s": _round(overall[6]),
        "buckets": [
            {"t": start.isoformat(), "n": n, "median_wait_s": _round(p50), "p90_wait_s": _round(p90)}
            for start, n, _, _, _, p50, p90 in rows
            if start is not None
        ],
        "sla": sla,
        "routers": routers,
        # A leader's failover needs a standby heard from lately (the router's hot standby).
        "standby_present": any(router["role"] == "standby" for router in routers),
    }


def _sla_row(priority: int, target_s: int, left: int, within: int) -> dict:
    return {
        "priority": Priority(priority).label, "target_s": target_s, "left": left, "within": within,
        "attainment_pct": round(100 * within / left, 1) if left else None,
    }  # fmt: skip


def _router_row(name, host, is_leader, epoch, leader_since, decided, offers, pending, lag, rebuilds, seen_ago, error):
    silent = float(seen_ago) > ROUTER_SILENT_SECONDS
    return {
        "name": name, "host": host, "role": "silent" if silent else "leader" if is_leader else "standby",
        "epoch": epoch if is_leader else None, "leader_since": leader_since.isoformat() if leader_since else None,
        "last_decision_at": decided.isoformat() if decided else None, "offers_made": offers,
        "events_pending": pending, "events_lag_s": lag, "rebuilds": rebuilds,
        "seen_ago_s": round(float(seen_ago), 1), "last_error": error,
    }  # fmt: skip


def _round(value) -> float | None:
    return None if value is None else round(float(value), 1)


def visits_for_api(visit_ids: list[int]) -> dict[int, Visit]:
    """Return visits by id with what the API shows of them joined (patient, provider, open offer), one query."""
    if not visit_ids:
        return {}
    return _for_api(Visit.objects.all()).in_bulk(set(visit_ids))


def visit_ids_by_public_id(public_ids: list[str], *, patient_id: int | None, provider_id: int | None) -> dict[str, int]:
    """Return ``{public id: id}`` of those visits the patient owns, or the provider was ever offered."""
    visits = Visit.objects.filter(public_id__in=[public_id.upper() for public_id in public_ids])
    if provider_id is not None:
        visits = visits.filter(Q(provider_id=provider_id) | Q(offers__provider_id=provider_id))
    else:
        visits = visits.filter(patient_id=patient_id)
    return dict(visits.values_list("public_id", "id").distinct())


def visit_ids_held_by(provider_id: int) -> list[int]:
    """Return the ids of the visits the provider holds now (an offer to answer, or a visit under way)."""
    return list(
        Visit.objects.filter(provider_id=provider_id, status__in=PROVIDER_HOLDING_STATUSES).values_list("id", flat=True)
    )

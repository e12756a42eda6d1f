"""Every write to the clinical domain: visit status, provider availability, licenses, records.

Each function runs in one transaction, locks the rows it changes (visit before provider, always
in that order), refuses an illegal change with an ``ActionError`` naming the field, writes the
``VisitEvent`` and the history record, and publishes the routing event on commit. Times come from
the database's clock (``core.dbclock``); a router's writes are fenced by its lease epoch.
"""

import datetime as dt
import functools
import hashlib
import secrets

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from clinical import events, hooks
from clinical.calendar import license_valid_sql, states_licensed_at
from clinical.models import (
    OPEN_STATUSES,
    ApiClient,
    Availability,
    LicenseStatus,
    OfferOutcome,
    Patient,
    Priority,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
    VisitStatus,
)
from clinical.validators import format_mrn
from core import dbclock, outbox
from core.audit import Actor, history_insert_from, history_params, history_sql, stamp
from core.errors import ActionError, Fenced, IllegalTransition
from core.errors import full_clean_or_raise as _full_clean
from core.prepared import Statement

S = VisitStatus
BULK_LICENSE_EVENT_THRESHOLD = 200  # above this many providers, an import sends one routing event

# Legal visit transitions: to-status -> the statuses it may come from.
VISIT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.OFFERED: (S.WAITING,),
    S.WAITING: (S.OFFERED,),
    S.ACCEPTED: (S.OFFERED,),
    S.CONNECTING: (S.ACCEPTED,),
    S.IN_PROGRESS: (S.ACCEPTED, S.CONNECTING),
    S.COMPLETED: (S.IN_PROGRESS,),
    S.FAILED: (S.ACCEPTED, S.CONNECTING, S.IN_PROGRESS),
    S.CANCELLED: (S.WAITING, S.OFFERED, S.ACCEPTED, S.CONNECTING),
    S.EXPIRED: (S.WAITING,),
}


# --- patients -------------------------------------------------------------------------------


def next_mrn() -> str:
    """Return a new MRN from the database sequence (never reused, even after a rollback)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('clinical_patient_mrn_seq')")
        return format_mrn(cursor.fetchone()[0])


@transaction.atomic
def save_patient(patient: Patient, *, actor: Actor, reason: str = "") -> Patient:
    """Validate and save a new or changed patient, assigning an MRN to a new one."""
    creating = patient.pk is None
    if creating and not patient.mrn:
        patient.mrn = next_mrn()
    _full_clean(patient)
    stamp(patient, actor, reason or ("registered" if creating else "edited"))
    patient.save()
    outbox.record_instance(patient, embedded=True)
    return patient


# --- providers and licenses -----------------------------------------------------------------


@transaction.atomic
def save_provider(provider: Provider, *, actor: Actor, reason: str = "") -> Provider:
    """Validate and save a provider's profile; availability changes go through their own action."""
    creating = provider.pk is None
    if not creating:
        current = Provider.objects.select_for_update().only("availability", "available_since").get(pk=provider.pk)
        provider.availability, provider.available_since = current.availability, current.available_since
        if not provider.is_active and current.availability != Availability.OFFLINE:
            raise IllegalTransition(
                "Take the provider offline (and let any visit end) before deactivating.", field="is_active"
            )
    _full_clean(provider)
    stamp(provider, actor, reason or ("created" if creating else "edited"))
    provider.save()
    if not provider.is_active:
        _revoke_provider_tokens(provider, actor=actor)
    outbox.record_instance(provider, embedded=True)
    events.publish_on_commit("provider_changed", actor=actor.kind, provider=provider.pk)
    return provider


@transaction.atomic
def save_license(license: ProviderLicense, *, actor: Actor, reason: str = "") -> ProviderLicense:
    """Validate and save a license; the router re-checks eligibility, including offers already out."""
    creating = license.pk is None
    previous = None  # the provider whose search document listed the license until now
    if not creating:
        locked = ProviderLicense.objects.select_for_update().filter(pk=license.pk)
        previous = locked.values_list("provider_id", flat=True).first()
    _full_clean(license, validate_constraints=True)
    # Dated by the database after the row lock: the routing invariant checker reads a license's
    # history as of an offer's instant, and an offer locks the license it relies on.
    stamp(license, actor, reason or ("added" if creating else "edited"), at=dbclock.now())
    license.save()
    outbox.record("clinical.provider", [license.provider_id, previous])
    events.publish_on_commit("license_changed", actor=actor.kind, provider=license.provider_id, state=license.state)
    return license


def change_license_status(license: ProviderLicense, status: str, *, actor: Actor, reason: str) -> ProviderLicense:
    """Set a license's status (e.g. suspend it) with a reason that the history keeps."""
    if status not in LicenseStatus.values:
        raise ActionError(f"Unknown license status {status!r}.", field="status")
    if not reason.strip():
        raise ActionError("Give a reason for changing a license's status.", field="reason")
    license.status = status
    return save_license(license, actor=actor, reason=reason)


# The license values a spreadsheet import sets (clinical.imports); verification stays as it was.
LICENSE_IMPORT_FIELDS = ("state", "license_number", "license_type", "status", "issued_on", "expires_on", "notes")
_IMPORT_COLUMNS = ", ".join(LICENSE_IMPORT_FIELDS)
_IMPORT_TYPES = "varchar[], varchar[], varchar[], varchar[], date[], date[], text[]"

_LOCK_LICENSES_SQL = f"""
SELECT id, {_IMPORT_COLUMNS} FROM clinical_providerlicense WHERE id = ANY(%s) ORDER BY id FOR UPDATE
"""  # noqa: S608 (column names are constants)

_UPDATE_LICENSES_SQL = f"""
UPDATE clinical_providerlicense l
SET {", ".join(f"{name} = u.{name}" for name in LICENSE_IMPORT_FIELDS)}
FROM unnest(%s::bigint[], {", ".join(f"%s::{t}" for t in _IMPORT_TYPES.split(", "))})
     AS u(id, {_IMPORT_COLUMNS})
WHERE l.id = u.id
"""  # noqa: S608

_INSERT_LICENSES_SQL = f"""
INSERT INTO clinical_providerlicense (provider_id, {_IMPORT_COLUMNS})
SELECT * FROM unnest(%s::bigint[], {", ".join(f"%s::{t}" for t in _IMPORT_TYPES.split(", "))})
RETURNING id
"""  # noqa: S608

_LICENSE_CONSTRAINT_ERRORS = {
    "clinical_providerlicense_one_active_per_state": "A provider would hold two active licenses in one state.",
    "clinical_providerlicense_expires_after_issued": "A license would expire on or before its issue date.",
}


def import_licenses(
    *, new: list[ProviderLicense], changed: list[ProviderLicense], expected: dict[int, tuple], actor: Actor, reason: str
) -> list[int]:
    """Write a checked license file in one transaction, or nothing; return the ids of the new licenses.

    ``expected`` holds, for every license on record that the file names, its values
    (``LICENSE_IMPORT_FIELDS``) when the file was checked: if any changed since, refuse. Set-based,
    so 50,000 rows take seconds: a history record per written license (``reason``, ``actor``), one
    routing event per provider and state on commit, and the providers' search outbox rows.
    """
    try:
        return _import_licenses(new, changed, expected, actor=actor, reason=reason)
    except IntegrityError as error:
        message = _LICENSE_CONSTRAINT_ERRORS.get(_constraint(error), f"The database refused the file: {error}")
        raise ActionError(message) from None


@transaction.atomic
def _import_licenses(new, changed, expected, *, actor: Actor, reason: str) -> list[int]:
    with connection.cursor() as cursor:
        _check_licenses_unchanged(cursor, expected)
        # Deactivations first: the one-active-per-state index is checked row by row.
        for batch in (
            [lic for lic in changed if lic.status != LicenseStatus.ACTIVE],
            [lic for lic in changed if lic.status == LicenseStatus.ACTIVE],
        ):
            if batch:
                cursor.execute(_UPDATE_LICENSES_SQL, [[lic.pk for lic in batch], *_license_columns(batch)])
        created = []
        if new:
            cursor.execute(_INSERT_LICENSES_SQL, [[lic.provider_id for lic in new], *_license_columns(new)])
            created = [row[0] for row in cursor.fetchall()]
        _write_license_trail(cursor, [lic.pk for lic in changed], created, actor=actor, reason=reason)
    providers = sorted({lic.provider_id for lic in (*new, *changed)})
    if len(providers) > BULK_LICENSE_EVENT_THRESHOLD:
        # One event: the router re-checks offers out and rebuilds, instead of one refresh per provider.
        events.publish_on_commit("licenses_imported", actor=actor.kind, providers=len(providers))
    else:
        events.publish_many_on_commit(
            [events.event("license_changed", actor=actor.kind, provider=p) for p in providers]
        )
    outbox.record("clinical.provider", providers)
    return created


def _check_licenses_unchanged(cursor, expected: dict[int, tuple]) -> None:
    cursor.execute(_LOCK_LICENSES_SQL, [sorted(expected)])
    current = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
    stale = sorted(pk for pk, values in expected.items() if current.get(pk) != values)
    if stale:
        raise IllegalTransition(
            f"{len(stale)} license(s) in the file changed since it was checked (e.g. id {stale[0]}); "
            "check the file again before importing it."
        )


def _license_columns(licenses: list[ProviderLicense]) -> list[list]:
    return [[getattr(lic, name) for lic in licenses] for name in LICENSE_IMPORT_FIELDS]


def _write_license_trail(cursor, changed: list[int], created: list[int], *, actor: Actor, reason: str) -> None:
    sql, params = history_sql(ProviderLicense, actor=actor, reason=reason)
    if changed:
        cursor.execute(sql, [*params, changed])
    if created:
        params[1] = "+"  # history_type: these rows were created, not changed
        cursor.execute(sql, [*params, created])


@transaction.atomic
def set_provider_availability(provider: Provider, *, available: bool, actor: Actor, reason: str = "") -> Provider:
    """Put a provider online (available) or offline; refused while an offer or visit is held."""
    provider = Provider.objects.select_for_update().get(pk=provider.pk)
    target = Availability.AVAILABLE if available else Availability.OFFLINE
    if provider.availability == target:
        return provider
    if provider.availability in (Availability.RESERVED, Availability.BUSY):
        raise IllegalTransition(
            f"Provider is {provider.get_availability_display().lower()}; finish or answer the visit first.",
            field="available",
        )
    if available and not provider.is_active:
        raise IllegalTransition("An inactive provider cannot go available.", field="available")
    _set_availability(provider, target, actor=actor, reason=reason or f"went {target}", at=dbclock.now())
    return provider


def _set_availability(
    provider: Provider, target: str, *, actor: Actor, reason: str, at: dt.datetime, keep_since: bool = False
) -> None:
    provider.availability = target
    if target == Availability.AVAILABLE:
        if not (keep_since and provider.available_since):
            provider.available_since = at
    elif target == Availability.OFFLINE:
        provider.available_since = None
    stamp(provider, actor, reason, at=at)
    provider.save(update_fields=["availability", "available_since"])
    outbox.record_instance(provider)
    events.publish_on_commit("provider_availability", actor=actor.kind, provider=provider.pk, availability=target)


# --- visits ---------------------------------------------------------------------------------


@transaction.atomic
def request_visit(
    *, patient: Patient, located_state: str, reason: str, priority: int = Priority.ROUTINE, actor: Actor
) -> Visit:
    """Create a waiting visit for a patient located in ``located_state``, requested now by the database's clock.

    Four round trips (the visit, its history record, its timeline event, the commit): a patient's
    wait starts at the insert, so everything before it is kept out of the way.
    """
    visit = Visit(patient=patient, located_state=located_state, reason=reason, priority=priority)
    # The patient is a row just read (by MRN or from a form); its existence needs no second query.
    _full_clean(visit, exclude=["public_id", "patient", "requested_at"])
    stamp(visit, actor, "requested", at_field="requested_at")
    try:
        with transaction.atomic():
            visit.save()
    except IntegrityError as error:
        if _constraint(error) != "clinical_visit_one_open_per_patient":
            raise
        raise OpenVisitExists(Visit.objects.filter(patient=patient, status__in=OPEN_STATUSES).first()) from None
    outbox.record_instance(visit)
    _record_event(visit, "", S.WAITING, actor=actor, detail="requested", at=visit.requested_at)
    _publish_waiting(visit, actor)
    return visit


class OpenVisitExists(IllegalTransition):
    """The patient already has an open visit (``visit``): one at a time."""

    code = "open_visit_exists"

    def __init__(self, visit: Visit | None):
        named = f" ({visit.public_id})" if visit is not None else ""
        super().__init__(f"This patient already has an open visit{named}.", field="patient")
        self.visit = visit


def _constraint(error: IntegrityError) -> str | None:
    return getattr(getattr(error.__cause__, "diag", None), "constraint_name", None)


def _publish_waiting(visit: Visit, actor: Actor) -> None:
    """Tell the router a visit waits, with what its queue needs (place in line and state)."""
    events.publish_on_commit(
        "visit_waiting",
        actor=actor.kind,
        visit=visit.pk,
        state=visit.located_state,
        priority=visit.priority,
        requested_at=visit.requested_at.isoformat(),
    )


# A router holds its lease row in share mode until its transaction ends, so a takeover (which
# updates the row) waits for the write to commit, and a write after a takeover finds no row.
_FENCE_SQL = "SELECT 1 FROM clinical_routerlease WHERE id = 1 AND epoch = %s FOR SHARE"


def _fence(actor: Actor) -> None:
    """Refuse the write of a router whose lease epoch is no longer current (and keep it current until commit)."""
    if actor.epoch is None:
        return
    with connection.cursor() as cursor:
        cursor.execute(_FENCE_SQL, [actor.epoch])
        if cursor.fetchone() is None:
            raise Fenced(f"Lease epoch {actor.epoch} is over: another router leads now.")


def _lock_visit(visit: Visit | int, actor: Actor) -> Visit:
    _fence(actor)
    visit_id = visit.pk if isinstance(visit, Visit) else visit
    try:
        return Visit.objects.select_for_update().get(pk=visit_id)
    except Visit.DoesNotExist:
        raise ActionError("No such visit.", field="visit", code="not_found") from None


def _lock_provider(provider_id: int | None) -> Provider | None:
    if provider_id is None:
        return None
    return Provider.objects.select_for_update().get(pk=provider_id)


def _check_transition(visit: Visit, to: str) -> None:
    if visit.status not in VISIT_TRANSITIONS[to]:
        raise IllegalTransition(
            f"Visit {visit.public_id} is {visit.get_status_display().lower()}; it cannot become {S(to).label.lower()}.",
            field="status",
        )


def _move(
    visit: Visit, to: str, *, actor: Actor, detail: str, at: dt.datetime, provider: Provider | None = None
) -> Visit:
    """Save the visit in its new status with its timeline event and history record, both dated ``at``."""
    from_status = visit.status
    visit.status = to
    stamp(visit, actor, detail or f"{from_status} → {to}", at=at)
    visit.save()
    outbox.record_instance(visit)
    _record_event(visit, from_status, to, actor=actor, detail=detail, provider=provider, at=at)
    events.publish_on_commit(
        "visit_status",
        actor=actor.kind,
        visit=visit.pk,
        status=to,
        state=visit.located_state,
        provider=provider.pk if provider else None,
    )
    return visit


def _record_event(
    visit: Visit, from_status: str, to: str, *, actor: Actor, detail: str, at: dt.datetime, provider=None
) -> VisitEvent:
    return VisitEvent.objects.create(
        visit=visit,
        from_status=from_status,
        to_status=to,
        at=at,
        actor_kind=actor.kind,
        staff_user=actor.user,
        provider=provider or visit.provider,
        detail=detail[:500],
    )


# --- offers ---------------------------------------------------------------------------------

# Offering a batch of (visit, provider) pairs is one statement. It locks the pairs that qualify:
# the visit waits, the provider is active and available, a license of theirs counts in the
# visit's state by the state's calendar (that license locked in share mode, so a suspension either
# commits first and is seen, or waits for this offer), the provider did not decline or ignore the
# visit within the re-offer period, and a router's lease epoch is current (its row locked in share
# mode too). Only then, once every lock is held, it takes the instant from the database's clock,
# re-checks the license at that instant, and writes the offers with their deadlines, the visits
# and reservations, their history records and timeline events.
_OFFER_SQL = """
WITH pairs(visit_id, provider_id) AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[])),
fence AS (SELECT epoch FROM clinical_routerlease WHERE id = 1 AND epoch = %s::bigint FOR SHARE),
locked AS (
    SELECT v.id AS visit_id, pr.id AS provider_id, l.id AS license_id
    FROM pairs p
    JOIN clinical_visit v ON v.id = p.visit_id AND v.status = 'waiting'
    JOIN clinical_provider pr ON pr.id = p.provider_id AND pr.availability = 'available' AND pr.is_active
    JOIN clinical_providerlicense l
      ON l.provider_id = pr.id AND l.state = v.located_state AND {valid_at_start}
    WHERE (%s::bigint IS NULL OR EXISTS (SELECT 1 FROM fence))
      AND NOT EXISTS (
        SELECT 1 FROM clinical_offer o
        WHERE o.visit_id = v.id AND o.provider_id = pr.id AND o.outcome IN ('declined', 'expired')
          AND o.decided_at > statement_timestamp() - %s::interval
    )
    ORDER BY v.id
    FOR UPDATE OF v, pr FOR SHARE OF l
),
clock AS (SELECT clock_timestamp() AS now FROM (SELECT count(*) FROM locked) AS after_the_locks),
eligible AS (
    SELECT k.visit_id, k.provider_id, k.license_id, c.now
    FROM locked k CROSS JOIN clock c
    JOIN clinical_providerlicense l ON l.id = k.license_id AND {valid_now}
),
offered AS (
    UPDATE clinical_visit v
    SET status = 'offered', provider_id = e.provider_id, offered_at = e.now, offer_count = v.offer_count + 1
    FROM eligible e WHERE v.id = e.visit_id
    RETURNING v.*
),
reserved AS (
    UPDATE clinical_provider pr SET availability = 'reserved'
    FROM eligible e WHERE pr.id = e.provider_id
    RETURNING pr.*
),
recorded AS (
    INSERT INTO clinical_offer (visit_id, provider_id, license_id, offered_at, expires_at, router_epoch)
    SELECT e.visit_id, e.provider_id, e.license_id, e.now, e.now + %s::interval, %s::bigint FROM eligible e
),
visit_history AS ({visit_history}),
provider_history AS ({provider_history}),
timeline AS (
    INSERT INTO clinical_visitevent (visit_id, from_status, to_status, at, actor_kind, staff_user_id, provider_id,
                                     detail)
    SELECT o.id, 'waiting', 'offered', o.offered_at, %s::varchar, %s::integer, o.provider_id,
           'offered to ' || r.first_name || ' ' || r.last_name
    FROM offered o JOIN reserved r ON r.id = o.provider_id
)
SELECT o.id, o.provider_id, o.located_state FROM offered o
"""


@functools.cache
def _offer_statement() -> Statement:
    """Return the offer statement, its history inserts built from the models (once the apps are ready)."""
    sql = (
        _OFFER_SQL.replace("{valid_at_start}", license_valid_sql("l", "statement_timestamp()"))
        .replace("{valid_now}", license_valid_sql("l", "c.now"))
        .replace("{visit_history}", history_insert_from(Visit, "offered"))
        .replace("{provider_history}", history_insert_from(Provider, "reserved"))
    )
    return Statement("clinical_offer_visits", sql)


@transaction.atomic
def offer_visits(
    pairs: list[tuple[int, int]], *, actor: Actor, offer_timeout: int | None = None, reoffer_after: int | None = None
) -> list[tuple[int, int]]:
    """Offer each waiting visit to its paired provider if it qualifies, in one statement (``_OFFER_SQL``).

    Pairs that fail a condition are skipped; a router whose lease epoch is over is refused
    (``Fenced``). Publish the applied offers' events on commit and return the applied
    ``(visit_id, provider_id)`` pairs.
    """
    if not pairs:
        return []
    reoffer_after = settings.ROUTING_REOFFER_AFTER if reoffer_after is None else reoffer_after
    timeout = dt.timedelta(seconds=offer_timeout or settings.ROUTING_OFFER_TIMEOUT)
    user = actor.user.pk if actor.user is not None else None
    params = [
        [visit for visit, _ in pairs], [provider for _, provider in pairs], actor.epoch, actor.epoch,
        dt.timedelta(seconds=reoffer_after), timeout, actor.epoch,
        *history_params(actor=actor, reason="offered by the router"),
        *history_params(actor=actor, reason="reserved for an offered visit"),
        actor.kind, user,
    ]  # fmt: skip
    with connection.cursor() as cursor:
        _offer_statement().execute(cursor, params)
        applied = cursor.fetchall()
    if not applied:
        _fence(actor)  # nothing qualified; or this router's epoch is over: say so
        return []
    outbox.record("clinical.visit", [visit for visit, _, _ in applied])
    outbox.record("clinical.provider", [provider for _, provider, _ in applied])
    events.publish_many_on_commit(
        [
            events.event("visit_status", actor=actor.kind, visit=v, status=S.OFFERED, state=state, provider=p)
            for v, p, state in applied
        ]
    )
    return [(visit, provider) for visit, provider, _ in applied]


def offer_visit(visit: Visit | int, provider: Provider | int, *, actor: Actor, **timing) -> Visit:
    """Offer a waiting visit to an available provider licensed now in the visit's state."""
    visit_id = visit.pk if isinstance(visit, Visit) else visit
    provider_id = provider.pk if isinstance(provider, Provider) else provider
    if not offer_visits([(visit_id, provider_id)], actor=actor, **timing):
        _explain_refused_offer(visit_id, provider_id)
    return Visit.objects.select_related("provider").get(pk=visit_id)


def _explain_refused_offer(visit_id: int, provider_id: int) -> None:
    visit = Visit.objects.filter(pk=visit_id).first()
    if visit is None:
        raise ActionError("No such visit.", field="visit", code="not_found")
    _check_transition(visit, S.OFFERED)
    provider = Provider.objects.get(pk=provider_id)
    if provider.availability != Availability.AVAILABLE or not provider.is_active:
        raise IllegalTransition(f"{provider} is not available.", field="provider", code="not_available")
    if visit.located_state not in states_licensed_at(provider_id):
        raise IllegalTransition(
            f"{provider} is not licensed in {visit.located_state} now (the state's calendar).",
            field="provider",
            code="not_licensed",
        )
    raise IllegalTransition(
        f"{provider} declined or let this visit's offer expire within the last "
        f"{settings.ROUTING_REOFFER_AFTER // 60} minutes.",
        field="provider",
        code="recently_declined",
    )


# Close the open offer of a visit to a provider, at the database's instant, only if the conditions
# hold in the same statement: for an answer, before its deadline; for an acceptance, also the
# provider active and a license of theirs counting in the visit's state (locked in share mode).
_CLOSE_OFFER_SQL = """
WITH clock AS (SELECT clock_timestamp() AS now)
UPDATE clinical_offer o SET outcome = %(outcome)s, decided_at = c.now
FROM clock c, clinical_visit v, clinical_provider p
WHERE o.visit_id = %(visit)s AND o.provider_id = %(provider)s AND o.outcome IS NULL
  AND v.id = o.visit_id AND v.status = 'offered' AND v.provider_id = o.provider_id AND p.id = o.provider_id
  AND (NOT %(answer)s OR o.expires_at > c.now)
  AND (NOT %(deadline_passed)s OR o.expires_at <= c.now)
  AND (NOT %(accepting)s OR (p.is_active AND EXISTS (
        SELECT 1 FROM clinical_providerlicense l
        WHERE l.provider_id = p.id AND l.state = v.located_state AND {license_valid}
        FOR SHARE OF l
  )))
RETURNING c.now
""".replace("{license_valid}", license_valid_sql("l", "c.now"))


def _close_offer(
    visit: Visit, provider_id: int, outcome: str, *, answer: bool = False, deadline_passed: bool = False
) -> dt.datetime | None:
    """Decide the open offer of ``visit`` to ``provider_id``; return the instant, or None if a condition failed."""
    params = {
        "visit": visit.pk, "provider": provider_id, "outcome": outcome, "answer": answer,
        "deadline_passed": deadline_passed, "accepting": outcome == OfferOutcome.ACCEPTED,
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_CLOSE_OFFER_SQL, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _refuse_answer(visit: Visit, provider: Provider, to: str) -> None:
    """Explain why a provider's answer to an offer was refused, with a code for the app."""
    last = visit.offers.filter(provider=provider).order_by("-offered_at", "-id").first()
    if last is None:
        _check_transition(visit, to)
        raise IllegalTransition("This visit was never offered to you.", field="visit", code="not_your_offer")
    if last.outcome == OfferOutcome.EXPIRED or (last.outcome is None and last.expires_at <= dbclock.now()):
        raise IllegalTransition(
            f"Your offer of this visit expired at {last.expires_at:%H:%M:%S} UTC.", field="visit", code="offer_expired"
        )
    if last.outcome is not None:
        raise IllegalTransition(
            f"Your offer of this visit is closed ({last.get_outcome_display().lower()}).",
            field="visit",
            code=f"offer_{last.outcome}",
        )
    if not provider.is_active:
        raise IllegalTransition("Your account is inactive.", field="provider", code="provider_inactive")
    raise IllegalTransition(
        f"You are not licensed in {visit.located_state} now (the state's calendar).",
        field="provider",
        code="not_licensed",
    )


@transaction.atomic
def accept_visit(visit: Visit | int, *, provider: Provider | int, actor: Actor) -> Visit:
    """Record ``provider``'s acceptance of the offer they hold; they become busy.

    Refused (``IllegalTransition`` with a code) unless, at this instant by the database's clock, the
    offer is open, theirs and before its deadline, they are active, and a license of theirs counts in
    the visit's state.
    """
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider.pk if isinstance(provider, Provider) else provider)
    at = _close_offer(visit, provider.pk, OfferOutcome.ACCEPTED, answer=True)
    if at is None:
        _refuse_answer(visit, provider, S.ACCEPTED)
    visit.accepted_at = at
    _set_availability(provider, Availability.BUSY, actor=actor, reason=f"accepted visit {visit.public_id}", at=at)
    return _move(visit, S.ACCEPTED, actor=actor, detail=f"accepted by {provider.full_name}", provider=provider, at=at)


@transaction.atomic
def decline_offer(visit: Visit | int, *, provider: Provider | int, actor: Actor) -> Visit:
    """Record ``provider``'s rejection of the offer they hold (before its deadline): the visit goes back
    to its place in line and the provider stays available.
    """
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider.pk if isinstance(provider, Provider) else provider)
    at = _close_offer(visit, provider.pk, OfferOutcome.DECLINED, answer=True)
    if at is None:
        _refuse_answer(visit, provider, S.WAITING)
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"rejected visit {visit.public_id}", at=at)
    return _requeue(visit, provider, actor=actor, detail=f"offer to {provider.full_name} rejected", at=at)


@transaction.atomic
def expire_offer(visit: Visit | int, *, provider_id: int, actor: Actor) -> Visit:
    """Time out an offer past its deadline (by the database's clock): the visit goes back to its
    place in line and the provider, who did not answer, is set offline.
    """
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider_id)
    at = _close_offer(visit, provider_id, OfferOutcome.EXPIRED, deadline_passed=True)
    if at is None:
        raise IllegalTransition(
            f"Visit {visit.public_id} has no offer to that provider past its deadline.", field="visit"
        )
    reason = f"let offer {visit.public_id} expire"
    _set_availability(provider, Availability.OFFLINE, actor=actor, reason=reason, at=at)
    return _requeue(visit, provider, actor=actor, detail=f"offer to {provider.full_name} expired", at=at)


@transaction.atomic
def withdraw_offer(visit: Visit | int, *, provider_id: int, actor: Actor, reason: str) -> Visit:
    """Take an offer back through no fault of the provider (e.g. their license stopped covering the state)."""
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider_id)
    at = _close_offer(visit, provider_id, OfferOutcome.WITHDRAWN)
    if at is None:
        raise IllegalTransition(f"Visit {visit.public_id} has no open offer to that provider.", field="visit")
    _set_availability(
        provider, Availability.AVAILABLE, actor=actor, reason=f"offer withdrawn: {reason}", at=at, keep_since=True
    )
    return _requeue(visit, provider, actor=actor, detail=f"offer withdrawn: {reason}", at=at)


def _requeue(visit: Visit, provider: Provider, *, actor: Actor, detail: str, at: dt.datetime) -> Visit:
    _check_transition(visit, S.WAITING)
    visit.provider = None
    return _move(visit, S.WAITING, actor=actor, detail=detail, provider=provider, at=at)


# --- a visit under way ----------------------------------------------------------------------


def _lock_held(visit: Visit | int, provider: Provider | int | None, actor: Actor) -> Visit:
    """Lock a visit and, when ``provider`` is given, refuse unless that provider holds it."""
    visit = _lock_visit(visit, actor)
    provider_id = provider.pk if isinstance(provider, Provider) else provider
    if provider_id is not None and visit.provider_id != provider_id:
        raise IllegalTransition("This visit is not yours.", field="visit", code="not_your_visit")
    return visit


@transaction.atomic
def start_connecting(visit: Visit | int, *, actor: Actor, provider: Provider | int | None = None) -> Visit:
    """Mark an accepted visit as connecting the video call."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.CONNECTING)
    return _move(visit, S.CONNECTING, actor=actor, detail="connecting video", at=dbclock.now())


@transaction.atomic
def mark_connected(visit: Visit | int, *, actor: Actor, provider: Provider | int | None = None) -> Visit:
    """Record that patient and provider are connected; the visit is in progress."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.IN_PROGRESS)
    visit.started_at = dbclock.now()
    return _move(visit, S.IN_PROGRESS, actor=actor, detail="connected", at=visit.started_at)


@transaction.atomic
def complete_visit(visit: Visit | int, *, actor: Actor, provider: Provider | int | None = None) -> Visit:
    """End an in-progress visit normally; the provider becomes available again."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.COMPLETED)
    provider = _lock_provider(visit.provider_id)
    visit.ended_at = at = dbclock.now()
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"completed visit {visit.public_id}", at=at)
    return _move(visit, S.COMPLETED, actor=actor, detail="completed", at=at)


@transaction.atomic
def fail_visit(visit: Visit | int, *, actor: Actor, detail: str = "", provider: Provider | int | None = None) -> Visit:
    """End an accepted or running visit as failed (e.g. the call dropped); free the provider."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.FAILED)
    provider = _lock_provider(visit.provider_id)
    visit.ended_at = at = dbclock.now()
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"visit {visit.public_id} failed", at=at)
    return _move(visit, S.FAILED, actor=actor, detail=detail or "failed", at=at)


@transaction.atomic
def cancel_visit(visit: Visit | int, *, actor: Actor, detail: str = "") -> Visit:
    """Cancel a visit that has not started; a provider holding it (or its offer) is freed at once."""
    visit = _lock_visit(visit, actor)
    _check_transition(visit, S.CANCELLED)
    provider = _lock_provider(visit.provider_id)
    visit.cancelled_at = at = dbclock.now()
    if provider is not None:
        if visit.status == S.OFFERED:
            _close_offer(visit, provider.pk, OfferOutcome.CANCELLED)
        # Freed through no doing of their own: keep their place in the longest-idle order.
        _set_availability(
            provider, Availability.AVAILABLE, actor=actor, reason=f"visit {visit.public_id} cancelled", at=at,
            keep_since=True,
        )  # fmt: skip
    return _move(visit, S.CANCELLED, actor=actor, detail=detail or "cancelled", provider=provider, at=at)


# --- timeouts (the router) ------------------------------------------------------------------


@transaction.atomic
def expire_visit(visit: Visit | int, *, actor: Actor, max_wait: int | None = None, detail: str = "") -> Visit:
    """Expire a visit that waited too long and open a support case about it, in one transaction.

    With ``max_wait`` (seconds), refuse unless it has waited that long by the database's clock.
    """
    visit = _lock_visit(visit, actor)
    _check_transition(visit, S.EXPIRED)
    at = dbclock.now()
    if max_wait is not None and at - visit.requested_at < dt.timedelta(seconds=max_wait):
        raise IllegalTransition(f"Visit {visit.public_id} has not waited {max_wait} s yet.", field="status")
    visit.ended_at = at
    _move(visit, S.EXPIRED, actor=actor, detail=detail or "waited too long", at=at)
    waited = int((at - visit.requested_at).total_seconds() // 60)
    _open_routing_case(
        visit,
        actor=actor,
        subject=f"Visit {visit.public_id} expired after {waited} min waiting in {visit.located_state}",
        note="Opened automatically: no licensed provider took the visit in time. Contact the patient.",
    )
    return visit


# What a visit stuck in each status has waited for, and the setting that bounds it.
_STUCK = {
    S.ACCEPTED: ("accepted_at", "ROUTING_CONNECT_TIMEOUT", "never connected"),
    S.CONNECTING: ("accepted_at", "ROUTING_CONNECT_TIMEOUT", "never connected"),
    S.IN_PROGRESS: ("started_at", "ROUTING_MAX_VISIT_MINUTES", "ran past the longest visit"),
}


def stuck_limit(status: str) -> dt.timedelta:
    """Return how long a visit may stay in ``status`` (accepted, connecting, in progress) before it fails."""
    setting = _STUCK[status][1]
    value = getattr(settings, setting)
    return dt.timedelta(minutes=value) if setting.endswith("_MINUTES") else dt.timedelta(seconds=value)


@transaction.atomic
def time_out_visit(visit: Visit | int, *, actor: Actor) -> Visit:
    """Fail a visit stuck past its timeout (by the database's clock): the provider app went quiet.

    The provider is set offline with the reason on the timeline, and a support case opens, all in
    one transaction. Refused if the visit is not (or no longer) past its timeout.
    """
    visit = _lock_visit(visit, actor)
    at = dbclock.now()
    if visit.status not in _STUCK:
        raise IllegalTransition(f"Visit {visit.public_id} is {visit.status}; it cannot time out.", field="status")
    since_field, setting, what = _STUCK[visit.status]
    since = getattr(visit, since_field)
    if since is None or at - since < stuck_limit(visit.status):
        raise IllegalTransition(f"Visit {visit.public_id} is within {setting}.", field="status")
    provider = _lock_provider(visit.provider_id)
    minutes = int((at - since).total_seconds() // 60)
    detail = f"timed out: {what} ({visit.status} for {minutes} min, {setting})"
    visit.ended_at = at
    _set_availability(provider, Availability.OFFLINE, actor=actor, reason=f"visit {visit.public_id} {detail}", at=at)
    _move(visit, S.FAILED, actor=actor, detail=detail, at=at, provider=provider)
    _open_routing_case(
        visit,
        actor=actor,
        subject=f"Visit {visit.public_id} failed: {what} ({provider.full_name})",
        note=f"Opened automatically: the visit {detail}. The provider was set offline. Contact patient and provider.",
    )
    return visit


def _open_routing_case(visit: Visit, *, actor: Actor, subject: str, note: str) -> None:
    """Hand ``visit`` to a person: the registered handler opens a routing case in this transaction."""
    hooks.visit_needs_attention(visit, actor=actor, subject=subject, note=note)


@transaction.atomic
def update_visit_details(visit: Visit, *, actor: Actor, reason: str = "") -> Visit:
    """Save a change to an open visit's reason or priority (never its status)."""
    current = _lock_visit(visit, actor)
    if not current.is_open:
        raise IllegalTransition(f"Visit {current.public_id} has ended; its details are final.", field="priority")
    current.reason, current.priority = visit.reason, visit.priority
    _full_clean(current, exclude=["public_id"])
    stamp(current, actor, reason or "details edited")
    current.save(update_fields=["reason", "priority"])
    outbox.record_instance(current)
    if current.status == S.WAITING:
        _publish_waiting(current, actor)
    return current


@transaction.atomic
def verify_license(license: ProviderLicense, *, actor: Actor) -> ProviderLicense:
    """Record that ``actor`` checked the license against the state board today."""
    license = ProviderLicense.objects.select_for_update().get(pk=license.pk)
    license.verified_by, license.verified_at = actor.user, dbclock.now()
    stamp(license, actor, "verified against the state board", at=license.verified_at)
    license.save(update_fields=["verified_by", "verified_at"])
    outbox.record("clinical.provider", [license.provider_id])
    return license


# --- API clients ----------------------------------------------------------------------------


@transaction.atomic
def create_api_client(
    *, name: str, scope: str, actor: Actor, provider: Provider | None = None, patient: Patient | None = None
) -> tuple[ApiClient, str]:
    """Create an API client for its one owner (a provider, or a patient) and return it with its
    bearer token, which is shown only once. It expires ``OPS_API_TOKEN_DAYS`` from now.
    """
    prefix = secrets.token_hex(4)
    token = f"opc_{prefix}_{secrets.token_urlsafe(32)}"
    now = dbclock.now()
    client = ApiClient(
        name=name, scope=scope, provider=provider, patient=patient, token_prefix=prefix, token_hash=hash_token(token),
        created_by=actor.user, created_at=now, expires_at=now + dt.timedelta(days=settings.OPS_API_TOKEN_DAYS),
    )  # fmt: skip
    _full_clean(client, validate_constraints=True)
    stamp(client, actor, "created", at=now)
    client.save()
    return client, token


@transaction.atomic
def revoke_api_client(client: ApiClient, *, actor: Actor, reason: str = "") -> ApiClient:
    """Disable a client's token at once, for good."""
    client = ApiClient.objects.select_for_update().get(pk=client.pk)
    if not client.is_active:
        return client
    client.is_active = False
    stamp(client, actor, reason or "revoked")
    client.save(update_fields=["is_active"])
    return client


def hash_token(token: str) -> str:
    """Return the stored form of a token (tokens are long random strings, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def update_api_client(client: ApiClient, *, actor: Actor, reason: str = "") -> ApiClient:
    """Save a client's name, or revoke it (its scope, owner and token never change; a revoked one stays so)."""
    current = ApiClient.objects.select_for_update().get(pk=client.pk)
    if client.is_active and not current.is_active:
        raise IllegalTransition("A revoked token stays revoked: create a new client.", field="is_active")
    current.name, current.is_active = client.name, client.is_active
    _full_clean(current)
    stamp(current, actor, reason or ("edited" if current.is_active else "revoked"))
    current.save(update_fields=["name", "is_active"])
    return current


def _revoke_provider_tokens(provider: Provider, *, actor: Actor) -> None:
    """Revoke every token of a deactivated provider, each with its history record."""
    for client in ApiClient.objects.filter(provider=provider, is_active=True):
        revoke_api_client(client, actor=actor, reason=f"provider {provider.npi} deactivated")

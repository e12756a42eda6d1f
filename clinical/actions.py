"""Every write to the clinical domain: visit status, provider availability, licenses, records.

Each function runs in one transaction, locks the rows it changes (visit before provider, always
in that order), refuses an illegal change with an ``ActionError`` naming the field, writes the
``VisitEvent`` and the history record, and publishes the routing event on commit.
"""

import hashlib
import secrets

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from clinical import events
from clinical.models import (
    LICENSE_VALID_SQL,
    ApiClient,
    Availability,
    LicenseStatus,
    Patient,
    Priority,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
    VisitStatus,
)
from clinical.validators import format_mrn
from ops_console.audit import Actor, history_sql, stamp
from ops_console.errors import ActionError, IllegalTransition
from ops_console.errors import full_clean_or_raise as _full_clean
from search import outbox as search_outbox

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
    search_outbox.record_instance(patient, embedded=True)
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
    search_outbox.record_instance(provider, embedded=True)
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
    stamp(license, actor, reason or ("added" if creating else "edited"))
    license.save()
    search_outbox.record("clinical.provider", [license.provider_id, previous])
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
        constraint = getattr(getattr(error.__cause__, "diag", None), "constraint_name", None)
        message = _LICENSE_CONSTRAINT_ERRORS.get(constraint, f"The database refused the file: {error}")
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
    search_outbox.record("clinical.provider", providers)
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
    _set_availability(provider, target, actor=actor, reason=reason or f"went {target}")
    return provider


def _set_availability(provider: Provider, target: str, *, actor: Actor, reason: str, keep_since: bool = False) -> None:
    provider.availability = target
    if target == Availability.AVAILABLE:
        if not (keep_since and provider.available_since):
            provider.available_since = timezone.now()
    elif target == Availability.OFFLINE:
        provider.available_since = None
    stamp(provider, actor, reason)
    provider.save(update_fields=["availability", "available_since"])
    search_outbox.record_instance(provider)
    events.publish_on_commit("provider_availability", actor=actor.kind, provider=provider.pk, availability=target)


# --- visits ---------------------------------------------------------------------------------


@transaction.atomic
def request_visit(
    *, patient: Patient, located_state: str, reason: str, priority: int = Priority.ROUTINE, actor: Actor
) -> Visit:
    """Create a waiting visit for a patient located in ``located_state``."""
    visit = Visit(patient=patient, located_state=located_state, reason=reason, priority=priority)
    _full_clean(visit, exclude=["public_id"])
    stamp(visit, actor, "requested")
    visit.save()
    search_outbox.record_instance(visit)
    _record_event(visit, "", S.WAITING, actor=actor, detail="requested")
    _publish_waiting(visit, actor)
    return visit


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


def _lock_visit(visit: Visit | int) -> Visit:
    visit_id = visit.pk if isinstance(visit, Visit) else visit
    try:
        return Visit.objects.select_for_update().get(pk=visit_id)
    except Visit.DoesNotExist:
        raise ActionError("No such visit.", field="visit") from None


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


def _move(visit: Visit, to: str, *, actor: Actor, detail: str, provider: Provider | None = None) -> Visit:
    """Save the visit in its new status with its timeline event and history record."""
    from_status = visit.status
    visit.status = to
    stamp(visit, actor, detail or f"{from_status} → {to}")
    visit.save()
    search_outbox.record_instance(visit)
    _record_event(visit, from_status, to, actor=actor, detail=detail, provider=provider)
    events.publish_on_commit(
        "visit_status",
        actor=actor.kind,
        visit=visit.pk,
        status=to,
        state=visit.located_state,
        provider=provider.pk if provider else None,
    )
    return visit


_MILESTONES = {
    S.OFFERED: "offered_at",
    S.ACCEPTED: "accepted_at",
    S.IN_PROGRESS: "started_at",
    S.COMPLETED: "ended_at",
    S.FAILED: "ended_at",
    S.EXPIRED: "ended_at",
    S.CANCELLED: "cancelled_at",
}


def _record_event(visit: Visit, from_status: str, to: str, *, actor: Actor, detail: str, provider=None) -> VisitEvent:
    # The event carries the same instant as the milestone it records (requested_at for a new visit).
    milestone = "requested_at" if not from_status else _MILESTONES.get(to)
    return VisitEvent.objects.create(
        visit=visit,
        from_status=from_status,
        to_status=to,
        at=(getattr(visit, milestone) if milestone else None) or timezone.now(),
        actor_kind=actor.kind,
        staff_user=actor.user,
        provider=provider or visit.provider,
        detail=detail[:500],
    )


_OFFER_SQL = """
WITH pairs(visit_id, provider_id) AS (SELECT * FROM unnest(%(visits)s::bigint[], %(providers)s::bigint[])),
eligible AS (
    SELECT v.id AS visit_id, pr.id AS provider_id
    FROM pairs p
    JOIN clinical_visit v ON v.id = p.visit_id AND v.status = 'waiting'
    JOIN clinical_provider pr ON pr.id = p.provider_id AND pr.availability = 'available' AND pr.is_active
    WHERE EXISTS (
        SELECT 1 FROM clinical_providerlicense l
        WHERE l.provider_id = pr.id AND l.state = v.located_state AND {license_valid}
    )
    FOR UPDATE OF v, pr
),
offered AS (
    UPDATE clinical_visit v
    SET status = 'offered', provider_id = e.provider_id, offered_at = %(now)s, offer_count = v.offer_count + 1
    FROM eligible e WHERE v.id = e.visit_id
    RETURNING v.id, v.provider_id, v.located_state
),
reserved AS (
    UPDATE clinical_provider pr SET availability = 'reserved'
    FROM eligible e WHERE pr.id = e.provider_id
    RETURNING pr.id
)
SELECT o.id, o.provider_id, o.located_state FROM offered o JOIN reserved r ON r.id = o.provider_id
""".replace("{license_valid}", LICENSE_VALID_SQL)

_OFFER_EVENTS_SQL = """
INSERT INTO clinical_visitevent (visit_id, from_status, to_status, at, actor_kind, staff_user_id, provider_id, detail)
SELECT v.id, 'waiting', 'offered', %(now)s, %(actor)s, %(user)s, v.provider_id,
       'offered to ' || pr.first_name || ' ' || pr.last_name
FROM clinical_visit v JOIN clinical_provider pr ON pr.id = v.provider_id
WHERE v.id = ANY(%(visits)s)
"""


@transaction.atomic
def offer_visits(pairs: list[tuple[int, int]], *, actor: Actor) -> list[tuple[int, int]]:
    """Offer each waiting visit to its paired provider in one conditional statement.

    A pair is applied only if, at that moment, the visit is waiting and the provider is active,
    available and licensed today in the visit's state; the others are skipped. Write the
    timeline events and history of every applied pair, publish their events on commit, and
    return the applied ``(visit_id, provider_id)`` pairs.
    """
    if not pairs:
        return []
    now = timezone.now()
    params = {
        "visits": [visit for visit, _ in pairs],
        "providers": [provider for _, provider in pairs],
        "today": timezone.localdate(now),
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(_OFFER_SQL, params)
        applied = cursor.fetchall()
        if applied:
            _write_offer_trail(cursor, applied, now=now, actor=actor)
    return [(visit, provider) for visit, provider, _ in applied]


def _write_offer_trail(cursor, applied, *, now, actor: Actor) -> None:
    visits = [row[0] for row in applied]
    providers = [row[1] for row in applied]
    sql, params = history_sql(Visit, actor=actor, reason="offered by the router")
    cursor.execute(sql, [*params, visits])
    sql, params = history_sql(Provider, actor=actor, reason="reserved for an offered visit")
    cursor.execute(sql, [*params, providers])
    user = actor.user.pk if actor.user is not None else None
    cursor.execute(_OFFER_EVENTS_SQL, {"now": now, "actor": actor.kind, "user": user, "visits": visits})
    search_outbox.record("clinical.visit", visits)
    search_outbox.record("clinical.provider", providers)
    events.publish_many_on_commit(
        [
            events.event("visit_status", actor=actor.kind, visit=v, status=S.OFFERED, state=state, provider=p)
            for v, p, state in applied
        ]
    )


def offer_visit(visit: Visit | int, provider: Provider | int, *, actor: Actor) -> Visit:
    """Offer a waiting visit to an available provider licensed today in the visit's state."""
    visit_id = visit.pk if isinstance(visit, Visit) else visit
    provider_id = provider.pk if isinstance(provider, Provider) else provider
    if not offer_visits([(visit_id, provider_id)], actor=actor):
        _explain_refused_offer(visit_id, provider_id)
    return Visit.objects.select_related("provider").get(pk=visit_id)


def _explain_refused_offer(visit_id: int, provider_id: int) -> None:
    visit = Visit.objects.filter(pk=visit_id).first()
    if visit is None:
        raise ActionError("No such visit.", field="visit")
    _check_transition(visit, S.OFFERED)
    provider = Provider.objects.get(pk=provider_id)
    if provider.availability != Availability.AVAILABLE or not provider.is_active:
        raise IllegalTransition(f"{provider} is not available.", field="provider")
    raise IllegalTransition(f"{provider} is not licensed in {visit.located_state} today.", field="provider")


@transaction.atomic
def accept_visit(visit: Visit | int, *, actor: Actor) -> Visit:
    """Record the offered provider's acceptance; the provider becomes busy."""
    visit = _lock_visit(visit)
    _check_transition(visit, S.ACCEPTED)
    provider = _lock_provider(visit.provider_id)
    visit.accepted_at = timezone.now()
    _set_availability(provider, Availability.BUSY, actor=actor, reason=f"accepted visit {visit.public_id}")
    return _move(visit, S.ACCEPTED, actor=actor, detail=f"accepted by {provider.full_name}", provider=provider)


@transaction.atomic
def decline_offer(visit: Visit | int, *, actor: Actor, expired: bool = False, provider_id: int | None = None) -> Visit:
    """Put an offered visit back at its place in line; an expired offer also sets the provider offline.

    With ``provider_id``, refuse unless the visit is still offered to that provider (a late
    timeout or a repeated reject must not touch a newer offer).
    """
    visit = _lock_visit(visit)
    _check_transition(visit, S.WAITING)
    _check_offered_to(visit, provider_id)
    provider = _lock_provider(visit.provider_id)
    if expired:
        _set_availability(provider, Availability.OFFLINE, actor=actor, reason=f"let offer {visit.public_id} expire")
    else:
        _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"rejected visit {visit.public_id}")
    visit.provider = None
    detail = f"offer to {provider.full_name} {'expired' if expired else 'rejected'}"
    return _move(visit, S.WAITING, actor=actor, detail=detail, provider=provider)


@transaction.atomic
def withdraw_offer(visit: Visit | int, *, actor: Actor, reason: str, provider_id: int | None = None) -> Visit:
    """Take an offer back through no fault of the provider (e.g. their license stopped covering the state)."""
    visit = _lock_visit(visit)
    _check_transition(visit, S.WAITING)
    _check_offered_to(visit, provider_id)
    provider = _lock_provider(visit.provider_id)
    _set_availability(
        provider, Availability.AVAILABLE, actor=actor, reason=f"offer withdrawn: {reason}", keep_since=True
    )
    visit.provider = None
    return _move(visit, S.WAITING, actor=actor, detail=f"offer withdrawn: {reason}", provider=provider)


def _check_offered_to(visit: Visit, provider_id: int | None) -> None:
    if provider_id is not None and visit.provider_id != provider_id:
        raise IllegalTransition(f"Visit {visit.public_id} is no longer offered to that provider.", field="provider")


@transaction.atomic
def start_connecting(visit: Visit | int, *, actor: Actor) -> Visit:
    """Mark an accepted visit as connecting the video call."""
    visit = _lock_visit(visit)
    _check_transition(visit, S.CONNECTING)
    return _move(visit, S.CONNECTING, actor=actor, detail="connecting video")


@transaction.atomic
def mark_connected(visit: Visit | int, *, actor: Actor) -> Visit:
    """Record that patient and provider are connected; the visit is in progress."""
    visit = _lock_visit(visit)
    _check_transition(visit, S.IN_PROGRESS)
    visit.started_at = timezone.now()
    return _move(visit, S.IN_PROGRESS, actor=actor, detail="connected")


@transaction.atomic
def complete_visit(visit: Visit | int, *, actor: Actor) -> Visit:
    """End an in-progress visit normally; the provider becomes available again."""
    visit = _lock_visit(visit)
    _check_transition(visit, S.COMPLETED)
    provider = _lock_provider(visit.provider_id)
    visit.ended_at = timezone.now()
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"completed visit {visit.public_id}")
    return _move(visit, S.COMPLETED, actor=actor, detail="completed")


@transaction.atomic
def fail_visit(visit: Visit | int, *, actor: Actor, detail: str = "") -> Visit:
    """End an accepted or running visit as failed (e.g. the call dropped); free the provider."""
    visit = _lock_visit(visit)
    _check_transition(visit, S.FAILED)
    provider = _lock_provider(visit.provider_id)
    visit.ended_at = timezone.now()
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"visit {visit.public_id} failed")
    return _move(visit, S.FAILED, actor=actor, detail=detail or "failed")


@transaction.atomic
def cancel_visit(visit: Visit | int, *, actor: Actor, detail: str = "") -> Visit:
    """Cancel a visit that has not started; a provider holding it is freed at once."""
    visit = _lock_visit(visit)
    _check_transition(visit, S.CANCELLED)
    provider = _lock_provider(visit.provider_id)
    visit.cancelled_at = timezone.now()
    if provider is not None:
        # Freed through no doing of their own: keep their place in the longest-idle order.
        _set_availability(
            provider, Availability.AVAILABLE, actor=actor, reason=f"visit {visit.public_id} cancelled", keep_since=True
        )
    return _move(visit, S.CANCELLED, actor=actor, detail=detail or "cancelled", provider=provider)


@transaction.atomic
def expire_visit(visit: Visit | int, *, actor: Actor, detail: str = "", open_case: bool = True) -> Visit:
    """Expire a visit that waited too long and open a support case about it, in one transaction."""
    from support.actions import open_case as open_support_case
    from support.models import CaseCategory, CasePriority

    visit = _lock_visit(visit)
    _check_transition(visit, S.EXPIRED)
    visit.ended_at = timezone.now()
    _move(visit, S.EXPIRED, actor=actor, detail=detail or "waited too long")
    if open_case:
        waited = int((visit.ended_at - visit.requested_at).total_seconds() // 60)
        open_support_case(
            subject=f"Visit {visit.public_id} expired after {waited} min waiting in {visit.located_state}",
            category=CaseCategory.ROUTING,
            priority=CasePriority.HIGH,
            visit=visit,
            actor=actor,
            note="Opened automatically: no licensed provider took the visit in time. Contact the patient.",
        )
    return visit


@transaction.atomic
def update_visit_details(visit: Visit, *, actor: Actor, reason: str = "") -> Visit:
    """Save a change to an open visit's reason or priority (never its status)."""
    current = _lock_visit(visit)
    if not current.is_open:
        raise IllegalTransition(f"Visit {current.public_id} has ended; its details are final.", field="priority")
    current.reason, current.priority = visit.reason, visit.priority
    _full_clean(current, exclude=["public_id"])
    stamp(current, actor, reason or "details edited")
    current.save(update_fields=["reason", "priority"])
    search_outbox.record_instance(current)
    if current.status == S.WAITING:
        _publish_waiting(current, actor)
    return current


@transaction.atomic
def verify_license(license: ProviderLicense, *, actor: Actor) -> ProviderLicense:
    """Record that ``actor`` checked the license against the state board today."""
    license = ProviderLicense.objects.select_for_update().get(pk=license.pk)
    license.verified_by, license.verified_at = actor.user, timezone.now()
    stamp(license, actor, "verified against the state board")
    license.save(update_fields=["verified_by", "verified_at"])
    search_outbox.record("clinical.provider", [license.provider_id])
    return license


# --- API clients ----------------------------------------------------------------------------


@transaction.atomic
def create_api_client(
    *, name: str, scope: str, actor: Actor, provider: Provider | None = None
) -> tuple[ApiClient, str]:
    """Create an API client and return it with its bearer token, which is shown only once."""
    prefix = secrets.token_hex(4)
    token = f"opc_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient(
        name=name, scope=scope, provider=provider, token_prefix=prefix, token_hash=hash_token(token),
        created_by=actor.user,
    )  # fmt: skip
    _full_clean(client)
    stamp(client, actor, "created")
    client.save()
    return client, token


@transaction.atomic
def revoke_api_client(client: ApiClient, *, actor: Actor, reason: str = "") -> ApiClient:
    """Disable a client's token at once."""
    client.is_active = False
    stamp(client, actor, reason or "revoked")
    client.save(update_fields=["is_active"])
    return client


def hash_token(token: str) -> str:
    """Return the stored form of a token (tokens are long random strings, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def update_api_client(client: ApiClient, *, actor: Actor, reason: str = "") -> ApiClient:
    """Save a client's name or active flag (its scope, provider and token never change)."""
    current = ApiClient.objects.select_for_update().get(pk=client.pk)
    current.name, current.is_active = client.name, client.is_active
    _full_clean(current)
    stamp(current, actor, reason or ("edited" if current.is_active else "revoked"))
    current.save(update_fields=["name", "is_active"])
    return current

"""Licenses: edits, status changes, bulk imports and verification."""

from django.db import IntegrityError, connection, transaction

from clinical import events
from clinical.actions.visits import _constraint
from clinical.models import (
    LicenseStatus,
    ProviderLicense,
)
from clinical.push import publish as push
from core import dbclock, outbox
from core.audit import Actor, history_sql, stamp
from core.errors import ActionError, IllegalTransition
from core.errors import full_clean_or_raise as _full_clean

BULK_LICENSE_EVENT_THRESHOLD = 200  # above this many providers, an import sends one routing event


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
    push.queues_changed_on_commit()  # who is available where
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
    if providers:
        push.queues_changed_on_commit()
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
def verify_license(license: ProviderLicense, *, actor: Actor) -> ProviderLicense:
    """Record that ``actor`` checked the license against the state board today."""
    license = ProviderLicense.objects.select_for_update().get(pk=license.pk)
    license.verified_by, license.verified_at = actor.user, dbclock.now()
    stamp(license, actor, "verified against the state board", at=license.verified_at)
    license.save(update_fields=["verified_by", "verified_at"])
    outbox.record("clinical.provider", [license.provider_id])
    return license

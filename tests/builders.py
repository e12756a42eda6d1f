"""Small builders that set up test data through the actions, as the console would."""

import datetime as dt
import itertools
import secrets

from django.db import connection

from clinical.actions import licenses as license_actions
from clinical.actions import patients as patient_actions
from clinical.actions import providers as provider_actions
from clinical.actions import visits as visit_actions
from clinical.models import LicenseStatus, Offer, Patient, Provider, ProviderLicense
from clinical.validators import make_npi
from core import dbclock
from core.audit import Actor

SYSTEM = Actor.system("tests")
_counter = itertools.count(1)
# A random start keeps NPIs unique across runs against a database that keeps its rows.
_npi_base = 100_000_000 + secrets.randbelow(800_000_000)


def new_npi() -> str:
    """Return a fresh valid NPI."""
    return make_npi(f"{_npi_base + next(_counter):09d}")


def make_provider(*, states=("CA",), available=False, first_name="Ada", last_name=None, **license_kwargs) -> Provider:
    """Create a provider holding an active license today in each of ``states``."""
    n = next(_counter)
    provider = provider_actions.save_provider(
        Provider(
            first_name=first_name, last_name=last_name or f"Provider{n}", npi=new_npi(),
            email=f"provider{n}@example.test", phone=f"+1415555{n % 10000:04d}", specialty="family_medicine",
        ),
        actor=SYSTEM,
    )  # fmt: skip
    for state in states:
        make_license(provider, state, **license_kwargs)
    if available:
        provider_actions.set_provider_availability(provider, available=True, actor=SYSTEM)
        provider.refresh_from_db()
    return provider


def make_license(
    provider: Provider, state: str, *, status=LicenseStatus.ACTIVE, issued_days_ago=365, expires_in_days=365
):
    """Create a license for ``provider`` in ``state``, its dates counted from the state's own date today."""
    today = state_today(state)
    return license_actions.save_license(
        ProviderLicense(
            provider=provider, state=state, license_number=f"{state}-{next(_counter):06d}", license_type="MD",
            status=status, issued_on=today - dt.timedelta(days=issued_days_ago),
            expires_on=None if expires_in_days is None else today + dt.timedelta(days=expires_in_days),
        ),
        actor=SYSTEM,
    )  # fmt: skip


def make_patient(*, first_name="Grace", last_name=None, state="CA", phone=None) -> Patient:
    """Register a patient."""
    n = next(_counter)
    return patient_actions.save_patient(
        Patient(
            first_name=first_name, last_name=last_name or f"Patient{n}", date_of_birth=dt.date(1985, 3, 2),
            email=f"patient{n}@example.test", phone=phone or f"+1212555{n % 10000:04d}",
            address_line1=f"{n} Main St", city="Springfield", state=state, postal_code="90210",
        ),
        actor=SYSTEM,
    )  # fmt: skip


def make_visit(*, patient=None, state="CA", priority=0, reason="Sore throat"):
    """Request a waiting visit."""
    return visit_actions.request_visit(
        patient=patient or make_patient(), located_state=state, reason=reason, priority=priority, actor=SYSTEM
    )


def make_past_visit(*, patient, state="CA", reason="Sore throat"):
    """Request a visit and cancel it, so the patient may request another (one open visit each)."""
    visit = make_visit(patient=patient, state=state, reason=reason)
    return visit_actions.cancel_visit(visit, actor=SYSTEM, detail="Test set-up: an earlier visit.")


def state_today(state: str) -> dt.date:
    """Return the state's own date now (the earliest of its zones), by the database's clock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min((statement_timestamp() AT TIME ZONE time_zone)::date) FROM clinical_statetimezone "
            "WHERE state = %s",
            [state],
        )
        return cursor.fetchone()[0]


def past_deadline(visit, *, seconds: int = 1) -> None:
    """Move a visit's open offer into the past, its deadline ``seconds`` ago (test set-up only)."""
    offer = Offer.objects.get(visit=visit, outcome__isnull=True)
    timeout = offer.expires_at - offer.offered_at
    deadline = dbclock.now() - dt.timedelta(seconds=seconds)
    Offer.objects.filter(pk=offer.pk).update(offered_at=deadline - timeout, expires_at=deadline)

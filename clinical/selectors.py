"""Reads of the clinical domain, with their joins applied, for the console and the API."""

import datetime as dt

from django.db.models import Count, Min, QuerySet
from django.utils import timezone

from clinical.models import (
    Availability,
    LicenseStatus,
    Patient,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
    VisitStatus,
)


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
    """Return providers with nothing more to join (license states come from a prefetch when needed)."""
    return Provider.objects.all()


def licenses_for_list() -> QuerySet[ProviderLicense]:
    """Return licenses with provider and verifier joined."""
    return ProviderLicense.objects.select_related("provider", "verified_by")


def licensed_states_today(provider: Provider) -> list[str]:
    """Return the states the provider can take patients from today, sorted."""
    today = timezone.localdate()
    return sorted(ProviderLicense.objects.filter(provider=provider).valid_on(today).values_list("state", flat=True))


def patient_recent_visits(patient: Patient, limit: int = 10) -> QuerySet[Visit]:
    """Return the patient's latest visits, newest first."""
    return visits_for_list().filter(patient=patient).order_by("-requested_at", "-id")[:limit]


def waiting_by_state() -> list[dict]:
    """Return, per state with waiting visits, how many wait and since when the oldest waits."""
    return list(
        Visit.objects.filter(status=VisitStatus.WAITING)
        .values("located_state")
        .annotate(waiting=Count("id"), oldest=Min("requested_at"))
        .order_by("-waiting", "located_state")
    )


def licenses_expiring(within_days: int = 30) -> QuerySet[ProviderLicense]:
    """Return active licenses whose last valid day falls within the next ``within_days`` days."""
    today = timezone.localdate()
    return (
        licenses_for_list()
        .filter(status=LicenseStatus.ACTIVE, expires_on__gte=today, expires_on__lte=today + dt.timedelta(within_days))
        .order_by("expires_on", "id")
    )


def dashboard_summary() -> dict:
    """Return the numbers the console's home page shows."""
    from support.selectors import open_case_count

    return {
        "waiting_by_state": waiting_by_state(),
        "providers_available": Provider.objects.filter(availability=Availability.AVAILABLE).count(),
        "providers_in_visits": Provider.objects.filter(
            availability__in=[Availability.RESERVED, Availability.BUSY]
        ).count(),
        "expiring_licenses": list(licenses_expiring()[:15]),
        "expiring_count": licenses_expiring().count(),
        "open_cases": open_case_count(),
    }


def visit_for_api(public_id: str) -> Visit | None:
    """Return a visit by public id with patient and provider joined, or None."""
    return Visit.objects.select_related("patient", "provider").filter(public_id=public_id.upper()).first()


def visit_held_by(provider: Provider) -> Visit | None:
    """Return the visit the provider holds now (offered to them or in progress with them)."""
    from clinical.models import PROVIDER_HOLDING_STATUSES

    return (
        Visit.objects.select_related("patient", "provider")
        .filter(provider=provider, status__in=PROVIDER_HOLDING_STATUSES)
        .first()
    )

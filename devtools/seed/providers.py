"""Demo providers and their licenses."""

import datetime as dt
import random

from clinical.models import (
    LicenseStatus,
    LicenseType,
    Provider,
    ProviderLicense,
)
from clinical.reference import SPECIALTY_CHOICES
from clinical.validators import make_npi
from devtools import sampling
from devtools.seed.records import SeedContext, bulk_with_history

LICENSE_TYPE_MIX = {LicenseType.MD: 55, LicenseType.DO: 15, LicenseType.NP: 20, LicenseType.PA: 10}
STATE_COUNT_MIX = {1: 30, 2: 25, 3: 20, 4: 13, 5: 7, 8: 3, 12: 2}
SPECIALTY_MIX = {
    "family_medicine": 30,
    "internal_medicine": 20,
    "urgent_care": 15,
    "emergency_medicine": 10,
    "pediatrics": 10,
    "psychiatry": 8,
    "dermatology": 4,
    "obstetrics_gynecology": 3,
}
# "lapsed": still active on paper but past its expiry date (the expiry sweep has not run yet).
LICENSE_MIX = {"active": 82, "expiring": 5, "lapsed": 3, "expired": 3, "suspended": 2, "pending": 3, "revoked": 2}
LICENSE_NOTES = {
    "suspended": "Suspended by the state board pending review.",
    "revoked": "Revoked by the state board.",
    "pending": "Application submitted; waiting for the state board.",
    "expired": "Not renewed.",
}


def seed_providers(ctx: SeedContext, wanted: int) -> tuple[set[int], int]:
    """Create the missing providers (all offline for now) with their licenses; return new ids, licenses."""
    missing = wanted - Provider.objects.count()
    if missing <= 0:
        return set(), 0
    taken = set(Provider.objects.values_list("npi", flat=True))
    drafts = [_new_provider(ctx, npi) for npi in _fresh_npis(ctx.rng, missing, taken)]
    bulk_with_history([provider for provider, _ in drafts], at=lambda provider: provider.created_at)
    licenses = [lic for provider, license_states in drafts for lic in _new_licenses(ctx, provider, license_states)]
    bulk_with_history(licenses, at=lambda lic: _license_recorded_at(ctx, lic))
    return {provider.pk for provider, _ in drafts}, len(licenses)


def _fresh_npis(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    npis = []
    while len(npis) < count:
        npi = make_npi(str(rng.randrange(100_000_000, 300_000_000)))
        if npi not in taken:
            taken.add(npi)
            npis.append(npi)
    return npis


def _specialty_mix() -> dict[str, int]:
    return {code: SPECIALTY_MIX.get(code, 5) for code, _ in SPECIALTY_CHOICES}


def _new_provider(ctx: SeedContext, npi: str) -> tuple[Provider, list[str]]:
    """Return an unsaved provider and the states they are licensed in (home state first)."""
    rng = ctx.rng
    first, last = sampling.person(rng)
    license_states = sampling.states_for(rng, sampling.weighted(rng, STATE_COUNT_MIX))
    provider = Provider(
        first_name=first,
        last_name=last,
        npi=npi,
        email=f"{sampling.mailbox(first, last)}@care.example.com",
        phone=sampling.phone(rng, sampling.place(rng, license_states[0])),
        specialty=sampling.weighted(rng, _specialty_mix()),
        is_active=rng.random() >= 0.03,
        created_at=ctx.now - sampling.days(rng, 90, 1500),
    )
    return provider, license_states


def _new_licenses(ctx: SeedContext, provider: Provider, license_states: list[str]) -> list[ProviderLicense]:
    license_type = sampling.weighted(ctx.rng, LICENSE_TYPE_MIX)
    return [_new_license(ctx, provider, state, license_type) for state in license_states]


def _new_license(ctx: SeedContext, provider: Provider, state: str, license_type: str) -> ProviderLicense:
    rng = ctx.rng
    kind = sampling.weighted(rng, LICENSE_MIX)
    issued_on, expires_on = _license_dates(rng, ctx.today, kind)
    status = LicenseStatus.ACTIVE if kind in ("expiring", "lapsed") else kind
    license = ProviderLicense(
        provider=provider,
        state=state,
        license_number=f"{license_type}{rng.randrange(100_000, 1_000_000)}",
        license_type=license_type,
        status=status,
        issued_on=issued_on,
        expires_on=expires_on,
        notes=LICENSE_NOTES.get(kind, ""),
    )
    if status == LicenseStatus.ACTIVE and rng.random() < 0.75:
        license.verified_by = ctx.users["clinops"]
        license.verified_at = max(provider.created_at, ctx.now - sampling.days(rng, 1, 365))
    return license


def _license_dates(rng: random.Random, today: dt.date, kind: str) -> tuple[dt.date, dt.date]:
    """Return (issued_on, expires_on) for a license of ``kind``; expiry is always after issue."""
    day = dt.timedelta(days=1)
    if kind == "expiring":
        return today - rng.randint(300, 3000) * day, today + rng.randint(1, 30) * day
    if kind in ("lapsed", "expired"):
        expires_on = today - rng.randint(1, 45 if kind == "lapsed" else 400) * day
        return expires_on - rng.randint(365, 1095) * day, expires_on
    if kind == "pending":
        issued_on = today - rng.randint(0, 20) * day
        return issued_on, issued_on + 730 * day
    return today - rng.randint(30, 3000) * day, today + rng.randint(31, 730) * day


def _license_recorded_at(ctx: SeedContext, license: ProviderLicense) -> dt.datetime:
    issued = dt.datetime.combine(license.issued_on, dt.time(15), tzinfo=dt.UTC)
    return min(ctx.now, max(license.provider.created_at, issued))


# --- patients -------------------------------------------------------------------------------

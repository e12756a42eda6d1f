"""Demo data: providers and licenses, patients, visits with their timelines, support cases, users.

The seed writes in bulk, so it does not go through the actions. Instead ``_Timeline`` replays each
visit along ``clinical.actions.visits.VISIT_TRANSITIONS`` and sets the same milestone fields the actions
set, and the seed writes the ``VisitEvent`` rows and history records the actions would have
written (actor: the system, labelled ``seed_demo``). Everything runs in one transaction and only
tops up what is missing, so a second run adds nothing. With the same seed on an empty database
the data is the same, except that times are relative to now.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from clinical.models import (
    Patient,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
)
from devtools.seed.cases import seed_support_cases
from devtools.seed.people import seed_patients
from devtools.seed.providers import seed_providers
from devtools.seed.records import SeedContext
from devtools.seed.users import ensure_demo_users
from devtools.seed.visits import seed_visits
from support.models import CaseNote, SupportCase

DEFAULT_SEED = 2026
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoSize:
    """How many rows of each kind the demo should hold."""

    providers: int = 200
    patients: int = 2000
    visits: int = 10000

    @property
    def support_cases(self) -> int:
        """Return the number of support cases: about 150 for 10,000 visits."""
        return round(self.visits * 0.015)


@dataclass(frozen=True)
class Tally:
    """How many rows of one kind the seed created, and how many there are now."""

    what: str
    created: int
    total: int


DEFAULT_SIZE = DemoSize()


def _silent(message: str) -> None:
    pass


# --- entry points ---------------------------------------------------------------------------


def demo_data_exists() -> bool:
    """Return True once any visit exists (``seed_demo --if-empty`` then does nothing)."""
    return Visit.objects.exists()


@transaction.atomic
def seed_demo(*, size: DemoSize = DEFAULT_SIZE, seed: int = DEFAULT_SEED, progress: Progress = _silent) -> list[Tally]:
    """Top the demo data up to ``size`` in one transaction and return what was created."""
    users, new_users = ensure_demo_users()
    ctx = SeedContext(rng=random.Random(seed), now=timezone.now(), users=users)
    new_providers, new_licenses = seed_providers(ctx, size.providers)
    progress(f"providers: {len(new_providers)} created, with {new_licenses} licenses")
    new_patients = seed_patients(ctx, size.patients)
    progress(f"patients: {new_patients} created")
    new_visits, new_events = seed_visits(ctx, size.visits, new_provider_ids=new_providers)
    progress(f"visits: {new_visits} created, with {new_events} timeline events")
    new_cases, new_notes = seed_support_cases(ctx, size.support_cases)
    progress(f"support cases: {new_cases} created, with {new_notes} notes")
    return [
        Tally("demo users", new_users, len(users)),
        Tally("providers", len(new_providers), Provider.objects.count()),
        Tally("licenses", new_licenses, ProviderLicense.objects.count()),
        Tally("patients", new_patients, Patient.objects.count()),
        Tally("visits", new_visits, Visit.objects.count()),
        Tally("visit events", new_events, VisitEvent.objects.count()),
        Tally("support cases", new_cases, SupportCase.objects.count()),
        Tally("case notes", new_notes, CaseNote.objects.count()),
    ]

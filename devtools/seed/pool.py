"""Who can take a visit where and when: providers by state with their licenses' valid dates, and who is busy."""

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Max
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinical.models import (
    PROVIDER_HOLDING_STATUSES,
    LicenseStatus,
    Provider,
    ProviderLicense,
    Visit,
)
from devtools.seed.records import (
    EARLIEST,
    FOREVER,
)


@dataclass
class ProviderPool:
    """Providers by state with the dates their active licenses are valid, and who is busy until when."""

    names: dict[int, str]
    active: set[int]
    licenses: dict[str, list[tuple[int, dt.date, dt.date]]]
    busy_until: dict[int, dt.datetime]
    free_since: dict[int, dt.datetime] = field(default_factory=dict)

    @classmethod
    def load(cls) -> "ProviderPool":
        """Load every provider's active licenses and when they were last busy (three queries)."""
        names, active, joined = {}, set(), {}
        for pk, first, last, is_active, created_at in Provider.objects.values_list(
            "pk", "first_name", "last_name", "is_active", "created_at"
        ).order_by("pk"):
            names[pk], joined[pk] = f"{first} {last}", timezone.localdate(created_at)
            if is_active:
                active.add(pk)
        licenses = defaultdict(list)
        for provider_id, state, issued_on, expires_on in (
            ProviderLicense.objects.filter(status=LicenseStatus.ACTIVE)
            .order_by("pk")
            .values_list("provider_id", "state", "issued_on", "expires_on")
        ):
            licenses[state].append((provider_id, max(issued_on, joined[provider_id]), expires_on or dt.date.max))
        return cls(names, active, dict(licenses), _busy_until())

    def take(self, rng: random.Random, state: str, at: dt.datetime, *, live: bool) -> int | None:
        """Pick a provider free at ``at`` and licensed then in ``state``, and hold them."""
        day = timezone.localdate(at)
        free = [
            provider_id
            for provider_id, valid_from, valid_to in self.licenses.get(state, ())
            if _counts_any_zone(valid_from, day, valid_to)
            and self.busy_until.get(provider_id, EARLIEST) <= at
            and (provider_id in self.active or not live)
        ]
        if not free:
            return None
        provider_id = rng.choice(free)
        self.free_since[provider_id] = self.busy_until.get(provider_id, EARLIEST)
        self.busy_until[provider_id] = FOREVER
        return provider_id

    def states_open_at(self, at: dt.datetime) -> set[str]:
        """Return the states where some active provider is licensed that day and free at ``at``."""
        day = timezone.localdate(at)
        return {
            state
            for state, rows in self.licenses.items()
            if any(
                _counts_any_zone(valid_from, day, valid_to)
                and provider_id in self.active
                and self.busy_until.get(provider_id, EARLIEST) <= at
                for provider_id, valid_from, valid_to in rows
            )
        }

    def release(self, provider_id: int, at: dt.datetime) -> None:
        """Free a provider from ``at``."""
        self.busy_until[provider_id] = at


def _counts_any_zone(valid_from: dt.date, utc_day: dt.date, valid_to: dt.date) -> bool:
    """Return True if a license valid from ``valid_from`` to ``valid_to`` counts on ``utc_day`` in any
    US time zone: a day's margin either side (every zone's date is within a day of UTC's), so the
    seed never needs the state's calendar (clinical.calendar, in SQL) to be right about a midnight.
    """
    return valid_from < utc_day < valid_to


def _busy_until() -> dict[int, dt.datetime]:
    """Return when each provider's visits already in the database end (never, while one is held)."""
    ends = (
        Visit.objects.filter(provider__isnull=False)
        .order_by()
        .values("provider_id")
        .annotate(until=Max(Coalesce("ended_at", "cancelled_at", "requested_at")))
        .values_list("provider_id", "until")
    )
    busy = dict(ends)
    holders = Visit.objects.filter(status__in=PROVIDER_HOLDING_STATUSES).values_list("provider_id", flat=True)
    busy.update(dict.fromkeys(holders, FOREVER))
    return busy

"""Demo data: providers and licenses, patients, visits with their timelines, support cases, users.

The seed writes in bulk, so it does not go through the actions. Instead ``_Timeline`` replays each
visit along ``clinical.actions.VISIT_TRANSITIONS`` and sets the same milestone fields the actions
set, and the seed writes the ``VisitEvent`` rows and history records the actions would have
written (actor: the system, labelled ``seed_demo``). Everything runs in one transaction and only
tops up what is missing, so a second run adds nothing. With the same seed on an empty database
the data is the same, except that times are relative to now.
"""

import datetime as dt
import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, models, transaction
from django.db.models import Max
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinical import backfill
from clinical.actions import VISIT_TRANSITIONS
from clinical.models import (
    OPEN_STATUSES,
    PROVIDER_HOLDING_STATUSES,
    Availability,
    LicenseStatus,
    LicenseType,
    Patient,
    Priority,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
    VisitStatus,
)
from clinical.reference import FIXTURES_DIR, SPECIALTY_CHOICES, states
from clinical.validators import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH, format_mrn, make_npi
from ops_console import roles
from ops_console.audit import ActorKind
from support.models import CaseCategory, CaseNote, CasePriority, CaseStatus, SupportCase

S = VisitStatus
DEFAULT_SEED = 2026
BATCH_SIZE = 2000
SEED_ACTOR_LABEL = "seed_demo"
SEED_REASON = "demo seed"
DEMO_USERS = {
    "support": roles.SUPPORT_AGENT,
    "clinops": roles.CLINICAL_OPS,
    "engineer": roles.ENGINEER,
    "lead": roles.OPS_LEAD,
}
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
FOREVER = dt.datetime.max.replace(tzinfo=dt.UTC)

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


@dataclass
class _Seed:
    """What every step needs: the random source, one "now", and the demo users."""

    rng: random.Random
    now: dt.datetime
    users: dict[str, models.Model]

    @property
    def today(self) -> dt.date:
        return timezone.localdate(self.now)


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
    ctx = _Seed(rng=random.Random(seed), now=timezone.now(), users=users)
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


def ensure_demo_users() -> tuple[dict[str, models.Model], int]:
    """Create the one-per-role demo users that are missing; leave existing ones untouched."""
    roles.sync_roles()
    groups = {group.name: group for group in Group.objects.filter(name__in=DEMO_USERS.values())}
    users, created = {}, 0
    for username, role in DEMO_USERS.items():
        user, was_created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@ops.example", "is_staff": True}
        )
        if was_created:
            user.set_password(settings.OPS_DEMO_PASSWORD)
            user.save(update_fields=["password"])
            user.groups.add(groups[role])
            created += 1
        users[username] = user
    return users, created


# --- shared helpers -------------------------------------------------------------------------


@cache
def _people() -> dict:
    return json.loads((FIXTURES_DIR / "demo_people.json").read_text())


@cache
def _state_weights() -> tuple[list[str], list[int]]:
    return [row["code"] for row in states()], [row["population_2020"] for row in states()]


def _weighted(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _random_state(rng: random.Random, among: set[str] | None = None) -> str:
    """Return a state drawn by population, from ``among`` if given."""
    codes, weights = _state_weights()
    if among:
        codes, weights = zip(*((code, w) for code, w in zip(codes, weights, strict=True) if code in among), strict=True)
    return rng.choices(codes, weights=weights)[0]


def _states_for(rng: random.Random, count: int) -> list[str]:
    """Return ``count`` distinct states, drawn by population."""
    picked: list[str] = []
    while len(picked) < count:
        state = _random_state(rng)
        if state not in picked:
            picked.append(state)
    return picked


def _seconds(rng: random.Random, low: float, high: float) -> dt.timedelta:
    return dt.timedelta(seconds=rng.uniform(low, high))


def _days(rng: random.Random, low: int, high: int) -> dt.timedelta:
    return dt.timedelta(days=rng.randint(low, high), seconds=rng.randrange(86400))


def _between(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    return start + (end - start) * rng.random()


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(_people()["first_names"]), rng.choice(_people()["last_names"])


def _place(rng: random.Random, state: str) -> dict:
    return rng.choice(_people()["places"][state])


def _phone(rng: random.Random, place: dict) -> str:
    # The 555 exchange keeps demo numbers obviously fictional.
    return f"+1{place['area_code']}555{rng.randrange(10000):04d}"


def _mailbox(first: str, last: str) -> str:
    return re.sub(r"[^a-z.]", "", f"{first}.{last}".lower())


def _bulk(model: type[models.Model], rows: list) -> list:
    return model.objects.bulk_create(rows, batch_size=BATCH_SIZE)


@cache
def _history_model(model: type[models.Model]) -> type[models.Model]:
    # Looked up once: ``Model.history`` builds a new manager class on every access.
    return model.history.model


@cache
def _tracked_attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in _history_model(model).tracked_fields)


def _history_row(model: type[models.Model], values: dict, *, at: dt.datetime, history_type: str = "+"):
    """Return an unsaved history record of ``model`` holding ``values``, written by the seed."""
    return _history_model(model)(
        history_date=at,
        history_type=history_type,
        history_change_reason=SEED_REASON,
        history_actor=ActorKind.SYSTEM,
        history_actor_label=SEED_ACTOR_LABEL,
        **values,
    )


def _tracked_values(obj: models.Model) -> dict:
    return {attname: getattr(obj, attname) for attname in _tracked_attnames(type(obj))}


def _bulk_with_history(objs: list, *, at: Callable[[models.Model], dt.datetime]) -> None:
    """Insert ``objs`` and one creation history record each, dated by ``at``."""
    if not objs:
        return
    model = type(objs[0])
    _bulk(model, objs)
    _bulk(_history_model(model), [_history_row(model, _tracked_values(obj), at=at(obj)) for obj in objs])


# --- providers and licenses -----------------------------------------------------------------

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


def seed_providers(ctx: _Seed, wanted: int) -> tuple[set[int], int]:
    """Create the missing providers (all offline for now) with their licenses; return new ids, licenses."""
    missing = wanted - Provider.objects.count()
    if missing <= 0:
        return set(), 0
    taken = set(Provider.objects.values_list("npi", flat=True))
    drafts = [_new_provider(ctx, npi) for npi in _fresh_npis(ctx.rng, missing, taken)]
    _bulk_with_history([provider for provider, _ in drafts], at=lambda provider: provider.created_at)
    licenses = [lic for provider, license_states in drafts for lic in _new_licenses(ctx, provider, license_states)]
    _bulk_with_history(licenses, at=lambda lic: _license_recorded_at(ctx, lic))
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


def _new_provider(ctx: _Seed, npi: str) -> tuple[Provider, list[str]]:
    """Return an unsaved provider and the states they are licensed in (home state first)."""
    rng = ctx.rng
    first, last = _person(rng)
    license_states = _states_for(rng, _weighted(rng, STATE_COUNT_MIX))
    provider = Provider(
        first_name=first,
        last_name=last,
        npi=npi,
        email=f"{_mailbox(first, last)}@care.example.com",
        phone=_phone(rng, _place(rng, license_states[0])),
        specialty=_weighted(rng, _specialty_mix()),
        is_active=rng.random() >= 0.03,
        created_at=ctx.now - _days(rng, 90, 1500),
    )
    return provider, license_states


def _new_licenses(ctx: _Seed, provider: Provider, license_states: list[str]) -> list[ProviderLicense]:
    license_type = _weighted(ctx.rng, LICENSE_TYPE_MIX)
    return [_new_license(ctx, provider, state, license_type) for state in license_states]


def _new_license(ctx: _Seed, provider: Provider, state: str, license_type: str) -> ProviderLicense:
    rng = ctx.rng
    kind = _weighted(rng, LICENSE_MIX)
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
        license.verified_at = max(provider.created_at, ctx.now - _days(rng, 1, 365))
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


def _license_recorded_at(ctx: _Seed, license: ProviderLicense) -> dt.datetime:
    issued = dt.datetime.combine(license.issued_on, dt.time(15), tzinfo=dt.UTC)
    return min(ctx.now, max(license.provider.created_at, issued))


# --- patients -------------------------------------------------------------------------------

AGE_BANDS = {(1, 17): 20, (18, 39): 35, (40, 64): 32, (65, 96): 13}
OLDEST_BIRTH, YOUNGEST_BIRTH = dt.date(1930, 1, 1), dt.date(2024, 12, 31)


def seed_patients(ctx: _Seed, wanted: int) -> int:
    """Create the missing patients with MRNs from the database sequence; return how many."""
    missing = wanted - Patient.objects.count()
    if missing <= 0:
        return 0
    patients = [_new_patient(ctx, mrn) for mrn in _allocate_mrns(missing)]
    _bulk_with_history(patients, at=lambda patient: patient.created_at)
    return missing


def _allocate_mrns(count: int) -> list[str]:
    """Return ``count`` new MRNs, taking a block from the sequence in one query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('clinical_patient_mrn_seq') FROM generate_series(1, %s)", [count])
        return [format_mrn(number) for number in sorted(row[0] for row in cursor.fetchall())]


def _new_patient(ctx: _Seed, mrn: str) -> Patient:
    rng = ctx.rng
    first, last = _person(rng)
    state = _random_state(rng)
    place = _place(rng, state)
    street = f"{rng.choice(_people()['street_names'])} {rng.choice(_people()['street_suffixes'])}"
    return Patient(
        mrn=mrn,
        first_name=first,
        last_name=last,
        date_of_birth=_date_of_birth(rng, ctx.today),
        email=f"{_mailbox(first, last)}{rng.randint(1, 99)}@example.{rng.choice(('com', 'net', 'org'))}"
        if rng.random() < 0.9
        else "",
        phone=_phone(rng, place),
        address_line1=f"{rng.randint(1, 9999)} {street}",
        address_line2=f"Apt {rng.randint(1, 40)}{rng.choice('ABCD')}" if rng.random() < 0.15 else "",
        city=place["city"],
        state=state,
        postal_code=place["zip"] if len(place["zip"]) == 5 else f"{place['zip']}{rng.randint(1, 99):02d}",
        created_at=ctx.now - _days(rng, 61, 1500),
    )


def _date_of_birth(rng: random.Random, today: dt.date) -> dt.date:
    youngest, oldest = _weighted(rng, AGE_BANDS)
    start = max(OLDEST_BIRTH, today - dt.timedelta(days=round((oldest + 1) * 365.25)))
    end = max(start, min(YOUNGEST_BIRTH, today - dt.timedelta(days=round(youngest * 365.25))))
    return start + dt.timedelta(days=rng.randint(0, (end - start).days))


# --- visits: who can take a visit where and when ----------------------------------------------


@dataclass
class _ProviderPool:
    """Providers by state with the dates their active licenses are valid, and who is busy until when."""

    names: dict[int, str]
    active: set[int]
    licenses: dict[str, list[tuple[int, dt.date, dt.date]]]
    busy_until: dict[int, dt.datetime]
    free_since: dict[int, dt.datetime] = field(default_factory=dict)

    @classmethod
    def load(cls) -> "_ProviderPool":
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


# --- visits: one visit's life, replayed the way clinical.actions would record it ---------------


class _Timeline:
    """Move one unsaved visit through its statuses, keeping its events and a history snapshot per step."""

    def __init__(self, visit: Visit, names: dict[int, str]):
        self.visit, self.names = visit, names
        self.at = visit.requested_at
        self.events: list[VisitEvent] = []
        self.snapshots: list[tuple[dt.datetime, dict]] = []
        self._record("", S.WAITING, ActorKind.PATIENT, "requested", None)

    def _record(self, from_status: str, to: str, actor_kind: str, detail: str, provider_id: int | None) -> None:
        self.visit.status = to
        event = VisitEvent(
            visit=self.visit,
            from_status=from_status,
            to_status=to,
            at=self.at,
            actor_kind=actor_kind,
            provider_id=provider_id,
            detail=detail,
        )
        self.events.append(event)
        self.snapshots.append((self.at, _tracked_values(self.visit)))

    def _move(self, to: str, actor_kind: str, detail: str, provider_id: int | None = None) -> None:
        if self.visit.status not in VISIT_TRANSITIONS[to]:
            raise AssertionError(f"demo timeline tried {self.visit.status} -> {to}")
        self._record(self.visit.status, to, actor_kind, detail, provider_id or self.visit.provider_id)

    def _provider_name(self) -> str:
        return self.names[self.visit.provider_id]

    def offer(self, provider_id: int) -> None:
        visit = self.visit
        visit.provider_id, visit.offered_at = provider_id, self.at
        visit.offer_count += 1
        self._move(S.OFFERED, ActorKind.ROUTER, f"offered to {self._provider_name()}")

    def decline(self, *, expired: bool) -> int:
        """Put the visit back in line and return the provider who had the offer."""
        provider_id, name = self.visit.provider_id, self._provider_name()
        self.visit.provider_id = None
        if expired:
            self._move(S.WAITING, ActorKind.ROUTER, f"offer to {name} expired", provider_id)
        else:
            self._move(S.WAITING, ActorKind.PROVIDER, f"offer to {name} rejected", provider_id)
        return provider_id

    def accept(self) -> None:
        self.visit.accepted_at = self.at
        self._move(S.ACCEPTED, ActorKind.PROVIDER, f"accepted by {self._provider_name()}")

    def start_connecting(self) -> None:
        self._move(S.CONNECTING, ActorKind.PROVIDER, "connecting video")

    def connected(self) -> None:
        self.visit.started_at = self.at
        self._move(S.IN_PROGRESS, ActorKind.PROVIDER, "connected")

    def complete(self) -> None:
        self.visit.ended_at = self.at
        self._move(S.COMPLETED, ActorKind.PROVIDER, "completed")

    def fail(self, detail: str) -> None:
        self.visit.ended_at = self.at
        self._move(S.FAILED, ActorKind.PROVIDER, detail)

    def cancel(self, detail: str) -> None:
        self.visit.cancelled_at = self.at
        self._move(S.CANCELLED, ActorKind.PATIENT, detail)

    def expire(self) -> None:
        self.visit.ended_at = self.at
        self._move(S.EXPIRED, ActorKind.ROUTER, "waited too long")


# --- visits: what happens to each one -----------------------------------------------------------

REJECTED, OFFER_EXPIRED = "rejected", "offer_expired"
HAPPY_PATH = (S.OFFERED, S.ACCEPTED, S.CONNECTING, S.IN_PROGRESS)
# (status it reached, how it ended) -> weight; the bulk completes.
FINAL_MIX = {
    (S.IN_PROGRESS, S.COMPLETED): 81,
    (S.WAITING, S.CANCELLED): 4,
    (S.OFFERED, S.CANCELLED): 1.5,
    (S.ACCEPTED, S.CANCELLED): 1,
    (S.CONNECTING, S.CANCELLED): 1.5,
    (S.WAITING, S.EXPIRED): 5,
    (S.ACCEPTED, S.FAILED): 1.5,
    (S.CONNECTING, S.FAILED): 2,
    (S.IN_PROGRESS, S.FAILED): 2.5,
}
# Share of the visits that are open right now, per status ("a few dozen waiting" at 10,000).
LIVE_SHARE = {S.WAITING: 0.0035, S.OFFERED: 0.0008, S.ACCEPTED: 0.0005, S.CONNECTING: 0.0003, S.IN_PROGRESS: 0.0025}
# Seconds a live visit has spent in its current status.
LIVE_TAIL = {
    S.WAITING: (0, 1500),
    S.OFFERED: (3, 50),
    S.ACCEPTED: (3, 60),
    S.CONNECTING: (2, 15),
    S.IN_PROGRESS: (60, 1200),
}
GAP_BEFORE = {S.ACCEPTED: (8, 75), S.CONNECTING: (3, 20), S.IN_PROGRESS: (5, 45)}
GAP_TO_END = {
    (S.IN_PROGRESS, S.COMPLETED): (6 * 60, 28 * 60),
    (S.IN_PROGRESS, S.FAILED): (60, 20 * 60),
    (S.CONNECTING, S.FAILED): (20, 90),
    (S.ACCEPTED, S.FAILED): (60, 180),
    (S.WAITING, S.CANCELLED): (60, 25 * 60),
    (S.OFFERED, S.CANCELLED): (5, 40),
    (S.ACCEPTED, S.CANCELLED): (10, 60),
    (S.CONNECTING, S.CANCELLED): (10, 60),
    (S.WAITING, S.EXPIRED): (40 * 60, 80 * 60),
}
PRIORITY_MIX = {Priority.ROUTINE: 85, Priority.ELEVATED: 12, Priority.URGENT: 3}
# Requests per UTC hour: US daytime is busiest.
HOUR_WEIGHTS = (6, 5, 4, 2, 1, 1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 10, 10, 10, 10, 9, 8, 7)
HISTORY_DAYS = 60
# Past visits are requested at least this long ago, so that every one has ended before now.
PAST_MARGIN = dt.timedelta(hours=3)

Step = tuple[str, dt.timedelta]


@dataclass
class _Plan:
    requested_at: dt.datetime
    script: list[Step]
    live: bool


def seed_visits(ctx: _Seed, wanted: int, *, new_provider_ids: set[int]) -> tuple[int, int]:
    """Create the missing visits with their timelines and history; settle provider availability."""
    missing = max(0, wanted - Visit.objects.count())
    if not (missing or new_provider_ids):
        return 0, 0
    pool = _ProviderPool.load()
    patients = list(Patient.objects.order_by("created_at", "pk").values_list("pk", "state", "created_at"))
    if missing and not patients:
        raise ValueError("Visits need patients: seed some patients first.")
    public_ids = _public_ids(ctx.rng, set(Visit.objects.values_list("public_id", flat=True)))
    # A patient has at most one open visit (the database enforces it): live visits stay open.
    busy = set(Visit.objects.filter(status__in=OPEN_STATUSES).values_list("patient_id", flat=True))
    timelines = []
    for plan in _plan_visits(ctx, missing):
        # A visit being offered or seen right now must be where someone can take it.
        open_states = pool.states_open_at(ctx.now) if plan.live and plan.script else None
        visit = _new_visit(ctx, plan, patients, next(public_ids), open_states, busy if plan.live else None)
        timelines.append(_play(ctx, pool, _Timeline(visit, pool.names), plan))
    events = _save_timelines(timelines)
    _settle_availability(ctx, pool, new_provider_ids, timelines)
    return missing, events


def _plan_visits(ctx: _Seed, count: int) -> list[_Plan]:
    """Return a plan per visit, oldest request first: a live slice happening now, the rest in the past."""
    rng, plans = ctx.rng, []
    for status, share in LIVE_SHARE.items():
        for _ in range(round(count * share) or (1 if count >= 100 else 0)):
            script = _script(rng, status)
            span = sum((gap for _, gap in script), dt.timedelta())
            low, high = LIVE_TAIL[status]
            tail = _seconds(rng, low, max(low, high - span.total_seconds()) if status == S.WAITING else high)
            plans.append(_Plan(ctx.now - span - tail, script, live=True))
    for _ in range(count - len(plans)):
        plans.append(_Plan(_past_request_time(ctx), _script(rng, *_weighted(rng, FINAL_MIX)), live=False))
    plans.sort(key=lambda plan: plan.requested_at)
    return plans


def _script(rng: random.Random, reach: str, end: str | None = None) -> list[Step]:
    """Return the steps (with the time since the previous one) that take a new visit to ``reach``, then ``end``."""
    rejections = int(rng.random() < 0.2) if reach == S.WAITING else _weighted(rng, {0: 85, 1: 12, 2: 3})
    steps = []
    for _ in range(rejections):
        steps += [
            (S.OFFERED, _queue_wait(rng)),
            (_weighted(rng, {REJECTED: 7, OFFER_EXPIRED: 3}), _seconds(rng, 15, 90)),
        ]
    for status in _path_to(rng, reach):
        steps.append((status, _queue_wait(rng) if status == S.OFFERED else _seconds(rng, *GAP_BEFORE[status])))
    if end:
        steps.append((end, _seconds(rng, *GAP_TO_END[reach, end])))
    return steps


def _path_to(rng: random.Random, reach: str) -> list[str]:
    if reach == S.WAITING:
        return []
    path = list(HAPPY_PATH[: HAPPY_PATH.index(reach) + 1])
    if reach == S.IN_PROGRESS and rng.random() < 0.15:
        path.remove(S.CONNECTING)  # some apps report "connected" straight after accepting
    return path


def _queue_wait(rng: random.Random) -> dt.timedelta:
    return _seconds(rng, 20, 420) if rng.random() < 0.9 else _seconds(rng, 420, 1500)


def _past_request_time(ctx: _Seed) -> dt.datetime:
    rng = ctx.rng
    day = ctx.now - dt.timedelta(days=rng.randrange(HISTORY_DAYS))
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    at = day.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60), microsecond=rng.randrange(10**6))
    while at > ctx.now - PAST_MARGIN:
        at -= dt.timedelta(days=1)
    return at


def _public_ids(rng: random.Random, taken: set[str]) -> Iterable[str]:
    """Yield unused visit ids in the format of ``validators.new_public_id``, drawn from ``rng``."""
    while True:
        chars = "".join(rng.choices(PUBLIC_ID_ALPHABET, k=PUBLIC_ID_LENGTH))
        public_id = f"{chars[:4]}-{chars[4:]}"
        if public_id not in taken:
            taken.add(public_id)
            yield public_id


def _new_visit(
    ctx: _Seed, plan: _Plan, patients: list[tuple], public_id: str, states: set[str] | None, busy: set[int] | None
) -> Visit:
    """Return an unsaved visit for the plan; with ``busy``, for a patient not in it (then added to it)."""
    rng = ctx.rng
    if busy is None:
        patient_id, home_state = _pick_patient(rng, patients, plan.requested_at)
    else:
        patient_id, home_state = _pick_free_patient(rng, patients, busy)
        busy.add(patient_id)
    # Most patients call from home; some are travelling.
    located_state = home_state if home_state and rng.random() < 0.85 else _random_state(rng)
    if states and located_state not in states:
        located_state = _random_state(rng, among=states)
    return Visit(
        public_id=public_id,
        patient_id=patient_id,
        located_state=located_state,
        reason=rng.choice(_people()["visit_reasons"]),
        priority=_weighted(rng, PRIORITY_MIX),
        requested_at=plan.requested_at,
    )


def _pick_patient(rng: random.Random, patients: list[tuple], at: dt.datetime) -> tuple[int, str]:
    """Return (id, home state) of a patient registered before ``at`` (the oldest if few are)."""
    for _ in range(5):
        patient_id, state, created_at = rng.choice(patients)
        if created_at <= at:
            return patient_id, state
    return patients[0][0], patients[0][1]


def _pick_free_patient(rng: random.Random, patients: list[tuple], busy: set[int]) -> tuple[int, str]:
    """Return (id, home state) of a patient with no open visit, at random while most are free."""
    for _ in range(20):
        patient_id, state, _created_at = rng.choice(patients)
        if patient_id not in busy:
            return patient_id, state
    for patient_id, state, _created_at in patients:
        if patient_id not in busy:
            return patient_id, state
    raise ValueError("Every patient already has an open visit: seed more patients for this many live visits.")


def _play(ctx: _Seed, pool: _ProviderPool, timeline: _Timeline, plan: _Plan) -> _Timeline:
    """Run the plan's script on the timeline; a past visit nobody could take ends expired or cancelled."""
    rng, visit = ctx.rng, timeline.visit
    for step, gap in plan.script:
        timeline.at += gap
        if step == S.OFFERED:
            provider_id = pool.take(rng, visit.located_state, timeline.at, live=plan.live)
            if provider_id is None:
                if not plan.live:
                    _give_up(rng, timeline)
                break
            timeline.offer(provider_id)
        elif step in (REJECTED, OFFER_EXPIRED):
            pool.release(timeline.decline(expired=step == OFFER_EXPIRED), timeline.at)
        else:
            _end_or_advance(rng, timeline, step)
    if not plan.live and visit.provider_id:
        pool.release(visit.provider_id, timeline.at)
    return timeline


def _give_up(rng: random.Random, timeline: _Timeline) -> None:
    if rng.random() < 0.6:
        timeline.at += _seconds(rng, *GAP_TO_END[S.WAITING, S.EXPIRED])
        timeline.expire()
    else:
        timeline.at += _seconds(rng, 300, 1800)
        timeline.cancel("cancelled by patient: wait was too long")


def _end_or_advance(rng: random.Random, timeline: _Timeline, step: str) -> None:
    if step == S.FAILED:
        timeline.fail(rng.choice(_people()["failure_details"]))
    elif step == S.CANCELLED:
        timeline.cancel(rng.choice(_people()["cancel_details"]))
    else:
        {
            S.ACCEPTED: timeline.accept,
            S.CONNECTING: timeline.start_connecting,
            S.IN_PROGRESS: timeline.connected,
            S.COMPLETED: timeline.complete,
            S.EXPIRED: timeline.expire,
        }[step]()


def _save_timelines(timelines: list[_Timeline]) -> int:
    """Insert the visits, then their events and one history record per transition; return the events."""
    _bulk(Visit, [timeline.visit for timeline in timelines])
    events = [event for timeline in timelines for event in timeline.events]
    _bulk(VisitEvent, events)
    with connection.cursor() as cursor:
        backfill.derive_offers(cursor, offer_timeout=settings.ROUTING_OFFER_TIMEOUT)
    history = [
        _history_row(Visit, {**values, "id": timeline.visit.pk}, at=at, history_type="~" if index else "+")
        for timeline in timelines
        for index, (at, values) in enumerate(timeline.snapshots)
    ]
    _bulk(_history_model(Visit), history)
    return len(events)


# --- provider availability after the visits -------------------------------------------------------

AVAILABLE_SHARE = 0.35


def _settle_availability(ctx: _Seed, pool: _ProviderPool, new_ids: set[int], timelines: list[_Timeline]) -> None:
    """Put each provider holding a live visit in reserved or busy, and some new providers online."""
    holding = {
        timeline.visit.provider_id: timeline.visit
        for timeline in timelines
        if timeline.visit.status in PROVIDER_HOLDING_STATUSES
    }
    changed, history = [], []
    for provider in Provider.objects.filter(pk__in=new_ids | holding.keys()).order_by("pk"):
        if provider.pk in holding:
            history += _hold(ctx, pool, provider, holding[provider.pk])
        elif provider.is_active and ctx.rng.random() < AVAILABLE_SHARE:
            since = max(pool.busy_until.get(provider.pk, EARLIEST), ctx.now - _seconds(ctx.rng, 120, 3300))
            history += _go_available(provider, since)
        else:
            continue
        changed.append(provider)
    Provider.objects.bulk_update(changed, ["availability", "available_since"], batch_size=BATCH_SIZE)
    _bulk(_history_model(Provider), history)


def _go_available(provider: Provider, since: dt.datetime) -> list:
    provider.availability, provider.available_since = Availability.AVAILABLE, since
    return [_history_row(Provider, _tracked_values(provider), at=since, history_type="~")]


def _hold(ctx: _Seed, pool: _ProviderPool, provider: Provider, visit: Visit) -> list:
    """Make ``provider`` reserved (offer out) or busy, as offer_visit and accept_visit would have."""
    history = []
    since = provider.available_since
    if provider.availability != Availability.AVAILABLE or since is None or since > visit.offered_at:
        since = max(pool.free_since.get(provider.pk, EARLIEST), visit.offered_at - _seconds(ctx.rng, 60, 1800))
        history += _go_available(provider, since)
    provider.availability = Availability.RESERVED
    history.append(_history_row(Provider, _tracked_values(provider), at=visit.offered_at, history_type="~"))
    if visit.status != S.OFFERED:
        provider.availability = Availability.BUSY
        history.append(_history_row(Provider, _tracked_values(provider), at=visit.accepted_at, history_type="~"))
    return history


# --- support cases --------------------------------------------------------------------------

OTHER_CATEGORY_MIX = {
    CaseCategory.VISIT_PROBLEM: 30,
    CaseCategory.BILLING: 30,
    CaseCategory.CLINICAL: 15,
    CaseCategory.PRIVACY: 12,
    CaseCategory.OTHER: 13,
}
ABOUT_A_VISIT = (CaseCategory.VISIT_PROBLEM, CaseCategory.BILLING, CaseCategory.CLINICAL)
CASE_PRIORITY_MIX = {
    CaseCategory.ROUTING: {CasePriority.NORMAL: 70, CasePriority.HIGH: 30},
    CaseCategory.TECHNICAL: {CasePriority.NORMAL: 80, CasePriority.HIGH: 20},
    CaseCategory.CLINICAL: {CasePriority.HIGH: 60, CasePriority.URGENT: 40},
}
RECENT_CASE_STATUS_MIX = {CaseStatus.OPEN: 60, CaseStatus.PENDING: 25, CaseStatus.RESOLVED: 15}
OLDER_CASE_STATUS_MIX = {CaseStatus.OPEN: 12, CaseStatus.PENDING: 13, CaseStatus.RESOLVED: 40, CaseStatus.CLOSED: 35}


@dataclass
class _CaseDraft:
    case: SupportCase
    system_note: str = ""
    notes: list[CaseNote] = field(default_factory=list)


def seed_support_cases(ctx: _Seed, wanted: int) -> tuple[int, int]:
    """Create the missing support cases: expired and failed visits, other topics; return cases, notes."""
    missing = wanted - SupportCase.objects.count()
    if missing <= 0:
        return 0, 0
    drafts = _case_drafts(ctx, missing)
    for draft in drafts:
        draft.notes = _case_notes(ctx, draft)
    _bulk_with_history([draft.case for draft in drafts], at=lambda case: case.created_at)
    notes = [note for draft in drafts for note in draft.notes]
    _bulk(CaseNote, notes)
    return len(drafts), len(notes)


def _visits_without_case(status: str) -> list[tuple]:
    return list(
        Visit.objects.filter(status=status, support_cases__isnull=True)
        .order_by("pk")
        .values_list("pk", "public_id", "patient_id", "located_state", "requested_at", "ended_at")
    )


def _case_drafts(ctx: _Seed, count: int) -> list[_CaseDraft]:
    """Return about a third about expired visits, a quarter about failed ones, the rest on other topics."""
    rng = ctx.rng
    expired, failed = _visits_without_case(S.EXPIRED), _visits_without_case(S.FAILED)
    routing = rng.sample(expired, min(len(expired), round(count * 0.35)))
    technical = rng.sample(failed, min(len(failed), round(count * 0.25)))
    failures = dict(
        VisitEvent.objects.filter(visit_id__in=[row[0] for row in technical], to_status=S.FAILED).values_list(
            "visit_id", "detail"
        )
    )
    drafts = [_visit_case(ctx, row, CaseCategory.ROUTING) for row in routing]
    drafts += [_visit_case(ctx, row, CaseCategory.TECHNICAL, failures.get(row[0], "")) for row in technical]
    completed = _visits_without_case(S.COMPLETED)
    patients = list(Patient.objects.order_by("pk").values_list("pk", "state"))
    drafts += [_other_case(ctx, completed, patients) for _ in range(count - len(drafts))]
    return drafts


def _visit_case(ctx: _Seed, row: tuple, category: str, failure: str = "") -> _CaseDraft:
    """Return a case about an expired (routing) or failed (technical) visit, often opened by the system."""
    rng = ctx.rng
    visit_id, public_id, patient_id, state, requested_at, ended_at = row
    by_system = rng.random() < 0.6
    latest = ended_at + (dt.timedelta(minutes=5) if by_system else dt.timedelta(days=2))
    opened_at = _between(rng, ended_at, min(ctx.now, latest))
    draft = _CaseDraft(_new_case(ctx, category, opened_at, patient_id, visit_id, state, by_system=by_system))
    if by_system:
        minutes = round((ended_at - requested_at).total_seconds() / 60)
        template = _people()["system_case_notes"][category]
        draft.system_note = template.format(visit=public_id, minutes=minutes, state=state, detail=failure)
    return draft


def _other_case(ctx: _Seed, completed: list[tuple], patients: list[tuple]) -> _CaseDraft:
    rng = ctx.rng
    category = _weighted(rng, OTHER_CATEGORY_MIX)
    if category in ABOUT_A_VISIT and completed:
        visit_id, _, patient_id, state, _, ended_at = rng.choice(completed)
        opened_at = _between(rng, ended_at, min(ctx.now, ended_at + dt.timedelta(days=3)))
    else:
        (patient_id, state), visit_id = rng.choice(patients), None
        opened_at = ctx.now - _days(rng, 0, HISTORY_DAYS)
    return _CaseDraft(_new_case(ctx, category, opened_at, patient_id, visit_id, state or "your state"))


def _new_case(ctx: _Seed, category, opened_at, patient_id, visit_id, state, *, by_system=False) -> SupportCase:
    rng, users = ctx.rng, ctx.users
    age = ctx.now - opened_at
    status = _weighted(rng, RECENT_CASE_STATUS_MIX if age < dt.timedelta(days=1) else OLDER_CASE_STATUS_MIX)
    resolved_at = None
    if status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
        resolved_at = _between(rng, opened_at, opened_at + min(age, dt.timedelta(days=5)))
    if status == CaseStatus.OPEN:
        assignee = users["support"] if rng.random() < 0.5 else None
    else:
        assignee = _weighted(rng, {users["support"]: 80, users["lead"]: 10, None: 10})
    return SupportCase(
        subject=rng.choice(_people()["support_case_subjects"][category]).format(state=state),
        category=category,
        status=status,
        priority=_weighted(rng, CASE_PRIORITY_MIX.get(category, {CasePriority.LOW: 30, CasePriority.NORMAL: 70})),
        patient_id=patient_id,
        visit_id=visit_id,
        assignee=assignee,
        created_by=None if by_system else users["support"],
        created_at=opened_at,
        resolved_at=resolved_at,
    )


def _case_notes(ctx: _Seed, draft: _CaseDraft) -> list[CaseNote]:
    """Return 1-3 notes, in order, between the case's opening and its resolution (or now)."""
    rng, case = ctx.rng, draft.case
    usual = _people()["case_notes"][case.category]
    bodies = [usual[i] for i in sorted(rng.sample(range(len(usual)), rng.randint(1, 3)))]
    if draft.system_note:
        bodies = [draft.system_note, *bodies[:2]]
    last = case.resolved_at or ctx.now
    times = sorted(case.created_at + (last - case.created_at) * rng.random() for _ in bodies[1:])
    author = case.assignee or ctx.users["support"]
    notes = [
        CaseNote(case=case, author=None if draft.system_note else author, body=bodies[0], created_at=case.created_at)
    ]
    notes += [
        CaseNote(case=case, author=author, body=body, created_at=at) for body, at in zip(bodies[1:], times, strict=True)
    ]
    return notes

"""Demo patients."""

import datetime as dt
import random

from django.db import connection

from clinical.models import (
    Patient,
)
from clinical.validators import format_mrn
from devtools import sampling
from devtools.seed.records import SeedContext, bulk_with_history

AGE_BANDS = {(1, 17): 20, (18, 39): 35, (40, 64): 32, (65, 96): 13}
OLDEST_BIRTH, YOUNGEST_BIRTH = dt.date(1930, 1, 1), dt.date(2024, 12, 31)


def seed_patients(ctx: SeedContext, wanted: int) -> int:
    """Create the missing patients with MRNs from the database sequence; return how many."""
    missing = wanted - Patient.objects.count()
    if missing <= 0:
        return 0
    patients = [_new_patient(ctx, mrn) for mrn in _allocate_mrns(missing)]
    bulk_with_history(patients, at=lambda patient: patient.created_at)
    return missing


def _allocate_mrns(count: int) -> list[str]:
    """Return ``count`` new MRNs, taking a block from the sequence in one query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('clinical_patient_mrn_seq') FROM generate_series(1, %s)", [count])
        return [format_mrn(number) for number in sorted(row[0] for row in cursor.fetchall())]


def _new_patient(ctx: SeedContext, mrn: str) -> Patient:
    rng = ctx.rng
    first, last = sampling.person(rng)
    state = sampling.random_state(rng)
    place = sampling.place(rng, state)
    street = f"{rng.choice(sampling.people()['street_names'])} {rng.choice(sampling.people()['street_suffixes'])}"
    return Patient(
        mrn=mrn,
        first_name=first,
        last_name=last,
        date_of_birth=_date_of_birth(rng, ctx.today),
        email=f"{sampling.mailbox(first, last)}{rng.randint(1, 99)}@example.{rng.choice(('com', 'net', 'org'))}"
        if rng.random() < 0.9
        else "",
        phone=sampling.phone(rng, place),
        address_line1=f"{rng.randint(1, 9999)} {street}",
        address_line2=f"Apt {rng.randint(1, 40)}{rng.choice('ABCD')}" if rng.random() < 0.15 else "",
        city=place["city"],
        state=state,
        postal_code=place["zip"] if len(place["zip"]) == 5 else f"{place['zip']}{rng.randint(1, 99):02d}",
        created_at=ctx.now - sampling.days(rng, 61, 1500),
    )


def _date_of_birth(rng: random.Random, today: dt.date) -> dt.date:
    youngest, oldest = sampling.weighted(rng, AGE_BANDS)
    start = max(OLDEST_BIRTH, today - dt.timedelta(days=round((oldest + 1) * 365.25)))
    end = max(start, min(YOUNGEST_BIRTH, today - dt.timedelta(days=round(youngest * 365.25))))
    return start + dt.timedelta(days=rng.randint(0, (end - start).days))

"""The one population-weighted sampler and the one loader of the demo people, for every dev tool."""

import datetime as dt
import json
import random
import re
from functools import cache

from clinical.reference import FIXTURES_DIR, states


@cache
def people() -> dict:
    """Return the demo people fixture: names, streets, places by state, visit reasons."""
    return json.loads((FIXTURES_DIR / "demo_people.json").read_text())


@cache
def state_weights() -> tuple[list[str], list[int]]:
    """Return the state codes and their 2020 populations, in the same order (shared: do not change them)."""
    return [row["code"] for row in states()], [row["population_2020"] for row in states()]


def weighted(rng: random.Random, weights: dict):
    """Return one key of ``weights`` drawn in proportion to its value."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def random_state(rng: random.Random, among: set[str] | None = None) -> str:
    """Return a state drawn by population, from ``among`` if given."""
    codes, weights = state_weights()
    if among:
        codes, weights = zip(*((code, w) for code, w in zip(codes, weights, strict=True) if code in among), strict=True)
    return rng.choices(codes, weights=weights)[0]


def states_for(rng: random.Random, count: int) -> list[str]:
    """Return ``count`` distinct states, drawn by population."""
    picked: list[str] = []
    while len(picked) < count:
        state = random_state(rng)
        if state not in picked:
            picked.append(state)
    return picked


def seconds(rng: random.Random, low: float, high: float) -> dt.timedelta:
    """Return a duration drawn uniformly between ``low`` and ``high`` seconds."""
    return dt.timedelta(seconds=rng.uniform(low, high))


def days(rng: random.Random, low: int, high: int) -> dt.timedelta:
    """Return between ``low`` and ``high`` whole days, plus a random time of day."""
    return dt.timedelta(days=rng.randint(low, high), seconds=rng.randrange(86400))


def between(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    """Return an instant drawn uniformly between ``start`` and ``end``."""
    return start + (end - start) * rng.random()


def person(rng: random.Random) -> tuple[str, str]:
    """Return a (first, last) name from the demo people."""
    return rng.choice(people()["first_names"]), rng.choice(people()["last_names"])


def place(rng: random.Random, state: str) -> dict:
    """Return a city of ``state`` with its ZIP and area code."""
    return rng.choice(people()["places"][state])


def phone(rng: random.Random, place: dict) -> str:
    """Return a phone number in the place's area code (the 555 exchange keeps it obviously fictional)."""
    return f"+1{place['area_code']}555{rng.randrange(10000):04d}"


def mailbox(first: str, last: str) -> str:
    """Return the local part of an e-mail address for a name."""
    return re.sub(r"[^a-z.]", "", f"{first}.{last}".lower())

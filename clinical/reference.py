"""Static reference data (states, specialties) loaded once from ``fixtures/``."""

import json
from functools import cache
from pathlib import Path

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"


@cache
def _load(name: str) -> dict:
    return json.loads((FIXTURES_DIR / name).read_text())


def states() -> list[dict]:
    """Return every USPS state, district and territory with its 2020 population."""
    return _load("us_states.json")["states"]


def specialties() -> list[dict]:
    """Return the provider specialties the console knows."""
    return _load("specialties.json")["specialties"]


STATE_CHOICES = [(row["code"], f"{row['code']} – {row['name']}") for row in states()]
SPECIALTY_CHOICES = [(row["code"], row["name"]) for row in specialties()]

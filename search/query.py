"""What a person typed into a search box, normalised into the identifiers and words it may be.

Support agents type names (in any order, partly, misspelled), phone numbers in any format,
e-mails in any case, dates of birth as ``1985-03-02``, ``03/02/1985`` or ``3/2/85``, MRNs,
NPIs, license numbers, visit ids read from an e-mail and case numbers. ``parse`` returns every
reading of the input; both backends search all of them at once and rank exact identifiers first.
"""

import contextlib
import datetime as dt
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils import timezone

from clinical.validators import PUBLIC_ID_ALPHABET, normalize_phone, npi_is_valid

MAX_LENGTH = 200

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ISO_DATE = re.compile(r"(?<![\d/-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d/-])")
_US_DATE = re.compile(r"(?<![\d/-])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\d/-])")
_PHONE_CHARS = re.compile(r"^[\d\s().+-]+$")
_MRN = re.compile(r"^M\d{8}$")
_PUBLIC_ID = re.compile(rf"^[{PUBLIC_ID_ALPHABET}]{{4}}-?[{PUBLIC_ID_ALPHABET}]{{4}}$")
_CASE_ID = re.compile(r"^#(\d{1,12})$")
_LICENSE = re.compile(r"^(?=.*\d)[A-Z0-9][A-Z0-9-]{2,30}$")
_WORD = re.compile(r"[^\W\d_]+")  # letters only: O'Brien-Smith is o, brien, smith, as PostgreSQL splits it


@dataclass(frozen=True)
class SearchQuery:
    """The readings of one search input; empty fields are readings it cannot be."""

    raw: str = ""
    words: tuple[str, ...] = ()  # name or subject words, lower-case, in the order typed
    phone: str | None = None  # E.164, e.g. +14155551234
    email: str | None = None  # lower-case
    dob: dt.date | None = None
    mrn: str | None = None
    npi: str | None = None
    license: str | None = None  # upper-case letters and digits only, e.g. CA123456
    public_id: str | None = None  # e.g. 7KQ3-M9XD
    case_id: int | None = None
    kinds: tuple[str, ...] = field(default=(), compare=False)

    @property
    def text(self) -> str:
        """Return the name words as one lower-case string, e.g. ``maria garcia``."""
        return " ".join(self.words)

    @property
    def is_empty(self) -> bool:
        """Return True when nothing in the input can match a record."""
        return not self.kinds


def license_key(value: str) -> str:
    """Return a license number as compared: upper-case letters and digits only (``ca-1234`` → ``CA1234``)."""
    return re.sub(r"[^A-Z0-9]", "", (value or "").upper())


def sorted_letters(text: str) -> str:
    """Return the letters of ``text``, lower-cased, in order: the same for a name with two letters swapped."""
    # As search_sorted_letters() in SQL (migration search.0006), whose "C" collation sorts by code point.
    return "".join(sorted(char for char in text.lower() if char.isalpha()))


def parse(raw: str, *, today: dt.date | None = None) -> SearchQuery:
    """Return every reading of ``raw`` (a name, phone, e-mail, date of birth, identifier)."""
    # A NUL (which PostgreSQL refuses in any text parameter) separates words like a space.
    raw = " ".join((raw or "").replace("\x00", " ").split())[:MAX_LENGTH]
    if not raw:
        return SearchQuery()
    if _EMAIL.match(raw):
        return _query(raw, email=raw.lower())
    found: dict = {}
    rest = _take_date(raw, found, today or timezone.localdate())
    if _PHONE_CHARS.match(rest) and rest.strip():
        return _query(raw, **found, **_digits_readings(rest))
    words = []
    for token in re.split(r"[\s,;]+", rest):
        words += _read_token(token, found)
    return _query(raw, words=tuple(words), **found)


def _query(raw: str, **readings) -> SearchQuery:
    kinds = tuple(name for name, value in readings.items() if value)
    if "words" in kinds:
        kinds = ("name", *(kind for kind in kinds if kind != "words"))
    return SearchQuery(raw=raw, kinds=kinds, **readings)


def _take_date(raw: str, found: dict, today: dt.date) -> str:
    """Move the first date in ``raw`` into ``found["dob"]``; return the rest of the input."""
    for pattern, order in ((_ISO_DATE, "ymd"), (_US_DATE, "mdy")):
        match = pattern.search(raw)
        if match is None:
            continue
        parts = dict(zip(order, (int(group) for group in match.groups()), strict=True))
        day = _date(parts["y"], parts["m"], parts["d"], today)
        if day is not None:
            found["dob"] = day
            return (raw[: match.start()] + " " + raw[match.end() :]).strip()
    return raw


def _date(year: int, month: int, day: int, today: dt.date) -> dt.date | None:
    if year < 100:
        # A two-digit year of birth is in the past: 85 is 1985, 07 is 2007 (in 2026).
        year += 2000 if 2000 + year <= today.year else 1900
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _digits_readings(text: str) -> dict:
    """Return what a run of digits and phone punctuation may be: phone, NPI, case or license number."""
    digits = re.sub(r"\D", "", text)
    readings = {}
    with contextlib.suppress(ValidationError):
        readings["phone"] = normalize_phone(text)
    if npi_is_valid(digits):
        readings["npi"] = digits
    if digits == text.strip() and len(digits) <= 12:
        readings["case_id"] = int(digits)
    if 4 <= len(digits) <= 30 and "phone" not in readings:
        readings["license"] = digits
    return readings


def _read_token(token: str, found: dict) -> list[str]:
    """Record the identifiers ``token`` may be in ``found``; return the name words it holds."""
    upper = token.upper()
    if match := _CASE_ID.match(token):
        found.setdefault("case_id", int(match.group(1)))
        return []
    if _MRN.match(compact := re.sub(r"[\s-]", "", upper)):
        found.setdefault("mrn", compact)
    if _PUBLIC_ID.match(upper):
        found.setdefault("public_id", f"{compact[:4]}-{compact[4:]}")
    if _PHONE_CHARS.match(token):
        found.update({key: value for key, value in _digits_readings(token).items() if key not in found})
    elif _LICENSE.match(upper):
        found.setdefault("license", license_key(upper))
    if any(char.isdigit() for char in token):
        return []
    return [word.lower() for word in _WORD.findall(token)]

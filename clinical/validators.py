"""Validation and normalisation of identifiers people type: NPI, phone numbers, MRNs."""

import re
import secrets

from django.core.exceptions import ValidationError

# Public ids are read over the phone: no 0/O, 1/I/L or U/V look-alikes.
PUBLIC_ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTWXYZ"
PUBLIC_ID_LENGTH = 8


def luhn_checksum_ok(digits: str) -> bool:
    """Return True if the digit string passes the Luhn (mod 10) check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def luhn_check_digit(digits: str) -> str:
    """Return the Luhn check digit to append to ``digits``."""
    for candidate in "0123456789":
        if luhn_checksum_ok(digits + candidate):
            return candidate
    raise AssertionError("unreachable")


def npi_is_valid(npi: str) -> bool:
    """Return True for a 10-digit NPI whose check digit is right (Luhn over the 80840 prefix)."""
    return bool(re.fullmatch(r"\d{10}", npi or "")) and luhn_checksum_ok("80840" + npi)


def validate_npi(value: str) -> None:
    """Raise ValidationError unless ``value`` is a valid NPI."""
    if not re.fullmatch(r"\d{10}", value or ""):
        raise ValidationError("NPI must be exactly 10 digits.", code="npi_format")
    if not npi_is_valid(value):
        raise ValidationError("NPI check digit is wrong; re-check the number.", code="npi_check_digit")


def make_npi(base9: str) -> str:
    """Return the NPI built from a 9-digit identifier plus its check digit."""
    return base9 + luhn_check_digit("80840" + base9)[-1]


def normalize_phone(value: str) -> str:
    """Return ``value`` as E.164 (``+15551234567``); US numbers may omit the country code.

    Raise ValidationError when it cannot be a phone number.
    """
    raw = (value or "").strip()
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        if not 8 <= len(digits) <= 15:
            raise ValidationError("Phone number must have 8 to 15 digits after '+'.", code="phone")
        return "+" + digits
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) != 10 or digits[0] in "01":
        raise ValidationError(
            "Enter a 10-digit US phone number or an international number starting with '+'.",
            code="phone",
        )
    return "+1" + digits


def validate_e164(value: str) -> None:
    """Raise ValidationError unless ``value`` is already normalised E.164."""
    if not re.fullmatch(r"\+[1-9]\d{7,14}", value or ""):
        raise ValidationError("Phone number must be stored as E.164, e.g. +15551234567.", code="e164")


def new_public_id() -> str:
    """Return a random visit id such as ``7KQ3-M9XD``, easy to read aloud."""
    chars = "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))
    return f"{chars[:4]}-{chars[4:]}"


def format_mrn(number: int) -> str:
    """Return the MRN for a sequence number: ``M`` + 7 digits + a Luhn check digit."""
    body = f"{number:07d}"
    return f"M{body}{luhn_check_digit(body)}"

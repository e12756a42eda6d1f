"""Secrets kept encrypted at rest (two-factor secrets), with a key from the environment.

Fernet (AES-128-CBC with HMAC-SHA256, from PyCA's cryptography). ``OPS_FIELD_KEY`` encrypts;
``OPS_FIELD_OLD_KEYS`` (comma-separated) still decrypt, so a key can be rotated: put the new key in
``OPS_FIELD_KEY``, the old one in ``OPS_FIELD_OLD_KEYS``, run ``manage.py rotate_field_key``, then
drop the old key.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PREFIX = "gAAAA"  # how every Fernet token begins (version byte 0x80, base64)


@cache
def _fernet() -> MultiFernet:
    keys = [settings.OPS_FIELD_KEY, *settings.OPS_FIELD_OLD_KEYS]
    try:
        return MultiFernet([Fernet(key) for key in keys if key])
    except (ValueError, TypeError) as error:
        raise ImproperlyConfigured(f"OPS_FIELD_KEY and OPS_FIELD_OLD_KEYS must be Fernet keys ({error}).") from None


def encrypt(text: str) -> str:
    """Return ``text`` encrypted with the current key."""
    return _fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    """Return the text ``token`` holds, whichever known key encrypted it."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted: is OPS_FIELD_KEY (or OPS_FIELD_OLD_KEYS) the key it was saved with?"
        ) from None


def rotate(token: str) -> str:
    """Return ``token`` encrypted again with the current key."""
    return _fernet().rotate(token.encode()).decode()

"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): SHA-1, 30-second steps.

The standard library is enough for the ~20 lines this takes, so no dependency is carried
for it; the RFC's own test vectors check it (tests/ops_console/test_twofactor.py).
"""

import base64
import hashlib
import hmac
import secrets

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1  # a phone clock a step fast or slow still signs in


def new_secret() -> str:
    """Return a new random 160-bit secret in base32, as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def step_at(at: float) -> int:
    """Return the time step (RFC 6238's T) that the Unix time ``at`` falls in."""
    return int(at) // STEP_SECONDS


def hotp(key: bytes, counter: int, *, digits: int = DIGITS) -> str:
    """Return the HOTP value of ``counter`` under ``key`` (RFC 4226, dynamic truncation)."""
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(value % 10**digits).zfill(digits)


def code_at(secret: str, at: float, *, digits: int = DIGITS) -> str:
    """Return the code an authenticator app shows for the base32 ``secret`` at Unix time ``at``."""
    return hotp(base64.b32decode(secret), step_at(at), digits=digits)


def matching_step(secret: str, code: str, *, at: float) -> int | None:
    """Return the step within ±``DRIFT_STEPS`` of ``at`` whose code is ``code``, or None."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    key, now = base64.b32decode(secret), step_at(at)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(key, step), code):
            return step
    return None

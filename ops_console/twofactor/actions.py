"""Every write about two-factor devices: confirm, verify a code, reset. Each is a security event."""

import hashlib
import re
import secrets
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from core.actions import record_security_event
from core.client_ip import client_ip
from core.errors import ActionError
from core.models import SecurityEvent
from ops_console import fieldcrypt
from ops_console.models import BackupCode, PendingTotpSecret, TotpDevice
from ops_console.signin import LOCKED_MESSAGE, clear_failures, locked_out, record_failure
from ops_console.twofactor import totp

WRONG_CODE = "That code is not right. Check the time on your phone and enter the code it shows now."


class CodeRefused(ActionError):
    """A code was not accepted; ``locked`` says the user is now locked out, as after wrong passwords."""

    def __init__(self, message: str, *, locked: bool = False):
        super().__init__(message, field="code")
        self.locked = locked


BACKUP_CODES = 10
BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
BACKUP_CODE = re.compile(r"[a-z0-9]{10}")


def pending_secret(user) -> str:
    """Return the secret being set up for ``user``: kept (encrypted) until a code proves it, never in the session."""
    pending = PendingTotpSecret.objects.filter(user=user).first()
    if pending is None:
        pending, _ = PendingTotpSecret.objects.get_or_create(
            user=user, defaults={"secret": fieldcrypt.encrypt(totp.new_secret())}
        )
    return fieldcrypt.decrypt(pending.secret)


@transaction.atomic
def do_confirm_totp_device(request: HttpRequest, *, user, secret: str, code: str) -> tuple[TotpDevice, list[str]]:
    """Make ``secret`` the user's authenticator once ``code`` proves the app holds it; audit it.

    A device the user had before is replaced only now, so an abandoned setup loses nothing. Return
    the device and ten new single-use backup codes (stored hashed: shown once, by the caller).
    """
    step = totp.matching_step(secret, code, at=time.time())
    if step is None:
        raise CodeRefused(WRONG_CODE)
    device, _ = TotpDevice.objects.update_or_create(
        user=user,
        defaults={"secret": fieldcrypt.encrypt(secret), "confirmed_at": timezone.now(), "last_used_step": step},
    )
    PendingTotpSecret.objects.filter(user=user).delete()
    codes = _new_backup_codes(user)
    record_security_event(request, kind=SecurityEvent.Kind.TWO_FACTOR_ENABLED, detail=user.get_username())
    clear_failures(username=user.get_username())
    return device, codes


def _new_backup_codes(user) -> list[str]:
    BackupCode.objects.filter(user=user).delete()
    codes = ["".join(secrets.choice(BACKUP_ALPHABET) for _ in range(10)) for _ in range(BACKUP_CODES)]
    BackupCode.objects.bulk_create(BackupCode(user=user, code_hash=_hash(code)) for code in codes)
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def _hash(code: str) -> str:
    # Random codes of 50 bits: a plain SHA-256 is enough (as for API tokens).
    return hashlib.sha256(code.encode()).hexdigest()


def _as_backup_code(text: str) -> str | None:
    compact = re.sub(r"[\s-]", "", text.lower())
    return compact if BACKUP_CODE.fullmatch(compact) and not compact.isdigit() else None


def do_verify_totp_code(request: HttpRequest, *, device: TotpDevice, code: str) -> None:
    """Accept ``code`` from ``device`` once, or raise ``CodeRefused``.

    Wrong and replayed codes count toward the sign-in lockout (per username and per address) and
    are security events; a locked user is refused even the right code. Not atomic: a refusal's
    event and count must stay when the error is raised.
    """
    username, ip = device.user.get_username(), client_ip(request)
    if locked_out(username=username, ip=ip):
        record_security_event(request, kind=SecurityEvent.Kind.SIGN_IN_LOCKED, detail=username)
        raise CodeRefused(LOCKED_MESSAGE % {"minutes": settings.OPS_LOGIN_LOCK_MINUTES}, locked=True)
    backup = _as_backup_code(code)
    if backup is not None:
        if _use_backup_code(device.user, backup):
            record_security_event(request, kind=SecurityEvent.Kind.TWO_FACTOR_BACKUP_USED, detail=username)
            clear_failures(username=username)
            return
        step = None
    else:
        step = totp.matching_step(device.plain_secret, code, at=time.time())
        if step is not None and _use_step(device, step):
            clear_failures(username=username)
            return
    replayed = " (a code already used)" if step is not None else ""
    record_security_event(request, kind=SecurityEvent.Kind.TWO_FACTOR_FAILED, detail=username + replayed)
    if record_failure(username=username, ip=ip):
        raise CodeRefused(LOCKED_MESSAGE % {"minutes": settings.OPS_LOGIN_LOCK_MINUTES}, locked=True)
    raise CodeRefused(WRONG_CODE)


def _use_backup_code(user, code: str) -> bool:
    """Spend a backup code: one conditional UPDATE, so a code is good once even when sent twice at once."""
    unused = BackupCode.objects.filter(user=user, code_hash=_hash(code), used_at__isnull=True)
    return unused.update(used_at=timezone.now()) == 1


def backup_codes_left(user) -> int:
    """Return how many of the user's backup codes are still unused."""
    return BackupCode.objects.filter(user=user, used_at__isnull=True).count()


def _use_step(device: TotpDevice, step: int) -> bool:
    """Record ``step`` as used unless it or a later one was; True if this call recorded it."""
    # One conditional UPDATE: two requests racing with the same code cannot both succeed.
    unused = Q(last_used_step__isnull=True) | Q(last_used_step__lt=step)
    return TotpDevice.objects.filter(unused, pk=device.pk).update(last_used_step=step) == 1


@transaction.atomic
def do_reset_totp_device(request: HttpRequest, *, user) -> bool:
    """Remove the user's authenticator (lost phone), audited; return False if they had none.

    Their sessions that gave a code from it end at their next request; at the next sign-in
    they set up a new one.
    """
    deleted, _ = TotpDevice.objects.filter(user=user).delete()
    BackupCode.objects.filter(user=user).delete()
    PendingTotpSecret.objects.filter(user=user).delete()
    if deleted:
        record_security_event(request, kind=SecurityEvent.Kind.TWO_FACTOR_RESET, detail=user.get_username())
    return bool(deleted)

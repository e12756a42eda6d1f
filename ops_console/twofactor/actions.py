"""Every write about two-factor devices: confirm, verify a code, reset. Each is a security event."""

import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from ops_console.client_ip import client_ip
from ops_console.errors import ActionError
from ops_console.models import TotpDevice
from ops_console.signin import LOCKED_MESSAGE, clear_failures, locked_out, record_failure
from ops_console.twofactor import totp
from support.actions import record_security_event
from support.models import SecurityEvent

WRONG_CODE = "That code is not right. Check the time on your phone and enter the code it shows now."


class CodeRefused(ActionError):
    """A code was not accepted; ``locked`` says the user is now locked out, as after wrong passwords."""

    def __init__(self, message: str, *, locked: bool = False):
        super().__init__(message, field="code")
        self.locked = locked


@transaction.atomic
def do_confirm_totp_device(request: HttpRequest, *, user, secret: str, code: str) -> TotpDevice:
    """Make ``secret`` the user's authenticator once ``code`` proves the app holds it; audit it.

    A device the user had before is replaced only now, so an abandoned setup loses nothing.
    """
    step = totp.matching_step(secret, code, at=time.time())
    if step is None:
        raise CodeRefused(WRONG_CODE)
    device, _ = TotpDevice.objects.update_or_create(
        user=user, defaults={"secret": secret, "confirmed_at": timezone.now(), "last_used_step": step}
    )
    record_security_event(request, kind=SecurityEvent.Kind.TWO_FACTOR_ENABLED, detail=user.get_username())
    clear_failures(username=user.get_username())
    return device


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
    step = totp.matching_step(device.secret, code, at=time.time())
    if step is not None and _use_step(device, step):
        clear_failures(username=username)
        return
    replayed = " (a code already used)" if step is not None else ""
    record_security_event(request, kind=SecurityEvent.Kind.TWO_FACTOR_FAILED, detail=username + replayed)
    if record_failure(username=username, ip=ip):
        raise CodeRefused(LOCKED_MESSAGE % {"minutes": settings.OPS_LOGIN_LOCK_MINUTES}, locked=True)
    raise CodeRefused(WRONG_CODE)


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
    if deleted:
        record_security_event(request, kind=SecurityEvent.Kind.TWO_FACTOR_RESET, detail=user.get_username())
    return bool(deleted)

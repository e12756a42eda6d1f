"""Sign-in lockout and idle session expiry for the console.

Failed sign-ins are counted in Redis per username and per IP address: after
``OPS_LOGIN_MAX_FAILURES`` within ``OPS_LOGIN_WINDOW_MINUTES``, that username (or address) is
locked for ``OPS_LOGIN_LOCK_MINUTES``, even with the right password. Every failure is a
``SecurityEvent``, so leads see guessing in the console; Redis holds only the counters.
Wrong two-factor codes (ops_console/twofactor) count toward the same lockout.
"""

import datetime as dt
import time

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import logout
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from core.actions import record_security_event
from core.client_ip import client_ip
from core.models import SecurityEvent
from core.redis import get_redis
from ops_console.twofactor.policy import is_asked

PREFIX = "ops:signin"
LOCKED_MESSAGE = (
    "Too many failed sign-ins. Sign-in is locked for %(minutes)d minutes; ask an ops lead if you need access sooner."
)
LAST_SEEN = "ops_last_seen"  # session key: when the user was last active (epoch seconds)


def _keys(username: str, ip: str) -> list[str]:
    return [f"user:{username.strip().lower()[:150]}", f"ip:{ip}"]


def locked_out(*, username: str, ip: str) -> bool:
    """Return True if the username or the address is locked."""
    return bool(get_redis().exists(*(f"{PREFIX}:locked:{key}" for key in _keys(username, ip))))


def record_failure(*, username: str, ip: str) -> bool:
    """Count a failed sign-in for the username and the address; return True if either is now locked."""
    redis, window, lock = get_redis(), settings.OPS_LOGIN_WINDOW_MINUTES * 60, settings.OPS_LOGIN_LOCK_MINUTES * 60
    locked = False
    for key in _keys(username, ip):
        counter = f"{PREFIX}:failures:{key}"
        with redis.pipeline() as pipe:
            failures, _ = pipe.incr(counter).expire(counter, window, nx=True).execute()  # window from the first
        if failures >= settings.OPS_LOGIN_MAX_FAILURES:
            redis.delete(counter)
            redis.set(f"{PREFIX}:locked:{key}", 1, ex=lock)
            locked = True
    return locked


def unlock(*, username: str, addresses: list[str]) -> None:
    """Lift the lockout of a username and of the addresses its failures came from, and reset their counts."""
    keys = [_keys(username, "")[0]] + [f"ip:{address}" for address in addresses]
    get_redis().delete(*(f"{PREFIX}:{what}:{key}" for key in keys for what in ("locked", "failures")))


def do_unlock_sign_in(request, *, user) -> None:
    """Unlock a user's sign-in (a lead's action), and the addresses of their recent failures; audited."""
    username = user.get_username()
    since = timezone.now() - dt.timedelta(minutes=settings.OPS_LOGIN_WINDOW_MINUTES + settings.OPS_LOGIN_LOCK_MINUTES)
    failures = SecurityEvent.objects.filter(
        kind__in=[SecurityEvent.Kind.SIGN_IN_FAILED, SecurityEvent.Kind.TWO_FACTOR_FAILED],
        at__gte=since, ip__isnull=False,
    ).filter(Q(detail=username) | Q(detail__startswith=f"{username} ("))  # fmt: skip
    unlock(username=username, addresses=sorted(set(failures.values_list("ip", flat=True))))
    record_security_event(request, kind=SecurityEvent.Kind.SIGN_IN_UNLOCKED, detail=username)


def clear_failures(*, username: str) -> None:
    """Forget the username's failures after it signs in (the address keeps its count)."""
    get_redis().delete(f"{PREFIX}:failures:{_keys(username, '')[0]}")


class LockoutAuthenticationForm(AdminAuthenticationForm):
    """The console's sign-in form: refuses locked usernames and addresses, audits each failure."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked": LOCKED_MESSAGE,
    }

    def clean(self):
        username, ip = self.cleaned_data.get("username") or "", client_ip(self.request)
        if locked_out(username=username, ip=ip):
            record_security_event(self.request, kind=SecurityEvent.Kind.SIGN_IN_LOCKED, detail=username)
            raise self._locked()
        try:
            cleaned = super().clean()
            if self.get_user() is None:  # a field left empty: no password was even tried
                raise self.get_invalid_login_error()
        except ValidationError:
            record_security_event(self.request, kind=SecurityEvent.Kind.SIGN_IN_FAILED, detail=username)
            if record_failure(username=username, ip=ip):
                raise self._locked() from None
            raise
        if not is_asked(self.get_user()):
            # With a code still to give, the count runs on: the verify page clears it. Otherwise
            # each right password would give a code guesser five more tries.
            clear_failures(username=username)
        return cleaned

    def _locked(self) -> ValidationError:
        minutes = settings.OPS_LOGIN_LOCK_MINUTES
        return ValidationError(self.error_messages["locked"], code="locked", params={"minutes": minutes})


def note_sign_in(sender, request, user, **kwargs) -> None:
    """Start the idle clock at sign-in (``user_logged_in``), so the first page writes no session."""
    if request is not None and hasattr(request, "session"):
        request.session[LAST_SEEN] = int(time.time())


def idle_too_long(last_seen: int | None, now: float) -> bool:
    """Return True if a session last active at ``last_seen`` (epoch seconds) is idle past the limit.

    The limit is ``OPS_SESSION_IDLE_MINUTES``; the pages and the live queues' socket both ask here.
    """
    return last_seen is not None and now - last_seen > settings.OPS_SESSION_IDLE_MINUTES * 60


class IdleSessionMiddleware:
    """Sign out a console user idle for longer than ``OPS_SESSION_IDLE_MINUTES``.

    Activity is noted in the session at most once a minute, so an active user's pages cost no
    extra session write (``SESSION_SAVE_EVERY_REQUEST`` would add one to every request).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now, last = int(time.time()), request.session.get(LAST_SEEN)
            if idle_too_long(last, now):
                logout(request)
            elif last is None or now - last >= 60:
                request.session[LAST_SEEN] = now
        return self.get_response(request)

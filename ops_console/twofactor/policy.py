"""Who must sign in with a second factor, and whether this session has."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import rotate_token
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from ops_console.models import TotpDevice

VERIFIED = "ops_2fa_device"  # session key: the device the code was checked against

# Permissions that only read: every other permission on these apps changes something.
_EDITED_APPS = ("clinical", "auth")
_READ_ONLY = ("view_", "export_")


def requires_two_factor(user) -> bool:
    """Return True if the user can change clinical records or accounts, so must give a code at sign-in.

    That is a superuser, or anyone holding a ``clinical`` or ``auth`` permission other than view
    and export (add, change, delete, import, cancel): Clinical ops and Ops leads. Support agents
    (who write only support cases and notes) and engineers (read-only) are not asked. A new
    write permission on those apps is covered without changing this rule.
    """
    if user.is_superuser:
        return True
    return any(
        app in _EDITED_APPS and not codename.startswith(_READ_ONLY)
        for app, _, codename in (name.partition(".") for name in user.get_all_permissions())
    )


def is_asked(user) -> bool:
    """Return True if the console asks this user for a code after the password."""
    return settings.OPS_REQUIRE_2FA and requires_two_factor(user)


def device_of(user) -> TotpDevice | None:
    """Return the user's confirmed authenticator, if they set one up."""
    return TotpDevice.objects.filter(user=user).first()


def _marker(device: TotpDevice) -> str:
    # Names the device as confirmed: a reset or a new enrollment makes older sessions stale.
    return f"{device.pk}:{device.confirmed_at.isoformat()}"


def is_verified(request: HttpRequest, device: TotpDevice | None) -> bool:
    """Return True if this session gave a correct code from ``device`` as it is now."""
    return device is not None and request.session.get(VERIFIED) == _marker(device)


def was_verified(request: HttpRequest) -> bool:
    """Return True if this session gave a code from a device that has since been reset or replaced."""
    return VERIFIED in request.session


def mark_verified(request: HttpRequest, device: TotpDevice) -> None:
    """Record a correct code in the session, under a new session key and CSRF token (as a sign-in would)."""
    request.session.cycle_key()
    rotate_token(request)
    request.session[VERIFIED] = _marker(device)


def safe_next(request: HttpRequest) -> str:
    """Return the page to go on to after the code: ``next`` when it is on this site, else the console home."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("ops:index")


def send_to(page: str, next_url: str) -> HttpResponse:
    """Redirect to the setup or verify ``page``, to come back to ``next_url`` once the code is given."""
    return redirect(f"{reverse(page)}?{urlencode({'next': next_url})}")

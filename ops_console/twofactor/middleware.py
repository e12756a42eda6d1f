"""Refuse every console page to an editing role until this session has given a code."""

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from ops_console.twofactor.policy import device_of, is_verified, requires_two_factor, send_to, was_verified

OPEN_PAGES = ("ops:login", "ops:logout", "ops:two_factor_setup", "ops:two_factor_verify")
# The load balancer's probes (ops_console.health): no user, nothing to protect, never redirected.
HEALTH_PAGES = ("healthz", "readyz")


class TwoFactorMiddleware:
    """With ``OPS_REQUIRE_2FA``, send a signed-in editing role to the verify (or setup) page.

    Guards every path but the open pages, static files, the API (bearer tokens, no session)
    and the health probes, so a page added later is guarded without anyone remembering to.
    GET and HEAD are redirected; any other method is refused with a 403, so nothing is written.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.OPS_REQUIRE_2FA and request.user.is_authenticated and _guarded(request.path_info):
            refusal = _refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)


def _guarded(path: str) -> bool:
    if path.startswith(("/api/", "/" + settings.STATIC_URL.lstrip("/"))):
        return False
    return path not in {reverse(name) for name in OPEN_PAGES + HEALTH_PAGES}


def _refusal(request: HttpRequest) -> HttpResponse | None:
    if not requires_two_factor(request.user):
        return None
    device = device_of(request.user)
    if is_verified(request, device):
        return None
    if was_verified(request):  # the device was reset or replaced since: sign in again
        logout(request)
        return redirect_to_login(request.get_full_path(), reverse("ops:login"))
    if request.method not in ("GET", "HEAD"):
        raise PermissionDenied("Give the code from your authenticator app first.")
    page = "ops:two_factor_verify" if device is not None else "ops:two_factor_setup"
    return send_to(page, request.get_full_path())

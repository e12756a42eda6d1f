"""Views outside the admin site."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponsePermanentRedirect
from django.template.response import TemplateResponse

from core.actions import record_security_event
from core.models import SecurityEvent


def admin_probe(request, rest=""):
    """Answer any request under /admin/ with a 404 and record it for ops leads."""
    record_security_event(request, kind=SecurityEvent.Kind.ADMIN_PROBE)
    raise Http404("Not found")


def moved_to_core(request, model, rest=""):
    """Send a bookmark of the access log or security events under /support/ to their page under /core/.

    The query string (filters, a patient) goes along; the target checks sign-in and permission.
    """
    target = f"/{settings.OPS_ADMIN_PATH}core/{model}/{rest}"
    query = request.META.get("QUERY_STRING", "")
    return HttpResponsePermanentRedirect(f"{target}?{query}" if query else target)


def slow_pages(request, admin_site):
    """Show engineers each console page and API endpoint by p95 time over the last hour."""
    from core import timing

    if not request.user.has_perm("ops_console.use_profiling"):
        raise PermissionDenied
    context = {
        **admin_site.each_context(request),
        "title": "Slow pages",
        "pages": timing.slow_pages(window_seconds=3600),
        "toolbar_enabled": settings.OPS_DEBUG_TOOLBAR,
        "samples": timing.SAMPLES,
    }
    return TemplateResponse(request, "admin/slow_pages.html", context)

"""Views outside the admin site."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse

from support.actions import record_security_event
from support.models import SecurityEvent


def admin_probe(request, rest=""):
    """Answer any request under /admin/ with a 404 and record it for ops leads."""
    record_security_event(request, kind=SecurityEvent.Kind.ADMIN_PROBE)
    raise Http404("Not found")


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

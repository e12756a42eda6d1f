"""Views outside the admin site."""

from django.http import Http404

from support.actions import record_security_event
from support.models import SecurityEvent


def admin_probe(request, rest=""):
    """Answer any request under /admin/ with a 404 and record it for ops leads."""
    record_security_event(request, kind=SecurityEvent.Kind.ADMIN_PROBE)
    raise Http404("Not found")

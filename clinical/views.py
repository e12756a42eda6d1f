"""Console pages outside the ModelAdmins: the live queues page and its JSON feed."""

from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.template.response import TemplateResponse

from clinical import selectors


def _require_view(request) -> None:
    if not request.user.has_perm("clinical.view_visit"):
        raise PermissionDenied


def live_queues(request, admin_site):
    """Render the live queues page; its script refreshes the numbers from ``live_queues_data``."""
    _require_view(request)
    context = {
        **admin_site.each_context(request),
        "title": "Live queues",
        "live": selectors.live_queues(),
    }
    return TemplateResponse(request, "admin/live_queues.html", context)


def live_queues_data(request):
    """Return the live queues as JSON for the page's refresh."""
    _require_view(request)
    response = JsonResponse(selectors.live_queues())
    response["Cache-Control"] = "no-store"
    return response

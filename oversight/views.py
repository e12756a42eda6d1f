"""The live queues page, with the queues' statistics over a chosen period, and its live JSON feed."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, JsonResponse
from django.template.response import TemplateResponse

from clinical import selectors as clinical_selectors
from oversight import charts, selectors


def _require_view(request) -> None:
    if not request.user.has_perm("clinical.view_visit"):
        raise PermissionDenied


def live_queues(request, admin_site):
    """Render the live queues (refreshed by the page's script) and the statistics of ``?period=`` (1h by default)."""
    _require_view(request)
    period = selectors.PERIODS.get(request.GET.get("period") or selectors.DEFAULT_PERIOD)
    if period is None:
        choices = ", ".join(selectors.PERIODS)
        return HttpResponseBadRequest(f"period: choose one of {choices}.", content_type="text/plain; charset=utf-8")
    live = clinical_selectors.live_queues()
    stats = selectors.period_statistics(period, live=live)
    context = {
        **admin_site.each_context(request),
        "title": "Live queues",
        "live": live,
        "stats": stats,
        "periods": selectors.PERIODS.values(),
        "min_decided": selectors.MIN_DECIDED_OFFERS,
        "providers_every_minutes": f"{settings.OPS_STATS_PROVIDERS_SECONDS / 60:g}",
        "depth_chart": charts.depth_chart(stats),
        "wait_chart": charts.wait_chart(stats),
    }
    return TemplateResponse(request, "admin/live_queues.html", context)


def live_queues_data(request):
    """Return the live queues as JSON for the page's refresh."""
    _require_view(request)
    response = JsonResponse(clinical_selectors.live_queues())
    response["Cache-Control"] = "no-store"
    return response

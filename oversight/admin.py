"""Console pages for alerts: listed with filters, read-only, acknowledged through ``oversight.actions``."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from ops_console.admin_base import FastChoicesMixin, ReadOnlyAdmin
from ops_console.admin_site import ops_site
from oversight import actions
from oversight.models import Alert, AlertDelivery
from oversight.selectors import alerts_for_list

_STATUS_FILTERS = {
    "open": {"resolved_at__isnull": True},
    "unacknowledged": {"resolved_at__isnull": True, "acknowledged_at__isnull": True},
    "acknowledged": {"acknowledged_at__isnull": False},
    "resolved": {"resolved_at__isnull": False},
}


class AlertStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("open", "Open"),
            ("unacknowledged", "Open, not acknowledged"),
            ("acknowledged", "Acknowledged"),
            ("resolved", "Resolved"),
        ]

    def queryset(self, request, queryset):
        return queryset.filter(**_STATUS_FILTERS[self.value()]) if self.value() in _STATUS_FILTERS else queryset


class DeliveryInline(FastChoicesMixin, admin.TabularInline):
    """The alert's notifications, one per channel: attempts, when sent or given up, the last error."""

    model = AlertDelivery
    fields = ["channel", "attempts", "next_attempt_at", "sent_at", "failed_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_view_permission(self, request, obj=None):
        # Part of the alert's page: whoever sees the alert sees how it was sent.
        return request.user.has_perm("oversight.view_alert")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Alert, site=ops_site)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["opened_at", "kind", "subject", "message", "status", "acknowledged_by", "resolved_at"]
    list_filter = [AlertStatusFilter, "kind", "state"]
    list_select_related = ["acknowledged_by"]
    ordering = ["-opened_at", "-id"]
    sortable_by = ["opened_at"]  # the one order an index serves (oversight_alert_opened_idx)
    fields = [
        "kind", "subject", "state", "message", "detail", "opened_at", "opened_by",
        "acknowledged_at", "acknowledged_by", "resolved_at",
    ]  # fmt: skip
    inlines = [DeliveryInline]
    actions = ["acknowledge"]

    def get_queryset(self, request):
        return alerts_for_list()

    def get_urls(self):
        """Add the change page's acknowledge button's target (POST only)."""
        view = self.admin_site.admin_view(self.acknowledge_view)
        return [path("<path:object_id>/acknowledge/", view, name="oversight_alert_acknowledge"), *super().get_urls()]

    @admin.display(description="status")
    def status(self, alert: Alert) -> str:
        if alert.resolved_at:
            return "resolved"
        return "acknowledged" if alert.acknowledged_at else "open"

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.has_perm("oversight.acknowledge_alert")

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        done = sum(actions.acknowledge(alert, request.user) for alert in queryset)
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)

    def acknowledge_view(self, request, object_id):
        """Acknowledge one alert from its change page, then show the page again."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_acknowledge_permission(request):
            raise PermissionDenied
        alert = self.get_object(request, unquote(object_id))
        if alert is None:
            raise Http404
        if actions.acknowledge(alert, request.user):
            self.message_user(request, "Alert acknowledged.", messages.SUCCESS)
        else:
            self.message_user(request, "Someone had already acknowledged this alert.", messages.INFO)
        return HttpResponseRedirect(reverse("ops:oversight_alert_change", args=[alert.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Render the alert with its deliveries, and an Acknowledge button for those who may."""
        extra_context = {**(extra_context or {}), "can_acknowledge": self.has_acknowledge_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

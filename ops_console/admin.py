"""Console pages for the base layer's records: security events and the PHI access log (read-only)."""

from django.contrib import admin
from django.contrib.auth import get_user_model

from core import selectors
from core.access import record_id
from core.models import AccessLog, SecurityEvent
from ops_console.admin_base import ReadOnlyAdmin
from ops_console.admin_site import ops_site
from ops_console.roles import ROLES


@admin.register(SecurityEvent, site=ops_site)
class SecurityEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "method", "path", "ip", "user", "user_agent"]
    list_filter = ["kind"]
    search_fields = ["=ip", "path"]
    list_select_related = ["user"]
    ordering = ["-at", "-id"]

    def get_queryset(self, request):
        return selectors.security_events_for_list()


class ReaderFilter(admin.SimpleListFilter):
    """Who read: staff in a console role (a few dozen people), never the whole user table."""

    title = "user"
    parameter_name = "user"

    def lookups(self, request, model_admin):
        staff = get_user_model().objects.filter(groups__name__in=ROLES).distinct().order_by("username")
        return [(str(user.pk), user.get_username()) for user in staff.only("id", "username")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        user_id = record_id(self.value())
        return queryset.filter(user_id=user_id) if user_id is not None else queryset.none()


class PatientFilter(admin.SimpleListFilter):
    """Reads of one patient's records (``?patient=<id>``, linked from the patient's page); lists no patients."""

    title = "patient"
    parameter_name = "patient"

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, f"Patient #{value}")] if value else []  # a filter without choices is not applied

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        patient_id = record_id(self.value())
        return queryset.filter(patient_ids__contains=[patient_id]) if patient_id is not None else queryset.none()


@admin.register(AccessLog, site=ops_site)
class AccessLogAdmin(ReadOnlyAdmin):
    """Every read of PHI, for ops leads to review; rows leave only through ``prune_access_log``."""

    list_display = ["at", "kind", "user", "api_client", "model", "object_ids", "terms", "source", "path", "ip"]
    list_filter = ["kind", ("at", admin.DateFieldListFilter), ReaderFilter, PatientFilter]
    list_select_related = ["user", "api_client"]
    ordering = ["-at", "-id"]
    raw_id_fields = ["user", "api_client"]

    def get_queryset(self, request):
        return selectors.access_log_for_list()

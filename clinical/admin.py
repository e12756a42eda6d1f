"""Console pages for the clinical domain. Writes go through ``clinical.actions``."""

import datetime as dt

from django import forms
from django.contrib import admin
from django.db.models import Prefetch
from django.db.models.functions import Now
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from clinical import selectors
from clinical.actions import licenses as license_actions
from clinical.actions import patients as patient_actions
from clinical.actions import providers as provider_actions
from clinical.actions import visits as visit_actions
from clinical.imports.admin import LicenseImportExportMixin, ProviderExportMixin
from clinical.models import (
    Patient,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
    VisitStatus,
)
from clinical.validators import normalize_phone
from ops_console.admin_base import (
    ChangeReasonForm,
    LateRowsPaginator,
    OpsModelAdmin,
    ReadOnlyAdmin,
    change_url,
    inline_table,
    local_time,
)
from ops_console.admin_site import ops_site


def _change_link(obj, label=None) -> str:
    if obj is None:
        return "—"
    return format_html('<a href="{}">{}</a>', change_url(obj), label or str(obj))


def _duration(delta: dt.timedelta | None) -> str:
    if delta is None:
        return "—"
    minutes, seconds = divmod(int(delta.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


class PhoneFormMixin:
    """Accept a phone number as people type it and store it as E.164."""

    def clean_phone(self):
        try:
            return normalize_phone(self.cleaned_data["phone"])
        except forms.ValidationError:
            raise
        except Exception as error:  # pragma: no cover - normalize_phone raises ValidationError
            raise forms.ValidationError(str(error)) from error


# --- providers and licenses -----------------------------------------------------------------


class ProviderForm(PhoneFormMixin, ChangeReasonForm):
    class Meta:
        model = Provider
        fields = ["first_name", "last_name", "npi", "email", "phone", "specialty", "is_active"]


class LicenseForm(ChangeReasonForm):
    class Meta:
        model = ProviderLicense
        fields = ["provider", "state", "license_number", "license_type", "status", "issued_on", "expires_on", "notes"]

    def clean(self):
        """Require a reason when an existing license's status changes (e.g. a suspension)."""
        cleaned = super().clean()
        if self._status_changes(cleaned.get("status")) and not cleaned.get("change_reason", "").strip():
            self.add_error("change_reason", "Give a reason for changing the license's status.")
        return cleaned

    def _status_changes(self, status) -> bool:
        # Compared with the stored row, not the form's initial values: a revert from history
        # starts from the old version, so its status change is not in changed_data.
        if not self.instance.pk:
            return False
        stored = ProviderLicense.objects.filter(pk=self.instance.pk).values_list("status", flat=True).first()
        return stored is not None and status != stored


@admin.register(Provider, site=ops_site)
class ProviderAdmin(ProviderExportMixin, OpsModelAdmin):
    form = ProviderForm
    retained = True  # visits, timelines and history name the provider
    list_display = ["name", "npi", "specialty", "availability", "states_today", "visits_today", "is_active"]
    list_filter = ["availability", "is_active", "specialty"]
    search_fields = ["=npi", "^last_name", "^first_name", "=email", "=phone"]
    search_document = "provider"  # names with typos, phone in any format, NPI, license number
    list_select_related = []  # no foreign keys on the row; licensed states come from one prefetch
    ordering = ["last_name", "first_name", "id"]
    readonly_fields = ["availability", "available_since", "states_today", "created_at"]
    fieldsets = [
        (None, {"fields": ["first_name", "last_name", "npi", "specialty", "is_active"]}),
        ("Contact", {"fields": ["email", "phone"]}),
        ("Routing", {"fields": ["availability", "available_since", "states_today"]}),
        ("Audit", {"fields": ["change_reason", "created_at"]}),
    ]
    actions = ["set_offline"]

    def get_queryset(self, request):
        """Return providers; for the list, with each one's visits today and the states it can take patients from.

        A provider's own pages and the autocomplete neither show nor sort by the count, and the
        form reads its states itself (``states_today``): they skip the subquery and the prefetch.
        """
        if self.on_record_page(request):
            return super().get_queryset(request)
        valid = ProviderLicense.objects.valid_at().only("provider_id", "state").order_by("state")
        return selectors.providers_for_list().prefetch_related(Prefetch("licenses", valid, to_attr="valid_licenses"))

    @admin.display(description="name", ordering="last_name")
    def name(self, obj):
        return f"{obj.last_name}, {obj.first_name}"

    @admin.display(description="visits today", ordering="visits_today")
    def visits_today(self, obj):
        return obj.visits_today

    @admin.display(description="can take patients from (now, each state's calendar)")
    def states_today(self, obj):
        if hasattr(obj, "license_panel"):  # the form: its licenses panel's rows (render_change_form)
            states = [lic.state for lic in obj.license_panel if lic.counts_now]
        elif hasattr(obj, "valid_licenses"):  # the list: its prefetch
            states = [lic.state for lic in obj.valid_licenses]
        else:
            states = selectors.licensed_states_now(obj) if obj.pk else []
        return ", ".join(states) or "no state now"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Offer to add a license where the user may (the panel itself: ``render_change_form``)."""
        add = self.admin_site.get_model_admin(ProviderLicense).has_add_permission(request)
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "can_add_license": add})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        """Show the provider's licenses, each a link to its own form (where a status change needs a reason).

        Read once, when the form is shown (not when a save redirects): the panel's rows also give
        the states it can take patients from now (``states_today``), so the form makes no second query.
        """
        if obj is not None and obj.pk:
            obj.license_panel = selectors.licenses_of(obj.pk)  # lazy: evaluated once, by the first reader
            context["licenses"] = obj.license_panel
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        provider_actions.save_provider(obj, actor=self.actor(request), reason=self.reason_given(form, ""))

    @admin.action(description="Set selected providers offline", permissions=["change"])
    def set_offline(self, request, queryset):
        done = sum(
            1
            for provider in queryset
            if self.run_action(
                request, provider_actions.set_provider_availability, provider, available=False,
                actor=self.actor(request), reason="set offline from the console",
            )
        )  # fmt: skip
        self.message_user(request, f"{done} provider(s) set offline.")


class ExpiringFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request, model_admin):
        return [("30", "Active, expiring within 30 days"), ("lapsed", "Past expiry date")]

    def queryset(self, request, queryset):
        # Both in each license's state calendar (clinical.calendar).
        if self.value() == "30":
            return selectors.expiring_within(queryset, 30)
        if self.value() == "lapsed":
            return selectors.lapsed(queryset)
        return queryset


@admin.register(ProviderLicense, site=ops_site)
class ProviderLicenseAdmin(LicenseImportExportMixin, OpsModelAdmin):
    form = LicenseForm
    retained = True  # licenses are records: suspend, revoke or let them expire instead
    list_display = [
        "provider",
        "state",
        "license_number",
        "license_type",
        "status",
        "issued_on",
        "expires_on",
        "valid_today",
        "verified_by",
    ]
    list_filter = ["status", "license_type", ExpiringFilter, "state"]
    search_fields = ["=license_number", "=provider__npi", "^provider__last_name"]
    search_document, search_path = "provider", "provider"  # the licenses of the providers found
    list_select_related = ["provider", "verified_by"]
    autocomplete_fields = ["provider"]
    ordering = ["state", "provider_id", "id"]
    readonly_fields = ["verified_by", "verified_at", "valid_today"]
    fieldsets = [
        (None, {"fields": ["provider", "state", "license_number", "license_type"]}),
        ("Status", {"fields": ["status", "issued_on", "expires_on", "valid_today", "notes"]}),
        ("Verification", {"fields": ["verified_by", "verified_at"]}),
        ("Audit", {"fields": ["change_reason"]}),
    ]  # fmt: skip
    actions = ["mark_verified"]

    def get_queryset(self, request):
        return selectors.licenses_for_list()

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        """Return the list's paginator: under the expiry filter, one that reads a page by its keys first.

        That filter reads every license expiring in its window to sort a page of them: the page's
        keys first, then its 50 rows with their provider (not every provider hashed). Every other
        page's 50 rows come in the order of an index, and are read with their joins at once.
        """
        late = request.GET.get(ExpiringFilter.parameter_name) if request is not None else None
        paginator = LateRowsPaginator if late else self.paginator
        return paginator(queryset, per_page, orphans, allow_empty_first_page)

    @admin.display(description="counts now", boolean=True)
    def valid_today(self, obj):
        """Return whether the license counts now in its state's calendar (every zone the state spans)."""
        return getattr(obj, "counts_now", None) if obj.pk else None

    def save_model(self, request, obj, form, change):
        license_actions.save_license(obj, actor=self.actor(request), reason=self.reason_given(form, ""))

    @admin.action(description="Mark selected licenses verified by me", permissions=["change"])
    def mark_verified(self, request, queryset):
        for license in queryset.select_related(None):
            license_actions.verify_license(license, actor=self.actor(request))
        self.message_user(request, f"{queryset.count()} license(s) marked verified.")


# --- patients -------------------------------------------------------------------------------


class PatientForm(PhoneFormMixin, ChangeReasonForm):
    class Meta:
        model = Patient
        fields = [
            "first_name", "last_name", "date_of_birth", "email", "phone",
            "address_line1", "address_line2", "city", "state", "postal_code",
        ]  # fmt: skip


@admin.register(Patient, site=ops_site)
class PatientAdmin(OpsModelAdmin):
    form = PatientForm
    retained = True
    list_display = ["mrn", "name", "date_of_birth", "phone", "city", "state"]
    list_filter = ["state"]
    search_fields = ["=mrn", "^last_name", "^first_name", "=phone", "=email"]
    search_document = "patient"  # names with typos, name + date of birth, phone in any format, MRN
    phi_access = True
    list_select_related = []  # the patient row carries everything listed
    ordering = ["last_name", "first_name", "id"]
    readonly_fields = ["mrn", "created_at", "recent_visits", "support_links"]
    fieldsets = [
        (None, {"fields": ["mrn", "first_name", "last_name", "date_of_birth"]}),
        ("Contact", {"fields": ["phone", "email"]}),
        ("Address", {"fields": ["address_line1", "address_line2", "city", "state", "postal_code"]}),
        ("Visits and support", {"fields": ["recent_visits", "support_links"]}),
        ("Audit", {"fields": ["change_reason", "created_at"]}),
    ]

    @admin.display(description="name", ordering="last_name")
    def name(self, obj):
        return f"{obj.last_name}, {obj.first_name}"

    @admin.display(description="latest visits")
    def recent_visits(self, obj):
        if not obj.pk:
            return "—"
        return inline_table(
            ["Visit", "Requested", "State", "Status", "Provider"],
            (
                (_change_link(v, v.public_id), local_time(v.requested_at)[:16], v.located_state,
                 v.get_status_display(), v.provider.full_name if v.provider else "—")
                for v in selectors.patient_recent_visits(obj)
            ),
            empty="No visits yet.",
        )  # fmt: skip

    @admin.display(description="support")
    def support_links(self, obj):
        if not obj.pk:
            return "—"
        cases = reverse(f"{ops_site.name}:support_supportcase_changelist") + f"?patient__id__exact={obj.pk}"
        new = reverse(f"{ops_site.name}:support_supportcase_add") + f"?patient={obj.pk}"
        return format_html('<a href="{}">Support cases</a> · <a href="{}">Open a support case</a>', cases, new)

    def save_model(self, request, obj, form, change):
        patient_actions.save_patient(obj, actor=self.actor(request), reason=self.reason_given(form, ""))


# --- visits ---------------------------------------------------------------------------------


class WaitingLongerFilter(admin.SimpleListFilter):
    title = "waiting longer than"
    parameter_name = "waiting_over"

    def lookups(self, request, model_admin):
        return [("5", "5 minutes"), ("15", "15 minutes"), ("30", "30 minutes")]

    def queryset(self, request, queryset):
        if self.value() in {"5", "15", "30"}:
            cutoff = Now() - dt.timedelta(minutes=int(self.value()))  # the database's clock
            return queryset.filter(status=VisitStatus.WAITING, requested_at__lt=cutoff)
        return queryset


class RequestedFilter(admin.SimpleListFilter):
    """Date filter on an indexed range, instead of date_hierarchy's full-table DISTINCT scans."""

    title = "requested"
    parameter_name = "requested"

    def lookups(self, request, model_admin):
        return [("today", "Today"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days")]

    def queryset(self, request, queryset):
        now = timezone.now()
        starts = {
            "today": timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0),
            "24h": now - dt.timedelta(hours=24),
            "7d": now - dt.timedelta(days=7),
            "30d": now - dt.timedelta(days=30),
        }
        return queryset.filter(requested_at__gte=starts[self.value()]) if self.value() in starts else queryset


class VisitForm(ChangeReasonForm):
    class Meta:
        model = Visit
        fields = ["patient", "located_state", "reason", "priority"]


@admin.register(Visit, site=ops_site)
class VisitAdmin(OpsModelAdmin):
    form = VisitForm
    retained = True
    list_display = [
        "public_id",
        "patient_link",
        "located_state",
        "status",
        "priority",
        "provider_name",
        "waited",
        "requested_at",
    ]
    list_filter = ["status", "priority", RequestedFilter, WaitingLongerFilter, "located_state"]
    search_fields = ["=public_id", "=patient__mrn", "^patient__last_name", "=provider__npi"]
    search_document = "visit"  # visit id, or the patient or provider by name, phone, MRN, NPI
    phi_access = True
    list_select_related = ["patient", "provider"]
    autocomplete_fields = ["patient"]
    ordering = ["-requested_at", "-id"]
    actions = ["cancel_visits"]
    timeline_fields = [
        "status", "provider_link", "offer_count", "waited",
        "requested_at", "offered_at", "accepted_at", "started_at", "ended_at", "cancelled_at",
    ]  # fmt: skip

    def get_queryset(self, request):
        return selectors.visits_for_list()

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["patient", "located_state", "priority", "reason"]})]
        return [
            (None, {"fields": ["public_id", "patient_link", "located_state", "priority", "reason"]}),
            ("Status", {"fields": self.timeline_fields}),
            ("Timeline", {"fields": ["offers", "timeline", "support_links"]}),
            ("Audit", {"fields": ["change_reason"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [
            "public_id", "patient_link", "located_state", *self.timeline_fields, "offers", "timeline", "support_links"
        ]  # fmt: skip

    @admin.display(description="patient", ordering="patient__last_name")
    def patient_link(self, obj):
        return _change_link(obj.patient, f"{obj.patient.first_name} {obj.patient.last_name} · {obj.patient.mrn}")

    @admin.display(description="provider")
    def provider_name(self, obj):
        return obj.provider.full_name if obj.provider_id else "—"

    @admin.display(description="provider")
    def provider_link(self, obj):
        return _change_link(obj.provider, obj.provider.full_name if obj.provider_id else None)

    @admin.display(description="waited")
    def waited(self, obj):
        end = obj.accepted_at or obj.cancelled_at or (obj.ended_at if obj.status == VisitStatus.EXPIRED else None)
        if end is None and obj.status in (VisitStatus.WAITING, VisitStatus.OFFERED):
            end = timezone.now()
        return _duration(end - obj.requested_at if end else None)

    @admin.display(description="timeline")
    def timeline(self, obj):
        return inline_table(
            ["At", "Change", "By", "Provider", "Detail"],
            (
                (local_time(e.at), f"{e.from_status or '—'} → {e.to_status}",
                 e.get_actor_kind_display() + (f" ({e.staff_user.get_username()})" if e.staff_user_id else ""),
                 e.provider.full_name if e.provider_id else "", e.detail)
                for e in selectors.visit_timeline(obj)
            ),
        )  # fmt: skip

    @admin.display(description="offers")
    def offers(self, obj):
        return inline_table(
            ["Offered", "To", "Deadline", "Outcome", "Decided"],
            (
                (local_time(o.offered_at), _change_link(o.provider, o.provider.full_name), local_time(o.expires_at),
                 o.get_outcome_display() if o.outcome else "open", local_time(o.decided_at) if o.decided_at else "—")
                for o in selectors.visit_offers(obj)
            ),
            empty="Not offered yet.",
        )  # fmt: skip

    @admin.display(description="support")
    def support_links(self, obj):
        new = reverse(f"{ops_site.name}:support_supportcase_add") + f"?visit={obj.pk}&patient={obj.patient_id}"
        return format_html('<a href="{}">Open a support case about this visit</a>', new)

    def save_model(self, request, obj, form, change):
        actor = self.actor(request)
        if change:
            visit_actions.update_visit_details(obj, actor=actor, reason=self.reason_given(form, "details edited"))
        else:
            created = visit_actions.request_visit(
                patient=obj.patient, located_state=obj.located_state, reason=obj.reason,
                priority=obj.priority, actor=actor,
            )  # fmt: skip
            obj.pk, obj.public_id = created.pk, created.public_id

    def has_cancel_permission(self, request):
        return request.user.has_perm("clinical.cancel_visit")

    @admin.action(description="Cancel selected visits (not yet started)", permissions=["cancel"])
    def cancel_visits(self, request, queryset):
        actor = self.actor(request)
        done = sum(
            1 for visit_id in queryset.values_list("pk", flat=True)
            if self.run_action(
                request, visit_actions.cancel_visit, visit_id, actor=actor, detail="cancelled in the console"
            )
        )  # fmt: skip
        self.message_user(request, f"{done} visit(s) cancelled.")


@admin.register(VisitEvent, site=ops_site)
class VisitEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "visit", "from_status", "to_status", "actor_kind", "staff_user", "provider", "detail"]
    list_filter = ["to_status", "actor_kind"]
    search_fields = ["=visit__public_id"]
    search_document, search_path = "visit", "visit"  # the timelines of the visits found
    phi_access = True  # a timeline row is part of a visit's record
    list_select_related = ["visit", "staff_user", "provider"]
    ordering = ["-at", "-id"]

    def get_queryset(self, request):
        return selectors.events_for_list()


# The API clients' pages live with the API; importing them registers them with the site.
from clinical.api import admin as api_admin  # noqa: E402, F401

"""Console pages for support cases. Writes go through ``support.actions``."""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model

from ops_console.admin_base import ChangeReasonForm, OpsModelAdmin
from ops_console.admin_site import ops_site
from ops_console.roles import ROLES
from support import actions, selectors
from support.models import CaseNote, CaseStatus, SupportCase


class CaseForm(ChangeReasonForm):
    note = forms.CharField(
        label="add a note",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional; appended to the case's notes with your name and the time when you save.",
    )

    class Meta:
        model = SupportCase
        fields = ["subject", "category", "priority", "status", "patient", "visit", "assignee"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "assignee" in self.fields:
            # Staff in a console role: a few dozen people, so a plain select stays small.
            self.fields["assignee"].queryset = (
                get_user_model().objects.filter(is_active=True, groups__name__in=ROLES).distinct().order_by("username")
            )


class NoteHistoryInline(admin.TabularInline):
    """Notes already written: read-only, in order."""

    model = CaseNote
    verbose_name_plural = "notes"
    fields = ["created_at", "author", "body"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("author")


class MyCasesFilter(admin.SimpleListFilter):
    title = "assignee"
    parameter_name = "mine"

    def lookups(self, request, model_admin):
        return [("1", "Assigned to me"), ("none", "Unassigned")]

    def queryset(self, request, queryset):
        if self.value() == "1":
            return queryset.filter(assignee=request.user)
        if self.value() == "none":
            return queryset.filter(assignee__isnull=True)
        return queryset


@admin.register(SupportCase, site=ops_site)
class SupportCaseAdmin(OpsModelAdmin):
    form = CaseForm
    list_display = ["id", "subject", "status", "priority", "category", "patient", "visit", "assignee", "created_at"]
    list_filter = ["status", "priority", "category", MyCasesFilter]
    search_fields = ["subject", "=patient__mrn", "=visit__public_id"]
    search_document = "case"  # case number, subject words, visit id, or the patient
    phi_access = True  # a case names its patient and visit, and its notes tell their story
    list_select_related = ["patient", "visit", "assignee", "created_by"]
    autocomplete_fields = ["patient", "visit"]
    ordering = ["-created_at", "-id"]
    readonly_fields = ["created_by", "created_at", "updated_at", "resolved_at"]
    # One way to add a note, on the case's own form (its "add a note" box); the notes already
    # written are listed read-only below it.
    inlines = [NoteHistoryInline]
    fieldsets = [
        (None, {"fields": ["subject", "category", "priority", "status", "assignee"]}),
        ("About", {"fields": ["patient", "visit"]}),
        ("Notes", {"fields": ["note"]}),
        ("Audit", {"fields": ["change_reason", "created_by", "created_at", "updated_at", "resolved_at"]}),
    ]

    def get_queryset(self, request):
        return selectors.cases_for_list()

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("status", CaseStatus.OPEN)
        return initial

    def get_fieldsets(self, request, obj=None):
        """Offer the "add a note" box only to users who may add notes."""
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.has_perm("support.add_casenote"):
            return fieldsets
        return [(name, options) for name, options in fieldsets if options["fields"] != ["note"]]

    def save_model(self, request, obj, form, change):
        may_note = request.user.has_perm("support.add_casenote")
        actions.save_case(
            obj, actor=self.actor(request), reason=self.reason_given(form, ""),
            note=form.cleaned_data.get("note", "") if may_note else "",
        )  # fmt: skip

"""Console pages for support cases. Writes go through ``support.actions``."""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.template.defaultfilters import linebreaksbr

from ops_console.admin_base import ChangeReasonForm, OpsModelAdmin, inline_table, local_time
from ops_console.admin_site import ops_site
from ops_console.roles import ROLES
from support import actions, selectors
from support.models import CaseStatus, SupportCase


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
            # Staff in a console role: a few dozen people, so a plain select stays small. Their
            # usernames only (what the options show), not every column (password hashes included).
            staff = get_user_model().objects.filter(is_active=True, groups__name__in=ROLES)
            self.fields["assignee"].queryset = staff.distinct().order_by("username").only("pk", "username")


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
    # The list joins what its columns show. The form joins none of them: its patient and visit
    # widgets read theirs by key, and who opened the case comes with the case (``get_queryset``).
    list_select_related = ["patient", "visit", "assignee"]
    autocomplete_fields = ["patient", "visit"]
    ordering = ["-created_at", "-id"]
    readonly_fields = ["notes_written", "opened_by", "created_at", "updated_at", "resolved_at"]
    # One way to add a note, on the case's own form (its "add a note" box), below the notes
    # already written: a read-only table from one query, not an inline formset of read-only rows.
    fieldsets = [
        (None, {"fields": ["subject", "category", "priority", "status", "assignee"]}),
        ("About", {"fields": ["patient", "visit"]}),
        ("Notes", {"fields": ["notes_written", "note"]}),
        ("Audit", {"fields": ["change_reason", "opened_by", "created_at", "updated_at", "resolved_at"]}),
    ]

    def get_queryset(self, request):
        """Return the cases; on a case's own pages, with the username of the staff member who opened it."""
        return selectors.cases_with_opener() if self.on_record_page(request) else super().get_queryset(request)

    @admin.display(description="created by")
    def opened_by(self, obj):
        """Return who opened the case (a username), or nothing for one the system opened.

        A case's own pages read the username with the case; an old version (its history page) is
        not read through ``get_queryset``, so it looks its opener up (one query).
        """
        if hasattr(obj, "opener_username"):
            username = obj.opener_username
        else:
            username = obj.created_by.get_username() if obj.created_by_id else None
        return username or self.get_empty_value_display()

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("status", CaseStatus.OPEN)
        return initial

    def get_fieldsets(self, request, obj=None):
        """Offer the "add a note" box only to users who may add notes; list notes on an existing case."""
        hidden = {"notes_written"} if obj is None else set()
        if not request.user.has_perm("support.add_casenote"):
            hidden.add("note")
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            fields = [field for field in options["fields"] if field not in hidden]
            if fields:
                fieldsets.append((name, {**options, "fields": fields}))
        return fieldsets

    @admin.display(description="notes")
    def notes_written(self, obj):
        """Return the case's notes, oldest first, with their authors and times (one query)."""
        return inline_table(
            ["Written", "By", "Note"],
            (
                (local_time(note.created_at), note.author.get_username() if note.author else "—",
                 linebreaksbr(note.body, autoescape=True))
                for note in selectors.case_notes(obj)
            ),
            empty="No notes yet.",
        )  # fmt: skip

    def save_model(self, request, obj, form, change):
        may_note = request.user.has_perm("support.add_casenote")
        actions.save_case(
            obj, actor=self.actor(request), reason=self.reason_given(form, ""),
            note=form.cleaned_data.get("note", "") if may_note else "",
        )  # fmt: skip

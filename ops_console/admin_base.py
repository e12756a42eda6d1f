"""Base ModelAdmin for the console: history, retention and revert rules in one place."""

import functools

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import display_for_field, unquote
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.core.signals import setting_changed
from django.db import models, transaction
from django.dispatch import receiver
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeData, SafeString, mark_safe
from django.utils.translation import gettext as _
from simple_history.admin import SimpleHistoryAdmin

from core import outbox
from core import selectors as core_selectors
from core.access import PHI_LABELS, record_access
from core.audit import Actor
from core.errors import ActionError
from ops_console.admin_site import ops_site
from ops_console.widgets import FastChoicesMixin

__all__ = [
    "boolean_column",
    "ChangeReasonForm",
    "change_url",
    "choice_column",
    "FastChoicesMixin",
    "inline_table",
    "LateRowsPaginator",
    "local_time",
    "OpsAdminMixin",
    "OpsModelAdmin",
    "ReadOnlyAdmin",
]
from search import changelist as search_changelist

LateRowsPaginator = search_changelist.LateRowsPaginator  # for a list that reads its page by key (licenses)


class ChangeReasonForm(forms.ModelForm):
    """A model form with a free-text reason that the history record keeps."""

    change_reason = forms.CharField(
        required=False,
        max_length=500,
        help_text="Why you are making this change (kept in the history).",
        widget=forms.TextInput(attrs={"size": 80}),
    )


class OpsAdminMixin(FastChoicesMixin):
    """What every console ModelAdmin shares.

    Set ``retained = True`` on models whose rows must never be deleted through the console
    (visits, patients, timelines, audit records): not even a superuser gets a delete button.
    """

    retained = False
    show_full_result_count = False
    list_per_page = 50
    # No COUNT(*) over a million rows; a visit search's page reads the few people's rows that fill it.
    paginator = search_changelist.SearchPaginator
    show_facets = admin.ShowFacets.NEVER  # facet counts would scan the table for every filter
    # The search document this changelist's search box (and autocomplete) looks in: "patient",
    # "provider", "visit" or "case" (search.documents), with ``search_path`` the foreign key to it
    # when rows are found through a related record. Without one, ``search_fields`` apply as usual.
    search_document: str | None = None
    search_path = ""
    # PHI (patients, visits): every changelist page and change page shown is recorded in the access log.
    phi_access = False

    def get_list_display(self, request):
        """Return the columns; a choice or yes/no field's cell is made without Django's per-cell work.

        A choice cell looks its label up in a dict made once (``choice_column``); a yes/no cell's
        icon is drawn once for each value (``boolean_column``).
        """
        return [
            boolean_column(self.model, choice_column(self.model, name)) for name in super().get_list_display(request)
        ]

    def get_empty_value_display(self):
        """Return what an empty cell shows, as Django does, without its per-cell cost.

        Django asks for it once for every cell of a list, through a failed attribute lookup and
        ``mark_safe``'s lazy-text wrapper: a plain string is made safe here directly.
        """
        value = getattr(self, "empty_value_display", None)
        if value is None:
            value = self.admin_site.empty_value_display
        if isinstance(value, SafeData):
            return value
        return SafeString(value) if type(value) is str else mark_safe(value)  # noqa: S308 - Django's own rule

    def on_record_page(self, request) -> bool:
        """Return True if the request is for one record's page or a form's autocomplete, not a list.

        One record's pages (its form, history, an old version, delete) and the autocomplete read a
        record or a page of names: a ``get_queryset`` can leave out what only its list shows or
        sorts by. A list, its actions and its export (which sorts as the list does) get it all.
        """
        match = getattr(request, "resolver_match", None)
        if match is None:
            return False
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return match.url_name in {"autocomplete", f"{info}_change", f"{info}_history", f"{info}_simple_history",
                                  f"{info}_delete"}  # fmt: skip

    def has_delete_permission(self, request, obj=None):
        """Return False for retained records, whatever the user's permissions."""
        return not self.retained and super().has_delete_permission(request, obj)

    def action_checkbox(self, obj):
        """Return the row's selection checkbox: the admin's markup, without a widget template per row.

        Rendering a ``CheckboxInput`` through the form renderer costs more than all of a visit
        row's other cells together.
        """
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            label,
        )

    def get_search_results(self, request, queryset, search_term):
        """Search through the search backend (relevance, typos, phone formats) when configured."""
        if self.search_document and search_term.strip():
            return search_changelist.search_results(self, request, queryset, search_term)
        return super().get_search_results(request, queryset, search_term)

    def get_changelist(self, request, **kwargs):
        """Return the changelist that records each search with the rows it showed."""
        return search_changelist.SearchChangeList

    def changelist_view(self, request, extra_context=None):
        """Render the changelist; record the PHI rows listed (a search records itself, with its rows).

        A list that shows no rows read nothing, and writes nothing: a search is recorded with its
        terms whatever it found, but an empty list or filter has no one to name.
        """
        response = super().changelist_view(request, extra_context)
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        searched = cl is not None and cl.query.strip() and self.search_document  # the search recorded it
        # Any method that renders rows reads them (a POST re-rendering the list, a HEAD).
        if self.phi_access and response.status_code == 200 and cl is not None and not searched and cl.result_list:
            record_access(request, kind="list", model=self.model, records=cl.result_list, source="list")
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Render the change page; record a PHI view, and show leads who read this patient's records."""
        if self.phi_access and request.user.has_perm("core.view_accesslog"):
            viewers = core_selectors.patient_readers(self.model, object_id)
            extra_context = {**(extra_context or {}), "phi_readers": viewers}
        response = super().change_view(request, object_id, form_url, extra_context)
        original = (getattr(response, "context_data", None) or {}).get("original")
        # Whatever the method: a form redrawn after a failed save shows the record as much as a GET.
        if self.phi_access and response.status_code == 200 and original is not None:
            record_access(request, kind="view", model=self.model, records=[original], source="change page")
        return response

    def add_view(self, request, form_url="", extra_context=None):
        """Render the add form; record the patients and visits it names from the query string."""
        response = super().add_view(request, form_url, extra_context)
        if response.status_code == 200 and getattr(response, "context_data", None):
            prefilled = _phi_named_in(self.model, self.get_changeform_initial_data(request))
            if prefilled:
                record_access(request, kind="view", records=prefilled, source="add form")
        return response

    def delete_model(self, request, obj):
        """Delete the record; its search document goes with it (outbox row in the same transaction)."""
        with transaction.atomic():
            outbox.record_rows(type(obj).objects.filter(pk=obj.pk))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        """Delete the records; their search documents go with them (outbox rows in the same transaction)."""
        with transaction.atomic():
            outbox.record_rows(queryset)
            super().delete_queryset(request, queryset)

    def actor(self, request) -> Actor:
        """Return the actor for the signed-in user."""
        return Actor.staff(request.user)

    def run_action(self, request, func, *args, **kwargs):
        """Call an action for an admin action; report its refusal as a message instead of a 500."""
        try:
            return func(*args, **kwargs)
        except ActionError as error:
            self.message_user(request, str(error), messages.ERROR)
            return None


class OpsModelAdmin(OpsAdminMixin, SimpleHistoryAdmin):
    """History-aware ModelAdmin whose writes go through the app's actions."""

    # Who acted when no staff user did: the router, a patient or provider app, the system.
    history_list_display = ["done_by"]  # not "actor": the admin has an actor() method

    # Not named ``change_reason``: the admin would take a method of the form field's name for a
    # read-only field and call it with the record, a 500 for every view-only user.
    def reason_given(self, form, default: str) -> str:
        """Return the reason typed in the form, or ``default``."""
        return (form.cleaned_data.get("change_reason") or "").strip() or default

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """Render the form; an action refusing the save rolls back and comes back as a message."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ActionError as error:
            self.message_user(request, f"Not saved: {error}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def get_history_queryset(self, request, history_manager, pk_name, object_id):
        """Return the history rows with their users joined, one query whatever their number."""
        # simple-history's own select_related() is dropped on models without foreign keys.
        return super().get_history_queryset(request, history_manager, pk_name, object_id).select_related("history_user")

    def render_history_view(self, request, template, context, **kwargs):
        """Render a history page (list or old version); record it as a view of a PHI record."""
        response = super().render_history_view(request, template, context, **kwargs)
        record = context.get("object") or context.get("original")  # the record, or its old version
        if self.phi_access and record is not None:  # any method: a POST that redraws the page shows it too
            record_access(request, kind="view", model=self.model, records=[record], source="history")
        return response

    def history_view(self, request, object_id, extra_context=None):
        """Show a record's history; an id that cannot be one is not found (simple-history would 500)."""
        if not _is_id(self.model._meta.pk, unquote(object_id)):
            raise Http404
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        """Show an old version; revert to it on POST if the user may change the record as it is now.

        A revert is a change like any other: it saves through ``save_model`` (the app's action),
        whose refusal comes back as a message; a deleted record is never brought back this way.
        """
        if not (_is_id(self.model._meta.pk, object_id) and _is_id(self.model.history.model._meta.pk, version_id)):
            raise Http404
        if request.method != "POST":
            return super().history_form_view(request, object_id, version_id, extra_context)
        obj = self.get_object(request, object_id)
        if obj is None or self.revert_disabled(request, obj) or not self.has_change_permission(request, obj):
            raise PermissionDenied
        try:
            with transaction.atomic():  # as changeform_view: the save and its log entry, or neither
                return super().history_form_view(request, object_id, version_id, extra_context)
        except ActionError as error:
            self.message_user(request, f"Not reverted: {error}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@functools.cache
def choice_column(model, name):
    """Return the list column of a choice field of ``model``, the same cells as Django's; other names unchanged.

    For every cell of a choice field, the admin flattens the field's choices into a new dict to
    look one label up (``display_for_field``): 51 states, nine statuses, three priorities on
    each visit row, an eighth of its cells' time (a sampling profile on the 1M set). This column
    looks the label up in one dict, made once. Its cells keep their CSS class (``field-<name>``),
    its header the field's verbose name, and it sorts by the field; a value that is not a choice
    shows as empty, as Django's does.
    """
    field = _own_field(model, name)
    if field is None or not field.choices:
        return name
    labels, attname = dict(field.flatchoices), field.attname
    return _field_column(field, lambda obj: labels.get(getattr(obj, attname)))


# A yes/no cell's icon per value, as Django draws it; dropped when a test changes the static files'
# settings (Django resets its static storage then; in a running process it is fixed, manifest and all).
_ICONS: dict = {}
_STATIC_SETTINGS = frozenset({"STATIC_URL", "STATIC_ROOT", "STORAGES"})


@receiver(setting_changed)
def _forget_icons(*, setting, **kwargs):
    if setting in _STATIC_SETTINGS:
        _ICONS.clear()


@functools.cache
def boolean_column(model, name):
    """Return the list column of a yes/no field of ``model``, the same cells as Django's; other names unchanged.

    Django draws each yes/no cell's icon anew, resolving its static file's URL every time (the
    provider list's "active" column, a tenth of its rows' time at 49 rows). This column draws
    each value's icon once, through Django's own ``display_for_field``. Its cells keep their CSS
    class (``field-<name>``), its header the field's verbose name, and it sorts by the field.
    """
    field = _own_field(model, name)
    if field is None or field.choices or not isinstance(field, models.BooleanField):
        return name
    attname = field.attname

    def icon(obj):
        value = getattr(obj, attname)
        drawn = _ICONS.get(value)
        if drawn is None:
            drawn = _ICONS[value] = display_for_field(value, field, "")
        return drawn

    return _field_column(field, icon)


def _own_field(model, name):
    """Return the model's own (concrete, not relation) field named ``name``, or None for any other column."""
    if not isinstance(name, str):
        return None
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    return None if not field.concrete or field.is_relation else field


def _field_column(field, cell):
    """Return ``cell`` as a list column standing for ``field``: its CSS class, header and sorting."""
    cell.__name__ = cell.__qualname__ = field.name
    return admin.display(description=field.verbose_name, ordering=field.name)(cell)


def inline_table(headings: list[str], rows, *, empty: str | None = None):
    """Return a change page's read-only table: ``headings``, then one row per tuple of ``rows``.

    Every cell is escaped unless already safe (``format_html``). With ``empty``, a table without
    rows is that text instead.
    """
    body = format_html_join("", "<tr>" + "<td>{}</td>" * len(headings) + "</tr>", rows)
    if not body and empty is not None:
        return empty
    head = format_html_join("", "<th>{}</th>", ((heading,) for heading in headings))
    table = '<table class="ops-inline-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'
    return format_html(table, head, body)


def local_time(at) -> str:
    """Return ``at`` as the console shows a moment in a table: the console's time zone, to the second."""
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")


def change_url(obj) -> str:
    """Return the console URL of ``obj``'s change page, as ``reverse()`` would write it.

    For a list that links each row's patient or provider: the URL is reversed once per model
    (``search.changelist.change_url_around_key``), as the rows' own links are.
    """
    if not isinstance(obj.pk, int):
        return reverse(f"{ops_site.name}:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    before, after = search_changelist.change_url_around_key(obj._meta, ops_site.name)
    return f"{before}{obj.pk}{after}"


def _phi_named_in(model, initial: dict) -> list:
    """Return the patients and visits an add form's initial values name (each is shown by name)."""
    named = []
    for name, value in initial.items():
        field = next((f for f in model._meta.concrete_fields if f.name == name), None)
        related = getattr(field, "related_model", None)
        if related is None or related._meta.label_lower not in PHI_LABELS or not _is_id(related._meta.pk, value):
            continue
        named += list(related._default_manager.filter(pk=value))
    return named


def _is_id(field, value) -> bool:
    """Return True if ``value`` from a URL is a valid value of the primary key ``field``."""
    try:
        field.to_python(value)
    except ValidationError:
        return False
    return True


class ReadOnlyAdmin(OpsAdminMixin, admin.ModelAdmin):
    """Append-only records: listed and viewed, never added, changed or deleted in the console."""

    retained = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def history_view(self, request, object_id, extra_context=None):
        """Show the record's admin log; for PHI records (a timeline row), record the read, whatever the method."""
        response = super().history_view(request, object_id, extra_context)
        record = (getattr(response, "context_data", None) or {}).get("object")
        if self.phi_access and response.status_code == 200 and record is not None:
            record_access(request, kind="view", model=self.model, records=[record], source="history")
        return response

"""Console pages for license import (check, preview, confirm) and for audited exports.

Mixed into the license and provider ModelAdmins. Every page checks the import or export
permission on the server (``clinical.import_providerlicense``, ``clinical.export_<model>``);
the import's work is in ``clinical.imports.checks`` and its jobs in ``clinical.imports.jobs``.
"""

import csv
import io

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST
from import_export.admin import ExportMixin
from import_export.formats.base_formats import BINARY_FORMATS, CSV, XLSX
from import_export.forms import ExportForm

from clinical.imports import jobs as import_jobs
from clinical.imports.resources import ProviderLicenseResource, ProviderResource, neutralise
from core.access import record_access

PREVIEW_ROWS_SHOWN = 500
UPLOAD_EXTENSIONS = (".csv", ".txt", ".tsv", ".xlsx")


class InMemoryUploadHandler(FileUploadHandler):
    """Keep an upload in memory, up to ``IMPORT_MAX_MB``: import files never touch the disk.

    Django's default handlers spill uploads over 2.5 MB to a temporary file.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data, start):
        if self.buffer.tell() + len(raw_data) > settings.IMPORT_MAX_MB * 1024 * 1024:
            self.request.import_too_large = True
            self.buffer = io.BytesIO()
            raise SkipFile
        self.buffer.write(raw_data)

    def file_complete(self, file_size):
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            self.buffer, self.field_name, self.file_name, self.content_type, file_size, self.charset,
            self.content_type_extra,
        )  # fmt: skip


class LicenseFileForm(forms.Form):
    file = forms.FileField(label="License file", help_text="CSV (UTF-8 or Latin-1) or Excel .xlsx.")

    def __init__(self, *args, too_large: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.too_large = too_large

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith(UPLOAD_EXTENSIONS):
            raise forms.ValidationError("Upload a .csv or .xlsx file.")
        return upload

    def clean(self):
        if self.too_large:
            raise forms.ValidationError(f"The file is larger than {settings.IMPORT_MAX_MB} MB; split it.")
        return super().clean()


class AuditedExportMixin(ExportMixin):
    """Export of the filtered changelist as CSV or XLSX, neutralised and recorded as an access."""

    export_form_class = ExportForm
    export_formats = [CSV, XLSX]
    to_encoding = "utf-8-sig"  # Excel reads a CSV as UTF-8 only with the BOM
    import_export_change_list_template = "admin/clinical/change_list_import_export.html"

    def export_action(self, request):
        """Show the export form or send the file; a bad filter in the URL goes back to the list."""
        try:
            return super().export_action(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:{self._info('changelist')}") + "?e=1")

    def has_export_permission(self, request) -> bool:
        """Return True if the user may export this model (the role's export permission).

        Explicit, not left to ``IMPORT_EXPORT_EXPORT_PERMISSION_CODE``: without that setting
        django-import-export lets every console user export.
        """
        return request.user.has_perm(f"{self.opts.app_label}.export_{self.opts.model_name}")

    def get_export_data(self, file_format, request, queryset, **kwargs):
        """Return the file's content, recording the export (who, what, how many, which filters)."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        native = type(file_format) in BINARY_FORMATS
        dataset = self.get_data_for_export(request, queryset, force_native_type=native, **kwargs)
        record_access(
            request, kind="export", model=self.model, terms=request.META.get("QUERY_STRING", ""),
            detail=f"{len(dataset)} rows as {file_format.get_title()}",
        )  # fmt: skip
        content = file_format.export_data(dataset)
        return content if native else content.encode(self.to_encoding)

    def _info(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"


class ProviderExportMixin(AuditedExportMixin):
    resource_classes = [ProviderResource]


class LicenseImportExportMixin(AuditedExportMixin):
    """License export, and import through a checked preview that the user confirms."""

    resource_classes = [ProviderLicenseResource]

    def has_import_permission(self, request) -> bool:
        """Return True if the user may import licenses (the role's import permission)."""
        return request.user.has_perm(f"{self.opts.app_label}.import_{self.opts.model_name}")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        own = [
            path("import/", wrap(csrf_exempt(self.import_view)), name=self._info("import")),
            path("import/<str:token>/", wrap(self.import_job_view), name=self._info("import_job")),
            path("import/<str:token>/progress/", wrap(self.import_progress_view), name=self._info("import_progress")),
            path("import/<str:token>/confirm/", wrap(self.import_confirm_view), name=self._info("import_confirm")),
            path("import/<str:token>/cancel/", wrap(self.import_cancel_view), name=self._info("import_cancel")),
            path("import/<str:token>/report.csv", wrap(self.import_report_view), name=self._info("import_report")),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "has_import_permission": self.has_import_permission(request)}
        return super().changelist_view(request, extra_context)

    # --- pages -------------------------------------------------------------------------------

    def import_view(self, request):
        """Upload a file and start its check (the upload is kept in memory, then in PostgreSQL only)."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        # Before anything reads the body: which is why this view is CSRF-exempt and checks it below.
        request.upload_handlers = [InMemoryUploadHandler(request)]
        return csrf_protect(self._import_upload)(request)

    def _import_upload(self, request):
        form = LicenseFileForm()
        if request.method == "POST":
            form = LicenseFileForm(request.POST, request.FILES, too_large=getattr(request, "import_too_large", False))
            if form.is_valid():
                return self._start_check(request, form.cleaned_data["file"])
        return self._render(request, "import.html", {"form": form, "title": "Import licenses"})

    def _start_check(self, request, upload):
        data, name = upload.read(), _safe_name(upload.name)
        upload.close()
        return self._to_job(import_jobs.create_job(user=request.user, file_name=name, data=data))

    def import_job_view(self, request, token):
        """Show the job: its progress, its preview with confirm and cancel, or its outcome."""
        job = self._job(request, token)
        context = {"job": job, "status": job.status(), "title": f"Import {job.file_name}"}
        if job.phase == "previewed":
            context.update(self._preview_context(job))
        return self._render(request, "import_job.html", context)

    def import_progress_view(self, request, token):
        """Return the job's phase and progress as JSON, for the page's progress bar."""
        return JsonResponse(self._job(request, token).status())

    @method_decorator(require_POST)
    def import_confirm_view(self, request, token):
        """Apply a checked file without errors, in one transaction (in the job worker if large)."""
        job = self._job(request, token)
        if not import_jobs.confirm_job(job):
            self.message_user(request, "This import is no longer waiting for confirmation.", messages.WARNING)
        return self._to_job(job)

    @method_decorator(require_POST)
    def import_cancel_view(self, request, token):
        """Abandon a checked file: its preview and plan are deleted at once."""
        job = self._job(request, token)
        if import_jobs.cancel_job(job):
            self.message_user(request, f"Import of {job.file_name} cancelled; nothing was written.")
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:{self._info('changelist')}"))

    def import_report_view(self, request, token):
        """Return every row's outcome, changes and errors as CSV (neutralised), for large files."""
        preview = self._job(request, token).preview()
        if preview is None:
            raise Http404("This import's preview has expired.")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="import-report.csv"'
        response.write("\ufeff")
        writer = csv.writer(response)
        writer.writerow(["Line", "Outcome", "License (NPI state number)", "Column", "Problem", "Before", "After"])
        for row in preview["results"]:
            cells = [(row["line"], "error", row["key"], heading, message, "", "") for heading, message in row["errors"]]
            cells += [(row["line"], row["outcome"], row["key"], col, "", old, new) for col, old, new in row["changes"]]
            writer.writerows([neutralise(value) for value in line] for line in cells)
        return response

    # --- helpers -----------------------------------------------------------------------------

    def _job(self, request, token) -> import_jobs.ImportJob:
        if not self.has_import_permission(request):
            raise PermissionDenied
        job = import_jobs.get_job(token, request.user)
        if job is None:
            raise Http404("No such import (imports are kept for a limited time).")
        return job

    def _to_job(self, job) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:{self._info('import_job')}", args=[job.token]))

    def _preview_context(self, job) -> dict:
        preview = job.preview()
        if preview is None:
            return {"expired": True}
        results = preview["results"]
        errors = [row for row in results if row["outcome"] == "error"]
        changes = [row for row in results if row["outcome"] != "error"]
        return {
            "preview": preview,
            "errors": errors[:PREVIEW_ROWS_SHOWN],
            "changes": changes[:PREVIEW_ROWS_SHOWN],
            "more_errors": max(0, len(errors) - PREVIEW_ROWS_SHOWN),
            "more_changes": max(0, len(changes) - PREVIEW_ROWS_SHOWN),
            "can_confirm": not errors and (preview["counts"]["new"] or preview["counts"]["updated"]),
        }

    def _render(self, request, template: str, context: dict) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "required_columns": _headings(ProviderLicenseResource.required_columns),
            "optional_columns": _headings(ProviderLicenseResource.optional_columns),
            "max_mb": settings.IMPORT_MAX_MB,
            "max_rows": settings.IMPORT_MAX_ROWS,
            **context,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, f"admin/clinical/providerlicense/{template}", context)


def _headings(names) -> list[str]:
    return [ProviderLicenseResource.fields[name].column_name for name in names]


def _safe_name(name: str) -> str:
    """Return the upload's base name without control characters, as the history reason quotes it."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:150] or "file"

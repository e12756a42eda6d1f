"""The console's autocomplete endpoint: answers only for a field a page the user may open offers.

Django's ``AutocompleteJsonView`` checks the view permission on the model searched (the target)
but answers for any foreign key of any model, offered on a form or not. Here the source field
must also be one of the ``autocomplete_fields`` of a ModelAdmin (or of one of its inlines) whose
page the user may open: an endpoint serves its forms, nothing else. Answers naming patients or
visits are PHI reads: each is recorded with the terms and the records it returned.
"""

from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.core.exceptions import PermissionDenied

from core.access import record_access


def offers_autocomplete(admin_site, request, model, field_name: str) -> bool:
    """Return True if a console page the user may open shows ``model.field_name`` as an autocomplete."""
    for model_admin in admin_site._registry.values():
        if not model_admin.has_view_permission(request):
            continue
        for page in (model_admin, *model_admin.get_inline_instances(request)):
            if page.model is model and field_name in page.get_autocomplete_fields(request):
                return True
    return False


class ConsoleAutocompleteJsonView(AutocompleteJsonView):
    """Django's autocomplete, refused for fields that no page the user may open offers."""

    def process_request(self, request):
        """Validate the request as Django does; raise PermissionDenied for a field not offered to the user."""
        term, model_admin, source_field, to_field_name = super().process_request(request)
        if not offers_autocomplete(self.admin_site, request, source_field.model, source_field.name):
            raise PermissionDenied
        return term, model_admin, source_field, to_field_name

    def get_context_data(self, **kwargs):
        """Return the page of results; record it in the access log when it lists PHI records."""
        context = super().get_context_data(**kwargs)
        if getattr(self.model_admin, "phi_access", False):
            shown = context["object_list"] = list(context["object_list"])  # evaluated once, reused
            model = self.model_admin.model
            record_access(
                self.request, kind="search", model=model, records=shown, terms=self.term, source="autocomplete"
            )
        return context

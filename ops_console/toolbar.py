"""Who sees django-debug-toolbar: the Engineer role (its capability), nobody else, superusers included.

Its SQL panel never re-runs a stored query: the re-run's rows (patients, visits) would be PHI read
with no record, so those three toolbar URLs answer 403 (``ops_console/urls.py``).
"""

from django.contrib.auth.models import Permission
from django.http import HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

CAPABILITY = ("ops_console", "use_debug_toolbar")
RERUN_VIEWS = ("sql_select", "sql_explain", "sql_profile")


def show_toolbar(request) -> bool:
    """Return True for signed-in users whose role (a group) holds the debug toolbar capability.

    Asked of the groups, not ``has_perm``: a superuser holds every permission, but is not an engineer.
    """
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_active):
        return False
    cached = getattr(request, "_ops_show_toolbar", None)
    if cached is None:
        app_label, codename = CAPABILITY
        cached = Permission.objects.filter(
            group__user=user, content_type__app_label=app_label, codename=codename
        ).exists()
        request._ops_show_toolbar = cached
    return cached


@csrf_exempt  # it changes nothing, whoever asks
def rerun_refused(request) -> HttpResponseForbidden:
    """Answer the SQL panel's re-run buttons: re-running stored queries is off."""
    return HttpResponseForbidden(
        "Re-running stored queries is off: their rows would be patient data read with no record.",
        content_type="text/plain",
    )

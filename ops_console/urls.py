"""URL map: the console on its private path; /admin/ answers 404 and is recorded."""

from django.conf import settings
from django.urls import include, path, re_path

from ops_console import views
from ops_console.admin_site import ops_site

urlpatterns = [
    re_path(r"^admin(?:/(?P<rest>.*))?$", views.admin_probe),
    path(settings.OPS_ADMIN_PATH, ops_site.urls),
    path("api/v1/", include("clinical.api.urls")),
]

if settings.OPS_DEBUG_TOOLBAR:
    from debug_toolbar.toolbar import debug_toolbar_urls

    urlpatterns += debug_toolbar_urls()

"""URL map: the console on its private path; /admin/ answers 404 and is recorded; health at the root."""

import re

from django.conf import settings
from django.urls import include, path, re_path

from ops_console import health, toolbar, views
from ops_console.admin_site import ops_site

urlpatterns = [
    re_path(r"^admin(?:/(?P<rest>.*))?$", views.admin_probe),
    # The access log and security events moved from support to core (issue #14): old bookmarks follow.
    re_path(
        rf"^{re.escape(settings.OPS_ADMIN_PATH)}support/(?P<model>accesslog|securityevent)/(?P<rest>[0-9a-z/]*)$",
        views.moved_to_core,
    ),
    path(settings.OPS_ADMIN_PATH, ops_site.urls),
    path("api/v1/", include("clinical.api.urls")),
    # For load balancers and supervisors, open to anyone (ops_console/health.py says what each means).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]

if settings.OPS_DEBUG_TOOLBAR:
    # Mounted directly: debug_toolbar_urls() mounts nothing with DEBUG off, as the console runs,
    # and every page an engineer opened failed on the toolbar's missing URLs. Its views check
    # ops_console.toolbar.show_toolbar (the Engineer role) themselves and answer 404 to others.
    urlpatterns += [path(f"__debug__/{name}/", toolbar.rerun_refused) for name in toolbar.RERUN_VIEWS]
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))

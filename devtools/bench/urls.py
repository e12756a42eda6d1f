"""URLs used only by ``bench_admin``: the console and its vanilla baseline side by side."""

from django.urls import path

from devtools.bench.baseline_admin import baseline_site, register_baseline
from ops_console.admin_site import ops_site

register_baseline()

urlpatterns = [
    path("ops/", ops_site.urls),
    path("baseline/", baseline_site.urls),
]

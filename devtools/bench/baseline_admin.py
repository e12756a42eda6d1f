"""The vanilla baseline for ``bench_admin``: plain ModelAdmins with the console's columns.

Never served by the console: only ``devtools.bench.urls`` mounts it, for the benchmark to
compare what the hand-tuned admin saves (count queries, N+1 columns, unindexed ordering,
facets, ``icontains`` search over joins).
"""

from django.apps import apps
from django.contrib import admin
from django.utils import timezone

from ops_console.admin_site import ops_site

baseline_site = admin.AdminSite(name="baseline")


def _plain(field: str) -> str:
    return field.lstrip("=^@")


def _visits_today(self, obj):
    """Count the provider's visits today the straightforward way: one query per row."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return obj.visits.filter(requested_at__gte=midnight).count()


# Columns whose tuned versions read an annotation the vanilla queryset does not have.
NAIVE_COLUMNS = {"visits_today": _visits_today}


def _vanilla(model_admin: admin.ModelAdmin) -> type[admin.ModelAdmin]:
    """Return a plain ModelAdmin with the same columns, plain filters and default search."""
    columns = list(model_admin.list_display)
    methods = {name: getattr(type(model_admin), name) for name in columns if hasattr(type(model_admin), name)}
    methods.update({name: column for name, column in NAIVE_COLUMNS.items() if name in columns})
    plain_filters = [f for f in model_admin.list_filter if isinstance(f, str)]
    return type(
        f"Vanilla{type(model_admin).__name__}",
        (admin.ModelAdmin,),
        {
            **methods,
            "list_display": columns,
            "list_filter": plain_filters,
            "search_fields": [_plain(f) for f in model_admin.search_fields],
            "list_per_page": model_admin.list_per_page,  # same page size, a fair comparison
            # Without this the vanilla form renders a <select> of every visit: minutes at 1M rows,
            # which nobody would ship; raw id inputs keep the comparison about the rest of the page.
            "raw_id_fields": [f.name for f in model_admin.model._meta.fields if f.many_to_one],
        },
    )


def register_baseline() -> None:
    """Register a vanilla twin of every console ModelAdmin (idempotent)."""
    for model in apps.get_models():
        if ops_site.is_registered(model) and not baseline_site.is_registered(model):
            baseline_site.register(model, _vanilla(ops_site.get_model_admin(model)))

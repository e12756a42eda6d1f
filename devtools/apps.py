"""Developer tools: soaks, benchmarks and fault injection. Nothing in the console imports them."""

from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    name = "devtools"
    verbose_name = "Developer tools"
    default_auto_field = "django.db.models.BigAutoField"

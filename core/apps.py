from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The base layer's tables: the PHI access log, security events and the outbox."""

    name = "core"
    verbose_name = "Audit"
    default_auto_field = "django.db.models.BigAutoField"

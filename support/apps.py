from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"
    verbose_name = "Support"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """Open a routing case whenever clinical says a visit needs a person (same transaction)."""
        from clinical import hooks
        from support.actions import open_routing_case

        hooks.on_visit_needs_attention(open_routing_case)

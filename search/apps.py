from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """Register the outbox writer: every write the apps record through ``core.outbox`` lands here."""
        from core import outbox
        from search import outbox as search_outbox

        outbox.register(search_outbox.write, wants=search_outbox.wants)

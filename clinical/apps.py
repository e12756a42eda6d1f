from django.apps import AppConfig


class ClinicalConfig(AppConfig):
    name = "clinical"
    verbose_name = "Clinical"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        from clinical.calendar import sync_time_zones_after_migrate

        # The time zones of each state follow fixtures/us_states.json after every migrate.
        post_migrate.connect(sync_time_zones_after_migrate, sender=self, dispatch_uid="clinical.time_zones")

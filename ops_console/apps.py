"""The project app: roles, capabilities and console-wide commands."""

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_migrate


class OpsConsoleConfig(AppConfig):
    name = "ops_console"
    verbose_name = "Ops Console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from core import audit  # noqa: F401  (connects the history actor receiver)
        from ops_console.roles import sync_roles_after_migrate
        from ops_console.signin import note_sign_in

        # Runs after every app's permissions exist, so the role groups are complete.
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="ops_console.sync_roles")
        user_logged_in.connect(note_sign_in, dispatch_uid="ops_console.note_sign_in")

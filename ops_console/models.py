"""Console-wide models: capabilities that are not about one model's rows, and two-factor devices."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Capability(models.Model):
    """Carrier for console-wide permissions; it has no table and no rows."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("use_profiling", "Can read the slow pages report"),
            ("use_debug_toolbar", "Sees django-debug-toolbar on console pages"),
        ]

    def __str__(self) -> str:
        return "console capability"


class TotpDevice(models.Model):
    """A user's authenticator app for two-factor sign-in (ops_console/twofactor).

    The row exists only once the user has proved, with a code, that the app holds the secret;
    a secret being set up waits in the user's session. No page shows ``secret`` again.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device")
    secret = models.CharField(max_length=64, help_text="Base32; shown once, on the setup page.")
    confirmed_at = models.DateTimeField(default=timezone.now)
    # The step of the last code accepted: a code is good once, and no older one after it.
    last_used_step = models.BigIntegerField(null=True, blank=True)

    class Meta:
        default_permissions = ()  # written only through ops_console.twofactor.actions

    def __str__(self) -> str:
        return f"authenticator of user #{self.user_id}"

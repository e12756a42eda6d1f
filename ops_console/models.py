"""Console-wide models: capabilities that are not about one model's rows, and two-factor devices."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from ops_console import fieldcrypt


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
    a secret being set up waits in ``PendingTotpSecret``. No page shows the secret again, and it is
    stored encrypted (``ops_console.fieldcrypt``): read it through ``plain_secret``.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device")
    secret = models.TextField(help_text="Base32, encrypted with OPS_FIELD_KEY; shown once, on the setup page.")
    confirmed_at = models.DateTimeField(default=timezone.now)
    # The step of the last code accepted: a code is good once, and no older one after it.
    last_used_step = models.BigIntegerField(null=True, blank=True)

    class Meta:
        default_permissions = ()  # written only through ops_console.twofactor.actions

    def __str__(self) -> str:
        return f"authenticator of user #{self.user_id}"

    @property
    def plain_secret(self) -> str:
        """Return the secret in clear, for checking a code."""
        return fieldcrypt.decrypt(self.secret)


class PendingTotpSecret(models.Model):
    """A secret shown on the setup page, not yet proved by a code: kept here (encrypted), never in the session."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    secret = models.TextField(help_text="Encrypted with OPS_FIELD_KEY.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"authenticator being set up by user #{self.user_id}"


class BackupCode(models.Model):
    """A single-use code a user may give instead of one from the authenticator (a lost phone). Hashed."""

    # Indexed by the unique (user, code_hash) constraint, which leads with it.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    code_hash = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()
        constraints = [
            # Also the index of the lookup of a code given at sign-in.
            models.UniqueConstraint(fields=["user", "code_hash"], name="ops_console_backupcode_one_per_user_hash"),
        ]

    def __str__(self) -> str:
        return f"backup code of user #{self.user_id}"

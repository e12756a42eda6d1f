"""Console capabilities that are not about one model's rows."""

from django.db import models


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

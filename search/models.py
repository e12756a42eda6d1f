"""The search outbox (records waiting to be indexed) and the log of searches staff ran."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class OutboxEntry(models.Model):
    """A searchable record changed by a committed transaction, waiting for ``search_worker``.

    Written in the same transaction as the change (``search.outbox.record``), so a rolled-back
    change leaves no entry and a committed one always has one. The worker indexes the record as
    it is in PostgreSQL when it gets there and then deletes the entry; while Elasticsearch is
    unreachable the entry waits, ``available_at`` pushed back after each failed attempt.
    """

    label = models.CharField(max_length=40, help_text="Model of the record, e.g. clinical.patient.")
    object_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    available_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "outbox entries"
        default_permissions = ("view",)
        indexes = [
            # search_worker: entries due now, oldest first.
            models.Index(fields=["available_at", "id"], name="search_outbox_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.label}:{self.object_id}"


class SearchRecord(models.Model):
    """One search a staff user ran: who, when, what they typed, where, and which records it showed.

    Searches read PHI, so every one is kept (``search.access.record_search``); the access log of
    the security work extends this.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    at = models.DateTimeField(default=timezone.now, editable=False)
    terms = models.CharField(max_length=200)
    source = models.CharField(max_length=60, help_text="Where the search ran, e.g. global or clinical.patient list.")
    results = models.JSONField(default=list, help_text='Records shown, as "app.model:id".')

    class Meta:
        default_permissions = ("view",)
        ordering = ["-at", "-id"]
        indexes = [
            # Search record changelist default ordering (newest first).
            models.Index(fields=["-at", "-id"], name="search_record_at_idx"),
            # "What did this person search?" (access review per user).
            models.Index(fields=["user", "-at"], name="search_record_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.terms!r} at {self.at:%Y-%m-%d %H:%M:%S}"

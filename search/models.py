"""The search outbox: records waiting to be indexed. Searches staff run are in ``support.AccessLog``."""

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

"""The base layer's tables: the PHI access log (and who read each patient), security events and the outbox.

Every app writes to them (through ``core.access``, ``core.actions`` and ``core.outbox``) and none
owns them. The tables keep the names they were created with (``support_accesslog``,
``support_securityevent``, ``search_outboxentry``): moving a model between apps moved no data.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone


class SecurityEvent(models.Model):
    """Something security-relevant seen by the console (e.g. a probe of /admin/)."""

    class Kind(models.TextChoices):
        ADMIN_PROBE = "admin_probe", "Request to /admin/"
        PERMISSION_DENIED = "permission_denied", "Permission denied"
        SIGN_IN_FAILED = "sign_in_failed", "Sign-in failed"
        SIGN_IN_LOCKED = "sign_in_locked", "Sign-in refused: locked out"
        SIGN_IN_UNLOCKED = "sign_in_unlocked", "Sign-in unlocked by a lead"
        API_PROBING = "api_probing", "API: many refused or unknown requests"
        TWO_FACTOR_ENABLED = "two_factor_enabled", "Two-factor sign-in set up"
        TWO_FACTOR_FAILED = "two_factor_failed", "Two-factor code refused"
        TWO_FACTOR_RESET = "two_factor_reset", "Two-factor device reset"
        TWO_FACTOR_BACKUP_USED = "two_factor_backup_used", "Two-factor backup code used"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    path = models.CharField(max_length=500)
    method = models.CharField(max_length=10)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "support_securityevent"
        ordering = ["-at", "-id"]
        default_permissions = ("view",)
        indexes = [
            # Security event changelist default ordering (newest first).
            models.Index(fields=["-at", "-id"], name="support_securityevent_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M:%S}"


class AccessLog(models.Model):
    """One read of PHI: who, when, what (model and ids, or search terms), from where, through which path.

    Written only by ``core.access.record_access``, one row per request; removed only by
    ``prune_access_log``. ``patient_ids`` names the patients whose records were read (a visit's
    patient too), so "who viewed this patient" is one indexed lookup.
    """

    class Kind(models.TextChoices):
        VIEW = "view", "Viewed a record"
        LIST = "list", "Listed records"
        SEARCH = "search", "Searched"
        EXPORT = "export", "Exported"
        API_READ = "api_read", "API read"

    at = models.DateTimeField(default=timezone.now, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Indexed by support_accesslog_user_idx (user, -at), which leads with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    # The API client that read, named by its label like the user model is: the base layer keeps a
    # foreign key (a client that read PHI cannot be deleted) without importing the app that owns it.
    api_client = models.ForeignKey(
        "clinical.ApiClient", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=100, blank=True, help_text='"clinical.patient"; empty for a global search.')
    object_ids = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    patient_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    terms = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=60, blank=True, help_text="Where it happened, e.g. global search.")
    path = models.CharField(max_length=500, blank=True)
    method = models.CharField(max_length=10, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    detail = models.CharField(max_length=200, blank=True)
    # The request's id (core.request_id): the same as in its log lines and its X-Request-ID header.
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "support_accesslog"
        ordering = ["-at", "-id"]
        default_permissions = ("view",)
        indexes = [
            # Access log changelist default ordering (newest first) and its date range filter.
            models.Index(fields=["-at", "-id"], name="support_accesslog_at_idx"),
            # Access log filtered by user ("what did this person read?").
            models.Index(fields=["user", "-at"], name="support_accesslog_user_idx"),
            # "Who viewed this patient?" (patient change page, patient filter).
            GinIndex(fields=["patient_ids"], name="support_accesslog_patient_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M:%S}"


class PatientReader(models.Model):
    """Who read a patient's records: one row per patient and staff member, kept by PostgreSQL.

    The access log's own summary, for the patient page's "who read this patient's records": a
    patient on the first page of the patient list is read by every agent who opens it, every day,
    and aggregating their log rows grew with the log. Triggers on ``support_accesslog`` keep it
    (``core/migrations/0005_patient_readers.py``): a statement that adds access rows adds their
    staff reads here, and pruning takes the pruned reads away (a reader with none left is removed),
    so ``reads`` and ``last_read_at`` are always those of the log's rows. Never written by Python.
    """

    patient_id = models.BigIntegerField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    last_read_at = models.DateTimeField()
    reads = models.PositiveBigIntegerField()

    class Meta:
        default_permissions = ()  # read on the patient page, under the access log's view permission
        constraints = [
            # One row per patient and reader (the triggers' upsert); the patient page's readers,
            # every row of one patient (as many as the staff who read them), latest first.
            models.UniqueConstraint(fields=["patient_id", "user"], name="core_patientreader_patient_user_uniq"),
        ]

    def __str__(self) -> str:
        return f"patient {self.patient_id}: {self.reads} read(s) by user {self.user_id}"


class OutboxEntry(models.Model):
    """A searchable record changed by a committed transaction, waiting for ``search_worker``.

    Written in the same transaction as the change (``core.outbox.record``, through the writer
    ``search`` registers), so a rolled-back change leaves no entry and a committed one always
    has one. The worker indexes the record as it is in PostgreSQL when it gets there and then
    deletes the entry; while Elasticsearch is unreachable the entry waits, ``available_at``
    pushed back after each failed attempt.
    """

    label = models.CharField(max_length=40, help_text="Model of the record, e.g. clinical.patient.")
    object_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    available_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        db_table = "search_outboxentry"
        verbose_name_plural = "outbox entries"
        default_permissions = ("view",)
        indexes = [
            # search_worker: entries due now, oldest first.
            models.Index(fields=["available_at", "id"], name="search_outbox_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.label}:{self.object_id}"

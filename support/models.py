"""Support cases and their notes, and security events that ops leads review."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from core.audit import AuditedHistoryModel


class CaseCategory(models.TextChoices):
    VISIT_PROBLEM = "visit_problem", "Visit problem"
    ROUTING = "routing", "Routing / long wait"
    TECHNICAL = "technical", "Technical (app, video)"
    BILLING = "billing", "Billing"
    CLINICAL = "clinical", "Clinical escalation"
    PRIVACY = "privacy", "Privacy / records request"
    OTHER = "other", "Other"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    PENDING = "pending", "Pending (waiting on someone)"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


OPEN_CASE_STATUSES = (CaseStatus.OPEN, CaseStatus.PENDING)


class CasePriority(models.IntegerChoices):
    LOW = 0, "Low"
    NORMAL = 1, "Normal"
    HIGH = 2, "High"
    URGENT = 3, "Urgent"


class SupportCase(models.Model):
    """A support request about a patient and/or a visit."""

    subject = models.CharField(max_length=200)
    category = models.CharField(max_length=20, choices=CaseCategory.choices, default=CaseCategory.OTHER)
    status = models.CharField(max_length=10, choices=CaseStatus.choices, default=CaseStatus.OPEN)
    priority = models.SmallIntegerField(choices=CasePriority.choices, default=CasePriority.NORMAL)
    patient = models.ForeignKey(
        "clinical.Patient", on_delete=models.PROTECT, null=True, blank=True, related_name="support_cases"
    )
    visit = models.ForeignKey(
        "clinical.Visit", on_delete=models.PROTECT, null=True, blank=True, related_name="support_cases"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="assigned_cases"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="created_cases",
        help_text="Empty when the system opened the case.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = HistoricalRecords(bases=[AuditedHistoryModel])

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Support case changelist default ordering (newest first).
            models.Index(fields=["-created_at", "-id"], name="support_case_created_idx"),
            # Dashboard "open support cases" and the changelist's status filter.
            models.Index(fields=["status", "-created_at"], name="support_case_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(patient__isnull=False) | Q(visit__isnull=False),
                name="support_supportcase_patient_or_visit",
                violation_error_message="A case must name a patient or a visit.",
            ),
        ]

    def __str__(self) -> str:
        return f"Case #{self.pk}: {self.subject}"


class CaseNote(models.Model):
    """A note on a support case; notes are appended, never edited."""

    case = models.ForeignKey(SupportCase, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # Support case change page: the case's notes in order.
            models.Index(fields=["case", "created_at", "id"], name="support_casenote_case_idx"),
        ]

    def __str__(self) -> str:
        return f"Note on case #{self.case_id}"


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

    Written only by ``support.access.record_access``, one row per request; removed only by
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
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
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

    class Meta:
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

"""Support cases and their notes. The PHI access log and security events are the base layer's (``core.models``)."""

from django.conf import settings
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
            # Support case changelist priority and category filters, newest first.
            models.Index(fields=["priority", "-created_at", "-id"], name="support_case_priority_idx"),
            models.Index(fields=["category", "-created_at", "-id"], name="support_case_category_idx"),
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

    # Indexed by support_casenote_case_idx (case, created_at, id), which leads with it.
    case = models.ForeignKey(SupportCase, on_delete=models.CASCADE, related_name="notes", db_index=False)
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

"""Clinical domain: providers and their state licenses, patients, visits and visit timelines.

Status and availability are assigned only by ``clinical.actions``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Case, Q, When
from django.db.models.functions import Coalesce, Now
from django.utils import timezone
from simple_history.models import HistoricalRecords

from clinical.calendar import LicenseValidAt
from clinical.reference import SPECIALTY_CHOICES, STATE_CHOICES
from clinical.validators import new_public_id, validate_e164, validate_npi
from core.audit import ActorKind, AuditedHistoryModel

IMPORT_EXPORT_PERMISSIONS = ("add", "change", "delete", "view", "import", "export")


class Availability(models.TextChoices):
    OFFLINE = "offline", "Offline"
    AVAILABLE = "available", "Available"
    RESERVED = "reserved", "Reserved (offer out)"
    BUSY = "busy", "Busy (in a visit)"


class Provider(models.Model):
    """A clinician who takes video visits in the states where they hold an active license."""

    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    npi = models.CharField("NPI", max_length=10, unique=True, validators=[validate_npi])
    email = models.EmailField()
    phone = models.CharField(max_length=16, validators=[validate_e164], help_text="E.164, e.g. +15551234567")
    specialty = models.CharField(max_length=40, choices=SPECIALTY_CHOICES)
    is_active = models.BooleanField(default=True)
    availability = models.CharField(max_length=12, choices=Availability.choices, default=Availability.OFFLINE)
    available_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    history = HistoricalRecords(bases=[AuditedHistoryModel])

    class Meta:
        default_permissions = IMPORT_EXPORT_PERMISSIONS
        ordering = ["last_name", "first_name", "id"]
        indexes = [
            # Provider changelist default ordering (last name, first name, pk).
            models.Index(fields=["last_name", "first_name", "id"], name="clinical_provider_name_idx"),
            # Dashboard "providers available" and the router's longest-idle pick.
            models.Index(
                fields=["available_since"],
                name="clinical_provider_avail_idx",
                condition=Q(availability="available"),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(npi__regex=r"^\d{10}$"), name="clinical_provider_npi_digits"),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name} ({self.npi})"

    @property
    def full_name(self) -> str:
        """Return the name as shown in lists."""
        return f"{self.first_name} {self.last_name}"


class LicenseType(models.TextChoices):
    MD = "MD", "MD"
    DO = "DO", "DO"
    NP = "NP", "NP"
    PA = "PA", "PA"


class LicenseStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PENDING = "pending", "Pending"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


class ProviderLicenseQuerySet(models.QuerySet):
    def valid_at(self, at=None):
        """Return licenses that count at instant ``at`` (now by the database's clock) in the state's calendar."""
        return self.filter(LicenseValidAt(at))


class ProviderLicense(models.Model):
    """A provider's license to practise in one state."""

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="licenses")
    state = models.CharField(max_length=2, choices=STATE_CHOICES)
    license_number = models.CharField(max_length=40)
    license_type = models.CharField(max_length=2, choices=LicenseType.choices)
    status = models.CharField(max_length=10, choices=LicenseStatus.choices, default=LicenseStatus.PENDING)
    issued_on = models.DateField()
    expires_on = models.DateField(null=True, blank=True, help_text="Last day the license is valid.")
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)

    objects = ProviderLicenseQuerySet.as_manager()
    # Its history's id is indexed by clinical_historicallicense_asof_idx (id, history_date).
    history = HistoricalRecords(bases=[AuditedHistoryModel], no_db_index=["id"])

    class Meta:
        default_permissions = IMPORT_EXPORT_PERMISSIONS
        ordering = ["state", "provider_id", "id"]
        indexes = [
            # License changelist default ordering (state, provider, pk).
            models.Index(fields=["state", "provider", "id"], name="clinical_license_state_idx"),
            # Dashboard "licenses expiring in 30 days" and the expiry sweep.
            models.Index(fields=["expires_on"], name="clinical_license_expiry_idx", condition=Q(status="active")),
            # License changelist search and import matching by number.
            models.Index(fields=["license_number"], name="clinical_license_number_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "state"],
                condition=Q(status="active"),
                name="clinical_providerlicense_one_active_per_state",
                violation_error_message="This provider already has an active license in this state.",
            ),
            models.CheckConstraint(
                condition=Q(expires_on__isnull=True) | Q(expires_on__gt=models.F("issued_on")),
                name="clinical_providerlicense_expires_after_issued",
                violation_error_message="The expiry date must be after the issue date.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.license_type} {self.license_number}"


class Patient(models.Model):
    """A person who requests visits; one flat address on the row."""

    mrn = models.CharField("MRN", max_length=12, unique=True, editable=False)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=16, validators=[validate_e164], help_text="E.164, e.g. +15551234567")
    address_line1 = models.CharField("address line 1", max_length=200, blank=True)
    address_line2 = models.CharField("address line 2", max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=2, choices=STATE_CHOICES, blank=True)
    postal_code = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    history = HistoricalRecords(bases=[AuditedHistoryModel])

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        indexes = [
            # Patient changelist default ordering (last name, first name, pk).
            models.Index(fields=["last_name", "first_name", "id"], name="clinical_patient_name_idx"),
            # Patient changelist state filter, in the list's order (a state's patients, first page by name).
            models.Index(fields=["state", "last_name", "first_name", "id"], name="clinical_patient_state_idx"),
            # Support agents find callers by date of birth (patient changelist search/filter).
            models.Index(fields=["date_of_birth"], name="clinical_patient_dob_idx"),
            # Support agents find callers by the phone number they read out.
            models.Index(fields=["phone"], name="clinical_patient_phone_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name} ({self.mrn})"


class Priority(models.IntegerChoices):
    # Integers so that the queue orders by priority with a plain index scan.
    ROUTINE = 0, "Routine"
    ELEVATED = 1, "Elevated"
    URGENT = 2, "Urgent"


class VisitStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    OFFERED = "offered", "Offered"
    ACCEPTED = "accepted", "Accepted"
    CONNECTING = "connecting", "Connecting"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"


# A provider holds at most one visit in these statuses (clinical_visit_one_active_per_provider).
PROVIDER_HOLDING_STATUSES = (
    VisitStatus.OFFERED,
    VisitStatus.ACCEPTED,
    VisitStatus.CONNECTING,
    VisitStatus.IN_PROGRESS,
)
OPEN_STATUSES = (VisitStatus.WAITING, *PROVIDER_HOLDING_STATUSES)
FINAL_STATUSES = (VisitStatus.COMPLETED, VisitStatus.CANCELLED, VisitStatus.EXPIRED, VisitStatus.FAILED)


class Visit(models.Model):
    """A patient's request for a video visit, from waiting to its end."""

    public_id = models.CharField("visit id", max_length=9, unique=True, default=new_public_id, editable=False)
    # Not indexed alone: clinical_visit_patient_idx and clinical_visit_provider_idx lead with them.
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="visits", db_index=False)
    located_state = models.CharField(
        max_length=2, choices=STATE_CHOICES, help_text="Where the patient is at request time."
    )
    reason = models.TextField()
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.ROUTINE)
    status = models.CharField(max_length=12, choices=VisitStatus.choices, default=VisitStatus.WAITING)
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, null=True, blank=True, related_name="visits", db_index=False
    )
    # The database's clock at the insert (returned to the instance): the one clock every process shares.
    requested_at = models.DateTimeField(db_default=Now())
    offered_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    offer_count = models.PositiveSmallIntegerField(default=0)

    history = HistoricalRecords(bases=[AuditedHistoryModel])

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [("cancel_visit", "Can cancel a visit from the console")]
        indexes = [
            # Visit changelist default ordering (newest request first, pk tie-breaker).
            models.Index(fields=["-requested_at", "-id"], name="clinical_visit_requested_idx"),
            # Router queue and dashboard "waiting now by state": priority then age per state.
            models.Index(
                fields=["located_state", "-priority", "requested_at", "id"],
                name="clinical_visit_queue_idx",
                condition=Q(status="waiting"),
            ),
            # Visit changelist status filter, newest first.
            models.Index(fields=["status", "-requested_at", "-id"], name="clinical_visit_status_idx"),
            # Visit changelist state filter, newest first.
            models.Index(fields=["located_state", "-requested_at", "-id"], name="clinical_visit_state_idx"),
            # Visit changelist priority filter, newest first.
            models.Index(fields=["priority", "-requested_at", "-id"], name="clinical_visit_priority_idx"),
            # Patient page "latest visits" (patient FK plus order).
            models.Index(fields=["patient", "-requested_at"], name="clinical_visit_patient_idx"),
            # Routing invariants: visits accepted since a time.
            models.Index(
                fields=["accepted_at"], name="clinical_visit_accepted_idx", condition=Q(accepted_at__isnull=False)
            ),
            # Live queues page: waits of the visits that left the queue in the last hour
            # (accepted, cancelled or expired; clinical.selectors.LEFT_QUEUE_SQL).
            models.Index(
                Coalesce("accepted_at", "cancelled_at", Case(When(status="expired", then="ended_at"))),
                name="clinical_visit_left_idx",
            ),
            # Queue history (oversight.history): visits cancelled in a minute.
            models.Index(
                fields=["cancelled_at"], name="clinical_visit_cancelled_idx", condition=Q(cancelled_at__isnull=False)
            ),
            # Queue history: visits that expired unrouted in a minute.
            models.Index(fields=["ended_at"], name="clinical_visit_expired_idx", condition=Q(status="expired")),
            # Live queues page: offers out per state.
            models.Index(fields=["located_state"], name="clinical_visit_offered_idx", condition=Q(status="offered")),
            # Provider page "visits today" (provider FK plus order).
            models.Index(fields=["provider", "-requested_at"], name="clinical_visit_provider_idx"),
            # Router: waiting visits past the maximum wait.
            models.Index(fields=["requested_at"], name="clinical_visit_waiting_idx", condition=Q(status="waiting")),
            # Router: accepted visits that never connected (ROUTING_CONNECT_TIMEOUT).
            models.Index(
                fields=["accepted_at"],
                name="clinical_visit_connecting_idx",
                condition=Q(status__in=["accepted", "connecting"]),
            ),
            # Router: visits in progress past ROUTING_MAX_VISIT_MINUTES.
            models.Index(fields=["started_at"], name="clinical_visit_running_idx", condition=Q(status="in_progress")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider"],
                condition=Q(status__in=[s.value for s in PROVIDER_HOLDING_STATUSES]),
                name="clinical_visit_one_active_per_provider",
                violation_error_message="This provider already holds an offered or active visit.",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=[s.value for s in PROVIDER_HOLDING_STATUSES]) | Q(provider__isnull=False),
                name="clinical_visit_provider_when_assigned",
            ),
            # A retried or repeated request never books a patient twice.
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(status__in=[s.value for s in OPEN_STATUSES]),
                name="clinical_visit_one_open_per_patient",
                violation_error_message="This patient already has an open visit.",
            ),
        ]

    def __str__(self) -> str:
        return f"Visit {self.public_id}"

    @property
    def is_open(self) -> bool:
        """Return True while the visit has not reached a final status."""
        return self.status in OPEN_STATUSES


class VisitEvent(models.Model):
    """One transition in a visit's timeline; rows are only ever appended."""

    # Indexed by clinical_visitevent_visit_idx (visit, at, id); the two below by partial indexes.
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="events", db_index=False)
    from_status = models.CharField(max_length=12, choices=VisitStatus.choices, blank=True)
    to_status = models.CharField(max_length=12, choices=VisitStatus.choices)
    at = models.DateTimeField(default=timezone.now)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            # Visit change page timeline: events of one visit in order.
            models.Index(fields=["visit", "at", "id"], name="clinical_visitevent_visit_idx"),
            # VisitEvent changelist default ordering (newest first).
            models.Index(fields=["-at", "-id"], name="clinical_visitevent_at_idx"),
            # VisitEvent changelist actor filter, newest first (rare actors would scan the table).
            models.Index(fields=["actor_kind", "-at", "-id"], name="clinical_visitevent_actor_idx"),
            # Deleting a user or provider (PROTECT: are there events of theirs?), and a provider's
            # events of some visits (clinical.push.messages). Partial: most events have neither
            # (the patient's and the router's), and a full index kept an entry for every NULL.
            models.Index(fields=["staff_user"], name="clinical_event_staff_idx", condition=Q(staff_user__isnull=False)),
            models.Index(fields=["provider"], name="clinical_event_provider_idx", condition=Q(provider__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


class OfferOutcome(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    EXPIRED = "expired", "Not answered in time"
    WITHDRAWN = "withdrawn", "Withdrawn"
    CANCELLED = "cancelled", "Cancelled by the patient"


# After these, the provider is offered the visit again only past ROUTING_REOFFER_AFTER, and only
# when nobody else eligible is free (clinical.routing).
SPURNED_OUTCOMES = (OfferOutcome.DECLINED, OfferOutcome.EXPIRED)


class Offer(models.Model):
    """One offer of a visit to a provider: when, until when, and how it ended (the routing record).

    Times come from the database's clock. Written only by ``clinical.actions``.
    """

    # Indexed by clinical_offer_visit_idx and clinical_offer_provider_idx, which lead with them.
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="offers", db_index=False)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="offers", db_index=False)
    license = models.ForeignKey(
        ProviderLicense, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The license that let the provider take the visit when it was offered.",
    )  # fmt: skip
    offered_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    outcome = models.CharField(max_length=10, choices=OfferOutcome.choices, null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    router_epoch = models.BigIntegerField(null=True, blank=True, help_text="Lease epoch of the router that made it.")

    class Meta:
        ordering = ["offered_at", "id"]
        indexes = [
            # Visit page: the visit's offers in order; the router's "who declined this visit".
            models.Index(fields=["visit", "offered_at"], name="clinical_offer_visit_idx"),
            # A provider's offers, newest first (acceptance rate per provider).
            models.Index(fields=["provider", "-offered_at"], name="clinical_offer_provider_idx"),
            # Router: open offers past their deadline.
            models.Index(fields=["expires_at"], name="clinical_offer_open_idx", condition=Q(outcome__isnull=True)),
            # Queue history (oversight.history): offers made in a minute, and acceptance per provider over a period.
            # Covering: the per-provider table reads a period's offers from the index alone.
            models.Index(fields=["offered_at"], include=["provider", "outcome"], name="clinical_offer_offered_idx"),
            # Queue history: offers answered or timed out in a minute.
            models.Index(
                fields=["decided_at"], name="clinical_offer_decided_idx", condition=Q(decided_at__isnull=False)
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["visit"], condition=Q(outcome__isnull=True), name="clinical_offer_one_open_per_visit"
            ),
            models.UniqueConstraint(
                fields=["provider"], condition=Q(outcome__isnull=True), name="clinical_offer_one_open_per_provider"
            ),
            models.CheckConstraint(
                condition=Q(outcome__isnull=True, decided_at__isnull=True)
                | Q(outcome__isnull=False, decided_at__isnull=False),
                name="clinical_offer_decided_iff_outcome",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("offered_at")), name="clinical_offer_expires_after_offered"
            ),
        ]

    def __str__(self) -> str:
        return f"Offer of visit {self.visit_id} to provider {self.provider_id}"


class StateTimeZone(models.Model):
    """One IANA time zone a state or territory spans (``fixtures/us_states.json``; see ``clinical.calendar``)."""

    state = models.CharField(max_length=2, choices=STATE_CHOICES)
    time_zone = models.CharField(max_length=64)

    class Meta:
        constraints = [
            # Also the index of clinical_license_valid_at's lookup by state.
            models.UniqueConstraint(fields=["state", "time_zone"], name="clinical_statetimezone_one_row_per_zone"),
        ]

    def __str__(self) -> str:
        return f"{self.state}: {self.time_zone}"


class ApiScope(models.TextChoices):
    PATIENT = "patient", "Patient app"
    PROVIDER = "provider", "Provider app"


class ApiClient(models.Model):
    """A caller of the JSON API, bound to its owner: a patient token acts for one patient, a provider
    token for one provider. Only a hash of its bearer token is stored; it expires, and revoking it is final.
    """

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=10, choices=ApiScope.choices)
    provider = models.ForeignKey(
        Provider,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="api_clients",
        help_text="Provider-scope tokens act for this provider only.",
    )
    patient = models.ForeignKey(
        Patient,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="api_clients",
        help_text="Patient-scope tokens act for this patient only.",
    )
    token_prefix = models.CharField(max_length=12, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField(default=True, help_text="Revoking a client is final.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="OPS_API_TOKEN_DAYS after creation."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = HistoricalRecords(bases=[AuditedHistoryModel], excluded_fields=["last_used_at"])

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope="provider", provider__isnull=False, patient__isnull=True)
                | Q(scope="patient", provider__isnull=True, patient__isnull=False)
                # Patient tokens from before they were bound to one patient: revoked, never used again.
                | Q(scope="patient", provider__isnull=True, patient__isnull=True, is_active=False),
                name="clinical_apiclient_owner_matches_scope",
                violation_error_message=(
                    "A provider-scope client names one provider; a patient-scope client one patient."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"


class ApiIdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a client sent with a request, and the answer it got (replayed for 24 hours)."""

    # Indexed by the unique (client, key) constraint, which leads with it.
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    response = models.JSONField()
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            # Also the index of the lookup by client and key.
            models.UniqueConstraint(fields=["client", "key"], name="clinical_apiidempotencykey_one_per_client_key"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id}: {self.key}"


# The router's own tables live with the router; importing them here registers them with Django.
from clinical.routing.models import RouterHealth, RouterLease  # noqa: E402, F401


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    CHECKING = "checking", "Checking"
    PREVIEWED = "previewed", "Checked, waiting for confirmation"
    APPLYING = "applying", "Applying"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ImportUpload(models.Model):
    """An uploaded license file and its import's outcome: the durable truth of an import job.

    The bytes and the checked plan are kept only while the import needs them (until it is done,
    failed or cancelled); the row itself stays as the record of what happened. Its status is
    assigned only by ``clinical.imports.jobs``.
    """

    token = models.CharField(max_length=32, unique=True)  # unguessable, in the console's URLs
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    file_name = models.CharField(max_length=150)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    data = models.BinaryField()
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    message = models.TextField(blank=True)
    counts = models.JSONField(default=dict, blank=True)  # the preview's counts, then what was written
    plan = models.JSONField(null=True, blank=True)  # the checked plan, between the check and the apply
    task_id = models.CharField(max_length=64, blank=True)  # the django-tasks result of its current step
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())  # the database clock, at each step and progress

    def __str__(self) -> str:
        return f"{self.file_name} ({self.status})"

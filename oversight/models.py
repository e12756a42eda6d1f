"""Queue history (one row per minute, state and priority, rolled up per hour and per day) and alerts.

History is written by one process at a time (``oversight.worker``), minute by minute, from the
visit and offer rows: each minute is recorded once (``RecordedMinute`` is its receipt, written in
the same transaction), so a writer that takes over after a failover fills the gap and never counts
a minute twice. Rows exist only for a (minute, state, priority) where something happened or
somebody waited.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from clinical.models import Priority
from clinical.reference import STATE_CHOICES

# Upper bounds (seconds) of the wait bands of ``wait_hist``; the last band is open-ended. Wait
# percentiles over any period are estimated from the summed bands (interpolated inside a band).
WAIT_BANDS = (15, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 2700, 3600)


def no_waits() -> list[int]:
    """Return an empty wait histogram (one count per band of ``WAIT_BANDS`` and the open band)."""
    return [0] * (len(WAIT_BANDS) + 1)


class Counts(models.Model):
    """What every resolution counts: visits and offers in the period, and waits of the visits that left."""

    requested = models.PositiveIntegerField(default=0, help_text="Visits requested.")
    cancelled = models.PositiveIntegerField(default=0, help_text="Visits cancelled while in the queue or later.")
    expired = models.PositiveIntegerField(default=0, help_text="Visits that expired unrouted.")
    offers_made = models.PositiveIntegerField(default=0)
    offers_accepted = models.PositiveIntegerField(default=0)
    offers_declined = models.PositiveIntegerField(default=0)
    offers_expired = models.PositiveIntegerField(default=0, help_text="Offers not answered in time.")
    # Visits that left the queue (accepted, cancelled or expired, whichever came first): their waits.
    left = models.PositiveIntegerField(default=0)
    within_sla = models.PositiveIntegerField(default=0, help_text="Of those, accepted within the priority's target.")
    wait_sum_s = models.FloatField(default=0)
    wait_max_s = models.FloatField(default=0)
    wait_hist = ArrayField(models.IntegerField(), size=len(WAIT_BANDS) + 1, default=no_waits)
    # Eligible providers in the state (licensed there now, active): sampled at the end of the
    # period by a writer that was running then; NULL for periods filled in later from the rows.
    available = models.IntegerField(null=True, blank=True)
    offline = models.IntegerField(null=True, blank=True)

    class Meta:
        abstract = True


class QueueCounts(Counts):
    """The counts of one state's queue at one priority."""

    state = models.CharField(max_length=2, choices=STATE_CHOICES)
    priority = models.SmallIntegerField(choices=Priority.choices)

    class Meta:
        abstract = True


class QueueMinute(QueueCounts):
    """One minute of one state's queue at one priority (``minute`` is the minute's start)."""

    minute = models.DateTimeField()
    waiting = models.PositiveIntegerField(default=0, help_text="In the queue at the minute's end.")
    longest_wait_s = models.PositiveIntegerField(default=0, help_text="Longest wait in the queue at the minute's end.")

    class Meta:
        constraints = [
            # The writer's ON CONFLICT target; also serves every period read (a range of minutes).
            models.UniqueConstraint(fields=["minute", "state", "priority"], name="oversight_queueminute_key"),
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.state} {self.get_priority_display()}"


class QueueHour(QueueCounts):
    """An hour of ``QueueMinute`` rows summed (written once the hour's last minute is recorded)."""

    hour = models.DateTimeField()
    waiting_sum = models.PositiveIntegerField(default=0, help_text="Sum over the hour's minutes of those waiting.")
    waiting_max = models.PositiveIntegerField(default=0)
    longest_wait_s = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # The rollup's ON CONFLICT target; also serves the 24 h, 7 d and 30 d reads (a range of hours).
            models.UniqueConstraint(fields=["hour", "state", "priority"], name="oversight_queuehour_key"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.state} {self.get_priority_display()}"


class QueueDay(QueueCounts):
    """A UTC day of ``QueueHour`` rows summed (written with the rollup of the day's last hour).

    The periods of a day or more sum their whole days from these rows (at most 56 states × 3
    priorities a day) instead of from the day's hours (up to 24 times as many).
    """

    day = models.DateTimeField(help_text="The day's start (midnight UTC).")
    waiting_sum = models.PositiveIntegerField(default=0, help_text="Sum over the day's minutes of those waiting.")
    waiting_max = models.PositiveIntegerField(default=0)
    longest_wait_s = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # The rollup's ON CONFLICT target; also serves the 7 d and 30 d tables' read (a range of days).
            models.UniqueConstraint(fields=["day", "state", "priority"], name="oversight_queueday_key"),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.state} {self.get_priority_display()}"


class QueueHourTotal(Counts):
    """An hour of ``QueueHour`` rows summed over every state and priority (written with them): the charts' read.

    ``available`` is the fewest available in one state, ``offline`` the most offline in one state,
    as when the charts summed the hour rows themselves.
    """

    hour = models.DateTimeField(unique=True)  # the unique index serves the charts' read (a range of hours)
    waiting_sum = models.PositiveIntegerField(default=0, help_text="Sum over the hour's minutes of those waiting.")
    waiting_peak = models.PositiveIntegerField(default=0, help_text="Most waiting at once in one queue.")
    total_peak = models.PositiveIntegerField(
        default=0, help_text="Each queue's most waiting at once, added up (an upper bound of the most in all)."
    )
    longest_wait_s = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h, all queues"


class RecordedMinute(models.Model):
    """The receipt of a recorded minute: written with its rows, so each minute is recorded once."""

    minute = models.DateTimeField(primary_key=True)
    recorded_at = models.DateTimeField()
    writer = models.CharField(max_length=200)
    sampled = models.BooleanField(help_text="Provider counts were sampled when the minute ended.")

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} by {self.writer}"


class ProviderAcceptance(models.Model):
    """A provider among those most needing attention over a period of a day or more (the oversight worker's ranking).

    Summing a period's offers per provider reads every offer of the period (750,000 in 30 days at
    ten million visits): the worker ranks them every ``OPS_STATS_PROVIDERS_SECONDS`` and keeps the
    first ``PROVIDER_ROWS``; the 24 h, 7 d and 30 d pages read these rows.
    """

    period = models.CharField(max_length=4, help_text="The statistics period's key (24h, 7d, 30d).")
    rank = models.PositiveIntegerField(help_text="1 for the provider most needing attention.")
    # The foreign key's index serves a provider's deletion (rare: providers are deactivated).
    provider = models.ForeignKey("clinical.Provider", on_delete=models.CASCADE, related_name="+")
    made = models.PositiveIntegerField()
    accepted = models.PositiveIntegerField()
    declined = models.PositiveIntegerField()
    unanswered = models.PositiveIntegerField()
    providers = models.PositiveIntegerField(help_text="Providers offered visits in the period, ranked or not.")
    start = models.DateTimeField(help_text="The offers counted were made from here…")
    end = models.DateTimeField(help_text="…up to here (excluded).")
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            # The page's read: a period's first ranks, in order (and one row per rank).
            models.UniqueConstraint(fields=["period", "rank"], name="oversight_provideracceptance_key"),
        ]

    def __str__(self) -> str:
        return f"{self.period} #{self.rank}"


class AlertKind(models.TextChoices):
    NO_PROVIDER = "no_provider", "Patients waiting, no provider on shift"
    WAIT_OVER_TARGET = "wait_over_target", "Longest wait past its target"
    NO_ROUTER = "no_router", "No router leading"
    OUTBOX_STALE = "outbox_stale", "Search outbox behind"


class Alert(models.Model):
    """One opening of an alert condition: opened, acknowledged by a person, resolved when it cleared.

    At most one open alert per (kind, subject): the partial unique index is what makes an opening,
    and its notifications, happen once.
    """

    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    subject = models.CharField(
        max_length=40, blank=True, help_text="What the condition is about, e.g. TX or TX/urgent."
    )
    state = models.CharField(max_length=2, choices=STATE_CHOICES, blank=True)
    message = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    opened_by = models.CharField(max_length=200, help_text="The process that saw the condition.")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("acknowledge_alert", "Can acknowledge alerts")]
        default_permissions = ("view",)
        ordering = ["-opened_at", "-id"]
        constraints = [
            # One open alert per condition and subject; the evaluator's ON CONFLICT target.
            models.UniqueConstraint(
                fields=["kind", "subject"], condition=Q(resolved_at__isnull=True), name="oversight_alert_one_open"
            ),
        ]
        indexes = [
            # The alert list, newest first, and its "open" filter.
            models.Index(fields=["-opened_at", "-id"], name="oversight_alert_opened_idx"),
        ]

    def __str__(self) -> str:
        return self.message


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class AlertDelivery(models.Model):
    """One notification of an alert opening on one channel, written with the alert (an outbox)."""

    # Indexed by the unique (alert, channel) constraint, which leads with it.
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    channel = models.CharField(max_length=10, choices=DeliveryChannel.choices)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Gave up after the last retry.")
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name_plural = "alert deliveries"
        default_permissions = ("view",)
        constraints = [
            # One notification per opening and channel: never sent twice for one opening.
            models.UniqueConstraint(fields=["alert", "channel"], name="oversight_delivery_once"),
        ]
        indexes = [
            # The sender: deliveries still due, soonest first.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(sent_at__isnull=True, failed_at__isnull=True),
                name="oversight_delivery_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.alert} by {self.get_channel_display()}"

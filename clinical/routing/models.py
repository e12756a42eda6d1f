"""The router's own tables: the leader's fenced lease and each worker's health."""

from django.db import models
from django.db.models import Q


class RouterLease(models.Model):
    """The routing leader's lease, one row. Its epoch grows with every takeover: every router write
    checks it (``clinical.routing.lease``), so a paused old leader's writes change nothing.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    holder = models.CharField(max_length=200, blank=True)
    epoch = models.BigIntegerField(default=0)
    leader_since = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="clinical_routerlease_single_row")]

    def __str__(self) -> str:
        return f"{self.holder or 'nobody'} (epoch {self.epoch})"


class RouterHealth(models.Model):
    """What one routing worker last said about itself (written every second or so)."""

    name = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=200)
    pid = models.IntegerField()
    is_leader = models.BooleanField(default=False)
    epoch = models.BigIntegerField(null=True, blank=True)
    leader_since = models.DateTimeField(null=True, blank=True)
    last_decision_at = models.DateTimeField(null=True, blank=True)
    offers_made = models.BigIntegerField(default=0)
    events_pending = models.IntegerField(default=0)
    # Age of the oldest event not yet applied (seconds, by Redis's clock): how far routing is behind.
    events_lag_s = models.FloatField(null=True, blank=True)
    rebuilds = models.IntegerField(default=0)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-is_leader", "name"]

    def __str__(self) -> str:
        return self.name

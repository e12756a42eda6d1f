"""Audit plumbing shared by every model that keeps django-simple-history records.

Actions set ``_history_user``, ``_history_actor`` and ``_change_reason`` on the instance
before saving; the historical row then says who (staff user, or the system actor) and why.
"""

from dataclasses import dataclass
from functools import cache

from django.db import models
from django.dispatch import receiver
from simple_history.signals import pre_create_historical_record


class ActorKind(models.TextChoices):
    SYSTEM = "system", "System"
    ROUTER = "router", "Router"
    PATIENT = "patient", "Patient app"
    PROVIDER = "provider", "Provider app"
    STAFF = "staff", "Staff"


@dataclass(frozen=True)
class Actor:
    """Who is making a change: a staff user, an app on someone's behalf, or the system."""

    kind: str
    user: object | None = None
    label: str = ""
    epoch: int | None = None  # a router's lease epoch: its writes are refused once a newer one exists

    @classmethod
    def staff(cls, user) -> "Actor":
        """Return the actor for a signed-in console user."""
        return cls(ActorKind.STAFF, user=user, label=user.get_username())

    @classmethod
    def system(cls, label: str = "system") -> "Actor":
        """Return the actor for a command, migration or scheduled job."""
        return cls(ActorKind.SYSTEM, label=label)

    @classmethod
    def router(cls, epoch: int | None = None) -> "Actor":
        """Return the actor for the routing worker; with ``epoch``, its writes are fenced by its lease."""
        return cls(ActorKind.ROUTER, label="router", epoch=epoch)

    @classmethod
    def patient_app(cls, label: str = "patient app") -> "Actor":
        """Return the actor for the patient app acting for a patient."""
        return cls(ActorKind.PATIENT, label=label)

    @classmethod
    def provider_app(cls, label: str = "provider app") -> "Actor":
        """Return the actor for the provider app acting for a provider."""
        return cls(ActorKind.PROVIDER, label=label)

    def describe(self) -> str:
        """Return a short human description, e.g. ``staff:clinops``."""
        return f"{self.kind}:{self.label}" if self.label else str(self.kind)


class AuditedHistoryModel(models.Model):
    """Extra columns on every historical table: the kind of actor behind the change."""

    history_actor = models.CharField(max_length=16, choices=ActorKind.choices, default=ActorKind.STAFF)
    history_actor_label = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        abstract = True

    @property
    def done_by(self) -> str:
        """Return who acted, e.g. ``Router`` or ``System: seed_demo`` (shown on history pages)."""
        label = self.history_actor_label
        kind = self.get_history_actor_display()
        return f"{kind}: {label}" if label and label.lower() != kind.lower() else kind


def stamp(instance, actor: Actor, reason: str, *, at=None, at_field: str = "") -> None:
    """Attach the actor, reason and (database) time that the next historical record of ``instance`` carries.

    The time is ``at``, or the value the database gives ``at_field`` on the save (a ``db_default``).
    """
    instance._history_user = actor.user
    instance._history_actor = actor
    instance._change_reason = reason[:2000]
    instance.__dict__.pop("_history_date", None)
    instance._history_date_field = at_field
    if at is not None:
        instance._history_date = at


@receiver(pre_create_historical_record)
def _record_actor(sender, instance, history_instance, **kwargs):
    """Copy the actor set by an action (or the signed-in user) onto the historical row."""
    date_field = getattr(instance, "_history_date_field", "")
    if date_field:  # set by the database on this save, and returned to the instance
        history_instance.history_date = getattr(instance, date_field)
    actor = getattr(instance, "_history_actor", None)
    if actor is not None:
        history_instance.history_actor = actor.kind
        history_instance.history_actor_label = actor.label[:150]
    elif history_instance.history_user_id:
        history_instance.history_actor = ActorKind.STAFF
    else:
        history_instance.history_actor = ActorKind.SYSTEM


def history_sql(model, *, actor: Actor, reason: str) -> tuple[str, list]:
    """Return SQL (and params) that writes one historical record per row of ``model`` whose id is
    in the array parameter appended by the caller, copying the row as it is now.

    For set-based actions that change many rows in one statement: the history they would
    otherwise skip is written in the same transaction, with the same actor and reason.
    """
    return _history_insert(model), history_params(actor=actor, reason=reason)


def history_params(*, actor: Actor, reason: str, history_type: str = "~") -> list:
    """Return the parameters of ``history_insert_from``'s five placeholders, in order."""
    user_id = actor.user.pk if actor.user is not None else None
    return [reason[:2000], history_type, user_id, actor.kind, actor.label[:150]]


@cache
def history_insert_from(model, source: str) -> str:
    """Return an ``INSERT … SELECT`` writing one historical record of ``model`` per row of ``source``
    (a table or a data-modifying CTE's ``RETURNING *``), with five placeholders for
    ``history_params``: the record of a set-based write, in the very statement that makes it.
    """
    historical = model.history.model
    columns = ", ".join(f'"{field.column}"' for field in model._meta.concrete_fields)
    # Table and column names come from model metadata, never from input.
    return (
        f'INSERT INTO "{historical._meta.db_table}" ({columns}, "history_date", "history_change_reason", '  # noqa: S608
        '"history_type", "history_user_id", "history_actor", "history_actor_label") '
        f"SELECT {columns}, clock_timestamp(), %s, %s, %s::integer, %s, %s FROM {source}"
    )


def _history_insert(model) -> str:
    return history_insert_from(model, f'"{model._meta.db_table}"') + ' WHERE "id" = ANY(%s)'

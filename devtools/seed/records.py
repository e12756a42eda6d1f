"""What every seed step shares: its context, and bulk inserts that write the history records the actions would."""

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.db import models
from django.utils import timezone

from clinical.models import (
    VisitStatus,
)
from core.audit import ActorKind

S = VisitStatus
DEFAULT_SEED = 2026
BATCH_SIZE = 2000
SEED_ACTOR_LABEL = "seed_demo"
SEED_REASON = "demo seed"
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
FOREVER = dt.datetime.max.replace(tzinfo=dt.UTC)

Progress = Callable[[str], None]


@dataclass
class SeedContext:
    """What every step needs: the random source, one "now", and the demo users."""

    rng: random.Random
    now: dt.datetime
    users: dict[str, models.Model]

    @property
    def today(self) -> dt.date:
        return timezone.localdate(self.now)


def bulk(model: type[models.Model], rows: list) -> list:
    return model.objects.bulk_create(rows, batch_size=BATCH_SIZE)


@cache
def history_model(model: type[models.Model]) -> type[models.Model]:
    # Looked up once: ``Model.history`` builds a new manager class on every access.
    return model.history.model


@cache
def tracked_attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in history_model(model).tracked_fields)


def history_row(model: type[models.Model], values: dict, *, at: dt.datetime, history_type: str = "+"):
    """Return an unsaved history record of ``model`` holding ``values``, written by the seed."""
    return history_model(model)(
        history_date=at,
        history_type=history_type,
        history_change_reason=SEED_REASON,
        history_actor=ActorKind.SYSTEM,
        history_actor_label=SEED_ACTOR_LABEL,
        **values,
    )


def tracked_values(obj: models.Model) -> dict:
    return {attname: getattr(obj, attname) for attname in tracked_attnames(type(obj))}


def bulk_with_history(objs: list, *, at: Callable[[models.Model], dt.datetime]) -> None:
    """Insert ``objs`` and one creation history record each, dated by ``at``."""
    if not objs:
        return
    model = type(objs[0])
    bulk(model, objs)
    bulk(history_model(model), [history_row(model, tracked_values(obj), at=at(obj)) for obj in objs])

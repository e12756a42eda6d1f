"""Providers: their records and availability."""

import datetime as dt

from django.db import transaction

from clinical import events
from clinical.actions.api_clients import _revoke_provider_tokens
from clinical.models import (
    Availability,
    Provider,
)
from clinical.push import publish as push
from core import dbclock, outbox
from core.audit import Actor, stamp
from core.errors import IllegalTransition
from core.errors import full_clean_or_raise as _full_clean


@transaction.atomic
def save_provider(provider: Provider, *, actor: Actor, reason: str = "") -> Provider:
    """Validate and save a provider's profile; availability changes go through their own action."""
    creating = provider.pk is None
    if not creating:
        current = Provider.objects.select_for_update().only("availability", "available_since").get(pk=provider.pk)
        provider.availability, provider.available_since = current.availability, current.available_since
        if not provider.is_active and current.availability != Availability.OFFLINE:
            raise IllegalTransition(
                "Take the provider offline (and let any visit end) before deactivating.", field="is_active"
            )
    _full_clean(provider)
    stamp(provider, actor, reason or ("created" if creating else "edited"))
    provider.save()
    if not provider.is_active:
        _revoke_provider_tokens(provider, actor=actor)
    outbox.record_instance(provider, embedded=True)
    events.publish_on_commit("provider_changed", actor=actor.kind, provider=provider.pk)
    push.queues_changed_on_commit()  # an active provider counts on the live queues
    return provider


@transaction.atomic
def set_provider_availability(provider: Provider, *, available: bool, actor: Actor, reason: str = "") -> Provider:
    """Put a provider online (available) or offline; refused while an offer or visit is held."""
    provider = Provider.objects.select_for_update().get(pk=provider.pk)
    target = Availability.AVAILABLE if available else Availability.OFFLINE
    if provider.availability == target:
        return provider
    if provider.availability in (Availability.RESERVED, Availability.BUSY):
        raise IllegalTransition(
            f"Provider is {provider.get_availability_display().lower()}; finish or answer the visit first.",
            field="available",
        )
    if available and not provider.is_active:
        raise IllegalTransition("An inactive provider cannot go available.", field="available")
    _set_availability(provider, target, actor=actor, reason=reason or f"went {target}", at=dbclock.now())
    push.queues_changed_on_commit()
    return provider


def _set_availability(
    provider: Provider, target: str, *, actor: Actor, reason: str, at: dt.datetime, keep_since: bool = False
) -> None:
    provider.availability = target
    if target == Availability.AVAILABLE:
        if not (keep_since and provider.available_since):
            provider.available_since = at
    elif target == Availability.OFFLINE:
        provider.available_since = None
    stamp(provider, actor, reason, at=at)
    provider.save(update_fields=["availability", "available_since"])
    outbox.record_instance(provider)
    events.publish_on_commit("provider_availability", actor=actor.kind, provider=provider.pk, availability=target)

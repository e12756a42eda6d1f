"""API clients: tokens bound to their owners, created, revoked and edited."""

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.db import transaction

from clinical.models import (
    ApiClient,
    Patient,
    Provider,
)
from clinical.push import publish as push
from core import dbclock
from core.audit import Actor, stamp
from core.errors import IllegalTransition
from core.errors import full_clean_or_raise as _full_clean

# --- API clients ----------------------------------------------------------------------------


@transaction.atomic
def create_api_client(
    *, name: str, scope: str, actor: Actor, provider: Provider | None = None, patient: Patient | None = None
) -> tuple[ApiClient, str]:
    """Create an API client for its one owner (a provider, or a patient) and return it with its
    bearer token, which is shown only once. It expires ``OPS_API_TOKEN_DAYS`` from now.
    """
    prefix = secrets.token_hex(4)
    token = f"opc_{prefix}_{secrets.token_urlsafe(32)}"
    now = dbclock.now()
    client = ApiClient(
        name=name, scope=scope, provider=provider, patient=patient, token_prefix=prefix, token_hash=hash_token(token),
        created_by=actor.user, created_at=now, expires_at=now + dt.timedelta(days=settings.OPS_API_TOKEN_DAYS),
    )  # fmt: skip
    _full_clean(client, validate_constraints=True)
    stamp(client, actor, "created", at=now)
    client.save()
    return client, token


@transaction.atomic
def revoke_api_client(client: ApiClient, *, actor: Actor, reason: str = "") -> ApiClient:
    """Disable a client's token at once, for good."""
    client = ApiClient.objects.select_for_update().get(pk=client.pk)
    if not client.is_active:
        return client
    client.is_active = False
    stamp(client, actor, reason or "revoked")
    client.save(update_fields=["is_active"])
    push.revoked_on_commit([client.pk])  # its open sockets close too
    return client


def hash_token(token: str) -> str:
    """Return the stored form of a token (tokens are long random strings, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def update_api_client(client: ApiClient, *, actor: Actor, reason: str = "") -> ApiClient:
    """Save a client's name, or revoke it (its scope, owner and token never change; a revoked one stays so)."""
    current = ApiClient.objects.select_for_update().get(pk=client.pk)
    if client.is_active and not current.is_active:
        raise IllegalTransition("A revoked token stays revoked: create a new client.", field="is_active")
    current.name, current.is_active = client.name, client.is_active
    _full_clean(current)
    stamp(current, actor, reason or ("edited" if current.is_active else "revoked"))
    current.save(update_fields=["name", "is_active"])
    if not current.is_active:
        push.revoked_on_commit([current.pk])  # its open sockets close too
    return current


def _revoke_provider_tokens(provider: Provider, *, actor: Actor) -> None:
    """Revoke every token of a deactivated provider, each with its history record."""
    for client in ApiClient.objects.filter(provider=provider, is_active=True):
        revoke_api_client(client, actor=actor, reason=f"provider {provider.npi} deactivated")

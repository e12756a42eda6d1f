"""Bearer-token authentication for the JSON API."""

import hmac
import re
from datetime import timedelta

from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from clinical.actions.api_clients import hash_token
from clinical.models import ApiClient

LAST_USED_RESOLUTION = timedelta(minutes=1)
PREFIX = re.compile(r"[0-9a-f]{1,12}")  # clinical.actions.api_clients.create_api_client: secrets.token_hex(4)


class NotAuthenticated(Exception):
    """No valid bearer token (HTTP 401)."""


# What a request reads of its client and the client's owner: every request pays for this query,
# so not the patient's or provider's other columns.
CLIENT_FIELDS = (
    "name", "scope", "provider", "patient", "token_hash", "is_active", "expires_at", "last_used_at", "patient__mrn",
    "provider__npi", "provider__first_name", "provider__last_name", "provider__is_active",
    "provider__availability", "provider__available_since",
)  # fmt: skip


def client_for(request) -> ApiClient:
    """Return the active API client whose token the request carries, or raise NotAuthenticated."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith("opc_"):
        raise NotAuthenticated("Send 'Authorization: Bearer <token>'.")
    prefix = token.split("_")[1] if token.count("_") >= 2 else ""
    if not PREFIX.fullmatch(prefix):  # a prefix no token has (e.g. with a NUL PostgreSQL would refuse)
        raise NotAuthenticated("The token is not valid or has been revoked.")
    clients = (
        ApiClient.objects.select_related("provider", "patient")
        .only(*CLIENT_FIELDS)
        .annotate(expired=Q(expires_at__lte=Now()))  # the database's clock
        .filter(token_prefix=prefix, is_active=True)
        .order_by()
    )
    client = next(iter(clients[:1]), None)
    if client is None or not hmac.compare_digest(client.token_hash, hash_token(token.strip())):
        raise NotAuthenticated("The token is not valid or has been revoked.")
    if client.expired:
        raise NotAuthenticated("The token has expired: ask for a new one.")
    _touch(client)
    return client


def _touch(client: ApiClient) -> None:
    # At most one write a minute per client: last use is for ops leads, not an audit trail.
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)

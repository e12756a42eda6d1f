"""``Idempotency-Key`` for the API's creating requests: a client that retries after a timeout
gets the first answer again instead of a second visit.

The key, a hash of the request body and the answer are stored in PostgreSQL in the same
transaction as what the request wrote, so a retry sees either nothing (the first attempt did not
commit: it runs again) or the whole answer. Two attempts at once: the second waits on the key's
unique index, then replays the first's answer. A key is kept 24 hours; reused with another body
it is refused (422).
"""

import datetime as dt
import hashlib
import json

from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.http import JsonResponse

from clinical.actions.visits import OpenVisitExists
from clinical.models import ApiIdempotencyKey, Visit
from core.access import record_access

KEEP = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255


def once(request, key: str, answer) -> JsonResponse:
    """Return ``answer()``'s response, or the stored one for a retry of the same request with ``key``."""
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        return _error(400, "invalid", f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable characters.")
    client, digest = request.api_client, hashlib.sha256(request.body).hexdigest()
    stored = _stored(client, key)
    if stored is not None:
        return _replay(request, stored, digest)
    try:
        with transaction.atomic():
            response = answer()
            if response.status_code < 500:
                _store(client, key, digest, response)
            return response
    except (IntegrityError, OpenVisitExists):
        # The same key at the same moment: the other attempt committed first (its visit, or its key).
        stored = _stored(client, key)
        if stored is None:
            raise
        return _replay(request, stored, digest)


def _stored(client, key: str) -> ApiIdempotencyKey | None:
    recent = ApiIdempotencyKey.objects.filter(client=client, key=key, created_at__gt=Now() - KEEP)
    return recent.select_related("visit").first()


def _store(client, key: str, digest: str, response: JsonResponse) -> None:
    body = json.loads(response.content)
    visit = Visit.objects.filter(public_id=body.get("id")).only("id").first() if "id" in body else None
    ApiIdempotencyKey.objects.filter(client=client, key=key, created_at__lte=Now() - KEEP).delete()  # an old one
    ApiIdempotencyKey.objects.create(
        client=client, key=key, request_hash=digest, status=response.status_code, response=body, visit=visit
    )


def _replay(request, stored: ApiIdempotencyKey, digest: str) -> JsonResponse:
    if stored.request_hash != digest:
        return _error(422, "idempotency_key_reused", "This Idempotency-Key was used with another request.")
    if stored.visit is not None:  # the answer names the visit again: a read like any other
        record_access(request, kind="api_read", model=Visit, records=[stored.visit], source="api (replayed)")
    response = JsonResponse(stored.response, status=stored.status)
    response["Idempotent-Replayed"] = "true"
    return response


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "field": "Idempotency-Key"}}, status=status)

"""JSON API for the patient and provider apps (``/api/v1/``). Views parse, call one action, report."""

import functools
import json
import logging
import re

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from clinical import selectors
from clinical.actions import offers as offer_actions
from clinical.actions import providers as provider_actions
from clinical.actions import visits as visit_actions
from clinical.api import idempotency, limits
from clinical.api.auth import NotAuthenticated, client_for
from clinical.api.payloads import PRIORITIES, visit_json
from clinical.models import ApiScope, Provider, Visit
from clinical.reference import STATE_CHOICES
from core.access import record_access
from core.audit import Actor
from core.errors import ActionError, IllegalTransition

logger = logging.getLogger(__name__)
STATES = {code for code, _ in STATE_CHOICES}
NPI = re.compile(r"[0-9]{10}")


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``field`` names the input at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


def error_response(status: int, code: str, message: str, field: str | None = None) -> JsonResponse:
    """Return the API's error body."""
    body = {"error": {"code": code, "message": message}}
    if field:
        body["error"]["field"] = field
    return JsonResponse(body, status=status)


def api_view(*methods: str, scopes: tuple[str, ...]):
    """Authenticate the bearer token, check its scope and rate limits, and turn errors into JSON responses."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            response = _answer(request, view, methods, scopes, *args, **kwargs)
            limits.note_answer(request, response.status_code)
            return response

        return wrapper

    return decorate


def _answer(request, view, methods, scopes, *args, **kwargs) -> JsonResponse:
    if request.method not in methods:  # as require_http_methods, with the API's JSON error
        response = error_response(405, "method_not_allowed", f"Use {' or '.join(methods)}.")
        response["Allow"] = ", ".join(methods)
        return response
    try:
        _limit(limits.address_retry_after(request))
        request.api_client = client_for(request)
        _limit(limits.token_retry_after(request.api_client))
        if request.api_client.scope not in scopes:
            raise ApiError(403, "wrong_scope", f"This endpoint needs a {' or '.join(scopes)} token.")
        return view(request, *args, **kwargs)
    except NotAuthenticated as error:
        response = error_response(401, "not_authenticated", str(error))
        response["WWW-Authenticate"] = 'Bearer realm="ops-console"'
        return response
    except RateLimited as limited:
        response = error_response(429, "rate_limited", "Too many requests; slow down.")
        response["Retry-After"] = str(limited.seconds)
        return response
    except ApiError as error:
        return error_response(error.status, error.code, str(error), error.field)
    except IllegalTransition as error:
        return _conflict(error)
    except ActionError as error:
        return error_response(404 if error.code == "not_found" else 400, error.code, str(error), error.field)
    except (OperationalError, InterfaceError):
        # PostgreSQL restarting or out of reach: the request did not finish; the app retries
        # (reads are safe to repeat, and a repeated transition is refused with a 409).
        logger.warning("API %s %s: the database is unavailable", request.method, request.path, exc_info=True)
        response = error_response(503, "unavailable", "The service is briefly unavailable; try again.")
        response["Retry-After"] = "2"
        return response


class RateLimited(Exception):
    def __init__(self, seconds: int):
        super().__init__(seconds)
        self.seconds = seconds


def _limit(retry_after: int | None) -> None:
    if retry_after is not None:
        raise RateLimited(retry_after)


def _conflict(error: IllegalTransition) -> JsonResponse:
    response = error_response(409, error.code, str(error), error.field)
    if isinstance(error, visit_actions.OpenVisitExists) and error.visit is not None:
        body = json.loads(response.content)
        body["error"]["visit"] = error.visit.public_id  # the patient's own open visit
        response = JsonResponse(body, status=409)
    return response


def _body(request) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        raise ApiError(413, "too_large", "The request body is too large.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[… nested too deep
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    return data


def _string(data: dict, field: str, *, max_length: int) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "invalid", f"'{field}' is required and must be a non-empty string.", field)
    if len(value) > max_length:
        raise ApiError(400, "invalid", f"'{field}' must be at most {max_length} characters.", field)
    if not storable(value):
        raise ApiError(400, "invalid", f"'{field}' holds a NUL character or an unpaired surrogate.", field)
    return value.strip()


def storable(text: str) -> bool:
    """Return True if PostgreSQL can store and compare ``text``.

    JSON may carry ``\\u0000`` and lone surrogates (``\\ud800``); PostgreSQL refuses the first,
    UTF-8 cannot encode the second: either would fail the query as a 500.
    """
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _visit(public_id: str) -> Visit:
    visit = selectors.visit_for_api(public_id) if storable(public_id) else None
    if visit is None:
        raise ApiError(404, "not_found", f"No visit {public_id}.")
    return visit


def _actor(request) -> Actor:
    client = request.api_client
    if client.scope == ApiScope.PROVIDER:
        return Actor.provider_app(f"{client.name} for NPI {client.provider.npi}")
    return Actor.patient_app(f"{client.name} for MRN {client.patient.mrn}")


def _owners(public_id: str) -> tuple[int, int, int | None]:
    """Return the visit's ``(id, patient id, provider id)``, or 404: enough to check who may act on it."""
    owners = selectors.visit_owners(public_id) if storable(public_id) else None
    if owners is None:
        raise ApiError(404, "not_found", f"No visit {public_id}.")
    return owners


def _check_provider(request, owners: tuple[int, int, int | None], *, answering: bool = False) -> None:
    """Refuse (403) unless the calling provider holds the visit (or, to answer an offer, was offered it).

    Checked without a lock: the action the request leads to re-checks, under lock, that the provider
    may do what it asks, and answers 409 with a code when the visit moved on meanwhile (e.g. the
    provider's offer expired a moment before they tapped accept).
    """
    visit_id, _, holder_id = owners
    provider_id = request.api_client.provider_id
    if holder_id != provider_id and not (answering and selectors.was_offered(visit_id, provider_id)):
        raise ApiError(403, "not_your_visit", "This visit is not offered or assigned to you.")


def _check_patient(request, owners: tuple[int, int, int | None], public_id: str) -> None:
    """Refuse unless the visit is the calling patient's: another patient's visit is as unknown as none (404)."""
    if owners[1] != request.api_client.patient_id:
        raise ApiError(404, "not_found", f"No visit {public_id}.")


@api_view("POST", scopes=(ApiScope.PATIENT,))
def create_visit(request):
    """Request a visit for the token's patient, located in a state.

    With an ``Idempotency-Key`` header, a retry of the same request within 24 hours gets the first
    answer again (and creates nothing); the same key with another body is refused.
    """
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        return _create_visit(request)
    return idempotency.once(request, key, lambda: _create_visit(request))


def _create_visit(request) -> JsonResponse:
    data = _body(request)
    patient = request.api_client.patient
    if "patient" in data and data["patient"] != patient.mrn:  # answered alike whether that MRN exists or not
        raise ApiError(403, "not_your_patient", "This token acts for one patient only.", "patient")
    state = _string(data, "located_state", max_length=2).upper()
    if state not in STATES:
        raise ApiError(400, "invalid", f"'located_state' must be a USPS state code, got {state!r}.", "located_state")
    priority = data.get("priority", "routine")
    if not isinstance(priority, str) or priority not in PRIORITIES:  # a list or object is unhashable
        raise ApiError(400, "invalid", f"'priority' must be one of {', '.join(PRIORITIES)}.", "priority")
    reason = _string(data, "reason", max_length=2000)
    visit = visit_actions.request_visit(
        patient=patient, located_state=state, reason=reason, priority=PRIORITIES[priority], actor=_actor(request)
    )
    return _visit_response(request, _visit(visit.public_id), status=201)


@api_view("GET", scopes=(ApiScope.PATIENT, ApiScope.PROVIDER))
def visit_detail(request, public_id: str):
    """Return a visit (the apps' polling fallback): a patient's own, or one the provider holds."""
    visit = _visit(public_id)
    owners = (visit.pk, visit.patient_id, visit.provider_id)
    if request.api_client.scope == ApiScope.PROVIDER:
        _check_provider(request, owners)
    else:
        _check_patient(request, owners, public_id)
    return _visit_response(request, visit)


@api_view("POST", scopes=(ApiScope.PATIENT,))
def cancel_visit(request, public_id: str):
    """Cancel one of the patient's visits (also while an offer is out)."""
    owners = _owners(public_id)
    _check_patient(request, owners, public_id)
    visit_actions.cancel_visit(owners[0], actor=_actor(request), detail="cancelled by the patient")
    return _visit_response(request, _visit(public_id))


PROVIDER_ACTIONS = {
    "accept": lambda visit, actor, provider: offer_actions.accept_visit(visit, provider=provider, actor=actor),
    "reject": lambda visit, actor, provider: offer_actions.decline_offer(visit, provider=provider, actor=actor),
    "connected": lambda visit, actor, provider: visit_actions.mark_connected(visit, provider=provider, actor=actor),
    "complete": lambda visit, actor, provider: visit_actions.complete_visit(visit, provider=provider, actor=actor),
    "fail": lambda visit, actor, provider: visit_actions.fail_visit(
        visit, provider=provider, actor=actor, detail="failed (provider app)"
    ),
}


@api_view("POST", scopes=(ApiScope.PROVIDER,))
def provider_visit_action(request, public_id: str, verb: str):
    """Accept, reject, mark connected, complete or fail a visit the provider holds.

    The action names the calling provider and re-checks everything under lock: a refusal is a 409
    with its own ``code`` (``offer_expired``, ``not_your_offer``, ``not_licensed``, ``provider_inactive``, …).
    """
    owners = _owners(public_id)
    _check_provider(request, owners, answering=verb in ("accept", "reject"))
    PROVIDER_ACTIONS[verb](owners[0], _actor(request), request.api_client.provider_id)
    return _visit_response(request, _visit(public_id))


def _own_provider(request, npi: str) -> Provider:
    provider = request.api_client.provider
    if provider.npi != npi:
        if not NPI.fullmatch(npi) or not Provider.objects.filter(npi=npi).exists():
            raise ApiError(404, "not_found", f"No provider with NPI {npi}.")
        raise ApiError(403, "not_you", "A provider token acts only for its own provider.")
    return provider


@api_view("POST", scopes=(ApiScope.PROVIDER,))
def provider_availability(request, npi: str):
    """Go available or offline."""
    provider = _own_provider(request, npi)
    available = _body(request).get("available")
    if not isinstance(available, bool):
        raise ApiError(400, "invalid", "'available' must be true or false.", "available")
    provider = provider_actions.set_provider_availability(provider, available=available, actor=_actor(request))
    return _provider_response(request, provider)


@api_view("GET", scopes=(ApiScope.PROVIDER,))
def provider_detail(request, npi: str):
    """Return the provider's availability and the visit they hold (an offer to answer), if any."""
    return _provider_response(request, _own_provider(request, npi))


def _visit_response(request, visit: Visit, *, status: int = 200) -> JsonResponse:
    """Answer with a visit, on the PHI access log: one row for the response."""
    record_access(request, kind="api_read", model=Visit, records=[visit], source="api")
    return JsonResponse(visit_json(visit), status=status)


def _provider_response(request, provider: Provider) -> JsonResponse:
    """Answer with the provider's state; the visit it names (patient, reason) goes on the PHI access log."""
    current = selectors.visit_held_by(provider)
    if current is not None:
        record_access(request, kind="api_read", model=Visit, records=[current], source="api")
    return JsonResponse(_provider_json(provider, current))


def _provider_json(provider: Provider, current: Visit | None) -> dict:
    # ``provider`` was read in this request (the token's join, or the availability action's lock).
    return {
        "npi": provider.npi,
        "availability": provider.availability,
        "available_since": provider.available_since.isoformat() if provider.available_since else None,
        "states_today": selectors.licensed_states_now(provider),
        "visit": visit_json(current) if current else None,
    }


def not_found(request):
    """Answer unknown API paths with a JSON 404."""
    return error_response(404, "not_found", f"No API endpoint {request.path}.")

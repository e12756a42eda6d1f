"""API fuzzing with hypothesis: every JSON endpoint, any body, id, method and token.

Bodies are arbitrary JSON values (``st.recursive``), bodies built from each endpoint's real
schema with wrong types, huge strings and unusual unicode in any field, and raw bytes that are
not JSON at all; tokens are valid for the right scope, valid for the other scope, unknown,
malformed or missing. Whatever is sent, the API answers below 500 with a JSON body, and a
refusal (4xx) leaves the database as it was: no visit, timeline event or history row written.
"""

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clinical.actions import api_clients as api_client_actions
from clinical.actions import offers as offer_actions
from clinical.models import Patient, Provider, ProviderLicense, Visit, VisitEvent
from core.audit import Actor
from tests.builders import make_patient, make_provider, make_visit

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Text no form would let through: NUL, lone surrogates (JSON's \ud800), right-to-left overrides,
# combining marks, emoji and very long strings.
ODD_TEXT = st.one_of(
    st.text(st.characters(codec=None), max_size=30),
    st.text(st.characters(categories=["Cs", "Cc", "Cf", "Mn", "So"]), min_size=1, max_size=10),
    st.builds(lambda char, n: char * n, st.characters(), st.integers(1, 5_000)),
    st.sampled_from(["\x00", "' OR 1=1 --", "%", "\\", "CA\x00", "ca", "URGENT", "M00000001", "-1", "1e400"]),
)
HUGE_NUMBERS = st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]) | st.integers()


class HugeBody(bytes):
    """A body past DATA_UPLOAD_MAX_MEMORY_SIZE, shown short in hypothesis's reports."""

    def __repr__(self) -> str:
        return f"<{len(self):,} bytes>"


HUGE_BODY = HugeBody(b'{"reason": "' + b"x" * 3_000_000 + b'"}')
# Bodies that are not JSON objects, or not JSON at all.
RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe{}", b"null", b'"text"', b"{}" * 3]),
    st.just(HUGE_BODY),
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
TOKENS = st.sampled_from(["patient", "provider", "stranger", "revoked", "unknown", "malformed", "none"])


BAD_VALUES = st.one_of(JSON_VALUES, ODD_TEXT, HUGE_NUMBERS)


def _near_valid(valid: dict) -> st.SearchStrategy:
    """Return the valid body with some fields dropped, some replaced by a wrong type, odd text or a
    huge number, and some unknown keys added (often none of each, so the valid path runs too).
    """
    names = sorted(valid)
    return st.builds(
        lambda dropped, broken, bad, extra: {
            **extra, **{name: bad[name] if name in broken else valid[name] for name in names if name not in dropped}
        },
        st.sets(st.sampled_from(names), max_size=1),
        st.sets(st.sampled_from(names), max_size=len(names)),
        st.fixed_dictionaries({name: BAD_VALUES for name in names}),
        st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=2),
    )  # fmt: skip


def _token_for(scope: str) -> st.SearchStrategy:
    """Return the right scope's token half of the time, any other kind of token otherwise."""
    return st.just(scope) | TOKENS


@pytest.fixture
def api(db):
    """Return a patient, a visit offered to a provider, and a token of each kind."""
    provider = make_provider(states=("CA",), available=True)
    patient = make_patient()
    visit = offer_actions.offer_visit(make_visit(patient=patient), provider, actor=Actor.router())
    other = make_provider(states=("CA",))
    revoked, revoked_token = api_client_actions.create_api_client(name="revoked", scope="patient", patient=patient,
                                                       actor=Actor.system())  # fmt: skip
    api_client_actions.revoke_api_client(revoked, actor=Actor.system())
    tokens = {
        "patient": api_client_actions.create_api_client(
            name="patient-app", scope="patient", patient=patient, actor=Actor.system()
        )[1],  # fmt: skip
        "provider": api_client_actions.create_api_client(
            name="dr-app", scope="provider", provider=provider, actor=Actor.system()
        )[1],
        "stranger": api_client_actions.create_api_client(
            name="other-dr", scope="provider", provider=other, actor=Actor.system()
        )[1],
        "revoked": revoked_token,
        "unknown": "opc_deadbeef_" + "x" * 43,
        "malformed": "opc_\x00_x",
    }
    return {"patient": patient, "visit": visit, "provider": provider, "tokens": tokens}


def _rows() -> dict[str, int]:
    """Return the counts a write would change: records, timeline events and history rows."""
    models = (Visit, VisitEvent, Patient, Provider, ProviderLicense)
    counts = {model.__name__: model.objects.count() for model in models}
    counts |= {f"{model.__name__} history": model.history.count() for model in models if hasattr(model, "history")}
    return counts


def _send(client, api, method: str, path: str, token: str, body) -> None:
    """Send one request; assert it is answered below 500 with JSON, and refused without a write."""
    headers = {} if token == "none" else {"HTTP_AUTHORIZATION": f"Bearer {api['tokens'][token]}"}
    data = body if isinstance(body, bytes) else json.dumps(body)
    before = _rows()
    response = client.generic(method, f"/api/v1/{path}", data, "application/json", **headers)
    event(f"{method} answered {response.status_code}")  # pytest --hypothesis-show-statistics lists them
    assert response.status_code < 500, (method, path[:80], response.status_code)
    assert response["Content-Type"] == "application/json", (method, path[:80], response.status_code)
    payload = json.loads(response.content)
    if response.status_code >= 400:
        assert payload["error"]["code"] and payload["error"]["message"]
        assert _rows() == before, (method, path[:80], response.status_code, "partial write")


@FUZZ
@given(
    body=_near_valid({"patient": "MRN", "located_state": "CA", "reason": "Cough", "priority": "routine"})
    | JSON_VALUES
    | RAW_BODIES,
    token=_token_for("patient"),
)
def test_it_answers_any_visit_request_with_json_and_writes_nothing_when_refused(client, api, body, token):
    if isinstance(body, dict) and body.get("patient") == "MRN":
        body = {**body, "patient": api["patient"].mrn}
    _send(client, api, "POST", "visits", token, body)


@FUZZ
@given(
    visit_id=st.sampled_from(["own", "own-lower"]) | ODD_TEXT.filter(lambda text: "/" not in text and text),
    action=st.sampled_from(["/cancel", "/accept", "/reject", "/connected", "/complete", "/fail"]) | st.just(""),
    body=JSON_VALUES | RAW_BODIES,
    token=_token_for("provider"),
)
def test_it_answers_any_read_or_transition_of_a_visit_with_json(client, api, visit_id, action, body, token):
    public_id = {"own": api["visit"].public_id, "own-lower": api["visit"].public_id.lower()}.get(visit_id, visit_id)
    token = "patient" if action == "/cancel" and token == "provider" else token  # cancelling is the patient's
    _send(client, api, "POST" if action else "GET", f"visits/{_segment(public_id)}{action}", token, body)


@FUZZ
@given(
    npi=st.sampled_from(["own", "other"]) | ODD_TEXT.filter(lambda text: "/" not in text and text),
    action=st.sampled_from(["", "/availability"]),
    body=_near_valid({"available": True}) | JSON_VALUES | RAW_BODIES,
    token=_token_for("provider"),
)
def test_it_answers_any_read_or_availability_change_of_a_provider_with_json(client, api, npi, action, body, token):
    number = {"own": api["provider"].npi, "other": Provider.objects.exclude(pk=api["provider"].pk)[0].npi}.get(npi, npi)
    _send(client, api, "POST" if action else "GET", f"providers/{_segment(number)}{action}", token, body)


@settings(FUZZ, max_examples=100)
@given(
    path=st.sampled_from(["visits", "visits/{visit}", "visits/{visit}/cancel", "visits/{visit}/accept",
                          "providers/{npi}", "providers/{npi}/availability", "nothing/here", ""]),
    method=METHODS,
    body=JSON_VALUES | RAW_BODIES,
    token=TOKENS,
)  # fmt: skip
def test_it_answers_any_method_on_any_path_with_json(client, api, path, method, body, token):
    path = path.format(visit=api["visit"].public_id, npi=api["provider"].npi)
    _send(client, api, method, path, token, body)


def _segment(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")

"""Console fixtures: a superuser, support records built through the actions, and a DB snapshot."""

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from core import actions as core_actions
from core.access import record_access
from core.audit import Actor
from core.models import AccessLog, SecurityEvent
from support import actions as support_actions
from support.models import SupportCase
from tests.builders import SYSTEM
from tests.conftest import PASSWORD

# Rows that may change without anyone changing a record: sessions, and refusals being logged.
# Sessions, and who read each patient: the access log's summary, kept by PostgreSQL from the log's
# rows (tests/core/test_patient_readers.py holds it equal to them), so a read changes it with its row.
_NOT_RECORDS = {"sessions.session", "core.patientreader"}


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@ops.example", PASSWORD)


def make_case(*, patient=None, visit=None, notes: int = 0, actor: Actor = SYSTEM, **kwargs) -> SupportCase:
    """Open a support case about a patient and/or visit, then append ``notes`` notes."""
    case = support_actions.open_case(subject="Case about a visit", patient=patient, visit=visit, actor=actor, **kwargs)
    for n in range(notes):
        support_actions.add_note(case, body=f"Called the patient back ({n}).", actor=actor)
    return case


def make_security_event(*, path: str = "/admin/login/", user=None) -> SecurityEvent:
    """Record an /admin/ probe as the console's probe view would."""
    request = RequestFactory().get(path, REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="curl/8.0")
    if user is not None:
        request.user = user
    return core_actions.record_security_event(request, kind=SecurityEvent.Kind.ADMIN_PROBE)


def make_access_log(patient, *, user=None) -> AccessLog:
    """Record a view of ``patient``'s page as the console would."""
    request = RequestFactory().get(f"/ops/clinical/patient/{patient.pk}/change/", REMOTE_ADDR="203.0.113.8")
    if user is not None:
        request.user = user
    return record_access(request, kind=AccessLog.Kind.VIEW, model=type(patient), records=[patient])


def database_snapshot() -> dict[str, list[dict]]:
    """Return every row of every table that holds records, history or audit entries."""
    snapshot = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.label_lower in _NOT_RECORDS or not model._meta.managed:
            continue
        rows = model._default_manager.order_by("pk")
        if model is SecurityEvent:
            rows = rows.exclude(kind=SecurityEvent.Kind.PERMISSION_DENIED)
        snapshot[model._meta.label_lower] = list(rows.values())
    return snapshot

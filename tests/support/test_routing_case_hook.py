"""support opens the routing case when clinical says a visit needs a person (clinical.hooks)."""

import pytest
from django.db import transaction

from clinical import hooks
from clinical.actions import timeouts as timeout_actions
from core.audit import Actor
from support.actions import open_routing_case
from support.models import CaseCategory, SupportCase
from tests.builders import make_visit


def test_it_registers_the_routing_case_handler_when_support_is_ready():
    assert open_routing_case in hooks._attention


def test_it_opens_the_case_in_the_transaction_that_expires_the_visit(db):
    visit = make_visit()
    with pytest.raises(RuntimeError), transaction.atomic():
        timeout_actions.expire_visit(visit, actor=Actor.router())
        assert SupportCase.objects.get(visit=visit).category == CaseCategory.ROUTING
        raise RuntimeError("the router's transaction fails after the case was written")
    assert not SupportCase.objects.filter(visit=visit).exists()
    visit.refresh_from_db()
    assert visit.status == "waiting"


def test_it_refuses_to_end_a_visit_by_timeout_when_no_app_would_open_a_case(db, monkeypatch):
    visit = make_visit()
    monkeypatch.setattr(hooks, "_attention", [])
    with pytest.raises(RuntimeError, match="support app"):
        timeout_actions.expire_visit(visit, actor=Actor.router())
    visit.refresh_from_db()
    assert visit.status == "waiting"

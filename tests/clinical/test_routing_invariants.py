"""``check_routing_invariants``: the whole history, rule by rule, and a non-zero exit on any violation."""

import datetime as dt
import io
import json
import time

import pytest
from django.core.management import CommandError, call_command

from clinical.actions import licenses as license_actions
from clinical.actions import offers as offer_actions
from clinical.actions import timeouts as timeout_actions
from clinical.actions import visits as visit_actions
from clinical.models import LicenseStatus, Offer, OfferOutcome, ProviderLicense, Visit, VisitStatus
from clinical.routing import invariants
from core import dbclock
from core.audit import Actor
from tests.builders import make_provider, make_visit

S = VisitStatus
ROUTER = Actor.router()
APP = Actor.provider_app()


def _run(*args) -> tuple[dict, str, bool]:
    out = io.StringIO()
    failed = False
    try:
        call_command("check_routing_invariants", *args, stdout=out)
    except CommandError:
        failed = True
    text = out.getvalue()
    return json.loads(text.strip().splitlines()[-1]), text, failed


def _clean_history():
    provider = make_provider(available=True)
    done = offer_actions.offer_visit(make_visit(), provider, actor=ROUTER)
    offer_actions.accept_visit(done, provider=provider, actor=APP)
    visit_actions.mark_connected(done, actor=APP)
    visit_actions.complete_visit(done, actor=APP)
    declined = offer_actions.offer_visit(make_visit(), provider, actor=ROUTER)
    offer_actions.decline_offer(declined, provider=provider, actor=APP)
    expired = offer_actions.offer_visit(make_visit(), provider, actor=ROUTER, offer_timeout=1)
    time.sleep(1.05)  # no time travel here: the checker reads the instants as they were
    offer_actions.expire_offer(expired, provider_id=provider.pk, actor=ROUTER)
    timeout_actions.expire_visit(make_visit(state="WY"), actor=ROUTER)  # opens its case
    license = provider.licenses.get()
    license_actions.change_license_status(license, LicenseStatus.SUSPENDED, actor=Actor.system(), reason="board")
    return provider


def test_it_passes_a_history_written_by_the_actions(db):
    _clean_history()
    summary, text, failed = _run()
    assert not failed and summary["violations"] == 0, text
    assert set(invariants.RULES) <= set(summary)


def test_it_judges_an_offer_by_the_license_as_it_was_at_the_offer_instant(db):
    provider = _clean_history()  # every offer was made before the license was suspended
    assert Offer.objects.filter(provider=provider).count() == 3
    assert _run()[0]["offer_to_unlicensed_provider"] == 0


def _licensed_for_a_day(provider):
    """Date the provider's license records a day back, so offers injected in the past find them."""
    ProviderLicense.history.filter(provider_id=provider.pk).update(history_date=dbclock.now() - dt.timedelta(days=1))
    return provider


def _inject_violations():
    """Write what the actions never would, as a bug or a hand edit might (test set-up only)."""
    now = dbclock.now()
    minute = dt.timedelta(minutes=1)
    unlicensed = _licensed_for_a_day(make_provider(states=("NV",)))
    Offer.objects.create(visit=make_visit(state="CA"), provider=unlicensed, offered_at=now - minute,
                         expires_at=now + minute, outcome=OfferOutcome.DECLINED, decided_at=now)  # fmt: skip
    double = _licensed_for_a_day(make_provider(states=("CA",)))
    for start in (10, 9):  # two offers open at once
        Offer.objects.create(visit=make_visit(), provider=double, offered_at=now - start * minute,
                             expires_at=now - (start - 2) * minute, outcome=OfferOutcome.DECLINED,
                             decided_at=now - (start - 2) * minute)  # fmt: skip
    late = _licensed_for_a_day(make_provider(states=("CA",)))
    Offer.objects.create(visit=make_visit(), provider=late, offered_at=now - 20 * minute,
                         expires_at=now - 18 * minute, outcome=OfferOutcome.ACCEPTED,
                         decided_at=now - 17 * minute)  # fmt: skip
    Visit.objects.filter(pk=make_visit().pk).update(requested_at=now - dt.timedelta(hours=2))
    Visit.objects.filter(pk=make_visit().pk).update(status=S.EXPIRED, ended_at=now)


def test_it_reports_each_kind_of_violation_and_fails(db):
    _inject_violations()
    summary, text, failed = _run("--examples", "1")
    assert failed
    assert {name: summary[name] for name in invariants.RULES} == {
        "offer_to_unlicensed_provider": 1,
        "overlapping_holds": 1,
        "accept_after_deadline": 1,
        "stuck_past_timeout": 1,
        "timed_out_without_case": 1,
    }
    assert "e.g." in text


def test_it_checks_only_the_history_since_an_instant_when_asked(db):
    _inject_violations()
    later = (dbclock.now() + dt.timedelta(minutes=5)).isoformat()
    summary, _, _ = _run("--since", later)
    assert summary["offer_to_unlicensed_provider"] == summary["accept_after_deadline"] == 0


@pytest.mark.parametrize("grace", ["0", "100000"])
def test_it_lets_a_timeout_run_late_by_the_grace_given(db, grace):
    visit = make_visit()
    Visit.objects.filter(pk=visit.pk).update(requested_at=dbclock.now() - dt.timedelta(seconds=1830))
    assert _run("--grace", grace)[0]["stuck_past_timeout"] == (1 if grace == "0" else 0)

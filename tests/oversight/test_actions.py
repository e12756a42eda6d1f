"""Opening, resolving and acknowledging alerts (oversight.actions), against real rows and Redis."""

import json
import threading
import time

from django.db import connection, transaction

from clinical.actions import providers as provider_actions
from oversight import actions, banner
from oversight.models import Alert, AlertDelivery, AlertKind
from tests.builders import SYSTEM, make_provider, make_visit
from tests.oversight.conftest import lead_router


def _open_kinds() -> set[tuple[str, str]]:
    return set(Alert.objects.filter(resolved_at__isnull=True).values_list("kind", "subject"))


def test_it_opens_an_alert_when_a_condition_starts_and_resolves_it_when_it_clears(router):
    make_visit(state="TX")
    opened, resolved = actions.evaluate("tests:one")
    assert ([(a.kind, a.subject, a.state, a.opened_by) for a in opened], resolved) == (
        [(AlertKind.NO_PROVIDER, "TX", "TX", "tests:one")],
        [],
    )
    assert actions.evaluate("tests:one") == ([], [])  # still true: the same alert stays open
    make_provider(states=("TX",), available=True)
    opened, resolved = actions.evaluate("tests:two")
    alert = Alert.objects.get()
    assert (opened, [a.pk for a in resolved]) == ([], [alert.pk])
    assert alert.resolved_at >= alert.opened_at
    assert _open_kinds() == set()


def test_it_opens_a_new_alert_when_a_cleared_condition_comes_back(router):
    make_visit(state="TX")
    actions.evaluate("tests")
    provider = make_provider(states=("TX",), available=True)
    actions.evaluate("tests")
    provider_actions.set_provider_availability(provider, available=False, actor=SYSTEM)
    opened, _ = actions.evaluate("tests")
    assert len(opened) == 1
    assert Alert.objects.filter(kind=AlertKind.NO_PROVIDER, subject="TX").count() == 2


def test_it_writes_one_delivery_per_configured_channel_with_each_opening(router, settings):
    settings.OPS_ALERT_EMAILS = ["oncall@ops.example"]
    settings.OPS_ALERT_WEBHOOK_URL, settings.OPS_ALERT_WEBHOOK_SECRET = "http://127.0.0.1:9/hook", "s"
    make_visit(state="TX")
    make_visit(state="NV")
    actions.evaluate("tests")
    actions.evaluate("tests")
    rows = sorted(AlertDelivery.objects.values_list("alert__subject", "channel", "attempts", "sent_at"))
    assert rows == [("NV", "email", 0, None), ("NV", "webhook", 0, None), ("TX", "email", 0, None),
                    ("TX", "webhook", 0, None)]  # fmt: skip


def test_it_writes_no_delivery_without_a_configured_channel(router, settings):
    settings.OPS_ALERT_EMAILS, settings.OPS_ALERT_WEBHOOK_URL = [], None
    make_visit(state="TX")
    actions.evaluate("tests")
    assert Alert.objects.count() == 1 and not AlertDelivery.objects.exists()


def test_it_never_opens_one_condition_twice_when_evaluators_race(transactional_db, settings):
    """The second evaluator reads no open alert, then meets the first one's uncommitted insert."""
    settings.OPS_ALERT_EMAILS = ["oncall@ops.example"]
    lead_router()
    make_visit(state="TX")
    inserted, results = threading.Event(), {}

    def first():
        try:
            with transaction.atomic():
                results["first"] = actions.evaluate("first")
                inserted.set()
                time.sleep(0.5)  # the second evaluator runs into this insert before it commits
        finally:
            connection.close()

    def second():
        try:
            inserted.wait(5)
            results["second"] = actions.evaluate("second")
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [len(results[name][0]) for name in ("first", "second")] == [1, 0]
    assert Alert.objects.filter(kind=AlertKind.NO_PROVIDER).count() == 1
    assert AlertDelivery.objects.count() == 1


def test_it_opens_each_condition_once_with_many_evaluators_at_once(transactional_db, settings):
    settings.OPS_ALERT_EMAILS = ["oncall@ops.example"]
    lead_router()
    for state in ("TX", "NV", "OR"):
        make_visit(state=state)
    barrier, opened = threading.Barrier(6), []

    def evaluate(name):
        try:
            barrier.wait()
            opened.extend(actions.evaluate(name)[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate, args=(f"evaluator-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(alert.subject for alert in opened) == ["NV", "OR", "TX"]
    assert Alert.objects.count() == 3
    assert AlertDelivery.objects.count() == 3


def test_it_acknowledges_once_and_keeps_the_alert_open(router, lead, engineer):
    make_visit(state="TX")
    (alert,), _ = actions.evaluate("tests")
    assert actions.acknowledge(alert, lead) is True
    assert actions.acknowledge(alert, engineer) is False  # the first acknowledgement stays
    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.resolved_at) == (lead, None)
    assert alert.acknowledged_at >= alert.opened_at
    assert actions.evaluate("tests") == ([], [])


def test_it_acknowledges_an_alert_that_already_resolved(router, lead):
    make_visit(state="TX")
    (alert,), _ = actions.evaluate("tests")
    make_provider(states=("TX",), available=True)
    actions.evaluate("tests")
    assert actions.acknowledge(alert, lead) is True
    alert.refresh_from_db()
    assert alert.resolved_at and alert.acknowledged_by == lead


def test_it_publishes_the_banner_snapshot_when_the_change_commits(
    router, lead, redis_client, django_capture_on_commit_callbacks
):
    make_visit(state="TX")
    make_visit(state="NV")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.evaluate("tests")
    assert redis_client.get(banner.KEY) is None  # nothing before the commit
    for callback in callbacks:
        callback()
    snapshot = json.loads(redis_client.get(banner.KEY))
    assert (snapshot["count"], snapshot["unacknowledged"]) == (2, 2)
    assert 0 < redis_client.ttl(banner.KEY) <= banner.TTL_SECONDS
    with django_capture_on_commit_callbacks(execute=True):
        actions.acknowledge(Alert.objects.get(subject="TX"), lead)
    snapshot = json.loads(redis_client.get(banner.KEY))
    assert (snapshot["count"], snapshot["unacknowledged"]) == (2, 1)
    assert {(row["message"][:2], row["acknowledged"]) for row in snapshot["newest"]} == {("TX", True), ("NV", False)}

"""search_worker: bulk actions from outbox entries, retries with backoff, nothing ever lost."""

import datetime as dt

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone
from elasticsearch import Elasticsearch

from clinical.actions import offers as offer_actions
from clinical.actions import patients as patient_actions
from core.models import OutboxEntry
from search import indexer
from search.documents import DOCUMENTS
from search.worker import SearchWorker, backoff_seconds, drain_batch
from support import actions as support_actions
from tests.builders import SYSTEM, make_patient, make_provider, make_visit
from tests.search.stub_es import StubNode, free_port

LATER = dt.timedelta(days=1)


def later():
    """Return a time when every pushed-back entry is due again."""
    return timezone.now() + LATER


def drain_all(client, *, now=timezone.now) -> None:
    while drain_batch(client, now=now).entries:
        pass


def test_it_builds_one_bulk_action_per_record_from_the_current_rows(db, elasticsearch_configured):
    patient = make_patient(first_name="Maria", last_name="Garcia")
    visit = make_visit(patient=patient)
    entries = [("clinical.patient", patient.pk), ("clinical.visit", visit.pk), ("clinical.patient", patient.pk)]
    built = indexer.bulk_actions([*entries, ("support.supportcase", 999_999)])
    assert [(a["_op_type"], a["_index"], a["_id"]) for a in built] == [
        ("index", "test-patients", str(patient.pk)),
        ("index", "test-visits", str(visit.pk)),
        ("delete", "test-cases", "999999"),  # gone from PostgreSQL: gone from the index
    ]
    source = built[0]["_source"]
    expected = ("Maria Garcia", patient.mrn, patient.phone, "1985-03-02")
    assert (source["name"], source["mrn"], source["phone"], source["date_of_birth"]) == expected
    assert built[1]["_source"]["patient_name"] == "Maria Garcia"
    assert source["content_hash"] == DOCUMENTS["patient"].document(patient)["content_hash"]


def test_it_turns_actions_into_the_bulk_api_body():
    body = indexer.operations([
        {"_op_type": "index", "_index": "a", "_id": "1", "_source": {"id": 1}},
        {"_op_type": "delete", "_index": "a", "_id": "2"},
    ])  # fmt: skip
    assert body == [{"index": {"_index": "a", "_id": "1"}}, {"id": 1}, {"delete": {"_index": "a", "_id": "2"}}]


def test_it_drains_the_outbox_in_one_bulk_request_and_deletes_what_it_wrote(db, fake_es):
    patients = [make_patient() for _ in range(3)]
    result = drain_batch(fake_es)
    assert (result.indexed, result.failed) == (3, 0)
    assert [name for name, _ in fake_es.calls] == ["bulk"]
    assert set(fake_es.docs("test-patients")) == {str(p.pk) for p in patients}
    assert not OutboxEntry.objects.exists()


def test_it_indexes_the_latest_state_once_for_many_changes_to_one_record(db, fake_es):
    patient = make_patient(first_name="Maria")
    for name in ("Mara", "Marta"):
        patient.first_name = name
        patient_actions.save_patient(patient, actor=SYSTEM)
    assert drain_batch(fake_es).indexed == 3
    assert fake_es.calls == [("bulk", {"count": 1})]
    assert fake_es.docs("test-patients")[str(patient.pk)]["name"].startswith("Marta")


def test_it_keeps_entries_and_backs_off_while_elasticsearch_is_down(db, fake_es):
    patient = make_patient()
    fake_es.down = True
    result = drain_batch(fake_es)
    assert (result.indexed, result.failed) == (0, 1) and "Connection refused" in result.error
    entry = OutboxEntry.objects.get()
    assert (entry.label, entry.object_id, entry.attempts) == ("clinical.patient", patient.pk, 1)
    assert entry.available_at > timezone.now() and "Connection refused" in entry.last_error
    assert drain_batch(fake_es).entries == 0  # not due again yet: no hammering a node that is down
    fake_es.down = False
    assert drain_batch(fake_es, now=later).indexed == 1
    assert not OutboxEntry.objects.exists()


def test_it_pushes_back_only_the_documents_elasticsearch_refused(db, fake_es):
    good, bad = make_patient(), make_patient()
    fake_es.refuse = {str(bad.pk)}
    result = drain_batch(fake_es)
    assert (result.indexed, result.failed) == (1, 1)
    entry = OutboxEntry.objects.get()
    assert (entry.object_id, entry.attempts) == (bad.pk, 1) and "mapper_parsing_exception" in entry.last_error
    assert str(good.pk) in fake_es.docs("test-patients")


def test_it_never_writes_behind_an_alias_that_does_not_exist(db, elasticsearch_configured):
    from tests.search.fakes import FakeElasticsearch

    make_patient()
    result = drain_batch(FakeElasticsearch())  # no rebuild yet: require_alias refuses to auto-create
    assert result.failed == 1 and OutboxEntry.objects.get().attempts == 1


def test_it_waits_while_another_writer_holds_the_lock(db, fake_es):
    make_patient()
    settings = connection.settings_dict
    other = psycopg2.connect(dbname=settings["NAME"], host=settings["HOST"], user=settings["USER"] or None)
    try:
        other.cursor().execute("SELECT pg_advisory_lock(%s)", [indexer.WRITER_LOCK])
        assert drain_batch(fake_es).busy
        assert OutboxEntry.objects.get().attempts == 0
        other.cursor().execute("SELECT pg_advisory_unlock(%s)", [indexer.WRITER_LOCK])
    finally:
        other.close()
    assert drain_batch(fake_es).indexed == 1


def test_it_doubles_the_wait_after_each_failure_up_to_the_cap(settings):
    settings.SEARCH_RETRY_MAX_SECONDS = 60
    waits = [backoff_seconds(attempt, jitter=lambda: 1.0) for attempt in range(1, 9)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_seconds(3, jitter=lambda: 0.0) == 2  # jitter keeps at least half the delay


def test_it_sleeps_a_poll_interval_when_idle_and_not_while_there_is_work(db, fake_es, settings, monkeypatch):
    monkeypatch.setattr("search.worker.close_old_connections", lambda: None)  # keep the test's transaction
    settings.SEARCH_WORKER_POLL_SECONDS = 7
    slept = []
    worker = SearchWorker(fake_es, sleep=slept.append)
    worker.step()
    make_patient()
    worker.step()
    assert slept == [7] and worker.indexed == 1


@pytest.mark.django_db(transaction=True)
def test_it_loses_no_write_while_elasticsearch_is_unreachable_and_drains_fully_once_it_returns(settings):
    port = free_port()
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{port}"
    settings.SEARCH_INDEX_PREFIX = "test"
    client = Elasticsearch(settings.ELASTICSEARCH_URL, request_timeout=2, max_retries=0)

    # Writes while the node is down: every one commits, each with its outbox entries.
    provider = make_provider(states=("CA",), available=True)
    visits = [make_visit() for _ in range(3)]
    offer_actions.offer_visit(visits[0], provider, actor=SYSTEM)
    case = support_actions.open_case(subject="Waited too long", visit=visits[1], actor=SYSTEM)
    waiting = OutboxEntry.objects.count()
    result = drain_batch(client)
    assert result.failed == waiting and result.error
    assert OutboxEntry.objects.count() == waiting  # nothing lost

    with StubNode(port, {doc.alias for doc in DOCUMENTS.values()}) as node:
        drain_all(client, now=later)
    assert not OutboxEntry.objects.exists()
    assert set(node.docs["test-visits"]) == {str(visit.pk) for visit in visits}
    assert node.docs["test-visits"][str(visits[0].pk)]["status"] == "offered"
    assert node.docs["test-providers"][str(provider.pk)]["availability"] == "reserved"
    assert node.docs["test-cases"][str(case.pk)]["visit_public_id"] == visits[1].public_id
    assert len(node.docs["test-patients"]) == 3

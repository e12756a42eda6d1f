"""Against a live Elasticsearch node: run with ELASTICSEARCH_URL set, skipped (with the reason) otherwise."""

import os
import uuid

import pytest
from django.db import transaction
from elasticsearch import Elasticsearch

from clinical.models import Patient, Visit
from search import indexer
from search.backends.elasticsearch import ElasticsearchBackend
from search.documents import DOCUMENTS
from search.query import parse
from search.worker import drain_batch
from tests.builders import make_patient, make_visit

LIVE_URL = os.environ.get("ELASTICSEARCH_URL")
pytestmark = pytest.mark.skipif(
    not LIVE_URL,
    reason="needs a live Elasticsearch node (Elasticsearch cannot be installed here): set ELASTICSEARCH_URL",
)


@pytest.fixture
def live(settings):
    """Return a client for the live node, with indices of this test's own, deleted afterwards."""
    settings.ELASTICSEARCH_URL = LIVE_URL
    settings.SEARCH_INDEX_PREFIX = f"test-{uuid.uuid4().hex[:8]}"
    client = Elasticsearch(LIVE_URL, request_timeout=30)
    yield client
    client.indices.delete(index=f"{settings.SEARCH_INDEX_PREFIX}-*", ignore_unavailable=True)


def found(client, model, typed: str, document: str) -> list:
    client.indices.refresh(index=DOCUMENTS[document].alias)
    backend = ElasticsearchBackend(client)
    rows = backend.filter(model.objects.all(), parse(typed), document=DOCUMENTS[document])
    return list(rows.order_by("-search_score", "pk"))


@pytest.mark.parametrize(
    "typed", ["Maria Garcia", "mari garc", "maria garcai", "(212) 555-0199", "212.555.0199", "Maria Garcia 3/2/85"]
)
def test_it_finds_the_intended_patient_after_a_rebuild(db, live, typed):
    maria = make_patient(first_name="Maria", last_name="Garcia", phone="+12125550199")
    make_patient(first_name="Mario", last_name="Smith")
    indexer.rebuild(live)
    assert found(live, Patient, typed, "patient")[0] == maria


def test_it_finds_a_visit_by_its_id_typed_without_the_dash(db, live):
    visit = make_visit()
    indexer.rebuild(live)
    assert found(live, Visit, visit.public_id.replace("-", "").lower(), "visit") == [visit]


def test_it_indexes_what_the_worker_drains_and_never_a_rolled_back_write(db, live):
    indexer.rebuild(live)
    kept = make_patient(first_name="Kept", last_name="Record")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_patient(first_name="Rolled", last_name="Back")
        raise RuntimeError("the request failed")
    while drain_batch(live).entries:
        pass
    assert found(live, Patient, "kept record", "patient") == [kept]
    live.indices.refresh(index=DOCUMENTS["patient"].alias)
    assert live.count(index=DOCUMENTS["patient"].alias)["count"] == 1


def test_it_reports_no_drift_after_a_rebuild_and_an_outdated_document_after_a_silent_write(db, live):
    patient = make_patient()
    indexer.rebuild(live)
    live.indices.refresh(index=DOCUMENTS["patient"].alias)
    assert indexer.check(live, DOCUMENTS["patient"]).clean
    Patient.objects.filter(pk=patient.pk).update(city="Elsewhere")  # skips the actions, so the outbox
    assert indexer.check(live, DOCUMENTS["patient"]).outdated == []  # city is not in the document
    Patient.objects.filter(pk=patient.pk).update(last_name="Changed")
    assert indexer.check(live, DOCUMENTS["patient"]).outdated == [patient.pk]

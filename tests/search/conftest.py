"""Search fixtures: Elasticsearch configured (so writes fill the outbox) and a fake node."""

import pytest

from search.documents import DOCUMENTS
from tests.search.fakes import FakeElasticsearch

# Nothing listens here: a real client pointed at it fails as an unreachable node does.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def elasticsearch_configured(settings):
    """Configure Elasticsearch (unreachable) so that every write records outbox entries."""
    settings.ELASTICSEARCH_URL = UNREACHABLE
    settings.SEARCH_INDEX_PREFIX = "test"
    return settings


@pytest.fixture
def fake_es(elasticsearch_configured):
    """Return a fake node with an empty index behind each document's alias, as after a first rebuild."""
    es = FakeElasticsearch()
    for doc in DOCUMENTS.values():
        es.indices.create(index=f"{doc.alias}-v1")
        es.indices.update_aliases(actions=[{"add": {"index": f"{doc.alias}-v1", "alias": doc.alias}}])
    es.calls.clear()
    return es

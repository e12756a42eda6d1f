"""The Elasticsearch backend: ranked ids from the index, rows (and permissions) from PostgreSQL.

The index only ever says which ids match and how well. The rows shown are read from
PostgreSQL by id, so a document that lags behind its row never puts stale data on a screen,
and the changelist's filters and the user's permissions apply to the real rows. When the
node cannot be reached, searches fall back to the PostgreSQL backend instead of failing.
"""

import datetime as dt
import logging
from functools import cache

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db.models import BigIntegerField, F, FloatField, Func, QuerySet, Value
from django.db.models.functions import Cast
from elasticsearch import ApiError, Elasticsearch, TransportError

from search.backends.postgres import PostgresBackend
from search.documents import DocumentType
from search.query import SearchQuery

logger = logging.getLogger(__name__)

EXACT_BOOST = 10.0


@cache
def get_client() -> Elasticsearch:
    """Return the client for ``ELASTICSEARCH_URL``; retries are the worker's business, not the client's."""
    return Elasticsearch(
        settings.ELASTICSEARCH_URL, request_timeout=settings.SEARCH_ES_TIMEOUT, max_retries=0, retry_on_timeout=False
    )


# Which document field each reading of the input is compared with.
FIELDS: dict[str, dict] = {
    "patient": {
        "names": ["name"], "dob": "date_of_birth",
        "identifiers": {"mrn": "mrn", "phone": "phone", "email": "email"},
    },
    "provider": {
        "names": ["name"],
        "identifiers": {"npi": "npi", "phone": "phone", "email": "email", "license": "license_numbers"},
    },
    "visit": {
        "names": ["patient_name", "provider_name"], "dob": "patient_dob",
        "identifiers": {
            "public_id": "public_id", "mrn": "patient_mrn", "phone": "patient_phone", "email": "patient_email",
            "npi": "provider_npi",
        },
    },
    "case": {
        "names": ["patient_name"], "subject": "subject", "dob": "patient_dob",
        "identifiers": {
            "case_id": "id", "public_id": "visit_public_id", "mrn": "patient_mrn", "phone": "patient_phone",
            "email": "patient_email",
        },
    },
}  # fmt: skip


def _name_clause(field: str, words: tuple[str, ...]) -> dict:
    """Match a name as typed so far (every word a prefix), misspelled (fuzzy), and best in order and whole."""
    text = " ".join(words)
    prefixes = [{"prefix": {field: {"value": word}}} for word in words]
    return {
        "bool": {
            "should": [
                {"bool": {"must": prefixes, "_name": f"{field}:prefix"}},
                {"match": {field: {"query": text, "fuzziness": "AUTO", "operator": "and", "_name": f"{field}:fuzzy"}}},
                {"multi_match": {
                    "query": text, "type": "bool_prefix", "operator": "and",
                    "fields": [field, f"{field}._2gram", f"{field}._3gram"], "_name": f"{field}:as_you_type",
                }},
                {"match": {field: {"query": text, "operator": "and", "boost": 2.0, "_name": f"{field}:words"}}},
            ],
            "minimum_should_match": 1,
        }
    }  # fmt: skip


def _people_clause(fields: dict, query: SearchQuery) -> dict | None:
    """Return the name clause, narrowed to the date of birth when one was typed too."""
    names = fields["names"] if query.words else []
    dob_field = fields.get("dob")
    if query.dob and not dob_field:
        return None  # a date of birth means a patient is wanted
    dob = {"term": {dob_field: {"value": query.dob.isoformat(), "_name": dob_field}}} if query.dob else None
    if not names:
        return dob
    by_name = [_name_clause(field, query.words) for field in names]
    name = by_name[0] if len(by_name) == 1 else {"bool": {"should": by_name, "minimum_should_match": 1}}
    return {"bool": {"must": [name], "filter": [dob]}} if dob else name


def build_query(document: str, query: SearchQuery) -> dict | None:
    """Return the Elasticsearch query for ``query`` on ``document``, or None when nothing can match."""
    fields = FIELDS[document]
    should = []
    for reading, field in fields["identifiers"].items():
        value = getattr(query, reading)
        if value:
            value = value.isoformat() if isinstance(value, dt.date) else value
            should.append({"term": {field: {"value": value, "boost": EXACT_BOOST, "_name": field}}})
    if (people := _people_clause(fields, query)) is not None:
        should.append(people)
    if query.words and fields.get("subject"):
        should.append({"match": {fields["subject"]: {"query": query.text, "operator": "and", "_name": "subject"}}})
    if not should:
        return None
    return {"bool": {"should": should, "minimum_should_match": 1}}


def build_search(document: str, query: SearchQuery, *, limit: int) -> dict | None:
    """Return the search request body: ids and scores only, the rows come from PostgreSQL."""
    body = build_query(document, query)
    if body is None:
        return None
    return {"query": body, "size": limit, "_source": False, "track_total_hits": False}


class ScoreOf(Func):
    """``search_score(scores, ids, column)``: the score Elasticsearch gave the row's id, else 0."""

    function = "search_score"
    output_field = FloatField()


class ElasticsearchBackend:
    """Rank with Elasticsearch, read the rows from PostgreSQL."""

    name = "elasticsearch"

    def __init__(self, client: Elasticsearch | None = None, *, fallback=None):
        self.client = client or get_client()
        self.fallback = fallback or PostgresBackend()

    def hits(self, query: SearchQuery, document: DocumentType, *, limit: int) -> list[tuple[int, float]]:
        """Return ``(id, score)`` of the best matches, best first."""
        body = build_search(document.name, query, limit=limit)
        if body is None:
            return []
        response = self.client.search(index=document.alias, body=body)
        return [(int(hit["_id"]), float(hit["_score"] or 0.0)) for hit in response["hits"]["hits"]]

    def filter(
        self,
        queryset: QuerySet,
        query: SearchQuery,
        *,
        document: DocumentType,
        path: str = "",
        follow: int | None = None,
    ) -> QuerySet:
        """Return ``queryset`` narrowed to the matching rows (through ``path``), with ``search_score``.

        ``follow`` is the PostgreSQL backend's business: visit documents carry their people's names.
        """
        try:
            hits = self.hits(query, document, limit=settings.SEARCH_MAX_HITS)
        except (ApiError, TransportError) as error:
            logger.warning("search: Elasticsearch unavailable (%s); searching PostgreSQL instead", error)
            return self.fallback.filter(queryset, query, document=document, path=path, follow=follow)
        if not hits:
            return queryset.none().annotate(search_score=Value(0.0, output_field=FloatField()))
        column = f"{path}_id" if path else "pk"
        ids, scores = [pk for pk, _ in hits], [score for _, score in hits]
        score = ScoreOf(
            Cast(Value(scores), ArrayField(FloatField())), Cast(Value(ids), ArrayField(BigIntegerField())), F(column)
        )
        return queryset.filter(**{f"{column}__in": ids}).annotate(search_score=score)

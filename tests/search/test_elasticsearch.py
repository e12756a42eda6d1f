"""The Elasticsearch path without a node: mappings and analyzers, query bodies, alias swaps, drift."""

import datetime as dt

import pytest
from django.db.models import F, Value
from django.db.models.functions import Concat

from clinical.models import Patient
from search import indexer
from search.backends.elasticsearch import ElasticsearchBackend, build_query, build_search
from search.documents import DOCUMENTS
from search.query import parse
from tests.builders import make_patient
from tests.search.fakes import FakeElasticsearch

TODAY = dt.date(2026, 3, 1)


def mapping(document: str) -> dict:
    return DOCUMENTS[document].es_document._index.to_dict()


def properties(document: str) -> dict:
    return mapping(document)["mappings"]["properties"]


# --- mappings and analyzers ------------------------------------------------------------------


def test_it_maps_names_for_search_as_you_type_with_accents_and_case_folded():
    for document, field in [("patient", "name"), ("provider", "name"), ("visit", "patient_name"),
                            ("visit", "provider_name"), ("case", "patient_name")]:  # fmt: skip
        assert properties(document)[field] == {"type": "search_as_you_type", "analyzer": "person_name"}
    analysis = mapping("patient")["settings"]["analysis"]
    assert analysis["analyzer"]["person_name"] == {
        "type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]
    }  # fmt: skip


def test_it_maps_phones_to_digits_and_emails_to_lower_case_keywords():
    patient = properties("patient")
    assert patient["phone"] == {"type": "keyword", "normalizer": "phone_digits"}
    assert patient["email"] == {"type": "keyword", "normalizer": "lowercase"}
    normalizers = mapping("patient")["settings"]["analysis"]["normalizer"]
    assert normalizers["phone_digits"]["char_filter"] == ["digits_only"]
    assert mapping("patient")["settings"]["analysis"]["char_filter"]["digits_only"]["pattern"] == "[^0-9]"
    assert normalizers["lowercase"]["filter"] == ["lowercase"]


def test_it_maps_identifiers_as_exact_keywords_without_punctuation_or_case():
    expected = {"type": "keyword", "normalizer": "identifier"}
    assert properties("patient")["mrn"] == expected
    assert properties("provider")["npi"] == expected
    assert properties("provider")["license_numbers"] == expected
    assert properties("visit")["public_id"] == expected
    identifier = mapping("visit")["settings"]["analysis"]["normalizer"]["identifier"]
    assert identifier == {"type": "custom", "char_filter": ["alnum_only"], "filter": ["uppercase"]}


def test_it_maps_dates_of_birth_in_the_formats_people_type():
    assert properties("patient")["date_of_birth"] == {"type": "date", "format": "yyyy-MM-dd||MM/dd/yyyy||M/d/yyyy"}


def test_it_never_indexes_the_content_hash_it_only_stores():
    for document in DOCUMENTS:
        assert properties(document)["content_hash"] == {"type": "keyword", "index": False}


# --- query bodies per kind of input ------------------------------------------------------------


def identifier_terms(document: str, typed: str) -> list[dict]:
    body = build_query(document, parse(typed, today=TODAY))
    return [clause["term"] for clause in body["bool"]["should"] if "term" in clause]


@pytest.mark.parametrize(
    ("typed", "field", "value"),
    [
        ("(415) 555-0101", "phone", "+14155550101"),
        ("Maria.Garcia@Example.COM", "email", "maria.garcia@example.com"),
        ("m1234567-8", "mrn", "M12345678"),
    ],
)
def test_it_asks_for_an_exact_identifier_boosted_above_names(typed, field, value):
    assert {field: {"value": value, "boost": 10.0, "_name": field}} in identifier_terms("patient", typed)


def test_it_asks_for_a_visit_id_typed_without_its_dash():
    assert {"public_id": {"value": "7KQ3-M9XD", "boost": 10.0, "_name": "public_id"}} in identifier_terms(
        "visit", "7kq3m9xd"
    )


def test_it_asks_for_a_license_number_and_npi_on_providers():
    assert identifier_terms("provider", "CA-123456") == [
        {"license_numbers": {"value": "CA123456", "boost": 10.0, "_name": "license_numbers"}}
    ]
    assert {"npi": {"value": "1234567893", "boost": 10.0, "_name": "npi"}} in identifier_terms("provider", "1234567893")


def test_it_asks_for_names_as_typed_so_far_and_misspelled():
    body = build_query("patient", parse("wil robe", today=TODAY))
    (name,) = body["bool"]["should"]
    prefixes, fuzzy, as_you_type, words = name["bool"]["should"]
    assert prefixes["bool"]["must"] == [{"prefix": {"name": {"value": "wil"}}}, {"prefix": {"name": {"value": "robe"}}}]
    assert fuzzy == {"match": {"name": {"query": "wil robe", "fuzziness": "AUTO", "operator": "and",
                                        "_name": "name:fuzzy"}}}  # fmt: skip
    assert as_you_type["multi_match"]["type"] == "bool_prefix"
    assert as_you_type["multi_match"]["fields"] == ["name", "name._2gram", "name._3gram"]
    assert words["match"]["name"]["boost"] == 2.0


def test_it_requires_the_date_of_birth_when_a_name_comes_with_one():
    body = build_query("patient", parse("Maria Garcia 3/2/85", today=TODAY))
    (people,) = body["bool"]["should"]
    assert people["bool"]["filter"] == [{"term": {"date_of_birth": {"value": "1985-03-02", "_name": "date_of_birth"}}}]
    assert "prefix" in people["bool"]["must"][0]["bool"]["should"][0]["bool"]["must"][0]


def test_it_searches_visits_by_patient_and_provider_name_and_cases_by_subject():
    visit = build_query("visit", parse("garcia", today=TODAY))
    (names,) = visit["bool"]["should"]
    fields = [clause["bool"]["should"][1]["match"] for clause in names["bool"]["should"]]
    assert [next(iter(f)) for f in fields] == ["patient_name", "provider_name"]
    case = build_query("case", parse("refund", today=TODAY))
    assert {"match": {"subject": {"query": "refund", "operator": "and", "_name": "subject"}}} in case["bool"]["should"]


def test_it_asks_only_for_ids_and_scores():
    body = build_search("patient", parse("garcia", today=TODAY), limit=50)
    assert (body["size"], body["_source"], body["track_total_hits"]) == (50, False, False)


def test_it_asks_nothing_when_the_input_cannot_match():
    assert build_query("patient", parse("!!!", today=TODAY)) is None
    assert build_query("provider", parse("3/2/85", today=TODAY)) is None  # a birth date means a patient


# --- the backend: ids from the index, rows from PostgreSQL --------------------------------------


class ScoredSearch(FakeElasticsearch):
    def __init__(self, hits):
        super().__init__()
        self.hits = hits

    def search(self, *, index, body):
        self._call("search", index=index, body=body)
        return {"hits": {"hits": [{"_id": str(pk), "_score": score} for pk, score in self.hits]}}


def test_it_rehydrates_hits_from_postgresql_in_the_index_order(db, elasticsearch_configured):
    first, second, gone = make_patient(), make_patient(), 999_999
    es = ScoredSearch([(second.pk, 9.0), (gone, 5.0), (first.pk, 1.5)])
    found = ElasticsearchBackend(es).filter(Patient.objects.all(), parse("garcia"), document=DOCUMENTS["patient"])
    assert list(found.order_by("-search_score")) == [second, first]  # a stale hit never reaches a screen
    assert es.calls[0][1]["index"] == "test-patients"


def test_it_applies_filters_to_the_real_rows(db, elasticsearch_configured):
    ny, ca = make_patient(state="NY"), make_patient(state="CA")
    es = ScoredSearch([(ny.pk, 2.0), (ca.pk, 1.0)])
    found = ElasticsearchBackend(es).filter(
        Patient.objects.filter(state="CA"), parse("x"), document=DOCUMENTS["patient"]
    )
    assert list(found) == [ca]


def test_it_falls_back_to_postgresql_when_the_node_is_down(db, elasticsearch_configured):
    patient = make_patient(first_name="Maria", last_name="Garcia")
    backend = ElasticsearchBackend(FakeElasticsearch(down=True))
    found = backend.filter(Patient.objects.all(), parse("maria garcia"), document=DOCUMENTS["patient"])
    assert list(found) == [patient]


# --- rebuild: versioned index, bulk load, alias swap --------------------------------------------


def test_it_rebuilds_into_a_new_index_and_swaps_the_alias_atomically(db, fake_es):
    patients = [make_patient() for _ in range(3)]
    counts = indexer.rebuild(fake_es, [DOCUMENTS["patient"]])
    assert counts == {"patient": 3}
    names = [name for name, _ in fake_es.calls]
    assert names == ["indices.create", "bulk", "indices.refresh", "indices.update_aliases", "indices.delete"]
    new = fake_es.calls[0][1]["index"]
    assert new.startswith("test-patients-")
    assert fake_es.calls[3][1]["actions"] == [
        {"remove": {"index": "test-patients-v1", "alias": "test-patients"}},
        {"add": {"index": new, "alias": "test-patients"}},
    ]
    assert fake_es.calls[4][1] == {"index": "test-patients-v1"}
    assert set(fake_es.docs("test-patients")) == {str(p.pk) for p in patients}
    assert fake_es.mappings[new]["mappings"] == DOCUMENTS["patient"].es_document._index.to_dict()["mappings"]


def test_it_replaces_an_index_that_took_the_alias_name_in_the_same_request(db, elasticsearch_configured):
    es = FakeElasticsearch()
    es.indices_docs["test-cases"] = {"1": {}}  # auto-created by a write before any rebuild
    indexer.rebuild(es, [DOCUMENTS["case"]])
    (update,) = [kwargs for name, kwargs in es.calls if name == "indices.update_aliases"]
    assert update["actions"][0] == {"remove_index": {"index": "test-cases"}}
    assert "test-cases" not in es.indices_docs


def test_it_loads_in_chunks_and_reports_progress(db, fake_es):
    for _ in range(5):
        make_patient()
    seen = []
    indexer.load(fake_es, DOCUMENTS["patient"], "test-patients-v1", chunk=2, progress=lambda *a: seen.append(a))
    assert seen == [("patient", 2, 5), ("patient", 4, 5), ("patient", 5, 5)]
    assert [kwargs["count"] for name, kwargs in fake_es.calls if name == "bulk"] == [2, 2, 1]


# --- check: drift between PostgreSQL and the index -----------------------------------------------


def test_it_reports_missing_extra_and_outdated_documents(db, fake_es):
    kept, missing, outdated = make_patient(), make_patient(), make_patient()
    indexer.load(fake_es, DOCUMENTS["patient"], "test-patients-v1")
    docs = fake_es.docs("test-patients")
    del docs[str(missing.pk)]
    docs["999999"] = {"id": 999_999, "content_hash": "x"}
    Patient.objects.filter(pk=outdated.pk).update(last_name=Concat(F("last_name"), Value("son")))  # skipped the outbox
    drift = indexer.check(fake_es, DOCUMENTS["patient"])
    assert (drift.missing, drift.extra, drift.outdated) == ([missing.pk], [999_999], [outdated.pk])
    assert (drift.rows, drift.documents) == (3, 3) and not drift.clean
    assert kept.pk not in drift.missing + drift.outdated


def test_it_reads_every_document_page_by_page(db, fake_es):
    patients = [make_patient() for _ in range(5)]
    indexer.load(fake_es, DOCUMENTS["patient"], "test-patients-v1")
    hashes = indexer.indexed_hashes(fake_es, DOCUMENTS["patient"], page=2)
    assert sorted(hashes) == sorted(p.pk for p in patients)
    assert len([name for name, _ in fake_es.calls if name == "search"]) == 4  # 2 + 2 + 1, then an empty page

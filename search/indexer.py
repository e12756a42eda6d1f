"""Writing documents to Elasticsearch: bulk actions from outbox entries, full rebuilds, drift checks.

Every document is built from the row as it is in PostgreSQL at that moment, so the order in
which changes arrive does not matter: the latest state always wins. Only one writer runs at a
time (the ``WRITER_LOCK`` advisory lock, see ``search.worker``), so an older state can never
overwrite a newer one.
"""

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from search.documents import BY_LABEL, DOCUMENTS, DocumentType

# pg_advisory lock key held by whoever writes to the index (the worker per batch, a rebuild throughout).
WRITER_LOCK = 0x5EA2C4
Progress = Callable[[str, int, int], None]


def _quiet(what: str, done: int, total: int) -> None:
    """Report no progress."""


def bulk_actions(entries: Iterable[tuple[str, int]]) -> list[dict]:
    """Return the bulk actions for outbox ``(label, object_id)`` entries, one per record.

    A record that still exists is indexed as it is now; one that is gone is deleted.
    """
    wanted: dict[str, set[int]] = {}
    for label, object_id in entries:
        wanted.setdefault(label, set()).add(object_id)
    actions = []
    for label, ids in sorted(wanted.items()):
        doc = BY_LABEL[label]
        rows = {obj.pk: obj for obj in doc.rows().filter(pk__in=ids)}
        for pk in sorted(ids):
            action = {"_op_type": "index" if pk in rows else "delete", "_index": doc.alias, "_id": str(pk)}
            if pk in rows:
                action["_source"] = doc.document(rows[pk])
            actions.append(action)
    return actions


def operations(actions: list[dict]) -> list[dict]:
    """Return the bulk API body (action line, then source line) for ``actions``."""
    body = []
    for action in actions:
        body.append({action["_op_type"]: {"_index": action["_index"], "_id": action["_id"]}})
        if action["_op_type"] == "index":
            body.append(action["_source"])
    return body


def item_errors(response: dict) -> list[str | None]:
    """Return, for each action of a bulk request in order, its error or None (a missing delete is fine)."""
    errors = []
    for item in response.get("items", []):
        ((op, result),) = item.items()
        status = result.get("status", 500)
        ok = status < 300 or (op == "delete" and status == 404)
        errors.append(None if ok else str(result.get("error", status))[:500])
    return errors


def refused(actions: list[dict], response: dict) -> dict[tuple[str, str], str]:
    """Return ``{(alias, id): error}`` for the actions the bulk response refused."""
    if not response.get("errors"):
        return {}
    return {
        (action["_index"], action["_id"]): error
        for action, error in zip(actions, item_errors(response), strict=True)
        if error
    }


# --- rebuild: a new versioned index, loaded in bulk, then an atomic alias swap ---------------


def versioned_name(doc: DocumentType, now: dt.datetime | None = None) -> str:
    """Return the name of a new index for ``doc``, e.g. ``ops-patients-20260301120000``."""
    return f"{doc.alias}-{(now or timezone.now()):%Y%m%d%H%M%S%f}"


def alias_swap(client, doc: DocumentType, new_index: str) -> list[dict]:
    """Point ``doc``'s alias at ``new_index`` in one atomic request; return the alias actions sent.

    The indices the alias pointed at are deleted afterwards. An index that took the alias's
    name (auto-created by a write before the first rebuild) is removed in the same request.
    """
    old = list(client.indices.get_alias(name=doc.alias)) if client.indices.exists_alias(name=doc.alias) else []
    actions = [{"remove": {"index": index, "alias": doc.alias}} for index in old]
    if not old and client.indices.exists(index=doc.alias):
        actions.append({"remove_index": {"index": doc.alias}})
    actions.append({"add": {"index": new_index, "alias": doc.alias}})
    client.indices.update_aliases(actions=actions)
    for index in old:
        client.indices.delete(index=index)
    return actions


def _chunks(doc: DocumentType, size: int) -> Iterator[list]:
    """Yield the rows of ``doc`` in id order, ``size`` at a time (keyset pagination)."""
    last = 0
    while True:
        rows = list(doc.rows().filter(pk__gt=last).order_by("pk")[:size])
        if not rows:
            return
        yield rows
        last = rows[-1].pk


def load(client, doc: DocumentType, index: str, *, chunk: int = 2000, progress: Progress = _quiet) -> int:
    """Bulk-load every row of ``doc`` into ``index``; return how many documents were written."""
    total, done = doc.model.objects.count(), 0
    for rows in _chunks(doc, chunk):
        actions = [{"_op_type": "index", "_index": index, "_id": str(o.pk), "_source": doc.document(o)} for o in rows]
        response = client.bulk(operations=operations(actions), refresh=False)
        if failed := refused(actions, response):
            raise RuntimeError(f"{len(failed)} {doc.name} documents refused, e.g. {next(iter(failed.items()))}")
        done += len(rows)
        progress(doc.name, done, max(total, done))
    return done


def rebuild(client, documents: Iterable[DocumentType] | None = None, *, progress: Progress = _quiet) -> dict:
    """Build a fresh versioned index per document, load it and swap its alias; return counts per document.

    Holds the writer lock throughout, so the worker pauses: changes committed meanwhile wait
    in the outbox and reach the new index right after the swap.
    """
    counts = {}
    with writer_lock():
        for doc in DOCUMENTS.values() if documents is None else documents:
            index = versioned_name(doc)
            client.indices.create(index=index, **doc.es_document._index.to_dict())
            counts[doc.name] = load(client, doc, index, progress=progress)
            client.indices.refresh(index=index)
            alias_swap(client, doc, index)
    return counts


class writer_lock:  # noqa: N801 (a context manager, used like a function)
    """Hold the index writer's advisory lock for the session (waits for the worker's batch)."""

    def __enter__(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [WRITER_LOCK])

    def __exit__(self, *exc):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [WRITER_LOCK])


# --- check: PostgreSQL against the index ------------------------------------------------------


@dataclass
class Drift:
    """How one index differs from PostgreSQL."""

    document: str
    rows: int = 0
    documents: int = 0
    missing: list[int] = field(default_factory=list)  # rows without a document
    extra: list[int] = field(default_factory=list)  # documents without a row
    outdated: list[int] = field(default_factory=list)  # documents that differ from their row

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.outdated)


def indexed_hashes(client, doc: DocumentType, *, page: int = 5000) -> dict[int, str]:
    """Return ``{id: content_hash}`` of every document behind ``doc``'s alias."""
    hashes, after = {}, None
    while True:
        body = {"size": page, "sort": [{"id": "asc"}], "_source": ["content_hash"], "query": {"match_all": {}}}
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=doc.alias, body=body)["hits"]["hits"]
        if not hits:
            return hashes
        hashes.update({int(hit["_id"]): hit["_source"].get("content_hash", "") for hit in hits})
        after = hits[-1]["sort"]


def check(client, doc: DocumentType, *, progress: Progress = _quiet) -> Drift:
    """Compare every row of ``doc`` with its document."""
    indexed = indexed_hashes(client, doc)
    drift = Drift(doc.name, documents=len(indexed))
    total = doc.model.objects.count()
    for rows in _chunks(doc, 2000):
        for obj in rows:
            expected = doc.document(obj)["content_hash"]
            actual = indexed.pop(obj.pk, None)
            if actual is None:
                drift.missing.append(obj.pk)
            elif actual != expected:
                drift.outdated.append(obj.pk)
        drift.rows += len(rows)
        progress(doc.name, drift.rows, max(total, drift.rows))
    drift.extra = sorted(indexed)
    return drift

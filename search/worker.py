"""``search_worker``: drain the outbox into Elasticsearch in bulk, with retries and backoff.

One batch is one transaction: take the writer lock (another worker, or a rebuild, holds it:
wait), lock the due entries, build their documents from PostgreSQL, send one bulk request,
delete the entries that were written and push back the others. Elasticsearch being down never
loses an entry: the batch's entries get ``available_at`` pushed back exponentially and wait.
A crash mid-batch rolls back, so the entries are simply done again (indexing is idempotent).
"""

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from elasticsearch import ApiError, TransportError

from core.models import OutboxEntry
from search import indexer
from search.documents import BY_LABEL

logger = logging.getLogger(__name__)


def backoff_seconds(attempts: int, *, base: float = 1.0, cap: float | None = None, jitter=random.random) -> float:
    """Return how long an entry waits after its ``attempts``-th failure: doubling, capped, jittered.

    The jitter (between half and all of the delay) keeps many waiting entries from retrying in step.
    """
    cap = settings.SEARCH_RETRY_MAX_SECONDS if cap is None else cap
    delay = min(cap, base * 2 ** max(attempts - 1, 0))
    return delay * (0.5 + jitter() / 2)


@dataclass
class BatchResult:
    """What one batch did."""

    indexed: int = 0  # entries whose record was written to (or deleted from) the index
    failed: int = 0  # entries pushed back for a later attempt
    busy: bool = False  # another writer held the lock
    error: str = ""  # why the whole batch failed (e.g. the node was unreachable)

    @property
    def entries(self) -> int:
        return self.indexed + self.failed


def _try_writer_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [indexer.WRITER_LOCK])
        return cursor.fetchone()[0]


def _due(batch_size: int, now: dt.datetime) -> list[OutboxEntry]:
    due = OutboxEntry.objects.select_for_update(skip_locked=True).filter(available_at__lte=now)
    return list(due.order_by("available_at", "id")[:batch_size])


def _push_back(entries: list[OutboxEntry], error: str, now: dt.datetime) -> None:
    for entry in entries:
        entry.attempts += 1
        entry.available_at = now + dt.timedelta(seconds=backoff_seconds(entry.attempts))
        entry.last_error = error[:2000]
    OutboxEntry.objects.bulk_update(entries, ["attempts", "available_at", "last_error"])


def _split(entries: list[OutboxEntry], failed: dict[tuple[str, str], str]) -> tuple[list, list]:
    """Return the entries whose record was written, and ``(entry, error)`` for those refused."""
    done, refused = [], []
    for entry in entries:
        error = failed.get((BY_LABEL[entry.label].alias, str(entry.object_id)))
        if error:
            refused.append((entry, error))
        else:
            done.append(entry)
    return done, refused


def drain_batch(client, *, batch_size: int | None = None, now: Callable[[], dt.datetime] = timezone.now) -> BatchResult:
    """Index one batch of due outbox entries; return what happened."""
    batch_size = batch_size or settings.SEARCH_WORKER_BATCH_SIZE
    with transaction.atomic():
        if not _try_writer_lock():
            return BatchResult(busy=True)
        entries = _due(batch_size, now())
        if not entries:
            return BatchResult()
        actions = indexer.bulk_actions((entry.label, entry.object_id) for entry in entries)
        try:
            response = client.bulk(operations=indexer.operations(actions), require_alias=True)
        except (ApiError, TransportError) as error:
            reason = f"{type(error).__name__}: {getattr(error, 'message', error)}"
            _push_back(entries, reason, now())
            return BatchResult(failed=len(entries), error=reason)
        done, refused = _split(entries, indexer.refused(actions, response))
        deleted, _ = OutboxEntry.objects.filter(pk__in=[entry.pk for entry in done]).delete()
        assert deleted == len(done), "outbox entries vanished under the worker's row locks"
        for entry, error in refused:
            _push_back([entry], error, now())
        return BatchResult(indexed=len(done), failed=len(refused))


class SearchWorker:
    """Drain the outbox until stopped; idle briefly when there is nothing due."""

    def __init__(self, client, *, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.sleep = sleep
        self.stopping = False
        self.indexed = self.failed = 0

    def step(self) -> BatchResult:
        """Run one batch and wait as appropriate: not at all while busy, a poll interval when idle."""
        close_old_connections()
        result = drain_batch(self.client)
        self.indexed += result.indexed
        self.failed += result.failed
        if result.error:
            logger.warning("search worker: Elasticsearch down (%s); %d wait", result.error, result.failed)
        elif result.entries:
            logger.info("search worker: indexed %d, %d pushed back", result.indexed, result.failed)
        if result.error or result.busy or not result.entries:
            self.sleep(settings.SEARCH_WORKER_POLL_SECONDS)
        return result

    def run(self, *, until: float | None = None) -> None:
        """Loop until ``stopping`` is set (or until the monotonic deadline ``until``)."""
        while not self.stopping and (until is None or time.monotonic() < until):
            self.step()

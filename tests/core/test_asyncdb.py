"""Database work from async code: access log rows written in batches, committed before their senders go on."""

import asyncio

import pytest

from core.asyncdb import AccessLogBatch
from core.models import AccessLog


def _rows(n: int) -> list[AccessLog]:
    return [AccessLog(kind="api_read", model="clinical.visit", object_ids=[str(i)], source="push") for i in range(n)]


def test_it_writes_the_rows_that_arrive_together_in_few_inserts_and_waits_for_them(transactional_db):
    batch = AccessLogBatch()

    async def send_all():
        await asyncio.gather(*(batch.record(row) for row in _rows(50)))
        return AccessLog.objects.count  # read after every sender went on

    counter = asyncio.run(send_all())
    assert counter() == 50
    assert batch.inserts == 1  # fifty rows that arrived together: one INSERT, one commit
    assert batch.writing is False and batch.pending == []


def test_it_gives_each_waiting_sender_the_error_of_its_insert(transactional_db):
    batch = AccessLogBatch()
    bad = AccessLog(kind="api_read", source="x" * 61)  # longer than the column: PostgreSQL refuses it

    async def send():
        return await asyncio.gather(batch.record(bad), return_exceptions=True)

    (outcome,) = asyncio.run(send())
    assert isinstance(outcome, Exception)
    assert not AccessLog.objects.exists()
    with pytest.raises(Exception):  # noqa: B017 - whichever DataError the driver raises
        asyncio.run(batch.record(AccessLog(kind="api_read", source="y" * 61)))

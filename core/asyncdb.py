"""Database work from async code (websocket consumers, the push relay), in a pool of threads.

Channels' ``database_sync_to_async`` runs every call of a process on one thread, one after the
other; pushes to thousands of sockets would queue behind each other. These calls run on the
event loop's pool of threads instead, each keeping its own connection (``CONN_MAX_AGE``), with
Django's connection hygiene before and after, as a request has.
"""

import asyncio
import functools
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def in_thread(function: Callable) -> Callable:
    """Return an awaitable version of ``function`` that runs on a pool thread with a healthy connection."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)


class PooledDatabaseConsumer:
    """Mixin for Channels consumers whose handlers reach the database only through ``in_thread``.

        Channels runs ``close_old_connections`` before every message on its one shared thread, so
        each message of every socket of the process waits its turn there (seconds, under load).
        ``in_thread`` already gives each call a healthy connection on a pool thread: this dispatch
        skips the shared thread. ``join`` adds the socket to the groups named in ``joined``, and
    ``disconnect`` takes it out again; ``greet`` sends the first message after ``accept``.
    """

    joined: tuple[str, ...] | list[str] = ()

    async def join(self) -> None:
        """Join the groups in ``joined`` (memberships of the pub/sub layer last as long as the socket)."""
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def greet(self, content) -> bool:
        """Send the socket's first message, just after ``accept``; return False if the client had already left.

        uvicorn (its default websockets-sansio protocol) drops an ``accept`` on a connection the
        client is already closing, then refuses the next send with a RuntimeError naming the accept
        it still expected (seen under load: a client giving up during a slow handshake). That is a
        client gone, not a server error: the disconnect follows, and ``disconnect`` leaves the groups.
        """
        try:
            await self.send_json(content)
        except RuntimeError as error:
            if "Expected ASGI message 'websocket.accept'" not in str(error):
                raise
            return False
        return True

    async def disconnect(self, code):
        """Leave the groups joined (none if the socket was refused before joining)."""
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def dispatch(self, message):
        """Call the handler named by the message's type (``push.message`` → ``push_message``)."""
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class AccessLogBatch:
    """Write PHI access log rows from async code, every row that arrives while one INSERT runs in the next.

    A websocket pushes many messages a second, each one row of the log. One INSERT (and one commit,
    one WAL flush) per row made PostgreSQL wait on the disk for every message, and every request
    behind it. ``record`` still returns only once its row is committed, so a message is recorded
    before it is sent, as an API answer is.
    """

    def __init__(self):
        self.pending: list[tuple[object, asyncio.Future]] = []
        self.writing = False
        self.inserts = 0  # INSERT statements so far (rows arriving together share one)

    async def record(self, row) -> None:
        """Add ``row`` (an unsaved ``AccessLog``) to the next INSERT; return once it is committed."""
        done = asyncio.get_running_loop().create_future()
        self.pending.append((row, done))
        if not self.writing:
            self.writing = True
            asyncio.ensure_future(self._write())
        await done

    async def _write(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                self.inserts += 1
                try:
                    await in_thread(_insert)([row for row, _ in batch])
                except Exception as error:  # noqa: BLE001 - each waiting sender gets the error, not a lost row
                    for _, done in batch:
                        done.set_exception(error)
                    continue
                for _, done in batch:
                    done.set_result(None)
        finally:
            self.writing = False


def _insert(rows: list) -> None:
    type(rows[0]).objects.bulk_create(rows)

"""The push relay: read the push stream, build each message from PostgreSQL, hand it to the channel layer.

One relay is enough (``python manage.py push_relay``; a second one shares the work through the
stream's consumer group, each entry going to one of them). Entries are acknowledged after their
messages were handed over: a relay that dies mid-batch leaves them pending, and the next one to
start sends them (a client ignores a version it has applied). Every ``OPS_PUSH_HEARTBEAT_SECONDS``
it sends a heartbeat to every socket: a socket that hears nothing for 30 s (the relay or the
server is down) makes its client poll until pushes are back.
"""

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings

from clinical.push import messages
from clinical.push.publish import PUSH_STREAM
from core.asyncdb import in_thread

GROUP = "push-relays"
HEARTBEAT_GROUP = "push.heartbeat"
QUEUES_GROUP = "console.queues"
QUEUES_EVERY_SECONDS = 0.5  # the live queues recount at most twice a second, whatever the traffic
logger = logging.getLogger(__name__)


@dataclass
class RelayStats:
    """What the relay has done since it started (printed by ``push_relay`` on exit)."""

    entries: int = 0
    messages: int = 0
    heartbeats: int = 0
    errors: int = 0


class Relay:
    """Moves push stream entries to channel layer groups; ``run`` until ``stop`` is set."""

    def __init__(self, *, name: str | None = None, block_ms: int = 250):
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.block_ms = block_ms
        self.stats = RelayStats()
        self.layer = get_channel_layer()
        self.r = aioredis.from_url(settings.REDIS_URL)
        self._drain_pending = True
        self._next_heartbeat = 0.0
        self._queues_dirty = False
        self._queues_sent = 0.0
        self._group_ready = False

    async def run(self, stop: asyncio.Event) -> RelayStats:
        """Relay until ``stop`` is set; Redis or PostgreSQL being down is waited out, never fatal."""
        while not stop.is_set():
            try:
                await self.step()
            except (redis.RedisError, OSError) as error:
                self._failed(f"Redis: {error}")
                await asyncio.sleep(1)
            except Exception as error:  # noqa: BLE001 (the database down, a bug in one batch): retried
                self._failed(f"{type(error).__name__}: {error}")
                self._drain_pending = True
                await asyncio.sleep(1)
        await self.r.aclose()
        return self.stats

    def _failed(self, message: str) -> None:
        self.stats.errors += 1
        logger.warning("push relay %s: %s; retrying", self.name, message)

    async def step(self) -> None:
        """Relay one batch (pending entries first), then the heartbeat and the queues' nudge when due."""
        await self._ensure_group()
        start = "0" if self._drain_pending else ">"
        block = None if self._drain_pending else self.block_ms
        try:
            answer = await self.r.xreadgroup(GROUP, self.name, {PUSH_STREAM: start}, count=500, block=block)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error) and "UNBLOCKED" not in str(error):
                raise
            # Redis restarted or was flushed (it keeps nothing on disk): the stream is new, so
            # read it from its start; clients that missed anything meanwhile resume.
            logger.warning("push relay %s: the push stream was lost; reading the new one from its start", self.name)
            await self._create_group("0")
            return
        entries = [(entry_id, fields) for _, batch in answer or [] for entry_id, fields in batch]
        if self._drain_pending and not entries:
            self._drain_pending = False
        if entries:
            await self._relay(entries)
            await self.r.xack(PUSH_STREAM, GROUP, *[entry_id for entry_id, _ in entries])
            self.stats.entries += len(entries)
        await self._heartbeat()
        await self._nudge_queues()

    async def _ensure_group(self) -> None:
        if not self._group_ready:
            # On first start, only what is published from now on: older entries were for sockets
            # long gone, and clients resume from PostgreSQL anyway.
            await self._create_group("$")

    async def _create_group(self, start: str) -> None:
        try:
            await self.r.xgroup_create(PUSH_STREAM, GROUP, id=start, mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def _relay(self, entries: list) -> None:
        events: list[tuple[int, float]] = []
        for _, fields in entries:
            fields = {key.decode(): value.decode() for key, value in (fields or {}).items()}
            kind, at = fields.get("kind"), float(fields.get("at") or 0)
            if kind == "transition":
                events += [(int(pk), at) for pk in fields.get("events", "").split(",") if pk.isdigit()]
                self._queues_dirty = True
            elif kind == "queues":
                self._queues_dirty = True
            elif kind == "revoked":
                for pk in fields.get("clients", "").split(","):
                    if pk.isdigit():
                        await self.layer.group_send(messages.client_group(int(pk)), {"type": "push.revoked"})
        if events:
            # In order within a group (a socket sees a visit's versions in order), groups at once:
            # each hand-over is a few Redis round trips, one after the other would queue them all.
            by_group: dict[str, list] = {}
            for message in await in_thread(_build)(events):
                by_group.setdefault(message.group, []).append(message)
            await asyncio.gather(*(self._send_in_order(group, queued) for group, queued in by_group.items()))

    async def _send_in_order(self, group: str, queued: list) -> None:
        for message in queued:
            body = {"type": "push.message", "body": message.body, "visit": message.visit_pk}
            body["patient"] = message.patient_pk
            message.body["relayed_at"] = time.time()  # the relay's share of commit → receive
            await self.layer.group_send(group, body)
            self.stats.messages += 1

    async def _heartbeat(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + settings.OPS_PUSH_HEARTBEAT_SECONDS
        await self.layer.group_send(HEARTBEAT_GROUP, {"type": "push.heartbeat", "at": time.time()})
        self.stats.heartbeats += 1

    async def _nudge_queues(self) -> None:
        now = time.monotonic()
        if self._queues_dirty and now - self._queues_sent >= QUEUES_EVERY_SECONDS:
            self._queues_dirty, self._queues_sent = False, now
            await self.layer.group_send(QUEUES_GROUP, {"type": "push.queues"})


def _build(events: list[tuple[int, float]]) -> list[messages.Message]:
    # Each event's message carries the time its transaction published it (commit → receive latency).
    published = dict(events)
    built = messages.for_events(sorted(published))
    for message in built:
        message.body["published_at"] = published[message.body["version"]]
    return built

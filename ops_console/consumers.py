"""``/ws/console/live/``: the live queues page's push. Session sign-in, the page's permission, two-factor.

The relay nudges the ``console.queues`` group (at most twice a second) when a visit moves or a
provider's availability changes; each socket then sends the page what its JSON feed would
(``clinical.selectors.live_queues``), so the page updates within a second and polls only while
the socket is down or silent.
"""

import json

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from clinical import selectors
from clinical.push.relay import HEARTBEAT_GROUP, QUEUES_GROUP
from core.asyncdb import PooledDatabaseConsumer, in_thread
from ops_console.twofactor.policy import device_of, is_verified, requires_two_factor

CLOSE_FORBIDDEN = 4403
GROUPS = (QUEUES_GROUP, HEARTBEAT_GROUP)


class _Session:
    """What the two-factor policy reads of a request: its session."""

    def __init__(self, session):
        self.session = session


def may_watch(user, session) -> bool:
    """Return True if the live queues page would be shown to this user in this session."""
    if not (user.is_authenticated and user.is_active and user.is_staff and user.has_perm("clinical.view_visit")):
        return False
    if settings.OPS_REQUIRE_2FA and requires_two_factor(user):
        return is_verified(_Session(session), device_of(user))
    return True


class LiveQueuesConsumer(PooledDatabaseConsumer, AsyncJsonWebsocketConsumer):
    """One live queues page: the numbers on every nudge, a heartbeat every 20 s."""

    async def connect(self):
        if not await in_thread(may_watch)(self.scope["user"], self.scope["session"]):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.joined = GROUPS
        await self.join()
        await self.accept()
        await self.push_queues({})

    async def disconnect(self, code):
        for group in GROUPS:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """The page sends nothing; anything it does send is ignored."""

    async def decode_json(self, text_data):
        return None

    @classmethod
    async def encode_json(cls, content):
        return json.dumps(content, cls=DjangoJSONEncoder)

    async def push_queues(self, event):
        """Something the queues count changed: send the page the numbers its feed would."""
        await self.send_json({"type": "queues", "data": await in_thread(selectors.live_queues)()})

    async def push_heartbeat(self, event):
        """The relay is alive: tell the page."""
        await self.send_json({"type": "heartbeat", "at": event["at"]})

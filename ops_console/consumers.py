"""``/ws/console/live/``: the live queues page's push. Session sign-in, the page's permission, two-factor.

The relay nudges the ``console.queues`` group (at most twice a second) when a visit moves or a
provider's availability changes; each socket then sends the page what its JSON feed would
(``clinical.selectors.live_queues``), so the page updates within a second and polls only while
the socket is down or silent.
"""

import json
import time
from importlib import import_module

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.serializers.json import DjangoJSONEncoder

from clinical import selectors
from clinical.push.relay import HEARTBEAT_GROUP, QUEUES_GROUP
from core.asyncdb import PooledDatabaseConsumer, in_thread
from ops_console.signin import LAST_SEEN, idle_too_long
from ops_console.twofactor.policy import device_of, is_verified, requires_two_factor

CLOSE_SIGNED_OUT = 4401
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


def still_watching(session_key: str | None, user_id: int | None) -> bool:
    """Return True while the socket's session is signed in as its user, not idle for longer than
    ``OPS_SESSION_IDLE_MINUTES`` (the pages' own rule, ``ops_console.signin``), and the user may
    still watch (active, the permission, two-factor).

    Pushes are not activity: a page left open is signed out as if it were polling nothing.
    """
    if not session_key or user_id is None:
        return False
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if str(session.get(SESSION_KEY)) != str(user_id):  # signed out, expired, or flushed
        return False
    if idle_too_long(session.get(LAST_SEEN), time.time()):
        return False
    user = get_user_model().objects.filter(pk=user_id).first()
    return user is not None and may_watch(user, session)


class LiveQueuesConsumer(PooledDatabaseConsumer, AsyncJsonWebsocketConsumer):
    """One live queues page: the numbers on every nudge, a heartbeat every 20 s.

    At each heartbeat the session is read again: a socket whose session was signed out, went idle
    past the limit, or whose user lost the page is closed (4401), and the page, falling back to
    its feed, meets the sign-in page as any other request would.
    """

    async def connect(self):
        if not await in_thread(may_watch)(self.scope["user"], self.scope["session"]):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.session_key, self.user_id = self.scope["session"].session_key, self.scope["user"].pk
        self.joined = GROUPS
        await self.join()
        await self.accept()
        await self.greet(await self._numbers())

    async def receive_json(self, content, **kwargs):
        """The page sends nothing; anything it does send is ignored."""

    async def decode_json(self, text_data):
        return None

    @classmethod
    async def encode_json(cls, content):
        return json.dumps(content, cls=DjangoJSONEncoder)

    async def push_queues(self, event):
        """Something the queues count changed: send the page the numbers its feed would."""
        await self.send_json(await self._numbers())

    @staticmethod
    async def _numbers() -> dict:
        """Return the message with the numbers the page's feed would answer."""
        return {"type": "queues", "data": await in_thread(selectors.live_queues)()}

    async def push_heartbeat(self, event):
        """The relay is alive: tell the page, unless its session has ended meanwhile."""
        if not await in_thread(still_watching)(self.session_key, self.user_id):
            await self.close(code=CLOSE_SIGNED_OUT)
            return
        await self.send_json({"type": "heartbeat", "at": event["at"]})

"""ASGI entry point: the console and the API over HTTP, and the websockets under ``/ws/``, on one port.

``gunicorn ops_console.asgi:application -k uvicorn_worker.UvicornWorker`` (``make run``).

HTTP requests run Django's WSGI handler on a fixed pool of ``OPS_WEB_THREADS`` threads per worker
(``ops_console.threaded_wsgi``, which says why), each keeping its database connection between
requests (``CONN_MAX_AGE``). Websockets go to Channels, their database work on the event loop's
pool of threads (``core.asyncdb``):

- ``/ws/v1/``: the apps (bearer tokens; ``clinical.api.consumers``).
- ``/ws/console/live/``: the live queues page (session, its permission, two-factor; only from
  this site's own pages, ``ALLOWED_HOSTS`` checked against the ``Origin``).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ops_console.settings")
django_wsgi = get_wsgi_application()  # sets Django up before the consumers import models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from clinical.api.consumers import AppConsumer  # noqa: E402
from core.request_id import RequestIdAsgiMiddleware  # noqa: E402
from ops_console.consumers import LiveQueuesConsumer  # noqa: E402
from ops_console.threaded_wsgi import ThreadedWsgi  # noqa: E402

websocket_urls = URLRouter(
    [
        path("ws/v1/", AppConsumer.as_asgi()),
        path("ws/console/live/", AllowedHostsOriginValidator(AuthMiddlewareStack(LiveQueuesConsumer.as_asgi()))),
    ]
)

http = ThreadedWsgi(django_wsgi, threads=settings.OPS_WEB_THREADS)
# A websocket's log lines and handshake carry a request id, as HTTP requests' do (core.request_id).
application = ProtocolTypeRouter({"http": http, "websocket": RequestIdAsgiMiddleware(websocket_urls)})

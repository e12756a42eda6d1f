"""gunicorn's settings for the console's web server: its own log lines in the console's format.

``gunicorn -c ops_console/gunicorn_conf.py ops_console.asgi:application -k uvicorn_worker.UvicornWorker``

gunicorn's error log (and uvicorn's, which shares its handlers) goes to stderr through
``core.logs``, one JSON object per line like every other process's (``OPS_LOG_FORMAT=text`` for
people). Neither writes an access log: the console logs one ``ops.request`` line per request
(``core.request_id``) with its request id, user, status and duration, which theirs would only
repeat without them. Read in gunicorn's master process, before Django is set up.
"""

from core.env import env_choice, env_str
from core.logs import logging_config

accesslog = None  # the console's "ops.request" lines instead

logconfig_dict = logging_config(
    level=env_str("OPS_LOG_LEVEL", "INFO"), style=env_choice("OPS_LOG_FORMAT", "json", ("json", "text"))
)
logconfig_dict["loggers"] |= {
    # uvicorn's workers take over these loggers' handlers (uvicorn_worker), and keep them once
    # Django has configured logging in the worker.
    "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    "gunicorn.access": {"handlers": [], "level": "INFO", "propagate": False},
}

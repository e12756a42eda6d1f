"""Log lines for machines: one JSON object per line, from every process (web, workers, commands).

Each line has ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and ``message``;
inside a request, ``RequestContextFilter`` adds ``request_id``, ``method``, ``path`` and, once the
request knows who it serves, ``user_id`` (a console user) or ``api_client_id`` (an API token's
client); ``core.request_id`` sets the request up. Fields given
with ``extra=`` are kept (``status`` and ``duration_ms`` on the ``ops.request`` line), and an
exception is one string field, so a traceback never spans lines. ``OPS_LOG_FORMAT=text`` writes the
same fields as one readable line for a person at a terminal.

Only the standard library: gunicorn's master process formats its own lines with these classes
before Django is set up (``ops_console/gunicorn_conf.py``).
"""

import contextvars
import datetime as dt
import json
import logging
from typing import Any

# The request this thread or task is serving: set and reset by ``core.request_id``.
_request_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("request_fields", default=None)

# Attributes every LogRecord has: anything else on a record came from ``extra=`` or from the filter.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Django's ``django.request`` logger attaches the request object: its repr holds the query string,
# which may hold a patient's name (a search); the filter's fields say what a line needs instead.
# uvicorn attaches its message again with terminal colour codes.
_DROPPED = frozenset({"request", "color_message"})


def set_request_fields(fields: dict[str, Any]) -> contextvars.Token:
    """Make ``fields`` part of every log line until the returned token is reset."""
    return _request_fields.set(fields)


def reset_request_fields(token: contextvars.Token) -> None:
    """End what ``set_request_fields`` started: a pooled thread's next request starts clean."""
    _request_fields.reset(token)


def http_request_fields(request) -> dict[str, Any]:
    """Return what ``set_request_fields`` takes for a Django request given its ``request_id``."""
    return {"request_id": request.request_id, "method": request.method, "path": request.path, "request": request}


def request_fields() -> dict[str, Any]:
    """Return the fields of the request being served (empty outside a request)."""
    fields = _request_fields.get()
    return {} if fields is None else _shown(fields)


def _shown(fields: dict[str, Any]) -> dict[str, Any]:
    request = fields.get("request")
    shown = {key: value for key, value in fields.items() if key != "request"}
    if request is None:
        return shown
    who = {"user_id": loaded_user_id(request), "api_client_id": getattr(request.__dict__.get("api_client"), "pk", None)}
    return shown | {key: value for key, value in who.items() if value is not None}


def loaded_user_id(request) -> int | None:
    """Return the id of the signed-in user the request has already loaded, else None.

    Never loads it: a log line must not query the database (a line about a failing database
    would fail again), so this reads the cache ``django.contrib.auth``'s middleware fills when the
    request first asks who its user is (every console page does, in ``IdleSessionMiddleware``).
    """
    user = request.__dict__.get("_cached_user")
    return user.pk if user is not None and user.is_authenticated else None


class RequestContextFilter(logging.Filter):
    """Add the fields of the request being served to every record (leaving ``extra=`` values alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = request_fields()
        request = getattr(record, "request", None)
        if not fields and getattr(request, "request_id", None):
            # django.request logs a 4xx once the middleware has returned, outside the request's
            # context, and hands the request over instead.
            fields = _shown(http_request_fields(request))
        for key, value in fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        _drop_query_string(record)
        return True


def _drop_query_string(record: logging.LogRecord) -> None:
    """Cut the query string from uvicorn's websocket lines (``"WebSocket /ws/v1/?resume=…" [accepted]``):
    it can carry visit ids, and no log line shows a query string.
    """
    args = record.args
    websocket = isinstance(record.msg, str) and '"WebSocket %s"' in record.msg
    if websocket and isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], str):
        record.args = (args[0], args[1].split("?", 1)[0], *args[2:])


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return a record's fields beyond the standard ones: the request's and those given with ``extra=``."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and key not in _DROPPED and not key.startswith("_")
    }


def utc_time(created: float) -> str:
    """Return an epoch time as ISO 8601 in UTC with milliseconds, e.g. ``2026-03-01T12:00:00.123Z``."""
    return dt.datetime.fromtimestamp(created, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_fields(record),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Format a record as a line for people: time, level, logger, message, then ``key=value`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in record_fields(record).items())
        line = f"{utc_time(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line += f"  [{fields}]" if fields else ""
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def logging_config(*, level: str, style: str) -> dict:
    """Return the ``logging.config.dictConfig`` of every process: one handler on stderr, ``style`` json or text."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}, "text": {"()": TextFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": style,
                "filters": ["request"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        # Django's own handlers (a console one for DEBUG, mail to ADMINS) dropped: its lines go to
        # the root's handler like everyone's, at the same level.
        "loggers": {"django": {"handlers": [], "level": level, "propagate": True}},
    }

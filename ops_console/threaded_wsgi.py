"""Serve Django's WSGI handler to an ASGI server's HTTP requests, on a fixed pool of threads.

Why not Django's ASGI handler: it runs each request on a thread of its own, so a database
connection cannot outlive its request (Django asks for ``CONN_MAX_AGE = 0`` under ASGI) and
every page pays for a new one. Why not asgiref's ``WsgiToAsgi``: it runs every request of a
process on one shared thread and sends the response with ``AsyncToSync`` from that thread, which
under uvicorn leaks its executor into requests started meanwhile ("CurrentThreadExecutor already
quit or is broken"). Here each request runs start to finish (the view, the response body, its
``close()`` and so ``request_finished``) on one thread of a fixed pool, as under gunicorn's threaded
workers: the threads keep their connections between requests, and chunks come back to the event
loop through a bounded queue (a slow client slows its own response only). A response whose body
is already in memory (every page and API answer; not a file or a stream) crosses to the event
loop once, headers and body together, without the thread waiting for the loop: each crossing
wakes the loop and, waited for, hands the GIL back and forth between the two threads.
"""

import asyncio
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from tempfile import SpooledTemporaryFile

_DONE = object()
QUEUED_CHUNKS = 8


class ThreadedWsgi:
    """An ASGI app (HTTP only) running ``wsgi_app`` on ``threads`` threads of its own."""

    def __init__(self, wsgi_app, *, threads: int):
        self.wsgi_app = wsgi_app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope, receive, send):
        body = SpooledTemporaryFile(max_size=65536)  # noqa: SIM115 - closed by the thread when done
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body.close()
                return
            body.write(message.get("body", b""))
            if not message.get("more_body"):
                break
        body.seek(0)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUED_CHUNKS)
        gone = threading.Event()
        running = loop.run_in_executor(self.pool, self._run, scope, body, loop, queue, gone)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, list):  # a whole response, the last item
                    for message in item:
                        await send(message)
                    break
                await send(item)
        except OSError:  # the client went away: let the thread finish, dropping what it sends
            gone.set()
            while not isinstance(item, list) and (item := await queue.get()) is not _DONE:
                pass
        await running

    def _run(self, scope, body, loop, queue, gone) -> None:
        """Run the WSGI app on this pool thread and hand its response to the event loop, chunk by chunk."""

        def put(item) -> None:
            if not gone.is_set() or item is _DONE:
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        started = []

        def start_response(status, headers, exc_info=None):
            # Django writes Set-Cookie values with a leading space (Morsel.output(header="")),
            # which uvicorn's HTTP parser refuses: values are trimmed, as Django's ASGI handler does.
            code = int(status.split(" ", 1)[0])
            encoded = [(name.lower().encode("latin-1"), value.strip().encode("latin-1")) for name, value in headers]
            started.append({"type": "http.response.start", "status": code, "headers": encoded})
            return lambda data: None  # the legacy write() callable: Django never uses it

        finished = False
        try:
            environ = wsgi_environ(scope, body)
            result = self.wsgi_app(environ, start_response)
            try:
                if getattr(result, "streaming", True) is False:  # Django's HttpResponse: one chunk, in memory
                    whole = b"".join(result)
                else:
                    whole = None
                    put(started[0])
                    for chunk in result:
                        if chunk:
                            put({"type": "http.response.body", "body": chunk, "more_body": True})
            finally:
                if hasattr(result, "close"):
                    result.close()  # Django's request_finished: connection hygiene on this thread
            if whole is not None:
                # The queue is empty (nothing was put): hand the whole response over without waiting.
                response = [started[0], {"type": "http.response.body", "body": whole, "more_body": False}]
                loop.call_soon_threadsafe(queue.put_nowait, response)
                finished = True
            else:
                put({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:
            if not started:
                put({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
                put({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})
            raise
        finally:
            body.close()
            if not finished:
                put(_DONE)


def wsgi_environ(scope: dict, body) -> dict:
    """Return the WSGI environ (PEP 3333) of an ASGI HTTP scope, reading the request from ``body``."""
    root = scope.get("root_path", "")
    path = scope["path"]
    server = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": (path[len(root) :] if root and path.startswith(root) else path).encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1] or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"] = scope["client"][0]
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        # Repeated headers are joined with commas (RFC 9110), as WSGI servers do; cookies with "; ".
        joiner = "; " if key == "HTTP_COOKIE" else ","
        environ[key] = f"{environ[key]}{joiner}{value}" if key in environ else value
    return environ

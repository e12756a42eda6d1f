"""A real SMTP server (aiosmtpd) and a real webhook receiver (http.server), run in the test process.

Used by the alert tests (``tests/oversight/conftest.py``) and the alert journey of the browser tests.
"""

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    """Return a local TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """What the SMTP server received, as parsed e-mail messages with their envelopes."""

    def __init__(self):
        self.messages, self.envelopes = [], []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """Run a real SMTP server on a free local port; yield its inbox and port."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


class Receiver:
    """A webhook receiver: records each POST and answers the next status of ``statuses`` (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0  # seconds each answer takes
        self.lock = threading.Lock()

    def answer(self, headers, body: bytes) -> int:
        time.sleep(self.delay)
        with self.lock:
            self.requests.append({"headers": headers, "body": body})
            return self.statuses.pop(0) if self.statuses else 200

    def payloads(self) -> list[dict]:
        return [json.loads(request["body"]) for request in self.requests]


@contextmanager
def webhook_receiver() -> Iterator[tuple[Receiver, str]]:
    """Run a real HTTP server that records the webhook's POSTs; yield the receiver and its URL."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's hook name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = receiver.answer(self.headers, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}/hooks/ops"
    finally:
        server.shutdown()
        server.server_close()

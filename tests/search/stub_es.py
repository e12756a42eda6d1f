"""A tiny HTTP server that answers the bulk API like an Elasticsearch node, for the real client.

Lets a test take a node "down" and bring it back on the same port: the client, its
connection errors and its response handling are the real ones.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def free_port() -> int:
    """Return a local port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StubNode:
    """Serve ``POST /_bulk`` on ``port`` into ``self.docs`` (alias -> id -> source) until stopped."""

    def __init__(self, port: int, aliases: set[str]):
        self.docs: dict[str, dict[str, dict]] = {alias: {} for alias in aliases}
        self.requests = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                url = urlparse(self.path)
                node.requests += 1
                if url.path != "/_bulk":
                    return self._reply(404, {"error": "not stubbed"})
                require_alias = parse_qs(url.query).get("require_alias") == ["true"]
                return self._reply(
                    200, node.bulk([json.loads(line) for line in body.splitlines() if line], require_alias)
                )

            do_PUT = do_POST  # noqa: N815 (the client sends bulk requests with PUT)

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.elasticsearch+json; compatible-with=8")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bulk(self, lines: list[dict], require_alias: bool) -> dict:
        items, lines = [], iter(lines)
        for line in lines:
            ((op, meta),) = line.items()
            source = next(lines) if op == "index" else None
            docs = self.docs.get(meta["_index"])
            if docs is None:
                status = 404 if require_alias else 201
            elif op == "index":
                docs[meta["_id"]], status = source, 201
            else:
                status = 200 if docs.pop(meta["_id"], None) is not None else 404
            items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": status}})
        return {"took": 1, "errors": any(next(iter(i.values()))["status"] >= 300 for i in items), "items": items}

    def __enter__(self) -> "StubNode":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

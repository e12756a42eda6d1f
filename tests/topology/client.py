"""A person's HTTPS client through the test's TLS proxy: cookies, forms, and a source address of its own.

Every connection goes to 127.0.0.1 (the proxy's port) whatever the host name in the URL, which the
client sends as SNI and ``Host`` and checks the certificate against, as a browser would. Each
client connects from the loopback address it is given (127.0.0.2, 127.0.0.3, …), so the proxy
sees a different client address for each person, while the app servers only ever see the proxy's.
"""

import http.client
import http.cookiejar
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

import websockets.sync.client

from devtools.htmlforms import form_fields

__all__ = ["Client", "Response", "form_fields"]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: str

    def json(self):
        return json.loads(self.body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a test reads each redirect's Location itself


def _connect(source: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout, (source, 0))


class _ProxyHandler(urllib.request.HTTPSHandler, urllib.request.HTTPHandler):
    """Open http and https connections to 127.0.0.1 from ``source``, whatever the URL's host."""

    def __init__(self, source: str, context: ssl.SSLContext):
        urllib.request.HTTPSHandler.__init__(self, context=context)
        self.source = source

    def _factory(self, cls):
        def make(host, **kwargs):
            connection = cls(host, **kwargs)
            connection._create_connection = lambda address, timeout, _source=None: _connect(
                self.source, address[1], timeout
            )
            return connection

        return make

    def https_open(self, req):
        return self.do_open(self._factory(http.client.HTTPSConnection), req, context=self._context)

    def http_open(self, req):
        return self.do_open(self._factory(http.client.HTTPConnection), req)


class Client:
    """One person's browser, reduced to what the topology test needs."""

    def __init__(self, *, base: str, context: ssl.SSLContext, source: str = "127.0.0.1"):
        self.base = base.rstrip("/")
        self.context = context
        self.source = source
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            _ProxyHandler(source, context), _NoRedirects(), urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def request(self, method: str, path: str, *, data: bytes | None = None, headers: dict | None = None) -> Response:
        """Send one request (no redirect followed) and return its answer, whatever its status."""
        url = path if "://" in path else f"{self.base}{path}"
        assert url.startswith(("https://", "http://")), url
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - checked above
        try:
            with self.opener.open(req, timeout=60) as answer:
                return Response(answer.status, answer.headers, answer.read().decode(errors="replace"))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.headers, error.read().decode(errors="replace"))

    def get(self, path: str, **headers) -> Response:
        return self.request("GET", path, headers=headers)

    def follow(self, response: Response, limit: int = 5) -> Response:
        """Follow ``response``'s redirects with GETs; return the first answer that is not one."""
        while response.status in (301, 302, 303) and limit:
            response, limit = self.get(urllib.parse.urljoin(self.base + "/", response.headers["Location"])), limit - 1
        return response

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((cookie for cookie in self.cookies if cookie.name == name), None)

    def post(self, path: str, fields: dict, *, files: dict | None = None) -> Response:
        """Submit a form as a browser would: the CSRF token, the page's own Origin and Referer."""
        csrf = self.cookie("csrftoken")
        fields = {**fields, "csrfmiddlewaretoken": csrf.value if csrf else ""}
        headers = {"Origin": self.base, "Referer": f"{self.base}{path}"}
        if files:
            data, headers["Content-Type"] = _multipart(fields, files)
        else:
            data = urllib.parse.urlencode(fields, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.request("POST", path, data=data, headers=headers)

    def websocket(self, path: str, **kwargs) -> websockets.sync.client.ClientConnection:
        """Open a websocket (``wss://``) through the proxy from this client's address."""
        parts = urllib.parse.urlsplit(self.base)
        sock = _connect(self.source, parts.port, 10)
        return websockets.sync.client.connect(
            f"wss://{parts.netloc}{path}", sock=sock, ssl=self.context, server_hostname=parts.hostname,
            open_timeout=10, **kwargs,
        )  # fmt: skip


def _multipart(fields: dict, files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (file_name, content) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"

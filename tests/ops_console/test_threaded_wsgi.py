"""ops_console.threaded_wsgi: Django's WSGI responses handed to the ASGI server, whole or streamed."""

import asyncio

import pytest
from django.http import HttpResponse, StreamingHttpResponse

from ops_console.threaded_wsgi import ThreadedWsgi

SCOPE = {"type": "http", "method": "GET", "path": "/x", "query_string": b"", "headers": [], "http_version": "1.1"}


def app_for(make_response):
    """Return a WSGI app answering with ``make_response()``; its ``events`` note when Django's ``close()`` runs."""

    def app(environ, start_response):
        response = make_response()
        response._resource_closers.append(lambda: app.events.append("closed"))
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return response

    app.events = []
    return app


def serve(app, *, fail_send: bool = False) -> list:
    """Run one request through ``ThreadedWsgi(app)``; return what it sent, with "closed" where close() ran."""
    events = app.events
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        return requests.pop(0)

    async def send(message):
        if fail_send:
            raise OSError("the client went away")
        events.append(message)

    asgi = ThreadedWsgi(app, threads=2)
    try:
        asyncio.run(asgi(SCOPE, receive, send))
    finally:
        asgi.pool.shutdown()
    return events


def test_it_sends_a_response_in_memory_as_its_headers_and_whole_body_after_close():
    sent = serve(app_for(lambda: HttpResponse(b"hello", content_type="text/plain")))

    assert sent[0] == "closed"  # request_finished before the client has the response, as before
    start, body = sent[1:]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"content-type", b"text/plain") in start["headers"]
    assert body == {"type": "http.response.body", "body": b"hello", "more_body": False}


def test_it_streams_a_streaming_response_chunk_by_chunk():
    sent = serve(app_for(lambda: StreamingHttpResponse(iter([b"a", b"", b"b"]))))

    assert sent[0]["type"] == "http.response.start"
    assert [m["body"] for m in sent[1:3]] == [b"a", b"b"] and all(m["more_body"] for m in sent[1:3])
    assert sent[3:] == ["closed", {"type": "http.response.body", "body": b"", "more_body": False}]


@pytest.mark.parametrize(
    "make_response",
    [lambda: HttpResponse(b"hello"), lambda: StreamingHttpResponse(iter([b"a", b"b"]))],
    ids=["in memory", "streamed"],
)
def test_it_finishes_the_request_when_the_client_goes_away(make_response):
    sent = serve(app_for(make_response), fail_send=True)

    assert sent == ["closed"]  # Django's request_finished ran; nothing was left waiting


def test_it_answers_500_when_the_app_fails_before_answering():
    def broken(environ, start_response):
        raise RuntimeError("boom")

    broken.events = []
    with pytest.raises(RuntimeError, match="boom"):
        serve(broken)

    start, body = broken.events
    assert start["status"] == 500
    assert body == {"type": "http.response.body", "body": b"Internal Server Error", "more_body": False}

"""The HTTP server's production limits, seen from raw sockets against a real server:
slow or idle clients are cut off, floods refused, and errors keep connections usable."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from longops.server.serving import Limits
from tests.support.servers import ThreadServer
from tests.support.waiting import until_sync

SHORT = Limits(header_timeout=0.5, body_timeout=0.5, max_connections=50)


def connect(server: ThreadServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a hang fails the
    test through the socket's timeout)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def envelope(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower()
    return status, json.loads(body)["error"]


def response(sock: socket.socket) -> http.client.HTTPResponse:
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    answer.read()
    return answer


@pytest.fixture
def short_limits(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(workers=0, limits=SHORT)


def test_half_a_header_is_answered_408_and_closed(short_limits: ThreadServer) -> None:
    with connect(short_limits) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, error = envelope(read_until_closed(sock))
    assert status == 408 and error["status"] == "DEADLINE_EXCEEDED"
    assert "headers" in error["message"]


def test_a_connection_that_never_speaks_is_closed(short_limits: ThreadServer) -> None:
    with connect(short_limits) as sock:
        status, _ = envelope(read_until_closed(sock))
    assert status == 408


def test_headers_past_the_size_cap_are_refused(short_limits: ThreadServer) -> None:
    with connect(short_limits) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (80 << 10))
        status, _ = envelope(read_until_closed(sock))
    assert status == 431


def test_a_body_that_stops_arriving_is_answered_408_and_closed(
    short_limits: ThreadServer,
) -> None:
    with connect(short_limits) as sock:
        sock.sendall(
            b"POST /v1beta/operations/x:wait HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"timeout"'
        )
        status, error = envelope(read_until_closed(sock))
    assert status == 408 and "body" in error["message"]


def test_a_slow_but_steady_body_is_not_cut_off(short_limits: ThreadServer) -> None:
    """The body limit is inactivity, not a total: an upload may take as long as it needs."""
    body = b'{"timeout": "0s"}'
    with connect(short_limits) as sock:
        sock.sendall(
            b"POST /v1beta/operations/x:wait HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(len(body)):  # ~1.7 s in all, over three times the body timeout
            time.sleep(0.1)
            sock.sendall(body[i : i + 1])
        answer = response(sock)
    assert answer.status == 404  # the operation doesn't exist: the request got through


def test_connections_past_the_cap_are_refused_at_once(
    make_server: Callable[..., ThreadServer],
) -> None:
    server = make_server(workers=0, limits=Limits(max_connections=5))
    held = [connect(server) for _ in range(5)]
    try:
        with connect(server) as refused:
            status, error = envelope(read_until_closed(refused))
        assert status == 503 and error["status"] == "UNAVAILABLE"
        held.pop().close()
        with connect(server) as sock:
            until_sync(lambda: _healthy(sock), timeout=10, what="a slot to free up")
    finally:
        for sock in held:
            sock.close()


def _healthy(sock: socket.socket) -> bool:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        return response(sock).status == 200
    except (http.client.HTTPException, OSError):
        return False


# -- errors keep connections usable ---------------------------------------------


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """longops's loggers propagate to caplog's; uvicorn's stop at "uvicorn": add it there."""
    caplog.set_level(logging.INFO)
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    yield caplog
    uvicorn_log.removeHandler(caplog.handler)


def test_an_unexpected_error_is_a_500_envelope_on_a_connection_that_stays_usable(
    make_server: Callable[..., ThreadServer], server_log: pytest.LogCaptureFixture
) -> None:
    server = make_server(workers=0)
    store = server.engine.store
    real_get = store.get
    calls = 0

    async def broken_once(id: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return await real_get(id)

    store.get = broken_once  # type: ignore[method-assign]
    with connect(server) as sock:
        request = b"GET /v1beta/operations/abc HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request)
        first = http.client.HTTPResponse(sock)
        first.begin()
        body = json.loads(first.read())
        sock.sendall(request)  # the same connection
        second = response(sock)
    assert first.status == 500 and body["error"]["status"] == "INTERNAL"
    assert "a bug" not in json.dumps(body)
    assert second.status == 404
    errors = [r for r in server_log.records if r.exc_info is not None]
    assert [r.getMessage() for r in errors] == ["unhandled error on GET /v1beta/operations/abc"]


def test_a_client_leaving_mid_body_is_no_error(
    make_server: Callable[..., ThreadServer], server_log: pytest.LogCaptureFixture
) -> None:
    server = make_server(workers=0)
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1beta/operations/x:wait HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n0123456789"
        )
    until_sync(
        lambda: any("client left" in r.getMessage() for r in server_log.records),
        timeout=10,
        what="the server to see the client leave",
    )
    assert not [r for r in server_log.records if r.exc_info is not None]
    assert "Exception in ASGI application" not in server_log.text


def test_half_a_header_after_a_request_with_a_body_is_cut_at_the_header_timeout(
    make_server: Callable[..., ThreadServer],
) -> None:
    """A kept-alive connection's next request gets the header timeout, however long the
    body timeout of the request before it (one watchdog serves every phase)."""
    server = make_server(workers=0, limits=Limits(header_timeout=0.5, body_timeout=30))
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1beta/operations/none:cancel HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        assert response(sock).status == 404
        began = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, _ = envelope(read_until_closed(sock))
    assert status == 408
    assert time.monotonic() - began < 10  # the header timeout, not the body's 30 s

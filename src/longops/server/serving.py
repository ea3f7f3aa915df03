"""Serving the app with the limits a production HTTP server needs, and a prompt shutdown.

uvicorn times out idle keep-alive connections, but not a client that sends its
headers or its body a byte at a time: each such connection is held forever, and a
few thousand of them exhaust the process (slowloris). `http_protocol` adds the
missing limits to uvicorn's httptools protocol:

- the request line and headers must arrive within `header_timeout` seconds of the
  connection (or, on a kept-alive connection, of the request's first byte), and
  take at most `max_header_bytes`: else 408 or 431 and the connection is closed;
- a body must keep arriving: `body_timeout` seconds without a byte, while the app is
  waiting for more, is a 408 and a closed connection. It is an inactivity limit, not
  a total: a large upload on a slow network takes as long as it needs;
- past `max_connections` open connections a new one gets a 503 at once and is
  closed, so a flood is refused instead of piling up.

`Server` answers open `:wait` calls and starts the workers' grace as soon as a
shutdown begins (see `create_app`); requests still open when the grace ends get a
503 UNAVAILABLE in Google's envelope from the app (`errors.AnswerFailures`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from longops.server.errors import ApiError, error_response

log = logging.getLogger("longops.server")


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float = 15.0
    """Seconds for the request line and headers to arrive."""
    body_timeout: float = 60.0
    """Seconds a request body may go without a byte while the app waits for it."""
    keep_alive_timeout: int = 5
    """Seconds an idle kept-alive connection stays open."""
    max_connections: int = 2000
    """Open connections past which new ones are refused with a 503."""
    max_header_bytes: int = 64 << 10
    """Bytes the request line and headers may take."""
    shutdown_timeout: float = 30.0
    """Seconds open requests get to finish on shutdown before they are answered 503."""


def _raw_error(status: int, reason: str, name: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in Google's envelope, for the protocol to
    write itself when no app is (yet) handling the request."""
    body = bytes(error_response(ApiError(status, message, status=name)).body)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_TIMEOUT = (408, "Request Timeout", "DEADLINE_EXCEEDED")
_HEADERS_TOO_SLOW = _raw_error(*_TIMEOUT, "The request headers took too long to arrive.")
_BODY_TOO_SLOW = _raw_error(*_TIMEOUT, "The request body stopped arriving.")
_HEADERS_TOO_LARGE = _raw_error(
    431, "Request Header Fields Too Large", "INVALID_ARGUMENT", "The request headers are too large."
)
_TOO_MANY_CONNECTIONS = _raw_error(
    503,
    "Service Unavailable",
    "UNAVAILABLE",
    "The server has too many open connections; retry shortly.",
)


class _Warnings:
    """At most one warning per kind every few seconds: a flood must not flood the log."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) >= self._interval:
            self._last[key] = now
            log.warning(message, *args)


class _LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits]
    warnings: ClassVar[_Warnings]

    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes: int = 0
    _body_timer: asyncio.TimerHandle | None = None
    _body_seen: float = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.warnings.warn(
                "connections", "refusing connections past %d", self.limits.max_connections
            )
            self._refuse(_TOO_MANY_CONNECTIONS)
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk that completes the headers may carry much body.
        if self._header_timer is not None and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(_HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a kept-alive connection's next request
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        self._body_seen = self.loop.time()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._check_body)

    def on_body(self, body: bytes) -> None:
        self._body_seen = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _arm_header_timer(self) -> None:
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        self.warnings.warn("headers", "closing connections whose headers are too slow")
        self._refuse(_HEADERS_TOO_SLOW)

    def _check_body(self) -> None:
        """Checked at the deadline rather than re-armed per chunk, which would make a
        timer per read. Time while reading is paused (the app has not taken what came)
        is the app's, not the client's."""
        now = self.loop.time()
        if self.flow.read_paused:
            self._body_seen = now
        idle = now - self._body_seen
        if idle < self.limits.body_timeout:
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout - idle, self._check_body
            )
            return
        self._body_timer = None
        self.warnings.warn("body", "closing connections whose request body stopped arriving")
        self._refuse(_BODY_TOO_SLOW)

    def _refuse(self, response: bytes) -> None:
        """Answer `response` unless the app already started one, and close."""
        self._cancel_timers()
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            if self.cycle is not None:
                self.cycle.response_started = True  # the app's answer, if any, is dropped
            self.transport.write(response)
        self.transport.close()


def http_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with `limits` (pass as uvicorn's `http=`)."""
    return type(
        "LimitedHttpToolsProtocol",
        (_LimitedHttpToolsProtocol,),
        {"limits": limits, "warnings": _Warnings()},
    )


class Server(uvicorn.Server):
    """uvicorn's server, calling `on_shutdown` as soon as a shutdown begins: before it
    waits for open requests (for which uvicorn has no hook of its own)."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._on_shutdown is not None:
            self._on_shutdown()
        await super().shutdown(sockets)


def server(app: Any, limits: Limits | None = None, **config: Any) -> Server:
    """A `Server` for a longops app (see `create_app`), with `limits`; `config` goes to
    `uvicorn.Config` (host, port, log_level...)."""
    limits = limits or Limits()
    uvicorn_config = uvicorn.Config(
        app,
        http=http_protocol(limits),
        ws="none",  # the API has no WebSockets; an upgrade must not swap the protocol out
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=math.ceil(limits.shutdown_timeout),
        **config,
    )
    return Server(uvicorn_config, getattr(getattr(app, "state", None), "begin_shutdown", None))

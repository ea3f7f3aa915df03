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

from longops.server.errors import ErrorReply, error_response

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


def _raw_error(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in Google's envelope, for the protocol to
    write itself when no app is (yet) handling the request."""
    body = bytes(error_response(ErrorReply(status, message)).body)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_TIMEOUT = (408, "Request Timeout")
_HEADERS_TOO_SLOW = _raw_error(*_TIMEOUT, "The request headers took too long to arrive.")
_BODY_TOO_SLOW = _raw_error(*_TIMEOUT, "The request body stopped arriving.")
_HEADERS_TOO_LARGE = _raw_error(
    431, "Request Header Fields Too Large", "The request headers are too large."
)
_TOO_MANY_CONNECTIONS = _raw_error(
    503, "Service Unavailable", "The server has too many open connections; retry shortly."
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


_IDLE, _HEADERS, _BODY = 0, 1, 2
"""Where a connection is: between requests (uvicorn's keep-alive timeout applies),
reading a request's line and headers, or reading its body."""


class _LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One watchdog timer per connection, not a timer per request: each request only
    notes the time its phase began (or its body last moved), and the watchdog, when it
    fires, closes a connection that is late or sleeps again for what remains. Arming
    and cancelling timers for every request cost the hottest path (polling GETs)."""

    limits: ClassVar[Limits]
    warnings: ClassVar[_Warnings]

    _phase: int = _IDLE
    _since: float = 0.0
    """When the headers began to arrive, or the body last moved."""
    _header_bytes: int = 0
    _watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.warnings.warn(
                "connections", "refusing connections past %d", self.limits.max_connections
            )
            self._refuse(_TOO_MANY_CONNECTIONS)
            return
        self._begin(_HEADERS)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watchdog()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase != _BODY:
            self._header_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk that completes the headers may carry much body.
        if self._phase == _HEADERS and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(_HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase == _IDLE:  # a kept-alive connection's next request
            self._begin(_HEADERS)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._begin(_BODY)

    def on_body(self, body: bytes) -> None:
        self._since = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase, self._header_bytes = _IDLE, 0
        super().on_message_complete()

    def _begin(self, phase: int) -> None:
        self._phase, self._since = phase, self.loop.time()
        deadline = self._since + self._allowed()
        # A watchdog due sooner will see this phase when it fires, and sleep on.
        if self._watchdog is None or self._watchdog.when() > deadline:
            self._stop_watchdog()
            self._watchdog = self.loop.call_at(deadline, self._check)

    def _allowed(self) -> float:
        return self.limits.header_timeout if self._phase == _HEADERS else self.limits.body_timeout

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check(self) -> None:
        """The watchdog. Between requests it sleeps until the next one begins. Time while
        reading is paused (the app has not taken what came) is the app's, not the
        client's."""
        self._watchdog = None
        if self._phase == _IDLE:
            return
        now = self.loop.time()
        if self._phase == _BODY and self.flow.read_paused:
            self._since = now
        remaining = self._since + self._allowed() - now
        if remaining > 0:
            self._watchdog = self.loop.call_later(remaining, self._check)
        elif self._phase == _HEADERS:
            self.warnings.warn("headers", "closing connections whose headers are too slow")
            self._refuse(_HEADERS_TOO_SLOW)
        else:
            self.warnings.warn("body", "closing connections whose request body stopped arriving")
            self._refuse(_BODY_TOO_SLOW)

    def _refuse(self, response: bytes) -> None:
        """Answer `response` unless the app is part-way through an answer of its own
        (the cycle is the last request's until the next one's headers are in), and
        close."""
        self._stop_watchdog()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            if cycle is not None:
                cycle.response_started = True  # the app's answer, if any, is dropped
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

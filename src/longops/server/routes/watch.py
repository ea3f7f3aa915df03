"""Watch streams: an operation's, or a collection's, changes as server-sent events.

`GET /{v}/{name}:watch` streams one operation: its state at once, then one event per
change of progress or state, the last when it is done (then the stream ends).
`GET /{v}/operations:watch?filter=…` (or `{parent}/operations:watch`) streams every
change of the tenant's operations that the filter (the list's: `done`, `kind`)
matches, from now on; it never ends by itself.

Each event is `event: operation`, `id: POSITION` and `data: ` the Operation JSON exactly
as GET renders it. A position is the operation's `updateTime` in microseconds since
the epoch (for a collection, the latest one the stream has sent): a reconnect with
`Last-Event-ID` gets, for one operation, its state at once unless it is still the one
of that position; for a collection, every matching operation written since that
position (less `WATCH_LOOKBACK`, for writes stamped before they committed), then
live changes. Comments (`: keep-alive`) go out every `watch_keepalive_seconds`.

Streams hear of changes through the engine's hub, one set of listeners per operation
(no polling per stream). A slow reader never costs unbounded memory: what it has not
taken yet is the latest state of each operation (newer states replace older ones),
and a collection stream that falls more than `_BACKLOG` operations behind drops them
and reads what changed since its position again, as a reconnect would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from longops.engine import Engine, OperationRecord
from longops.engine.engine import WATCH_LOOKBACK, WATCH_REFRESH_LIMIT
from longops.server import names
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.errors import invalid_argument, not_found
from longops.server.render import RenderCache
from longops.server.routes.base import Routes
from longops.server.routes.operations import OperationRoutes

_BACKLOG = 1000
"""Operations a collection stream holds for a slow reader before it reads again instead."""
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell nginx-like proxies not to hold events back
]
_KEEPALIVE = b": keep-alive\n\n"


def position(record: OperationRecord) -> int:
    """An event's id: the write it shows, in microseconds since the epoch."""
    return round(record.update_time * 1_000_000)


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id")
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 20:
        raise invalid_argument(
            f"Last-Event-ID {raw[:40]!r} is not a position this server gave.",
            field="Last-Event-ID",
        )
    return int(text)


class WatchRoutes(Routes):
    def __init__(
        self,
        engine: Engine,
        auth: Authenticator,
        config: ServerConfig,
        operations: OperationRoutes,
    ) -> None:
        super().__init__(engine, auth, config)
        self._operations = operations
        self._rendered = RenderCache(engine.registry)

    def routes(self) -> list[BaseRoute]:
        return [Route("/{version:apiver}/{name:path}:watch", self.watch, methods=["GET"])]

    async def watch(self, request: Request) -> Response:
        tenant = self.auth.tenant(request)
        name: str = request.path_params["name"]
        since = _last_event_id(request)
        if name == "operations" or name.endswith("/operations"):
            parent = name[: -len("operations")].rstrip("/")
            prefix = f"{names.check_parent(parent)}/operations/" if parent else None
            done, kinds = self._operations._parse_filter(request.query_params.get("filter", ""))

            def wanted(record: OperationRecord) -> bool:
                return (
                    record.tenant == tenant
                    and (prefix is None or record.name.startswith(prefix))
                    and (done is None or record.done == done)
                    and (kinds is None or record.kind in kinds)
                )

            return _Stream(self, None, wanted, since, tenant)
        id = names.operation_id(name)
        # Listening before the read: a change committed while it runs is not missed.
        stream = _Stream(self, id, lambda r: r.id == id, since, tenant)
        try:
            record = await self.engine.get(id, tenant)
            if record is None or not names.matches(name, record.name, id):
                raise not_found(f"Operation {name} not found.")
        except BaseException:
            stream.close()
            raise
        stream.first = record
        return stream


class _Stream(Response):
    """One watch stream, written straight to the ASGI connection: a listener on the hub
    that keeps the latest unsent state of each operation, and a loop that sends them."""

    def __init__(
        self,
        routes: WatchRoutes,
        id: str | None,
        wanted: Callable[[OperationRecord], bool],
        since: int | None,
        tenant: str,
    ) -> None:
        self._routes = routes
        self._engine = routes.engine
        self._id = id  # None: a collection
        self.first: OperationRecord | None = None
        """The operation as read when the stream was asked for (one operation's stream)."""
        self._wanted = wanted
        self._since = since
        self._tenant = tenant
        self._pending: dict[str, OperationRecord | None] = {}
        self._resync = False
        self._sent: dict[str, tuple[float, bytes]] = {}
        self._wake = asyncio.Event()
        self._ended = False
        self._position = since or 0
        hub = self._engine.hub
        listening = hub.on_any_change(self._heard) if id is None else hub.on_change(id, self._heard)
        self._off = [listening, hub.on_stop(self._stop)]

    def close(self) -> None:
        """Stop listening (the stream ended, or was never sent)."""
        for off in self._off:
            off()
        self._off = []

    # -- hearing changes (called by the hub, on the loop) -------------------------

    def _heard(self, id: str, record: OperationRecord | None) -> None:
        if record is not None and not self._wanted(record):
            return
        if record is None and self._id is None:
            return  # a collection shows no deletions
        if id not in self._pending and len(self._pending) >= _BACKLOG:
            self._pending.clear()
            self._resync = True
        else:
            self._pending[id] = record
        self._wake.set()

    def _stop(self) -> None:
        self._ended = True
        self._wake.set()

    # -- the stream --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        listening = asyncio.create_task(self._listen(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await self._begin(send)
            await self._run(send)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.close()
            listening.cancel()

    async def _listen(self, receive: Receive) -> None:
        """Notice the client going away (the stream has no body to read)."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self._stop()

    async def _begin(self, send: Send) -> None:
        """What a (re)connecting client is owed before the live changes."""
        if self._id is not None:
            # Heard while the route read it? The newer of the two.
            record = self._pending.pop(self._id, self.first)
            first = self.first
            if record is not None and first is not None and first.update_time > record.update_time:
                record = first
            if record is None:
                self._ended = True
            elif self._since is None or position(record) != self._since:
                await self._send(send, record)
            elif record.done:
                self._ended = True
        elif self._since is not None:
            self._resync = True
        if self._engine.hub.waits_stopped:  # shutting down: the stream ends here
            self._ended = True

    async def _run(self, send: Send) -> None:
        keepalive = self._routes.config.watch_keepalive_seconds
        while not self._ended:
            if not self._pending and not self._resync:
                self._wake.clear()
                try:
                    async with asyncio.timeout(keepalive):
                        await self._wake.wait()
                except TimeoutError:
                    await send(
                        {"type": "http.response.body", "body": _KEEPALIVE, "more_body": True}
                    )
                    continue
            if self._ended:
                return
            if self._resync:
                self._resync = False
                await self._catch_up(send)
            while self._pending and not self._ended:
                id = next(iter(self._pending))
                record = self._pending.pop(id)
                if record is None:  # deleted: the operation's stream ends
                    self._ended = True
                    return
                await self._send(send, record)

    async def _catch_up(self, send: Send) -> None:
        """Every matching operation written since the stream's position (a reconnect, or
        a reader that fell behind), oldest write first."""
        since = self._position / 1_000_000 - WATCH_LOOKBACK
        while True:
            found = await self._engine.store.changed_since(
                since, WATCH_REFRESH_LIMIT, tenant=self._tenant
            )
            for record in found:  # what was heard meanwhile stays pending: it may be newer
                if self._wanted(record) and not self._ended:
                    await self._send(send, record)
            if len(found) < WATCH_REFRESH_LIMIT or found[-1].update_time <= since:
                return
            since = found[-1].update_time

    async def _send(self, send: Send, record: OperationRecord) -> None:
        """One event, unless it shows nothing new (a state heard twice, or one older
        than what was sent already)."""
        body = self._routes._rendered.body(record)
        last = self._sent.get(record.id)
        if last is not None and (record.update_time < last[0] or body == last[1]):
            if record.done and self._id is not None:
                self._ended = True
            return
        if self._id is not None:
            self._sent[record.id] = (record.update_time, body)
        else:
            self._sent.pop(record.id, None)  # kept small: only the latest few
            if len(self._sent) >= _BACKLOG:
                del self._sent[next(iter(self._sent))]
            self._sent[record.id] = (record.update_time, body)
        self._position = max(self._position, position(record))
        event = b"event: operation\nid: %d\ndata: %s\n\n" % (
            self._position if self._id is None else position(record),
            body,
        )
        await send({"type": "http.response.body", "body": event, "more_body": True})
        if record.done and self._id is not None:
            self._ended = True

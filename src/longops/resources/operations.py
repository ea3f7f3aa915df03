"""The operations API: get, list, wait, cancel, delete, and starting operations of any kind."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, overload

import aiohttp
import httpx
import orjson
from pydantic import BaseModel

from longops._flow import flow_fields
from longops._pagers import AsyncPager, Page, Pager
from longops._transport import TransportConfig
from longops.errors import RequestTimeoutError, TransportError
from longops.resources._base import (
    ApiContext,
    AsyncResource,
    SyncResource,
    coerce,
    options,
    resource_name,
)
from longops.types import GetOperationConfig, Operation, OperationT, RetryOptions, WebhookConfig

__all__ = ["AsyncOperations", "Operations"]

# The longest single `:wait` call; a longer wait is several calls, so that no one HTTP request
# outlives proxies' idle timeouts.
_MAX_WAIT_CALL = 60.0
# How much longer than the server's wait the HTTP read may take before it counts as lost.
_WAIT_READ_MARGIN = 10.0
# A watch stream that drops this many times in a row without an event in between is given up.
_WATCH_RECONNECTS = 5
# The largest event a watch stream reads; a longer line means the answer is not one.
_MAX_EVENT_BYTES = 64 << 20


class Operations(SyncResource):
    """Synchronous long-running operations API."""

    @overload
    def get(
        self, operation: OperationT, *, config: GetOperationConfig | dict[str, Any] | None = None
    ) -> OperationT: ...
    @overload
    def get(
        self, operation: str | object, *, config: GetOperationConfig | dict[str, Any] | None = None
    ) -> Operation: ...
    def get(
        self,
        operation: Operation | str | object,
        *,
        config: GetOperationConfig | dict[str, Any] | None = None,
    ) -> Operation:
        """The operation's current state: the same class for an Operation, inferred otherwise.

        `operation` may be a name, a longops Operation or google-genai's (anything with a
        `name`); `config` is google-genai's GetOperationConfig, which has no options.
        """
        options(config, GetOperationConfig)
        name = _name(operation)
        method, path, body = _poll_request(name, self._context)
        data = self._transport.request(method, path, body=body, idempotent=True)
        return self._context.parse_operation(data, _class(operation))

    def list(
        self,
        *,
        parent: str | None = None,
        filter: str | None = None,
        done: bool | None = None,
        kind: str | None = None,
        page_size: int | None = None,
    ) -> Pager[Operation]:
        """Operations under `parent` (all of them when None); `done`/`kind` narrow the filter."""
        path = _list_path(parent)
        params = _list_params(filter, done, kind, page_size)

        def fetch(page_token: str | None) -> Page[Operation]:
            query = params if page_token is None else {**params, "pageToken": page_token}
            return _page(self._transport.request("GET", path, params=query), self._context)

        return Pager(fetch, fetch(None))

    def cancel(self, operation: Operation | str) -> None:
        self._transport.send("POST", f"{_name(operation)}:cancel", body={}, idempotent=True)

    def delete(self, operation: Operation | str) -> None:
        self._transport.send("DELETE", _name(operation))

    @overload
    def wait(self, operation: OperationT, *, timeout: float | None = None) -> OperationT: ...
    @overload
    def wait(self, operation: str, *, timeout: float | None = None) -> Operation: ...
    def wait(self, operation: Operation | str, *, timeout: float | None = None) -> Operation:
        """Block until the operation is done or `timeout` seconds pass; return its latest state.

        The server holds each call open until the operation is done, so nothing polls here.
        Like google.longrunning's WaitOperation, an operation still running at the timeout is
        returned, not raised.
        """
        name, cls = _name(operation), _class(operation)
        deadline = _deadline(timeout)
        while True:
            seconds = _wait_seconds(deadline)
            data = self._transport.request(
                "POST",
                f"{name}:wait",
                body=_wait_body(seconds),
                idempotent=True,
                timeout=seconds + _WAIT_READ_MARGIN,
            )
            result = self._context.parse_operation(data, cls)
            if result.done or _expired(deadline):
                return result

    @overload
    def watch(self, operation: OperationT) -> Iterator[OperationT]: ...
    @overload
    def watch(self, operation: str) -> Iterator[Operation]: ...
    def watch(self, operation: Operation | str) -> Iterator[Operation]:
        """Each new state of the operation, from the one it has now, until it is done.

        Reads the server's `:watch` stream (server-sent events), so a change arrives as it
        happens; a dropped stream is resumed where it left off (`Last-Event-ID`), up to
        5 times in a row. The client's timeout bounds connecting and each read (the
        server sends keep-alives), not the whole watch.
        """
        name, cls = _name(operation), _class(operation)
        stream = _Stream(f"{name}:watch", self._transport.config)
        while True:
            response = self._transport.send(
                "GET", stream.path, headers=stream.headers(), stream=True, idempotent=True
            )
            cause: Exception | None = None
            try:
                for chunk in response.iter_bytes():
                    for data in stream.feed(chunk):
                        result = self._context.parse_operation(data, cls)
                        yield result
                        if result.done:
                            return
            except httpx.TransportError as exc:  # the answer broke off part-way
                cause = exc
            finally:
                response.close()
            timed_out = isinstance(cause, httpx.TimeoutException)
            time.sleep(stream.dropped(self._transport.config.retry, cause, timed_out))

    def start(
        self,
        kind: str,
        request: Mapping[str, Any] | BaseModel | None = None,
        *,
        request_id: str | None = None,
        webhook_config: WebhookConfig | dict[str, Any] | object | None = None,
        priority: int | None = None,
        schedule_time: datetime | str | None = None,
        schedule_delay: float | timedelta | str | None = None,
        concurrency_key: str | None = None,
    ) -> Operation:
        """Start an operation of `kind`.

        The request id (a fresh UUID unless given) makes the create idempotent, so the
        transport may retry it without starting the operation twice. `webhook_config`
        (`uris`, `user_metadata`) says where its end is announced (README: "Webhooks").
        `priority` (0 to 1000, 500 by default) orders the claims of waiting operations;
        `schedule_time` (a timezone-aware datetime or RFC 3339 text) or `schedule_delay`
        (seconds or a timedelta) delays its start; `concurrency_key` (e.g. a customer's
        id) puts it under its kind's per-key limits (README: "Flow control").
        """
        data = self._transport.request(
            "POST",
            f"kinds/{resource_name(kind)}:start",
            params={"requestId": request_id or str(uuid.uuid4())},
            body={
                **_start_body(request, webhook_config),
                **flow_fields(priority, schedule_time, schedule_delay, concurrency_key),
            },
            idempotent=True,
        )
        return self._context.parse_operation(data)


class AsyncOperations(AsyncResource):
    """Asynchronous long-running operations API."""

    @overload
    async def get(
        self, operation: OperationT, *, config: GetOperationConfig | dict[str, Any] | None = None
    ) -> OperationT: ...
    @overload
    async def get(
        self, operation: str | object, *, config: GetOperationConfig | dict[str, Any] | None = None
    ) -> Operation: ...
    async def get(
        self,
        operation: Operation | str | object,
        *,
        config: GetOperationConfig | dict[str, Any] | None = None,
    ) -> Operation:
        """The operation's current state: the same class for an Operation, inferred otherwise.

        `operation` may be a name, a longops Operation or google-genai's (anything with a
        `name`); `config` is google-genai's GetOperationConfig, which has no options.
        """
        options(config, GetOperationConfig)
        name = _name(operation)
        method, path, body = _poll_request(name, self._context)
        data = await self._transport.request(method, path, body=body, idempotent=True)
        return self._context.parse_operation(data, _class(operation))

    async def list(
        self,
        *,
        parent: str | None = None,
        filter: str | None = None,
        done: bool | None = None,
        kind: str | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[Operation]:
        """Operations under `parent` (all of them when None); `done`/`kind` narrow the filter."""
        path = _list_path(parent)
        params = _list_params(filter, done, kind, page_size)

        async def fetch(page_token: str | None) -> Page[Operation]:
            query = params if page_token is None else {**params, "pageToken": page_token}
            return _page(await self._transport.request("GET", path, params=query), self._context)

        return AsyncPager(fetch, await fetch(None))

    async def cancel(self, operation: Operation | str) -> None:
        await self._transport.send("POST", f"{_name(operation)}:cancel", body={}, idempotent=True)

    async def delete(self, operation: Operation | str) -> None:
        await self._transport.send("DELETE", _name(operation))

    @overload
    async def wait(self, operation: OperationT, *, timeout: float | None = None) -> OperationT: ...
    @overload
    async def wait(self, operation: str, *, timeout: float | None = None) -> Operation: ...
    async def wait(self, operation: Operation | str, *, timeout: float | None = None) -> Operation:
        """Block until the operation is done or `timeout` seconds pass; return its latest state.

        The server holds each call open until the operation is done, so nothing polls here.
        Like google.longrunning's WaitOperation, an operation still running at the timeout is
        returned, not raised.
        """
        name, cls = _name(operation), _class(operation)
        deadline = _deadline(timeout)
        while True:
            seconds = _wait_seconds(deadline)
            data = await self._transport.request(
                "POST",
                f"{name}:wait",
                body=_wait_body(seconds),
                idempotent=True,
                timeout=seconds + _WAIT_READ_MARGIN,
            )
            result = self._context.parse_operation(data, cls)
            if result.done or _expired(deadline):
                return result

    @overload
    def watch(self, operation: OperationT) -> AsyncIterator[OperationT]: ...
    @overload
    def watch(self, operation: str) -> AsyncIterator[Operation]: ...
    async def watch(self, operation: Operation | str) -> AsyncIterator[Operation]:
        """Each new state of the operation, from the one it has now, until it is done
        (see `Operations.watch`)."""
        name, cls = _name(operation), _class(operation)
        stream = _Stream(f"{name}:watch", self._transport.config)
        while True:
            response = await self._transport.send(
                "GET", stream.path, headers=stream.headers(), stream=True, idempotent=True
            )
            cause: Exception | None = None
            try:
                async for chunk in response.aiter_bytes(1 << 16):
                    for data in stream.feed(chunk):
                        result = self._context.parse_operation(data, cls)
                        yield result
                        if result.done:
                            return
            except (aiohttp.ClientError, TimeoutError) as exc:  # the answer broke off part-way
                cause = exc
            finally:
                await response.aclose()
            timed_out = isinstance(cause, TimeoutError)
            await asyncio.sleep(stream.dropped(self._transport.config.retry, cause, timed_out))

    async def start(
        self,
        kind: str,
        request: Mapping[str, Any] | BaseModel | None = None,
        *,
        request_id: str | None = None,
        webhook_config: WebhookConfig | dict[str, Any] | object | None = None,
        priority: int | None = None,
        schedule_time: datetime | str | None = None,
        schedule_delay: float | timedelta | str | None = None,
        concurrency_key: str | None = None,
    ) -> Operation:
        """Start an operation of `kind`.

        The request id (a fresh UUID unless given) makes the create idempotent, so the
        transport may retry it without starting the operation twice. `webhook_config`
        (`uris`, `user_metadata`) says where its end is announced (README: "Webhooks").
        `priority` (0 to 1000, 500 by default) orders the claims of waiting operations;
        `schedule_time` (a timezone-aware datetime or RFC 3339 text) or `schedule_delay`
        (seconds or a timedelta) delays its start; `concurrency_key` (e.g. a customer's
        id) puts it under its kind's per-key limits (README: "Flow control").
        """
        data = await self._transport.request(
            "POST",
            f"kinds/{resource_name(kind)}:start",
            params={"requestId": request_id or str(uuid.uuid4())},
            body={
                **_start_body(request, webhook_config),
                **flow_fields(priority, schedule_time, schedule_delay, concurrency_key),
            },
            idempotent=True,
        )
        return self._context.parse_operation(data)


class _Stream:
    """One watch: the server-sent events read so far, where to resume, and how often it
    dropped in a row. Only what the SDK needs of SSE: `data` lines joined, `id`, and
    comments (keep-alives) skipped."""

    def __init__(self, path: str, config: TransportConfig) -> None:
        self.path = path
        self.url = f"{config.base_url}/{config.api_version}/{path}"  # for errors
        self.last_event_id: str | None = None
        self._drops = 0
        self._buffer = b""
        self._data: list[bytes] = []
        self._id: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["last-event-id"] = self.last_event_id
        self._buffer, self._data, self._id = b"", [], None  # a new connection starts afresh
        return headers

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """The events `chunk` completes, as the JSON objects they carry."""
        self._buffer += chunk
        events: list[dict[str, Any]] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line, self._buffer = self._buffer[:end].rstrip(b"\r"), self._buffer[end + 1 :]
            if not line:
                if self._data:
                    data = orjson.loads(b"\n".join(self._data))
                    if self._id is not None:
                        self.last_event_id = self._id
                    self._drops = 0
                    if isinstance(data, dict):
                        events.append(data)
                self._data, self._id = [], None
                continue
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"data":
                self._data.append(value)
            elif field == b"id":
                self._id = value.decode(errors="replace")
        if len(self._buffer) > _MAX_EVENT_BYTES:
            raise TransportError(f"The watch stream {self.url} sent an endless line.", self.url)
        return events

    def dropped(self, retry: RetryOptions, cause: Exception | None, timed_out: bool) -> float:
        """The stream ended before the operation was done (a server restarting, a proxy's
        cut, `cause`): seconds to wait before resuming, or raise once it kept failing
        (`RequestTimeoutError` when the last one went silent past the client's timeout)."""
        self._drops += 1
        if self._drops > _WATCH_RECONNECTS:
            why = f" ({cause!r})" if cause is not None else ""
            error = RequestTimeoutError if timed_out else TransportError
            raise error(
                f"The watch stream {self.url} ended {self._drops} times in a row before the"
                f" operation was done{why}.",
                self.url,
            ) from cause
        return random.uniform(0, min(retry.max_delay, retry.initial_delay * 2 ** (self._drops - 1)))


def _name(operation: Operation | str | object) -> str:
    if isinstance(operation, str):
        return resource_name(operation)
    name = getattr(operation, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"Expected an operation or its name, got {type(operation).__name__}.")
    return resource_name(name)


def _class(operation: Operation | str | object) -> type[Operation] | None:
    return type(operation) if isinstance(operation, Operation) else None


def _poll_request(name: str, context: ApiContext) -> tuple[str, str, dict[str, str] | None]:
    """How `get` asks for an operation: Vertex serves model operations only through a POST to
    the model's `:fetchPredictOperation` (wire contract §3); everything else is a GET."""
    is_model_operation = (
        name.startswith("publishers/google/models/") or "/publishers/google/models/" in name
    )
    if context.vertexai and is_model_operation and "/operations/" in name:
        model = context.vertex_resource(name.rpartition("/operations/")[0])
        return "POST", f"{model}:fetchPredictOperation", {"operationName": name}
    return "GET", name, None


def _list_path(parent: str | None) -> str:
    return "operations" if parent is None else f"{resource_name(parent)}/operations"


def _list_params(
    filter: str | None, done: bool | None, kind: str | None, page_size: int | None
) -> dict[str, str | int]:
    # AIP-160 binds OR tighter than AND, so the terms join without parentheses.
    terms = [filter] if filter else []
    if done is not None:
        terms.append(f"done={str(done).lower()}")
    if kind is not None:
        terms.append(f"kind={orjson.dumps(kind).decode()}")
    params: dict[str, str | int] = {}
    if terms:
        params["filter"] = " AND ".join(terms)
    if page_size is not None:
        params["pageSize"] = page_size
    return params


def _page(data: dict[str, Any], context: ApiContext) -> Page[Operation]:
    operations = [context.parse_operation(item) for item in data.get("operations") or []]
    # proto3 JSON writes the last page's token as "" or leaves it out.
    return operations, data.get("nextPageToken") or None


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must not be negative, got {timeout}.")
    return time.monotonic() + timeout


def _wait_seconds(deadline: float | None) -> float:
    if deadline is None:
        return _MAX_WAIT_CALL
    return max(0.0, min(_MAX_WAIT_CALL, deadline - time.monotonic()))


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _wait_body(seconds: float) -> dict[str, str]:
    # A google.protobuf.Duration in JSON: decimal seconds with an "s", e.g. "3.5s".
    return {"timeout": f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"}


def _start_body(
    request: Mapping[str, Any] | BaseModel | None, webhook_config: object | None
) -> dict[str, Any]:
    if request is None:
        body: dict[str, Any] = {}
    elif isinstance(request, BaseModel):
        body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
    else:
        body = dict(request)
    if webhook_config is not None:
        config = coerce(webhook_config, WebhookConfig)
        body["webhookConfig"] = config.model_dump(by_alias=True, exclude_none=True)
    return body

"""Reading what clients send: bounded JSON bodies, durations, booleans, page tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from longops.server.errors import ErrorReply, error_response, invalid_argument

_MAX_POSITION = 1 << 63  # positions are signed 64-bit keys in every store
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s?\s*$")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_NUL = b"\\u0000"
"""How NUL appears in JSON text: as an escape (a raw NUL byte is invalid JSON)."""


class RefuseNulInUrl:
    """Refuse a path or query parameter holding NUL (`%00`) before any route sees it.

    Ids, names, filters and request ids all come from the URL, and PostgreSQL cannot
    store or even compare text holding NUL (SQLite can): one check here makes every
    backend answer the same 400, naming the parameter, instead of a 500 on one of them.
    JSON bodies get the same check in `read_json`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = None
            if "\x00" in scope["path"]:
                where = "path"
            elif b"%00" in scope["query_string"]:
                query = scope["query_string"].decode("latin-1")
                pairs = parse_qsl(query, keep_blank_values=True)
                where = next((k for k, v in pairs if "\x00" in k + v), None)
            if where is not None:
                where = where.replace("\x00", "%00")[:200]
                error = invalid_argument(
                    f"The request's {where} must not contain NUL characters (%00).", field=where
                )
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` (the official SDK sends none)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise invalid_argument("Invalid Content-Length header.")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"Invalid JSON payload received. {exc}") from None
    if not isinstance(body, dict):
        raise invalid_argument("Invalid JSON payload received. Expected a JSON object.")
    if _NUL in raw and (where := _nul_path(body)) is not None:
        where = where[:200]
        raise invalid_argument(f"{where} must not contain NUL characters.", field=where)
    return body


def _nul_path(body: dict[str, Any]) -> str | None:
    """The path (`file.displayName`, `instances[0].prompt`) of the first key or string
    holding NUL, which PostgreSQL cannot store in text or JSON: refused here for every
    backend alike. Iterative, as bodies may nest as deep as the parser allows."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                inner = f"{path}.{key}" if path else key
                if "\x00" in key:
                    return inner.replace("\x00", "\\u0000")
                stack.append((inner, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _too_large(limit: int) -> ErrorReply:
    return ErrorReply(413, f"Request payload size exceeds the limit: {limit} bytes.")


def field(body: Mapping[str, Any], camel: str) -> Any:
    """A top-level field in either spelling (proto-JSON accepts both)."""
    if camel in body:
        return body[camel]
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    return body.get(snake)


def take(body: dict[str, Any], camel: str) -> Any:
    """A top-level field in either spelling, removed from `body`, for fields a route
    reads before the kind's request model sees the rest; both spellings at once is a
    400 naming the snake_case one."""
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    if camel in body and snake in body:
        raise invalid_argument(f"Send {camel} once, not also as {snake}.", field=snake)
    if camel in body:
        return body.pop(camel)
    return body.pop(snake, None)


def parse_duration(value: Any, field_name: str) -> float:
    """google.protobuf.Duration as JSON ("3.5s") or a plain number of seconds."""
    if isinstance(value, bool):
        raise invalid_argument(f"Invalid duration for {field_name}.", field=field_name)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1))
    else:
        raise invalid_argument(
            f'Invalid duration for {field_name}: {value!r}; expected e.g. "3.5s".',
            field=field_name,
        )
    if seconds < 0:
        raise invalid_argument(f"{field_name} must not be negative.", field=field_name)
    return seconds


def parse_bool(value: str, field_name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise invalid_argument(f"Invalid boolean for {field_name}: {value!r}.", field=field_name)


def parse_page_size(value: str | None, default: int, maximum: int) -> int:
    """`pageSize` as Google reads it: 0 or absent is the default, more than the maximum
    is the maximum (however many digits: `int` would refuse 4,300 and more)."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise invalid_argument(f"Invalid pageSize: {value[:40]!r}.", field="pageSize")
    digits = value.lstrip("0")
    if len(digits) > len(str(maximum)):
        return maximum
    size = int(digits or "0")
    return default if size == 0 else min(size, maximum)


def request_id(request: Request) -> str | None:
    """The `requestId` of a create, by one rule for every route that creates."""
    query = request.query_params
    value = query.get("requestId", query.get("request_id"))
    if value is not None and not _REQUEST_ID.match(value):
        raise invalid_argument(
            "requestId must be 1-128 printable ASCII characters.", field="requestId"
        )
    return value


class PageTokens:
    """Opaque keyset tokens, bound to the query they continue.

    A token holds the last position seen and a digest of the query (parent,
    filter, tenant): replaying it with another query is an error, not a silent
    jump into someone else's listing.
    """

    @staticmethod
    def _digest(query: str) -> str:
        return hashlib.blake2s(query.encode(), digest_size=6).hexdigest()

    @classmethod
    def encode(cls, position: int, query: str) -> str:
        raw = orjson.dumps({"p": position, "q": cls._digest(query)})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, query: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = orjson.loads(raw)
            position, digest = data["p"], data["q"]
        except (binascii.Error, ValueError, TypeError, KeyError):
            raise invalid_argument("Invalid pageToken.", field="pageToken") from None
        # `type(...) is int` also refuses JSON booleans, which are ints to isinstance.
        if type(position) is not int or not 0 <= position < _MAX_POSITION:
            raise invalid_argument("Invalid pageToken.", field="pageToken")
        if digest != cls._digest(query):
            raise invalid_argument(
                "Invalid pageToken: it does not belong to this query.", field="pageToken"
            )
        checked: int = position
        return checked

"""Reading what clients send: bounded JSON bodies, durations, booleans, page tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request

from longops.server.errors import ApiError, invalid_argument

_MAX_POSITION = 1 << 63  # positions are signed 64-bit keys in every store
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s?\s*$")


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
    return body


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request payload size exceeds the limit: {limit} bytes.")


def field(body: Mapping[str, Any], camel: str) -> Any:
    """A top-level field in either spelling (proto-JSON accepts both)."""
    if camel in body:
        return body[camel]
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    return body.get(snake)


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
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise invalid_argument(f"Invalid pageSize: {value!r}.", field="pageSize")
    size = int(value)
    return default if size == 0 else min(size, maximum)


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

"""What the SDK raises: one hierarchy, so a caller never has to know which HTTP library is inside.

    LongopsError
    ├── APIError                  an answer other than 200 (shaped like google-genai's)
    │   ├── ClientError           4xx
    │   └── ServerError           5xx
    ├── TransportError            no answer at all (the connection broke mid-request)
    │   ├── ServerUnreachableError   nothing listening, unknown host, DNS failure (also a
    │   │                            builtin ConnectionError)
    │   └── RequestTimeoutError      connect, pool or read timeout (also a builtin TimeoutError)
    └── InvalidURLError           a base URL without http:// or https:// or without a host
                                  (also a ValueError), raised when the Client is made

A `TransportError`'s message names the URL tried and where the base URL came from, and says how
to point the client elsewhere (`Client(base_url=...)` or `LONGOPS_BASE_URL`); `url` holds it.
The underlying library's exception is kept as `__cause__`.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "APIError",
    "ClientError",
    "InvalidURLError",
    "LongopsError",
    "RequestTimeoutError",
    "ServerError",
    "ServerUnreachableError",
    "TransportError",
]


class LongopsError(Exception):
    """The root of everything the SDK raises about a request: `except LongopsError` catches all."""


class APIError(LongopsError):
    """A non-200 answer from the API.

    `code` is the HTTP status; `status` and `message` come from Google's error envelope
    (`{"error": {"code", "message", "status", "details"}}`), and `details` holds the whole
    parsed body so nothing the server said is lost.
    """

    code: int
    status: str | None
    message: str | None
    details: Any
    response_json: Any

    def __init__(self, code: int, response_json: Any) -> None:
        self.code = code
        self.response_json = response_json
        self.details = response_json
        self.status = _envelope_field(response_json, "status")
        self.message = _envelope_field(response_json, "message")
        super().__init__(f"{code} {self.status}. {response_json}")

    @classmethod
    def from_response(cls, status_code: int, content: bytes, reason_phrase: str) -> APIError:
        """Build the error for an HTTP answer, as `ClientError` (4xx) or `ServerError` (5xx)."""
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            # Proxies and crashed servers answer in HTML or plain text: keep that text readable.
            body = {"message": content.decode(errors="replace"), "status": reason_phrase}
        if 400 <= status_code < 500:
            return ClientError(status_code, body)
        if 500 <= status_code < 600:
            return ServerError(status_code, body)
        return APIError(status_code, body)


class ClientError(APIError):
    """A 4xx answer: the request was wrong (not found, invalid, unauthenticated, …)."""


class ServerError(APIError):
    """A 5xx answer: the server failed or was unavailable."""


class TransportError(LongopsError):
    """No answer came back from `url`: the request failed before or while the server answered.

    Raised as is when an open connection broke (reset, closed mid-answer, a malformed answer);
    the subclasses say what went wrong when it is known.
    """

    url: str

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class ServerUnreachableError(TransportError, ConnectionError):
    """No connection could be made: nothing listens there, the host is unknown, DNS failed."""


class RequestTimeoutError(TransportError, TimeoutError):
    """Connecting, waiting for a pooled connection, or reading the answer took too long."""


class InvalidURLError(LongopsError, ValueError):
    """The base URL cannot be requested: no `http://` / `https://` scheme, or no host."""


def _envelope_field(body: Any, key: str) -> str | None:
    envelope = body.get("error", body) if isinstance(body, dict) else None
    value = envelope.get(key) if isinstance(envelope, dict) else None
    return value if isinstance(value, str) else None

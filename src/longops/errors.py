"""Errors raised for HTTP answers other than 200, shaped like the official google-genai SDK's."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["APIError", "ClientError", "ServerError"]


class APIError(Exception):
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


def _envelope_field(body: Any, key: str) -> str | None:
    envelope = body.get("error", body) if isinstance(body, dict) else None
    value = envelope.get(key) if isinstance(envelope, dict) else None
    return value if isinstance(value, str) else None

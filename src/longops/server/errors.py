"""Google's error envelope, and the one exception type routes raise to produce it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longops.engine.failures import RequestRejected
from longops.engine.quotas import QuotaExceeded
from longops.engine.store import StoreBusy, StoreUnavailable
from longops.rpc import Code

log = logging.getLogger("longops.server")

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


class ErrorReply(Exception):
    """An error answer the server sends, in Google's envelope: raised by a route, answered
    by `handle_error_reply`. (The SDK's `longops.errors.APIError` is the other side of the
    wire: what a client raises on receiving one.)"""

    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        status: Code | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = Code.for_http_status(http_status) if status is None else status
        self.details = details or []
        self.headers = headers


def invalid_argument(message: str, *, field: str | None = None) -> ErrorReply:
    details = None
    if field is not None:
        violation = {"field": field, "description": message}
        details = [{"@type": BAD_REQUEST, "fieldViolations": [violation]}]
    return ErrorReply(400, message, details=details)


def not_found(message: str) -> ErrorReply:
    return ErrorReply(404, message)


def error_response(error: ErrorReply) -> Response:
    body: dict[str, Any] = {
        "code": error.http_status,
        "message": error.message,
        "status": error.status.name,
    }
    if error.details:
        body["details"] = error.details
    return Response(
        orjson.dumps({"error": body}),
        status_code=error.http_status,
        media_type="application/json",
        headers=error.headers,
    )


async def handle_error_reply(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ErrorReply)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Method not found: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(ErrorReply(exc.status_code, message, headers=exc.headers))


async def handle_request_rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRejected)
    code = Code.of(exc.code)
    if code is None or code is Code.OK:  # a kind's slip: a refusal is still the client's error
        code = Code.INVALID_ARGUMENT
    details = None
    if exc.violations:
        details = [{"@type": BAD_REQUEST, "fieldViolations": exc.violations}]
    return error_response(ErrorReply(code.http_status, exc.message, status=code, details=details))


async def handle_quota_exceeded(request: Request, exc: Exception) -> Response:
    """A tenant over a quota: 429 RESOURCE_EXHAUSTED as Google answers it, saying which
    quota (QuotaFailure) and when to retry (RetryInfo, and Retry-After for HTTP clients)."""
    assert isinstance(exc, QuotaExceeded)
    violation = {"subject": exc.subject, "description": exc.description}
    details: list[dict[str, Any]] = [
        {"@type": QUOTA_FAILURE, "violations": [violation]},
        {"@type": RETRY_INFO, "retryDelay": f"{exc.retry_after}s"},
    ]
    headers = {"retry-after": str(exc.retry_after)}
    return error_response(ErrorReply(429, exc.description, details=details, headers=headers))


async def handle_store_busy(request: Request, exc: Exception) -> Response:
    log.warning("store busy: %s", exc)
    state = "unavailable" if isinstance(exc, StoreUnavailable) else "busy"
    return error_response(
        ErrorReply(503, f"The database is {state}; retry shortly.", headers={"retry-after": "1"})
    )


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    """The client went away mid-request (mid-body, typically): nobody is left to answer,
    and it is no error of the server's."""
    log.info("client left during %s %s", request.method, request.url.path)
    return error_response(ErrorReply(499, "The client closed the request."))


class AnswerFailures:
    """Answer what escapes the routes in Google's envelope, keeping the connection.

    - An unexpected error (a bug): a 500. Starlette's handler for `Exception` answers,
      then re-raises, so uvicorn logs the error a second time and drops the kept-alive
      connection (the client's next request on it fails). Handled here, inside
      Starlette's middleware, it is logged once, with its traceback.
    - A request still open when the graceful-shutdown timeout ends, which uvicorn
      cancels: a 503 UNAVAILABLE (the SDKs retry it elsewhere), not uvicorn's
      text/plain 500 and a `CancelledError` traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            answer = ErrorReply(503, "The server is shutting down; retry the request.")
        except Exception as exc:
            log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            answer = ErrorReply(500, "Internal error encountered.")
        if not started:  # else uvicorn closes the connection: a response was cut short
            await error_response(answer)(scope, receive, send)


EXCEPTION_HANDLERS = {
    ErrorReply: handle_error_reply,
    RequestRejected: handle_request_rejected,
    QuotaExceeded: handle_quota_exceeded,
    HTTPException: handle_http_exception,
    StoreBusy: handle_store_busy,
    ClientDisconnect: handle_client_disconnect,
}

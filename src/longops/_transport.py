"""The HTTP transport: one request builder and one retry policy, used by sync and async twins."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from longops._version import __version__
from longops.errors import APIError
from longops.types import HttpOptions, RetryOptions

__all__ = ["AsyncTransport", "SyncTransport", "TransportConfig", "build_request", "retry_delay"]

logger = logging.getLogger("longops")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0

# Retried for every request: the server did not act on it, or asks to come back later.
_NOT_PROCESSED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_ALWAYS_RETRIED_STATUS = frozenset({429, 503})
# Retried only where repeating the request is harmless: the server may have acted on it.
_MAYBE_PROCESSED = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)
_IDEMPOTENT_RETRIED_STATUS = frozenset({500, 502, 504})
# A longer Retry-After is not worth blocking the caller for; the error is raised instead.
_MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class TransportConfig:
    base_url: str
    api_version: str
    headers: httpx.Headers
    timeout: float
    retry: RetryOptions

    @classmethod
    def resolve(
        cls, options: HttpOptions, *, api_key: str | None, default_api_version: str
    ) -> TransportConfig:
        """Fill in what `options` leaves out: from the environment, else from defaults."""
        base_url = options.base_url or os.environ.get("LONGOPS_BASE_URL") or DEFAULT_BASE_URL
        headers = httpx.Headers(
            {"content-type": "application/json", "user-agent": f"longops-python/{__version__}"}
        )
        if api_key:
            headers["x-goog-api-key"] = api_key
        headers.update(options.headers or {})
        return cls(
            base_url=base_url.rstrip("/"),
            api_version=options.api_version or default_api_version,
            headers=headers,
            timeout=options.timeout or DEFAULT_TIMEOUT,
            retry=options.retry or RetryOptions(),
        )


def build_request(
    config: TransportConfig,
    method: str,
    path: str,
    *,
    params: Mapping[str, str | int] | None = None,
    body: Any = None,
    timeout: float | None = None,
    upload: Upload | None = None,
) -> httpx.Request:
    """The request for `path` under the API version; resource names go in as they are."""
    url = f"{config.base_url}/{config.api_version}/{path.lstrip('/')}"
    headers = config.headers
    content = None if body is None else orjson.dumps(body)
    if upload is not None:
        headers = httpx.Headers(headers)
        headers.update(upload.headers)
        if upload.url is not None:
            # A session URL is its own credential: the API key stays with us.
            url = upload.url
            headers.pop("x-goog-api-key", None)
        else:
            url = f"{config.base_url}/upload/{config.api_version}/{path.lstrip('/')}"
        if upload.content is not None:
            content = upload.content
    return httpx.Request(
        method,
        url,
        params=params,
        headers=headers,
        content=content,
        extensions={"timeout": httpx.Timeout(timeout or config.timeout).as_dict()},
    )


@dataclass(frozen=True, slots=True)
class Upload:
    """How a resumable-upload request differs from an API call: the `/upload/` prefix (or
    the session's own URL), protocol headers, and raw bytes instead of JSON."""

    headers: Mapping[str, str]
    url: str | None = None
    content: bytes | None = None


def retry_delay(
    options: RetryOptions,
    attempt: int,
    request: httpx.Request,
    outcome: httpx.Response | httpx.TransportError,
    *,
    idempotent: bool,
) -> float | None:
    """Seconds to wait before retrying after the failed `attempt` (0-based), or None to give up.

    GET requests are always idempotent; other methods only when the caller says so (a create
    that carries a requestId, a wait, a cancel).
    """
    if attempt + 1 >= options.attempts:
        return None
    idempotent = idempotent or request.method == "GET"
    if isinstance(outcome, httpx.Response):
        status = outcome.status_code
        if not (
            status in _ALWAYS_RETRIED_STATUS
            or (idempotent and status in _IDEMPOTENT_RETRIED_STATUS)
        ):
            return None
        retry_after = _retry_after_seconds(outcome.headers.get("retry-after"))
        if retry_after is not None:
            return retry_after if retry_after <= _MAX_RETRY_AFTER else None
    elif not (
        isinstance(outcome, _NOT_PROCESSED)
        or (idempotent and isinstance(outcome, _MAYBE_PROCESSED))
    ):
        return None
    return random.uniform(0, min(options.max_delay, options.initial_delay * 2**attempt))


def _retry_after_seconds(retry_after: str | None) -> float | None:
    # Only the delay-seconds form; an HTTP-date falls back to the backoff.
    try:
        return max(0.0, float(retry_after)) if retry_after else None
    except ValueError:
        return None


def _api_error(response: httpx.Response) -> APIError:
    return APIError.from_response(response.status_code, response.content, response.reason_phrase)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    data = orjson.loads(response.content) if response.content else {}
    if not isinstance(data, dict):
        raise ValueError(f"Expected a JSON object from {response.url}, got {type(data).__name__}.")
    return data


def _log_retry(request: httpx.Request, outcome: httpx.Response | Exception, delay: float) -> None:
    what = outcome.status_code if isinstance(outcome, httpx.Response) else repr(outcome)
    logger.info("Retrying %s %s in %.2fs after %s", request.method, request.url, delay, what)


class SyncTransport:
    def __init__(self, config: TransportConfig, http: httpx.Client) -> None:
        self.config = config
        self._http = http

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        idempotent: bool = False,
        timeout: float | None = None,
        stream: bool = False,
        upload: Upload | None = None,
    ) -> httpx.Response:
        """Send with retries; raise `APIError` for any answer but 200.

        With `stream`, a 200 answer's body is left unread for the caller to iterate (and
        close); error answers are read in full either way.
        """
        request = build_request(
            self.config, method, path, params=params, body=body, timeout=timeout, upload=upload
        )
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._http.send(request, stream=stream)
                if stream and outcome.status_code != 200:
                    outcome.read()
            except httpx.TransportError as exc:
                outcome = exc
            # Only 200 is success on this API: a 201 or 204 means something else answered.
            if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                return outcome
            delay = retry_delay(self.config.retry, attempt, request, outcome, idempotent=idempotent)
            if delay is None:
                if isinstance(outcome, httpx.Response):
                    raise _api_error(outcome)
                raise outcome
            _log_retry(request, outcome, delay)
            time.sleep(delay)
            attempt += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Like `send`, returning the JSON object answered (an empty body counts as `{}`)."""
        response = self.send(
            method, path, params=params, body=body, idempotent=idempotent, timeout=timeout
        )
        return _json_object(response)

    def close(self) -> None:
        self._http.close()


class AsyncTransport:
    def __init__(self, config: TransportConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        idempotent: bool = False,
        timeout: float | None = None,
        upload: Upload | None = None,
    ) -> httpx.Response:
        """Send with retries; raise `APIError` for any answer but 200."""
        request = build_request(
            self.config, method, path, params=params, body=body, timeout=timeout, upload=upload
        )
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.send(request)
            except httpx.TransportError as exc:
                outcome = exc
            # Only 200 is success on this API: a 201 or 204 means something else answered.
            if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                return outcome
            delay = retry_delay(self.config.retry, attempt, request, outcome, idempotent=idempotent)
            if delay is None:
                if isinstance(outcome, httpx.Response):
                    raise _api_error(outcome)
                raise outcome
            _log_retry(request, outcome, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Like `send`, returning the JSON object answered (an empty body counts as `{}`)."""
        response = await self.send(
            method, path, params=params, body=body, idempotent=idempotent, timeout=timeout
        )
        return _json_object(response)

    async def aclose(self) -> None:
        await self._http.aclose()

"""One HTTP attempt at a delivery, and what it means for the next: Standard Webhooks'
rules (2xx is success, 410 asks for no more, anything else is retried with exponential
backoff and full jitter, or after the receiver's `Retry-After`).

Connections go through `engine/egress.py`: a receiver at a loopback, private or
link-local address is refused before anything is sent unless the operator allows it
(`LONGOPS_EGRESS_ALLOW`). Redirects are not followed (a delivery is a POST to the URI
registered), each attempt is bounded in time as a whole, and at most
`max_response_bytes` of the answer is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from longops.engine.egress import EgressPolicy, EgressRefused, egress_client
from longops.engine.webhooks.config import WebhookSettings

USER_AGENT = "longops-webhooks"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a receiver did with one attempt."""

    status_code: int | None
    latency_seconds: float
    error: str | None
    retry_after: float | None = None
    refused: bool = False
    """The egress policy refused the address: nothing was sent."""
    final: bool = False
    """Not worth retrying (refused, or the webhook is disabled)."""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait that a `Retry-After` header asks for (a number or an HTTP date)."""
    if value is None or len(value) > 64:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def retry_delay(attempt: int, settings: WebhookSettings, asked: float | None) -> float:
    """The wait after failed attempt number `attempt` (1 for the first): what the
    receiver asked for, else a uniform draw below base * 2^(attempt-1); both capped."""
    if asked is not None:
        return min(max(asked, 0.0), settings.retry_max_seconds)
    bound = settings.retry_base_seconds * 2.0 ** min(attempt - 1, 40)
    return random.uniform(0, min(bound, settings.retry_max_seconds))


def endpoint(uri: str) -> str:
    """What concurrency is bounded per: the URI's host and port."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.lower()}"


class Sender:
    """Posts deliveries; at most `concurrency_per_endpoint` at once to one endpoint."""

    def __init__(self, settings: WebhookSettings, policy: EgressPolicy) -> None:
        self.settings = settings
        self._client = egress_client(policy, httpx.Timeout(settings.timeout_seconds))
        self._endpoints: dict[str, tuple[asyncio.Semaphore, int]] = {}
        self._all = asyncio.Semaphore(settings.concurrency)

    async def close(self) -> None:
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def slot(self, uri: str) -> AsyncIterator[None]:
        """Held while sending to `uri`: one of its endpoint's `concurrency_per_endpoint`
        slots, and one of the process's `concurrency`."""
        key = endpoint(uri)
        semaphore, users = self._endpoints.get(key) or (
            asyncio.Semaphore(self.settings.concurrency_per_endpoint),
            0,
        )
        self._endpoints[key] = (semaphore, users + 1)
        try:
            async with semaphore, self._all:
                yield
        finally:
            semaphore, users = self._endpoints[key]
            if users <= 1:
                del self._endpoints[key]
            else:
                self._endpoints[key] = (semaphore, users - 1)

    async def post(self, uri: str, headers: dict[str, str], body: bytes) -> Answer:
        started = time.monotonic()
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                request = self._client.build_request("POST", uri, headers=headers, content=body)
                response = await self._client.send(request, stream=True, follow_redirects=False)
                try:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= self.settings.max_response_bytes:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return Answer(None, time.monotonic() - started, "timed out")
        except httpx.HTTPError as exc:
            latency = time.monotonic() - started
            if isinstance(exc.__cause__, EgressRefused):
                return Answer(
                    None,
                    latency,
                    "refused: the address is not allowed (LONGOPS_EGRESS_ALLOW)",
                    refused=True,
                    final=True,
                )
            return Answer(None, latency, f"{type(exc).__name__}: {exc}"[:500])
        latency = time.monotonic() - started
        code = response.status_code
        error = None if 200 <= code < 300 else f"HTTP {code}"
        asked = retry_after(response.headers.get("retry-after"), time.time())
        return Answer(code, latency, error, asked)

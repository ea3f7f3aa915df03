"""Webhook delivery settings, from the environment (the README's Configuration table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    timeout_seconds: float = 10.0
    """The most one attempt may take, connecting and answering included."""
    concurrency_per_endpoint: int = 4
    """Deliveries sent at once to one host (and port) by one process."""
    concurrency: int = 64
    """Deliveries sent at once by one process, to all hosts."""
    retry_hours: float = 24.0
    """How long a delivery is retried before it is given up."""
    retry_base_seconds: float = 5.0
    """The first retry's delay bound; each next one doubles it (full jitter below it)."""
    retry_max_seconds: float = 3600.0
    """The longest delay between two attempts, `Retry-After` included."""
    disable_after_failures: int = 50
    """A webhook is disabled_due_to_failed_deliveries after this many failed attempts
    in a row spanning at least `retry_hours` (or when one delivery's retries run out)."""
    poll_seconds: float = 1.0
    """How often a dispatcher looks for due retries without being woken."""
    max_response_bytes: int = 64 * 1024
    """The most of a receiver's answer read (the rest is dropped with the connection)."""

    @property
    def lease_seconds(self) -> float:
        """How long a claimed delivery is someone's: past it, another process retries it."""
        return 2 * self.timeout_seconds + 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WebhookSettings:
        """Raises ValueError naming the setting that is not a number in its range."""

        def number(name: str, default: float, low: float) -> float:
            text = environ.get(name)
            if text is None or not text.strip():
                return default
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number, not {text[:40]!r}") from None
            if not low <= value < float("inf"):
                raise ValueError(f"{name} must be at least {low:g}")
            return value

        return cls(
            timeout_seconds=number("LONGOPS_WEBHOOK_TIMEOUT_SECONDS", 10.0, 0.001),
            concurrency_per_endpoint=int(number("LONGOPS_WEBHOOK_CONCURRENCY_PER_ENDPOINT", 4, 1)),
            concurrency=int(number("LONGOPS_WEBHOOK_CONCURRENCY", 64, 1)),
            retry_hours=number("LONGOPS_WEBHOOK_RETRY_HOURS", 24.0, 0),
            retry_base_seconds=number("LONGOPS_WEBHOOK_RETRY_BASE_SECONDS", 5.0, 0),
            retry_max_seconds=number("LONGOPS_WEBHOOK_RETRY_MAX_SECONDS", 3600.0, 0),
            disable_after_failures=int(number("LONGOPS_WEBHOOK_DISABLE_AFTER_FAILURES", 50, 0)),
            poll_seconds=number("LONGOPS_WEBHOOK_POLL_SECONDS", 1.0, 0.01),
        )

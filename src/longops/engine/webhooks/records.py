"""What the webhook registry and the delivery log hold, independent of any database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENABLED = "enabled"
DISABLED = "disabled"
DISABLED_BY_FAILURES = "disabled_due_to_failed_deliveries"
STATES = frozenset({ENABLED, DISABLED, DISABLED_BY_FAILURES})
"""A webhook's states, as Google's API names them."""

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
"""A delivery's states: still to be sent (or retried), answered 2xx, given up."""


class InvalidWebhook(ValueError):
    """A field of a webhook request that can't be used: the API answers 400 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """A secret as the API shows it: never whole after the create or rotation that made it."""

    truncated: str
    expire_time: float | None
    """When it stops signing; None while it is the current secret."""


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    id: str
    tenant: str
    name: str | None
    uri: str
    events: tuple[str, ...]
    state: str
    create_time: float
    update_time: float
    secrets: tuple[SigningSecret, ...]
    """The secrets that sign deliveries now, newest first."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try at sending a delivery."""

    time: float
    status_code: int | None
    latency_seconds: float
    error: str | None
    next_attempt_time: float | None
    """When it is tried again; None when this attempt settled it."""


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One event for one target: a static webhook, or a per-request URI (`webhook_id` None).
    Its `id` is the `webhook-id` header, the same on every attempt and redelivery."""

    id: str
    webhook_id: str | None
    uri: str
    event_type: str
    operation: str | None
    payload: dict[str, Any]
    state: str
    attempts: int
    create_time: float
    next_attempt_time: float | None
    last_status: int | None
    last_error: str | None
    attempts_log: tuple[AttemptRecord, ...] = field(default=())
    """Filled only by `TenantWebhooks.delivery(id)`."""

"""Webhooks: each tenant's registered endpoints, the outbox an operation's end writes
to, and the signed, retried, logged deliveries made from it (Standard Webhooks).

`Webhooks.of(database).tenant(tenant)` is the one way in for the API; a `Dispatcher`
runs in every process that runs workers; `keys.jwks(database)` publishes the keys of
per-request deliveries' JWTs.
"""

from longops.engine.webhooks.records import (
    AttemptRecord,
    DeliveryRecord,
    InvalidWebhook,
    SigningSecret,
    WebhookRecord,
)
from longops.engine.webhooks.registry import TenantWebhooks, Webhooks

__all__ = [
    "AttemptRecord",
    "DeliveryRecord",
    "InvalidWebhook",
    "SigningSecret",
    "TenantWebhooks",
    "WebhookRecord",
    "Webhooks",
]

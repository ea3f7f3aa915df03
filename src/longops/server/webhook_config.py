"""A request's `webhookConfig` and the URLs webhooks post to, as the routes check them.

Kept apart from the webhook routes so that every route that starts an operation
(`predictLongRunning`, `kinds/{kind}:start`, `importFile`, `uploadToFileSearchStore`)
reads the per-request config by one rule.
"""

from __future__ import annotations

from typing import Any

import orjson

from longops.engine.webhooks import InvalidWebhook, checks
from longops.server.errors import invalid_argument
from longops.server.requests import field, take

__all__ = ["MAX_CONFIG_URIS", "MAX_USER_METADATA", "check_uri", "webhook_config"]

MAX_CONFIG_URIS = 10
MAX_USER_METADATA = 16 << 10


def check_uri(value: Any, where: str) -> str:
    """An http(s) URL a server may post to, by the engine's rule (`checks.check_uri`:
    at most 2048 characters, a host, no credentials, no spaces or control characters),
    refused with a 400 naming `where`. Where it points (loopback, private networks) is
    the egress policy's business, decided when delivering."""
    try:
        return checks.check_uri(value, where)
    except InvalidWebhook as exc:
        raise invalid_argument(f"{where} {exc.message}.", field=exc.field) from None


def webhook_config(body: dict[str, Any]) -> dict[str, Any] | None:
    """Take a request's `webhookConfig` out of `body` (a kind's request model never sees
    it), checked: `uris` up to 10 http(s) URLs, `userMetadata` (or `user_metadata`, as
    the SDKs' types spell it) an object of at most 16 KiB in JSON. The result is what
    `Engine.create(webhook=...)` takes, or None when the body has none.

    `webhook_config` is read too (proto-JSON accepts either spelling): the video request
    model ignores fields it does not know, and a config dropped silently would be worse
    than one refused."""
    config = take(body, "webhookConfig")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise invalid_argument("webhookConfig must be an object.", field="webhookConfig")
    unknown = set(config) - {"uris", "userMetadata", "user_metadata"}
    if unknown:
        key = sorted(unknown)[0][:80]
        raise invalid_argument(
            f"webhookConfig.{key} is not a field: it takes uris and userMetadata.",
            field=f"webhookConfig.{key}",
        )
    uris = config.get("uris")
    if uris is None:
        uris = []
    if not isinstance(uris, list) or len(uris) > MAX_CONFIG_URIS:
        raise invalid_argument(
            f"webhookConfig.uris must be a list of at most {MAX_CONFIG_URIS} URLs.",
            field="webhookConfig.uris",
        )
    checked = [check_uri(uri, f"webhookConfig.uris[{i}]") for i, uri in enumerate(uris)]
    metadata = field(config, "userMetadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise invalid_argument(
            "webhookConfig.userMetadata must be an object.", field="webhookConfig.userMetadata"
        )
    if len(orjson.dumps(metadata)) > MAX_USER_METADATA:
        raise invalid_argument(
            f"webhookConfig.userMetadata must be at most {MAX_USER_METADATA} bytes as JSON.",
            field="webhookConfig.userMetadata",
        )
    return {"uris": list(dict.fromkeys(checked)), "userMetadata": metadata}

"""What a webhook's fields may hold: each check raises `InvalidWebhook` naming the field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from longops.engine.store.rows import MAX_SEQ
from longops.engine.webhooks.events import SUBSCRIBABLE
from longops.engine.webhooks.records import InvalidWebhook

MAX_URI = 2048
MAX_NAME = 512
MAX_EVENTS = 32


def check_uri(uri: Any, field: str = "uri") -> str:
    """An http(s) URL a delivery can be sent to; raises `InvalidWebhook` naming `field`.
    Where it resolves is checked when sending (`engine/egress.py`), not here."""
    if not isinstance(uri, str) or not uri:
        raise InvalidWebhook(field, "must be an http or https URL")
    if len(uri) > MAX_URI:
        raise InvalidWebhook(field, f"must be at most {MAX_URI} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in uri):
        raise InvalidWebhook(field, "must not hold spaces or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise InvalidWebhook(field, "is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidWebhook(field, "must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidWebhook(field, "must not carry credentials")
    if port == 0:
        raise InvalidWebhook(field, "must name a port in 1-65535")
    return uri


def check_events(events: Any) -> tuple[str, ...]:
    """The subscribed event types, each once, in the order given."""
    if isinstance(events, str) or not isinstance(events, Sequence) or not events:
        raise InvalidWebhook("subscribed_events", "must list at least one event type")
    if len(events) > MAX_EVENTS:
        raise InvalidWebhook("subscribed_events", f"must list at most {MAX_EVENTS} event types")
    for event in events:
        if not isinstance(event, str) or event not in SUBSCRIBABLE:
            shown = repr(event)[:60]
            raise InvalidWebhook(
                "subscribed_events",
                f"{shown} is not an event type (one of {', '.join(sorted(SUBSCRIBABLE))})",
            )
    return tuple(dict.fromkeys(events))


def check_name(name: Any) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > MAX_NAME or "\x00" in name:
        raise InvalidWebhook("name", f"must be text of at most {MAX_NAME} characters")
    return name


def page_token(token: str | None, field: str = "page_token") -> int:
    """The sequence number a page token stands for (below every row for a first page)."""
    if token is None or token == "":
        return MAX_SEQ
    if len(token) > 20 or not token.isdigit() or not 0 < int(token) <= MAX_SEQ:
        raise InvalidWebhook(field, "is not a page token this server gave")
    return int(token)

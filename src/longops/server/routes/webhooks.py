"""Webhooks over HTTP: Gemini's `/{v}/webhooks` resource, the delivery log, the JWKS.

The webhook routes speak the wire of the official SDK's `client.webhooks` (snake_case JSON,
RFC 3339 times): create, list, get, update (PATCH with `update_mask`), delete, `:ping`,
`:rotateSigningSecret`. The delivery log is a longops addition in the same style:

    GET  /{v}/webhooks/{id}/deliveries                 ?operation=&page_size=&page_token=
    GET  /{v}/webhooks/{id}/deliveries/{delivery}      with its attempts
    POST /{v}/webhooks/{id}/deliveries/{delivery}:redeliver
    POST /{v}/webhooks/{id}:redeliver                  {"start_time", "end_time"}
    GET  /{v}/webhookDeliveries                        the tenant's, static and per-request
    GET  /{v}/webhookDeliveries/{delivery}
    POST /{v}/webhookDeliveries/{delivery}:redeliver
    POST /{v}/webhookDeliveries:redeliver              {"start_time", "end_time"}
    GET  /.well-known/jwks.json                        public keys of per-request signatures

Per-request deliveries (a request's `webhookConfig.uris`) belong to no webhook, so they are
found under `webhookDeliveries`, by `?operation=` for one operation's. Everything is
scoped to the caller's tenant: another tenant's webhook or delivery is not found.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from longops.engine import Engine
from longops.engine.webhooks import (
    DeliveryRecord,
    InvalidWebhook,
    TenantWebhooks,
    WebhookRecord,
    Webhooks,
)
from longops.engine.webhooks.checks import MAX_EVENTS, MAX_NAME
from longops.engine.webhooks.events import SUBSCRIBABLE
from longops.engine.webhooks.keys import jwks
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.errors import invalid_argument, not_found
from longops.server.render import timestamp
from longops.server.requests import field, read_json
from longops.server.routes.base import Routes
from longops.server.webhook_config import check_uri

__all__ = ["EVENTS", "WebhookRoutes"]

EVENTS = SUBSCRIBABLE
"""What `subscribed_events` may hold: google-genai's names (only `video.generated` fires
here) and longops's (`video.failed`, `operation.succeeded|failed|cancelled`)."""
USER_STATES = ("enabled", "disabled")
"""What a client may set; `disabled_due_to_failed_deliveries` is the server's to set."""
UPDATABLE = ("name", "state", "subscribed_events", "uri")
REVOCATIONS = {
    "revoke_previous_secrets_after_h24": False,
    "revoke_previous_secrets_immediately": True,
}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_INT32 = (1 << 31) - 1
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOKEN_AFTER = re.compile(r"^[\x20-\x7e]{1,256}$")
_EMPTY = b"{}"


class WebhookIdConvertor(Convertor[str]):
    """A webhook's or a delivery's id: one segment without `:`, which starts a custom
    method (`webhooks/{id}:ping`), so a GET there is that route's 405, not a lookup."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("hookid", WebhookIdConvertor())


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


# -- reading what clients send ------------------------------------------------------------


def _events(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise invalid_argument(f"{where} must be a non-empty list of event names.", field=where)
    if len(value) > MAX_EVENTS:
        raise invalid_argument(f"{where} may hold at most {MAX_EVENTS} events.", field=where)
    events: list[str] = []
    for i, event in enumerate(value):
        if not isinstance(event, str) or event not in EVENTS:
            shown = repr(event)[:80]
            raise invalid_argument(
                f"{where}[{i}] is {shown}: not an event; known are {', '.join(sorted(EVENTS))}.",
                field=f"{where}[{i}]",
            )
        if event not in events:
            events.append(event)
    return events


def _name(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise invalid_argument(
            f"name must be a string of at most {MAX_NAME} characters.", field="name"
        )
    return value


def _state(value: Any) -> str:
    if value not in USER_STATES:
        shown = repr(value)[:80]
        raise invalid_argument(
            f"state is {shown}: it may be set to enabled or disabled.", field="state"
        )
    state: str = value
    return state


def _page_size(request: Request) -> int:
    """`page_size` as Google reads an int32: 0 or absent is 50, more than 1000 is 1000;
    negative, not a number, or beyond an int32 is an error."""
    query = request.query_params
    raw = query.get("page_size", query.get("pageSize"))
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    digits = raw.lstrip("0")
    if raw.startswith("-") and raw[1:].isascii() and raw[1:].isdigit():
        raise invalid_argument("page_size must not be negative.", field="page_size")
    if not (raw.isascii() and raw.isdigit()) or len(digits) > 10 or int(digits or "0") > _INT32:
        raise invalid_argument(
            f"page_size must be an integer from 0 to {_INT32}; got {raw[:40]!r}.",
            field="page_size",
        )
    size = int(digits or "0")
    return DEFAULT_PAGE_SIZE if size == 0 else min(size, MAX_PAGE_SIZE)


def _digest(scope: str) -> str:
    return hashlib.blake2s(scope.encode(), digest_size=6).hexdigest()


def _page_token(request: Request, scope: str) -> str | None:
    """The engine's continuation from `page_token`, bound to the listing it came from."""
    query = request.query_params
    token = query.get("page_token", query.get("pageToken"))
    if not token:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, digest = data["a"], data["q"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid_argument("Invalid page_token.", field="page_token") from None
    if not isinstance(after, str) or not _TOKEN_AFTER.match(after):
        raise invalid_argument("Invalid page_token.", field="page_token")
    if digest != _digest(scope):
        raise invalid_argument(
            "Invalid page_token: it does not belong to this listing.", field="page_token"
        )
    return after


def _next_token(after: str | None, scope: str) -> str | None:
    if after is None:
        return None
    raw = orjson.dumps({"a": after, "q": _digest(scope)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _time(value: Any, where: str) -> float:
    """An RFC 3339 timestamp (a time without an offset is UTC) as epoch seconds."""
    if not isinstance(value, str) or len(value) > 64:
        raise invalid_argument(
            f'{where} must be an RFC 3339 time, e.g. "2026-05-01T12:00:00Z".', field=where
        )
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (ValueError, OverflowError, OSError):
        raise invalid_argument(
            f'{where} must be an RFC 3339 time, e.g. "2026-05-01T12:00:00Z".', field=where
        ) from None


# -- answers ---------------------------------------------------------------------------


def render_webhook(webhook: WebhookRecord, new_secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": webhook.id,
        "uri": webhook.uri,
        "subscribed_events": list(webhook.events),
        "state": webhook.state,
        "create_time": timestamp(webhook.create_time),
        "update_time": timestamp(webhook.update_time),
        "signing_secrets": [
            {"truncated_secret": secret.truncated}
            | ({} if secret.expire_time is None else {"expire_time": timestamp(secret.expire_time)})
            for secret in webhook.secrets
        ],
    }
    if webhook.name:
        body["name"] = webhook.name
    if new_secret is not None:
        body["new_signing_secret"] = new_secret
    return body


def _duration(seconds: float) -> str:
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def render_delivery(delivery: DeliveryRecord, attempts: bool = False) -> dict[str, Any]:
    """A delivery: `name` is `webhooks/{id}/deliveries/{d}` for a static webhook's,
    `webhookDeliveries/{d}` for a per-request one's."""
    name = (
        f"webhookDeliveries/{delivery.id}"
        if delivery.webhook_id is None
        else f"webhooks/{delivery.webhook_id}/deliveries/{delivery.id}"
    )
    body: dict[str, Any] = {
        "name": name,
        "id": delivery.id,
        "uri": delivery.uri,
        "event_type": delivery.event_type,
        "state": delivery.state,
        "attempt_count": delivery.attempts,
        "create_time": timestamp(delivery.create_time),
        "payload": delivery.payload,
    }
    if delivery.webhook_id is not None:
        body["webhook_id"] = delivery.webhook_id
    if delivery.operation is not None:
        body["operation"] = delivery.operation
    if delivery.next_attempt_time is not None:
        body["next_attempt_time"] = timestamp(delivery.next_attempt_time)
    if delivery.last_status is not None:
        body["last_status_code"] = delivery.last_status
    if delivery.last_error:
        body["last_error"] = delivery.last_error
    if attempts:
        body["attempts"] = [
            {
                "attempt_time": timestamp(attempt.time),
                "latency": _duration(attempt.latency_seconds),
            }
            | ({} if attempt.status_code is None else {"status_code": attempt.status_code})
            | ({"error": attempt.error} if attempt.error else {})
            | (
                {}
                if attempt.next_attempt_time is None
                else {"next_attempt_time": timestamp(attempt.next_attempt_time)}
            )
            for attempt in delivery.attempts_log
        ]
    return body


# -- routes -------------------------------------------------------------------------------


class WebhookRoutes(Routes):
    def __init__(self, engine: Engine, auth: Authenticator, config: ServerConfig) -> None:
        super().__init__(engine, auth, config)

    def routes(self) -> list[BaseRoute]:
        v = "/{version:apiver}/webhooks"
        d = "/{version:apiver}/webhookDeliveries"
        one = f"{v}/{{id:hookid}}"
        return [
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route(v, self.create, methods=["POST"]),
            Route(v, self.list_webhooks, methods=["GET"]),
            Route(f"{one}:ping", self.ping, methods=["POST"]),
            Route(f"{one}:rotateSigningSecret", self.rotate, methods=["POST"]),
            Route(f"{one}:redeliver", self.redeliver_range, methods=["POST"]),
            Route(f"{one}/deliveries", self.list_deliveries, methods=["GET"]),
            Route(
                f"{one}/deliveries/{{delivery:hookid}}:redeliver",
                self.redeliver,
                methods=["POST"],
            ),
            Route(f"{one}/deliveries/{{delivery:hookid}}", self.get_delivery, methods=["GET"]),
            Route(one, self.get, methods=["GET"]),
            Route(one, self.update, methods=["PATCH"]),
            Route(one, self.delete, methods=["DELETE"]),
            Route(d, self.list_deliveries, methods=["GET"]),
            Route(f"{d}:redeliver", self.redeliver_range, methods=["POST"]),
            Route(f"{d}/{{delivery:hookid}}:redeliver", self.redeliver, methods=["POST"]),
            Route(f"{d}/{{delivery:hookid}}", self.get_delivery, methods=["GET"]),
        ]

    def hooks(self, request: Request) -> TenantWebhooks:
        """The caller's webhooks: the one way these routes reach them."""
        return Webhooks.of(self.engine.store.database).tenant(self.auth.tenant(request))

    @staticmethod
    def _id(request: Request) -> str:
        id: str = request.path_params["id"]
        if not _ID.match(id):
            raise not_found(f"webhooks/{id[:80]} not found.")
        return id

    async def _webhook(self, request: Request) -> tuple[TenantWebhooks, WebhookRecord]:
        hooks = self.hooks(request)
        id = self._id(request)
        webhook = await hooks.get(id)
        if webhook is None:
            raise not_found(f"webhooks/{id} not found.")
        return hooks, webhook

    async def _body(self, request: Request) -> dict[str, Any]:
        return await read_json(request, self.config.max_body_bytes)

    # -- webhooks ------------------------------------------------------------------

    async def jwks(self, request: Request) -> Response:
        """The public keys that sign per-request deliveries; no key needed to read them."""
        keys = await jwks(self.engine.store.database)
        return Response(
            orjson.dumps(keys),
            media_type="application/json",
            headers={"cache-control": "public, max-age=300"},
        )

    async def create(self, request: Request) -> Response:
        hooks = self.hooks(request)
        body = await self._body(request)
        uri = check_uri(body.get("uri"), "uri")
        events = _events(field(body, "subscribedEvents"), "subscribed_events")
        name = None if body.get("name") is None else _name(body["name"])
        try:
            webhook, secret = await hooks.create(uri=uri, events=events, name=name or None)
        except InvalidWebhook as exc:
            raise invalid_argument(exc.message, field=exc.field) from None
        return _json(render_webhook(webhook, secret))

    async def list_webhooks(self, request: Request) -> Response:
        hooks = self.hooks(request)
        scope = f"webhooks\x00{self.auth.tenant(request)}"
        size = _page_size(request)
        try:
            page, after = await hooks.list(page_size=size, after=_page_token(request, scope))
        except InvalidWebhook as exc:
            raise invalid_argument(exc.message, field=exc.field) from None
        body: dict[str, Any] = {"webhooks": [render_webhook(w) for w in page]}
        if token := _next_token(after, scope):
            body["next_page_token"] = token
        return _json(body)

    async def get(self, request: Request) -> Response:
        _, webhook = await self._webhook(request)
        return _json(render_webhook(webhook))

    async def update(self, request: Request) -> Response:
        """PATCH: the fields named in `update_mask` (comma-separated), or without a mask
        those present in the body. A masked field the body leaves out is cleared, which
        only `name` may be."""
        hooks = self.hooks(request)
        id = self._id(request)
        body = await self._body(request)
        query = request.query_params
        mask_text = query.get("update_mask", query.get("updateMask"))
        if mask_text is None or not mask_text.strip():
            fields = [f for f in UPDATABLE if field(body, _camel(f)) is not None]
        else:
            fields = []
            for item in mask_text.split(","):
                snake = re.sub(r"(?<!^)([A-Z])", r"_\1", item.strip()).lower()
                if snake not in UPDATABLE:
                    raise invalid_argument(
                        f"update_mask names {item.strip()[:80]!r}: it may name"
                        f" {', '.join(UPDATABLE)}.",
                        field="update_mask",
                    )
                fields.append(snake)
        if not fields:
            raise invalid_argument(
                "Nothing to update: name fields in update_mask or send them.",
                field="update_mask",
            )
        changes: dict[str, Any] = {}
        for name in fields:
            value = field(body, _camel(name))
            if name == "name":
                changes["name"] = "" if value is None else _name(value)
            elif name == "state":
                changes["state"] = _state(value)
            elif name == "uri":
                changes["uri"] = check_uri(value, "uri")
            else:
                changes["events"] = _events(value, "subscribed_events")
        try:
            webhook = await hooks.update(id, **changes)
        except InvalidWebhook as exc:
            raise invalid_argument(exc.message, field=exc.field) from None
        if webhook is None:
            raise not_found(f"webhooks/{id} not found.")
        return _json(render_webhook(webhook))

    async def delete(self, request: Request) -> Response:
        hooks = self.hooks(request)
        id = self._id(request)
        if not await hooks.delete(id):
            raise not_found(f"webhooks/{id} not found.")
        return Response(_EMPTY, media_type="application/json")

    async def ping(self, request: Request) -> Response:
        hooks = self.hooks(request)
        id = self._id(request)
        await self._body(request)
        if not await hooks.ping(id):
            raise not_found(f"webhooks/{id} not found.")
        return Response(_EMPTY, media_type="application/json")

    async def rotate(self, request: Request) -> Response:
        """A new secret; the old ones keep signing for 24 hours, or stop at once."""
        hooks = self.hooks(request)
        id = self._id(request)
        body = await self._body(request)
        behavior = field(body, "revocationBehavior")
        if behavior is None:
            behavior = "revoke_previous_secrets_after_h24"
        if not isinstance(behavior, str) or behavior not in REVOCATIONS:
            raise invalid_argument(
                f"revocation_behavior must be one of {', '.join(REVOCATIONS)}.",
                field="revocation_behavior",
            )
        rotated = await hooks.rotate(id, revoke_previous_immediately=REVOCATIONS[behavior])
        if rotated is None:
            raise not_found(f"webhooks/{id} not found.")
        return _json({"secret": rotated[1]})

    # -- the delivery log ------------------------------------------------------------

    async def _webhook_id(self, request: Request, hooks: TenantWebhooks) -> str | None:
        """The webhook of a `webhooks/{id}/…` route, checked to be the caller's."""
        if "id" not in request.path_params:
            return None
        id = self._id(request)
        if await hooks.get(id) is None:
            raise not_found(f"webhooks/{id} not found.")
        return id

    async def list_deliveries(self, request: Request) -> Response:
        hooks = self.hooks(request)
        webhook_id = await self._webhook_id(request, hooks)
        operation = request.query_params.get("operation") or None
        if operation is not None and len(operation) > 1024:
            raise invalid_argument("operation must be at most 1024 characters.", field="operation")
        tenant = self.auth.tenant(request)
        scope = f"deliveries\x00{tenant}\x00{webhook_id}\x00{operation}"
        size = _page_size(request)
        try:
            page, after = await hooks.deliveries(
                webhook_id=webhook_id,
                operation=operation,
                page_size=size,
                after=_page_token(request, scope),
            )
        except InvalidWebhook as exc:
            raise invalid_argument(exc.message, field=exc.field) from None
        body: dict[str, Any] = {"deliveries": [render_delivery(d) for d in page]}
        if token := _next_token(after, scope):
            body["next_page_token"] = token
        return _json(body)

    async def _delivery(self, request: Request, hooks: TenantWebhooks) -> DeliveryRecord:
        webhook_id = await self._webhook_id(request, hooks)
        id: str = request.path_params["delivery"]
        delivery = await hooks.delivery(id) if _ID.match(id) else None
        if delivery is None or (webhook_id is not None and delivery.webhook_id != webhook_id):
            raise not_found(f"Delivery {id[:80]} not found.")
        return delivery

    async def get_delivery(self, request: Request) -> Response:
        delivery = await self._delivery(request, self.hooks(request))
        return _json(render_delivery(delivery, attempts=True))

    async def redeliver(self, request: Request) -> Response:
        """Send a delivery again: the same `webhook-id`, a fresh timestamp and signature."""
        hooks = self.hooks(request)
        await self._body(request)
        delivery = await self._delivery(request, hooks)
        again = await hooks.redeliver(delivery.id)
        if again is None:
            raise not_found(f"Delivery {delivery.id} not found.")
        return _json(render_delivery(again, attempts=True))

    async def redeliver_range(self, request: Request) -> Response:
        """Send again every delivery created from `start_time` to `end_time` (now when
        left out): of one webhook, or under `webhookDeliveries` all of the tenant's."""
        hooks = self.hooks(request)
        webhook_id = await self._webhook_id(request, hooks)
        body = await self._body(request)
        raw_start = field(body, "startTime")
        if raw_start is None:
            raise invalid_argument("start_time is required.", field="start_time")
        start = _time(raw_start, "start_time")
        raw_end = field(body, "endTime")
        end = time.time() if raw_end is None else _time(raw_end, "end_time")
        if end < start:
            raise invalid_argument("end_time must not be before start_time.", field="end_time")
        count = await hooks.redeliver_range(webhook_id=webhook_id, start=start, end=end)
        return _json({"redelivered_count": count})


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)

"""Webhooks: google-genai's `client.webhooks` (create, get, list, update, delete, ping,
rotate_signing_secret) and longops's delivery log (list_deliveries, get_delivery,
redeliver, redeliver_range).

The wire is the official SDK's: snake_case JSON on `/{version}/webhooks`. Each method
builds its request with a `_Call` and parses the answer once, for the sync class and
its async twin alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from longops._pagers import AsyncPager, Page, Pager
from longops.resources._base import AsyncResource, SyncResource, resource_name
from longops.types import (
    Webhook,
    WebhookDelivery,
    WebhookPingResponse,
    WebhookRedeliverResponse,
    WebhookRotateSigningSecretResponse,
)

__all__ = ["AsyncWebhooks", "Webhooks"]


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    params: dict[str, str | int] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    idempotent: bool = True


def _webhook_path(id: str) -> str:
    return f"webhooks/{resource_name(id).removeprefix('webhooks/')}"


def _create(subscribed_events: Iterable[str], uri: str, name: str | None) -> _Call:
    body: dict[str, Any] = {"subscribed_events": list(subscribed_events), "uri": uri}
    if name is not None:
        body["name"] = name
    # Not idempotent: a retried create could register the webhook twice.
    return _Call("POST", "webhooks", body=body, idempotent=False)


def _list(page_size: int | None, page_token: str | None) -> _Call:
    params: dict[str, str | int] = {}
    if page_size is not None:
        params["page_size"] = page_size
    if page_token is not None:
        params["page_token"] = page_token
    return _Call("GET", "webhooks", params=params)


def _update(
    id: str,
    update_mask: str | Iterable[str] | None,
    name: str | None,
    state: str | None,
    subscribed_events: Iterable[str] | None,
    uri: str | None,
) -> _Call:
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if state is not None:
        body["state"] = state
    if subscribed_events is not None:
        body["subscribed_events"] = list(subscribed_events)
    if uri is not None:
        body["uri"] = uri
    params: dict[str, str | int] = {}
    if update_mask is not None:
        params["update_mask"] = (
            update_mask if isinstance(update_mask, str) else ",".join(update_mask)
        )
    return _Call("PATCH", _webhook_path(id), params=params, body=body)


def _rotate(id: str, revocation_behavior: str | None) -> _Call:
    body = {} if revocation_behavior is None else {"revocation_behavior": revocation_behavior}
    # Not idempotent: each call makes a new secret (and may revoke the last one).
    return _Call("POST", f"{_webhook_path(id)}:rotateSigningSecret", body=body, idempotent=False)


def _deliveries_path(webhook: str | None) -> str:
    return "webhookDeliveries" if webhook is None else f"{_webhook_path(webhook)}/deliveries"


def _list_deliveries(webhook: str | None, operation: object | None, page_size: int | None) -> _Call:
    params: dict[str, str | int] = {}
    if operation is not None:
        params["operation"] = _operation_name(operation)
    if page_size is not None:
        params["page_size"] = page_size
    return _Call("GET", _deliveries_path(webhook), params=params)


def _delivery_path(delivery: str | WebhookDelivery) -> str:
    """A delivery's path: its `name`, or `webhookDeliveries/{id}` for a bare id."""
    name = (delivery.name or delivery.id) if isinstance(delivery, WebhookDelivery) else delivery
    if not name:
        raise ValueError("Expected a delivery, its name or its id.")
    name = resource_name(name)
    return name if "/" in name else f"webhookDeliveries/{name}"


def _redeliver_range(webhook: str | None, start_time: datetime, end_time: datetime | None) -> _Call:
    body = {"start_time": _rfc3339(start_time)}
    if end_time is not None:
        body["end_time"] = _rfc3339(end_time)
    path = "webhookDeliveries" if webhook is None else _webhook_path(webhook)
    return _Call("POST", f"{path}:redeliver", body=body, idempotent=False)


def _rfc3339(when: datetime) -> str:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _operation_name(operation: object) -> str:
    name = operation if isinstance(operation, str) else getattr(operation, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"Expected an operation or its name, got {type(operation).__name__}.")
    return resource_name(name)


def _webhook_page(data: dict[str, Any]) -> Page[Webhook]:
    webhooks = [Webhook.model_validate(item) for item in data.get("webhooks") or []]
    return webhooks, data.get("next_page_token") or None


def _delivery_page(data: dict[str, Any]) -> Page[WebhookDelivery]:
    deliveries = [WebhookDelivery.model_validate(item) for item in data.get("deliveries") or []]
    return deliveries, data.get("next_page_token") or None


class Webhooks(SyncResource):
    """Webhooks of the caller's tenant, and the log of what was delivered to them."""

    def _do(self, call: _Call) -> dict[str, Any]:
        return self._transport.request(
            call.method, call.path, params=call.params, body=call.body, idempotent=call.idempotent
        )

    def create(
        self, *, subscribed_events: Iterable[str], uri: str, name: str | None = None
    ) -> Webhook:
        """Register `uri` for `subscribed_events`; the answer's `new_signing_secret` is the
        `whsec_` secret its deliveries are signed with, shown this once."""
        return Webhook.model_validate(self._do(_create(subscribed_events, uri, name)))

    def get(self, id: str) -> Webhook:
        return Webhook.model_validate(self._do(_Call("GET", _webhook_path(id))))

    def list(
        self, *, page_size: int | None = None, page_token: str | None = None
    ) -> Pager[Webhook]:
        """The tenant's webhooks, newest first, `page_size` (50, at most 1000) a page."""

        def fetch(token: str | None) -> Page[Webhook]:
            return _webhook_page(self._do(_list(page_size, token)))

        return Pager(fetch, fetch(page_token))

    def update(
        self,
        id: str,
        *,
        update_mask: str | Iterable[str] | None = None,
        name: str | None = None,
        state: str | None = None,
        subscribed_events: Iterable[str] | None = None,
        uri: str | None = None,
    ) -> Webhook:
        """Change the fields named in `update_mask` (or, without one, those given);
        `state` may be `enabled` or `disabled`."""
        call = _update(id, update_mask, name, state, subscribed_events, uri)
        return Webhook.model_validate(self._do(call))

    def delete(self, id: str) -> None:
        self._do(_Call("DELETE", _webhook_path(id), idempotent=False))

    def ping(self, id: str) -> WebhookPingResponse:
        """Queue a `webhook.ping` event to the webhook (it shows in the delivery log)."""
        call = _Call("POST", f"{_webhook_path(id)}:ping", body={}, idempotent=False)
        return WebhookPingResponse.model_validate(self._do(call))

    def rotate_signing_secret(
        self, id: str, *, revocation_behavior: str | None = None
    ) -> WebhookRotateSigningSecretResponse:
        """A new secret; `revoke_previous_secrets_after_h24` (the default) keeps the old
        ones signing for a day, `revoke_previous_secrets_immediately` stops them now."""
        data = self._do(_rotate(id, revocation_behavior))
        return WebhookRotateSigningSecretResponse.model_validate(data)

    def list_deliveries(
        self,
        webhook: str | None = None,
        *,
        operation: object | None = None,
        page_size: int | None = None,
    ) -> Pager[WebhookDelivery]:
        """Deliveries, newest first: of `webhook`, or without it all of the tenant's
        (per-request ones included); `operation` (an operation or its name) narrows them."""
        first = _list_deliveries(webhook, operation, page_size)

        def fetch(token: str | None) -> Page[WebhookDelivery]:
            params = first.params if token is None else {**first.params, "page_token": token}
            return _delivery_page(self._do(_Call("GET", first.path, params=params)))

        return Pager(fetch, fetch(None))

    def get_delivery(self, delivery: str | WebhookDelivery) -> WebhookDelivery:
        """A delivery (its name, id, or itself) with every attempt at sending it."""
        data = self._do(_Call("GET", _delivery_path(delivery)))
        return WebhookDelivery.model_validate(data)

    def redeliver(self, delivery: str | WebhookDelivery) -> WebhookDelivery:
        """Send a delivery again: the same `webhook-id`, a fresh timestamp and signature."""
        call = _Call("POST", f"{_delivery_path(delivery)}:redeliver", body={}, idempotent=False)
        return WebhookDelivery.model_validate(self._do(call))

    def redeliver_range(
        self,
        webhook: str | None = None,
        *,
        start_time: datetime,
        end_time: datetime | None = None,
    ) -> int:
        """Send again every delivery created from `start_time` to `end_time` (now when
        None), of `webhook` or all of the tenant's; returns how many."""
        data = self._do(_redeliver_range(webhook, start_time, end_time))
        return WebhookRedeliverResponse.model_validate(data).redelivered_count


class AsyncWebhooks(AsyncResource):
    """The async twin of `Webhooks`."""

    async def _do(self, call: _Call) -> dict[str, Any]:
        return await self._transport.request(
            call.method, call.path, params=call.params, body=call.body, idempotent=call.idempotent
        )

    async def create(
        self, *, subscribed_events: Iterable[str], uri: str, name: str | None = None
    ) -> Webhook:
        return Webhook.model_validate(await self._do(_create(subscribed_events, uri, name)))

    async def get(self, id: str) -> Webhook:
        return Webhook.model_validate(await self._do(_Call("GET", _webhook_path(id))))

    async def list(
        self, *, page_size: int | None = None, page_token: str | None = None
    ) -> AsyncPager[Webhook]:
        async def fetch(token: str | None) -> Page[Webhook]:
            return _webhook_page(await self._do(_list(page_size, token)))

        return AsyncPager(fetch, await fetch(page_token))

    async def update(
        self,
        id: str,
        *,
        update_mask: str | Iterable[str] | None = None,
        name: str | None = None,
        state: str | None = None,
        subscribed_events: Iterable[str] | None = None,
        uri: str | None = None,
    ) -> Webhook:
        call = _update(id, update_mask, name, state, subscribed_events, uri)
        return Webhook.model_validate(await self._do(call))

    async def delete(self, id: str) -> None:
        await self._do(_Call("DELETE", _webhook_path(id), idempotent=False))

    async def ping(self, id: str) -> WebhookPingResponse:
        call = _Call("POST", f"{_webhook_path(id)}:ping", body={}, idempotent=False)
        return WebhookPingResponse.model_validate(await self._do(call))

    async def rotate_signing_secret(
        self, id: str, *, revocation_behavior: str | None = None
    ) -> WebhookRotateSigningSecretResponse:
        data = await self._do(_rotate(id, revocation_behavior))
        return WebhookRotateSigningSecretResponse.model_validate(data)

    async def list_deliveries(
        self,
        webhook: str | None = None,
        *,
        operation: object | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[WebhookDelivery]:
        first = _list_deliveries(webhook, operation, page_size)

        async def fetch(token: str | None) -> Page[WebhookDelivery]:
            params = first.params if token is None else {**first.params, "page_token": token}
            return _delivery_page(await self._do(_Call("GET", first.path, params=params)))

        return AsyncPager(fetch, await fetch(None))

    async def get_delivery(self, delivery: str | WebhookDelivery) -> WebhookDelivery:
        data = await self._do(_Call("GET", _delivery_path(delivery)))
        return WebhookDelivery.model_validate(data)

    async def redeliver(self, delivery: str | WebhookDelivery) -> WebhookDelivery:
        call = _Call("POST", f"{_delivery_path(delivery)}:redeliver", body={}, idempotent=False)
        return WebhookDelivery.model_validate(await self._do(call))

    async def redeliver_range(
        self,
        webhook: str | None = None,
        *,
        start_time: datetime,
        end_time: datetime | None = None,
    ) -> int:
        data = await self._do(_redeliver_range(webhook, start_time, end_time))
        return WebhookRedeliverResponse.model_validate(data).redelivered_count

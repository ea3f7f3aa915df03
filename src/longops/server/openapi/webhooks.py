"""The webhooks' schemas and paths, in snake_case as the official SDK's
`client.webhooks` speaks; the delivery log; the JWKS."""

from __future__ import annotations

from longops.server.openapi.parts import (
    OPEN,
    TIME,
    URL,
    VERSION,
    WITH_BODY,
    Schema,
    obj,
    op,
    parameter,
    ref,
    reply,
    request_body,
    string,
)
from longops.server.routes.webhooks import EVENTS, REVOCATIONS


def webhook_schemas() -> dict[str, Schema]:
    events = {"type": "string", "enum": sorted(EVENTS)}
    event_list = {"type": "array", "items": events, "minItems": 1, "maxItems": 32}
    uri = URL
    secret = obj({"truncated_secret": {"type": "string"}, "expire_time": TIME})
    webhook = obj(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "uri": {"type": "string"},
            "subscribed_events": {"type": "array", "items": {"type": "string"}},
            "state": {
                "type": "string",
                "enum": ["enabled", "disabled", "disabled_due_to_failed_deliveries"],
            },
            "create_time": TIME,
            "update_time": TIME,
            "signing_secrets": {"type": "array", "items": secret},
            "new_signing_secret": string("On create only: the `whsec_` secret, shown once."),
        },
        ("id", "uri", "subscribed_events", "state"),
    )
    attempt = obj(
        {
            "attempt_time": TIME,
            "latency": string("A Duration, e.g. `0.012s`."),
            "status_code": {"type": "integer"},
            "error": {"type": "string"},
            "next_attempt_time": TIME,
        },
        ("attempt_time",),
    )
    delivery = obj(
        {
            "name": string("`webhooks/{id}/deliveries/{d}`, or `webhookDeliveries/{d}`."),
            "id": string("The `webhook-id` header, the same on every attempt."),
            "webhook_id": {"type": "string"},
            "uri": {"type": "string"},
            "event_type": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempt_count": {"type": "integer"},
            "create_time": TIME,
            "next_attempt_time": TIME,
            "last_status_code": {"type": "integer"},
            "last_error": {"type": "string"},
            "operation": {"type": "string"},
            "payload": {"type": "object"},
            "attempts": {"type": "array", "items": attempt},
        },
        ("name", "id", "uri", "event_type", "state"),
    )
    return {
        "Webhook": webhook,
        "ListWebhooksResponse": obj(
            {
                "webhooks": {"type": "array", "items": ref("Webhook")},
                "next_page_token": {"type": "string"},
            },
            ("webhooks",),
        ),
        "CreateWebhookRequest": obj(
            {"uri": uri, "subscribed_events": event_list, "name": string(maxLength=512)},
            ("uri", "subscribed_events"),
            description="camelCase spellings (`subscribedEvents`) are accepted too.",
        ),
        "UpdateWebhookRequest": obj(
            {
                "uri": uri,
                "subscribed_events": event_list,
                "name": string(maxLength=512),
                "state": {"type": "string", "enum": ["enabled", "disabled"]},
            }
        ),
        "RotateSigningSecretRequest": obj(
            {"revocation_behavior": {"type": "string", "enum": sorted(REVOCATIONS)}}
        ),
        "RotateSigningSecretResponse": obj({"secret": {"type": "string"}}, ("secret",)),
        "WebhookDelivery": delivery,
        "ListWebhookDeliveriesResponse": obj(
            {
                "deliveries": {"type": "array", "items": ref("WebhookDelivery")},
                "next_page_token": {"type": "string"},
            },
            ("deliveries",),
        ),
        "RedeliverRequest": obj(
            {"start_time": TIME, "end_time": string("Now when left out.", format="date-time")},
            ("start_time",),
        ),
        "RedeliverResponse": obj(
            {"redelivered_count": {"type": "integer"}}, ("redelivered_count",)
        ),
        "JsonWebKeySet": obj(
            {"keys": {"type": "array", "items": {"type": "object"}}},
            ("keys",),
            description="The public keys (RS256) that sign per-request deliveries.",
        ),
    }


def webhook_paths() -> dict[str, Schema]:
    v = "/{version}/webhooks"
    d = "/{version}/webhookDeliveries"
    hook_id = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
    webhook = parameter("webhook", "path", hook_id, "wh_abc123")
    delivery = parameter("delivery", "path", hook_id, "msg_abc123")
    page = [
        parameter("page_size", "query", {"type": "integer", "minimum": 0}, 10, "0 is 50."),
        parameter("page_token", "query", {"type": "string"}, "", "From the previous page."),
    ]
    operation = parameter(
        "operation", "query", string(maxLength=1024), "operations/abc123", "One operation's."
    )
    tag = "webhooks"

    def deliveries(operation_id: str, params: list[Schema]) -> Schema:
        return {
            "get": op(
                operation_id,
                "The delivery log, newest first.",
                tag,
                reply("ListWebhookDeliveriesResponse", "A page of deliveries."),
                parameters=[VERSION, *params, operation, *page],
            )
        }

    def one_delivery(suffix: str, params: list[Schema]) -> dict[str, Schema]:
        return {
            "get": op(
                f"getWebhookDelivery{suffix}",
                "One delivery, with its attempts.",
                tag,
                reply("WebhookDelivery", "The delivery."),
                parameters=[VERSION, *params, delivery],
            )
        }

    def redeliver(suffix: str, params: list[Schema]) -> Schema:
        return {
            "post": op(
                f"redeliverWebhookDelivery{suffix}",
                "Send a delivery again: the same `webhook-id`, a fresh signature.",
                tag,
                reply("WebhookDelivery", "The delivery, pending again."),
                parameters=[VERSION, *params, delivery],
                body=request_body("Empty"),
                errors=WITH_BODY,
            )
        }

    def redeliver_range(suffix: str, params: list[Schema]) -> Schema:
        return {
            "post": op(
                f"redeliverWebhookDeliveries{suffix}",
                "Send again every delivery created from `start_time` to `end_time`.",
                tag,
                reply("RedeliverResponse", "How many."),
                parameters=[VERSION, *params],
                body=request_body("RedeliverRequest", required=True),
                errors=WITH_BODY,
            )
        }

    return {
        "/.well-known/jwks.json": {
            "get": op(
                "jwks",
                "The public keys of per-request webhook signatures (no key needed).",
                tag,
                reply("JsonWebKeySet", "The key set."),
                errors=(503,),
                security=OPEN,
            )
        },
        v: {
            "post": op(
                "createWebhook",
                "Register a webhook; the answer carries its signing secret, once.",
                tag,
                reply("Webhook", "The webhook, with `new_signing_secret`."),
                parameters=[VERSION],
                body=request_body("CreateWebhookRequest", required=True),
                errors=WITH_BODY,
            ),
            "get": op(
                "listWebhooks",
                "The caller's webhooks.",
                tag,
                reply("ListWebhooksResponse", "A page of webhooks."),
                parameters=[VERSION, *page],
            ),
        },
        f"{v}/{{webhook}}": {
            "get": op(
                "getWebhook",
                "One webhook.",
                tag,
                reply("Webhook", "The webhook."),
                parameters=[VERSION, webhook],
            ),
            "patch": op(
                "updateWebhook",
                "Change the fields `update_mask` names (or, without one, those sent).",
                tag,
                reply("Webhook", "The webhook as it is now."),
                parameters=[
                    VERSION,
                    webhook,
                    parameter(
                        "update_mask",
                        "query",
                        {"type": "string"},
                        "state",
                        "Comma-separated: name, state, subscribed_events, uri.",
                    ),
                ],
                body=request_body("UpdateWebhookRequest"),
                errors=WITH_BODY,
            ),
            "delete": op(
                "deleteWebhook",
                "Delete a webhook.",
                tag,
                reply("Empty", "Deleted."),
                parameters=[VERSION, webhook],
            ),
        },
        f"{v}/{{webhook}}:ping": {
            "post": op(
                "pingWebhook",
                "Send the webhook a `webhook.ping` event.",
                tag,
                reply("Empty", "Queued."),
                parameters=[VERSION, webhook],
                body=request_body("Empty"),
                errors=WITH_BODY,
            )
        },
        f"{v}/{{webhook}}:rotateSigningSecret": {
            "post": op(
                "rotateWebhookSigningSecret",
                "A new signing secret; the old ones sign on for 24 h unless revoked now.",
                tag,
                reply("RotateSigningSecretResponse", "The new secret."),
                parameters=[VERSION, webhook],
                body=request_body("RotateSigningSecretRequest"),
                errors=WITH_BODY,
            )
        },
        f"{v}/{{webhook}}:redeliver": redeliver_range("OfWebhook", [webhook]),
        f"{v}/{{webhook}}/deliveries": deliveries("listWebhookDeliveriesOfWebhook", [webhook]),
        f"{v}/{{webhook}}/deliveries/{{delivery}}": one_delivery("OfWebhook", [webhook]),
        f"{v}/{{webhook}}/deliveries/{{delivery}}:redeliver": redeliver("OfWebhook", [webhook]),
        d: deliveries("listWebhookDeliveries", []),
        f"{d}:redeliver": redeliver_range("", []),
        f"{d}/{{delivery}}": one_delivery("", []),
        f"{d}/{{delivery}}:redeliver": redeliver("", []),
    }

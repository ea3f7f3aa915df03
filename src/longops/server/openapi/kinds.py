"""The kinds' paths: each registered kind's start, its body from pydantic's JSON schema
of the kind's request model; and the bodies of the routes that create a built-in kind's
operation, from that kind's model less what the route fills in."""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import PydanticUserError

from longops.engine.records import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY
from longops.engine.registry import KIND_NAME, Kind, Registry
from longops.server.flow import MAX_CONCURRENCY_KEY
from longops.server.openapi.parts import (
    REQUEST_ID,
    VERSION,
    WITH_BODY,
    Schema,
    op,
    parameter,
    ref,
    reply,
    request_body,
    string,
)


def component_prefix(kind: Kind[Any]) -> str:
    return "kind." + re.sub(r"[^A-Za-z0-9._-]", "_", kind.name) + "."


def kind_request_schemas(kind: Kind[Any]) -> tuple[Schema, dict[str, Schema]]:
    """A kind's request schema, and the components it refers to, from pydantic's JSON
    schema of its model (each kind's models under a prefix of its own, so two kinds'
    `Config` models stay apart). A model pydantic cannot describe is any object."""
    prefix = component_prefix(kind)
    try:
        schema = kind.request_model.model_json_schema(
            by_alias=True, ref_template=f"#/components/schemas/{prefix}{{model}}"
        )
    except PydanticUserError:
        return {"type": "object"}, {}
    defs = schema.pop("$defs", {})
    return schema, {f"{prefix}{name}": body for name, body in defs.items()}


FLOW_FIELDS: dict[str, Schema] = {
    "priority": {
        "type": "integer",
        "minimum": MIN_PRIORITY,
        "maximum": MAX_PRIORITY,
        "default": DEFAULT_PRIORITY,
        "description": "Higher is claimed first; equal priorities in order of creation.",
    },
    "scheduleTime": string(
        "Not started before this RFC 3339 time (at most 30 days ahead; a past one is now).",
        format="date-time",
    ),
    "scheduleDelay": string(
        'Not started before this delay from now, e.g. "30s" (at most 30 days); not with'
        " scheduleTime.",
        pattern=r"^(\d{1,10}(\.\d{0,9})?|\.\d{1,9})s?$",
    ),
    "concurrencyKey": string(
        "The tenant's key for the kind's per-key concurrency and rate limits (e.g. a"
        " customer's or a model's id): printable characters, no control characters.",
        minLength=1,
        maxLength=MAX_CONCURRENCY_KEY,
        pattern=r"^[^\u0000-\u001f\u007f-\u009f]+$",
    ),
}
"""The flow-control fields every creating body takes (server/flow.py)."""


def with_webhook(schema: Schema) -> Schema:
    """A creating request's body: the kind's request, `webhookConfig` and the flow-control
    fields, which the route takes out before the kind's model sees the rest
    (server/webhook_config.py, server/flow.py)."""
    body = copy.deepcopy(schema)
    properties = body.setdefault("properties", {})
    properties["webhookConfig"] = ref("WebhookConfig")
    properties.update(copy.deepcopy(FLOW_FIELDS))
    return body


def without(schema: Schema, *fields: str) -> Schema:
    """The schema less `fields`, which the route fills in itself (from the path)."""
    trimmed = copy.deepcopy(schema)
    for name in fields:
        trimmed.get("properties", {}).pop(name, None)
    if "required" in trimmed:
        trimmed["required"] = [r for r in trimmed["required"] if r not in fields]
        if not trimmed["required"]:
            del trimmed["required"]
    return trimmed


def kind_paths(registry: Registry) -> tuple[dict[str, Schema], dict[str, Schema]]:
    """`kinds` and `kinds/{kind}`, the generic start, and one start path per registered
    kind with its request model as the body."""
    components: dict[str, Schema] = {}
    kind_param = parameter(
        "kind", "path", {"type": "string", "pattern": KIND_NAME.pattern}, "longops.sleep"
    )
    created = reply("Operation", "The new operation (or the first one of its requestId).")
    paths: dict[str, Schema] = {
        "/{version}/kinds": {
            "get": op(
                "listKinds",
                "The kinds this server runs, each with its request's JSON schema.",
                "kinds",
                reply("ListKindsResponse", "The kinds."),
                parameters=[VERSION],
            )
        },
        "/{version}/kinds/{kind}": {
            "get": op(
                "getKind",
                "One kind.",
                "kinds",
                reply("Kind", "The kind."),
                parameters=[VERSION, kind_param],
            )
        },
        "/{version}/kinds/{kind}:start": {
            "post": op(
                "startOperation",
                "Start an operation of a kind; the paths below give each kind's body.",
                "kinds",
                created,
                parameters=[VERSION, kind_param, REQUEST_ID],
                body=request_body(with_webhook({"type": "object"})),
                errors=WITH_BODY,
            )
        },
    }
    for kind in sorted(registry, key=lambda k: k.name):
        schema, defs = kind_request_schemas(kind)
        name = f"{component_prefix(kind)}Request"
        components[name] = schema
        components[f"{name}.Start"] = with_webhook(schema)
        components.update(defs)
        paths[f"/{{version}}/kinds/{kind.name}:start"] = {
            "post": op(
                f"start:{kind.name}",
                kind.description or f"Start a {kind.name} operation.",
                "kinds",
                created,
                parameters=[VERSION, REQUEST_ID],
                body=request_body(f"{name}.Start"),
                errors=WITH_BODY,
            )
        }
    return paths, components


PREDICT = "PredictLongRunningRequest"
IMPORT = "ImportFileRequest"
UPLOAD_START = "UploadToFileSearchStoreStart"
ROUTE_FILLED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    PREDICT: ("generate_videos", "Google's predictLongRunning request.", ("api", "model")),
    IMPORT: ("import_file", "importFile's request.", ("store", "blobKey")),
    UPLOAD_START: (
        "upload_to_file_search_store",
        "The start of uploadToFileSearchStore: the document's settings.",
        ("store", "blobKey", "fileName", "gcsUri", "uri"),
    ),
}
"""Bodies of the routes that create a built-in kind's operation: that kind's request,
less the fields the route fills in (from the path, or the upload). Without the kind
(video generation off), any object (the route answers 404)."""

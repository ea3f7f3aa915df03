"""The pieces the document is written with: schema helpers, parameters, operations."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

VERSIONS = ["v1", "v1beta", "v1beta1", "v1alpha"]
"""The API versions every route is served under (`ApiVersionConvertor` in app.py)."""

KEYED: list[dict[str, list[str]]] = [{"apiKey": []}, {"apiKeyQuery": []}, {"bearer": []}]
OPEN: list[dict[str, list[str]]] = []
ERRORS = (400, 401, 403, 404, 405, 503)
"""Every keyed route may answer these: a bad argument or an unknown key (400, as Google
does), a bad bearer token (401), no key (403), an unknown resource or path (404), a path
whose parameter holds another route's `:verb` (405), a busy database (503)."""
WITH_BODY = (*ERRORS, 413)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def string(description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


INT64 = string("An int64, as proto-JSON writes it: a decimal string.", pattern="^[0-9]+$")
TIME = string("RFC 3339, UTC.", format="date-time")
URL = string(
    "An http(s) URL with a host, no user name or password, no spaces or control characters.",
    pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+(?:[/?#]\S*)?$",
    maxLength=2048,
)
"""Where a webhook posts (`server/webhook_config.py::check_uri`)."""


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def listing(item: str, field: str) -> Schema:
    return obj(
        {
            field: {"type": "array", "items": ref(item)},
            "nextPageToken": string("Absent on the last page."),
        }
    )


def parameter(name: str, where: str, schema: Schema, example: Any, description: str = "") -> Schema:
    param: Schema = {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "example": example,
    }
    if description:
        param["description"] = description
    return param


VERSION = parameter("version", "path", {"type": "string", "enum": VERSIONS}, "v1beta")
PAGE = [
    parameter("pageSize", "query", {"type": "integer", "minimum": 0}, 10, "0 is the default."),
    parameter("pageToken", "query", {"type": "string"}, "", "From the previous page."),
]
REQUEST_ID = parameter(
    "requestId",
    "query",
    {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
    "retry-1",
    "Idempotency key: a repeated create answers with the first operation.",
)
OPERATION_ID = parameter(
    "operationId", "path", {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"}, "abc123"
)
PARENT = parameter(
    "parent",
    "path",
    {"type": "string"},
    "models/veo-3.0-generate-001",
    "The resource the operation belongs to; may hold `/` (e.g. `fileSearchStores/s`).",
)


FILTER = parameter(
    "filter",
    "query",
    {"type": "string"},
    'done=false AND kind="longops.sleep"',
    'Terms `done=true|false` and `kind="NAME"`, joined with AND.',
)
LAST_EVENT_ID = parameter(
    "Last-Event-ID",
    "header",
    {"type": "string", "pattern": "^[0-9]{1,20}$"},
    "1764590000000000",
    "Resume after the event of this id (a position the stream gave).",
)
STREAM: Schema = {
    "description": "`text/event-stream`: events `event: operation`, `id: POSITION`,"
    " `data:` the Operation's JSON as GET gives it; `: keep-alive` comments between.",
    "content": {
        "text/event-stream": {
            "schema": obj(
                {
                    "event": {"type": "string", "enum": ["operation"]},
                    "id": string("The position, for Last-Event-ID.", pattern="^[0-9]+$"),
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": ref("Operation"),
                    },
                },
                ("event", "id", "data"),
                description="One event, as an SSE parser reads it.",
            )
        }
    },
}


def json_content(name: str) -> Schema:
    return {"application/json": {"schema": ref(name)}}


def reply(name: str | None, description: str, **extra: Any) -> Schema:
    answer: Schema = {"description": description, **extra}
    if name is not None:
        answer["content"] = json_content(name)
    return answer


def op(
    operation_id: str,
    summary: str,
    tag: str,
    ok: Schema,
    *,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    errors: tuple[int, ...] = ERRORS,
    security: list[dict[str, list[str]]] | None = None,
    more: dict[str, Schema] | None = None,
) -> Schema:
    if REQUEST_ID in (parameters or []):  # a create: ALREADY_EXISTS, and tenant quotas
        errors = (*errors, 409, 429)
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "parameters": parameters or [],
        "responses": {
            "200": ok,
            **(more or {}),
            **{str(code): {"$ref": f"#/components/responses/Error{code}"} for code in errors},
        },
        "security": KEYED if security is None else security,
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


def request_body(name: str | Schema, *, required: bool = False) -> Schema:
    schema = ref(name) if isinstance(name, str) else name
    return {
        "required": required,
        "description": "JSON; an empty body is `{}`. Fields in camelCase or snake_case.",
        "content": {"application/json": {"schema": schema}},
    }

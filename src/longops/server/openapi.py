"""The server's OpenAPI 3.1 document, served at `GET /openapi.json`.

Written from what the server declares: every route of `server/routes/` is described
here (tests/test_openapi.py enumerates the app's routes and fails on one that is not),
with Google's shapes (google.longrunning.Operation, the error envelope, File, …) as
hand-written components, and each registered kind's request model, by pydantic's own
JSON schema, as the body of its `kinds/{kind}:start` path. The document is built per
server from its registry, so a kind loaded with `--load` appears in it.

It holds no tenant data (only what the deployment serves), so it is served without an
API key, as `/healthz` is.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
from pydantic import PydanticUserError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longops._version import __version__
from longops.engine import Engine
from longops.engine.registry import KIND_NAME, Kind, Registry
from longops.rpc import Code
from longops.server.routes.webhooks import EVENTS, REVOCATIONS

Schema = dict[str, Any]

VERSIONS = ["v1", "v1beta", "v1beta1", "v1alpha"]
"""The API versions every route is served under (`ApiVersionConvertor` in app.py)."""

_KEYED: list[dict[str, list[str]]] = [{"apiKey": []}, {"apiKeyQuery": []}, {"bearer": []}]
_OPEN: list[dict[str, list[str]]] = []
_ERRORS = (400, 401, 403, 404, 405, 503)
"""Every keyed route may answer these: a bad argument or an unknown key (400, as Google
does), a bad bearer token (401), no key (403), an unknown resource or path (404), a path
whose parameter holds another route's `:verb` (405), a busy database (503)."""
_WITH_BODY = (*_ERRORS, 413)
_OPERATORS = ["EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL"]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


_INT64 = _string("An int64, as proto-JSON writes it: a decimal string.", pattern="^[0-9]+$")
_TIME = _string("RFC 3339, UTC.", format="date-time")


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _listing(item: str, field: str) -> Schema:
    return _object(
        {
            field: {"type": "array", "items": ref(item)},
            "nextPageToken": _string("Absent on the last page."),
        }
    )


def _envelope_schemas() -> dict[str, Schema]:
    """Google's shapes, as the official SDKs read them."""
    any_message = _object(
        {"@type": _string("The type URL of the message.")},
        description="A google.protobuf.Any: `@type` and the message's fields.",
    )
    status = _object(
        {
            "code": {"type": "integer", "description": "A google.rpc.Code."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": ref("Any")},
        },
        ("code", "message"),
        description="google.rpc.Status: why an operation failed.",
    )
    error = _object(
        {
            "error": _object(
                {
                    "code": {"type": "integer", "description": "The HTTP status."},
                    "message": {"type": "string"},
                    "status": {"type": "string", "enum": [code.name for code in Code]},
                    "details": {"type": "array", "items": ref("Any")},
                },
                ("code", "message", "status"),
                additionalProperties=False,
            )
        },
        ("error",),
        additionalProperties=False,
        description="Google's error envelope: the body of every 4xx and 5xx answer.",
    )
    metadata = _object(
        {
            "@type": {"type": "string"},
            "kind": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
            },
            "progressPercent": {"type": "number"},
            "attempt": {"type": "integer"},
            "createTime": _TIME,
            "updateTime": _TIME,
            "startTime": _TIME,
            "endTime": _TIME,
        },
        description="longops's operation metadata; a kind's own fields beside these.",
    )
    operation = _object(
        {
            "name": _string("e.g. `operations/abc` or `models/veo/operations/abc`."),
            "metadata": ref("OperationMetadata"),
            "done": {"type": "boolean"},
            "error": ref("Status"),
            "response": ref("Any"),
        },
        ("name",),
        description="google.longrunning.Operation; `error` and `response` never together.",
        **{"not": {"required": ["error", "response"]}},
    )
    file = _object(
        {
            "name": _string(pattern="^files/[a-z0-9-]+$"),
            "displayName": {"type": "string"},
            "mimeType": {"type": "string"},
            "sizeBytes": _INT64,
            "createTime": _TIME,
            "updateTime": _TIME,
            "expirationTime": _TIME,
            "sha256Hash": _string("Base64 of the SHA-256 of the bytes."),
            "uri": {"type": "string"},
            "downloadUri": {"type": "string"},
            "state": {"type": "string", "enum": ["STATE_UNSPECIFIED", "PROCESSING", "ACTIVE"]},
            "source": {"type": "string", "enum": ["UPLOADED", "GENERATED", "REGISTERED"]},
        },
        ("name", "mimeType", "sizeBytes", "state"),
    )
    metadata_entry = _object(
        {
            "key": {"type": "string"},
            "stringValue": {"type": "string"},
            "numericValue": {"type": "number"},
            "stringListValue": _object({"values": {"type": "array", "items": {"type": "string"}}}),
        },
        ("key",),
    )
    search_store = _object(
        {
            "name": _string(pattern="^fileSearchStores/[a-z0-9-]+$"),
            "displayName": {"type": "string"},
            "embeddingModel": {"type": "string"},
            "createTime": _TIME,
            "updateTime": _TIME,
            "activeDocumentsCount": _INT64,
            "pendingDocumentsCount": _INT64,
            "failedDocumentsCount": _INT64,
            "sizeBytes": _INT64,
        },
        ("name",),
    )
    document = _object(
        {
            "name": _string(pattern="^fileSearchStores/[a-z0-9-]+/documents/[a-z0-9-]+$"),
            "displayName": {"type": "string"},
            "customMetadata": {"type": "array", "items": ref("CustomMetadata")},
            "state": {"type": "string", "enum": ["STATE_PENDING", "STATE_ACTIVE", "STATE_FAILED"]},
            "sizeBytes": _INT64,
            "mimeType": {"type": "string"},
            "createTime": _TIME,
            "updateTime": _TIME,
        },
        ("name", "state"),
    )
    chunk = _object(
        {
            "chunkRelevanceScore": {"type": "number"},
            "chunk": _object(
                {
                    "name": {"type": "string"},
                    "data": _object({"stringValue": {"type": "string"}}),
                    "customMetadata": {"type": "array", "items": ref("CustomMetadata")},
                }
            ),
            "document": ref("Document"),
        }
    )
    kind = _object(
        {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "responseType": {"type": "string"},
            "metadataType": {"type": "string"},
            "requestSchema": {"type": "object", "description": "The request's JSON schema."},
        },
        ("name",),
    )
    model = _object(
        {
            "name": _string(pattern="^models/"),
            "baseModelId": {"type": "string"},
            "displayName": {"type": "string"},
            "supportedGenerationMethods": {"type": "array", "items": {"type": "string"}},
            "videoGeneration": {"type": "object"},
        },
        ("name",),
    )
    duration = {
        "oneOf": [
            _string("A google.protobuf.Duration, e.g. `3.5s`.", pattern=r"^\s*[0-9.]+\s*s?\s*$"),
            {"type": "number", "minimum": 0},
        ]
    }
    return {
        "Any": any_message,
        "Status": status,
        "Error": error,
        "OperationMetadata": metadata,
        "Operation": operation,
        "ListOperationsResponse": _listing("Operation", "operations"),
        "Empty": _object({}, description="An empty message: `{}`."),
        "WaitOperationRequest": _object({"timeout": duration}),
        "FetchPredictOperationRequest": _object(
            {"operationName": {"type": "string", "minLength": 1}}, ("operationName",)
        ),
        "File": file,
        "ListFilesResponse": _listing("File", "files"),
        "UploadFileStart": _object(
            {
                "file": _object(
                    {
                        "name": _string("Optional: `files/` and up to 40 of [a-z0-9-]."),
                        "displayName": {"type": "string"},
                        "mimeType": {"type": "string"},
                        "sizeBytes": {"type": ["integer", "string"]},
                    },
                    description="snake_case spellings (`display_name`, …) are accepted too.",
                )
            }
        ),
        "UploadFileResponse": _object({"file": ref("File")}, ("file",)),
        "CustomMetadata": metadata_entry,
        "FileSearchStore": search_store,
        "ListFileSearchStoresResponse": _listing("FileSearchStore", "fileSearchStores"),
        "CreateFileSearchStoreRequest": _object(
            {"displayName": _string(maxLength=512), "embeddingModel": {"type": "string"}}
        ),
        "Document": document,
        "ListDocumentsResponse": _listing("Document", "documents"),
        "QueryFileSearchStoreRequest": _object(
            {
                "query": _string(minLength=1),
                "resultsCount": {"type": "integer", "minimum": 1, "maximum": 100},
                "metadataFilters": {
                    "type": "array",
                    "items": _object(
                        {
                            "key": {"type": "string"},
                            "conditions": {
                                "type": "array",
                                "minItems": 1,
                                "items": _object(
                                    {
                                        "operation": {"type": "string", "enum": _OPERATORS},
                                        "stringValue": {"type": "string"},
                                        "numericValue": {"type": "number"},
                                    },
                                    ("operation",),
                                ),
                            },
                        },
                        ("key", "conditions"),
                    ),
                },
            },
            ("query",),
        ),
        "QueryFileSearchStoreResponse": _object(
            {"relevantChunks": {"type": "array", "items": chunk}}, ("relevantChunks",)
        ),
        "Kind": kind,
        "ListKindsResponse": _object({"kinds": {"type": "array", "items": ref("Kind")}}),
        "Model": model,
        "ListModelsResponse": _object({"models": {"type": "array", "items": ref("Model")}}),
        "WebhookConfig": _object(
            {
                "uris": {
                    "type": "array",
                    "maxItems": 10,
                    "items": _string("An http(s) URL.", minLength=1, maxLength=2048),
                    "description": "These get the operation's events instead of the"
                    " tenant's webhooks.",
                },
                "userMetadata": {"type": "object", "description": "Up to 16 KiB of JSON."},
            },
            additionalProperties=False,
            description="Where this operation's events go (`user_metadata` is accepted too).",
        ),
        "Health": _object({"status": {"type": "string", "enum": ["ok"]}}, ("status",)),
    }


# -- kinds ------------------------------------------------------------------------------


def _component_prefix(kind: Kind[Any]) -> str:
    return "kind." + re.sub(r"[^A-Za-z0-9._-]", "_", kind.name) + "."


def kind_request_schemas(kind: Kind[Any]) -> tuple[Schema, dict[str, Schema]]:
    """A kind's request schema, and the components it refers to, from pydantic's JSON
    schema of its model (each kind's models under a prefix of its own, so two kinds'
    `Config` models stay apart). A model pydantic cannot describe is any object."""
    prefix = _component_prefix(kind)
    try:
        schema = kind.request_model.model_json_schema(
            by_alias=True, ref_template=f"#/components/schemas/{prefix}{{model}}"
        )
    except PydanticUserError:
        return {"type": "object"}, {}
    defs = schema.pop("$defs", {})
    return schema, {f"{prefix}{name}": body for name, body in defs.items()}


def with_webhook(schema: Schema) -> Schema:
    """A creating request's body: the kind's request and `webhookConfig`, which the route
    takes out before the kind's model sees the rest (server/webhook_config.py)."""
    body = copy.deepcopy(schema)
    body.setdefault("properties", {})["webhookConfig"] = ref("WebhookConfig")
    return body


def _without(schema: Schema, *fields: str) -> Schema:
    """The schema less `fields`, which the route fills in itself (from the path)."""
    trimmed = copy.deepcopy(schema)
    for name in fields:
        trimmed.get("properties", {}).pop(name, None)
    if "required" in trimmed:
        trimmed["required"] = [r for r in trimmed["required"] if r not in fields]
        if not trimmed["required"]:
            del trimmed["required"]
    return trimmed


# -- paths ------------------------------------------------------------------------------


def _param(name: str, where: str, schema: Schema, example: Any, description: str = "") -> Schema:
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


VERSION = _param("version", "path", {"type": "string", "enum": VERSIONS}, "v1beta")
PAGE = [
    _param("pageSize", "query", {"type": "integer", "minimum": 0}, 10, "0 is the default."),
    _param("pageToken", "query", {"type": "string"}, "", "From the previous page."),
]
REQUEST_ID = _param(
    "requestId",
    "query",
    {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
    "retry-1",
    "Idempotency key: a repeated create answers with the first operation.",
)
OPERATION_ID = _param(
    "operationId", "path", {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"}, "abc123"
)
PARENT = _param(
    "parent",
    "path",
    {"type": "string"},
    "models/veo-3.0-generate-001",
    "The resource the operation belongs to; may hold `/` (e.g. `fileSearchStores/s`).",
)


_FILTER = _param(
    "filter",
    "query",
    {"type": "string"},
    'done=false AND kind="longops.sleep"',
    'Terms `done=true|false` and `kind="NAME"`, joined with AND.',
)
LAST_EVENT_ID = _param(
    "Last-Event-ID",
    "header",
    {"type": "string", "pattern": "^[0-9]{1,20}$"},
    "1764590000000000",
    "Resume after the event of this id (a position the stream gave).",
)
_STREAM: Schema = {
    "description": "`text/event-stream`: events `event: operation`, `id: POSITION`,"
    " `data:` the Operation's JSON as GET gives it; `: keep-alive` comments between.",
    "content": {
        "text/event-stream": {
            "schema": _object(
                {
                    "event": {"type": "string", "enum": ["operation"]},
                    "id": _string("The position, for Last-Event-ID.", pattern="^[0-9]+$"),
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


def _json(name: str) -> Schema:
    return {"application/json": {"schema": ref(name)}}


def _answer(name: str | None, description: str, **extra: Any) -> Schema:
    answer: Schema = {"description": description, **extra}
    if name is not None:
        answer["content"] = _json(name)
    return answer


def _op(
    operation_id: str,
    summary: str,
    tag: str,
    ok: Schema,
    *,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    errors: tuple[int, ...] = _ERRORS,
    security: list[dict[str, list[str]]] | None = None,
    more: dict[str, Schema] | None = None,
) -> Schema:
    if REQUEST_ID in (parameters or []):  # reused for another request: ALREADY_EXISTS
        errors = (*errors, 409)
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
        "security": _KEYED if security is None else security,
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


def _body(name: str | Schema, *, required: bool = False) -> Schema:
    schema = ref(name) if isinstance(name, str) else name
    return {
        "required": required,
        "description": "JSON; an empty body is `{}`. Fields in camelCase or snake_case.",
        "content": {"application/json": {"schema": schema}},
    }


def _operation_paths(prefix: str, params: list[Schema], tag_id: str) -> dict[str, Schema]:
    """get, delete, cancel and wait of one operation, and the list of a collection:
    under `prefix` (`/{version}` or `/{version}/{parent}`)."""
    one = f"{prefix}/operations/{{operationId}}"
    with_id = [*params, OPERATION_ID]
    return {
        f"{prefix}/operations": {
            "get": _op(
                f"listOperations{tag_id}",
                "List operations, newest first.",
                "operations",
                _answer("ListOperationsResponse", "A page of operations."),
                parameters=[*params, _FILTER, *PAGE],
            )
        },
        one: {
            "get": _op(
                f"getOperation{tag_id}",
                "Get an operation (the short `operations/{id}` or its full name).",
                "operations",
                _answer("Operation", "The operation."),
                parameters=with_id,
            ),
            "delete": _op(
                f"deleteOperation{tag_id}",
                "Delete an operation.",
                "operations",
                _answer("Empty", "Deleted."),
                parameters=with_id,
            ),
        },
        f"{prefix}/operations:watch": {
            "get": _op(
                f"watchOperations{tag_id}",
                "Server-sent events: each change of the operations the filter matches,"
                " from now on (or since `Last-Event-ID`); it never ends by itself.",
                "operations",
                _STREAM,
                parameters=[*params, _FILTER, LAST_EVENT_ID],
            )
        },
        f"{one}:watch": {
            "get": _op(
                f"watchOperation{tag_id}",
                "Server-sent events: the operation at once, then each change of it; the"
                " stream ends after the event that shows it done.",
                "operations",
                _STREAM,
                parameters=[*with_id, LAST_EVENT_ID],
            )
        },
        f"{one}:cancel": {
            "post": _op(
                f"cancelOperation{tag_id}",
                "Ask for an operation to be cancelled.",
                "operations",
                _answer("Empty", "Cancellation requested."),
                parameters=with_id,
                body=_body("Empty"),
                errors=_WITH_BODY,
            )
        },
        f"{one}:wait": {
            "post": _op(
                f"waitOperation{tag_id}",
                "Wait until the operation is done or the timeout passes (capped by the server).",
                "operations",
                _answer("Operation", "The operation, done or as it is at the timeout."),
                parameters=[
                    *with_id,
                    _param("timeout", "query", {"type": "string"}, "2s", "When the body has none."),
                ],
                body=_body("WaitOperationRequest"),
                errors=_WITH_BODY,
            )
        },
    }


def _model_paths() -> dict[str, Schema]:
    model = _param(
        "model", "path", {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9._-]*$"}, "veo-3"
    )
    segment = {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_-]*$"}
    predict = _body(_PREDICT, required=True)
    predict["description"] = "Google's predictLongRunning request: `instances`, `parameters`."
    created = _answer("Operation", "The new operation (or the first one of its requestId).")

    def vertex(operation_id: str, params: list[Schema]) -> Schema:
        return _op(
            operation_id,
            "Vertex: generate videos.",
            "models",
            created,
            parameters=[VERSION, *params, model, REQUEST_ID],
            body=predict,
            errors=_WITH_BODY,
        )

    return {
        "/{version}/models": {
            "get": _op(
                "listModels",
                "The video models served.",
                "models",
                _answer("ListModelsResponse", "The catalogue."),
                parameters=[VERSION],
            )
        },
        "/{version}/models/{model}": {
            "get": _op(
                "getModel",
                "One video model.",
                "models",
                _answer("Model", "The model."),
                parameters=[VERSION, model],
            )
        },
        "/{version}/models/{model}:predictLongRunning": {
            "post": _op(
                "predictLongRunning",
                "Gemini: generate videos; the operation is `models/{model}/operations/{id}`.",
                "models",
                created,
                parameters=[VERSION, model, REQUEST_ID],
                body=predict,
                errors=_WITH_BODY,
            )
        },
        "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}"
        ":predictLongRunning": {
            "post": vertex(
                "predictLongRunningVertex",
                [
                    _param("project", "path", segment, "my-project"),
                    _param("location", "path", segment, "us-central1"),
                ],
            )
        },
        "/{version}/publishers/google/models/{model}:predictLongRunning": {
            "post": vertex("predictLongRunningExpress", [])
        },
        "/{version}/{resource}:fetchPredictOperation": {
            "post": _op(
                "fetchPredictOperation",
                "Vertex: poll a video operation by a POST on its model resource.",
                "operations",
                _answer("Operation", "The operation."),
                parameters=[
                    VERSION,
                    _param(
                        "resource",
                        "path",
                        {"type": "string"},
                        "publishers/google/models/veo-3",
                        "The model resource; may hold `/`.",
                    ),
                ],
                body=_body("FetchPredictOperationRequest", required=True),
                errors=_WITH_BODY,
            )
        },
    }


def _kind_paths(registry: Registry) -> tuple[dict[str, Schema], dict[str, Schema]]:
    """`kinds` and `kinds/{kind}`, the generic start, and one start path per registered
    kind with its request model as the body."""
    components: dict[str, Schema] = {}
    kind_param = _param(
        "kind", "path", {"type": "string", "pattern": KIND_NAME.pattern}, "longops.sleep"
    )
    created = _answer("Operation", "The new operation (or the first one of its requestId).")
    paths: dict[str, Schema] = {
        "/{version}/kinds": {
            "get": _op(
                "listKinds",
                "The kinds this server runs, each with its request's JSON schema.",
                "kinds",
                _answer("ListKindsResponse", "The kinds."),
                parameters=[VERSION],
            )
        },
        "/{version}/kinds/{kind}": {
            "get": _op(
                "getKind",
                "One kind.",
                "kinds",
                _answer("Kind", "The kind."),
                parameters=[VERSION, kind_param],
            )
        },
        "/{version}/kinds/{kind}:start": {
            "post": _op(
                "startOperation",
                "Start an operation of a kind; the paths below give each kind's body.",
                "kinds",
                created,
                parameters=[VERSION, kind_param, REQUEST_ID],
                body=_body(with_webhook({"type": "object"})),
                errors=_WITH_BODY,
            )
        },
    }
    for kind in sorted(registry, key=lambda k: k.name):
        schema, defs = kind_request_schemas(kind)
        name = f"{_component_prefix(kind)}Request"
        components[name] = schema
        components[f"{name}.Start"] = with_webhook(schema)
        components.update(defs)
        paths[f"/{{version}}/kinds/{kind.name}:start"] = {
            "post": _op(
                f"start:{kind.name}",
                kind.description or f"Start a {kind.name} operation.",
                "kinds",
                created,
                parameters=[VERSION, REQUEST_ID],
                body=_body(f"{name}.Start"),
                errors=_WITH_BODY,
            )
        }
    return paths, components


def _file_paths() -> dict[str, Schema]:
    file = _param("file", "path", {"type": "string"}, "abc123", "The id, without `files/`.")
    raw = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "/{version}/files": {
            "get": _op(
                "listFiles",
                "List the caller's files.",
                "files",
                _answer("ListFilesResponse", "A page of files (`{}` when there are none)."),
                parameters=[VERSION, *PAGE],
            )
        },
        "/{version}/files/{file}": {
            "get": _op(
                "getFile",
                "Get a file.",
                "files",
                _answer("File", "The file."),
                parameters=[VERSION, file],
            ),
            "delete": _op(
                "deleteFile",
                "Delete a file.",
                "files",
                _answer("Empty", "Deleted."),
                parameters=[VERSION, file],
            ),
        },
        "/{version}/files/{file}:download": {
            "get": _op(
                "downloadFile",
                "A file's bytes; `Range: bytes=…` asks for a part of them.",
                "files",
                {"description": "The bytes, in the file's own media type.", "content": raw},
                parameters=[
                    VERSION,
                    file,
                    _param("alt", "query", {"type": "string", "enum": ["media"]}, "media"),
                    _param("Range", "header", {"type": "string"}, "bytes=0-99"),
                ],
                errors=(*_ERRORS, 416),
                more={"206": {"description": "The bytes of the range asked for.", "content": raw}},
            )
        },
    }


_UPLOAD_STATUS = {
    "x-goog-upload-status": {
        "description": "`active` while the session is open, `final` once it is over"
        " (on errors too).",
        "schema": {"type": "string", "enum": ["active", "final"]},
    }
}


def _upload(
    operation_id: str, summary: str, params: list[Schema], start: str, final: str
) -> Schema:
    """Google's resumable protocol on one URL: a start (`x-goog-upload-command: start`,
    with the API key and a JSON body) answers `x-goog-upload-url`, the same path with an
    `upload_id`; the bytes then go there without a key (the id is the credential), in
    `upload` chunks, the last one `upload, finalize`, or `query` for the size received."""
    header = {"type": "string"}
    answer = _answer(
        final,
        "The start and every chunk but the last: an empty body (no Content-Type) with"
        " `x-goog-upload-status: active` (and on the start `x-goog-upload-url`); the"
        " final chunk: this body with `x-goog-upload-status: final`.",
        headers={
            **_UPLOAD_STATUS,
            "x-goog-upload-url": {
                "description": "On the start: where the bytes go.",
                "schema": {"type": "string"},
            },
        },
    )
    errors = {
        str(code): {
            "$ref": f"#/components/responses/Error{code}",
        }
        for code in (*_WITH_BODY, 409)
    }
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": _upload.__doc__,
        "tags": ["uploads"],
        "parameters": [
            VERSION,
            *params,
            _param(
                "x-goog-upload-protocol", "header", {"type": "string", "enum": ["resumable"]}, ""
            ),
            _param(
                "x-goog-upload-command",
                "header",
                {"type": "string", "enum": ["start", "upload", "upload, finalize", "query"]},
                "start",
            ),
            _param("x-goog-upload-header-content-length", "header", header, "48"),
            _param("x-goog-upload-header-content-type", "header", header, "text/plain"),
            _param("x-goog-upload-file-name", "header", header, "doc.txt"),
            _param("x-goog-upload-offset", "header", header, "0", "Bytes sent before."),
            _param("upload_id", "query", header, "", "From `x-goog-upload-url`."),
            _param("upload_protocol", "query", {"type": "string", "enum": ["resumable"]}, ""),
        ],
        "requestBody": {
            "required": False,
            "description": "The start: JSON metadata. A chunk: its raw bytes (the official"
            " SDK labels them application/json).",
            "content": {
                "application/json": {"schema": ref(start)},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {"200": answer, **errors},
        "security": [*_KEYED, {}],
    }


def _upload_paths() -> dict[str, Schema]:
    store = _param("store", "path", {"type": "string"}, "my-store-abc123")
    return {
        "/upload/{version}/files": {
            "post": _upload(
                "uploadFile",
                "Upload a file (resumable).",
                [],
                "UploadFileStart",
                "UploadFileResponse",
            )
        },
        "/upload/{version}/fileSearchStores/{store}:uploadToFileSearchStore": {
            "post": _upload(
                "uploadToFileSearchStore",
                "Upload a file into a file search store (resumable); the answer is an Operation.",
                [store],
                _UPLOAD_START,
                "Operation",
            )
        },
    }


def _file_search_paths() -> dict[str, Schema]:
    v = "/{version}/fileSearchStores"
    store = _param("store", "path", {"type": "string"}, "my-store-abc123", "The id.")
    doc = _param("document", "path", {"type": "string"}, "doc123", "The id.")
    force = _param(
        "force", "query", {"type": "string"}, "True", "Also delete what it holds (true, True, 1)."
    )
    return {
        v: {
            "post": _op(
                "createFileSearchStore",
                "Create a file search store.",
                "fileSearchStores",
                _answer("FileSearchStore", "The new store."),
                parameters=[VERSION],
                body=_body("CreateFileSearchStoreRequest"),
                errors=_WITH_BODY,
            ),
            "get": _op(
                "listFileSearchStores",
                "List the caller's stores.",
                "fileSearchStores",
                _answer("ListFileSearchStoresResponse", "A page (`{}` when there are none)."),
                parameters=[VERSION, *PAGE],
            ),
        },
        f"{v}/{{store}}": {
            "get": _op(
                "getFileSearchStore",
                "Get a store.",
                "fileSearchStores",
                _answer("FileSearchStore", "The store."),
                parameters=[VERSION, store],
            ),
            "delete": _op(
                "deleteFileSearchStore",
                "Delete a store; one holding documents needs `force` (else 400"
                " FAILED_PRECONDITION).",
                "fileSearchStores",
                _answer("Empty", "Deleted."),
                parameters=[VERSION, store, force],
            ),
        },
        f"{v}/{{store}}:importFile": {
            "post": _op(
                "importFile",
                "Import a file (`fileName`, or a `gcsUri`/`uri` where allowed) into a store.",
                "fileSearchStores",
                _answer("Operation", "The import's operation."),
                parameters=[VERSION, store, REQUEST_ID],
                body=_body(_IMPORT),
                errors=_WITH_BODY,
            )
        },
        f"{v}/{{store}}:query": {
            "post": _op(
                "queryFileSearchStore",
                "Full-text search of a store's chunks.",
                "fileSearchStores",
                _answer("QueryFileSearchStoreResponse", "The best chunks, best first."),
                parameters=[VERSION, store],
                body=_body("QueryFileSearchStoreRequest", required=True),
                errors=_WITH_BODY,
            )
        },
        f"{v}/{{store}}/documents": {
            "get": _op(
                "listDocuments",
                "List a store's documents.",
                "fileSearchStores",
                _answer("ListDocumentsResponse", "A page (`{}` when there are none)."),
                parameters=[VERSION, store, *PAGE],
            )
        },
        f"{v}/{{store}}/documents/{{document}}": {
            "get": _op(
                "getDocument",
                "Get a document.",
                "fileSearchStores",
                _answer("Document", "The document."),
                parameters=[VERSION, store, doc],
            ),
            "delete": _op(
                "deleteDocument",
                "Delete a document; one holding chunks needs `force`.",
                "fileSearchStores",
                _answer("Empty", "Deleted."),
                parameters=[VERSION, store, doc, force],
            ),
        },
    }


_PREDICT = "PredictLongRunningRequest"
_IMPORT = "ImportFileRequest"
_UPLOAD_START = "UploadToFileSearchStoreStart"
_ROUTE_FILLED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    _PREDICT: ("generate_videos", "Google's predictLongRunning request.", ("api", "model")),
    _IMPORT: ("import_file", "importFile's request.", ("store", "blobKey")),
    _UPLOAD_START: (
        "upload_to_file_search_store",
        "The start of uploadToFileSearchStore: the document's settings.",
        ("store", "blobKey", "fileName", "gcsUri", "uri"),
    ),
}
"""Bodies of the routes that create a built-in kind's operation: that kind's request,
less the fields the route fills in (from the path, or the upload). Without the kind
(video generation off), any object (the route answers 404)."""


def _error_responses() -> dict[str, Schema]:
    reasons = {
        400: "INVALID_ARGUMENT naming the field (or FAILED_PRECONDITION, or an unknown API"
        " key: API_KEY_INVALID).",
        401: "UNAUTHENTICATED: a bearer token that is no key.",
        403: "PERMISSION_DENIED: no API key.",
        404: "NOT_FOUND: no such resource for this caller, or no such path.",
        405: "The path names another method's route.",
        409: "ALREADY_EXISTS (a requestId used for another request, a file name taken),"
        " or ABORTED (an upload being finalized).",
        413: "The body is over the server's limit.",
        416: "OUT_OF_RANGE: a Range outside the file.",
        503: "UNAVAILABLE: the database is busy or gone; retry (Retry-After).",
    }
    return {
        f"Error{code}": {
            "description": reason,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        for code, reason in reasons.items()
    }


def _service_paths() -> dict[str, Schema]:
    return {
        "/healthz": {
            "get": _op(
                "healthz",
                "Liveness: answers while the process serves.",
                "service",
                _answer("Health", "Serving."),
                errors=(),
                security=_OPEN,
            )
        },
        "/openapi.json": {
            "get": _op(
                "openapi",
                "This document (no API key: it holds no tenant data).",
                "service",
                {
                    "description": "The OpenAPI 3.1 document of this server.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                errors=(),
                security=_OPEN,
            )
        },
    }


def build_document(registry: Registry, server_url: str | None = None) -> Schema:
    """The OpenAPI document of a server running the kinds of `registry`."""
    paths, kind_components = _kind_paths(registry)
    schemas = {**_envelope_schemas(), **_webhook_schemas(), **kind_components}
    for name, (kind_name, description, filled) in _ROUTE_FILLED.items():
        kind = registry.get(kind_name)
        request = schemas.get(f"{_component_prefix(kind)}Request") if kind else None
        body = _without(request, *filled) if request else {"type": "object"}
        schemas[name] = {**with_webhook(body), "title": name, "description": description}
    document: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "longops",
            "version": __version__,
            "summary": "Long-running operations, wire-compatible with Gemini and Vertex AI.",
            "description": "Every route is served under /v1, /v1beta, /v1beta1 and /v1alpha."
            " Errors are Google's envelope. Send the API key as `x-goog-api-key`,"
            " `?key=` or a bearer token.",
        },
        "paths": {
            **_service_paths(),
            **_operation_paths("/{version}", [VERSION], ""),
            **_operation_paths("/{version}/{parent}", [VERSION, PARENT], "Of"),
            **_model_paths(),
            **paths,
            **_file_paths(),
            **_upload_paths(),
            **_file_search_paths(),
            **_webhook_paths(),
            **_metrics_paths(),
        },
        "components": {
            "schemas": schemas,
            "responses": _error_responses(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "metricsToken": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": _KEYED,
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def openapi_route(engine: Engine) -> Route:
    """`GET /openapi.json`, built once per registry and public URL (kinds are loaded
    before the server starts, but a test may load more)."""
    built: dict[tuple[str, ...], bytes] = {}

    async def openapi(request: Request) -> Response:
        key = (engine.config.public_url, *engine.registry.names())
        body = built.get(key)
        if body is None:
            built.clear()
            document = build_document(engine.registry, engine.config.public_url or None)
            body = built[key] = orjson.dumps(document)
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])


# -- webhooks (snake_case, as the official SDK's client.webhooks speaks) ----------------


def _webhook_schemas() -> dict[str, Schema]:
    events = {"type": "string", "enum": sorted(EVENTS)}
    event_list = {"type": "array", "items": events, "minItems": 1, "maxItems": 32}
    uri = _string("An http(s) URL.", minLength=1, maxLength=2048)
    secret = _object({"truncated_secret": {"type": "string"}, "expire_time": _TIME})
    webhook = _object(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "uri": {"type": "string"},
            "subscribed_events": {"type": "array", "items": {"type": "string"}},
            "state": {
                "type": "string",
                "enum": ["enabled", "disabled", "disabled_due_to_failed_deliveries"],
            },
            "create_time": _TIME,
            "update_time": _TIME,
            "signing_secrets": {"type": "array", "items": secret},
            "new_signing_secret": _string("On create only: the `whsec_` secret, shown once."),
        },
        ("id", "uri", "subscribed_events", "state"),
    )
    attempt = _object(
        {
            "attempt_time": _TIME,
            "latency": _string("A Duration, e.g. `0.012s`."),
            "status_code": {"type": "integer"},
            "error": {"type": "string"},
            "next_attempt_time": _TIME,
        },
        ("attempt_time",),
    )
    delivery = _object(
        {
            "name": _string("`webhooks/{id}/deliveries/{d}`, or `webhookDeliveries/{d}`."),
            "id": _string("The `webhook-id` header, the same on every attempt."),
            "webhook_id": {"type": "string"},
            "uri": {"type": "string"},
            "event_type": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempt_count": {"type": "integer"},
            "create_time": _TIME,
            "next_attempt_time": _TIME,
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
        "ListWebhooksResponse": _object(
            {
                "webhooks": {"type": "array", "items": ref("Webhook")},
                "next_page_token": {"type": "string"},
            },
            ("webhooks",),
        ),
        "CreateWebhookRequest": _object(
            {"uri": uri, "subscribed_events": event_list, "name": _string(maxLength=512)},
            ("uri", "subscribed_events"),
            description="camelCase spellings (`subscribedEvents`) are accepted too.",
        ),
        "UpdateWebhookRequest": _object(
            {
                "uri": uri,
                "subscribed_events": event_list,
                "name": _string(maxLength=512),
                "state": {"type": "string", "enum": ["enabled", "disabled"]},
            }
        ),
        "RotateSigningSecretRequest": _object(
            {"revocation_behavior": {"type": "string", "enum": sorted(REVOCATIONS)}}
        ),
        "RotateSigningSecretResponse": _object({"secret": {"type": "string"}}, ("secret",)),
        "WebhookDelivery": delivery,
        "ListWebhookDeliveriesResponse": _object(
            {
                "deliveries": {"type": "array", "items": ref("WebhookDelivery")},
                "next_page_token": {"type": "string"},
            },
            ("deliveries",),
        ),
        "RedeliverRequest": _object(
            {"start_time": _TIME, "end_time": _string("Now when left out.", format="date-time")},
            ("start_time",),
        ),
        "RedeliverResponse": _object(
            {"redelivered_count": {"type": "integer"}}, ("redelivered_count",)
        ),
        "JsonWebKeySet": _object(
            {"keys": {"type": "array", "items": {"type": "object"}}},
            ("keys",),
            description="The public keys (RS256) that sign per-request deliveries.",
        ),
    }


def _webhook_paths() -> dict[str, Schema]:
    v = "/{version}/webhooks"
    d = "/{version}/webhookDeliveries"
    hook_id = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
    webhook = _param("webhook", "path", hook_id, "wh_abc123")
    delivery = _param("delivery", "path", hook_id, "msg_abc123")
    page = [
        _param("page_size", "query", {"type": "integer", "minimum": 0}, 10, "0 is 50."),
        _param("page_token", "query", {"type": "string"}, "", "From the previous page."),
    ]
    operation = _param(
        "operation", "query", _string(maxLength=1024), "operations/abc123", "One operation's."
    )
    tag = "webhooks"

    def deliveries(operation_id: str, params: list[Schema]) -> Schema:
        return {
            "get": _op(
                operation_id,
                "The delivery log, newest first.",
                tag,
                _answer("ListWebhookDeliveriesResponse", "A page of deliveries."),
                parameters=[VERSION, *params, operation, *page],
            )
        }

    def one_delivery(suffix: str, params: list[Schema]) -> dict[str, Schema]:
        return {
            "get": _op(
                f"getWebhookDelivery{suffix}",
                "One delivery, with its attempts.",
                tag,
                _answer("WebhookDelivery", "The delivery."),
                parameters=[VERSION, *params, delivery],
            )
        }

    def redeliver(suffix: str, params: list[Schema]) -> Schema:
        return {
            "post": _op(
                f"redeliverWebhookDelivery{suffix}",
                "Send a delivery again: the same `webhook-id`, a fresh signature.",
                tag,
                _answer("WebhookDelivery", "The delivery, pending again."),
                parameters=[VERSION, *params, delivery],
                body=_body("Empty"),
                errors=_WITH_BODY,
            )
        }

    def redeliver_range(suffix: str, params: list[Schema]) -> Schema:
        return {
            "post": _op(
                f"redeliverWebhookDeliveries{suffix}",
                "Send again every delivery created from `start_time` to `end_time`.",
                tag,
                _answer("RedeliverResponse", "How many."),
                parameters=[VERSION, *params],
                body=_body("RedeliverRequest", required=True),
                errors=_WITH_BODY,
            )
        }

    return {
        "/.well-known/jwks.json": {
            "get": _op(
                "jwks",
                "The public keys of per-request webhook signatures (no key needed).",
                tag,
                _answer("JsonWebKeySet", "The key set."),
                errors=(503,),
                security=_OPEN,
            )
        },
        v: {
            "post": _op(
                "createWebhook",
                "Register a webhook; the answer carries its signing secret, once.",
                tag,
                _answer("Webhook", "The webhook, with `new_signing_secret`."),
                parameters=[VERSION],
                body=_body("CreateWebhookRequest", required=True),
                errors=_WITH_BODY,
            ),
            "get": _op(
                "listWebhooks",
                "The caller's webhooks.",
                tag,
                _answer("ListWebhooksResponse", "A page of webhooks."),
                parameters=[VERSION, *page],
            ),
        },
        f"{v}/{{webhook}}": {
            "get": _op(
                "getWebhook",
                "One webhook.",
                tag,
                _answer("Webhook", "The webhook."),
                parameters=[VERSION, webhook],
            ),
            "patch": _op(
                "updateWebhook",
                "Change the fields `update_mask` names (or, without one, those sent).",
                tag,
                _answer("Webhook", "The webhook as it is now."),
                parameters=[
                    VERSION,
                    webhook,
                    _param(
                        "update_mask",
                        "query",
                        {"type": "string"},
                        "state",
                        "Comma-separated: name, state, subscribed_events, uri.",
                    ),
                ],
                body=_body("UpdateWebhookRequest"),
                errors=_WITH_BODY,
            ),
            "delete": _op(
                "deleteWebhook",
                "Delete a webhook.",
                tag,
                _answer("Empty", "Deleted."),
                parameters=[VERSION, webhook],
            ),
        },
        f"{v}/{{webhook}}:ping": {
            "post": _op(
                "pingWebhook",
                "Send the webhook a `webhook.ping` event.",
                tag,
                _answer("Empty", "Queued."),
                parameters=[VERSION, webhook],
                body=_body("Empty"),
                errors=_WITH_BODY,
            )
        },
        f"{v}/{{webhook}}:rotateSigningSecret": {
            "post": _op(
                "rotateWebhookSigningSecret",
                "A new signing secret; the old ones sign on for 24 h unless revoked now.",
                tag,
                _answer("RotateSigningSecretResponse", "The new secret."),
                parameters=[VERSION, webhook],
                body=_body("RotateSigningSecretRequest"),
                errors=_WITH_BODY,
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


def _metrics_paths() -> dict[str, Schema]:
    return {
        "/metrics": {
            "get": _op(
                "metrics",
                "This process's Prometheus metrics; with LONGOPS_METRICS_TOKEN set, that"
                " token as a bearer token (the API keys are not asked for).",
                "service",
                {
                    "description": "The Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                errors=(401,),
                security=[{}, {"metricsToken": []}],
            )
        }
    }

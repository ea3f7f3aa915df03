"""Google's shapes as JSON Schema components: Operation, Status, the error envelope,
File, file search stores and documents, kinds and models."""

from __future__ import annotations

from longops.engine.engine import WAITING_CAP
from longops.rpc import Code
from longops.server.openapi.parts import INT64, TIME, URL, Schema, listing, obj, ref, string

_OPERATORS = ["EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL"]


def google_schemas() -> dict[str, Schema]:
    """Google's shapes, as the official SDKs read them."""
    any_message = obj(
        {"@type": string("The type URL of the message.")},
        description="A google.protobuf.Any: `@type` and the message's fields.",
    )
    status = obj(
        {
            "code": {"type": "integer", "description": "A google.rpc.Code."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": ref("Any")},
        },
        ("code", "message"),
        description="google.rpc.Status: why an operation failed.",
    )
    error = obj(
        {
            "error": obj(
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
    metadata = obj(
        {
            "@type": {"type": "string"},
            "kind": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
            },
            "progressPercent": {"type": "number"},
            "attempt": {"type": "integer"},
            "priority": {"type": "integer"},
            "scheduleTime": TIME,
            "concurrencyKey": string("The create's concurrencyKey, when it sent one."),
            "waitReason": {
                "type": "string",
                "enum": ["queued", "scheduled", "concurrency_limited", "rate_limited"],
                "description": "Why a PENDING operation has not started (on a read of the"
                " one operation): behind others, before its scheduleTime, or held by its"
                " kind's or key's concurrency or rate limit.",
            },
            "queuePosition": {
                "type": "integer",
                "minimum": 0,
                "maximum": WAITING_CAP,
                "description": "How many pending operations of its kind are claimed before"
                f" it (on a read of the one operation), counted to {WAITING_CAP}: at least"
                " that many when it says so.",
            },
            "createTime": TIME,
            "updateTime": TIME,
            "startTime": TIME,
            "endTime": TIME,
        },
        description="longops's operation metadata; a kind's own fields beside these.",
    )
    operation = obj(
        {
            "name": string("e.g. `operations/abc` or `models/veo/operations/abc`."),
            "metadata": ref("OperationMetadata"),
            "done": {"type": "boolean"},
            "error": ref("Status"),
            "response": ref("Any"),
        },
        ("name",),
        description="google.longrunning.Operation; `error` and `response` never together.",
        **{"not": {"required": ["error", "response"]}},
    )
    file = obj(
        {
            "name": string(pattern="^files/[a-z0-9-]+$"),
            "displayName": {"type": "string"},
            "mimeType": {"type": "string"},
            "sizeBytes": INT64,
            "createTime": TIME,
            "updateTime": TIME,
            "expirationTime": TIME,
            "sha256Hash": string("Base64 of the SHA-256 of the bytes."),
            "uri": {"type": "string"},
            "downloadUri": {"type": "string"},
            "state": {"type": "string", "enum": ["STATE_UNSPECIFIED", "PROCESSING", "ACTIVE"]},
            "source": {"type": "string", "enum": ["UPLOADED", "GENERATED", "REGISTERED"]},
        },
        ("name", "mimeType", "sizeBytes", "state"),
    )
    metadata_entry = obj(
        {
            "key": {"type": "string"},
            "stringValue": {"type": "string"},
            "numericValue": {"type": "number"},
            "stringListValue": obj({"values": {"type": "array", "items": {"type": "string"}}}),
        },
        ("key",),
    )
    search_store = obj(
        {
            "name": string(pattern="^fileSearchStores/[a-z0-9-]+$"),
            "displayName": {"type": "string"},
            "embeddingModel": {"type": "string"},
            "createTime": TIME,
            "updateTime": TIME,
            "activeDocumentsCount": INT64,
            "pendingDocumentsCount": INT64,
            "failedDocumentsCount": INT64,
            "sizeBytes": INT64,
        },
        ("name",),
    )
    document = obj(
        {
            "name": string(pattern="^fileSearchStores/[a-z0-9-]+/documents/[a-z0-9-]+$"),
            "displayName": {"type": "string"},
            "customMetadata": {"type": "array", "items": ref("CustomMetadata")},
            "state": {"type": "string", "enum": ["STATE_PENDING", "STATE_ACTIVE", "STATE_FAILED"]},
            "sizeBytes": INT64,
            "mimeType": {"type": "string"},
            "createTime": TIME,
            "updateTime": TIME,
        },
        ("name", "state"),
    )
    chunk = obj(
        {
            "chunkRelevanceScore": {"type": "number"},
            "chunk": obj(
                {
                    "name": {"type": "string"},
                    "data": obj({"stringValue": {"type": "string"}}),
                    "customMetadata": {"type": "array", "items": ref("CustomMetadata")},
                }
            ),
            "document": ref("Document"),
        }
    )
    kind = obj(
        {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "responseType": {"type": "string"},
            "metadataType": {"type": "string"},
            "requestSchema": {"type": "object", "description": "The request's JSON schema."},
        },
        ("name",),
    )
    model = obj(
        {
            "name": string(pattern="^models/"),
            "baseModelId": {"type": "string"},
            "displayName": {"type": "string"},
            "supportedGenerationMethods": {"type": "array", "items": {"type": "string"}},
            "videoGeneration": {"type": "object"},
        },
        ("name",),
    )
    duration = {
        "oneOf": [
            string(
                "A google.protobuf.Duration, e.g. `3.5s`.",
                pattern=r"^\s*(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*s?\s*$",
            ),
            {"type": "number", "minimum": 0},
        ]
    }
    return {
        "Any": any_message,
        "Status": status,
        "Error": error,
        "OperationMetadata": metadata,
        "Operation": operation,
        "ListOperationsResponse": listing("Operation", "operations"),
        "Empty": obj({}, description="An empty message: `{}`."),
        "WaitOperationRequest": obj({"timeout": duration}),
        "FetchPredictOperationRequest": obj(
            {"operationName": {"type": "string", "minLength": 1}}, ("operationName",)
        ),
        "File": file,
        "ListFilesResponse": listing("File", "files"),
        "UploadFileStart": obj(
            {
                "file": obj(
                    {
                        "name": string("Optional: `files/` and up to 40 of [a-z0-9-]."),
                        "displayName": {"type": "string"},
                        "mimeType": {"type": "string"},
                        "sizeBytes": {"type": ["integer", "string"]},
                    },
                    description="snake_case spellings (`display_name`, …) are accepted too.",
                )
            }
        ),
        "UploadFileResponse": obj({"file": ref("File")}, ("file",)),
        "CustomMetadata": metadata_entry,
        "FileSearchStore": search_store,
        "ListFileSearchStoresResponse": listing("FileSearchStore", "fileSearchStores"),
        "CreateFileSearchStoreRequest": obj(
            {"displayName": string(maxLength=512), "embeddingModel": {"type": "string"}}
        ),
        "Document": document,
        "ListDocumentsResponse": listing("Document", "documents"),
        "QueryFileSearchStoreRequest": obj(
            {
                "query": string(minLength=1),
                "resultsCount": {"type": "integer", "minimum": 1, "maximum": 100},
                "metadataFilters": {
                    "type": "array",
                    "items": obj(
                        {
                            "key": {"type": "string"},
                            "conditions": {
                                "type": "array",
                                "minItems": 1,
                                "items": obj(
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
        "QueryFileSearchStoreResponse": obj(
            {"relevantChunks": {"type": "array", "items": chunk}}, ("relevantChunks",)
        ),
        "Kind": kind,
        "ListKindsResponse": obj({"kinds": {"type": "array", "items": ref("Kind")}}),
        "Model": model,
        "ListModelsResponse": obj({"models": {"type": "array", "items": ref("Model")}}),
        "WebhookConfig": obj(
            {
                "uris": {
                    "type": "array",
                    "maxItems": 10,
                    "items": URL,
                    "description": "These get the operation's events instead of the"
                    " tenant's webhooks.",
                },
                "userMetadata": {"type": "object", "description": "Up to 16 KiB of JSON."},
            },
            additionalProperties=False,
            description="Where this operation's events go (`user_metadata` is accepted too).",
        ),
        "Health": obj({"status": {"type": "string", "enum": ["ok"]}}, ("status",)),
    }

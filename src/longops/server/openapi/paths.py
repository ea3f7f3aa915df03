"""The paths of operations, models, files, uploads and file search stores."""

from __future__ import annotations

from longops.server.openapi.kinds import IMPORT, PREDICT, UPLOAD_START
from longops.server.openapi.parts import (
    ERRORS,
    FILTER,
    KEYED,
    LAST_EVENT_ID,
    OPERATION_ID,
    PAGE,
    REQUEST_ID,
    STREAM,
    VERSION,
    WITH_BODY,
    Schema,
    op,
    parameter,
    ref,
    reply,
    request_body,
)


def operation_paths(prefix: str, params: list[Schema], tag_id: str) -> dict[str, Schema]:
    """get, delete, cancel and wait of one operation, and the list of a collection:
    under `prefix` (`/{version}` or `/{version}/{parent}`)."""
    one = f"{prefix}/operations/{{operationId}}"
    with_id = [*params, OPERATION_ID]
    return {
        f"{prefix}/operations": {
            "get": op(
                f"listOperations{tag_id}",
                "List operations, newest first.",
                "operations",
                reply("ListOperationsResponse", "A page of operations."),
                parameters=[*params, FILTER, *PAGE],
            )
        },
        one: {
            "get": op(
                f"getOperation{tag_id}",
                "Get an operation (the short `operations/{id}` or its full name).",
                "operations",
                reply("Operation", "The operation."),
                parameters=with_id,
            ),
            "delete": op(
                f"deleteOperation{tag_id}",
                "Delete an operation.",
                "operations",
                reply("Empty", "Deleted."),
                parameters=with_id,
            ),
        },
        f"{prefix}/operations:watch": {
            "get": op(
                f"watchOperations{tag_id}",
                "Server-sent events: each change of the operations the filter matches,"
                " from now on (or since `Last-Event-ID`); it never ends by itself.",
                "operations",
                STREAM,
                parameters=[*params, FILTER, LAST_EVENT_ID],
            )
        },
        f"{one}:watch": {
            "get": op(
                f"watchOperation{tag_id}",
                "Server-sent events: the operation at once, then each change of it; the"
                " stream ends after the event that shows it done.",
                "operations",
                STREAM,
                parameters=[*with_id, LAST_EVENT_ID],
            )
        },
        f"{one}:cancel": {
            "post": op(
                f"cancelOperation{tag_id}",
                "Ask for an operation to be cancelled.",
                "operations",
                reply("Empty", "Cancellation requested."),
                parameters=with_id,
                body=request_body("Empty"),
                errors=WITH_BODY,
            )
        },
        f"{one}:wait": {
            "post": op(
                f"waitOperation{tag_id}",
                "Wait until the operation is done or the timeout passes (capped by the server).",
                "operations",
                reply("Operation", "The operation, done or as it is at the timeout."),
                parameters=[
                    *with_id,
                    parameter(
                        "timeout", "query", {"type": "string"}, "2s", "When the body has none."
                    ),
                ],
                body=request_body("WaitOperationRequest"),
                errors=WITH_BODY,
            )
        },
    }


def model_paths() -> dict[str, Schema]:
    model = parameter(
        "model", "path", {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9._-]*$"}, "veo-3"
    )
    segment = {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_-]*$"}
    predict = request_body(PREDICT, required=True)
    predict["description"] = "Google's predictLongRunning request: `instances`, `parameters`."
    created = reply("Operation", "The new operation (or the first one of its requestId).")

    def vertex(operation_id: str, params: list[Schema]) -> Schema:
        return op(
            operation_id,
            "Vertex: generate videos.",
            "models",
            created,
            parameters=[VERSION, *params, model, REQUEST_ID],
            body=predict,
            errors=WITH_BODY,
        )

    return {
        "/{version}/models": {
            "get": op(
                "listModels",
                "The video models served.",
                "models",
                reply("ListModelsResponse", "The catalogue."),
                parameters=[VERSION],
            )
        },
        "/{version}/models/{model}": {
            "get": op(
                "getModel",
                "One video model.",
                "models",
                reply("Model", "The model."),
                parameters=[VERSION, model],
            )
        },
        "/{version}/models/{model}:predictLongRunning": {
            "post": op(
                "predictLongRunning",
                "Gemini: generate videos; the operation is `models/{model}/operations/{id}`.",
                "models",
                created,
                parameters=[VERSION, model, REQUEST_ID],
                body=predict,
                errors=WITH_BODY,
            )
        },
        "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}"
        ":predictLongRunning": {
            "post": vertex(
                "predictLongRunningVertex",
                [
                    parameter("project", "path", segment, "my-project"),
                    parameter("location", "path", segment, "us-central1"),
                ],
            )
        },
        "/{version}/publishers/google/models/{model}:predictLongRunning": {
            "post": vertex("predictLongRunningExpress", [])
        },
        "/{version}/{resource}:fetchPredictOperation": {
            "post": op(
                "fetchPredictOperation",
                "Vertex: poll a video operation by a POST on its model resource.",
                "operations",
                reply("Operation", "The operation."),
                parameters=[
                    VERSION,
                    parameter(
                        "resource",
                        "path",
                        {"type": "string"},
                        "publishers/google/models/veo-3",
                        "The model resource; may hold `/`.",
                    ),
                ],
                body=request_body("FetchPredictOperationRequest", required=True),
                errors=WITH_BODY,
            )
        },
    }


def file_paths() -> dict[str, Schema]:
    file = parameter("file", "path", {"type": "string"}, "abc123", "The id, without `files/`.")
    raw = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "/{version}/files": {
            "get": op(
                "listFiles",
                "List the caller's files.",
                "files",
                reply("ListFilesResponse", "A page of files (`{}` when there are none)."),
                parameters=[VERSION, *PAGE],
            )
        },
        "/{version}/files/{file}": {
            "get": op(
                "getFile",
                "Get a file.",
                "files",
                reply("File", "The file."),
                parameters=[VERSION, file],
            ),
            "delete": op(
                "deleteFile",
                "Delete a file.",
                "files",
                reply("Empty", "Deleted."),
                parameters=[VERSION, file],
            ),
        },
        "/{version}/files/{file}:download": {
            "get": op(
                "downloadFile",
                "A file's bytes; `Range: bytes=…` asks for a part of them.",
                "files",
                {"description": "The bytes, in the file's own media type.", "content": raw},
                parameters=[
                    VERSION,
                    file,
                    parameter("alt", "query", {"type": "string", "enum": ["media"]}, "media"),
                    parameter("Range", "header", {"type": "string"}, "bytes=0-99"),
                ],
                errors=(*ERRORS, 416),
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
    operation_id: str,
    summary: str,
    params: list[Schema],
    start: str,
    final: str,
    *,
    quota: bool = False,
) -> Schema:
    """Google's resumable protocol on one URL: a start (`x-goog-upload-command: start`,
    with the API key and a JSON body) answers `x-goog-upload-url`, the same path with an
    `upload_id`; the bytes then go there without a key (the id is the credential), in
    `upload` chunks, the last one `upload, finalize`, or `query` for the size received."""
    header = {"type": "string"}
    answer = reply(
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
        for code in (*WITH_BODY, 409, *((429,) if quota else ()))
    }
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": _upload.__doc__,
        "tags": ["uploads"],
        "parameters": [
            VERSION,
            *params,
            parameter(
                "x-goog-upload-protocol", "header", {"type": "string", "enum": ["resumable"]}, ""
            ),
            parameter(
                "x-goog-upload-command",
                "header",
                {"type": "string", "enum": ["start", "upload", "upload, finalize", "query"]},
                "start",
            ),
            parameter("x-goog-upload-header-content-length", "header", header, "48"),
            parameter("x-goog-upload-header-content-type", "header", header, "text/plain"),
            parameter("x-goog-upload-file-name", "header", header, "doc.txt"),
            parameter("x-goog-upload-offset", "header", header, "0", "Bytes sent before."),
            parameter("upload_id", "query", header, "", "From `x-goog-upload-url`."),
            parameter("upload_protocol", "query", {"type": "string", "enum": ["resumable"]}, ""),
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
        "security": [*KEYED, {}],
    }


def upload_paths() -> dict[str, Schema]:
    store = parameter("store", "path", {"type": "string"}, "my-store-abc123")
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
                UPLOAD_START,
                "Operation",
                quota=True,  # its start is refused when the tenant is at a quota
            )
        },
    }


def file_search_paths() -> dict[str, Schema]:
    v = "/{version}/fileSearchStores"
    store = parameter("store", "path", {"type": "string"}, "my-store-abc123", "The id.")
    doc = parameter("document", "path", {"type": "string"}, "doc123", "The id.")
    force = parameter(
        "force", "query", {"type": "string"}, "True", "Also delete what it holds (true, True, 1)."
    )
    return {
        v: {
            "post": op(
                "createFileSearchStore",
                "Create a file search store.",
                "fileSearchStores",
                reply("FileSearchStore", "The new store."),
                parameters=[VERSION],
                body=request_body("CreateFileSearchStoreRequest"),
                errors=WITH_BODY,
            ),
            "get": op(
                "listFileSearchStores",
                "List the caller's stores.",
                "fileSearchStores",
                reply("ListFileSearchStoresResponse", "A page (`{}` when there are none)."),
                parameters=[VERSION, *PAGE],
            ),
        },
        f"{v}/{{store}}": {
            "get": op(
                "getFileSearchStore",
                "Get a store.",
                "fileSearchStores",
                reply("FileSearchStore", "The store."),
                parameters=[VERSION, store],
            ),
            "delete": op(
                "deleteFileSearchStore",
                "Delete a store; one holding documents needs `force` (else 400"
                " FAILED_PRECONDITION).",
                "fileSearchStores",
                reply("Empty", "Deleted."),
                parameters=[VERSION, store, force],
            ),
        },
        f"{v}/{{store}}:importFile": {
            "post": op(
                "importFile",
                "Import a file (`fileName`, or a `gcsUri`/`uri` where allowed) into a store.",
                "fileSearchStores",
                reply("Operation", "The import's operation."),
                parameters=[VERSION, store, REQUEST_ID],
                body=request_body(IMPORT),
                errors=WITH_BODY,
            )
        },
        f"{v}/{{store}}:query": {
            "post": op(
                "queryFileSearchStore",
                "Full-text search of a store's chunks.",
                "fileSearchStores",
                reply("QueryFileSearchStoreResponse", "The best chunks, best first."),
                parameters=[VERSION, store],
                body=request_body("QueryFileSearchStoreRequest", required=True),
                errors=WITH_BODY,
            )
        },
        f"{v}/{{store}}/documents": {
            "get": op(
                "listDocuments",
                "List a store's documents.",
                "fileSearchStores",
                reply("ListDocumentsResponse", "A page (`{}` when there are none)."),
                parameters=[VERSION, store, *PAGE],
            )
        },
        f"{v}/{{store}}/documents/{{document}}": {
            "get": op(
                "getDocument",
                "Get a document.",
                "fileSearchStores",
                reply("Document", "The document."),
                parameters=[VERSION, store, doc],
            ),
            "delete": op(
                "deleteDocument",
                "Delete a document; one holding chunks needs `force`.",
                "fileSearchStores",
                reply("Empty", "Deleted."),
                parameters=[VERSION, store, doc, force],
            ),
        },
    }

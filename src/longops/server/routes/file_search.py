"""File search stores, their documents, imports and queries (Gemini's File Search API)."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from longops.engine import Engine
from longops.engine.ids import new_token_id
from longops.kinds.file_search.index import SearchIndex, TenantIndex
from longops.kinds.file_search.records import DocumentRecord, SearchStoreRecord
from longops.rpc import Code
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.errors import ErrorReply, invalid_argument, not_found
from longops.server.flow import flow
from longops.server.render import timestamp
from longops.server.requests import field, parse_bool, read_json, request_id
from longops.server.routes.base import Routes
from longops.server.routes.operations import OperationRoutes, json_response

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_WORDS = re.compile(r"\w+", re.UNICODE)
_OPERATORS = {
    "EQUAL": "=",
    "NOT_EQUAL": "!=",
    "LESS": "<",
    "LESS_EQUAL": "<=",
    "GREATER": ">",
    "GREATER_EQUAL": ">=",
}
_EMPTY = b"{}"
MAX_QUERY_TERMS = 256
"""Distinct words a query may hold: each is one branch of the full-text match, and
PostgreSQL runs out of stack for a few thousand of them."""


def render_search_store(search_store: SearchStoreRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"fileSearchStores/{search_store.id}",
        "createTime": timestamp(search_store.create_time),
        "updateTime": timestamp(search_store.update_time),
        "activeDocumentsCount": str(search_store.active_documents),
        "pendingDocumentsCount": str(search_store.pending_documents),
        "failedDocumentsCount": str(search_store.failed_documents),
        "sizeBytes": str(search_store.size_bytes),
    }
    if search_store.display_name:
        body["displayName"] = search_store.display_name
    if search_store.embedding_model:
        body["embeddingModel"] = search_store.embedding_model
    return body


def render_document(document: DocumentRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"fileSearchStores/{document.store_id}/documents/{document.id}",
        "customMetadata": document.custom_metadata,
        "state": f"STATE_{document.state}",
        "sizeBytes": str(document.size_bytes),
        "createTime": timestamp(document.create_time),
        "updateTime": timestamp(document.update_time),
    }
    if document.display_name:
        body["displayName"] = document.display_name
    if document.mime_type:
        body["mimeType"] = document.mime_type
    return body


def slug(display_name: str | None) -> str:
    """Google derives store ids from the display name plus a random suffix."""
    words = re.findall(r"[a-z0-9]+", (display_name or "").lower())
    stem = "-".join(words)[:40].strip("-")
    suffix = new_token_id(12)
    return f"{stem}-{suffix}" if stem else suffix


def _condition_value(condition: dict[str, Any]) -> str | float | None:
    """A condition's string or finite number; None for anything else, which the query
    would otherwise hand the database to choke on."""
    text = field(condition, "stringValue")
    if text is not None:
        return text if isinstance(text, str) and "\x00" not in text else None
    number = field(condition, "numericValue")
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    try:
        number = float(number)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class FileSearchRoutes(Routes):
    def __init__(
        self,
        engine: Engine,
        auth: Authenticator,
        config: ServerConfig,
        operations: OperationRoutes,
    ) -> None:
        super().__init__(engine, auth, config)
        self.operations = operations

    def routes(self) -> list[BaseRoute]:
        v = "/{version:apiver}/fileSearchStores"
        return [
            Route(v, self.create, methods=["POST"]),
            Route(v, self.list_search_stores, methods=["GET"]),
            Route(f"{v}/{{store:str}}:importFile", self.import_file, methods=["POST"]),
            Route(f"{v}/{{store:str}}:query", self.query, methods=["POST"]),
            Route(f"{v}/{{store:str}}/documents", self.list_documents, methods=["GET"]),
            Route(f"{v}/{{store:str}}/documents/{{doc:str}}", self.get_document, methods=["GET"]),
            Route(
                f"{v}/{{store:str}}/documents/{{doc:str}}", self.delete_document, methods=["DELETE"]
            ),
            Route(f"{v}/{{store:str}}", self.get_search_store, methods=["GET"]),
            Route(f"{v}/{{store:str}}", self.delete_search_store, methods=["DELETE"]),
        ]

    def index(self, request: Request) -> TenantIndex:
        """The caller's stores: the one way these routes reach the index."""
        return SearchIndex.of(self.engine.store.database).tenant(self.auth.tenant(request))

    async def find_search_store(self, request: Request, id: str) -> SearchStoreRecord:
        search_store = await self.index(request).get_search_store(id) if _ID.match(id) else None
        if search_store is None:
            raise not_found(f"fileSearchStores/{id} not found.")
        return search_store

    async def _document(self, request: Request) -> DocumentRecord:
        search_store = await self.find_search_store(request, request.path_params["store"])
        doc_id: str = request.path_params["doc"]
        found = _ID.match(doc_id) and await self.index(request).get_document(
            search_store.id, doc_id
        )
        if not found:
            raise not_found(f"fileSearchStores/{search_store.id}/documents/{doc_id} not found.")
        return found

    def _force(self, request: Request) -> bool:
        raw = request.query_params.get("force")
        return False if raw is None else parse_bool(raw, "force")

    # -- stores ------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        tenant = self.auth.tenant(request)
        body = await read_json(request, self.config.max_body_bytes)
        display = field(body, "displayName")
        if display is not None and (not isinstance(display, str) or len(display) > 512):
            raise invalid_argument("displayName must be a string of at most 512 characters.")
        model = field(body, "embeddingModel")
        now = time.time()
        search_store = await self.index(request).create_search_store(
            SearchStoreRecord(
                id=slug(display),
                tenant=tenant,
                display_name=display,
                embedding_model=model if isinstance(model, str) else None,
                create_time=now,
                update_time=now,
            )
        )
        return json_response(render_search_store(search_store))

    async def get_search_store(self, request: Request) -> Response:
        return json_response(
            render_search_store(await self.find_search_store(request, request.path_params["store"]))
        )

    async def list_search_stores(self, request: Request) -> Response:
        tenant = self.auth.tenant(request)
        scope = f"stores\x00{tenant}"
        size, before = self.page(request, scope)
        stores = await self.index(request).list_search_stores(before_seq=before, limit=size + 1)
        body: dict[str, Any] = {}
        if stores:
            body["fileSearchStores"] = [render_search_store(s) for s in stores[:size]]
        if token := self.next_page_token(stores, size, scope):
            body["nextPageToken"] = token
        return json_response(body)

    async def delete_search_store(self, request: Request) -> Response:
        search_store = await self.find_search_store(request, request.path_params["store"])
        if (
            await self.index(request).delete_search_store(
                search_store.id, force=self._force(request)
            )
            is False
        ):
            raise ErrorReply(
                400,
                f"fileSearchStores/{search_store.id} holds documents; delete with force=true.",
                status=Code.FAILED_PRECONDITION,
            )
        return Response(_EMPTY, media_type="application/json")

    # -- documents ---------------------------------------------------------------

    async def list_documents(self, request: Request) -> Response:
        search_store = await self.find_search_store(request, request.path_params["store"])
        scope = f"documents\x00{search_store.id}"
        size, before = self.page(request, scope)
        documents = await self.index(request).list_documents(
            search_store.id, before_seq=before, limit=size + 1
        )
        body: dict[str, Any] = {}
        if documents:
            body["documents"] = [render_document(d) for d in documents[:size]]
        if token := self.next_page_token(documents, size, scope):
            body["nextPageToken"] = token
        return json_response(body)

    async def get_document(self, request: Request) -> Response:
        return json_response(render_document(await self._document(request)))

    async def delete_document(self, request: Request) -> Response:
        document = await self._document(request)
        if (
            await self.index(request).delete_document(
                document.store_id, document.id, force=self._force(request)
            )
            is False
        ):
            raise ErrorReply(
                400,
                "The document holds chunks; delete with force=true.",
                status=Code.FAILED_PRECONDITION,
            )
        return Response(_EMPTY, media_type="application/json")

    # -- import and query ----------------------------------------------------------

    async def import_file(self, request: Request) -> Response:
        search_store = await self.find_search_store(request, request.path_params["store"])
        body = await read_json(request, self.config.max_body_bytes)
        if "fileName" in body and not body["fileName"]:
            raise invalid_argument("fileName must not be empty.", field="fileName")
        flow_control = flow(body, time.time())
        body["store"] = search_store.id
        record = await self.engine.create(
            "import_file",
            body,
            tenant=search_store.tenant,
            request_id=request_id(request),
            parent=f"fileSearchStores/{search_store.id}",
            webhook=flow_control.webhook,
            priority=flow_control.priority,
            not_before=flow_control.not_before,
            concurrency_key=flow_control.concurrency_key,
        )
        return self.operations.render(record)

    async def query(self, request: Request) -> Response:
        search_store = await self.find_search_store(request, request.path_params["store"])
        body = await read_json(request, self.config.max_body_bytes)
        text = field(body, "query")
        if not isinstance(text, str) or not text.strip():
            raise invalid_argument("query is required.", field="query")
        count = field(body, "resultsCount") or 10
        if not isinstance(count, int) or not 1 <= count <= 100:
            raise invalid_argument("resultsCount must be 1 to 100.", field="resultsCount")
        filters = self._filters(field(body, "metadataFilters") or [])
        terms = list(dict.fromkeys(_WORDS.findall(text.lower())))
        if len(terms) > MAX_QUERY_TERMS:
            raise invalid_argument(
                f"query holds {len(terms)} distinct words; at most {MAX_QUERY_TERMS} are allowed.",
                field="query",
            )
        hits = await self.index(request).query(search_store.id, terms, filters, count)
        chunks = [
            {
                "chunkRelevanceScore": round(hit.score, 6),
                "chunk": {
                    "name": f"{render_document(hit.document)['name']}/chunks/{hit.chunk_index}",
                    "data": {"stringValue": hit.text},
                    "customMetadata": hit.document.custom_metadata,
                },
                "document": render_document(hit.document),
            }
            for hit in hits
        ]
        return Response(orjson.dumps({"relevantChunks": chunks}), media_type="application/json")

    @staticmethod
    def _filters(raw: Any) -> list[tuple[str, str, Any]]:
        if not isinstance(raw, list):
            raise invalid_argument("metadataFilters must be a list.", field="metadataFilters")
        filters = []
        for item in raw:
            key = item.get("key") if isinstance(item, dict) else None
            conditions = field(item, "conditions") if isinstance(item, dict) else None
            if not isinstance(key, str) or not isinstance(conditions, list) or not conditions:
                raise invalid_argument(
                    "Each metadata filter needs a key and conditions.", field="metadataFilters"
                )
            for condition in conditions:
                if isinstance(condition, dict):
                    operator = _OPERATORS.get(str(condition.get("operation", "")).upper())
                    value = _condition_value(condition)
                else:
                    operator = value = None
                if operator is None or value is None:
                    raise invalid_argument(
                        "A condition needs an operation (EQUAL, LESS, …) and a value.",
                        field="metadataFilters.conditions",
                    )
                filters.append((key, operator, value))
        return filters

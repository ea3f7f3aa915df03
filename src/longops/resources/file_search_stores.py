"""File search stores: documents chunked and embedded for retrieval, and their documents.

Paths are always the Gemini ones (`fileSearchStores/...` under the client's API version),
in Vertex mode too. Importing a file and uploading into a store start long-running
operations; poll them with `client.operations`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import IO, Any

from longops._pagers import AsyncPager, Page, Pager
from longops._transport import AsyncTransport, SyncTransport
from longops.resources._base import (
    ApiContext,
    AsyncResource,
    SyncResource,
    options,
    resource_name,
)
from longops.resources.files import _file_name, _Source, asend_resumable, send_resumable
from longops.types import (
    CreateFileSearchStoreConfig,
    DeleteDocumentConfig,
    DeleteFileSearchStoreConfig,
    Document,
    FileSearchStore,
    GetDocumentConfig,
    GetFileSearchStoreConfig,
    ImportFileConfig,
    ImportFileOperation,
    ImportFileSource,
    ListDocumentsConfig,
    ListFileSearchStoresConfig,
    MetadataFilter,
    QueryResult,
    UploadToFileSearchStoreConfig,
    UploadToFileSearchStoreOperation,
)

__all__ = ["AsyncDocuments", "AsyncFileSearchStores", "Documents", "FileSearchStores"]

_PREFIX = "fileSearchStores/"

# ImportFileSource field → importFile body key.
_SOURCE_KEYS = {"gcs_uri": "gcsUri", "file_name": "fileName", "uri": "uri"}


def _store_name(name: str) -> str:
    """`fileSearchStores/{id}` for a full name or a bare id."""
    name = resource_name(name)
    return name if name.startswith(_PREFIX) else f"{_PREFIX}{name}"


# google-genai's config for a delete: a DeleteFileSearchStoreConfig or DeleteDocumentConfig,
# or the dict of one.
DeleteConfig = DeleteFileSearchStoreConfig | DeleteDocumentConfig | dict[str, Any] | object


def _force(
    force: bool, config: object, cls: type[DeleteFileSearchStoreConfig | DeleteDocumentConfig]
) -> dict[str, str | int]:
    """The delete's query: `force=True` (longops's spelling) or `config={"force": True}`."""
    return {"force": "true"} if force or options(config, cls).force else {}


def _list_options(
    page_size: int | None,
    config: object,
    cls: type[ListFileSearchStoresConfig | ListDocumentsConfig],
) -> tuple[int | None, str | None]:
    """The page size and first token, from longops's `page_size=` or google-genai's config."""
    chosen = options(config, cls)
    if page_size is not None and chosen.page_size is not None:
        raise ValueError("Pass page_size once: as `page_size` or in `config`.")
    return (page_size if page_size is not None else chosen.page_size), chosen.page_token


def _params(page_size: int | None, token: str | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {"pageSize": page_size} if page_size else {}
    if token:
        params["pageToken"] = token
    return params


def _store_page(data: dict[str, Any]) -> Page[FileSearchStore]:
    stores = [FileSearchStore.model_validate(s) for s in data.get("fileSearchStores") or []]
    return stores, data.get("nextPageToken")


def _document_page(data: dict[str, Any]) -> Page[Document]:
    documents = [Document.model_validate(d) for d in data.get("documents") or []]
    return documents, data.get("nextPageToken")


def _create_body(config: object) -> dict[str, Any]:
    return options(config, CreateFileSearchStoreConfig).model_dump(by_alias=True, exclude_none=True)


def _import_request(
    store: str | None,
    file_search_store_name: str | None,
    file_name: str | None,
    source: ImportFileSource | dict[str, Any] | None,
    config: object,
) -> tuple[str, dict[str, Any]]:
    """The path and body of `importFile`, from either the spec's or the official SDK's form."""
    if (
        store is not None
        and file_search_store_name is not None
        and _store_name(store) != _store_name(file_search_store_name)
    ):
        raise ValueError("Pass the store once: as `store` or as `file_search_store_name`.")
    name = store if store is not None else file_search_store_name
    if name is None:
        raise ValueError("import_file needs the store: `store` or `file_search_store_name`.")
    sources: dict[str, str] = {}
    if source is not None:
        chosen = ImportFileSource.model_validate(source)
        sources = {
            _SOURCE_KEYS[key]: value
            for key, value in chosen.model_dump(exclude_none=True).items()
            if value
        }
    if file_name:
        if "fileName" in sources:
            raise ValueError("Pass the file once: as `file_name` or in `source`.")
        sources["fileName"] = file_name
    if len(sources) != 1:
        raise ValueError(
            "import_file needs exactly one source: `file_name`, or an ImportFileSource with "
            "one of gcs_uri, file_name and uri."
        )
    if "fileName" in sources:
        sources["fileName"] = _file_name(sources["fileName"])
    settings = options(config, ImportFileConfig)
    body = {**sources, **settings.model_dump(by_alias=True, exclude_none=True)}
    return f"{_store_name(name)}:importFile", body


def _upload_body(source: _Source, config: UploadToFileSearchStoreConfig) -> dict[str, Any]:
    body = config.model_dump(by_alias=True, exclude_none=True)
    body["mimeType"] = source.mime_type
    if "displayName" not in body and source.path_name:
        body["displayName"] = source.path_name
    return body


def _query_request(
    name: str,
    query: str,
    results_count: int | None,
    metadata_filters: Sequence[MetadataFilter | dict[str, Any]] | None,
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"query": query}
    if results_count is not None:
        body["resultsCount"] = results_count
    if metadata_filters:
        body["metadataFilters"] = [
            MetadataFilter.model_validate(f).model_dump(by_alias=True, exclude_none=True)
            for f in metadata_filters
        ]
    return f"{_store_name(name)}:query", body


class Documents(SyncResource):
    """The documents of file search stores: `client.file_search_stores.documents`."""

    def list(
        self,
        *,
        parent: str,
        page_size: int | None = None,
        config: ListDocumentsConfig | dict[str, Any] | object | None = None,
    ) -> Pager[Document]:
        """The documents of the store `parent` (a full name or a bare id)."""
        path = f"{_store_name(parent)}/documents"
        size, first = _list_options(page_size, config, ListDocumentsConfig)

        def fetch(token: str | None) -> Page[Document]:
            return _document_page(self._transport.request("GET", path, params=_params(size, token)))

        return Pager(fetch, fetch(first))

    def get(
        self, *, name: str, config: GetDocumentConfig | dict[str, Any] | object | None = None
    ) -> Document:
        """`name` is the full `fileSearchStores/{s}/documents/{d}`."""
        options(config, GetDocumentConfig)
        return Document.model_validate(self._transport.request("GET", resource_name(name)))

    def delete(self, *, name: str, force: bool = False, config: DeleteConfig | None = None) -> None:
        """Delete a document; without `force` (or `config={"force": True}`), one that holds
        chunks is refused."""
        params = _force(force, config, DeleteDocumentConfig)
        self._transport.send("DELETE", resource_name(name), params=params)


class AsyncDocuments(AsyncResource):
    """The async twin of `Documents`: `client.aio.file_search_stores.documents`."""

    async def list(
        self,
        *,
        parent: str,
        page_size: int | None = None,
        config: ListDocumentsConfig | dict[str, Any] | object | None = None,
    ) -> AsyncPager[Document]:
        path = f"{_store_name(parent)}/documents"
        size, first = _list_options(page_size, config, ListDocumentsConfig)

        async def fetch(token: str | None) -> Page[Document]:
            return _document_page(
                await self._transport.request("GET", path, params=_params(size, token))
            )

        return AsyncPager(fetch, await fetch(first))

    async def get(
        self, *, name: str, config: GetDocumentConfig | dict[str, Any] | object | None = None
    ) -> Document:
        options(config, GetDocumentConfig)
        return Document.model_validate(await self._transport.request("GET", resource_name(name)))

    async def delete(
        self, *, name: str, force: bool = False, config: DeleteConfig | None = None
    ) -> None:
        params = _force(force, config, DeleteDocumentConfig)
        await self._transport.send("DELETE", resource_name(name), params=params)


class FileSearchStores(SyncResource):
    """File search stores; their documents are under `documents`."""

    documents: Documents

    def __init__(self, transport: SyncTransport, context: ApiContext) -> None:
        super().__init__(transport, context)
        self.documents = Documents(transport, context)

    def create(
        self, *, config: CreateFileSearchStoreConfig | dict[str, Any] | object | None = None
    ) -> FileSearchStore:
        data = self._transport.request("POST", "fileSearchStores", body=_create_body(config))
        return FileSearchStore.model_validate(data)

    def get(
        self, *, name: str, config: GetFileSearchStoreConfig | dict[str, Any] | object | None = None
    ) -> FileSearchStore:
        """`name` is `fileSearchStores/{id}` or the bare id."""
        options(config, GetFileSearchStoreConfig)
        return FileSearchStore.model_validate(self._transport.request("GET", _store_name(name)))

    def list(
        self,
        *,
        page_size: int | None = None,
        config: ListFileSearchStoresConfig | dict[str, Any] | object | None = None,
    ) -> Pager[FileSearchStore]:
        size, first = _list_options(page_size, config, ListFileSearchStoresConfig)

        def fetch(token: str | None) -> Page[FileSearchStore]:
            return _store_page(
                self._transport.request("GET", "fileSearchStores", params=_params(size, token))
            )

        return Pager(fetch, fetch(first))

    def delete(self, *, name: str, force: bool = False, config: DeleteConfig | None = None) -> None:
        """Delete a store; without `force` (or `config={"force": True}`), one that holds
        documents is refused."""
        params = _force(force, config, DeleteFileSearchStoreConfig)
        self._transport.send("DELETE", _store_name(name), params=params)

    def import_file(
        self,
        *,
        file_search_store_name: str | None = None,
        file_name: str | None = None,
        config: ImportFileConfig | dict[str, Any] | object | None = None,
        store: str | None = None,
        source: ImportFileSource | dict[str, Any] | None = None,
    ) -> ImportFileOperation:
        """Start importing one file into a store; poll the operation with `client.operations`.

        Takes the spec's form, `import_file(store=..., source=ImportFileSource(gcs_uri=...))`
        (or `file_name=`/`uri=` in the source), and the official SDK's,
        `import_file(file_search_store_name=..., file_name="files/x", config=...)`.
        """
        path, body = _import_request(store, file_search_store_name, file_name, source, config)
        data = self._transport.request(
            "POST", path, body=body, params={"requestId": str(uuid.uuid4())}, idempotent=True
        )
        return self._context.parse_operation(data, ImportFileOperation)

    def upload_to_file_search_store(
        self,
        *,
        file_search_store_name: str,
        file: str | os.PathLike[str] | bytes | IO[bytes],
        config: UploadToFileSearchStoreConfig | dict[str, Any] | object | None = None,
    ) -> UploadToFileSearchStoreOperation:
        """Upload straight into a store (resumable, 8 MiB chunks); returns its operation."""
        chosen = options(config, UploadToFileSearchStoreConfig)
        path = f"{_store_name(file_search_store_name)}:uploadToFileSearchStore"
        with _Source.open(file, chosen.mime_type) as source:
            answer = send_resumable(self._transport, path, _upload_body(source, chosen), source)
        return self._context.parse_operation(answer.json(), UploadToFileSearchStoreOperation)

    def query(
        self,
        *,
        name: str,
        query: str,
        results_count: int | None = None,
        metadata_filters: Sequence[MetadataFilter | dict[str, Any]] | None = None,
    ) -> QueryResult:
        """The chunks of the store most relevant to `query`, best first."""
        path, body = _query_request(name, query, results_count, metadata_filters)
        data = self._transport.request("POST", path, body=body, idempotent=True)
        return QueryResult.model_validate(data)


class AsyncFileSearchStores(AsyncResource):
    """The async twin of `FileSearchStores`."""

    documents: AsyncDocuments

    def __init__(self, transport: AsyncTransport, context: ApiContext) -> None:
        super().__init__(transport, context)
        self.documents = AsyncDocuments(transport, context)

    async def create(
        self, *, config: CreateFileSearchStoreConfig | dict[str, Any] | object | None = None
    ) -> FileSearchStore:
        data = await self._transport.request("POST", "fileSearchStores", body=_create_body(config))
        return FileSearchStore.model_validate(data)

    async def get(
        self, *, name: str, config: GetFileSearchStoreConfig | dict[str, Any] | object | None = None
    ) -> FileSearchStore:
        options(config, GetFileSearchStoreConfig)
        data = await self._transport.request("GET", _store_name(name))
        return FileSearchStore.model_validate(data)

    async def list(
        self,
        *,
        page_size: int | None = None,
        config: ListFileSearchStoresConfig | dict[str, Any] | object | None = None,
    ) -> AsyncPager[FileSearchStore]:
        size, first = _list_options(page_size, config, ListFileSearchStoresConfig)

        async def fetch(token: str | None) -> Page[FileSearchStore]:
            params = _params(size, token)
            return _store_page(
                await self._transport.request("GET", "fileSearchStores", params=params)
            )

        return AsyncPager(fetch, await fetch(first))

    async def delete(
        self, *, name: str, force: bool = False, config: DeleteConfig | None = None
    ) -> None:
        params = _force(force, config, DeleteFileSearchStoreConfig)
        await self._transport.send("DELETE", _store_name(name), params=params)

    async def import_file(
        self,
        *,
        file_search_store_name: str | None = None,
        file_name: str | None = None,
        config: ImportFileConfig | dict[str, Any] | object | None = None,
        store: str | None = None,
        source: ImportFileSource | dict[str, Any] | None = None,
    ) -> ImportFileOperation:
        path, body = _import_request(store, file_search_store_name, file_name, source, config)
        data = await self._transport.request(
            "POST", path, body=body, params={"requestId": str(uuid.uuid4())}, idempotent=True
        )
        return self._context.parse_operation(data, ImportFileOperation)

    async def upload_to_file_search_store(
        self,
        *,
        file_search_store_name: str,
        file: str | os.PathLike[str] | bytes | IO[bytes],
        config: UploadToFileSearchStoreConfig | dict[str, Any] | object | None = None,
    ) -> UploadToFileSearchStoreOperation:
        chosen = options(config, UploadToFileSearchStoreConfig)
        path = f"{_store_name(file_search_store_name)}:uploadToFileSearchStore"
        with _Source.open(file, chosen.mime_type) as source:
            answer = await asend_resumable(
                self._transport, path, _upload_body(source, chosen), source
            )
        return self._context.parse_operation(answer.json(), UploadToFileSearchStoreOperation)

    async def query(
        self,
        *,
        name: str,
        query: str,
        results_count: int | None = None,
        metadata_filters: Sequence[MetadataFilter | dict[str, Any]] | None = None,
    ) -> QueryResult:
        path, body = _query_request(name, query, results_count, metadata_filters)
        data = await self._transport.request("POST", path, body=body, idempotent=True)
        return QueryResult.model_validate(data)

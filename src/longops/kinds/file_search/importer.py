"""`import_file` and `upload_to_file_search_store`: fetch, extract, chunk, index.

Both kinds end the same way: the document's chunks replace its previous ones in a
single transaction, so a query sees the old version or the new one; a cancelled or
failed import leaves the store as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from longops.engine.blobs import BlobNotFound
from longops.engine.context import Context
from longops.engine.egress import EgressPolicy, egress_client
from longops.engine.failures import OperationFailed
from longops.engine.ids import new_token_id
from longops.engine.registry import Kind
from longops.engine.uploads import SESSION_ID, STORE_UPLOADS
from longops.kinds.buckets import DEFAULT_ROOT, cloud_storage, gcs_root, read_capped
from longops.kinds.file_search.extract import ExtractionError
from longops.kinds.file_search.index import SearchIndex
from longops.kinds.file_search.isolation import Limits, prepare
from longops.kinds.file_search.records import DocumentRecord
from longops.kinds.folders import OutsideFolder, inside, tenant_folder
from longops.rpc import Code

log = logging.getLogger("longops.file_search")
UPLOADED_KEY = rf"^{STORE_UPLOADS}/{SESSION_ID}$"
IMPORT_RESPONSE = "type.googleapis.com/google.ai.generativelanguage.v1main.ImportFileResponse"
UPLOAD_RESPONSE = (
    "type.googleapis.com/google.ai.generativelanguage.v1main.UploadToFileSearchStoreResponse"
)
METADATA = "type.googleapis.com/google.ai.generativelanguage.v1main.ImportFileMetadata"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="ignore")


class WhiteSpaceConfig(_Wire):
    max_tokens_per_chunk: int = Field(default=200, ge=1, le=2048)
    max_overlap_tokens: int = Field(default=20, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> WhiteSpaceConfig:
        if self.max_overlap_tokens >= self.max_tokens_per_chunk:
            raise ValueError("maxOverlapTokens must be smaller than maxTokensPerChunk")
        return self


class ChunkingConfig(_Wire):
    white_space_config: WhiteSpaceConfig = Field(default_factory=WhiteSpaceConfig)


class StringList(_Wire):
    values: list[str] = Field(default_factory=list)


class CustomMetadata(_Wire):
    key: str = Field(min_length=1, max_length=256)
    string_value: str | None = None
    numeric_value: float | None = None
    string_list_value: StringList | None = None


class ImportRequest(_Wire):
    store: str
    file_name: str | None = None
    gcs_uri: str | None = None
    uri: str | None = None
    blob_key: str | None = Field(default=None, pattern=UPLOADED_KEY)
    """Set by the upload route: the bytes of one upload, which the import deletes.
    Only such keys: a client may start this kind itself, and must not name any other
    blob (another tenant's file, say) to be read into its store and deleted."""
    display_name: str | None = None
    mime_type: str | None = None
    custom_metadata: list[CustomMetadata] = Field(default_factory=list, max_length=20)
    chunking_config: ChunkingConfig = Field(default_factory=ChunkingConfig)

    @model_validator(mode="after")
    def _one_source(self) -> ImportRequest:
        given = [s for s in (self.file_name, self.gcs_uri, self.uri, self.blob_key) if s]
        if len(given) != 1:
            raise ValueError("give exactly one of fileName, gcsUri or uri")
        return self


_MAX_BYTES = 100 << 20
_MAX_TEXT = 20_000_000
DEFAULT_LIMITS = Limits(
    max_text_chars=_MAX_TEXT,
    max_chunks=100_000,
    max_chunk_chars=2 * _MAX_TEXT,
    cpu_seconds=60,
    memory_bytes=2 << 30,
)


@dataclass(slots=True)
class FileSearchSettings:
    gcs_root: Path | None = field(default_factory=lambda: Path(DEFAULT_ROOT))
    """Folder standing in for Cloud Storage: gs://bucket/key is gcs_root/bucket/key;
    None reads Cloud Storage itself (LONGOPS_GCS_ROOT=gs://, kinds/buckets.py).
    Both folders are shared by every tenant unless they hold `{tenant}`, which each
    import replaces with its own tenant's folder name (kinds/folders.py)."""
    import_folder: Path | None = None
    """The one folder of the server's own disk that `file://` sources may read."""
    max_bytes: int = _MAX_BYTES
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    """Which addresses `http(s)://` sources may reach: public ones, unless allowed."""
    fetch_timeout: float = 60.0
    """Seconds one `http(s)://` fetch may take in all, however the bytes trickle in."""
    limits: Limits = DEFAULT_LIMITS
    """What extracting and chunking one document may cost."""

    @classmethod
    def from_env(cls) -> FileSearchSettings:
        """The settings from `LONGOPS_*` variables; ValueError naming a malformed one."""
        env = os.environ.get
        folder = env("LONGOPS_IMPORT_FOLDER")
        max_text = _count("LONGOPS_IMPORT_MAX_TEXT", _MAX_TEXT)
        memory = _count("LONGOPS_IMPORT_MAX_MEMORY", DEFAULT_LIMITS.memory_bytes or 0)
        timeout = env("LONGOPS_IMPORT_TIMEOUT")
        try:
            fetch_timeout = float(timeout) if timeout else 60.0
        except ValueError:
            raise ValueError(f"LONGOPS_IMPORT_TIMEOUT: {timeout!r} is not a number") from None
        return cls(
            gcs_root=gcs_root(os.environ),
            import_folder=Path(folder) if folder else None,
            max_bytes=_count("LONGOPS_IMPORT_MAX_BYTES", _MAX_BYTES),
            egress=EgressPolicy.from_env(),
            fetch_timeout=fetch_timeout,
            limits=Limits(
                max_text_chars=max_text,
                max_chunks=_count("LONGOPS_IMPORT_MAX_CHUNKS", DEFAULT_LIMITS.max_chunks),
                max_chunk_chars=2 * max_text,
                cpu_seconds=_count("LONGOPS_IMPORT_CPU_SECONDS", DEFAULT_LIMITS.cpu_seconds),
                memory_bytes=memory or None,
            ),
        )


def _count(name: str, default: int) -> int:
    """A whole-number setting; ValueError naming it when it is not one."""
    value = os.environ.get(name)
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and len(value) < 19):
        raise ValueError(f"{name}: {value[:40]!r} is not a whole number")
    return int(value)


async def _fetch(
    ctx: Context, request: ImportRequest, settings: FileSearchSettings
) -> tuple[bytes, str | None]:
    """The source's bytes and a name for it, refusing anything over the size limit before
    reading it all."""
    limit = settings.max_bytes
    if request.blob_key is not None:
        return await _read_blob(ctx, request.blob_key, "The uploaded file"), None
    if request.file_name is not None:
        id = request.file_name.removeprefix("files/")
        file = await ctx.get_file(id)
        if file is None:
            raise OperationFailed(Code.NOT_FOUND, f"File {request.file_name} not found.")
        if file.size_bytes > limit:
            raise OperationFailed(
                Code.INVALID_ARGUMENT, f"{request.file_name} is over {limit} bytes."
            )
        return await _read_blob(ctx, file.blob_key, f"File {request.file_name}"), file.display_name
    if request.gcs_uri is not None:
        if not request.gcs_uri.startswith("gs://") or "/" not in request.gcs_uri[5:]:
            raise OperationFailed(Code.INVALID_ARGUMENT, f"Invalid gs:// URI {request.gcs_uri}.")
        bucket_path = request.gcs_uri.removeprefix("gs://")
        if settings.gcs_root is None:
            return await ctx.run_in_thread(_read_gcs, bucket_path, limit)
        path = _local(settings.gcs_root, ctx.tenant, bucket_path, "LONGOPS_GCS_ROOT")
        return await ctx.run_in_thread(_read_local, path, request.gcs_uri, limit)
    assert request.uri is not None
    if request.uri.startswith("file://"):
        given = request.uri.removeprefix("file://")
        path = _local(
            settings.import_folder, ctx.tenant, given, "LONGOPS_IMPORT_FOLDER", absolute=True
        )
        return await ctx.run_in_thread(_read_local, path, request.uri, limit)
    if not request.uri.startswith(("http://", "https://")):
        raise OperationFailed(Code.INVALID_ARGUMENT, f"Unsupported uri {request.uri}.")
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            return await _download(request.uri, settings)
    except TimeoutError:
        raise OperationFailed(
            Code.DEADLINE_EXCEEDED,
            f"Fetching {request.uri} took over {settings.fetch_timeout:g} s.",
        ) from None


async def _download(uri: str, settings: FileSearchSettings) -> tuple[bytes, str | None]:
    """GET `uri` through the egress policy. Whatever keeps the server from the bytes (an
    address the policy refuses, a closed port, a failed lookup, a redirect loop) reads
    the same to the client, so imports cannot map the server's network; the log has the
    reason."""
    limit = settings.max_bytes
    per_read = min(30.0, settings.fetch_timeout)
    try:
        async with (
            egress_client(settings.egress, httpx.Timeout(per_read)) as client,
            client.stream("GET", uri) as answer,
        ):
            if answer.status_code != 200:
                raise OperationFailed(Code.NOT_FOUND, f"{uri} answered HTTP {answer.status_code}.")
            received = bytearray()
            async for chunk in answer.aiter_bytes():
                received += chunk
                if len(received) > limit:
                    raise OperationFailed(Code.INVALID_ARGUMENT, f"{uri} is over {limit} bytes.")
    except httpx.InvalidURL:
        raise OperationFailed(Code.INVALID_ARGUMENT, f"Invalid uri {uri}.") from None
    except httpx.HTTPError as exc:
        log.info("import could not fetch %s: %s: %s", uri, type(exc).__name__, exc)
        raise OperationFailed(Code.NOT_FOUND, f"Could not fetch {uri}.") from None
    return bytes(received), uri.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


async def _read_blob(ctx: Context, key: str, shown: str) -> bytes:
    try:
        return await ctx.run_in_thread(ctx.blobs.read, key)
    except BlobNotFound:
        raise OperationFailed(Code.NOT_FOUND, f"{shown} was not found; upload it again.") from None


def _local(
    root: Path | None, tenant: str, relative: str, setting: str, *, absolute: bool = False
) -> Path:
    """A file under an operator-configured folder (`tenant`'s, if it holds `{tenant}`),
    never outside it; with `absolute`, an absolute path inside the folder is taken as is."""
    if "\x00" in relative:  # the OS would refuse it with an error that is no answer
        raise OperationFailed(Code.INVALID_ARGUMENT, "The path contains a NUL character.")
    if root is None:
        raise OperationFailed(
            Code.PERMISSION_DENIED, f"This server reads no such source ({setting})."
        )
    try:
        return inside(tenant_folder(root, tenant), relative, absolute=absolute)
    except OutsideFolder:
        raise OperationFailed(
            Code.PERMISSION_DENIED, "That path is outside the allowed folder."
        ) from None


def _read_local(path: Path, shown: str, limit: int) -> tuple[bytes, str | None]:
    """Run in a thread: every step here touches the disk."""
    if not path.is_file():
        raise OperationFailed(Code.NOT_FOUND, f"{shown} not found.")
    if path.stat().st_size > limit:
        raise OperationFailed(Code.INVALID_ARGUMENT, f"{shown} is over {limit} bytes.")
    return path.read_bytes(), path.name


def _read_gcs(bucket_path: str, limit: int) -> tuple[bytes, str | None]:
    """Read from Cloud Storage itself (kinds/buckets.py). Runs in a thread: gcsfs calls
    block."""
    uri = f"gs://{bucket_path}"
    try:
        fs = cloud_storage()
    except ValueError as exc:  # gcsfs is not installed
        raise OperationFailed(Code.FAILED_PRECONDITION, f"{exc}.") from None
    data = read_capped(
        fs,
        bucket_path,
        limit,
        too_large=f"{uri} is over {limit} bytes.",
        not_found=f"{uri} not found.",
        unreadable=f"Could not read {uri}.",
    )
    return data, bucket_path.rsplit("/", 1)[-1]


def _source_key(request: ImportRequest) -> str:
    return request.file_name or request.gcs_uri or request.uri or request.display_name or ""


async def _import(
    ctx: Context, request: ImportRequest, settings: FileSearchSettings, upload: bool
) -> dict[str, Any]:
    index = SearchIndex.of(ctx.database).tenant(ctx.tenant)
    search_store = await index.get_search_store(request.store)
    if search_store is None:
        raise OperationFailed(Code.NOT_FOUND, f"fileSearchStores/{request.store} not found.")
    await ctx.report_progress(0, force=True)
    data, source_name = await _fetch(ctx, request, settings)
    await ctx.report_progress(30, bytesFetched=len(data))
    name = request.display_name or source_name
    whitespace = request.chunking_config.white_space_config
    try:
        extracted = await prepare(
            data,
            name,
            request.mime_type,
            whitespace.max_tokens_per_chunk,
            whitespace.max_overlap_tokens,
            settings.limits,
        )
    except ExtractionError as exc:
        raise OperationFailed(Code.INVALID_ARGUMENT, str(exc)) from None
    chunks = extracted.chunks
    await ctx.report_progress(60, chunksToIndex=len(chunks))
    now = time.time()
    # Re-importing a source replaces its document; every upload is a document of its own.
    key = ctx.operation_id if upload else _source_key(request)
    metadata = [m.model_dump(by_alias=True, exclude_none=True) for m in request.custom_metadata]
    document = await index.begin_document(
        DocumentRecord(
            id=new_token_id(12),
            store_id=request.store,
            source_key=key,
            display_name=name,
            mime_type=extracted.mime_type,
            size_bytes=len(data),
            custom_metadata=metadata,
            state="PENDING",
            create_time=now,
            update_time=now,
        )
    )
    if document is None:
        raise OperationFailed(Code.NOT_FOUND, f"fileSearchStores/{request.store} was deleted.")
    try:
        ctx.check_cancelled()
        document.display_name, document.mime_type = name, extracted.mime_type
        document.size_bytes, document.custom_metadata = len(data), metadata
        indexed = await index.index_document(document, chunks, time.time())
    except BaseException:
        await index.abandon_document(document.store_id, document.id)
        raise
    if indexed is None:
        raise OperationFailed(Code.NOT_FOUND, f"fileSearchStores/{request.store} was deleted.")
    await ctx.report_progress(100, chunksIndexed=len(chunks), pages=extracted.pages)
    parent = f"fileSearchStores/{request.store}"
    response: dict[str, Any] = {
        "@type": UPLOAD_RESPONSE if upload else IMPORT_RESPONSE,
        "parent": parent,
        "documentName": f"{parent}/documents/{indexed.id}",
    }
    if upload:
        response |= {"mimeType": extracted.mime_type, "sizeBytes": str(len(data))}
    return response


def file_search_kinds(settings: FileSearchSettings) -> list[Kind[ImportRequest]]:
    async def import_file(ctx: Context, request: ImportRequest) -> dict[str, Any]:
        return await _import(ctx, request, settings, upload=False)

    async def upload(ctx: Context, request: ImportRequest) -> dict[str, Any]:
        try:
            return await _import(ctx, request, settings, upload=True)
        finally:
            if request.blob_key is not None:
                await ctx.run_in_thread(ctx.blobs.delete, request.blob_key)

    return [
        Kind("import_file", import_file, ImportRequest, IMPORT_RESPONSE, METADATA),
        Kind("upload_to_file_search_store", upload, ImportRequest, UPLOAD_RESPONSE, METADATA),
    ]

"""The Files API, as far as generated videos need it: get, list, delete, download."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from longops.engine.blobs import CHUNK_BYTES, BlobNotFound
from longops.engine.links import download_uri, file_uri
from longops.engine.records import FileRecord
from longops.rpc import Code
from longops.server.errors import ErrorReply, invalid_argument, not_found
from longops.server.render import timestamp
from longops.server.routes.base import Routes
from longops.server.routes.operations import json_response

_EMPTY = b"{}"


def render_file(file: FileRecord, public_url: str, version: str) -> dict[str, Any]:
    """A File as Google's API gives it; `uri` and `downloadUri` as engine/links.py says."""
    body: dict[str, Any] = {
        "name": f"files/{file.id}",
        "mimeType": file.mime_type,
        "sizeBytes": str(file.size_bytes),
        "createTime": timestamp(file.create_time),
        "updateTime": timestamp(file.create_time),
        "expirationTime": timestamp(file.expire_time),
        "sha256Hash": base64.b64encode(bytes.fromhex(file.sha256)).decode(),
        "uri": file_uri(public_url, file.id, version),
        "downloadUri": download_uri(public_url, file.id, version),
        "state": "ACTIVE",
        "source": file.source,
    }
    if file.display_name:
        body["displayName"] = file.display_name
    return body


class FileRoutes(Routes):
    def routes(self) -> list[BaseRoute]:
        v = "/{version:apiver}"
        return [
            Route(f"{v}/files", self.list_files, methods=["GET"]),
            Route(f"{v}/files/{{id:str}}:download", self.download, methods=["GET"]),
            Route(f"{v}/files/{{id:str}}", self.get, methods=["GET"]),
            Route(f"{v}/files/{{id:str}}", self.delete, methods=["DELETE"]),
        ]

    async def _find(self, request: Request) -> FileRecord:
        tenant = self.auth.tenant(request)
        id: str = request.path_params["id"]
        file = await self.engine.get_file(id, tenant)
        if file is None:
            raise not_found(f"File files/{id} not found.")
        return file

    def _base(self) -> str:
        """The configured public URL (`--public-url`), not the address this request came
        to: behind a load balancer that is an internal one."""
        return self.engine.config.public_url

    async def get(self, request: Request) -> Response:
        file = await self._find(request)
        return json_response(render_file(file, self._base(), request.path_params["version"]))

    async def list_files(self, request: Request) -> Response:
        tenant = self.auth.tenant(request)
        scope = f"files\x00{tenant}"
        size, before = self.page(request, scope)
        files = await self.engine.list_files(tenant, before_seq=before, limit=size + 1)
        base, version = self._base(), request.path_params["version"]
        body: dict[str, Any] = {}
        if files:
            body["files"] = [render_file(f, base, version) for f in files[:size]]
        if token := self.next_page_token(files, size, scope):
            body["nextPageToken"] = token
        return json_response(body)

    async def delete(self, request: Request) -> Response:
        file = await self._find(request)
        await self.engine.delete_file(file.id, file.tenant)
        return Response(_EMPTY, media_type="application/json")

    async def download(self, request: Request) -> Response:
        alt = request.query_params.get("alt", "media")
        if alt != "media":
            raise invalid_argument(f"Unsupported alt={alt!r}; use alt=media.", field="alt")
        file = await self._find(request)
        # Blobs never change once published, so the size recorded with the file holds.
        size = file.size_bytes
        span = _byte_range(request.headers.get("range"), size)
        try:
            blob = await asyncio.to_thread(self.engine.blobs.open, file.blob_key)
        except BlobNotFound:
            raise not_found(f"The bytes of files/{file.id} are gone.") from None
        headers = {"accept-ranges": "bytes"}
        if span is None:
            headers["content-length"] = str(size)
            return StreamingResponse(
                _chunks(blob, 0, size), headers=headers, media_type=file.mime_type
            )
        start, end = span
        headers["content-length"] = str(end - start)
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        return StreamingResponse(
            _chunks(blob, start, end - start), 206, headers=headers, media_type=file.mime_type
        )


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) a `Range: bytes=…` header asks for, so video players can seek.
    None serves the whole file: no header, a unit other than bytes, or several ranges
    (which a server may answer in full)."""
    if header is None or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header.removeprefix("bytes=").strip().partition("-")
    try:
        if not first:  # the last N bytes
            start, end = max(size - int(last), 0), size
        else:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
            if last and int(last) < start:
                return None
    except ValueError:
        return None
    if start >= end:
        raise ErrorReply(
            416,
            f"Range {header!r} is outside the file's {size} bytes.",
            status=Code.OUT_OF_RANGE,
            headers={"content-range": f"bytes */{size}"},
        )
    return start, end


async def _chunks(blob: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of the blob from `start`, a chunk at a time, each read in a thread:
    it may come over the network. Closing a blob opened for reading does no I/O, so it
    may happen on the loop."""
    with blob:
        if start:
            await asyncio.to_thread(blob.seek, start)
        while length > 0:
            chunk = await asyncio.to_thread(blob.read, min(CHUNK_BYTES, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk

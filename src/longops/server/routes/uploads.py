"""Resumable uploads (Google's protocol, as the official SDK speaks it).

`POST /upload/{v}/files` with `x-goog-upload-command: start` opens a session and
answers its upload URL; the bytes then go to that URL in chunks (`upload`, and
`upload, finalize` for the last). The session id in the URL is the credential — the
official SDK sends no API key there — so the tenant is fixed when the session starts.
Sessions are kept by the engine (`longops.engine.uploads`), in the blob store beside
their bytes, so any API server sharing that store can continue one; they expire.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Mapping
from typing import Any, BinaryIO, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from longops.engine.blobs import CHUNK_BYTES, OffsetMismatch, digest
from longops.engine.failures import RequestRejected
from longops.engine.ids import new_token_id
from longops.engine.records import DEFAULT_PRIORITY, OperationRecord
from longops.engine.store.base import FileExists
from longops.engine.uploads import SESSION_ID, STORE_UPLOADS
from longops.kinds.file_search.index import SearchIndex
from longops.rpc import Code
from longops.server.errors import ErrorReply, error_response, invalid_argument
from longops.server.flow import flow
from longops.server.render import render_operation
from longops.server.requests import field, read_json
from longops.server.routes.base import Routes
from longops.server.routes.files import render_file

_FILE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_SESSION = re.compile(rf"^{SESSION_ID}$")


def _status(value: str) -> dict[str, str]:
    return {"x-goog-upload-status": value}


def _byte_count(value: str, header: str) -> int:
    """A header's byte count; 19 digits and more are beyond any upload (and `int`'s
    guard against huge numbers would answer them with a 500)."""
    if not (value.isascii() and value.isdigit() and len(value) < 19):
        raise invalid_argument(f"Invalid {header}: {value[:40]!r}.")
    return int(value)


def _exists(file_id: str) -> ErrorReply:
    return ErrorReply(409, f"File files/{file_id} already exists.")


def _finalizing() -> ErrorReply:
    return ErrorReply(
        409,
        "This upload session is being finalized by another request; query the file it"
        " names instead of sending more.",
        status=Code.ABORTED,
    )


def _too_large(limit: int) -> ErrorReply:
    return ErrorReply(413, f"Files are limited to {limit} bytes.")


def _display_name(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid_argument(f"{name} must be a string.", field=name)
    return value


class UploadRoutes(Routes):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/upload/{version:apiver}/files", self.files, methods=["POST"]),
            Route(
                "/upload/{version:apiver}/fileSearchStores/{store:str}:uploadToFileSearchStore",
                self.store_upload,
                methods=["POST"],
            ),
        ]

    async def files(self, request: Request) -> Response:
        if "upload_id" in request.query_params:
            return await self._transfer_or_final_error(request)
        body, total = await self._check_start(request)
        file: Mapping[str, Any] = field(body, "file") or {}
        if not isinstance(file, Mapping):
            raise invalid_argument("file must be an object.", field="file")
        file_id = self._requested_id(field(file, "name"))
        tenant = self.auth.tenant(request)
        # Names are the tenant's own: another tenant's file of this name is not seen.
        if file_id is not None and await self.engine.get_file(file_id, tenant) is not None:
            raise _exists(file_id)
        return await self._open_session(
            request,
            {
                "target": "file",
                "total": total,
                "tenant": tenant,
                "fileId": file_id,
                "displayName": _display_name(field(file, "displayName"), "file.displayName")
                or request.headers.get("x-goog-upload-file-name"),
                "mimeType": self._mime(request, field(file, "mimeType")),
            },
        )

    async def store_upload(self, request: Request) -> Response:
        """Upload straight into a file search store; the answer is an operation."""
        if "upload_id" in request.query_params:
            return await self._transfer_or_final_error(request)
        body, total = await self._check_start(request)
        flow_control = flow(body, time.time())
        tenant = self.auth.tenant(request)
        index = SearchIndex.of(self.engine.store.database).tenant(tenant)
        search_store = await index.get_search_store(request.path_params["store"])
        if search_store is None:
            raise ErrorReply(404, f"fileSearchStores/{request.path_params['store']} not found.")
        await self.engine.check_quota(tenant)  # at the start, before any bytes are sent
        return await self._open_session(
            request,
            {
                "target": "store",
                "total": total,
                "tenant": tenant,
                "store": search_store.id,
                "displayName": _display_name(field(body, "displayName"), "displayName"),
                "mimeType": self._mime(request, field(body, "mimeType")),
                "customMetadata": field(body, "customMetadata") or [],
                "chunkingConfig": field(body, "chunkingConfig") or {},
                "webhook": flow_control.webhook,
                "priority": flow_control.priority,
                "notBefore": flow_control.not_before,
                "concurrencyKey": flow_control.concurrency_key,
            },
        )

    @staticmethod
    def _mime(request: Request, declared: Any) -> str:
        header = request.headers.get("x-goog-upload-header-content-type")
        return str(declared or header or "application/octet-stream")

    async def _transfer_or_final_error(self, request: Request) -> Response:
        session = request.query_params["upload_id"]
        try:
            return await self._transfer(request, session)
        except ErrorReply as exc:
            # `final` on errors too, or the SDK re-sends the chunk three more times.
            exc.headers = {**(exc.headers or {}), **_status("final")}
            return error_response(exc)

    async def _check_start(self, request: Request) -> tuple[dict[str, Any], int | None]:
        """The start request's checks; returns its JSON body and the announced size."""
        self.auth.tenant(request)
        headers = request.headers
        if headers.get("x-goog-upload-protocol", "").lower() != "resumable":
            raise invalid_argument("Only x-goog-upload-protocol: resumable is supported.")
        if headers.get("x-goog-upload-command", "").lower() != "start":
            raise invalid_argument("The first request of an upload must be a start command.")
        body = await read_json(request, self.config.max_body_bytes)
        declared = headers.get("x-goog-upload-header-content-length")
        total = None
        if declared is not None:
            total = _byte_count(declared, "x-goog-upload-header-content-length")
            if total > self.config.max_upload_bytes:
                raise _too_large(self.config.max_upload_bytes)
        return body, total

    async def _open_session(self, request: Request, state: dict[str, Any]) -> Response:
        session = await asyncio.to_thread(self.engine.uploads.open, state, time.time())
        url = str(request.url.replace_query_params(upload_id=session, upload_protocol="resumable"))
        return Response(
            b"",
            headers={
                "x-goog-upload-url": url,
                "x-goog-upload-chunk-granularity": str(8 << 20),
                **_status("active"),
            },
        )

    @staticmethod
    def _requested_id(name: Any) -> str | None:
        if name is None or name == "":
            return None
        id = str(name).removeprefix("files/")
        if not _FILE_ID.match(id):
            raise invalid_argument(
                f"Invalid file name {name!r}: use files/ and up to 40 of [a-z0-9-].",
                field="file.name",
            )
        return id

    async def _transfer(self, request: Request, session: str) -> Response:
        if not _SESSION.match(session):
            raise ErrorReply(404, "No such upload session.")
        blobs = self.engine.blobs
        state = await asyncio.to_thread(self.engine.uploads.settings, session, time.time())
        if state is None:
            raise ErrorReply(404, "No such upload session (finished, expired, or never started).")
        part = self.engine.uploads.part(session)
        commands = {c.strip() for c in request.headers.get("x-goog-upload-command", "").split(",")}
        if commands == {"query"}:
            received = await asyncio.to_thread(blobs.current_size, part)
            return Response(
                b"", headers={"x-goog-upload-size-received": str(received), **_status("active")}
            )
        if not commands or not commands <= {"upload", "finalize"}:
            raise invalid_argument("x-goog-upload-command must be upload, finalize or query.")
        if await asyncio.to_thread(self.engine.uploads.claimed, session):
            raise _finalizing()
        if "upload" in commands:
            received = await self._append(request, part)
        else:
            received = await asyncio.to_thread(blobs.current_size, part)
        if "finalize" not in commands:
            return Response(b"", headers=_status("active"))
        self._check_total(state, received)
        if state["target"] == "store":
            target = {"key": f"{STORE_UPLOADS}/{session}"}
        else:
            target = {
                "key": f"files/{new_token_id(32)}",
                "fileId": state["fileId"] or new_token_id(12),
            }
        claim = self.engine.uploads.claim
        if not await asyncio.to_thread(claim, session, state["expires"], target):
            raise _finalizing()
        if state["target"] == "store":
            return await self._finish_store_upload(session, state, part, target["key"])
        return await self._finish(request, session, state, part, target)

    async def _append(self, request: Request, part: str) -> int:
        """Add the request's chunk to the session's bytes; the new size. An oversized
        chunk is refused from its Content-Length before any of it is read, and one sent
        without a length as soon as it passes the limit: it never sits whole in memory."""
        header = request.headers.get("x-goog-upload-offset")
        if header is None:
            raise invalid_argument(
                "x-goog-upload-offset is required.", field="x-goog-upload-offset"
            )
        offset = _byte_count(header, "x-goog-upload-offset")
        room = self.config.max_upload_bytes - offset
        length = request.headers.get("content-length")
        if room < 0 or (length is not None and _byte_count(length, "content-length") > room):
            raise _too_large(self.config.max_upload_bytes)
        with tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES) as chunk:
            pending = bytearray()
            async for piece in request.stream():
                room -= len(piece)
                if room < 0:
                    raise _too_large(self.config.max_upload_bytes)
                pending += piece
                if len(pending) >= CHUNK_BYTES:  # past max_size, writes reach the disk
                    await asyncio.to_thread(chunk.write, pending)
                    pending = bytearray()
            chunk.write(pending)
            chunk.seek(0)
            try:
                return await asyncio.to_thread(
                    self.engine.blobs.append, part, cast(BinaryIO, chunk), offset
                )
            except OffsetMismatch as exc:
                raise invalid_argument(
                    f"x-goog-upload-offset {offset} does not match the {exc.size} bytes"
                    " received so far.",
                    field="x-goog-upload-offset",
                ) from None

    @staticmethod
    def _check_total(state: dict[str, Any], received: int) -> None:
        if state["total"] is not None and received != state["total"]:
            raise invalid_argument(
                f"Upload finalized after {received} bytes; {state['total']} were announced.",
                field="x-goog-upload-header-content-length",
            )

    async def _finish(
        self,
        request: Request,
        session: str,
        state: dict[str, Any],
        part: str,
        target: dict[str, str],
    ) -> Response:
        """Publish the session's bytes, which this request alone has claimed, under a key
        of their own (`target`), then record them. Publishing under `files/{id}` let a
        second upload of one id overwrite the first's bytes. The session ends once the
        outcome is known; when it is not (the database failed mid-write), the claim
        stays for the sweep to settle (`Engine.purge_expired_uploads`)."""
        blobs = self.engine.blobs
        file_id, key = target["fileId"], target["key"]
        published = False
        try:
            await asyncio.to_thread(blobs.publish_appended, part, key)
            published = True
            size, sha256 = await asyncio.to_thread(digest, blobs, key)
            self._check_total(state, size)  # a chunk that landed meanwhile
            record = await self.engine.add_file(
                id=file_id,
                tenant=state["tenant"],
                blob_key=key,
                mime_type=state["mimeType"],
                size_bytes=size,
                sha256=sha256,
                source="UPLOADED",
                display_name=state["displayName"],
            )
        except (FileExists, ErrorReply) as exc:  # refused: the bytes are nobody's
            if published:
                await asyncio.to_thread(blobs.delete, key)
            await asyncio.to_thread(self.engine.uploads.end, session)
            if isinstance(exc, FileExists):
                raise _exists(file_id) from None
            raise
        await asyncio.to_thread(self.engine.uploads.end, session)
        return Response(
            orjson.dumps(
                {
                    "file": render_file(
                        record, str(request.base_url).rstrip("/"), request.path_params["version"]
                    )
                }
            ),
            media_type="application/json",
            headers=_status("final"),
        )

    async def _finish_store_upload(
        self, session: str, state: dict[str, Any], part: str, key: str
    ) -> Response:
        blobs = self.engine.blobs
        await asyncio.to_thread(blobs.publish_appended, part, key)
        try:
            record = await self._create_store_upload(state, key)
        except RequestRejected as exc:  # the bytes are gone: a retry must not import nothing
            await asyncio.to_thread(blobs.delete, key)
            await asyncio.to_thread(self.engine.uploads.end, session)
            raise invalid_argument(exc.message) from None
        await asyncio.to_thread(self.engine.uploads.end, session)
        body = render_operation(record, self.engine.registry.get(record.kind))
        return Response(orjson.dumps(body), media_type="application/json", headers=_status("final"))

    async def _create_store_upload(self, state: dict[str, Any], key: str) -> OperationRecord:
        return await self.engine.create(
            "upload_to_file_search_store",
            {
                "store": state["store"],
                "blobKey": key,
                "displayName": state["displayName"],
                "mimeType": state["mimeType"],
                "customMetadata": state["customMetadata"],
                "chunkingConfig": state["chunkingConfig"],
            },
            tenant=state["tenant"],
            parent=f"fileSearchStores/{state['store']}/upload",
            webhook=state.get("webhook"),
            quota=False,  # admitted at the start: the bytes are here now
            priority=state.get("priority", DEFAULT_PRIORITY),
            not_before=state.get("notBefore", 0.0),
            concurrency_key=state.get("concurrencyKey", ""),
        )

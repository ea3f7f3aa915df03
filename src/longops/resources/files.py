"""Files: the generated videos (and, later, uploads) a server keeps for a while."""

from __future__ import annotations

import asyncio
import io
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from longops._pagers import AsyncPager, Page, Pager
from longops._transport import AsyncResponse, AsyncTransport, SyncTransport, Upload
from longops.resources._base import AsyncResource, SyncResource, resource_name
from longops.types import File, GeneratedVideo, UploadFileConfig, Video

__all__ = ["AsyncFiles", "Files"]


def _file_name(file: str | File | Video | GeneratedVideo) -> str:
    """`files/{id}` for a name, a bare id, a File, or a video whose uri points at one."""
    if isinstance(file, GeneratedVideo):
        file = file.video
    if isinstance(file, Video):
        if file.uri is None:
            raise ValueError("This video has no uri to download.")
        marker = file.uri.find("files/")
        if marker < 0:
            raise ValueError(f"Not a file uri: {file.uri!r}.")
        tail = file.uri[marker + len("files/") :]
        return f"files/{tail.split(':')[0].split('?')[0].split('/')[0]}"
    name = file.name if isinstance(file, File) else file
    if not name:
        raise ValueError("Expected a file name.")
    name = resource_name(name)
    return name if name.startswith("files/") else f"files/{name}"


# The official SDK's chunk size; the server accepts any.
CHUNK_BYTES = 8 << 20


@dataclass(slots=True)
class _Source:
    """What is being uploaded, opened: its stream, size and content type.

    Shared by every resumable upload (files, file search stores); each caller builds its own
    start body. Use it as a context manager: a file opened from a path is closed on exit.
    """

    stream: IO[bytes]
    size: int
    mime_type: str
    # The file's name when uploading from a path, the default display name.
    path_name: str | None
    close: bool

    @classmethod
    def open(
        cls, file: str | os.PathLike[str] | bytes | IO[bytes], mime_type: str | None
    ) -> _Source:
        name = Path(file).name if isinstance(file, str | os.PathLike) else None
        mime = mime_type or (name and mimetypes.guess_type(name)[0])
        if not mime:
            raise ValueError("Pass config.mime_type: it cannot be guessed for this upload.")
        if isinstance(file, bytes):
            stream: IO[bytes] = io.BytesIO(file)
            close = False
        elif isinstance(file, str | os.PathLike):
            stream, close = Path(file).open("rb"), True  # noqa: SIM115 - closed by __exit__
        else:
            stream, close = file, False
        start_position = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start_position
        stream.seek(start_position)
        return cls(stream, size, mime, name, close)

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.close:
            self.stream.close()

    def start_request(self) -> Upload:
        return Upload(
            {
                "x-goog-upload-protocol": "resumable",
                "x-goog-upload-command": "start",
                "x-goog-upload-header-content-length": str(self.size),
                "x-goog-upload-header-content-type": self.mime_type,
            }
        )

    def chunks(self) -> list[tuple[int, int]]:
        """(offset, length) of every chunk; one empty chunk for an empty file."""
        return [(o, min(CHUNK_BYTES, self.size - o)) for o in range(0, self.size, CHUNK_BYTES)] or [
            (0, 0)
        ]

    def chunk_request(self, url: str, offset: int, length: int) -> Upload:
        last = offset + length >= self.size
        return Upload(
            {
                "x-goog-upload-command": "upload, finalize" if last else "upload",
                "x-goog-upload-offset": str(offset),
            },
            url=url,
            content=self.stream.read(length),
        )


def send_resumable(
    transport: SyncTransport, path: str, body: dict[str, Any], source: _Source
) -> httpx.Response:
    """Start a session at `upload/{ver}/{path}` with `body`, send `source` in 8 MiB chunks,
    and return the answer to the final chunk."""
    started = transport.send("POST", path, body=body, upload=source.start_request())
    url = started.headers["x-goog-upload-url"]
    for offset, length in source.chunks():
        answer = transport.send("POST", "", upload=source.chunk_request(url, offset, length))
    return answer


async def asend_resumable(
    transport: AsyncTransport, path: str, body: dict[str, Any], source: _Source
) -> AsyncResponse:
    """The async twin of `send_resumable`; the stream is read off the event loop."""
    started = await transport.send("POST", path, body=body, upload=source.start_request())
    url = started.headers["x-goog-upload-url"]
    for offset, length in source.chunks():
        chunk = await asyncio.to_thread(source.chunk_request, url, offset, length)
        answer = await transport.send("POST", "", upload=chunk)
    return answer


def _upload_body(source: _Source, config: UploadFileConfig) -> dict[str, Any]:
    # snake_case inside `file`, as the official SDK sends it (wire contract §5.1).
    described: dict[str, Any] = {"mime_type": source.mime_type, "size_bytes": source.size}
    if config.display_name or source.path_name:
        described["display_name"] = config.display_name or source.path_name
    if config.name:
        described["name"] = _file_name(config.name)
    return {"file": described}


def _page(data: dict[str, Any]) -> Page[File]:
    return [File.model_validate(f) for f in data.get("files") or []], data.get("nextPageToken")


class Files(SyncResource):
    def upload(
        self,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes],
        config: UploadFileConfig | dict[str, Any] | None = None,
    ) -> File:
        """Upload with Google's resumable protocol, in 8 MiB chunks; returns the new File."""
        options = UploadFileConfig.model_validate(config or {})
        with _Source.open(file, options.mime_type) as source:
            answer = send_resumable(self._transport, "files", _upload_body(source, options), source)
        return File.model_validate(answer.json()["file"])

    def get(self, *, name: str) -> File:
        return File.model_validate(self._transport.request("GET", _file_name(name)))

    def list(self, *, page_size: int | None = None) -> Pager[File]:
        def fetch(token: str | None) -> Page[File]:
            params: dict[str, Any] = {"pageSize": page_size} if page_size else {}
            if token:
                params["pageToken"] = token
            return _page(self._transport.request("GET", "files", params=params))

        return Pager(fetch, fetch(None))

    def delete(self, *, name: str) -> None:
        self._transport.send("DELETE", _file_name(name))

    def download(self, *, file: str | File | Video | GeneratedVideo) -> bytes:
        """The file's bytes; for a video, also kept in its `video_bytes`."""
        path = f"{_file_name(file)}:download"
        data = self._transport.send("GET", path, params={"alt": "media"}).content
        video = file.video if isinstance(file, GeneratedVideo) else file
        if isinstance(video, Video):
            video.video_bytes = data
        return data


class AsyncFiles(AsyncResource):
    async def upload(
        self,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes],
        config: UploadFileConfig | dict[str, Any] | None = None,
    ) -> File:
        options = UploadFileConfig.model_validate(config or {})
        with _Source.open(file, options.mime_type) as source:
            answer = await asend_resumable(
                self._transport, "files", _upload_body(source, options), source
            )
        return File.model_validate(answer.json()["file"])

    async def get(self, *, name: str) -> File:
        return File.model_validate(await self._transport.request("GET", _file_name(name)))

    async def list(self, *, page_size: int | None = None) -> AsyncPager[File]:
        async def fetch(token: str | None) -> Page[File]:
            params: dict[str, Any] = {"pageSize": page_size} if page_size else {}
            if token:
                params["pageToken"] = token
            return _page(await self._transport.request("GET", "files", params=params))

        return AsyncPager(fetch, await fetch(None))

    async def delete(self, *, name: str) -> None:
        await self._transport.send("DELETE", _file_name(name))

    async def download(self, *, file: str | File | Video | GeneratedVideo) -> bytes:
        path = f"{_file_name(file)}:download"
        data = (await self._transport.send("GET", path, params={"alt": "media"})).content
        video = file.video if isinstance(file, GeneratedVideo) else file
        if isinstance(video, Video):
            video.video_bytes = data
        return data

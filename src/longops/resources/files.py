"""Files: the generated videos (and, later, uploads) a server keeps for a while."""

from __future__ import annotations

import asyncio
import io
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from longops._pagers import AsyncPager, Page, Pager
from longops._transport import Upload
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
    """What is being uploaded, opened: its stream, size and the start request."""

    stream: IO[bytes]
    size: int
    start: Upload
    body: dict[str, Any]
    close: bool

    @classmethod
    def open(
        cls, file: str | os.PathLike[str] | bytes | IO[bytes], config: UploadFileConfig | None
    ) -> _Source:
        config = config or UploadFileConfig()
        name = None
        if isinstance(file, bytes):
            stream: IO[bytes] = io.BytesIO(file)
            close = False
        elif isinstance(file, str | os.PathLike):
            name = Path(file).name
            stream, close = Path(file).open("rb"), True  # noqa: SIM115 - upload() closes it
        else:
            stream, close = file, False
        start_position = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start_position
        stream.seek(start_position)
        mime = config.mime_type or (name and mimetypes.guess_type(name)[0])
        if mime is None:
            raise ValueError("Pass config.mime_type: it cannot be guessed for this upload.")
        headers = {
            "x-goog-upload-protocol": "resumable",
            "x-goog-upload-command": "start",
            "x-goog-upload-header-content-length": str(size),
            "x-goog-upload-header-content-type": mime,
        }
        described: dict[str, Any] = {"mime_type": mime, "size_bytes": size}
        if config.display_name or name:
            described["display_name"] = config.display_name or name
        if config.name:
            described["name"] = _file_name(config.name)
        return cls(stream, size, Upload(headers), {"file": described}, close)

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
        source = _Source.open(file, UploadFileConfig.model_validate(config or {}))
        try:
            started = self._transport.send("POST", "files", body=source.body, upload=source.start)
            url = started.headers["x-goog-upload-url"]
            for offset, length in source.chunks():
                answer = self._transport.send(
                    "POST", "", upload=source.chunk_request(url, offset, length)
                )
            return File.model_validate(answer.json()["file"])
        finally:
            if source.close:
                source.stream.close()

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
        source = _Source.open(file, UploadFileConfig.model_validate(config or {}))
        try:
            started = await self._transport.send(
                "POST", "files", body=source.body, upload=source.start
            )
            url = started.headers["x-goog-upload-url"]
            for offset, length in source.chunks():
                chunk = await asyncio.to_thread(source.chunk_request, url, offset, length)
                answer = await self._transport.send("POST", "", upload=chunk)
            return File.model_validate(answer.json()["file"])
        finally:
            if source.close:
                source.stream.close()

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

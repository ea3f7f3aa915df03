"""Files: the generated videos (and, later, uploads) a server keeps for a while."""

from __future__ import annotations

import asyncio
import io
import mimetypes
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, overload

import httpx

from longops._pagers import AsyncPager, Page, Pager
from longops._transport import AsyncResponse, AsyncTransport, SyncTransport, Upload
from longops.resources._base import AsyncResource, SyncResource, options, resource_name
from longops.types import (
    DeleteFileConfig,
    DeleteFileResponse,
    DownloadFileConfig,
    File,
    GeneratedVideo,
    GetFileConfig,
    ListFilesConfig,
    UploadFileConfig,
    Video,
)

__all__ = ["AsyncFiles", "Files"]


# What names a file: a name or bare id, a File, a (generated) video whose uri points at one,
# or google-genai's File, Video or GeneratedVideo (read by their attributes).
FileLike = str | File | Video | GeneratedVideo | object


def _video_of(file: FileLike) -> Video | object | None:
    """The video `file` is or holds, longops's or google-genai's; None for anything else."""
    if isinstance(file, GeneratedVideo):
        return file.video
    if isinstance(file, Video):
        return file
    if isinstance(file, str | File):
        return None
    inner: object = getattr(file, "video", None)
    if inner is not None:
        return inner
    if hasattr(file, "video_bytes"):
        return file
    return None


def _file_name(file: FileLike) -> str:
    """`files/{id}` for a name, a bare id, a File, or a video whose uri points at one."""
    video = _video_of(file)
    if video is not None:
        uri = getattr(video, "uri", None)
        if not isinstance(uri, str):
            raise ValueError("This video has no uri to download.")
        marker = uri.find("files/")
        if marker < 0:
            raise ValueError(f"Not a file uri: {uri!r}.")
        tail = uri[marker + len("files/") :]
        return f"files/{tail.split(':')[0].split('?')[0].split('/')[0]}"
    name = file if isinstance(file, str) else getattr(file, "name", None)
    if not isinstance(name, str) or not name:
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


def _list_options(page_size: int | None, config: object) -> tuple[dict[str, Any], str | None]:
    """The first page's query and token, from longops's `page_size=` or google-genai's config."""
    chosen = options(config, ListFilesConfig)
    if page_size is not None and chosen.page_size is not None:
        raise ValueError("Pass page_size once: as `page_size` or in `config`.")
    size = page_size if page_size is not None else chosen.page_size
    return ({"pageSize": size} if size else {}), chosen.page_token


def _keep_bytes(file: FileLike, data: bytes) -> None:
    """Set a downloaded video's `video_bytes`, as google-genai does."""
    video = _video_of(file)
    if video is not None:
        video.video_bytes = data  # type: ignore[attr-defined]  # longops's or google-genai's


# Where `download` may write: a path, or a binary stream open for writing.
Destination = str | os.PathLike[str] | IO[bytes] | io.IOBase


def _write(destination: Destination, chunks: Iterable[bytes]) -> None:
    if isinstance(destination, str | os.PathLike):
        with Path(destination).open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
    else:
        for chunk in chunks:
            destination.write(chunk)


async def _awrite(destination: Destination, chunks: AsyncIterator[bytes]) -> None:
    """The async twin of `_write`: each chunk as it arrives, written off the event loop, so
    a large file is never held in memory whole."""
    if isinstance(destination, str | os.PathLike):
        f = await asyncio.to_thread(Path(destination).open, "wb")
        try:
            async for chunk in chunks:
                await asyncio.to_thread(f.write, chunk)
        finally:
            await asyncio.to_thread(f.close)
    else:
        async for chunk in chunks:
            await asyncio.to_thread(destination.write, chunk)


class Files(SyncResource):
    def upload(
        self,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes],
        config: UploadFileConfig | dict[str, Any] | object | None = None,
    ) -> File:
        """Upload with Google's resumable protocol, in 8 MiB chunks; returns the new File."""
        chosen = options(config, UploadFileConfig)
        with _Source.open(file, chosen.mime_type) as source:
            answer = send_resumable(self._transport, "files", _upload_body(source, chosen), source)
        return File.model_validate(answer.json()["file"])

    def get(
        self, *, name: str, config: GetFileConfig | dict[str, Any] | object | None = None
    ) -> File:
        options(config, GetFileConfig)
        return File.model_validate(self._transport.request("GET", _file_name(name)))

    def list(
        self,
        *,
        page_size: int | None = None,
        config: ListFilesConfig | dict[str, Any] | object | None = None,
    ) -> Pager[File]:
        """The files, a page at a time (`page_size`, or google-genai's `config`)."""
        params, first = _list_options(page_size, config)

        def fetch(token: str | None) -> Page[File]:
            query = {**params, "pageToken": token} if token else params
            return _page(self._transport.request("GET", "files", params=query))

        return Pager(fetch, fetch(first))

    def delete(
        self, *, name: str, config: DeleteFileConfig | dict[str, Any] | object | None = None
    ) -> DeleteFileResponse:
        options(config, DeleteFileConfig)
        self._transport.send("DELETE", _file_name(name))
        return DeleteFileResponse()

    @overload
    def download(
        self,
        *,
        file: FileLike,
        destination: None = None,
        config: DownloadFileConfig | dict[str, Any] | object | None = None,
    ) -> bytes: ...
    @overload
    def download(
        self,
        *,
        file: FileLike,
        destination: Destination,
        config: DownloadFileConfig | dict[str, Any] | object | None = None,
    ) -> None: ...
    def download(
        self,
        *,
        file: FileLike,
        destination: Destination | None = None,
        config: DownloadFileConfig | dict[str, Any] | object | None = None,
    ) -> bytes | None:
        """The file's bytes (for a video, also kept in its `video_bytes`), or, given a
        `destination` path or stream, the file streamed there and None, as google-genai does."""
        options(config, DownloadFileConfig)
        path = f"{_file_name(file)}:download"
        if destination is not None:
            response = self._transport.send("GET", path, params={"alt": "media"}, stream=True)
            try:
                _write(destination, response.iter_bytes(1 << 20))
            finally:
                response.close()
            return None
        data = self._transport.send("GET", path, params={"alt": "media"}).content
        _keep_bytes(file, data)
        return data


class AsyncFiles(AsyncResource):
    async def upload(
        self,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes],
        config: UploadFileConfig | dict[str, Any] | object | None = None,
    ) -> File:
        chosen = options(config, UploadFileConfig)
        with _Source.open(file, chosen.mime_type) as source:
            answer = await asend_resumable(
                self._transport, "files", _upload_body(source, chosen), source
            )
        return File.model_validate(answer.json()["file"])

    async def get(
        self, *, name: str, config: GetFileConfig | dict[str, Any] | object | None = None
    ) -> File:
        options(config, GetFileConfig)
        return File.model_validate(await self._transport.request("GET", _file_name(name)))

    async def list(
        self,
        *,
        page_size: int | None = None,
        config: ListFilesConfig | dict[str, Any] | object | None = None,
    ) -> AsyncPager[File]:
        params, first = _list_options(page_size, config)

        async def fetch(token: str | None) -> Page[File]:
            query = {**params, "pageToken": token} if token else params
            return _page(await self._transport.request("GET", "files", params=query))

        return AsyncPager(fetch, await fetch(first))

    async def delete(
        self, *, name: str, config: DeleteFileConfig | dict[str, Any] | object | None = None
    ) -> DeleteFileResponse:
        options(config, DeleteFileConfig)
        await self._transport.send("DELETE", _file_name(name))
        return DeleteFileResponse()

    @overload
    async def download(
        self,
        *,
        file: FileLike,
        destination: None = None,
        config: DownloadFileConfig | dict[str, Any] | object | None = None,
    ) -> bytes: ...
    @overload
    async def download(
        self,
        *,
        file: FileLike,
        destination: Destination,
        config: DownloadFileConfig | dict[str, Any] | object | None = None,
    ) -> None: ...
    async def download(
        self,
        *,
        file: FileLike,
        destination: Destination | None = None,
        config: DownloadFileConfig | dict[str, Any] | object | None = None,
    ) -> bytes | None:
        options(config, DownloadFileConfig)
        path = f"{_file_name(file)}:download"
        if destination is not None:
            response = await self._transport.send("GET", path, params={"alt": "media"}, stream=True)
            try:
                await _awrite(destination, response.aiter_bytes(1 << 20))
            finally:
                await response.aclose()
            return None
        data = (await self._transport.send("GET", path, params={"alt": "media"})).content
        _keep_bytes(file, data)
        return data

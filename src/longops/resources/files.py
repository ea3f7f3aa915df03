"""Files: the generated videos (and, later, uploads) a server keeps for a while."""

from __future__ import annotations

from typing import Any

from longops._pagers import AsyncPager, Page, Pager
from longops.resources._base import AsyncResource, SyncResource, resource_name
from longops.types import File, GeneratedVideo, Video

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


def _page(data: dict[str, Any]) -> Page[File]:
    return [File.model_validate(f) for f in data.get("files") or []], data.get("nextPageToken")


class Files(SyncResource):
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

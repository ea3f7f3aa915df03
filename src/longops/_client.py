"""`Client`, the entry point, and `AsyncClient`, its async twin reached as `client.aio`."""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from longops._transport import AsyncTransport, SyncTransport, TransportConfig
from longops.resources import (
    AsyncFiles,
    AsyncFileSearchStores,
    AsyncModels,
    AsyncOperations,
    AsyncWebhooks,
    Files,
    FileSearchStores,
    Models,
    Operations,
    Webhooks,
)
from longops.resources._base import ApiContext
from longops.types import HttpOptions

__all__ = ["AsyncClient", "Client"]

# Generated files are served at `files/{id}:download`; Gemini video uris point there either
# as `files/{id}` or as a full URL whose host and version are ignored (wire contract §4.2).
_FILE_URI = re.compile(r"(?:https?://[^/]+/(?:[^?#]*?/)?)?files/([a-z0-9]+)")


class Client:
    """A client for a longops server, in Gemini (default) or Vertex (`vertexai=True`) mode.

    The two modes differ in API version and in how video operations are polled; `project`
    and `location` matter only in Vertex mode. Resources are attributes (`client.operations`),
    and each has an async twin under `client.aio`.
    """

    operations: Operations
    models: Models
    files: Files
    file_search_stores: FileSearchStores
    webhooks: Webhooks

    def __init__(
        self,
        api_key: str | None = None,
        *,
        vertexai: bool = False,
        project: str | None = None,
        location: str | None = None,
        base_url: str | None = None,
        http_options: HttpOptions | dict[str, Any] | None = None,
    ) -> None:
        options = (
            http_options
            if isinstance(http_options, HttpOptions)
            else HttpOptions.model_validate(http_options or {})
        )
        if base_url is not None:
            options = options.model_copy(update={"base_url": base_url})
        self._config = TransportConfig.resolve(
            options,
            api_key=api_key if api_key is not None else os.environ.get("LONGOPS_API_KEY"),
            default_api_version="v1beta1" if vertexai else "v1beta",
        )
        self._transport = SyncTransport(self._config)
        self._context = ApiContext(
            vertexai=vertexai,
            project=project,
            location=location,
            download=self._download,
            download_to=self._download_to,
        )
        self.operations = Operations(self._transport, self._context)
        self.models = Models(self._transport, self._context)
        self.files = Files(self._transport, self._context)
        self.file_search_stores = FileSearchStores(self._transport, self._context)
        self.webhooks = Webhooks(self._transport, self._context)

    @cached_property
    def aio(self) -> AsyncClient:
        # Built on first use, so sync-only programs never create an async connection pool.
        return AsyncClient(AsyncTransport(self._config), self._context)

    def _download(self, uri: str) -> bytes:
        match = _FILE_URI.match(uri)
        if match is None:
            raise ValueError(
                f"Cannot download {uri!r}: only files/{{id}} uris of a longops server are "
                "downloadable (a gs:// uri is read from the bucket itself)."
            )
        path = f"files/{match.group(1)}:download"
        return self._transport.send("GET", path, params={"alt": "media"}).content

    def _download_to(self, uri: str, destination: Path) -> None:
        """Stream a video to disk, so saving never holds the whole file in memory."""
        match = _FILE_URI.match(uri)
        if match is None:
            raise ValueError(f"Cannot download {uri!r}: not a files/{{id}} uri.")
        path = f"files/{match.group(1)}:download"
        response = self._transport.send("GET", path, params={"alt": "media"}, stream=True)
        try:
            with destination.open("wb") as f:
                for chunk in response.iter_bytes(1 << 20):
                    f.write(chunk)
        finally:
            response.close()

    def close(self) -> None:
        """Close the sync connection pool; `client.aio` is closed by `await client.aio.aclose()`."""
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """The async twin of `Client`: the same resources, awaited.

    `await client.aio.files.download(file=video)` fetches a video's bytes on the event loop.
    `Video.data` and `Video.save` are plain (sync) methods, so they
    use the sync client even on videos the async one returned; call them through
    `asyncio.to_thread` to keep the event loop free.
    """

    operations: AsyncOperations
    models: AsyncModels
    files: AsyncFiles
    file_search_stores: AsyncFileSearchStores
    webhooks: AsyncWebhooks

    def __init__(self, transport: AsyncTransport, context: ApiContext) -> None:
        self._transport = transport
        self.operations = AsyncOperations(transport, context)
        self.models = AsyncModels(transport, context)
        self.files = AsyncFiles(transport, context)
        self.file_search_stores = AsyncFileSearchStores(transport, context)
        self.webhooks = AsyncWebhooks(transport, context)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

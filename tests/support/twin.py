"""Drive the sync and the async SDK through one awaitable surface.

Tests are written once against `Twin`; the `api` fixture runs each of them twice,
once through `client.operations` (in a thread, so the test's loop stays free) and
once through `client.aio.operations`.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Literal

from longops import Client

Mode = Literal["sync", "async"]


class _Resource:
    def __init__(self, twin: Twin, name: str) -> None:
        self._twin = twin
        self._name = name

    def __getattr__(self, method: str) -> Any:
        twin = self._twin
        if twin.mode == "sync":
            sync_fn = getattr(getattr(twin.client, self._name), method)

            async def call_sync(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(sync_fn, *args, **kwargs)

            return call_sync
        async_fn = getattr(getattr(twin.client.aio, self._name), method)

        async def call_async(*args: Any, **kwargs: Any) -> Any:
            result = async_fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call_async


class Twin:
    def __init__(self, client: Client, mode: Mode) -> None:
        self.client = client
        self.mode = mode

    def __getattr__(self, resource: str) -> _Resource:
        return _Resource(self, resource)

    async def collect(self, pager: Any, limit: int | None = None) -> list[Any]:
        """Every item of a pager (following pages), sync or async."""
        if self.mode == "sync":

            def drain() -> list[Any]:
                items = []
                for item in pager:
                    items.append(item)
                    if limit is not None and len(items) >= limit:
                        break
                return items

            return await asyncio.to_thread(drain)
        items = []
        async for item in pager:
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
        return items

    async def aclose(self) -> None:
        self.client.close()
        await self.client.aio.aclose()

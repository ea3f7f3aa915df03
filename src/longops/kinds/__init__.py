"""Everything needed to write an operation kind, and the kinds longops ships.

A kind is an async function decorated with `@kind(...)` in any importable module;
`longops serve --load package.module` registers every kind defined there::

    from pydantic import BaseModel
    from longops.kinds import Context, kind

    class Resize(BaseModel):
        url: str
        width: int

    @kind("acme.resize", request=Resize)
    async def resize(ctx: Context, request: Resize) -> dict:
        await ctx.report_progress(50)
        return {"url": request.url, "width": request.width}

Start one with `client.operations.start("acme.resize", {"url": ..., "width": 64})`
or `POST /v1beta/kinds/acme.resize:start`.
"""

from typing import Any

from longops.engine.context import Context, OperationCancelled
from longops.engine.failures import OperationFailed
from longops.engine.registry import Kind, Registry, kind
from longops.kinds.file_search.importer import FileSearchSettings, file_search_kinds
from longops.kinds.sleep import sleep
from longops.kinds.videos.generate import generate_videos_kind
from longops.kinds.videos.settings import VideoSettings

BUILTIN_KINDS: tuple[Kind[Any], ...] = (sleep,)


def default_registry(videos: VideoSettings | None = None) -> Registry:
    """The built-in kinds; video generation configured from `videos` or the environment."""
    registry = Registry()
    for builtin in BUILTIN_KINDS:
        registry.add(builtin)
    registry.add(generate_videos_kind(videos or VideoSettings.from_env()))
    for search in file_search_kinds(FileSearchSettings.from_env()):
        registry.add(search)
    return registry


__all__ = [
    "BUILTIN_KINDS",
    "Context",
    "Kind",
    "OperationCancelled",
    "OperationFailed",
    "VideoSettings",
    "default_registry",
    "kind",
]

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

This package holds only that authoring API, so writing a kind imports nothing heavy;
the kinds longops ships are in `longops.kinds.builtin` and their own packages.
"""

from longops.engine.context import Context, OperationCancelled
from longops.engine.failures import OperationFailed
from longops.engine.registry import Kind, kind

__all__ = ["Context", "Kind", "OperationCancelled", "OperationFailed", "kind"]

"""Kinds for bench/scale_out.py: `bench.noop` does nothing; `bench.pause` sleeps a moment.

Loaded into `longops serve` / `longops worker` with `--load _noop_kind` (bench/ on
PYTHONPATH). Neither reports progress, so a worker writes each operation once: its
`finish`.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from longops.kinds import Context, kind


class NoopRequest(BaseModel):
    pass


class PauseRequest(BaseModel):
    seconds: float = Field(default=0.02, ge=0, le=10)


@kind("bench.noop", request=NoopRequest)
async def noop(ctx: Context, request: NoopRequest) -> None:
    """Return at once."""
    return None


@kind("bench.pause", request=PauseRequest)
async def pause(ctx: Context, request: PauseRequest) -> None:
    """Sleep `seconds`, then return."""
    await asyncio.sleep(request.seconds)

"""Kinds used by the tests: each makes a run observable from outside the worker."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel

from longops.kinds import Context, kind


def _journal(path: str, line: str) -> None:
    with Path(path).open("a") as f:
        f.write(line + "\n")


def journal(path: Path) -> list[tuple[str, str, int, int]]:
    """The (event, operation id, attempt, pid) lines `test.record` wrote to `path`."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(event, id, int(attempt), int(pid)) for event, id, attempt, pid in rows]


class RecordRequest(BaseModel):
    journal: str
    """File that gets one line per attempt started and finished: how tests count runs."""
    seconds: float = 0.0
    steps: int = 1


@kind("test.record", request=RecordRequest, max_attempts=3)
async def record(ctx: Context, request: RecordRequest) -> dict[str, object]:
    """Journal each attempt (start and end), with the worker's pid."""
    _journal(request.journal, f"start {ctx.operation_id} {ctx.attempt} {os.getpid()}")
    for step in range(1, request.steps + 1):
        await asyncio.sleep(request.seconds / request.steps)
        await ctx.report_progress(100 * step / request.steps)
    _journal(request.journal, f"end {ctx.operation_id} {ctx.attempt} {os.getpid()}")
    return {"attempt": ctx.attempt, "pid": os.getpid()}


class FlakyRequest(BaseModel):
    failures: int
    """Attempts that crash with an unexpected exception before one succeeds."""


@kind("test.flaky", request=FlakyRequest, max_attempts=3)
async def flaky(ctx: Context, request: FlakyRequest) -> dict[str, object]:
    if ctx.attempt <= request.failures:
        raise RuntimeError(f"secret internal detail on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


class CpuRequest(BaseModel):
    n: int


def _count_primes(n: int) -> int:
    return sum(all(i % d for d in range(2, int(i**0.5) + 1)) for i in range(2, n))


@kind("test.cpu", request=CpuRequest)
async def cpu(ctx: Context, request: CpuRequest) -> dict[str, object]:
    primes = await ctx.run_in_process(_count_primes, request.n)
    return {"primes": primes}


class BlockingRequest(BaseModel):
    journal: str
    seconds: float
    """How long attempt 1 blocks in a thread; later attempts return at once."""
    heed_stop: bool = False
    """Whether the thread polls `ctx.stop_requested`, as a well-behaved handler does."""


def _block(ctx: Context, request: BlockingRequest) -> None:
    deadline = time.monotonic() + request.seconds
    while time.monotonic() < deadline:
        if request.heed_stop and ctx.stop_requested.is_set():
            break
        time.sleep(0.01)
    _journal(request.journal, f"end {ctx.operation_id} {ctx.attempt} {os.getpid()}")


@kind("test.blocking", request=BlockingRequest, max_attempts=3)
async def blocking(ctx: Context, request: BlockingRequest) -> dict[str, object]:
    """Journal the start of each attempt, and the end of its thread (which the attempt
    can't interrupt), so tests see whether two attempts ever overlap."""
    _journal(request.journal, f"start {ctx.operation_id} {ctx.attempt} {os.getpid()}")
    if ctx.attempt == 1:
        await ctx.run_in_thread(_block, ctx, request)
    else:
        _journal(request.journal, f"end {ctx.operation_id} {ctx.attempt} {os.getpid()}")
    return {"attempt": ctx.attempt, "pid": os.getpid()}

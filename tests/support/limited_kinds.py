"""Kinds with deployment-wide limits, run by worker processes in tests: each attempt
journals its start and its end with the time, so a test reads from one file how many
ran at once across every process, and when each started."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from longops.kinds import Context, kind


class TimedRequest(BaseModel):
    journal: str
    """File that gets one line per attempt started and finished."""
    seconds: float = 0.0
    """How long each attempt runs."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a journal: an attempt's start or end, in the worker that ran it."""

    event: str
    id: str
    attempt: int
    pid: int
    time: float
    """`time.time()` in the worker: one clock for every process of the host."""


def journal(path: Path) -> list[Entry]:
    """The entries the kinds here wrote to `path`, in the order they were written (each
    is one append of one short line, so lines from processes never interleave)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        event, id, attempt, pid, at = line.split()
        entries.append(Entry(event, id, int(attempt), int(pid), float(at)))
    return entries


def _write(path: str, event: str, ctx: Context) -> None:
    line = f"{event} {ctx.operation_id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n"
    with Path(path).open("a") as f:
        f.write(line)


async def _timed(ctx: Context, request: TimedRequest) -> dict[str, object]:
    """Journal the attempt's start, run for `seconds`, journal its end."""
    _write(request.journal, "start", ctx)
    await asyncio.sleep(request.seconds)
    _write(request.journal, "end", ctx)
    return {"attempt": ctx.attempt, "pid": os.getpid()}


# Attempts enough for the workers a test kills: a run out of attempts would fail its
# operation rather than show that the work is recovered.
limited = kind("test.limited", request=TimedRequest, max_attempts=10, concurrency=2)(_timed)
keyed = kind("test.keyed", request=TimedRequest, max_attempts=10, key_concurrency=1)(_timed)
rated = kind("test.rated", request=TimedRequest, rate=20)(_timed)
timed = kind("test.timed", request=TimedRequest, max_attempts=10)(_timed)
"""No limit of its own: the operator's settings give it one."""

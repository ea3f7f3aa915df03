"""Operations as the wire shows them (google.longrunning.Operation in proto-JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from longops.engine import Kind, OperationRecord, Registry, State

_DEFAULT_METADATA_TYPE = "type.googleapis.com/longops.v1.OperationMetadata"
_DEFAULT_RESPONSE_TYPE = "type.googleapis.com/longops.v1.OperationResponse"


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with a `Z` and microseconds, as Google's JSON timestamps are.

    Every operation shown carries up to four of these; formatting the date and time
    once per second (cached) and only the fraction per call keeps them cheap.
    """
    micros = round(seconds * 1_000_000)
    whole, fraction = divmod(micros, 1_000_000)
    return f"{_whole_second(whole)}.{fraction:06d}Z"


@lru_cache(maxsize=4096)
def _whole_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def render_operation(
    record: OperationRecord, kind: Kind[Any] | None, waiting: tuple[str, int] | None = None
) -> dict[str, Any]:
    """The operation's JSON; `waiting` (a PENDING one's `Engine.waiting`, which only a
    read of one operation computes) adds `waitReason` and `queuePosition`."""
    metadata: dict[str, Any] = {
        "@type": kind.metadata_type if kind else _DEFAULT_METADATA_TYPE,
        "progressPercent": 0,  # until the handler reports, so every client can read it
        **record.metadata,
        "kind": record.kind,
        "state": record.state.value,
        "createTime": timestamp(record.create_time),
        "updateTime": timestamp(record.update_time),
        "attempt": record.attempt,
        "priority": record.priority,
    }
    if record.state is State.PENDING and record.not_before > 0:
        # Not claimed before then: a delayed start's time, or a retry's backoff.
        metadata["scheduleTime"] = timestamp(record.not_before)
    if record.concurrency_key:
        metadata["concurrencyKey"] = record.concurrency_key
    if waiting is not None:
        metadata["waitReason"], metadata["queuePosition"] = waiting
    if record.start_time is not None:
        metadata["startTime"] = timestamp(record.start_time)
    if record.end_time is not None:
        metadata["endTime"] = timestamp(record.end_time)
    operation: dict[str, Any] = {"name": record.name, "metadata": metadata, "done": record.done}
    if record.state is State.SUCCEEDED:
        response = record.response or {}
        if "@type" not in response:
            response = {"@type": kind.response_type if kind else _DEFAULT_RESPONSE_TYPE, **response}
        operation["response"] = response
    elif record.error is not None and record.done:
        operation["error"] = record.error
    return operation


def _shown(record: OperationRecord) -> tuple[Any, ...]:
    """Every field `render_operation` reads: records with equal tuples render the same
    JSON. `update_time` comes first, as every write of the store changes it."""
    return (
        record.update_time,
        record.state,
        record.attempt,
        record.metadata,
        record.response,
        record.error,
        record.start_time,
        record.end_time,
        record.name,
        record.kind,
        record.create_time,
        record.priority,
        record.not_before,
        record.concurrency_key,
    )


class RenderCache:
    """The rendered JSON of operations lately shown, reused while nothing shown changed.

    Polling one operation is the hot path, and most polls find it as it was. The key is
    what the render reads, not the record object: SQLite's read cache hands back the
    same object until the row changes, but PostgreSQL decodes a new one on every read.
    Comparing it costs a tuple; the fields a render reads are compared by value, so
    even two writes within one clock tick miss.
    """

    def __init__(self, registry: Registry, size: int = 10_000) -> None:
        self.registry = registry
        self.size = size
        self._bodies: dict[str, tuple[tuple[Any, ...], bytes]] = {}

    def body(self, record: OperationRecord) -> bytes:
        shown = _shown(record)
        cached = self._bodies.get(record.id)
        if cached is not None and cached[0] == shown:
            return cached[1]
        body = orjson.dumps(render_operation(record, self.registry.get(record.kind)))
        if record.id not in self._bodies and len(self._bodies) >= self.size:
            del self._bodies[next(iter(self._bodies))]  # the oldest entry
        self._bodies[record.id] = (shown, body)
        return body

    def waiting_body(self, record: OperationRecord, waiting: tuple[str, int]) -> bytes:
        """A PENDING operation's JSON with why it waits and its position: rendered on
        each read and never cached, as those change without a write to the operation
        (one ahead of it is claimed, a limit frees)."""
        kind = self.registry.get(record.kind)
        return orjson.dumps(render_operation(record, kind, waiting))

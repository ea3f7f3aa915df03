"""Operations as the wire shows them (google.longrunning.Operation in proto-JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from longops.engine import Kind, OperationRecord, State

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


def render_operation(record: OperationRecord, kind: Kind[Any] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "@type": kind.metadata_type if kind else _DEFAULT_METADATA_TYPE,
        "progressPercent": 0,  # until the handler reports, so every client can read it
        **record.metadata,
        "state": record.state.value,
        "createTime": timestamp(record.create_time),
        "updateTime": timestamp(record.update_time),
        "attempt": record.attempt,
    }
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

"""Operations as the wire shows them (google.longrunning.Operation in proto-JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from longops.engine import Kind, OperationRecord, State

_DEFAULT_METADATA_TYPE = "type.googleapis.com/longops.v1.OperationMetadata"
_DEFAULT_RESPONSE_TYPE = "type.googleapis.com/longops.v1.OperationResponse"


@lru_cache(maxsize=65536)
def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with a `Z`, as Google's JSON timestamps are.

    Cached because polling clients ask for the same operation, and so the same
    instants, over and over; formatting was a fifth of a GET's cost.
    """
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_operation(record: OperationRecord, kind: Kind[Any] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "@type": kind.metadata_type if kind else _DEFAULT_METADATA_TYPE,
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

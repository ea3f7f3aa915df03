"""The stored columns of operations and files, and rows back into records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from longops.engine.records import FileRecord, OperationRecord, State

OPERATION_COLUMNS = (
    "seq, id, name, kind, tenant, request_id, request, state, metadata, response, error,"
    " attempt, max_attempts, cancel_requested, create_time, update_time, start_time, end_time,"
    " priority, not_before, concurrency_key, turn"
)
OPERATION_COLUMN_NAMES = tuple(name.strip() for name in OPERATION_COLUMNS.split(","))
FILE_COLUMNS = (
    "id, tenant, display_name, mime_type, size_bytes, sha256, source, blob_key,"
    " create_time, expire_time, seq"
)
DONE_STATES = "('SUCCEEDED', 'FAILED', 'CANCELLED')"
UNFINISHED_STATES = "('PENDING', 'RUNNING')"
OUT_OF_ATTEMPTS = "attempt - releases >= max_attempts"
"""The running attempt was the last one allowed. Releases (a worker handing an operation
back at shutdown) are not failures, so they don't count against the limit."""
MAX_SEQ = (1 << 63) - 1
"""Above every sequence number: the keyset bound of a first page."""


def operation(row: Sequence[Any], load: Callable[[Any], Any]) -> OperationRecord:
    """A row of `OPERATION_COLUMNS`; `load` decodes the JSON columns as the dialect stores them."""
    return OperationRecord(
        seq=row[0],
        id=row[1],
        name=row[2],
        kind=row[3],
        tenant=row[4],
        request_id=row[5],
        request=load(row[6]),
        state=State(row[7]),
        metadata=load(row[8]),
        response=None if row[9] is None else load(row[9]),
        error=None if row[10] is None else load(row[10]),
        attempt=row[11],
        max_attempts=row[12],
        cancel_requested=bool(row[13]),
        # float(): SQLite's RETURNING gives a whole-number REAL back as an int.
        create_time=float(row[14]),
        update_time=float(row[15]),
        start_time=None if row[16] is None else float(row[16]),
        end_time=None if row[17] is None else float(row[17]),
        priority=row[18],
        not_before=float(row[19]),
        concurrency_key=row[20],
        turn=row[21],
    )


def file(row: Sequence[Any]) -> FileRecord:
    """A row of `FILE_COLUMNS`."""
    record = FileRecord(*row)
    record.create_time, record.expire_time = float(record.create_time), float(record.expire_time)
    return record

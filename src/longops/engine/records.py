"""What the store keeps about an operation, independent of any database."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class State(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def done(self) -> bool:
        return self in _DONE


_DONE = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

MIN_PRIORITY, DEFAULT_PRIORITY, MAX_PRIORITY = 0, 500, 1000
"""An operation's priority: higher is claimed first; the default is the middle."""


@dataclass(slots=True)
class NewOperation:
    """An operation as a caller asks for it, before the store assigns anything."""

    id: str
    name: str
    kind: str
    request: dict[str, Any]
    tenant: str = ""
    request_id: str | None = None
    max_attempts: int = 3
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook: dict[str, Any] | None = None
    """A per-request webhook (`{"uris": [...], "userMetadata": {...}}`), told when it ends."""
    priority: int = DEFAULT_PRIORITY
    """Higher is claimed first; equal priorities in the order they were created."""
    not_before: float = 0.0
    """Not claimed before this time (a delayed start); 0 is at once."""
    concurrency_key: str = ""
    """The tenant's key for per-key limits (`longops.engine.limits`); "" for none."""

    def stored(self, seq: int, turn: int, now: float) -> OperationRecord:
        """The row a create writes: stores return this rather than read back (and
        decode) what they were just given."""
        return OperationRecord(
            seq=seq,
            id=self.id,
            name=self.name,
            kind=self.kind,
            tenant=self.tenant,
            request_id=self.request_id,
            request=self.request,
            state=State.PENDING,
            metadata=self.metadata,
            response=None,
            error=None,
            attempt=0,
            max_attempts=self.max_attempts,
            cancel_requested=False,
            create_time=now,
            update_time=now,
            start_time=None,
            end_time=None,
            priority=self.priority,
            not_before=self.not_before,
            concurrency_key=self.concurrency_key,
            turn=turn,
        )


@dataclass(slots=True)
class OperationRecord:
    """One row of the operations table; treat it as read-only (stores may share it).

    `metadata` holds only the kind's own fields (and `progressPercent`); the
    lifecycle fields (state, timestamps, attempt) live in columns and are merged
    in when the operation is shown, so a worker can never overwrite them.
    """

    seq: int
    id: str
    name: str
    kind: str
    tenant: str
    request_id: str | None
    request: dict[str, Any]
    state: State
    metadata: dict[str, Any]
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    create_time: float
    update_time: float
    start_time: float | None
    end_time: float | None
    priority: int = DEFAULT_PRIORITY
    not_before: float = 0.0
    """The earliest time it may be claimed: a delayed start's, or a retry's backoff."""
    concurrency_key: str = ""
    turn: int = 0
    """Fair sharing: claims take equal priorities by turn, then in order. A create's turn
    is one past its tenant's (and key's) last pending one, and no earlier than the
    earliest pending turn of its priority, so tenants with work waiting take turns."""

    @property
    def done(self) -> bool:
        return self.state.done


@dataclass(slots=True, frozen=True)
class Claim:
    """A lease on one attempt of an operation; every worker write is fenced by it."""

    record: OperationRecord
    owner: str

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def attempt(self) -> int:
        return self.record.attempt


@dataclass(slots=True)
class FileRecord:
    """A stored file (an upload or a generated video); its bytes live in the blob store."""

    id: str
    tenant: str
    display_name: str | None
    mime_type: str
    size_bytes: int
    sha256: str
    source: str
    """UPLOADED or GENERATED, as Google's Files API says."""
    blob_key: str
    create_time: float
    expire_time: float
    seq: int = 0

"""The store protocol every database implementation must satisfy.

The protocol is shaped by what PostgreSQL and SQLite can both do in one statement
each (`UPDATE … RETURNING`), so a claim, a fenced write or a lease recovery is a
single atomic step on either; the conformance tests run against every
implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from longops.engine.records import FileRecord, NewOperation, OperationRecord, State

if TYPE_CHECKING:
    from longops.engine.limits import Limit
    from longops.engine.store.database import Database


class StoreBusy(RuntimeError):
    """The database stayed locked by other processes for longer than the store waits."""


class FileExists(ValueError):
    """`create_file` found the tenant's file id taken: ids are unique per tenant only."""


class StoreUnavailable(StoreBusy):
    """The database could not be reached for longer than the store retries.

    A write that failed this way may or may not have been committed; every store
    write is safe to repeat, so callers retry rather than guess.
    """


@dataclass(slots=True, frozen=True)
class Change:
    """Something other processes committed.

    `done_ids` lists operations known to have finished; `None` means the store
    cannot tell which, and the engine must look. `progress_ids` lists operations
    whose progress moved (for watch streams; empty when `done_ids` is None, which
    covers them too). `records` holds the finished or progressed operations the
    store was told in full (a waiter then needs no read); it may leave any out.
    `work` says whether operations may have become claimable: only then are idle
    workers woken, so that a burst of finishes elsewhere doesn't send every worker
    process to claim nothing.
    """

    done_ids: frozenset[str] | None = None
    work: bool = True
    records: Mapping[str, OperationRecord] = field(default_factory=dict)
    progress_ids: frozenset[str] = frozenset()


@dataclass(slots=True, frozen=True)
class LeaseState:
    """One lease a heartbeat still holds."""

    id: str
    attempt: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """What a tenant's quotas are checked against (`Store.tenant_usage`)."""

    unfinished: int
    """PENDING and RUNNING operations, counted up to the limit asked for."""
    newest_create_times: list[float]
    """The create times of the tenant's newest operations, as many as asked for."""
    request_id_stored: bool
    """An operation of the request id asked about is stored (its create creates nothing)."""


class Store(Protocol):
    """Operations and files. Kinds that keep tables of their own (the file search index)
    reach the same database through `database`."""

    @property
    def database(self) -> Database: ...

    @property
    def max_staleness(self) -> float:
        """The longest `get` may lag behind commits made by other processes; what this
        process wrote itself it reads back at once."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, new: NewOperation, now: float) -> tuple[OperationRecord, bool]:
        """Insert, or return the operation already made for (tenant, request_id)."""

    async def get(self, id: str) -> OperationRecord | None: ...

    async def list_operations(
        self,
        tenant: str,
        *,
        name_prefix: str | None,
        done: bool | None,
        kinds: Collection[str] | None,
        before_seq: int | None,
        limit: int,
    ) -> list[OperationRecord]:
        """Newest first, strictly older than `before_seq` when given (keyset paging)."""

    async def cancel(self, id: str, now: float, error: dict[str, Any]) -> OperationRecord | None:
        """Pending → CANCELLED at once; running → flagged for its worker; done → unchanged."""

    async def delete(self, id: str) -> bool: ...

    async def claim(
        self,
        kinds: Collection[str],
        owner: str,
        lease_seconds: float,
        limit: int,
        now: float,
        limits: Mapping[str, Limit] | None = None,
    ) -> list[OperationRecord]:
        """Lease up to `limit` pending operations of `kinds` whose time has come: the
        highest priority first, then by turn (tenants and keys in turn), then oldest
        first; within `limits` (`longops.engine.limits`), counted across every process."""

    async def waiting(
        self, record: OperationRecord, limit: Limit, now: float, cap: int
    ) -> tuple[str, int]:
        """Why a pending operation waits (`scheduled`, `concurrency_limited`,
        `rate_limited` or `queued`) and how many of its kind are claimed before it,
        counted to `cap` (so the count stays cheap behind any backlog)."""

    async def heartbeat(self, owner: str, lease_seconds: float, now: float) -> list[LeaseState]:
        """Extend every lease `owner` holds; leases not returned are lost."""

    async def save_progress(
        self, id: str, attempt: int, metadata: dict[str, Any], now: float
    ) -> bool | None:
        """Fenced metadata write; returns cancel_requested, or None when the lease is lost."""

    async def finish(
        self,
        id: str,
        attempt: int,
        state: State,
        now: float,
        *,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Fenced move to a done state; False when the attempt no longer holds the lease."""

    async def fail_attempt(
        self, id: str, attempt: int, now: float, not_before: float, final_error: dict[str, Any]
    ) -> State | None:
        """Fenced: back to PENDING for another attempt, or FAILED with `final_error` after the
        last one. None when the attempt no longer holds the lease."""

    async def release(self, id: str, attempt: int, now: float) -> bool:
        """Fenced return to PENDING that does not count against max attempts (shutdown)."""

    async def lease_owners(self) -> list[str]:
        """The distinct owners of RUNNING operations' leases, so a worker can find among
        them the ones it can prove dead (`engine.liveness.dead_here`)."""

    async def recover_expired(
        self,
        now: float,
        cancel_error: dict[str, Any],
        abandon_error: dict[str, Any],
        *,
        dead_owners: Collection[str] = (),
    ) -> list[tuple[str, State]]:
        """End the leases that expired before `now`, and those of `dead_owners` whatever
        their expiry (a crashed owner's work resumes without waiting out its lease): each
        operation becomes CANCELLED if a cancel was asked, FAILED with `abandon_error` when
        out of attempts, PENDING otherwise."""

    async def count_unfinished(self) -> dict[tuple[str, State], int]:
        """How many operations are PENDING and RUNNING, by kind (the gauges of
        `/metrics`): kinds with none are absent."""

    async def tenant_usage(
        self, tenant: str, *, unfinished_limit: int, creates_limit: int, request_id: str | None
    ) -> TenantUsage:
        """The tenant's unfinished operations (counted to `unfinished_limit`, none when
        0) and the create times of its newest `creates_limit` operations, for quotas:
        each read stops at its limit, through an index on the tenant."""

    async def purge_done(self, ended_before: float, batch: int = 1000) -> int: ...

    async def done_among(self, ids: Sequence[str]) -> list[str]: ...

    async def changed_since(
        self, since: float, limit: int, *, tenant: str | None = None
    ) -> list[OperationRecord]:
        """Operations (of `tenant`, or of all) written at or after `since` (by
        `update_time`), oldest write first, at most `limit`: what watch streams missed
        when the store could not say which operations changed, or while a client was
        away. Reads only unfinished rows and those ended since, through indexes, so it
        stays cheap in a table of millions of done rows."""

    async def create_file(self, file: FileRecord) -> FileRecord:
        """Insert; raises `FileExists` when the tenant has another file of that id (one
        with the same blob key is this file, created by an earlier try, and returned)."""

    async def get_file(self, id: str, tenant: str) -> FileRecord | None:
        """The tenant's file: another tenant's file of the same id is not there."""

    async def list_files(
        self, tenant: str, *, before_seq: int | None, limit: int
    ) -> list[FileRecord]:
        """Newest first, keyset-paged like operations."""

    async def delete_file(self, id: str, tenant: str) -> FileRecord | None:
        """The deleted file, so the caller can remove its blob."""

    async def purge_expired_files(self, now: float, batch: int = 1000) -> list[FileRecord]: ...

    def changes(self, *, work: bool = True, done: bool = True) -> AsyncIterator[Change]:
        """Commits made by other processes, as they happen (or as close as the database allows).

        A store that can tell them apart reports only new `work` or operations `done`,
        as asked: a process without workers needs no news of work, one without
        waiters none of finishes.

        A change naming nothing may come at any time (when the feed starts, after a
        burst); the feed raises `StoreBusy` when it loses track, and the caller
        subscribes again.
        """


def open_store(url: str) -> Store:
    """The store for a database URL: `sqlite:///path` (the default) or `postgresql://…`."""
    if url.startswith("sqlite:"):
        from longops.engine.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from longops.engine.store.postgres import PostgresStore

        return PostgresStore.from_url(url)
    raise ValueError(f"unsupported database URL {url!r}: expected sqlite:///PATH or postgresql://…")

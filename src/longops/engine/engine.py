"""The engine facade the API layer talks to: create, read, list, cancel, delete, wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from longops.engine import metrics, tracing
from longops.engine.blobs import Blobs, LocalBlobs
from longops.engine.failures import InvalidRequest, RequestRejected
from longops.engine.hub import Hub
from longops.engine.limits import Limits
from longops.engine.quotas import Quotas, check_quota
from longops.engine.records import (
    DEFAULT_PRIORITY,
    FileRecord,
    NewOperation,
    OperationRecord,
    State,
)
from longops.engine.registry import Registry
from longops.engine.store import Store, StoreBusy
from longops.engine.uploads import UploadSessions
from longops.rpc import Code

log = logging.getLogger("longops.engine")

CANCELLED_STATUS = {"code": Code.CANCELLED, "message": "Operation cancelled by the caller."}
REMEMBERED = 4096
"""How many operations an engine remembers as heard finished, and as created but not
heard finished (see `Engine.wait`)."""
WATCH_LOOKBACK = 0.1
"""Seconds before the newest write a watch refresh has seen that the next one reads
again (see `Engine.refresh_watches`): a write is stamped before it commits, so one
stamped a little earlier may commit a little later."""
WATCH_REFRESH_LIMIT = 1000
"""The most operations one watch refresh reads; it goes on while more are there."""
WAITING_CAP = 1000
"""Where `Engine.waiting` stops counting the operations ahead: a position past it says
"a long way back", and counting a backlog of millions on each poll would cost more than
the answer is worth."""


class UnknownKind(LookupError):
    pass


class RequestIdReused(RequestRejected):
    """A `requestId` the tenant already used for another create: an idempotency key
    names one request, so answering with that other operation would be wrong."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"requestId {request_id!r} was already used for a different request;"
            " use a new requestId for a new operation.",
            [{"field": "requestId", "description": "already used for a different request"}],
            code=Code.ALREADY_EXISTS,
        )


@dataclass(slots=True)
class EngineConfig:
    retention_seconds: float = 7 * 24 * 3600
    """Done operations older than this are purged by the workers."""
    file_ttl_seconds: float = 48 * 3600
    """Files expire after this, as Google's do."""
    upload_ttl_seconds: float = 7 * 24 * 3600
    """Resumable upload sessions expire after this, as Google's upload URLs do."""
    public_url: str = "http://127.0.0.1:8000"
    """Where clients reach this service; kinds use it to build links (video URIs)."""
    follow_work: bool = True
    """Hear of work created by other processes: off where no workers run."""
    follow_done: bool = True
    """Hear of operations other processes finish: off where nobody waits (`longops worker`)."""
    recheck_waits: float = 5.0
    """How often parked waits look in the database themselves: a notification is
    lost when its process dies between a commit and the notification."""
    quotas: Quotas = field(default_factory=Quotas)
    """Per-tenant limits on creates (`longops.engine.quotas`); none by default."""
    limits: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """The operator's concurrency and rate limits over the kinds' own: limit field →
    kind → value (`longops.engine.limits`)."""


class Engine:
    """One per process; shared by the API routes and the in-process workers."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        config: EngineConfig | None = None,
        blobs: Blobs | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.config = config or EngineConfig()
        self.blobs: Blobs = blobs or LocalBlobs("longops-blobs")
        self.uploads = UploadSessions(self.blobs, self.config.upload_ttl_seconds)
        self.hub = Hub()
        self.tracing = tracing.from_env()
        """Spans of creates and attempts, when `LONGOPS_OTEL` asks for them."""
        self._background: list[asyncio.Task[None]] = []
        # What this process has heard, so that most waits need no read. Finished (or
        # deleted) lately: the rows the store sent (`Change.records`), None where it
        # sent none. Created here and not heard finished since: as created. Both
        # forget everything when the store can't say what finished (`done_ids` None).
        self._finished: dict[str, Mapping[str, OperationRecord] | None] = {}
        self._unfinished: dict[str, OperationRecord] = {}
        self._done_listeners: set[Callable[[], None]] = set()
        # The earliest delayed start created here that is still ahead, and the timer
        # that wakes this process's workers then (later ones are found by their poll).
        self._scheduled_wake: tuple[float, asyncio.TimerHandle] | None = None
        # Watch streams: operations to read and tell of (one read however many watch),
        # whether to look for every change since `_watch_cursor`, and who does it.
        self._changed: set[str] = set()
        self._refresh_all = False
        self._watch_cursor = time.time()
        self._refreshing: asyncio.Task[None] | None = None
        self._telling_watching: asyncio.Task[None] | None = None
        self.hub.on_watching = self._watching_changed

    async def start(self) -> None:
        await self.store.open()
        # The webhooks' outbox trigger, before anything here can end an operation.
        from longops.engine.webhooks import Webhooks

        await Webhooks.of(self.store.database).open()
        self._background = [
            asyncio.create_task(self._follow_changes(), name="longops-change-feed"),
            asyncio.create_task(self._recheck_waits(), name="longops-wait-recheck"),
        ]

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self._scheduled_wake is not None:
            self._scheduled_wake[1].cancel()
            self._scheduled_wake = None
        await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _follow_changes(self) -> None:
        """Wake waiters and idle workers for commits made by other processes."""
        delay = 0.05
        while True:
            try:
                feed = self.store.changes(
                    work=self.config.follow_work, done=self.config.follow_done
                )
                async for change in feed:
                    delay = 0.05
                    if change.work:
                        self.hub.notify_work(remote=True)
                    if change.done_ids is None:
                        self._tell_done()
                        self._finished.clear()
                        self._unfinished.clear()
                        self.refresh_watches()
                        if watched := self.hub.watched_ids():
                            for id in await self.store.done_among(watched):
                                self.notify_done(id)
                        continue
                    for id in change.done_ids:
                        self.notify_done(id, change.records)
                    for id in change.progress_ids:
                        self.notify_changed(id, change.records.get(id))
                return
            except asyncio.CancelledError:
                raise
            except StoreBusy as exc:
                log.warning("change feed interrupted (%s); listening again in %.2f s", exc, delay)
            except Exception:
                log.exception("change feed failed; listening again in %.2f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _recheck_waits(self) -> None:
        while True:
            await asyncio.sleep(self.config.recheck_waits)
            self.refresh_watches()  # a notification may have been lost, as for waits
            if not (watched := self.hub.watched_ids()):
                continue
            try:
                for id in await self.store.done_among(watched):
                    self.notify_done(id)
            except StoreBusy as exc:
                log.warning("could not recheck waits (%s)", exc)
            except Exception:
                log.exception("could not recheck waits")

    def on_done(self, listener: Callable[[], None]) -> Callable[[], None]:
        """`listener()` is called when operations ended, here or in another process (or
        may have: SQLite's feed can't say which); the webhook dispatcher listens.
        Returns what unsubscribes it."""
        self._done_listeners.add(listener)
        return lambda: self._done_listeners.discard(listener)

    def _tell_done(self) -> None:
        for listener in list(self._done_listeners):
            listener()

    def notify_done(self, id: str, records: Mapping[str, OperationRecord] | None = None) -> None:
        """Operation `id` finished or was deleted: wake its waiters, and remember it.
        `records` may hold its row as stored (see `Change.records`)."""
        self._tell_done()
        known = records if records is not None and id in records else None
        self._unfinished.pop(id, None)
        self._finished.pop(id, None)
        self._finished[id] = known
        _trim(self._finished)
        if self.hub.watched(id):
            self.hub.notify_done(id, None if known is None else known[id])
        self.notify_changed(id, None if known is None else known[id])

    # -- watch streams -----------------------------------------------------------

    def notify_changed(self, id: str, record: OperationRecord | None = None) -> None:
        """Operation `id` changed (progress, state): tell its watch streams, if any,
        with `record`, or with the row read once for all of them (None: gone)."""
        if not self.hub.watching_changes(id):
            return
        if record is not None:
            self.hub.notify_change(id, record)
            return
        self._changed.add(id)
        self._refresh()

    def refresh_watches(self) -> None:
        """The store can't say what changed (SQLite's feed, a notification connection
        just opened): read what was written since the last look, if anyone watches."""
        if self.hub.watching_any_changes():
            self._refresh_all = True
            self._refresh()

    def _watching_changed(self, watching: bool) -> None:
        """Tell the database whether this process has watch streams (other processes'
        progress writes notify only while some process has), one call at a time."""
        if self._telling_watching is None or self._telling_watching.done():
            self._telling_watching = asyncio.create_task(self._tell_watching())

    async def _tell_watching(self) -> None:
        told: bool | None = None
        while told != (watching := self.hub.watching_any_changes()):
            try:
                await self.store.database.set_watching(watching)
            except Exception as exc:  # other processes notify anyway until they read it
                log.warning("could not tell the database about watch streams (%s)", exc)
                return
            told = watching

    def _refresh(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._read_changes(), name="longops-watch")

    async def _read_changes(self) -> None:
        while self._changed or self._refresh_all:
            try:
                if self._refresh_all:
                    self._refresh_all = False
                    found = await self.store.changed_since(
                        self._watch_cursor - WATCH_LOOKBACK, WATCH_REFRESH_LIMIT
                    )
                    if found and found[-1].update_time > self._watch_cursor:
                        self._watch_cursor = found[-1].update_time
                        self._refresh_all = len(found) == WATCH_REFRESH_LIMIT  # more to read
                    for record in found:
                        self._changed.discard(record.id)
                        if self.hub.watching_changes(record.id):
                            self.hub.notify_change(record.id, record)
                while self._changed:
                    id = self._changed.pop()
                    if self.hub.watching_changes(id):
                        self.hub.notify_change(id, await self.store.get(id))
            except StoreBusy as exc:  # the next change, or the recheck, looks again
                log.warning("could not read changes for watch streams (%s)", exc)
                return
            except Exception:
                log.exception("could not read changes for watch streams")
                return

    # -- the operations API --------------------------------------------------

    def limits(self) -> Limits:
        """The registered kinds' limits with the operator's over them."""
        declared = {k.name: k.limit for k in self.registry}
        return Limits.of_kinds(declared, self.config.limits)

    async def waiting(self, record: OperationRecord) -> tuple[str, int]:
        """Why a PENDING operation waits (`queued`, `scheduled`, `concurrency_limited`,
        `rate_limited`) and how many of its kind are claimed before it, counted to
        `WAITING_CAP`: what a client polling it is shown, so it reads the store
        (one count, and the limit's running rows or buckets), not a guess."""
        limit = self.limits().of(record.kind)
        return await self.store.waiting(record, limit, time.time(), WAITING_CAP)

    async def create(
        self,
        kind_name: str,
        request: dict[str, Any],
        *,
        tenant: str = "",
        request_id: str | None = None,
        parent: str | None = None,
        metadata: dict[str, Any] | None = None,
        webhook: dict[str, Any] | None = None,
        priority: int = DEFAULT_PRIORITY,
        not_before: float = 0.0,
        concurrency_key: str = "",
        quota: bool = True,
    ) -> OperationRecord:
        """Validate and store a new operation; a repeated `request_id` returns the first one.

        `priority` orders claims (higher first, equal ones in order of creation);
        `not_before` delays its start: it stays PENDING, unclaimed, until then;
        `concurrency_key` is the tenant's key for the kind's per-key limits. All three
        are checked by the caller (`server/flow.py`).

        `webhook` is a per-request webhook config, already validated by the caller
        (`{"uris": [...], "userMetadata": {...}}`): its URIs, or else the tenant's
        webhooks, are told when the operation ends (`longops.engine.webhooks`).

        Raises `UnknownKind`, `InvalidRequest` or `QuotaExceeded` (the tenant is at a
        quota of `EngineConfig.quotas`; `quota=False` where `check_quota` admitted the
        create earlier, an upload at its start) before anything is stored, and
        `RequestIdReused` when the first operation of `request_id` was a different
        request (another kind, parent or body): a retry sends the same one.
        """
        kind = self.registry.get(kind_name)
        if kind is None:
            raise UnknownKind(kind_name)
        validated = kind.validate(request)
        if quota:
            await self.check_quota(tenant, request_id)
        id = kind.new_id()
        name = f"{parent}/operations/{id}" if parent else f"operations/{id}"
        new = NewOperation(
            id=id,
            name=name,
            kind=kind.name,
            request=kind.dump_request(validated),
            tenant=tenant,
            request_id=request_id,
            max_attempts=kind.max_attempts,
            metadata=metadata or {},
            webhook=webhook,
            priority=priority,
            not_before=not_before,
            concurrency_key=concurrency_key,
        )
        if self.tracing is None:
            record, created = await self.store.create(new, time.time())
        else:  # the create's span, its traceparent stored for the attempts' spans
            new.metadata = dict(new.metadata)
            with self.tracing.create(kind.name, new.metadata) as span:
                record, created = await self.store.create(new, time.time())
                span.set_attribute("longops.operation.id", record.id)
        if not created and not _same_request(record, new):
            raise RequestIdReused(request_id or "")
        if created:
            metrics.OPERATIONS_CREATED.labels(kind.name).inc()
            # Unless its finish was heard already (a worker may be that quick), every
            # finish from now on is: this process tells of its own, the feed of others'.
            if self.config.follow_done and record.id not in self._finished:
                self._unfinished[record.id] = record
                _trim(self._unfinished)
            if not_before > time.time():
                self._wake_at(not_before)
            else:
                self.hub.notify_work()
            self.notify_changed(record.id, record)
        return record

    def _wake_at(self, when: float) -> None:
        """Wake this process's workers when a delayed start becomes claimable, if it is
        the earliest one ahead: a worker otherwise finds it at its next poll (0.5 s)."""
        if self._scheduled_wake is not None:
            earliest, handle = self._scheduled_wake
            if earliest > time.time() and earliest <= when:
                return
            handle.cancel()
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(0.0, when - time.time()), self._wake_due, when)
        self._scheduled_wake = (when, handle)

    def _wake_due(self, when: float) -> None:
        """`_wake_at`'s timer. uvloop's timers keep milliseconds, so one may fire up to a
        millisecond before `when` by the wall clock the claim compares: a claim then
        finds nothing, and its worker would sleep to its poll. Early, it is set again."""
        if time.time() < when:
            self._scheduled_wake = None
            self._wake_at(when)
        else:
            self.hub.notify_work()

    async def check_quota(self, tenant: str, request_id: str | None = None) -> None:
        """Raise `QuotaExceeded` when `tenant` may not create an operation now (a
        repeated `request_id` may: it creates nothing). Reads nothing without quotas."""
        if self.config.quotas.any:
            quota = self.config.quotas.of(tenant)
            await check_quota(self.store, quota, tenant, request_id, time.time())

    async def get(self, id: str, tenant: str) -> OperationRecord | None:
        record = await self.store.get(id)
        if record is None or record.tenant != tenant:
            return None
        return record

    async def list_operations(
        self,
        tenant: str,
        *,
        name_prefix: str | None = None,
        done: bool | None = None,
        kinds: Collection[str] | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[OperationRecord]:
        return await self.store.list_operations(
            tenant,
            name_prefix=name_prefix,
            done=done,
            kinds=kinds,
            before_seq=before_seq,
            limit=limit,
        )

    async def cancel(self, id: str, tenant: str) -> OperationRecord | None:
        if await self.get(id, tenant) is None:
            return None
        now = time.time()
        record = await self.store.cancel(id, now, CANCELLED_STATUS)
        if record is not None:
            if record.state is State.CANCELLED and record.end_time == now:  # it was pending
                metrics.ended(record.kind, "cancelled", record.start_time, now)
            if record.done:
                self.notify_done(id, {id: record})
            else:
                self.hub.notify_cancel(id)
                self.notify_changed(id, record)
        return record

    async def delete(self, id: str, tenant: str) -> bool:
        if await self.get(id, tenant) is None:
            return False
        deleted = await self.store.delete(id)
        self.hub.notify_cancel(id)
        self.notify_done(id)
        return deleted

    async def wait(
        self,
        id: str,
        tenant: str,
        timeout: float,
        accept: Callable[[OperationRecord], bool] | None = None,
    ) -> OperationRecord | None:
        """The operation once done, or as it stands when `timeout` seconds have passed.

        None when it does not exist, or `accept` refuses it (a caller's extra check,
        made before any waiting).
        """
        heard = self._finished.get(id)
        if heard is not None and (known := heard[id]).tenant == tenant:
            return known if accept is None or accept(known) else None
        future = self.hub.watch_done(id)
        try:
            # Created here and not heard finished: it is there and unfinished, so wait
            # without reading it (what it is when the wait ends is read then).
            record = self._unfinished.get(id) if timeout > 0 else None
            if record is None or record.tenant != tenant:
                record = await self.get(id, tenant)
            if record is not None and accept is not None and not accept(record):
                return None
            if record is None or record.done or timeout <= 0:
                return record
            with contextlib.suppress(TimeoutError):
                finished = await asyncio.wait_for(asyncio.shield(future), timeout)
                if finished is not None and finished.tenant == tenant:
                    return finished
        finally:
            self.hub.unwatch_done(id, future)
        return await self.get(id, tenant)

    # -- files -----------------------------------------------------------------

    async def add_file(
        self,
        *,
        id: str,
        tenant: str,
        blob_key: str,
        mime_type: str,
        size_bytes: int,
        sha256: str,
        source: str,
        display_name: str | None = None,
    ) -> FileRecord:
        """Record a blob already written under `blob_key` as a file of `tenant`; raises
        `FileExists` when the tenant has another file of that id (the blob stays the
        caller's to remove)."""
        now = time.time()
        return await self.store.create_file(
            FileRecord(
                id=id,
                tenant=tenant,
                display_name=display_name,
                mime_type=mime_type,
                size_bytes=size_bytes,
                sha256=sha256,
                source=source,
                blob_key=blob_key,
                create_time=now,
                expire_time=now + self.config.file_ttl_seconds,
            )
        )

    async def get_file(self, id: str, tenant: str) -> FileRecord | None:
        file = await self.store.get_file(id, tenant)
        if file is None or file.expire_time < time.time():
            return None
        return file

    async def list_files(
        self, tenant: str, *, before_seq: int | None, limit: int
    ) -> list[FileRecord]:
        """The tenant's files, newest first, keyset-paged."""
        return await self.store.list_files(tenant, before_seq=before_seq, limit=limit)

    async def delete_file(self, id: str, tenant: str) -> bool:
        if await self.get_file(id, tenant) is None:
            return False
        deleted = await self.store.delete_file(id, tenant)
        if deleted is not None:
            await asyncio.to_thread(self.blobs.delete, deleted.blob_key)
        return deleted is not None

    async def purge_expired_files(self) -> int:
        expired = await self.store.purge_expired_files(time.time())
        for file in expired:
            await asyncio.to_thread(self.blobs.delete, file.blob_key)
        return len(expired)

    async def purge_expired_uploads(self) -> int:
        """Sweep abandoned upload sessions, and the bytes of finalizes that published
        them but never ended their session (a process killed between the two, an
        outcome the database could not confirm): kept if a file records them, else
        deleted. Bytes left for a store's import are deleted: a week on, it has run."""
        purged = await asyncio.to_thread(self.uploads.purge_expired, time.time())
        for target in purged:
            if "key" not in target:
                continue
            if "fileId" in target:
                file = await self.store.get_file(target["fileId"], target["tenant"])
                if file is not None and file.blob_key == target["key"]:
                    continue
            await asyncio.to_thread(self.blobs.delete, target["key"])
        return len(purged)


def _same_request(record: OperationRecord, new: NewOperation) -> bool:
    def parent(name: str) -> str:
        return name.rpartition("operations/")[0]

    return (
        record.kind == new.kind
        and parent(record.name) == parent(new.name)
        and record.request == new.request
    )


def _trim(remembered: dict[str, Any]) -> None:
    while len(remembered) > REMEMBERED:
        del remembered[next(iter(remembered))]


__all__ = [
    "CANCELLED_STATUS",
    "Engine",
    "EngineConfig",
    "InvalidRequest",
    "RequestIdReused",
    "UnknownKind",
]

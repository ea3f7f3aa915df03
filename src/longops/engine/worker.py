"""The worker runtime: claims operations, runs their handlers, keeps their leases alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Collection
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from longops.engine import metrics
from longops.engine.context import Context, LeaseLost, OperationCancelled
from longops.engine.engine import CANCELLED_STATUS, Engine
from longops.engine.failures import OperationFailed
from longops.engine.liveness import dead_here, owner_identity
from longops.engine.records import OperationRecord, State
from longops.engine.registry import Kind
from longops.engine.store import LeaseState, StoreBusy
from longops.engine.webhooks import Webhooks
from longops.engine.webhooks.dispatcher import Dispatcher
from longops.rpc import Code

log = logging.getLogger("longops.worker")

Interrupt = Literal["cancel", "lease", "shutdown"]

ABANDONED_STATUS = {
    "code": Code.ABORTED,
    "message": "The operation was abandoned: its worker stopped responding on every attempt.",
}


@dataclass(slots=True)
class WorkerConfig:
    concurrency: int = 8
    lease_seconds: float = 30.0
    poll_interval: float = 0.5
    """Fallback claim interval; new work normally wakes the worker at once. What nothing
    announces is found by this poll: a delayed start created in another process (or
    behind this process's earliest), or a retry's backoff ending, so a delayed start
    begins within a second of its time."""
    maintenance_interval: float = 1.0
    purge_interval: float = 60.0
    shutdown_grace: float = 30.0
    retry_delay: float = 1.0
    claim_defer: float = 0.005
    """After claims that found nothing, how long a wake-up from another process waits
    before claiming: every worker process hears of each new operation and the first
    to claim takes it; the others let a few gather and take them in one claim."""
    kinds: Collection[str] | None = None
    """Kinds this worker serves; None means every registered kind."""
    limited_poll_interval: float = 0.1
    """The claim interval while work of limited kinds may be waiting for room: a limit
    frees when an operation ends in any process, which nobody announces, and a rate's
    tokens come back with time."""


@dataclass(slots=True)
class _Running:
    record: OperationRecord
    context: Context
    claimed_at: float
    """`time.monotonic()` when the claim came back: heartbeats sent before it can't know it."""
    task: asyncio.Task[None] | None = None
    interrupt: Interrupt | None = None
    finishing: bool = False
    outcome: str | None = None
    """How the attempt ended, once it has: succeeded, failed or cancelled (it ended the
    operation, if the write was fenced in), retrying, released or lease_lost."""


class Worker:
    def __init__(self, engine: Engine, config: WorkerConfig | None = None) -> None:
        self.engine = engine
        self.config = config or WorkerConfig()
        self._owner = (os.getpid(), owner_identity())
        self._running: dict[str, _Running] = {}
        self._wake = asyncio.Event()
        self._local_wake = False
        self._stopping = asyncio.Event()
        self._pool: ProcessPoolExecutor | None = None

    @property
    def owner(self) -> str:
        """The name this worker's leases carry, which names its process: a worker made
        before a fork gets a name of its own in the child, or the child's leases would
        name the parent and be recovered as a dead one's once the parent ended."""
        pid, owner = self._owner
        if pid != os.getpid():
            owner = owner_identity()
            self._owner = (os.getpid(), owner)
        return owner

    @property
    def kinds(self) -> list[str]:
        registered = self.engine.registry.names()
        if self.config.kinds is None:
            return registered
        return [k for k in registered if k in self.config.kinds]

    def stop(self) -> None:
        """Stop claiming; `run` then finishes or releases what is in flight and returns."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        unsubscribe = self.engine.hub.on_work(self._heard_of_work)
        background = [
            asyncio.create_task(self._heartbeat_loop(), name="longops-heartbeat"),
            asyncio.create_task(self._maintenance_loop(), name="longops-maintenance"),
            # Webhook deliveries are sent wherever operations are worked on.
            asyncio.create_task(Dispatcher(self.engine).run(), name="longops-webhooks"),
        ]
        try:
            # Before the first claim: what a crashed predecessor on this host held
            # is taken up now rather than after its lease.
            await self._recover()
            await self._claim_loop()
            await self._drain()
        finally:
            unsubscribe()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    # -- claiming -------------------------------------------------------------

    def _heard_of_work(self, remote: bool) -> None:
        self._local_wake = self._local_wake or not remote
        self._wake.set()

    async def _claim_loop(self) -> None:
        kinds = self.kinds
        limits = self.engine.limits().among(kinds)
        poll_interval = self.config.limited_poll_interval if limits else self.config.poll_interval
        losing = False
        while not self._stopping.is_set():
            free = self.config.concurrency - len(self._running)
            claimed: list[OperationRecord] = []
            if free > 0:
                self._wake.clear()
                try:
                    claimed = await self.engine.store.claim(
                        kinds, self.owner, self.config.lease_seconds, free, time.time(), limits
                    )
                except StoreBusy:
                    log.warning("store busy while claiming; retrying")
                except Exception:
                    # A worker must outlive a database hiccup (a restart, a dropped
                    # connection): log it and try again at the next poll.
                    log.exception("claiming failed; retrying")
                for record in claimed:
                    self._start(record)
                # A full batch may have left more behind; a short one took all there was
                # (what is created meanwhile sets `_wake`, cleared before the claim).
                if claimed and len(claimed) == free:
                    continue
                losing = not claimed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_interval)
            if losing and self._wake.is_set() and not self._local_wake:
                await asyncio.sleep(self.config.claim_defer)
            self._wake.clear()
            self._local_wake = False

    def _start(self, record: OperationRecord) -> None:
        context = Context(self.engine, record, process_pool=self._process_pool)
        running = _Running(record, context, time.monotonic())
        metrics.claimed(record)
        self._running[record.id] = running
        running.task = asyncio.create_task(self._execute(running), name=f"longops:{record.name}")
        # A callback, not a `finally`: a task cancelled before its first step never runs
        # its body, and its slot must still be given back.
        running.task.add_done_callback(lambda _: self._forget(record.id))
        self.engine.hub.on_cancel(record.id, lambda: self._interrupt(record.id, "cancel"))
        self.engine.notify_changed(record.id, record)  # now RUNNING, for watch streams

    def _forget(self, id: str) -> None:
        self.engine.hub.off_cancel(id)
        self._running.pop(id, None)
        self._heard_of_work(remote=False)  # a slot is free

    def _process_pool(self) -> Executor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor()
        return self._pool

    def _interrupt(self, id: str, reason: Interrupt) -> None:
        running = self._running.get(id)
        if running is None or running.finishing or running.task is None:
            return
        if reason == "cancel":
            running.context.cancel_requested = True
        running.context.request_stop()
        if running.interrupt is None:
            running.interrupt = reason
            running.task.cancel()

    # -- running one attempt ---------------------------------------------------

    async def _execute(self, running: _Running) -> None:
        record = running.record
        finished = False
        tracing = self.engine.tracing
        try:
            if tracing is None:
                finished = await self._attempt(running)
            else:
                with tracing.attempt(record) as span:
                    finished = await self._attempt(running)
                    tracing.outcome(span, running.outcome or "lease_lost")
        except Exception:
            # The outcome could not be written; the lease is handed back (see
            # `_release_strays`) or expires, and the operation runs again.
            log.exception(
                "could not record the outcome of %s (attempt %d)", record.name, record.attempt
            )
        if finished:
            self.engine.notify_done(record.id)
        self._count(running, finished)

    @staticmethod
    def _count(running: _Running, finished: bool) -> None:
        record, outcome = running.record, running.outcome
        if finished and outcome is not None and outcome in metrics.OUTCOMES.values():
            metrics.ended(record.kind, outcome, record.start_time, time.time())
        elif outcome == "retrying":
            metrics.ATTEMPTS_RETRIED.labels(record.kind).inc()

    async def _attempt(self, running: _Running) -> bool:
        """Run the handler and record its outcome; True if this attempt ended the operation.

        Only the handler's own errors count against the attempt: a failure to record
        the outcome propagates, so a handler that succeeded is never retried as failed.
        """
        record = running.record
        store = self.engine.store
        finished = False
        try:
            kind = self.engine.registry.get(record.kind)
            if kind is None:
                raise OperationFailed(Code.INTERNAL, f"No worker handler for kind {record.kind!r}.")
            response = await self._call(kind, running)
        except OperationFailed as exc:
            await self._settle(running)
            running.outcome = "failed"
            finished = await store.finish(
                record.id,
                record.attempt,
                State.FAILED,
                time.time(),
                error=exc.status(),
                metadata=running.context.final_metadata(),
            )
        except OperationCancelled:
            await self._settle(running)
            finished = await self._finish_cancelled(running)
        except LeaseLost:
            await self._settle(running)
            running.outcome = "lease_lost"
            log.warning("lost the lease on %s (attempt %d)", record.name, record.attempt)
        except asyncio.CancelledError:
            reason = running.interrupt
            if reason is None:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            await self._settle(running)
            if reason == "cancel":
                finished = await self._finish_cancelled(running)
            elif reason == "shutdown":
                running.outcome = "released"
                await store.release(record.id, record.attempt, time.time())
                self.engine.hub.notify_work()
            else:
                log.warning("lost the lease on %s (attempt %d)", record.name, record.attempt)
        except Exception:
            log.exception("handler for %s failed (attempt %d)", record.name, record.attempt)
            await self._settle(running)
            delay = self.config.retry_delay * 2 ** (record.attempt - 1) * random.uniform(0.5, 1.5)
            now = time.time()
            state = await store.fail_attempt(
                record.id,
                record.attempt,
                now,
                now + delay,
                {
                    "code": Code.INTERNAL,
                    "message": f"Internal error after {record.attempt} attempts.",
                },
            )
            finished = state is State.FAILED
            retrying = state is State.PENDING
            running.outcome = "failed" if finished else "retrying" if retrying else "lease_lost"
            if state is State.PENDING:
                self.engine.hub.notify_work()
        else:
            await self._settle(running)
            metadata = running.context.final_metadata()
            metadata["progressPercent"] = 100
            running.outcome = "succeeded"
            finished = await store.finish(
                record.id,
                record.attempt,
                State.SUCCEEDED,
                time.time(),
                response=response,
                metadata=metadata,
            )
        return finished

    async def _settle(self, running: _Running) -> None:
        """Take the attempt out of reach of further interrupts, then wait for the code it
        started in threads and processes: nothing can stop those, and until they return
        the attempt keeps its lease (the heartbeat goes on), so no outcome is recorded
        and no other worker is let in while its code still runs."""
        running.finishing = True
        if running.context.busy_off_loop:
            running.context.request_stop()
            log.info(
                "waiting for the thread or process work of %s (attempt %d) to return",
                running.record.name,
                running.record.attempt,
            )
            await running.context.settle()

    async def _call(self, kind: Kind[Any], running: _Running) -> dict[str, Any] | None:
        request = kind.request_model.model_validate(running.record.request)
        running.context.check_cancelled()
        result = await kind.handler(running.context, request)
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return result

    async def _finish_cancelled(self, running: _Running) -> bool:
        running.outcome = "cancelled"
        return await self.engine.store.finish(
            running.record.id,
            running.record.attempt,
            State.CANCELLED,
            time.time(),
            error=CANCELLED_STATUS,
            metadata=running.context.final_metadata(),
        )

    # -- leases ------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = min(self.config.lease_seconds / 3, 1.0)
        strays: set[tuple[str, int]] = set()
        while True:
            await asyncio.sleep(interval)
            beat = time.monotonic()
            try:
                held = await self.engine.store.heartbeat(
                    self.owner, self.config.lease_seconds, time.time()
                )
                strays = await self._release_strays(held, strays)
            except StoreBusy as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            except Exception:
                log.exception("heartbeat failed")
                continue
            held_ids = {lease.id: lease for lease in held}
            for id, running in list(self._running.items()):
                lease = held_ids.get(id)
                if running.claimed_at >= beat:  # claimed while the heartbeat was on its way
                    continue
                if lease is None or lease.attempt != running.record.attempt:
                    self._interrupt(id, "lease")
                elif lease.cancel_requested:
                    self._interrupt(id, "cancel")

    async def _release_strays(
        self, held: list[LeaseState], suspects: set[tuple[str, int]]
    ) -> set[tuple[str, int]]:
        """Hand back leases this worker holds but runs nothing for: a claim whose answer
        was lost with its connection, or an attempt whose outcome could not be written.
        A lease counts as stray on its second heartbeat, so a claim still on its way
        to `_start` is never mistaken for one. Returns this beat's suspects."""
        strays = {
            (lease.id, lease.attempt)
            for lease in held
            if (running := self._running.get(lease.id)) is None
            or running.record.attempt != lease.attempt
        }
        for id, attempt in strays & suspects:
            log.warning("releasing the stray lease on %s (attempt %d)", id, attempt)
            await self.engine.store.release(id, attempt, time.time())
            self.engine.hub.notify_work()
        return strays - suspects

    async def _recover(self) -> None:
        """Recover the leases of crashed workers: at once for owners this host can prove
        dead (`dead_here`), when their lease expires for the others."""
        store = self.engine.store
        now = time.time()
        try:
            expired = await store.recover_expired(now, CANCELLED_STATUS, ABANDONED_STATUS)
            self._recovered(expired, "from an expired lease")
            dead = [owner for owner in await store.lease_owners() if dead_here(owner)]
            for owner in dead:
                log.warning("worker %s died: its operations resume now", owner)
            if dead:  # apart from the expired ones, so that each line says why
                of_dead = await store.recover_expired(
                    now, CANCELLED_STATUS, ABANDONED_STATUS, dead_owners=dead
                )
                self._recovered(of_dead, "from a dead worker")
        except StoreBusy:
            log.warning("store busy while recovering leases")
        except Exception:
            log.exception("recovering leases failed")

    def _recovered(self, recovered: list[tuple[str, State]], why: str) -> None:
        for id, state in recovered:
            log.warning("recovered %s %s: now %s", id, why, state.value)
            if state.done:
                self.engine.notify_done(id)
            else:
                self.engine.hub.notify_work()

    async def _maintenance_loop(self) -> None:
        """Recover the leases of crashed workers; purge done operations past retention,
        expired files and abandoned uploads."""
        last_purge = 0.0
        while True:
            await asyncio.sleep(self.config.maintenance_interval)
            await self._recover()
            now = time.time()
            try:
                if now - last_purge >= self.config.purge_interval:
                    last_purge = now
                    retained = now - self.engine.config.retention_seconds
                    await self.engine.store.purge_done(retained)
                    await Webhooks.of(self.engine.store.database).purge(retained)
                    await self.engine.purge_expired_files()
                    await self.engine.purge_expired_uploads()
            except StoreBusy:
                log.warning("store busy during maintenance")
            except Exception:
                log.exception("maintenance failed")

    async def _drain(self) -> None:
        """Give in-flight attempts `shutdown_grace` seconds, then release the rest."""
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if not tasks:
            return
        log.info("waiting up to %.0f s for %d operations", self.config.shutdown_grace, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_grace)
        for id in list(self._running):
            self._interrupt(id, "shutdown")
        if pending:
            await asyncio.wait(pending)

"""What a handler sees of the engine while it runs one attempt of an operation."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from longops.engine.blobs import Blobs
from longops.engine.records import FileRecord, OperationRecord
from longops.engine.store import StoreBusy
from longops.engine.store.database import Database

if TYPE_CHECKING:
    from longops.engine.engine import Engine

log = logging.getLogger("longops.worker")

P = ParamSpec("P")
T = TypeVar("T")


class OperationCancelled(Exception):
    """Raised inside a handler when a client cancelled its operation."""


class LeaseLost(Exception):
    """This attempt no longer owns the operation (lease expired, deleted): stop quietly."""


class Context:
    """Progress, cancellation and off-loop execution for one attempt.

    Progress is written to the store at most every `progress_interval` seconds, the
    first time only once the attempt has run that long, so a handler can report per
    frame or per chunk without turning into a write load, and a quick operation
    writes nothing until it finishes (the final metadata goes with the result).
    Each write also reads the cancel flag, so a cancel made by another process is
    seen at the next report (in-process cancels interrupt the handler at once).

    Stopping: a cancel, a lost lease, or a shutdown past its grace interrupts the
    handler at its next `await` (asyncio cancellation). Code running in
    `run_in_thread` or `run_in_process` can't be interrupted, so the attempt keeps its
    lease (heartbeats go on) and is neither released nor finished until that code
    returns: an attempt never runs twice at once. To stop promptly, blocking code in a
    thread polls `ctx.stop_requested` (a `threading.Event`, set on every interrupt)
    between units of work and returns early; work in a process is best split into
    short calls, with `ctx.check_cancelled()` between them.
    """

    def __init__(
        self,
        engine: Engine,
        record: OperationRecord,
        *,
        process_pool: Callable[[], Executor],
        progress_interval: float = 0.25,
    ) -> None:
        self._engine = engine
        self._store = engine.store
        self._record = record
        self._process_pool = process_pool
        self._metadata: dict[str, Any] = dict(record.metadata)
        self._progress_interval = progress_interval
        self._last_write = time.time()
        self._dirty = False
        self.cancel_requested = record.cancel_requested
        self.stop_requested = threading.Event()
        """Set when this attempt is told to stop: for blocking code in threads to poll."""
        self._off_loop: set[asyncio.Future[Any]] = set()

    @property
    def operation_id(self) -> str:
        return self._record.id

    @property
    def operation_name(self) -> str:
        return self._record.name

    @property
    def attempt(self) -> int:
        return self._record.attempt

    @property
    def tenant(self) -> str:
        return self._record.tenant

    @property
    def metadata(self) -> dict[str, Any]:
        """The kind's metadata fields as last reported (a copy)."""
        return dict(self._metadata)

    @property
    def blobs(self) -> Blobs:
        return self._engine.blobs

    @property
    def public_url(self) -> str:
        return self._engine.config.public_url

    @property
    def database(self) -> Database:
        """The engine's database, for a kind that keeps tables of its own (as file search
        keeps its index): statements written once with `?` placeholders, run through the
        database's dialect."""
        return self._store.database

    async def add_file(
        self,
        *,
        id: str,
        blob_key: str,
        mime_type: str,
        size_bytes: int,
        sha256: str,
        source: str = "GENERATED",
        display_name: str | None = None,
    ) -> FileRecord:
        """Publish a blob this attempt wrote as a file of the operation's tenant."""
        return await self._engine.add_file(
            id=id,
            tenant=self._record.tenant,
            blob_key=blob_key,
            mime_type=mime_type,
            size_bytes=size_bytes,
            sha256=sha256,
            source=source,
            display_name=display_name,
        )

    async def get_file(self, id: str) -> FileRecord | None:
        """A file of the operation's tenant."""
        return await self._engine.get_file(id, self._record.tenant)

    def check_cancelled(self) -> None:
        if self.cancel_requested:
            raise OperationCancelled(self._record.name)

    async def report_progress(
        self, percent: float | None = None, *, force: bool = False, **fields: Any
    ) -> None:
        """Merge `fields` (and `progressPercent`) into the operation's metadata."""
        if percent is not None:
            self._metadata["progressPercent"] = max(0, min(100, round(percent)))
        self._metadata.update(fields)
        self._dirty = True
        now = time.time()
        if force or now - self._last_write >= self._progress_interval:
            await self.flush()
        self.check_cancelled()

    async def flush(self) -> None:
        if not self._dirty:
            return
        now = time.time()
        try:
            cancel = await self._store.save_progress(
                self._record.id, self._record.attempt, self._metadata, now
            )
        except StoreBusy as exc:
            # Progress can wait for the next report; the lease is the heartbeat's job.
            log.warning("could not save the progress of %s: %s", self._record.name, exc)
            return
        if cancel is None:
            raise LeaseLost(self._record.name)
        self._last_write = now
        self._dirty = False
        self.cancel_requested = self.cancel_requested or cancel
        self._engine.notify_changed(self._record.id)  # its watch streams, if any

    async def run_in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """For blocking I/O or C code that releases the GIL (encoders, compression).

        Long calls should poll `stop_requested` (see the class docstring)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await self._off_loop_call(loop.run_in_executor(None, call))

    async def run_in_process(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """For pure-Python CPU work, which would hold the GIL and stall the API in a thread."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        return await self._off_loop_call(loop.run_in_executor(self._process_pool(), call))

    async def _off_loop_call(self, future: asyncio.Future[T]) -> T:
        """Await `future` shielded: cancelling the handler can't stop a thread or a
        process, so the future is kept until it ends, for `settle` to wait on."""
        self._off_loop.add(future)
        future.add_done_callback(self._off_loop_done)
        return await asyncio.shield(future)

    def _off_loop_done(self, future: asyncio.Future[Any]) -> None:
        self._off_loop.discard(future)
        if not future.cancelled():
            future.exception()  # seen: a handler interrupted meanwhile never reads it

    def request_stop(self) -> None:
        self.stop_requested.set()

    @property
    def busy_off_loop(self) -> bool:
        """Whether code this attempt started in a thread or process still runs."""
        return bool(self._off_loop)

    async def settle(self) -> None:
        """Wait until every thread and process call this attempt started has returned
        (their results and errors are dropped: the handler stopped waiting for them).
        `asyncio.wait`, not `gather`: being cancelled must not cancel what it waits on."""
        while self._off_loop:
            await asyncio.wait(set(self._off_loop))

    def final_metadata(self) -> dict[str, Any]:
        return self._metadata

"""What a handler sees of the engine while it runs one attempt of an operation."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from longops.engine.blobs import Blobs
from longops.engine.records import (
    DocumentRecord,
    FileRecord,
    OperationRecord,
    SearchStoreRecord,
)
from longops.engine.store import StoreBusy

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

    async def get_search_store(self, id: str) -> SearchStoreRecord | None:
        store = await self._store.get_search_store(id)
        return store if store is not None and store.tenant == self._record.tenant else None

    async def begin_document(self, document: DocumentRecord) -> DocumentRecord:
        return await self._store.begin_document(document)

    async def index_document(
        self, document: DocumentRecord, chunks: list[str]
    ) -> DocumentRecord | None:
        return await self._store.index_document(document, chunks, time.time())

    async def abandon_document(self, id: str) -> None:
        await self._store.abandon_document(id)

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

    async def run_in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """For blocking I/O or C code that releases the GIL (encoders, compression)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def run_in_process(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """For pure-Python CPU work, which would hold the GIL and stall the API in a thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._process_pool(), functools.partial(fn, *args, **kwargs)
        )

    def final_metadata(self) -> dict[str, Any]:
        return self._metadata

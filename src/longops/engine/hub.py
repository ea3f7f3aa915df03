"""In-process signalling between the API, the workers and the store's change feed.

Waiting clients and idle workers park on futures here instead of polling the
database; whoever changes an operation in this process signals directly, and the
store's change feed signals for commits made by other processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from longops.engine.records import OperationRecord


class Hub:
    def __init__(self) -> None:
        self._done_waiters: dict[str, set[asyncio.Future[OperationRecord | None]]] = {}
        self._work_listeners: set[Callable[[bool], None]] = set()
        self._cancel_listeners: dict[str, Callable[[], None]] = {}
        self._waits_stopped = False

    # -- waiting for an operation to finish --------------------------------

    def watch_done(self, id: str) -> asyncio.Future[OperationRecord | None]:
        """A future that `notify_done` resolves, with the finished operation if the
        notifier had it (else None: read it)."""
        future: asyncio.Future[OperationRecord | None] = asyncio.get_running_loop().create_future()
        if self._waits_stopped:
            future.set_result(None)
        else:
            self._done_waiters.setdefault(id, set()).add(future)
        return future

    def unwatch_done(self, id: str, future: asyncio.Future[OperationRecord | None]) -> None:
        waiters = self._done_waiters.get(id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._done_waiters[id]

    def watched_ids(self) -> list[str]:
        return list(self._done_waiters)

    def watched(self, id: str) -> bool:
        return id in self._done_waiters

    def notify_done(self, id: str, record: OperationRecord | None = None) -> None:
        for future in self._done_waiters.pop(id, ()):
            if not future.done():
                future.set_result(record)

    def stop_waits(self) -> None:
        """The server is shutting down: resolve every parked wait now, and each new one
        at once, so `:wait` calls answer with the operation as it stands instead of
        holding the shutdown until they are cut off."""
        self._waits_stopped = True
        for id in list(self._done_waiters):
            self.notify_done(id)

    # -- waking idle workers -------------------------------------------------

    def on_work(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """`listener(remote)` is called when operations may have become claimable;
        `remote` when another process said so (every worker process hears it)."""
        self._work_listeners.add(listener)
        return lambda: self._work_listeners.discard(listener)

    def notify_work(self, *, remote: bool = False) -> None:
        for listener in list(self._work_listeners):
            listener(remote)

    # -- telling a running handler in this process to stop -----------------

    def on_cancel(self, id: str, listener: Callable[[], None]) -> None:
        self._cancel_listeners[id] = listener

    def off_cancel(self, id: str) -> None:
        self._cancel_listeners.pop(id, None)

    def notify_cancel(self, id: str) -> None:
        listener = self._cancel_listeners.get(id)
        if listener is not None:
            listener()

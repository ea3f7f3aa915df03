"""In-process signalling between the API, the workers and the store's change feed.

Waiting clients and idle workers park on futures here instead of polling the
database; whoever changes an operation in this process signals directly, and the
store's change feed signals for commits made by other processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from longops.engine.records import OperationRecord

ChangeListener = Callable[[str, OperationRecord | None], None]
"""`listener(id, record)`: operation `id` is now `record` (None: it is gone)."""


class Hub:
    def __init__(self) -> None:
        self._done_waiters: dict[str, set[asyncio.Future[OperationRecord | None]]] = {}
        self._work_listeners: set[Callable[[bool], None]] = set()
        self._cancel_listeners: dict[str, Callable[[], None]] = {}
        self._waits_stopped = False
        self._change_listeners: dict[str, set[ChangeListener]] = {}
        self._any_change_listeners: set[ChangeListener] = set()
        self._stop_listeners: set[Callable[[], None]] = set()
        self.on_watching: Callable[[bool], None] | None = None
        """Called when the first change listener comes and when the last one goes."""

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
        for listener in list(self._stop_listeners):
            listener()

    @property
    def waits_stopped(self) -> bool:
        return self._waits_stopped

    # -- watching every change of an operation ---------------------------------

    def on_change(self, id: str, listener: ChangeListener) -> Callable[[], None]:
        """`listener` hears each new state of operation `id` (watch streams); one set of
        listeners per id, so a change costs one lookup however many streams watch."""
        first = not self.watching_any_changes()
        self._change_listeners.setdefault(id, set()).add(listener)
        self._watching(first)

        def off() -> None:
            listeners = self._change_listeners.get(id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._change_listeners[id]
                    self._unwatched()

        return off

    def on_any_change(self, listener: ChangeListener) -> Callable[[], None]:
        """`listener` hears each new state of every operation (collection streams, which
        filter by tenant and kind themselves)."""
        first = not self.watching_any_changes()
        self._any_change_listeners.add(listener)
        self._watching(first)

        def off() -> None:
            if listener in self._any_change_listeners:
                self._any_change_listeners.discard(listener)
                self._unwatched()

        return off

    def _watching(self, first: bool) -> None:
        if first and self.on_watching is not None:
            self.on_watching(True)

    def _unwatched(self) -> None:
        if not self.watching_any_changes() and self.on_watching is not None:
            self.on_watching(False)

    def on_stop(self, listener: Callable[[], None]) -> Callable[[], None]:
        """`listener` is called when the server starts shutting down (see `stop_waits`)."""
        self._stop_listeners.add(listener)
        return lambda: self._stop_listeners.discard(listener)

    def watching_changes(self, id: str) -> bool:
        return id in self._change_listeners or bool(self._any_change_listeners)

    def watching_any_changes(self) -> bool:
        return bool(self._change_listeners or self._any_change_listeners)

    def notify_change(self, id: str, record: OperationRecord | None) -> None:
        for listener in list(self._change_listeners.get(id, ())):
            listener(id, record)
        for listener in list(self._any_change_listeners):
            listener(id, record)

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

"""What watch streams need of the store: progress written elsewhere is heard (with its
row where the backend can carry it), and `changed_since` finds what was written after a
moment, of every tenant or of one, without the operations that did not change."""

from __future__ import annotations

import asyncio

from longops.engine import State
from longops.engine.store import Change, Store
from tests.store.backends import only
from tests.store.records import CANCELLED, operation
from tests.store.test_changes import follow, started
from tests.support.waiting import until


@only("postgres")
async def test_progress_elsewhere_is_heard_with_its_row(store: Store, other: Store) -> None:
    heard: list[Change] = []
    task = asyncio.create_task(follow(store.changes(work=False, done=True), heard))
    try:
        await until(lambda: heard, what="the feed to start")
        created, _ = await other.create(operation(), 1.0)
        [claimed] = await other.claim(["k"], "w", 30, 1, 2.0)
        assert await other.save_progress(claimed.id, 1, {"progressPercent": 40}, 2.5) is False
        await until(lambda: any(created.id in c.progress_ids for c in heard), what="the progress")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    change = next(c for c in heard if created.id in c.progress_ids)
    assert not change.work and created.id not in (change.done_ids or ())
    row = change.records[created.id]
    assert row.state is State.RUNNING and row.metadata == {"progressPercent": 40}
    assert row.update_time == 2.5


@only("sqlite")
async def test_progress_elsewhere_moves_sqlites_feed(store: Store, other: Store) -> None:
    await store.create(operation(), 1.0)
    [claimed] = await store.claim(["k"], "w", 30, 1, 2.0)
    heard: list[Change] = []
    task = asyncio.create_task(follow(other.changes(), heard))
    try:
        await started(heard, store)
        heard.clear()
        await store.save_progress(claimed.id, 1, {"progressPercent": 40}, 2.5)
        await until(lambda: heard, what="the progress")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert all(c.done_ids is None for c in heard)  # "look": changed_since tells what


async def test_changed_since_finds_what_was_written_after(store: Store, other: Store) -> None:
    old_done, _ = await store.create(operation(), 1.0)
    await store.cancel(old_done.id, 2.0, CANCELLED)  # ended before the moment asked
    quiet, _ = await store.create(operation(), 2.0)  # pending, unchanged since
    fresh, _ = await store.create(operation(tenant="t"), 10.0)
    running, _ = await store.create(operation(kind="r"), 3.0)
    [claimed] = await store.claim(["r"], "w", 30, 1, 11.0)
    await store.save_progress(claimed.id, 1, {"progressPercent": 5}, 12.0)
    ended, _ = await store.create(operation(), 4.0)
    await store.cancel(ended.id, 13.0, CANCELLED)

    found = await other.changed_since(10.0, 100)
    assert [(r.id, r.update_time) for r in found] == [
        (fresh.id, 10.0),
        (running.id, 12.0),
        (ended.id, 13.0),
    ]
    assert found[1].metadata == {"progressPercent": 5} and found[2].state is State.CANCELLED
    assert [r.id for r in await other.changed_since(10.0, 2)] == [fresh.id, running.id]
    assert [r.id for r in await other.changed_since(10.0, 100, tenant="t")] == [fresh.id]
    assert await other.changed_since(13.5, 100) == []
    assert quiet.id not in {r.id for r in await other.changed_since(2.5, 100)}


@only("postgres")
async def test_progress_notifies_only_while_some_process_watches(
    store: Store, other: Store
) -> None:
    """A process with watch streams holds a shared lock; the others' progress writes
    notify while one is held, and not otherwise (read at most every second)."""
    database = other.database
    await until(lambda: not database.progress_wanted(), what="nobody watches")
    await store.database.set_watching(True)
    await until(database.progress_wanted, what="a watcher is seen")
    await store.database.set_watching(False)
    await until(lambda: not database.progress_wanted(), what="the watcher is gone")

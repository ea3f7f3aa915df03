"""Retention: done operations and expired files are purged in batches, and nothing
else is."""

from __future__ import annotations

from longops.engine import State
from longops.engine.store import Store
from tests.store.records import CANCELLED, FINAL, file, listed, operation, running


async def test_purge_done_takes_every_done_state_and_keeps_the_rest(store: Store) -> None:
    succeeded = await running(store)
    await store.finish(succeeded.id, 1, State.SUCCEEDED, 10.0)
    failed = await running(store)
    await store.finish(failed.id, 1, State.FAILED, 10.0, error=FINAL)
    cancelled, _ = await store.create(operation(), 1.0)
    await store.cancel(cancelled.id, 10.0, CANCELLED)
    recent = await running(store)
    await store.finish(recent.id, 1, State.SUCCEEDED, 50.0)  # not before 50: kept
    pending, _ = await store.create(operation(), 1.0)
    started = await running(store)
    retried = await running(store)
    await store.fail_attempt(retried.id, 1, 3.0, 3.0, FINAL)
    assert await store.purge_done(50.0) == 3
    for id in (succeeded.id, failed.id, cancelled.id):
        assert await store.get(id) is None
    kept = {recent.id, pending.id, started.id, retried.id}
    assert {r.id for r in await listed(store)} == kept
    assert await store.purge_done(50.0) == 0


async def test_purge_done_works_through_every_batch(store: Store) -> None:
    ended = []
    for _ in range(7):
        record, _ = await store.create(operation(), 1.0)
        await store.cancel(record.id, 2.0, CANCELLED)
        ended.append(record.id)
    pending, _ = await store.create(operation(), 1.0)
    assert await store.purge_done(3.0, batch=3) == 7
    assert [r.id for r in await listed(store)] == [pending.id]
    assert await store.purge_done(3.0, batch=3) == 0


async def test_purge_expired_files_takes_one_batch_of_every_tenant(store: Store) -> None:
    """One batch a call, returned so that the caller deletes their blobs before the next."""
    for i in range(3):
        await store.create_file(file(f"f{i}", "a", f"blob-a{i}", expire_time=10.0))
        await store.create_file(file(f"f{i}", "b", f"blob-b{i}", expire_time=10.0))
    kept = await store.create_file(file("late", "a", "blob-late", expire_time=20.0))
    purged: list[str] = []
    while batch := await store.purge_expired_files(20.0, batch=4):
        assert len(batch) <= 4
        purged += [f.blob_key for f in batch]
    assert sorted(purged) == sorted([f"blob-{t}{i}" for t in "ab" for i in range(3)])
    assert await store.list_files("b", before_seq=None, limit=10) == []
    assert await store.list_files("a", before_seq=None, limit=10) == [kept]  # not before 20
    [last] = await store.purge_expired_files(20.5)
    assert last == kept
    assert await store.get_file("late", "a") is None

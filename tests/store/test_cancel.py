"""Cancelling: pending operations end at once, running ones are flagged for their
worker, done ones stay as they are; and every interleaving with a claim or a finish
elsewhere leaves a consistent row."""

from __future__ import annotations

import asyncio

from longops.engine import State
from longops.engine.store import LeaseState, Store
from tests.store.records import ABANDONED, CANCELLED, FINAL, operation, running, settled


async def test_cancel_ends_a_pending_operation(store: Store, other: Store) -> None:
    pending, _ = await store.create(operation(), 1.0)
    cancelled = await store.cancel(pending.id, 4.0, CANCELLED)
    assert cancelled is not None and cancelled.id == pending.id
    assert cancelled.state is State.CANCELLED and cancelled.done and cancelled.cancel_requested
    assert cancelled.error == CANCELLED and cancelled.end_time == cancelled.update_time == 4.0
    assert await other.get(pending.id) == cancelled
    assert await store.claim(["k"], "w", 30, 1, 5.0) == []


async def test_cancel_flags_a_running_operation_for_its_worker(store: Store, other: Store) -> None:
    claimed = await running(store, owner="w")
    flagged = await store.cancel(claimed.id, 4.0, CANCELLED)
    assert flagged is not None and flagged.state is State.RUNNING and flagged.cancel_requested
    assert flagged.error is None and flagged.end_time is None and flagged.update_time == 4.0
    assert await other.get(claimed.id) == flagged
    assert await store.heartbeat("w", 30, 5.0) == [LeaseState(claimed.id, 1, True)]
    assert await store.save_progress(claimed.id, 1, {}, 5.0) is True
    # The worker decides how it ends: here it finished anyway.
    assert await store.finish(claimed.id, 1, State.SUCCEEDED, 6.0, response={"ok": 1})
    done = await settled(other, claimed.id)
    assert done.state is State.SUCCEEDED and done.response == {"ok": 1} and done.error is None


async def test_cancel_leaves_a_done_operation_as_it_is(store: Store) -> None:
    succeeded = await running(store)
    await store.finish(succeeded.id, 1, State.SUCCEEDED, 3.0, response={"ok": 1})
    failed = await running(store)
    await store.finish(failed.id, 1, State.FAILED, 3.0, error=FINAL)
    for id, state in ((succeeded.id, State.SUCCEEDED), (failed.id, State.FAILED)):
        before = await store.get(id)
        after = await store.cancel(id, 4.0, CANCELLED)
        assert after is not None and after == before and after.state is state
        assert not after.cancel_requested and after.update_time == 3.0


async def test_a_second_cancel_changes_nothing(store: Store) -> None:
    """The first cancel's time and error stay, however often a client repeats it."""
    pending, _ = await store.create(operation(), 1.0)
    first = await store.cancel(pending.id, 2.0, CANCELLED)
    again = await store.cancel(pending.id, 3.0, {"code": 1, "message": "again"})
    assert again == first
    claimed = await running(store, lease=1, now=2.0)
    await store.cancel(claimed.id, 2.5, CANCELLED)
    await store.recover_expired(100.0, CANCELLED, ABANDONED)  # its worker died
    later = await store.cancel(claimed.id, 101.0, CANCELLED)
    assert later is not None and later.state is State.CANCELLED and later.end_time == 100.0


async def test_cancel_of_an_unknown_id_is_none(store: Store) -> None:
    await store.create(operation(), 1.0)
    assert await store.cancel("missing", 1.0, CANCELLED) is None


# -- races between connections ----------------------------------------------------------

ROUNDS = 30


async def test_cancel_racing_completion(store: Store, other: Store) -> None:
    """A cancel of a running operation only flags it; the worker's finish still wins."""
    for i in range(ROUNDS):
        claimed = await running(store)
        cancel = other.cancel(claimed.id, 3.0, CANCELLED)
        finish = store.finish(claimed.id, 1, State.SUCCEEDED, 3.0, response={"ok": 1})
        if i % 2:  # started in one order on even rounds and the other on odd ones
            finished, cancelled = await asyncio.gather(finish, cancel)
        else:
            cancelled, finished = await asyncio.gather(cancel, finish)
        assert finished
        final = await settled(other, claimed.id)
        assert final.state is State.SUCCEEDED
        assert final.response == {"ok": 1} and final.error is None
        assert cancelled is not None and cancelled.state in (State.RUNNING, State.SUCCEEDED)


async def test_cancel_racing_claim(store: Store, other: Store) -> None:
    """A pending operation is either cancelled and never handed out, or claimed with the
    cancel flagged for its worker to see."""
    for i in range(ROUNDS):
        record, _ = await store.create(operation(), 1.0)
        claim = store.claim(["k"], "w", 30, 1, 2.0)
        cancel = other.cancel(record.id, 2.0, CANCELLED)
        if i % 2:
            _, claimed = await asyncio.gather(cancel, claim)
        else:
            claimed, _ = await asyncio.gather(claim, cancel)
        final = await settled(other, record.id)
        if claimed:
            assert final.state is State.RUNNING and final.cancel_requested
            assert await store.heartbeat("w", 30, 3.0) == [
                LeaseState(record.id, claimed[0].attempt, True)
            ]
            assert await store.finish(record.id, 1, State.CANCELLED, 4.0, error=CANCELLED)
        else:
            assert final.state is State.CANCELLED and final.attempt == 0
        assert (await settled(other, record.id)).state is State.CANCELLED

"""Claims, leases and every worker write: which operations a claim takes, how attempts
are counted, what recovery makes of an expired lease, and how a stale attempt's writes
are fenced off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from longops.engine import OperationRecord, State
from longops.engine.store import Store
from tests.store.records import (
    ABANDONED,
    CANCELLED,
    FINAL,
    operation,
    running,
    settled,
)

# -- claim ------------------------------------------------------------------------------


async def test_claim_takes_the_oldest_pending_of_the_served_kinds(store: Store) -> None:
    a, _ = await store.create(operation("a"), 1.0)
    await store.create(operation("other"), 2.0)
    b, _ = await store.create(operation("b"), 3.0)
    c, _ = await store.create(operation("a"), 4.0)
    claimed = await store.claim(["b", "a"], "w1", 30, 2, 10.0)
    assert [r.id for r in claimed] == [a.id, b.id]
    assert all(r.state is State.RUNNING and r.attempt == 1 for r in claimed)
    assert all(r.start_time == r.update_time == 10.0 for r in claimed)
    rest = await store.claim(["a", "b"], "w2", 30, 10, 11.0)
    assert [r.id for r in rest] == [c.id]
    assert await store.claim(["a", "b"], "w3", 30, 10, 12.0) == []


async def test_claim_takes_only_pending_operations(store: Store) -> None:
    started = await running(store)
    finished = await running(store)
    await store.finish(finished.id, 1, State.SUCCEEDED, 3.0)
    cancelled, _ = await store.create(operation(started.kind), 1.0)
    await store.cancel(cancelled.id, 3.0, CANCELLED)
    kinds = [started.kind, finished.kind]
    assert await store.claim(kinds, "w2", 30, 10, 4.0) == []
    assert (await store.get(started.id)).attempt == 1  # type: ignore[union-attr]


async def test_a_claim_of_nothing_takes_nothing(store: Store) -> None:
    await store.create(operation(), 1.0)
    assert await store.claim([], "w", 30, 10, 2.0) == []
    assert await store.claim(["k"], "w", 30, 0, 2.0) == []
    assert len(await store.claim(["k"], "w", 30, 1, 2.0)) == 1


async def test_a_retry_waits_for_its_not_before(store: Store) -> None:
    claimed = await running(store, now=2.0)
    assert await store.fail_attempt(claimed.id, 1, 3.0, 100.0, FINAL) is State.PENDING
    assert await store.claim([claimed.kind], "w", 30, 1, 99.5) == []
    [again] = await store.claim([claimed.kind], "w", 30, 1, 100.0)  # due at not_before
    assert again.attempt == 2
    assert again.start_time == 2.0  # the first attempt's start
    assert again.update_time == 100.0


async def test_concurrent_claims_never_overlap(store: Store, other: Store) -> None:
    ids = {(await store.create(operation(), float(i)))[0].id for i in range(60)}

    async def drain(s: Store, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await s.claim(["k"], owner, 30, 3, time.time()):
            got += [r.id for r in batch]
            await asyncio.sleep(0)
        return got

    one, two = await asyncio.gather(drain(store, "w1"), drain(other, "w2"))
    assert not set(one) & set(two)
    assert set(one) | set(two) == ids
    assert len(one) + len(two) == len(ids)


# -- heartbeat and progress ------------------------------------------------------------------


async def test_heartbeat_extends_only_held_leases(store: Store) -> None:
    a = await running(store, owner="w1", lease=5)
    b = await running(store, owner="w2", lease=5)
    leases = await store.heartbeat("w1", 5, 6.0)
    assert [(lease.id, lease.attempt, lease.cancel_requested) for lease in leases] == [
        (a.id, 1, False)
    ]
    # w1's lease now runs to 11; w2's expired at 7.
    assert await store.recover_expired(8.0, CANCELLED, ABANDONED) == [(b.id, State.PENDING)]
    await store.cancel(a.id, 9.0, CANCELLED)
    [lease] = await store.heartbeat("w1", 5, 9.5)
    assert lease.cancel_requested
    assert await store.heartbeat("nobody", 5, 9.5) == []


async def test_a_heartbeat_lists_every_lease_of_its_owner(store: Store) -> None:
    held = {(await running(store, owner="w")).id for _ in range(3)}
    await running(store, owner="other")
    assert {lease.id for lease in await store.heartbeat("w", 30, 3.0)} == held


@pytest.mark.parametrize("end", ["finish", "fail_attempt", "release"])
async def test_an_attempt_that_ended_holds_no_lease(store: Store, end: str) -> None:
    claimed = await running(store, owner="w")
    ends: dict[str, Callable[[], Awaitable[object]]] = {
        "finish": lambda: store.finish(claimed.id, 1, State.SUCCEEDED, 3.0),
        "fail_attempt": lambda: store.fail_attempt(claimed.id, 1, 3.0, 3.0, FINAL),
        "release": lambda: store.release(claimed.id, 1, 3.0),
    }
    await ends[end]()
    assert await store.heartbeat("w", 30, 4.0) == []
    assert await store.recover_expired(1e9, CANCELLED, ABANDONED) == []


async def test_save_progress_replaces_the_metadata_and_tells_of_a_cancel(
    store: Store, other: Store
) -> None:
    claimed = await running(store)
    assert await store.save_progress(claimed.id, 1, {"a": 1}, 3.0) is False
    assert await store.save_progress(claimed.id, 1, {"b": 2}, 4.0) is False
    await store.cancel(claimed.id, 5.0, CANCELLED)
    assert await store.save_progress(claimed.id, 1, {"c": 3}, 6.0) is True
    stored = await other.get(claimed.id)
    assert stored is not None and stored.metadata == {"c": 3} and stored.update_time == 6.0
    assert stored.state is State.RUNNING


# -- finish, fail_attempt, release --------------------------------------------------------


async def test_finish_ends_the_operation(store: Store, other: Store) -> None:
    claimed = await running(store)
    await store.save_progress(claimed.id, 1, {"p": 1}, 3.0)
    assert await store.finish(claimed.id, 1, State.SUCCEEDED, 4.0, response={"ok": True})
    stored = await other.get(claimed.id)
    assert stored is not None and stored.state is State.SUCCEEDED and stored.done
    assert stored.response == {"ok": True} and stored.error is None
    assert stored.metadata == {"p": 1}  # kept when none is given
    assert stored.end_time == stored.update_time == 4.0
    assert not await store.finish(claimed.id, 1, State.FAILED, 5.0, error=FINAL)
    assert (await settled(other, claimed.id)).state is State.SUCCEEDED


async def test_finish_with_metadata_and_an_error(store: Store, other: Store) -> None:
    claimed = await running(store)
    await store.save_progress(claimed.id, 1, {"p": 1}, 3.0)
    assert await store.finish(
        claimed.id, 1, State.FAILED, 4.0, error=FINAL, metadata={"progressPercent": 100}
    )
    stored = await other.get(claimed.id)
    assert stored is not None and stored.state is State.FAILED
    assert stored.error == FINAL and stored.response is None
    assert stored.metadata == {"progressPercent": 100}


async def test_fail_attempt_retries_until_the_last(store: Store, other: Store) -> None:
    claimed = await running(store, max_attempts=2)
    assert await store.fail_attempt(claimed.id, 1, 3.0, 3.0, FINAL) is State.PENDING
    retried = await other.get(claimed.id)
    assert retried is not None and retried.state is State.PENDING
    assert retried.error is None and retried.end_time is None and retried.update_time == 3.0
    [again] = await store.claim([claimed.kind], "w", 30, 1, 4.0)
    assert await store.fail_attempt(claimed.id, again.attempt, 5.0, 5.0, FINAL) is State.FAILED
    failed = await settled(other, claimed.id)
    assert failed.state is State.FAILED and failed.error == FINAL and failed.end_time == 5.0
    assert await store.claim([claimed.kind], "w", 30, 1, 6.0) == []


async def test_release_does_not_count_against_max_attempts(store: Store) -> None:
    claimed = await running(store, max_attempts=1)
    for t in (3.0, 4.0, 5.0):
        assert await store.release(claimed.id, claimed.attempt, t)
        stored = await store.get(claimed.id)
        assert stored is not None and stored.state is State.PENDING and stored.error is None
        [claimed] = await store.claim([claimed.kind], "w", 1, 1, t)
    assert claimed.attempt == 4
    assert await store.recover_expired(10.0, CANCELLED, ABANDONED) == [(claimed.id, State.FAILED)]


async def test_attempts_count_failures_and_expiries_but_not_releases(store: Store) -> None:
    """Out of attempts when `attempt - releases >= max_attempts`, whichever write ends
    the attempt that reaches it."""
    claimed = await running(store, max_attempts=3, lease=1, now=2.0)  # attempt 1
    assert await store.release(claimed.id, 1, 2.5)
    [claimed] = await store.claim([claimed.kind], "w", 1, 1, 3.0)  # attempt 2: counts 1
    assert await store.fail_attempt(claimed.id, 2, 3.5, 3.5, FINAL) is State.PENDING
    [claimed] = await store.claim([claimed.kind], "w", 1, 1, 4.0)  # attempt 3: counts 2
    assert await store.recover_expired(6.0, CANCELLED, ABANDONED) == [(claimed.id, State.PENDING)]
    [claimed] = await store.claim([claimed.kind], "w", 1, 1, 7.0)  # attempt 4: counts 3
    assert claimed.attempt == 4
    assert await store.fail_attempt(claimed.id, 4, 7.5, 7.5, FINAL) is State.FAILED


# -- recovery of expired leases ------------------------------------------------------------


async def test_recovery_takes_only_leases_expired_before_now(store: Store) -> None:
    pending, _ = await store.create(operation(), 1.0)
    expiring = await running(store, lease=5, now=2.0)  # expires at 7
    later = await running(store, lease=10, now=2.0)  # at 12
    assert await store.recover_expired(7.0, CANCELLED, ABANDONED) == []  # not before 7
    assert await store.recover_expired(7.5, CANCELLED, ABANDONED) == [(expiring.id, State.PENDING)]
    assert (await store.get(later.id)).state is State.RUNNING  # type: ignore[union-attr]
    assert (await store.get(pending.id)).state is State.PENDING  # type: ignore[union-attr]
    recovered = await store.get(expiring.id)
    assert recovered is not None and recovered.state is State.PENDING
    assert recovered.error is None and recovered.end_time is None
    assert recovered.update_time == 7.5 and recovered.attempt == 1
    [again] = await store.claim([expiring.kind], "w2", 30, 1, 8.0)
    assert again.attempt == 2


async def test_expired_leases_fail_after_max_attempts(store: Store) -> None:
    record, _ = await store.create(operation(max_attempts=2), 1.0)
    for attempt in (1, 2):
        [claimed] = await store.claim(["k"], "w", 1, 1, float(attempt * 10))
        assert claimed.attempt == attempt
        states = await store.recover_expired(attempt * 10 + 5.0, CANCELLED, ABANDONED)
        assert states == [(record.id, State.PENDING if attempt == 1 else State.FAILED)]
    failed = await store.get(record.id)
    assert failed is not None and failed.error == ABANDONED and failed.end_time == 25.0
    assert failed.state is State.FAILED and failed.done


async def test_an_expired_lease_with_a_cancel_requested_ends_cancelled(store: Store) -> None:
    """A cancel flagged on a worker that then dies ends CANCELLED, not retried, even
    with attempts left."""
    claimed = await running(store, lease=1, now=2.0, max_attempts=5)
    await store.cancel(claimed.id, 2.5, CANCELLED)
    assert await store.recover_expired(4.0, CANCELLED, ABANDONED) == [(claimed.id, State.CANCELLED)]
    stored = await store.get(claimed.id)
    assert stored is not None and stored.state is State.CANCELLED
    assert stored.error == CANCELLED and stored.end_time == 4.0
    assert await store.claim([claimed.kind], "w", 30, 1, 5.0) == []


async def test_dead_owners_leases_end_before_they_expire(store: Store) -> None:
    """Leases of owners known dead (`engine/liveness.py`) end at once, by the same rules
    as expired ones; a live owner's stay until they expire."""
    retried, _ = await store.create(operation(), 1.0)
    cancelled, _ = await store.create(operation(), 1.0)
    spent, _ = await store.create(operation(max_attempts=1), 1.0)
    alive, _ = await store.create(operation(), 1.0)
    assert len(await store.claim(["k"], "dead", 30, 3, 2.0)) == 3
    await store.claim(["k"], "alive", 30, 1, 2.0)
    await store.cancel(cancelled.id, 3.0, CANCELLED)
    assert sorted(await store.lease_owners()) == ["alive", "dead"]

    assert await store.recover_expired(10.0, CANCELLED, ABANDONED) == []  # none expired
    recovered = await store.recover_expired(
        10.0, CANCELLED, ABANDONED, dead_owners=["dead", "never-held-one"]
    )
    assert sorted(recovered) == sorted(
        [(retried.id, State.PENDING), (cancelled.id, State.CANCELLED), (spent.id, State.FAILED)]
    )
    assert await store.lease_owners() == ["alive"]
    failed = await store.get(spent.id)
    assert failed is not None and failed.error == ABANDONED and failed.end_time == 10.0
    [again] = await store.claim(["k"], "w", 30, 1, 11.0)
    assert (again.id, again.attempt) == (retried.id, 2)
    # Expired leases are still recovered beside the dead owners'.
    assert await store.recover_expired(40.0, CANCELLED, ABANDONED, dead_owners=["dead"]) == [
        (alive.id, State.PENDING)
    ]


# -- fencing --------------------------------------------------------------------------


async def test_writes_are_fenced_by_attempt(store: Store) -> None:
    record, _ = await store.create(operation(), 1.0)
    [first] = await store.claim(["k"], "w1", 1, 1, 2.0)
    recovered = await store.recover_expired(10.0, CANCELLED, ABANDONED)
    assert recovered == [(record.id, State.PENDING)]
    [second] = await store.claim(["k"], "w2", 30, 1, 11.0)
    assert second.attempt == 2
    # The first worker wakes up late: none of its writes land.
    assert await store.heartbeat("w1", 30, 12.0) == []
    assert await store.save_progress(record.id, first.attempt, {"p": 1}, 12.0) is None
    assert not await store.finish(record.id, first.attempt, State.SUCCEEDED, 12.0, response={})
    assert await store.fail_attempt(record.id, first.attempt, 12.0, 12.0, FINAL) is None
    assert not await store.release(record.id, first.attempt, 12.0)
    assert await store.save_progress(record.id, second.attempt, {"p": 2}, 13.0) is False
    assert await store.finish(
        record.id, second.attempt, State.SUCCEEDED, 14.0, response={"ok": True}
    )
    done = await store.get(record.id)
    assert done is not None and done.state is State.SUCCEEDED and done.done
    assert done.response == {"ok": True} and done.metadata == {"p": 2} and done.end_time == 14.0


WRITES: dict[str, Callable[[Store, str, int], Awaitable[object]]] = {
    "save_progress": lambda s, id, attempt: s.save_progress(id, attempt, {"late": 1}, 50.0),
    "finish": lambda s, id, attempt: s.finish(id, attempt, State.SUCCEEDED, 50.0, response={}),
    "fail_attempt": lambda s, id, attempt: s.fail_attempt(id, attempt, 50.0, 50.0, FINAL),
    "release": lambda s, id, attempt: s.release(id, attempt, 50.0),
}
REFUSED = {"save_progress": None, "finish": False, "fail_attempt": None, "release": False}


def unchanged(before: OperationRecord, after: OperationRecord | None) -> None:
    assert after is not None
    assert (after.state, after.attempt, after.metadata, after.response, after.error) == (
        before.state, before.attempt, before.metadata, before.response, before.error
    )  # fmt: skip
    assert after.update_time == before.update_time


@pytest.mark.parametrize("write", list(WRITES))
async def test_a_write_of_another_attempt_is_refused(
    store: Store, other: Store, write: str
) -> None:
    """The attempt before the current one (its lease recovered) and the one after it
    (never claimed) both bounce, and leave the row as it was."""
    claimed = await running(store, lease=1, now=2.0)
    await store.recover_expired(5.0, CANCELLED, ABANDONED)
    [current] = await store.claim([claimed.kind], "w2", 30, 1, 6.0)
    before = await settled(other, claimed.id)
    for attempt in (current.attempt - 1, current.attempt + 1, 0):
        assert await WRITES[write](store, claimed.id, attempt) == REFUSED[write]
    unchanged(before, await settled(other, claimed.id))


@pytest.mark.parametrize("ended", ["finish", "release", "fail_attempt", "cancel"])
@pytest.mark.parametrize("write", list(WRITES))
async def test_a_write_of_an_attempt_that_ended_is_refused(
    store: Store, other: Store, write: str, ended: str
) -> None:
    """The right attempt number is not enough: the attempt must still hold its lease."""
    claimed = await running(store, now=2.0)
    if ended == "finish":
        await store.finish(claimed.id, 1, State.SUCCEEDED, 3.0, response={"ok": True})
    elif ended == "release":
        await store.release(claimed.id, 1, 3.0)
    elif ended == "fail_attempt":
        await store.fail_attempt(claimed.id, 1, 3.0, 3.0, FINAL)
    else:  # a cancel ends only a pending operation: release it first
        await store.release(claimed.id, 1, 3.0)
        await store.cancel(claimed.id, 3.0, CANCELLED)
    before = await settled(other, claimed.id)
    assert await WRITES[write](store, claimed.id, 1) == REFUSED[write]
    unchanged(before, await settled(other, claimed.id))


async def test_finish_racing_lease_expiry_and_a_new_claim(store: Store, other: Store) -> None:
    """A worker finishing just as its lease is found expired and another worker claims:
    exactly one of the two attempts ends the operation, and the loser's writes bounce."""
    for i in range(30):
        record, _ = await store.create(operation(), 1.0)
        [first] = await store.claim(["k"], "a", 5, 1, 2.0)  # expires at 7.0

        async def recover_and_claim() -> list[OperationRecord]:
            await other.recover_expired(10.0, CANCELLED, ABANDONED)
            return await other.claim(["k"], "b", 30, 1, 10.0)

        finish = store.finish(record.id, first.attempt, State.SUCCEEDED, 10.0, response={"by": "a"})
        if i % 2:  # started in one order on even rounds and the other on odd ones
            second, finished = await asyncio.gather(recover_and_claim(), finish)
        else:
            finished, second = await asyncio.gather(finish, recover_and_claim())
        final = await settled(store, record.id)
        if finished:
            assert final.state is State.SUCCEEDED and final.attempt == 1
            assert final.response == {"by": "a"} and not second
        else:
            if not second:  # the bounced finish may hold the row's lock for a moment
                assert final.state is State.PENDING
                second = await other.claim(["k"], "b", 30, 1, 10.0)
            assert [r.id for r in second] == [record.id] and second[0].attempt == 2
            final = await settled(store, record.id)
            assert final.state is State.RUNNING and final.attempt == 2
            assert await store.save_progress(record.id, 1, {"late": True}, 11.0) is None
            assert await other.finish(record.id, 2, State.SUCCEEDED, 11.0, response={"by": "b"})
            assert (await settled(store, record.id)).response == {"by": "b"}

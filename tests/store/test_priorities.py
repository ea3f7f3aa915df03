"""Flow control in the store: priorities order claims (higher first, equal ones first in,
first out), and a delayed start's `not_before` keeps an operation unclaimed until then.
Both travel with the record, so every read shows them."""

from __future__ import annotations

from dataclasses import replace

from longops.engine import State
from longops.engine.records import DEFAULT_PRIORITY
from longops.engine.store import Store
from tests.store.records import operation


async def test_claims_take_higher_priorities_first_and_equal_ones_in_order(
    store: Store,
) -> None:
    low, _ = await store.create(replace(operation("a"), priority=10), 1.0)
    mid1, _ = await store.create(operation("b"), 2.0)
    high, _ = await store.create(replace(operation("a"), priority=900), 3.0)
    mid2, _ = await store.create(operation("a"), 4.0)
    top, _ = await store.create(replace(operation("b"), priority=1000), 5.0)
    assert mid1.priority == DEFAULT_PRIORITY and top.priority == 1000
    first = await store.claim(["a", "b"], "w1", 30, 2, 10.0)
    assert [r.id for r in first] == [top.id, high.id]
    rest = await store.claim(["a", "b"], "w2", 30, 10, 11.0)
    assert [r.id for r in rest] == [mid1.id, mid2.id, low.id]


async def test_one_at_a_time_claims_follow_priority_then_creation(store: Store) -> None:
    created = [
        (await store.create(replace(operation(), priority=p), float(i)))[0]
        for i, p in enumerate([500, 0, 500, 1000, 0, 500])
    ]
    order = [(await store.claim(["k"], "w", 30, 1, 10.0))[0].id for _ in created]
    expected = sorted(created, key=lambda r: (-r.priority, r.seq))
    assert order == [r.id for r in expected]
    assert [r.priority for r in expected] == [1000, 500, 500, 500, 0, 0]


async def test_priority_and_schedule_are_stored(store: Store) -> None:
    made, _ = await store.create(replace(operation(), priority=7, not_before=50.0), 1.0)
    read = await store.get(made.id)
    assert read is not None and (read.priority, read.not_before) == (7, 50.0)
    listed = await store.list_operations(
        "", limit=10, name_prefix=None, done=None, kinds=None, before_seq=None
    )
    assert [(r.priority, r.not_before) for r in listed] == [(7, 50.0)]


async def test_a_delayed_start_is_not_claimed_before_its_time(store: Store) -> None:
    later, _ = await store.create(replace(operation(), not_before=100.0, priority=1000), 1.0)
    now, _ = await store.create(operation(), 2.0)
    assert [r.id for r in await store.claim(["k"], "w", 30, 10, 50.0)] == [now.id]
    assert await store.claim(["k"], "w", 30, 10, 99.9) == []
    claimed = await store.claim(["k"], "w", 30, 10, 100.0)
    assert [r.id for r in claimed] == [later.id]
    assert claimed[0].state is State.RUNNING and claimed[0].start_time == 100.0


async def test_a_delayed_start_may_be_cancelled_while_it_waits(store: Store) -> None:
    later, _ = await store.create(replace(operation(), not_before=100.0), 1.0)
    cancelled = await store.cancel(later.id, 5.0, {"code": 1, "message": "cancelled"})
    assert cancelled is not None and cancelled.state is State.CANCELLED
    assert await store.claim(["k"], "w", 30, 10, 200.0) == []

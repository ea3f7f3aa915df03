"""`count_unfinished`: the pending and running operations by kind behind `/metrics`'s
gauges, as every process on the database sees them."""

from __future__ import annotations

from longops.engine import State
from longops.engine.store import Store
from tests.store.records import CANCELLED, operation


async def test_counts_pending_and_running_by_kind_and_nothing_done(
    store: Store, other: Store
) -> None:
    assert await store.count_unfinished() == {}
    for kind in ("a", "a", "a", "b"):
        await store.create(operation(kind=kind), 1.0)
    claimed = await store.claim(["a"], "w", 30, 2, 2.0)
    assert len(claimed) == 2
    await store.finish(claimed[0].id, 1, State.SUCCEEDED, 3.0, response={})
    cancelled, _ = await store.create(operation(kind="b"), 1.0)
    await store.cancel(cancelled.id, 3.0, CANCELLED)
    expected = {("a", State.PENDING): 1, ("a", State.RUNNING): 1, ("b", State.PENDING): 1}
    assert await store.count_unfinished() == expected
    assert await other.count_unfinished() == expected

"""`tenant_usage`: what tenant quotas are checked against, as every process on the
database sees it, each count stopping at its limit."""

from __future__ import annotations

from longops.engine import State
from longops.engine.store import Store
from tests.store.records import CANCELLED, operation


async def test_counts_the_tenants_unfinished_operations_up_to_the_limit(
    store: Store, other: Store
) -> None:
    for tenant in ("a", "a", "a", "a", "b"):
        await store.create(operation(tenant=tenant), 1.0)
    claimed = await store.claim(["k"], "w", 30, 2, 2.0)
    assert len(claimed) == 2
    await store.finish(claimed[0].id, 1, State.SUCCEEDED, 3.0, response={})
    cancelled, _ = await store.create(operation(tenant="a"), 1.0)
    await store.cancel(cancelled.id, 3.0, CANCELLED)
    usage = await other.tenant_usage("a", unfinished_limit=10, creates_limit=0, request_id=None)
    assert usage.unfinished == 3  # one running, two pending: not the finished nor cancelled
    assert usage.newest_create_times == []
    capped = await other.tenant_usage("a", unfinished_limit=2, creates_limit=0, request_id=None)
    assert capped.unfinished == 2
    assert (
        await store.tenant_usage("b", unfinished_limit=10, creates_limit=0, request_id=None)
    ).unfinished == 1
    unasked = await store.tenant_usage("a", unfinished_limit=0, creates_limit=0, request_id=None)
    assert unasked.unfinished == 0


async def test_gives_the_create_times_of_the_tenants_newest_operations(
    store: Store, other: Store
) -> None:
    for when, tenant in ((1.0, "a"), (2.0, "a"), (3.0, "b"), (4.0, "a")):
        await store.create(operation(tenant=tenant), when)
    usage = await other.tenant_usage("a", unfinished_limit=0, creates_limit=2, request_id=None)
    assert usage.newest_create_times == [4.0, 2.0]
    every = await other.tenant_usage("a", unfinished_limit=0, creates_limit=10, request_id=None)
    assert every.newest_create_times == [4.0, 2.0, 1.0]
    none = await store.tenant_usage("c", unfinished_limit=5, creates_limit=5, request_id=None)
    assert (none.unfinished, none.newest_create_times) == (0, [])


async def test_says_whether_the_tenant_stored_an_operation_of_a_request_id(
    store: Store, other: Store
) -> None:
    await store.create(operation(tenant="a", request_id="r1"), 1.0)

    async def stored(tenant: str, request_id: str) -> bool:
        usage = await other.tenant_usage(
            tenant, unfinished_limit=1, creates_limit=1, request_id=request_id
        )
        return usage.request_id_stored

    assert await stored("a", "r1")
    assert not await stored("a", "r2")
    assert not await stored("b", "r1")  # another tenant's request ids are not its own

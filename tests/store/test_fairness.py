"""Fair sharing in the store: among pending operations of equal priority, claims take
tenants, and each tenant's concurrency keys, in turn, while one tenant and key is first
in, first out. A create's turn is one past the last pending turn of its tenant, key and
priority, and no earlier than that priority's earliest pending turn (see
`OperationRecord.turn`); claims go by priority, then turn, then creation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace

from longops.engine import NewOperation, OperationRecord
from longops.engine.store import Store
from tests.store.records import operation

BACKLOG = 10_000
"""The issue's backlog: one tenant's 10,000 pending operations."""


def new(tenant: str = "", key: str = "", *, priority: int | None = None) -> NewOperation:
    made = replace(operation(tenant=tenant), concurrency_key=key)
    return made if priority is None else replace(made, priority=priority)


async def create_all(store: Store, backend: str, news: Iterable[NewOperation]) -> None:
    """Create `news` in order. On SQLite, batches of concurrent creates commit together
    (one transaction, its statements run one after another, so each sees the turns
    before it). On PostgreSQL they go one at a time: concurrent creates of one tenant
    each read its last pending turn before the others commit and may share a turn,
    which would blur what these tests measure. (10,000 creates: about 0.3 s on SQLite,
    4 to 6 s on PostgreSQL on a busy 2-core machine, each a commit of its own; the
    issue's count is kept on both.)"""
    news = list(news)
    step = 1000 if backend == "sqlite" else 1
    for start in range(0, len(news), step):
        await asyncio.gather(*(store.create(n, 1.0) for n in news[start : start + step]))


async def claim_one(store: Store) -> OperationRecord:
    [claimed] = await store.claim(["k"], "w", 30, 1, 10.0)
    return claimed


async def claim_all(store: Store) -> list[OperationRecord]:
    """Every pending operation, claimed one at a time (the order claims take them)."""
    order = []
    while claimed := await store.claim(["k"], "w", 30, 1, 10.0):
        order += claimed
    return order


def who(records: Iterable[OperationRecord]) -> list[str]:
    return [r.tenant + r.concurrency_key for r in records]


async def test_one_tenant_and_key_is_first_in_first_out(store: Store, backend: str) -> None:
    news = [new("A") for _ in range(20)]
    await create_all(store, backend, news)
    assert [r.id for r in await claim_all(store)] == [n.id for n in news]


async def test_a_single_operation_behind_a_backlog_of_10000_is_claimed_within_2_claims(
    store: Store, backend: str
) -> None:
    """N, the claims up to and including B's, is 1 + the other (tenant, key) groups with
    an operation at the earliest pending turn, which B's operation is given: here A's
    oldest alone, so N = 2 (measured: 2 on both backends)."""
    await create_all(store, backend, (new("A") for _ in range(BACKLOG)))
    single, _ = await store.create(new("B"), 2.0)
    claims = 0
    while True:
        claims += 1
        if (await claim_one(store)).id == single.id:
            break
    assert claims <= 2
    # and A's backlog goes on in its order behind it
    assert who([await claim_one(store) for _ in range(3)]) == ["A", "A", "A"]


async def test_two_backlogged_tenants_alternate(store: Store, backend: str) -> None:
    await create_all(store, backend, [new("A") for _ in range(30)] + [new("B") for _ in range(10)])
    order = who(await claim_all(store))
    assert order == ["A", "B"] * 10 + ["A"] * 20


async def test_three_tenants_take_turns_in_order_of_arrival(store: Store, backend: str) -> None:
    await create_all(store, backend, [new(t) for t in "ABC" for _ in range(4)])
    assert who(await claim_all(store)) == list("ABC") * 4


async def test_the_concurrency_keys_of_one_tenant_take_turns(store: Store, backend: str) -> None:
    news = [new("A", "x") for _ in range(6)] + [new("A", "y") for _ in range(3)]
    await create_all(store, backend, [*news, new("A", "z")])
    order = await claim_all(store)
    assert who(order) == ["Ax", "Ay", "Az", "Ax", "Ay", "Ax", "Ay", "Ax", "Ax", "Ax"]
    # each key first in, first out
    assert [r.id for r in order if r.concurrency_key == "x"] == [n.id for n in news[:6]]


async def test_the_same_key_of_two_tenants_is_two_groups(store: Store, backend: str) -> None:
    await create_all(store, backend, [new(t, "x") for t in "AB" for _ in range(3)])
    assert who(await claim_all(store)) == ["Ax", "Bx"] * 3


async def test_priority_wins_over_turns(store: Store, backend: str) -> None:
    await create_all(store, backend, [new("A") for _ in range(5)])
    urgent = [new("B", priority=900) for _ in range(3)]
    await create_all(store, backend, [*urgent, new("C", priority=100), new("C")])
    order = await claim_all(store)
    assert [r.id for r in order[:3]] == [n.id for n in urgent]  # B's backlog, before turns
    assert who(order[3:]) == ["A", "C", "A", "A", "A", "A", "C"]
    assert order[-1].priority == 100


async def test_a_tenant_arriving_behind_a_half_drained_backlog_interleaves_with_it(
    store: Store, backend: str
) -> None:
    """The late tenant starts at the earliest pending turn, beside A's next one, not
    behind A's last: it neither waits for A's backlog nor is owed the claims it missed."""
    await create_all(store, backend, [new("A") for _ in range(10)])
    assert who([await claim_one(store) for _ in range(5)]) == ["A"] * 5
    await create_all(store, backend, [new("B") for _ in range(5)])
    assert who(await claim_all(store)) == ["A", "B"] * 5


async def test_a_tenant_coming_back_after_its_queue_emptied_is_not_sent_to_the_back(
    store: Store, backend: str
) -> None:
    """A tenant whose last pending operation was claimed has no turn to continue from:
    its next operation takes the earliest pending turn, like a newcomer's."""
    await create_all(store, backend, [new("A") for _ in range(6)] + [new("B")])
    assert who([await claim_one(store) for _ in range(3)]) == ["A", "B", "A"]
    await create_all(store, backend, [new("B")])
    assert who(await claim_all(store)) == ["A", "B", "A", "A", "A"]


async def test_batched_claims_are_fair_too(store: Store, backend: str) -> None:
    await create_all(store, backend, [new("A") for _ in range(100)] + [new("B")])
    first = await store.claim(["k"], "w", 30, 4, 10.0)
    assert sorted(who(first)) == ["A", "A", "A", "B"]


async def test_a_released_operation_keeps_its_turn(store: Store, backend: str) -> None:
    """A release (a worker shutting down) hands the operation back where it was: ahead
    of the turns created after it."""
    await create_all(store, backend, [new("A") for _ in range(3)] + [new("B") for _ in range(3)])
    first = await claim_one(store)
    assert await store.release(first.id, first.attempt, 11.0)
    order = await claim_all(store)
    assert order[0].id == first.id
    assert who(order) == ["A", "B", "A", "B", "A", "B"]

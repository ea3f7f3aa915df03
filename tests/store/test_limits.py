"""Concurrency and rate limits in the store: a claim given `limits` never leases more of
a kind (or of one tenant's concurrency key) than the limit allows, counting what every
process runs and every lease not yet recovered, and starts no more per second than the
kind's (or key's) token bucket holds, a bucket every store on the database shares. Work
over a limit stays PENDING; `Store.waiting` says why."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace

from longops.engine import NewOperation, OperationRecord, State
from longops.engine.limits import Limit
from longops.engine.store import Store
from longops.engine.store.sql import SqlStore
from tests.store.records import ABANDONED, CANCELLED, listed, operation

T = 1000.0
"""The time of the first claim of a test."""


def new(
    kind: str = "k", tenant: str = "", key: str = "", *, priority: int | None = None
) -> NewOperation:
    made = replace(operation(kind, tenant), concurrency_key=key)
    return made if priority is None else replace(made, priority=priority)


async def create(
    store: Store, count: int, kind: str = "k", tenant: str = "", key: str = "", **fields: int
) -> list[OperationRecord]:
    """`count` operations of one tenant and key, one after another (concurrent creates
    of one key on PostgreSQL may share a turn, which would make claim order vary)."""
    return [(await store.create(new(kind, tenant, key, **fields), 1.0))[0] for _ in range(count)]


async def claim(
    store: Store,
    limits: Mapping[str, Limit],
    *,
    kinds: Iterable[str] = ("k",),
    limit: int = 100,
    now: float = T,
    lease: float = 30.0,
) -> list[OperationRecord]:
    return await store.claim(list(kinds), "w", lease, limit, now, limits)


async def running(store: Store, kind: str = "k") -> int:
    return (await store.count_unfinished()).get((kind, State.RUNNING), 0)


async def running_keys(store: Store, tenants: Iterable[str]) -> Counter[tuple[str, str]]:
    """How many run of each (tenant, key)."""
    found = [r for tenant in tenants for r in await listed(store, tenant, limit=1000, done=False)]
    return groups(r for r in found if r.state is State.RUNNING)


def groups(records: Iterable[OperationRecord]) -> Counter[tuple[str, str]]:
    return Counter((r.tenant, r.concurrency_key) for r in records)


async def finish(store: Store, record: OperationRecord, now: float = T) -> None:
    assert await store.finish(record.id, record.attempt, State.SUCCEEDED, now, response={})


async def buckets(store: Store) -> list[tuple[str, bool, str, str]]:
    """The rows of rate_buckets: (kind, per_key, tenant, key)."""
    assert isinstance(store, SqlStore)
    found = await store.database.read(
        lambda s: s.fetch("SELECT kind, per_key, tenant, concurrency_key FROM rate_buckets")
    )
    return sorted((r[0], bool(r[1]), r[2], r[3]) for r in found)


# -- concurrency ------------------------------------------------------------


async def test_repeated_claims_never_lease_more_than_the_concurrency(store: Store) -> None:
    await create(store, 10)
    limits = {"k": Limit(concurrency=2)}
    assert len(await claim(store, limits, limit=10)) == 2
    for _ in range(3):
        assert await claim(store, limits, limit=10) == []
        assert await claim(store, limits, limit=1) == []
    assert await running(store) == 2


async def test_a_claim_takes_only_the_room_left(store: Store) -> None:
    await create(store, 10)
    limits = {"k": Limit(concurrency=3)}
    assert len(await claim(store, limits, limit=2)) == 2
    assert len(await claim(store, limits, limit=2)) == 1
    assert await running(store) == 3


async def test_a_finish_frees_one_place(store: Store) -> None:
    await create(store, 5)
    limits = {"k": Limit(concurrency=2)}
    first, second = await claim(store, limits)
    await finish(store, first)
    [third] = await claim(store, limits)
    assert await claim(store, limits) == []
    assert third.id not in {first.id, second.id}
    # a failed attempt that goes back to PENDING frees its place too, and so does a release
    assert await store.fail_attempt(second.id, second.attempt, T, T, {}) is State.PENDING
    assert await store.release(third.id, third.attempt, T)
    assert len(await claim(store, limits)) == 2
    assert await running(store) == 2


async def test_an_expired_lease_counts_until_it_is_recovered(store: Store) -> None:
    """A worker whose lease expired may still be running it: the limit must not let
    another start until the lease is recovered (the operation back to PENDING)."""
    await create(store, 4)
    limits = {"k": Limit(concurrency=2)}
    held = await claim(store, limits, lease=10.0)
    assert len(held) == 2
    assert await claim(store, limits, now=T + 100) == []
    recovered = await store.recover_expired(T + 100, CANCELLED, ABANDONED)
    assert sorted(recovered) == sorted((r.id, State.PENDING) for r in held)
    again = await claim(store, limits, now=T + 101)
    assert len(again) == 2
    assert await running(store) == 2


async def test_a_key_limit_holds_per_tenant_and_key(store: Store) -> None:
    """Keys are the tenant's own: tenant B's key "x" is not tenant A's."""
    for tenant, key in [("A", "x"), ("A", "y"), ("B", "x"), ("A", "")]:
        await create(store, 3, tenant=tenant, key=key)
    limits = {"k": Limit(key_concurrency=1)}
    first = await claim(store, limits)
    assert groups(first) == {("A", "x"): 1, ("A", "y"): 1, ("B", "x"): 1, ("A", ""): 1}
    assert await claim(store, limits) == []
    [ax] = [r for r in first if (r.tenant, r.concurrency_key) == ("A", "x")]
    await finish(store, ax)
    assert groups(await claim(store, limits)) == {("A", "x"): 1}
    assert await running_keys(store, "AB") == {
        ("A", "x"): 1, ("A", "y"): 1, ("B", "x"): 1, ("A", ""): 1,
    }  # fmt: skip


async def test_a_kind_limit_and_a_key_limit_together(store: Store) -> None:
    for key in "xyz":
        await create(store, 3, key=key)
    limits = {"k": Limit(concurrency=2, key_concurrency=1)}
    first = await claim(store, limits)
    assert len(first) == 2 and set(groups(first).values()) == {1}
    await finish(store, first[0])
    [third] = await claim(store, limits)
    assert third.concurrency_key not in {r.concurrency_key for r in first[1:]}


async def test_other_kinds_are_not_limited(store: Store) -> None:
    await create(store, 5, kind="k")
    await create(store, 5, kind="u")
    limits = {"k": Limit(concurrency=1, rate=1)}
    assert len(await claim(store, limits, kinds=["u"])) == 5
    assert len(await claim(store, limits, kinds=["k"])) == 1
    assert await running(store, "u") == 5


async def test_a_claim_of_limited_and_unlimited_kinds_leases_both(store: Store) -> None:
    for kind in ("k", "u", "r"):
        await create(store, 3, kind=kind)
    limits = {"k": Limit(concurrency=1), "r": Limit(rate=2)}
    claimed = await claim(store, limits, kinds=["k", "u", "r"], limit=10)
    assert Counter(r.kind for r in claimed) == {"k": 1, "u": 3, "r": 2}


async def test_a_limited_backlog_ahead_does_not_stop_a_claim_short(store: Store) -> None:
    """The limited kind's backlog comes first in claim order (higher priority), yet the
    claim fills its places with the unlimited kind's work once the limited kind has no
    room left, rather than stopping at what the limited kind allows."""
    await create(store, 50, kind="k", priority=600)
    await create(store, 5, kind="u")
    limits = {"k": Limit(concurrency=2)}
    claimed = await claim(store, limits, kinds=["k", "u"], limit=10)
    assert Counter(r.kind for r in claimed) == {"k": 2, "u": 5}
    assert [r.kind for r in claimed] == ["k", "k", "u", "u", "u", "u", "u"]  # claim order


async def test_a_claim_of_a_rated_and_an_unlimited_kind_takes_both(store: Store) -> None:
    await create(store, 50, kind="k", priority=600)
    await create(store, 5, kind="u")
    claimed = await claim(store, {"k": Limit(rate=3)}, kinds=["k", "u"], limit=10)
    assert Counter(r.kind for r in claimed) == {"k": 3, "u": 5}


async def test_a_key_at_its_limit_does_not_hold_back_other_keys(store: Store) -> None:
    await create(store, 50, key="x")
    await create(store, 1, key="y")
    limits = {"k": Limit(key_concurrency=1)}
    assert groups(await claim(store, limits, limit=10)) == {("", "x"): 1, ("", "y"): 1}


async def test_a_key_at_its_limit_does_not_hold_back_keys_behind_its_backlog(
    store: Store,
) -> None:
    """Here key x's backlog comes before key y's work in claim order (a higher
    priority): the claim still reaches y, in the same claim."""
    await create(store, 50, key="x", priority=600)
    await create(store, 1, key="y")
    limits = {"k": Limit(key_concurrency=1)}
    assert groups(await claim(store, limits, limit=10)) == {("", "x"): 1, ("", "y"): 1}
    assert await claim(store, limits, limit=10) == []


async def test_many_keys_at_their_limit_do_not_hold_back_another_key(store: Store) -> None:
    """More keys at their limit than a claim can name in one statement, each with more
    work waiting ahead of another key's: that key's operation is still claimed."""
    full = 150
    for i in range(full):
        await create(store, 2, key=f"key-{i:03}")
    limits = {"k": Limit(key_concurrency=1)}
    assert len(await claim(store, limits, limit=1000)) == full  # each key at its limit
    [late] = await create(store, 1, key="late")  # behind every key's second operation
    assert [r.id for r in await claim(store, limits, limit=10)] == [late.id]


async def test_concurrent_claimers_never_exceed_the_limit(
    stores: Callable[[], Awaitable[Store]],
) -> None:
    """Eight stores on one database, each a process of its own, claim at once round
    after round while finishing some of what they hold: after every round, no more run
    than the kind's limit, nor than any key's, until all the work has run once."""
    claimers = [await stores() for _ in range(8)]
    first = claimers[0]
    for tenant in "AB":
        for key in "xyz":
            await create(first, 8, tenant=tenant, key=key)
    limits = {"k": Limit(concurrency=4, key_concurrency=2)}
    held: list[OperationRecord] = []
    claimed: list[str] = []
    rounds = peak = 0
    while len(claimed) < 48:
        rounds += 1
        assert rounds < 200, "the work never drained"
        now = T + rounds
        batches = await asyncio.gather(*(claim(s, limits, limit=3, now=now) for s in claimers))
        for batch in batches:
            held += batch
            claimed += [r.id for r in batch]
        assert await running(first) == len(held) <= 4
        peak = max(peak, len(held))
        assert max((await running_keys(first, "AB")).values(), default=0) <= 2
        # every round one finishes, and every third round all do
        done, held = (held, []) if rounds % 3 == 0 else (held[:1], held[1:])
        for record in done:
            await finish(claimers[rounds % 8], record, now)
    assert len(set(claimed)) == 48
    assert peak == 4  # the limit was reached, not merely kept to


# -- rates ------------------------------------------------------------------


async def test_a_rate_allows_a_seconds_burst_then_its_rate(store: Store) -> None:
    await create(store, 30)
    limits = {"k": Limit(rate=5)}
    assert len(await claim(store, limits, now=T)) == 5
    assert await claim(store, limits, now=T) == []
    assert await claim(store, limits, now=T + 0.1) == []  # half a start's worth
    assert len(await claim(store, limits, now=T + 0.2)) == 1
    assert len(await claim(store, limits, now=T + 1.2)) == 5  # a second later: full again
    assert len(await claim(store, limits, now=T + 100)) == 5  # and never more than full
    assert await running(store) == 16  # what is running does not matter to a rate


async def test_a_rate_below_one_per_second_allows_one_start_at_a_time(store: Store) -> None:
    await create(store, 5)
    limits = {"k": Limit(rate=0.5)}
    assert len(await claim(store, limits, now=T)) == 1
    assert await claim(store, limits, now=T + 1) == []
    assert len(await claim(store, limits, now=T + 2)) == 1


async def test_a_key_rate_holds_per_tenant_and_key(store: Store) -> None:
    for tenant, key in [("A", "x"), ("A", "y"), ("B", "x")]:
        await create(store, 5, tenant=tenant, key=key)
    limits = {"k": Limit(key_rate=2)}
    assert groups(await claim(store, limits, now=T)) == {
        ("A", "x"): 2,
        ("A", "y"): 2,
        ("B", "x"): 2,
    }
    assert await claim(store, limits, now=T) == []
    assert groups(await claim(store, limits, now=T + 0.5)) == {
        ("A", "x"): 1, ("A", "y"): 1, ("B", "x"): 1,
    }  # fmt: skip


async def test_a_kind_rate_and_a_key_rate_together(store: Store) -> None:
    for key in "xy":
        await create(store, 5, key=key)
    limits = {"k": Limit(rate=3, key_rate=2)}
    first = await claim(store, limits, now=T)
    assert len(first) == 3 and max(groups(first).values()) == 2
    assert await claim(store, limits, now=T) == []


async def test_every_store_on_the_database_draws_from_one_bucket(
    store: Store, other: Store
) -> None:
    await create(store, 20)
    limits = {"k": Limit(rate=5)}
    assert len(await claim(store, limits, now=T)) == 5
    assert await claim(other, limits, now=T) == []
    assert len(await claim(other, limits, now=T + 0.2)) == 1
    assert await claim(store, limits, now=T + 0.2) == []


async def test_concurrent_claimers_share_one_bucket(stores: Callable[[], Awaitable[Store]]) -> None:
    claimers = [await stores() for _ in range(8)]
    await create(claimers[0], 40)
    limits = {"k": Limit(rate=5)}
    for now in (T, T + 0.2, T + 1.2):
        batches = await asyncio.gather(*(claim(s, limits, limit=2, now=now) for s in claimers))
        assert sum(map(len, batches)) == (1 if now == T + 0.2 else 5)


async def test_the_buckets_of_idle_kinds_and_keys_are_pruned(store: Store) -> None:
    """A bucket untouched for a second (here the longest any of these takes to fill) is
    full, so claims delete it rather than keep a row per key ever limited."""
    await create(store, 1, key="x")
    await create(store, 2, key="y")
    await create(store, 1, kind="j")
    limits = {"k": Limit(rate=5, key_rate=1), "j": Limit(rate=2)}
    assert len(await claim(store, limits, kinds=["k", "j"], now=T)) == 3
    kind_k, kind_j = ("k", False, "", ""), ("j", False, "", "")
    key_x, key_y = ("k", True, "", "x"), ("k", True, "", "y")
    assert await buckets(store) == sorted([kind_k, kind_j, key_x, key_y])
    assert await claim(store, limits, kinds=["k", "j"], now=T + 0.5) == []  # y's is at 0.5
    assert await buckets(store) == sorted([kind_k, kind_j, key_x, key_y])
    [second_y] = await claim(store, limits, kinds=["k", "j"], now=T + 3)
    assert second_y.concurrency_key == "y"
    assert await buckets(store) == sorted([kind_k, key_y])  # j and x were idle
    assert await claim(store, limits, kinds=["k", "j"], now=T + 10) == []
    assert await buckets(store) == []


# -- where a pending operation waits ----------------------------------------


async def test_waiting_says_scheduled_until_its_time(store: Store) -> None:
    await create(store, 2)
    later, _ = await store.create(replace(new(), not_before=T + 50), 1.0)
    assert await store.waiting(later, Limit(), T, 10) == ("scheduled", 2)
    assert await store.waiting(later, Limit(), T + 50, 10) == ("queued", 2)


async def test_waiting_counts_what_is_claimed_before_it_up_to_the_cap(store: Store) -> None:
    await create(store, 5)
    [me] = await create(store, 1)
    assert await store.waiting(me, Limit(), T, 100) == ("queued", 5)
    assert await store.waiting(me, Limit(), T, 3) == ("queued", 3)
    await create(store, 3, kind="u")  # another kind's are not ahead
    await store.create(replace(new(), not_before=T + 50, priority=900), 1.0)  # nor delayed ones
    await create(store, 1, priority=900)  # a higher priority is, though created later
    assert await store.waiting(me, Limit(), T, 100) == ("queued", 6)
    [newcomer] = await create(store, 1, tenant="B")  # at the earliest turn: behind one
    assert await store.waiting(newcomer, Limit(), T, 100) == ("queued", 2)
    await claim(store, {}, limit=2)  # what runs is not ahead
    assert await store.waiting(me, Limit(), T, 100) == ("queued", 5)


async def test_waiting_says_concurrency_limited_at_a_kinds_or_keys_limit(store: Store) -> None:
    x1, x2 = await create(store, 2, key="x")
    y1, y2 = await create(store, 2, key="y")
    limit = Limit(concurrency=2, key_concurrency=1)
    [running_x] = await claim(store, {"k": limit}, limit=1)
    assert running_x.id == x1.id
    assert await store.waiting(x2, limit, T, 10) == ("concurrency_limited", 1)  # y1
    assert await store.waiting(y1, limit, T, 10) == ("queued", 0)
    assert [r.id for r in await claim(store, {"k": limit}, limit=1)] == [y1.id]
    assert await store.waiting(y2, limit, T, 10) == ("concurrency_limited", 1)
    [z] = await create(store, 1, key="z")
    assert await store.waiting(z, limit, T, 10) == ("concurrency_limited", 2)
    await finish(store, running_x)
    assert await store.waiting(x2, limit, T, 10) == ("queued", 0)
    assert await store.waiting(x2, Limit(), T, 10) == ("queued", 0)  # no limit: never limited


async def test_waiting_says_rate_limited_while_a_bucket_is_empty(store: Store) -> None:
    first, second = await create(store, 2)
    [x1, x2] = await create(store, 2, key="x")
    [y1] = await create(store, 1, key="y")
    kind_rate, key_rate = Limit(rate=1), Limit(key_rate=1)
    assert [r.id for r in await claim(store, {"k": kind_rate}, limit=10)] == [first.id]
    assert (await store.waiting(second, kind_rate, T + 0.5, 10))[0] == "rate_limited"
    assert (await store.waiting(second, kind_rate, T + 1, 10))[0] == "queued"
    later = await claim(store, {"k": key_rate}, limit=10, now=T + 10)
    assert {r.id for r in later} == {second.id, x1.id, y1.id}
    assert await store.waiting(x2, key_rate, T + 10.5, 10) == ("rate_limited", 0)
    [z] = await create(store, 1, key="z")
    assert (await store.waiting(z, key_rate, T + 10.5, 10))[0] == "queued"

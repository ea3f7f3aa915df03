"""The store protocol's contract, run against every store implementation.

Each backend gets the same tests through the `store` fixture; a second store on
the same database (`other`) stands in for another process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from longops.engine import NewOperation, OperationRecord, State
from longops.engine.ids import new_token_id
from longops.engine.store import LeaseState, Store, open_store
from tests.support.postgres import database

CANCELLED = {"code": 1, "message": "cancelled"}
ABANDONED = {"code": 10, "message": "abandoned"}
FINAL = {"code": 13, "message": "internal"}


A = TypeVar("A")
B = TypeVar("B")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[Callable[[], Store]]:
    opened: list[Store] = []

    def make() -> Store:
        s = open_store(store_url)
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def store(stores: Callable[[], Store]) -> Store:
    s = stores()
    await s.open()
    return s


@pytest.fixture
async def other(stores: Callable[[], Store], store: Store) -> Store:
    s = stores()
    await s.open()
    return s


def new(
    kind: str = "k", tenant: str = "", request_id: str | None = None, **kw: object
) -> NewOperation:
    id = new_token_id()
    return NewOperation(
        id=id,
        name=f"operations/{id}",
        kind=kind,
        request={"x": 1},
        tenant=tenant,
        request_id=request_id,
        **kw,  # type: ignore[arg-type]
    )


async def test_create_and_get(store: Store) -> None:
    op = new(metadata={"a": 1})
    record, created = await store.create(op, 100.0)
    assert created
    assert record.state is State.PENDING and not record.done
    assert record.request == {"x": 1} and record.metadata == {"a": 1}
    assert record.create_time == record.update_time == 100.0
    fetched = await store.get(op.id)
    assert fetched is not None and fetched.name == op.name and fetched.attempt == 0
    assert await store.get("nope") is None


async def test_create_is_idempotent_per_tenant_and_request_id(store: Store) -> None:
    first, created = await store.create(new(request_id="r", tenant="a"), 1.0)
    again, created_again = await store.create(new(request_id="r", tenant="a"), 2.0)
    other_tenant, created_other = await store.create(new(request_id="r", tenant="b"), 3.0)
    assert created and not created_again and created_other
    assert again.id == first.id
    assert other_tenant.id != first.id


async def test_get_sees_writes_of_other_connections(store: Store, other: Store) -> None:
    record, _ = await store.create(new(), 1.0)
    assert (await store.get(record.id)).state is State.PENDING  # type: ignore[union-attr]
    [claimed] = await other.claim(["k"], "w", 30, 10, 2.0)
    assert claimed.id == record.id
    await asyncio.sleep(store.max_staleness)
    assert (await store.get(record.id)).state is State.RUNNING  # type: ignore[union-attr]


async def test_get_reads_its_own_writes_at_once(store: Store) -> None:
    record, _ = await store.create(new(), 1.0)
    assert (await store.get(record.id)).state is State.PENDING  # type: ignore[union-attr]
    await store.claim(["k"], "w", 30, 10, 2.0)
    assert (await store.get(record.id)).state is State.RUNNING  # type: ignore[union-attr]
    await store.cancel(record.id, 3.0, CANCELLED)
    assert (await store.get(record.id)).cancel_requested  # type: ignore[union-attr]
    await store.save_progress(record.id, 1, {"p": 5}, 4.0)
    assert (await store.get(record.id)).metadata == {"p": 5}  # type: ignore[union-attr]
    await store.finish(record.id, 1, State.CANCELLED, 5.0, error=CANCELLED)
    assert (await store.get(record.id)).state is State.CANCELLED  # type: ignore[union-attr]
    await store.delete(record.id)
    assert await store.get(record.id) is None


async def test_claim_takes_oldest_pending_of_served_kinds(store: Store) -> None:
    a, _ = await store.create(new("k"), 1.0)
    await store.create(new("other"), 2.0)
    b, _ = await store.create(new("k"), 3.0)
    c, _ = await store.create(new("k"), 4.0)
    claimed = await store.claim(["k"], "w1", 30, 2, 10.0)
    assert [r.id for r in claimed] == [a.id, b.id]
    assert all(r.state is State.RUNNING and r.attempt == 1 for r in claimed)
    assert claimed[0].start_time == 10.0
    rest = await store.claim(["k"], "w2", 30, 10, 11.0)
    assert [r.id for r in rest] == [c.id]
    assert await store.claim(["k"], "w3", 30, 10, 12.0) == []


async def test_concurrent_claims_never_overlap(store: Store, other: Store) -> None:
    ids = {(await store.create(new(), float(i)))[0].id for i in range(60)}

    async def drain(s: Store, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await s.claim(["k"], owner, 30, 3, time.time()):
            got += [r.id for r in batch]
            await asyncio.sleep(0)
        return got

    one, two = await asyncio.gather(drain(store, "w1"), drain(other, "w2"))
    assert not set(one) & set(two)
    assert set(one) | set(two) == ids


async def test_writes_are_fenced_by_attempt(store: Store) -> None:
    record, _ = await store.create(new(), 1.0)
    [first] = await store.claim(["k"], "w1", 1, 1, 2.0)
    recovered = await store.recover_expired(10.0, CANCELLED, ABANDONED)
    assert recovered == [(record.id, State.PENDING)]
    [second] = await store.claim(["k"], "w2", 30, 1, 11.0)
    assert second.attempt == 2
    # The first worker wakes up late: none of its writes land.
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


async def test_heartbeat_extends_only_held_leases(store: Store) -> None:
    a, _ = await store.create(new(), 1.0)
    b, _ = await store.create(new(), 1.0)
    await store.claim(["k"], "w1", 5, 1, 2.0)
    await store.claim(["k"], "w2", 5, 1, 2.0)
    leases = await store.heartbeat("w1", 5, 6.0)
    assert [(lease.id, lease.attempt, lease.cancel_requested) for lease in leases] == [
        (a.id, 1, False)
    ]
    # w1's lease now runs to 11; w2's expired at 7.
    assert await store.recover_expired(8.0, CANCELLED, ABANDONED) == [(b.id, State.PENDING)]
    await store.cancel(a.id, 9.0, CANCELLED)
    [lease] = await store.heartbeat("w1", 5, 9.5)
    assert lease.cancel_requested


async def test_expired_leases_fail_after_max_attempts(store: Store) -> None:
    record, _ = await store.create(new(max_attempts=2), 1.0)
    for attempt in (1, 2):
        [claimed] = await store.claim(["k"], "w", 1, 1, float(attempt * 10))
        assert claimed.attempt == attempt
        states = await store.recover_expired(attempt * 10 + 5.0, CANCELLED, ABANDONED)
        assert states == [(record.id, State.PENDING if attempt == 1 else State.FAILED)]
    failed = await store.get(record.id)
    assert failed is not None and failed.error == ABANDONED and failed.end_time == 25.0


async def test_release_does_not_count_against_max_attempts(store: Store) -> None:
    record, _ = await store.create(new(max_attempts=1), 1.0)
    for t in (2.0, 3.0, 4.0):
        [claimed] = await store.claim(["k"], "w", 30, 1, t)
        assert await store.release(record.id, claimed.attempt, t)
    [claimed] = await store.claim(["k"], "w", 1, 1, 5.0)
    assert claimed.attempt == 4
    assert await store.recover_expired(10.0, CANCELLED, ABANDONED) == [(record.id, State.FAILED)]


async def test_fail_attempt_retries_until_the_last(store: Store) -> None:
    record, _ = await store.create(new(max_attempts=2), 1.0)
    [claimed] = await store.claim(["k"], "w", 30, 1, 2.0)
    assert await store.fail_attempt(record.id, 1, 3.0, 100.0, FINAL) is State.PENDING
    assert await store.claim(["k"], "w", 30, 1, 50.0) == []  # not before 100
    [claimed] = await store.claim(["k"], "w", 30, 1, 100.0)
    assert await store.fail_attempt(record.id, claimed.attempt, 101.0, 200.0, FINAL) is (
        State.FAILED
    )
    failed = await store.get(record.id)
    assert failed is not None and failed.error == FINAL and failed.done


async def test_cancel_pending_running_and_done(store: Store) -> None:
    pending, _ = await store.create(new(), 1.0)
    running, _ = await store.create(new(), 1.0)
    finished, _ = await store.create(new(), 1.0)
    claims = await store.claim(["k"], "w", 30, 2, 2.0)
    assert [c.id for c in claims] == [pending.id, running.id]
    await store.release(pending.id, 1, 2.5)
    assert await store.finish(finished.id, 0, State.SUCCEEDED, 3.0) is False  # never claimed

    cancelled = await store.cancel(pending.id, 4.0, CANCELLED)
    assert cancelled is not None and cancelled.state is State.CANCELLED
    assert cancelled.error == CANCELLED and cancelled.end_time == 4.0

    flagged = await store.cancel(running.id, 4.0, CANCELLED)
    assert flagged is not None and flagged.state is State.RUNNING and flagged.cancel_requested
    # A cancel flagged on a worker that then dies ends CANCELLED, not retried.
    assert await store.recover_expired(100.0, CANCELLED, ABANDONED) == [
        (running.id, State.CANCELLED)
    ]
    again = await store.cancel(running.id, 101.0, CANCELLED)
    assert again is not None and again.end_time == 100.0
    assert await store.cancel("missing", 1.0, CANCELLED) is None


async def test_dead_owners_leases_end_before_they_expire(store: Store) -> None:
    retried, _ = await store.create(new(), 1.0)
    cancelled, _ = await store.create(new(), 1.0)
    spent, _ = await store.create(new(max_attempts=1), 1.0)
    alive, _ = await store.create(new(), 1.0)
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


async def test_delete(store: Store) -> None:
    record, _ = await store.create(new(), 1.0)
    assert await store.delete(record.id)
    assert not await store.delete(record.id)
    assert await store.get(record.id) is None


async def test_list_filters_tenants_and_keyset(store: Store) -> None:
    mine = [(await store.create(new("a" if i % 2 else "b", "t"), float(i)))[0] for i in range(7)]
    await store.create(new("a", "someone-else"), 10.0)
    [first_a] = await store.claim(["a"], "w", 30, 1, 11.0)
    await store.finish(first_a.id, 1, State.SUCCEEDED, 12.0)

    everything = await store.list_operations(
        "t", name_prefix=None, done=None, kinds=None, before_seq=None, limit=100
    )
    assert [r.id for r in everything] == [r.id for r in reversed(mine)]
    page = await store.list_operations(
        "t", name_prefix=None, done=None, kinds=None, before_seq=everything[2].seq, limit=2
    )
    assert [r.id for r in page] == [everything[3].id, everything[4].id]
    done = await store.list_operations(
        "t", name_prefix=None, done=True, kinds=None, before_seq=None, limit=100
    )
    assert [r.id for r in done] == [first_a.id]
    not_done_a = await store.list_operations(
        "t", name_prefix=None, done=False, kinds=["a"], before_seq=None, limit=100
    )
    assert {r.id for r in not_done_a} == {r.id for r in mine if r.kind == "a"} - {first_a.id}
    prefixed = await store.list_operations(
        "t",
        name_prefix=f"operations/{mine[0].id}",
        done=None,
        kinds=None,
        before_seq=None,
        limit=100,
    )
    assert [r.id for r in prefixed] == [mine[0].id]


async def test_purge_done_keeps_recent_and_unfinished(store: Store) -> None:
    old, _ = await store.create(new(), 1.0)
    recent, _ = await store.create(new(), 1.0)
    pending, _ = await store.create(new(), 1.0)
    for record, end in ((old, 10.0), (recent, 100.0)):
        [claimed] = await store.claim(["k"], "w", 30, 1, end - 1)
        assert claimed.id == record.id
        await store.finish(claimed.id, 1, State.SUCCEEDED, end)
    assert await store.purge_done(50.0, batch=1) == 1
    assert await store.get(old.id) is None
    assert await store.get(recent.id) is not None and await store.get(pending.id) is not None


async def test_done_among_and_changes_from_other_connections(store: Store, other: Store) -> None:
    record, _ = await store.create(new(), 1.0)
    changes = store.changes()
    # A feed may yield changes that name nothing (e.g. when it starts: it can't know what
    # came before); what counts is that the finish below is seen.
    next_change = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0.05)
    [claimed] = await other.claim(["k"], "w", 30, 1, 2.0)
    await other.finish(claimed.id, 1, State.SUCCEEDED, 3.0)
    done: set[str] = set()
    while record.id not in done:
        change = await asyncio.wait_for(next_change, 5)
        if change.done_ids is None:
            done.update(await store.done_among([record.id]))
        else:
            done.update(change.done_ids)
            # A finish makes nothing claimable: it must not wake idle workers.
            assert record.id not in change.done_ids or not change.work
        next_change = asyncio.ensure_future(anext(changes))
    next_change.cancel()
    assert await store.done_among(["missing", record.id]) == [record.id]
    await changes.aclose()  # type: ignore[attr-defined]


async def test_a_failing_write_spoils_nothing_written_beside_it(store: Store) -> None:
    """Writes issued together may share a transaction; each still succeeds or fails alone."""
    first = new()
    clash = NewOperation(id=first.id, name="operations/clash", kind="k", request={})
    last = new()
    results = await asyncio.gather(
        store.create(first, 1.0), store.create(clash, 1.0), store.create(last, 1.0),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[1], Exception)
    assert (await store.get(first.id)).name == first.name  # type: ignore[union-attr]
    assert await store.get(last.id) is not None
    listed = await store.list_operations(
        "", name_prefix=None, done=None, kinds=None, before_seq=None, limit=10
    )
    assert {r.id for r in listed} == {first.id, last.id}


# -- races between connections: every interleaving must leave a consistent row ----------

ROUNDS = 30


async def race(first: Awaitable[A], second: Awaitable[B], round: int) -> tuple[A, B]:
    """Both at once, started in one order on even rounds and the other on odd ones."""
    if round % 2:
        b, a = await asyncio.gather(second, first)
        return a, b
    return await asyncio.gather(first, second)


async def settled(store: Store, id: str) -> OperationRecord:
    """The row as committed, after `store` has had time to see other connections' writes."""
    await asyncio.sleep(store.max_staleness)
    record = await store.get(id)
    assert record is not None
    return record


async def test_cancel_racing_completion(store: Store, other: Store) -> None:
    """A cancel of a running operation only flags it; the worker's finish still wins."""
    for i in range(ROUNDS):
        record, _ = await store.create(new(), 1.0)
        [claimed] = await store.claim(["k"], "w", 30, 1, 2.0)
        cancelled, finished = await race(
            other.cancel(record.id, 3.0, CANCELLED),
            store.finish(record.id, claimed.attempt, State.SUCCEEDED, 3.0, response={"ok": 1}),
            i,
        )
        assert finished
        final = await settled(other, record.id)
        assert final.state is State.SUCCEEDED
        assert final.response == {"ok": 1} and final.error is None
        assert cancelled is not None and cancelled.state in (State.RUNNING, State.SUCCEEDED)


async def test_cancel_racing_claim(store: Store, other: Store) -> None:
    """A pending operation is either cancelled and never handed out, or claimed with the
    cancel flagged for its worker to see."""
    for i in range(ROUNDS):
        record, _ = await store.create(new(), 1.0)
        claimed, _ = await race(
            store.claim(["k"], "w", 30, 1, 2.0), other.cancel(record.id, 2.0, CANCELLED), i
        )
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


async def test_finish_racing_lease_expiry_and_a_new_claim(store: Store, other: Store) -> None:
    """A worker finishing just as its lease is found expired and another worker claims:
    exactly one of the two attempts ends the operation, and the loser's writes bounce."""
    for i in range(ROUNDS):
        record, _ = await store.create(new(), 1.0)
        [first] = await store.claim(["k"], "a", 5, 1, 2.0)  # expires at 7.0

        async def recover_and_claim() -> list[OperationRecord]:
            await other.recover_expired(10.0, CANCELLED, ABANDONED)
            return await other.claim(["k"], "b", 30, 1, 10.0)

        finished, second = await race(
            store.finish(record.id, first.attempt, State.SUCCEEDED, 10.0, response={"by": "a"}),
            recover_and_claim(),
            i,
        )
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

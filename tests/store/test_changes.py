"""The change feed: what another store on the same database (another process) commits
is heard, and a backend that can tell new work from finishes says only what was asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from longops.engine import NewOperation, State
from longops.engine.store import Change, Store
from tests.store.backends import only
from tests.store.records import operation
from tests.support.waiting import until


async def follow(feed: AsyncIterator[Change], heard: list[Change]) -> None:
    async for change in feed:
        heard.append(change)


async def started(heard: list[Change], other: Store) -> None:
    """Commit elsewhere until the feed hears something: it is then past its start (a
    feed may open with a change that names nothing), and hears every later commit."""
    deadline = asyncio.get_running_loop().time() + 5
    while not heard:
        assert asyncio.get_running_loop().time() < deadline, "the feed heard nothing"
        await other.create(operation("never claimed"), 1.0)
        await asyncio.sleep(0.02)


async def test_a_finish_elsewhere_is_heard(store: Store, other: Store) -> None:
    record, _ = await store.create(operation(), 1.0)
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
    await asyncio.gather(next_change, return_exceptions=True)
    await changes.aclose()  # type: ignore[attr-defined]


async def test_a_create_elsewhere_is_heard_as_work(store: Store, other: Store) -> None:
    heard: list[Change] = []
    task = asyncio.create_task(follow(store.changes(work=True, done=False), heard))
    try:
        await started(heard, other)
        seen = len(heard)
        await other.create(operation(), 1.0)
        await until(lambda: any(c.work for c in heard[seen:]), timeout=5, what="work")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_worker_woken_only_by_its_feed_claims_all_created_elsewhere(
    store: Store, other: Store
) -> None:
    """Creates made while a change is on its way share the next one; a worker that
    claims only when told of work (no polling) still gets every operation."""
    claimed: set[str] = set()
    heard: list[Change] = []

    async def work() -> None:
        async for change in store.changes(done=False):
            heard.append(change)
            if change.work:
                claimed.update(r.id for r in await store.claim(["k"], "w", 30, 500, 2.0))

    task = asyncio.create_task(work())
    try:
        await started(heard, other)
        for burst in range(5):
            await asyncio.gather(
                *(
                    other.create(
                        NewOperation(f"op{burst}-{i}", f"operations/op{burst}-{i}", "k", {}), 1
                    )
                    for i in range(60)
                )
            )
        await until(lambda: len(claimed) == 300, timeout=10, what="every operation claimed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@only("postgres")
async def test_feeds_carry_only_what_their_process_listens_for(store: Store, other: Store) -> None:
    """Workers hear of new work, API servers of finishes: neither wakes for the other.
    (PostgreSQL's notifications tell the two apart; SQLite's polling cannot.)"""
    heard: dict[str, list[Change]] = {"work": [], "done": []}
    tasks = [
        asyncio.create_task(follow(store.changes(work=True, done=False), heard["work"])),
        asyncio.create_task(follow(store.changes(work=False, done=True), heard["done"])),
    ]
    try:
        await until(lambda: heard["work"] and heard["done"], what="both feeds to start")
        new = NewOperation(id="op1", name="operations/op1", kind="k", request={})
        await other.create(new, 1.0)
        [claimed] = await other.claim(["k"], "w", 30, 1, 2.0)
        await other.finish(claimed.id, 1, State.SUCCEEDED, 3.0)
        await asyncio.sleep(0.3)  # anything more either feed hears comes by then
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    work, done = heard["work"][1:], heard["done"][1:]  # past each opening change
    assert [(c.work, c.done_ids) for c in work] == [(True, frozenset())]
    assert [(c.work, c.done_ids) for c in done] == [(False, frozenset({"op1"}))]


@only("sqlite")
async def test_a_feed_that_cannot_tell_what_changed_says_so(store: Store, other: Store) -> None:
    """SQLite's feed polls a counter of commits: it cannot tell a finish from new work,
    so whatever it was asked for, a change names nothing and may be work."""
    for which in ({"work": False, "done": True}, {"work": True, "done": False}):
        heard = await heard_of_a_finish(store, other, **which)
        assert heard and all(c.done_ids is None and c.work for c in heard)


async def heard_of_a_finish(store: Store, other: Store, **which: bool) -> list[Change]:
    """What `store.changes(**which)` hears of a create, claim and finish elsewhere."""
    heard: list[Change] = []
    task = asyncio.create_task(follow(store.changes(**which), heard))
    try:
        await started(heard, other)
        heard.clear()
        created, _ = await other.create(operation(), 1.0)
        [claimed] = await other.claim([created.kind], "w", 30, 1, 2.0)
        await other.finish(claimed.id, 1, State.SUCCEEDED, 3.0)
        await until(lambda: heard, timeout=5, what="the commits")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return heard

"""Creating operations, reading them back, listing them and deleting them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from longops.engine import NewOperation, State
from longops.engine.store import Store
from tests.store.records import CANCELLED, FINAL, file, listed, operation, running

# -- create and get ---------------------------------------------------------------


async def test_create_answers_with_the_operation_as_stored(store: Store, other: Store) -> None:
    new = operation(tenant="t", request_id="r", max_attempts=5, metadata={"a": 1})
    record, created = await store.create(new, 100.0)
    assert created
    assert (record.id, record.name, record.kind) == (new.id, new.name, "k")
    assert (record.tenant, record.request_id, record.max_attempts) == ("t", "r", 5)
    assert record.state is State.PENDING and not record.done and record.attempt == 0
    assert record.request == {"x": 1} and record.metadata == {"a": 1}
    assert record.response is None and record.error is None and not record.cancel_requested
    assert record.create_time == record.update_time == 100.0
    assert record.start_time is None and record.end_time is None
    assert record.seq > 0
    assert await other.get(new.id) == record  # read from the database, not a cache


async def test_get_of_an_unknown_id_is_none(store: Store) -> None:
    await store.create(operation(), 1.0)
    assert await store.get("nope") is None


async def test_json_values_come_back_as_they_were_written(store: Store, other: Store) -> None:
    values = {
        "text": 'é ✓ 𝄞 "quoted" \\ \n',
        "nested": {"list": [1, 2.5, None, True, False, "x", [], {}]},
        "int64": 2**63 - 1,
        "uint64": 2**64 - 1,
        "negative": -(2**63),
        "sum": 0.1 + 0.2,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "integral float": 3.0,
    }
    new = operation(request=values, metadata={"progressPercent": 5, **values})
    await store.create(new, 1.0)
    [claimed] = await store.claim([new.kind], "w", 30, 1, 2.0)
    error = {"code": 3, "message": "½", "details": [{"@type": "t", "v": values}]}
    await store.finish(
        claimed.id, 1, State.FAILED, 3.0, response=values, error=error, metadata=values
    )
    stored = await other.get(new.id)
    assert stored is not None
    assert stored.request == values and stored.metadata == values
    assert stored.response == values and stored.error == error
    assert type(stored.request["integral float"]) is float
    assert type(stored.request["uint64"]) is int


async def test_written_rows_come_back_with_the_types_a_read_gives(store: Store) -> None:
    """What a write returns is typed as what a read returns: times are floats even when
    they are whole numbers (drift resolved: SQLite's RETURNING gave them back as ints)."""
    await store.create(operation(), 1.0)
    pending, _ = await store.create(operation(), 1.0)
    [claimed] = await store.claim(["k"], "w", 30, 1, 2.0)
    cancelled = await store.cancel(pending.id, 3.0, CANCELLED)
    assert cancelled is not None
    times = [claimed.create_time, claimed.update_time, claimed.start_time]
    times += [cancelled.create_time, cancelled.update_time, cancelled.end_time]
    assert [type(t) for t in times] == [float] * 6


async def test_a_reopened_database_keeps_what_was_written(
    store: Store, stores: Callable[[], Awaitable[Store]]
) -> None:
    """Closing commits nothing late and opening migrates nothing away: a process
    started on the database later reads every operation and file as it was."""
    record, _ = await store.create(operation(tenant="t"), 1.0)
    claimed = await running(store)
    await store.finish(claimed.id, 1, State.SUCCEEDED, 3.0, response={"ok": True})
    saved = await store.create_file(file("report", "t", "blob"))
    finished = await store.get(claimed.id)
    await store.close()
    reopened = await stores()
    assert await reopened.get(record.id) == record
    assert await reopened.get(claimed.id) == finished
    assert await reopened.get_file("report", "t") == saved


# -- idempotent create ------------------------------------------------------------


async def test_create_is_idempotent_per_tenant_and_request_id(store: Store) -> None:
    first, created = await store.create(operation(request_id="r", tenant="a"), 1.0)
    again, created_again = await store.create(operation(request_id="r", tenant="a"), 2.0)
    other_tenant, created_other = await store.create(operation(request_id="r", tenant="b"), 3.0)
    without, created_without = await store.create(operation(tenant="a"), 4.0)
    assert created and not created_again and created_other and created_without
    assert again == first and again.create_time == 1.0
    assert len({first.id, other_tenant.id, without.id}) == 3
    assert len(await listed(store, "a")) == 2


async def test_a_retried_create_answers_with_the_operation_it_made(store: Store) -> None:
    """A create whose first try committed unseen (a lost connection, a timeout) is
    retried with the same operation: it is answered as created, not refused (drift
    resolved the PostgreSQL way: SQLite inserted the id again and failed)."""
    new = operation()
    first, _ = await store.create(new, 1.0)
    again, created = await store.create(new, 2.0)
    assert created and again == first and again.create_time == 1.0
    assert [r.id for r in await listed(store)] == [new.id]


async def test_a_retried_create_with_a_request_id_answers_created(store: Store) -> None:
    """The retry of the create that made the operation (same id) is that create: it
    answers `created`, where a later request with the same request id does not."""
    new = operation(tenant="t", request_id="r")
    first, _ = await store.create(new, 1.0)
    again, created = await store.create(new, 2.0)
    assert created and again == first


async def test_an_id_taken_by_another_operation_is_refused(store: Store) -> None:
    new = operation()
    await store.create(new, 1.0)
    clash = NewOperation(id=new.id, name="operations/other", kind="k", request={})
    with pytest.raises(ValueError):
        await store.create(clash, 2.0)
    stored = await store.get(new.id)
    assert stored is not None and stored.name == new.name


async def test_an_id_taken_in_another_tenant_is_refused(store: Store) -> None:
    """Same id and name, another tenant: not a retry (a retry carries its tenant), and
    answering with the other tenant's operation would show it to this one (PostgreSQL
    did; SQLite failed on the insert)."""
    new = operation(tenant="a")
    await store.create(new, 1.0)
    clash = NewOperation(id=new.id, name=new.name, kind="k", request={}, tenant="b")
    with pytest.raises(ValueError):
        await store.create(clash, 2.0)
    assert await listed(store, "b") == []


async def test_a_failing_write_spoils_nothing_written_beside_it(store: Store) -> None:
    """Writes issued together may share a transaction; each still succeeds or fails alone."""
    first = operation()
    clash = NewOperation(id=first.id, name="operations/clash", kind="k", request={})
    last = operation()
    results = await asyncio.gather(
        store.create(first, 1.0), store.create(clash, 1.0), store.create(last, 1.0),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[1], Exception)
    assert (await store.get(first.id)).name == first.name  # type: ignore[union-attr]
    assert await store.get(last.id) is not None
    assert {r.id for r in await listed(store)} == {first.id, last.id}


# -- reads see writes ---------------------------------------------------------------


async def test_get_sees_writes_of_other_connections(store: Store, other: Store) -> None:
    record, _ = await store.create(operation(), 1.0)
    assert (await store.get(record.id)).state is State.PENDING  # type: ignore[union-attr]
    [claimed] = await other.claim(["k"], "w", 30, 10, 2.0)
    assert claimed.id == record.id
    await asyncio.sleep(store.max_staleness)
    assert (await store.get(record.id)).state is State.RUNNING  # type: ignore[union-attr]


async def test_get_reads_its_own_writes_at_once(store: Store) -> None:
    record, _ = await store.create(operation(), 1.0)
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


# -- listing ------------------------------------------------------------------------


async def test_list_is_the_tenants_own_newest_first(store: Store) -> None:
    mine = [(await store.create(operation(tenant="t"), float(i)))[0] for i in range(4)]
    await store.create(operation(tenant="someone-else"), 10.0)
    await store.create(operation(tenant="T"), 10.0)
    assert [r.id for r in await listed(store, "t")] == [r.id for r in reversed(mine)]
    assert [r.id for r in await listed(store, "t", limit=2)] == [mine[3].id, mine[2].id]
    assert await listed(store, "t", limit=0) == []
    assert await listed(store, "nobody") == []
    assert [r for r in await listed(store, "t") if r.id == mine[0].id] == [mine[0]]


async def test_list_filters_by_done(store: Store) -> None:
    pending, _ = await store.create(operation(), 1.0)
    started = await running(store)
    succeeded = await running(store)
    await store.finish(succeeded.id, 1, State.SUCCEEDED, 3.0)
    failed = await running(store)
    await store.finish(failed.id, 1, State.FAILED, 3.0, error=FINAL)
    cancelled, _ = await store.create(operation(), 1.0)
    await store.cancel(cancelled.id, 3.0, CANCELLED)
    done = {r.id for r in await listed(store, done=True)}
    assert done == {succeeded.id, failed.id, cancelled.id}
    assert {r.id for r in await listed(store, done=False)} == {pending.id, started.id}


async def test_list_filters_by_kinds(store: Store) -> None:
    a, _ = await store.create(operation("a"), 1.0)
    b, _ = await store.create(operation("b"), 1.0)
    c, _ = await store.create(operation("c"), 1.0)
    assert [r.id for r in await listed(store, kinds=["a"])] == [a.id]
    assert [r.id for r in await listed(store, kinds=["c", "a"])] == [c.id, a.id]
    assert [r.id for r in await listed(store, kinds=("b", "missing"))] == [b.id]
    assert await listed(store, kinds=[]) == []


async def test_list_filters_by_a_name_prefix_taken_literally(store: Store) -> None:
    """A prefix is compared as text: `%` and `_` are no wildcards, case counts, and
    a prefix in any script counts characters as the names do."""
    names = ["operations/a%b", "operations/ab", "operations/a_c", "operations/é1", "other/a"]
    for name in names:
        await store.create(operation(name=name), 1.0)

    async def matching(prefix: str) -> set[str]:
        return {r.name for r in await listed(store, name_prefix=prefix)}

    assert await matching("operations/a%") == {"operations/a%b"}
    assert await matching("operations/a_") == {"operations/a_c"}
    assert await matching("operations/a") == {"operations/a%b", "operations/ab", "operations/a_c"}
    assert await matching("operations/é") == {"operations/é1"}
    assert await matching("operations/é1") == {"operations/é1"}
    assert await matching("Operations/") == set()
    assert await matching("") == set(names)
    assert await matching("operations/ab-and-more") == set()


async def test_keyset_pages_walk_every_operation_once(store: Store) -> None:
    """Paging by `before_seq`, alone and with filters; operations created meanwhile are
    newer than every page, so they never show on one."""
    made = [(await store.create(operation("a" if i % 3 else "b"), float(i)))[0] for i in range(8)]
    for record in made[:3]:
        if record.kind == "a":
            [claimed] = await store.claim(["a"], "w", 30, 1, 9.0)
            await store.finish(claimed.id, 1, State.SUCCEEDED, 9.0)

    async def walk(limit: int, **filters: Any) -> list[str]:
        seen: list[str] = []
        before = made[-1].seq + 1
        while page := await listed(store, limit=limit, before_seq=before, **filters):
            assert len(page) <= limit
            seen += [r.id for r in page]
            before = page[-1].seq
            await store.create(operation("a"), 20.0)  # newer: never on a later page
        return seen

    assert await walk(3) == [r.id for r in reversed(made)]
    assert await walk(2, kinds=["a"], done=False) == [
        r.id for r in reversed(made[3:]) if r.kind == "a"
    ]
    assert await walk(1, done=True) == [r.id for r in reversed(made[:3]) if r.kind == "a"]
    assert await listed(store, before_seq=made[0].seq) == []


# -- done_among and delete -------------------------------------------------------------


async def test_done_among_names_the_finished_ones(store: Store) -> None:
    pending, _ = await store.create(operation(), 1.0)
    started = await running(store)
    succeeded = await running(store)
    await store.finish(succeeded.id, 1, State.SUCCEEDED, 3.0)
    failed = await running(store)
    await store.fail_attempt(failed.id, 1, 3.0, 3.0, FINAL)  # retried: not done
    cancelled, _ = await store.create(operation(), 1.0)
    await store.cancel(cancelled.id, 3.0, CANCELLED)
    ids = [pending.id, started.id, succeeded.id, failed.id, cancelled.id, "missing"]
    assert sorted(await store.done_among(ids)) == sorted([succeeded.id, cancelled.id])
    assert await store.done_among([]) == []
    assert await store.done_among(["missing"]) == []


async def test_done_among_takes_more_ids_than_one_statement_binds(store: Store) -> None:
    done = []
    for _ in range(3):
        record, _ = await store.create(operation(), 1.0)
        await store.cancel(record.id, 2.0, CANCELLED)
        done.append(record.id)
    ids = [f"missing-{i}" for i in range(1500)]
    ids[0], ids[700], ids[1499] = done
    assert sorted(await store.done_among(ids)) == sorted(done)


async def test_delete(store: Store) -> None:
    record, _ = await store.create(operation(), 1.0)
    kept, _ = await store.create(operation(), 1.0)
    assert await store.delete(record.id)
    assert not await store.delete(record.id)
    assert not await store.delete("missing")
    assert await store.get(record.id) is None
    assert [r.id for r in await listed(store)] == [kept.id]


async def test_a_deleted_running_operation_takes_its_lease_with_it(store: Store) -> None:
    claimed = await running(store, owner="w")
    assert await store.delete(claimed.id)
    assert await store.heartbeat("w", 30, 3.0) == []
    assert await store.save_progress(claimed.id, 1, {"p": 1}, 3.0) is None
    assert not await store.finish(claimed.id, 1, State.SUCCEEDED, 3.0)
    assert await store.get(claimed.id) is None

"""longops on PostgreSQL: the server, a worker in another process, and migrations."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from longops import Client
from longops.engine import Engine, NewOperation, OperationRecord, State
from longops.engine.engine import EngineConfig
from longops.engine.store import Change, Store, open_store
from longops.engine.store.postgres import PostgresStore, _Notifier
from longops.kinds.builtin import default_registry
from tests.support.postgres import fresh_schema
from tests.support.servers import Process, ThreadServer, run_longops, subprocess_env
from tests.support.waiting import until, until_sync


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@asynccontextmanager
async def engine_and_writer(url: str) -> AsyncIterator[tuple[Engine, Store]]:
    """An engine, and a store standing for another process writing to its database."""
    async with Engine(open_store(url), default_registry()) as engine:
        writer = open_store(url)
        await writer.open()
        try:
            yield engine, writer
        finally:
            await writer.close()


def test_db_upgrade_creates_the_schema(pg_url: str) -> None:
    result = run_longops("db", "upgrade", "--database", pg_url)
    assert result.returncode == 0, result.stderr
    assert "schema is up to date" in result.stdout


def test_server_with_workers_on_postgres(
    make_server: Callable[..., ThreadServer], pg_url: str
) -> None:
    server = make_server(database_url=pg_url)
    with Client(base_url=server.url) as client:
        done = client.operations.wait(
            client.operations.start("longops.sleep", {"seconds": 0.2, "steps": 2}), timeout=30
        )
        assert done.error is None and done.response["sleptSeconds"] == 0.2  # type: ignore[index]
        long = client.operations.start("longops.sleep", {"seconds": 60, "steps": 600})
        client.operations.cancel(long)
        assert client.operations.wait(long, timeout=30).error.code == 1  # type: ignore[union-attr]
        assert {op.name for op in client.operations.list(done=True)} == {done.name, long.name}


def test_a_worker_process_completes_what_the_api_waits_for(
    make_server: Callable[..., ThreadServer], pg_url: str, tmp_path: Path
) -> None:
    """The wait is answered through LISTEN/NOTIFY from another process."""
    api = make_server(database_url=pg_url, workers=0)
    log = tmp_path / "worker.log"
    worker = Process(
        ["worker", "--database", pg_url, "--load", "tests.support.kinds"], subprocess_env(), log
    ).start()
    try:
        until_sync(lambda: "worker " in log.read_text(), what="the worker to start")
        with Client(base_url=api.url) as client:
            ops = [client.operations.start("longops.sleep", {}) for _ in range(20)]
            for op in ops:
                done = client.operations.wait(op, timeout=30)
                assert done.done and done.error is None
    finally:
        worker.close()


def test_finish_notifications_carry_the_finished_row(pg_url: str) -> None:
    """What a waiter elsewhere is answered with is the row as stored; rows too long for
    a notification, and deletes, come as a bare id ("look it up")."""

    async def main() -> None:
        store, writer = open_store(pg_url), open_store(pg_url)
        await store.open()
        await writer.open()
        changes: list[Change] = []

        async def follow() -> None:
            async for change in store.changes(work=False):
                changes.append(change)

        task = asyncio.create_task(follow())
        try:
            await until(lambda: changes, what="the feed to listen")
            big = {"prompt": "x" * 9000}
            for id, request in (("small", {"prompt": "é ✓"}), ("big", big), ("pending", {})):
                await writer.create(NewOperation(id, f"operations/{id}", "k", request), 1.25)
            for claimed in await writer.claim(["k"], "w", 30, 2, 2.5):
                meta = {"progressPercent": 100, "note": "½"}
                response = {"value": 0.1 + 0.2, "when": 1764300000.123456}
                await writer.finish(
                    claimed.id, 1, State.SUCCEEDED, 3.0000001, response=response, metadata=meta
                )
            await writer.cancel("pending", 4.5, {"code": 1, "message": "cancelled"})
            stored = {id: await writer.get(id) for id in ("small", "big", "pending")}
            await writer.delete("small")
            await until(lambda: sum(len(c.done_ids or ()) for c in changes) == 4, what="4 ids")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()
            await writer.close()

        heard = changes[1:]
        assert all(not c.work for c in heard)
        ids = [id for c in heard for id in sorted(c.done_ids or ())]
        assert sorted(ids[:3]) == ["big", "pending", "small"] and ids[3] == "small"
        rows = {id: c.records[id] for c in heard[:-1] for id in c.records}
        assert rows == {"small": stored["small"], "pending": stored["pending"]}
        assert "small" not in heard[-1].records  # the delete: no row

    asyncio.run(main())


def test_a_wait_after_a_finish_elsewhere_and_after_a_delete_elsewhere(pg_url: str) -> None:
    """Waits answered from what the engine heard of finishes agree with the database,
    and forget operations other processes delete."""

    async def main() -> None:
        async with engine_and_writer(pg_url) as (engine, writer):
            for id in ("a", "b"):
                await writer.create(NewOperation(id, f"operations/{id}", "longops.sleep", {}), 1.0)
            parked = asyncio.create_task(engine.wait("b", "", timeout=30))
            for claimed in await writer.claim(["longops.sleep"], "w", 30, 2, 2.0):
                await writer.finish(claimed.id, 1, State.SUCCEEDED, 3.0, response={"ok": True})
            stored = await writer.get("a")
            assert await engine.wait("a", "", timeout=30) == stored
            assert await engine.wait("a", "someone else", timeout=0) is None
            assert (await parked) == await writer.get("b")
            # A wait parked on an operation another process deletes ends at once.
            await writer.create(NewOperation("c", "operations/c", "longops.sleep", {}), 4.0)
            parked = asyncio.create_task(engine.wait("c", "", timeout=30))
            await asyncio.sleep(0.1)
            await writer.delete("c")
            assert await asyncio.wait_for(parked, 5) is None
            # And a finish heard before the delete is not what later waits answer.
            await writer.delete("a")
            await until_async_none(lambda: engine.wait("a", "", timeout=0))

    asyncio.run(main())


async def until_async_none(call: Callable[[], Awaitable[object]], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await call() is not None:
        assert asyncio.get_running_loop().time() < deadline, "still answered after the delete"
        await asyncio.sleep(0.01)


def test_only_claims_and_lease_renewals_skip_waiting_for_the_disk(pg_url: str) -> None:
    """Creates and finishes are acknowledged, so they commit durably; a claim or a
    heartbeat lost in a crash only runs an attempt again, so they don't wait."""

    async def main() -> tuple[str, int]:
        store = open_store(pg_url)
        await store.open()
        try:
            assert isinstance(store, PostgresStore)
            plain = await asyncpg.connect(store.database.dsn)
            server_default = await plain.fetchval("SHOW synchronous_commit")
            await plain.close()
            durable = await store.database.pool.fetchval("SHOW synchronous_commit")
            assert durable == server_default
            opened_before_a_claim = store.database.lease_pool.get_size()
            await store.claim(["k"], "w", 30, 1, 1.0)
            lax = await store.database.lease_pool.fetchval("SHOW synchronous_commit")
            return lax, opened_before_a_claim
        finally:
            await store.close()

    assert asyncio.run(main()) == ("off", 0)


def test_a_wait_whose_notification_was_lost_still_ends(pg_url: str) -> None:
    """A process killed between its commit and its notification: waits look for
    themselves every `recheck_waits` seconds."""

    async def main() -> OperationRecord | None:
        config = EngineConfig(recheck_waits=0.2)
        engine = Engine(open_store(pg_url), default_registry(), config)
        await engine.start()
        try:
            new = NewOperation("quiet", "operations/quiet", "longops.sleep", {})
            await engine.store.create(new, 1.0)
            parked = asyncio.create_task(engine.wait("quiet", "", timeout=60))
            await asyncio.sleep(0.1)
            assert isinstance(engine.store, PostgresStore)
            # Finished by hand: the write, and no notification.
            await engine.store.database.pool.execute(
                "UPDATE operations SET state = 'SUCCEEDED', end_time = 2 WHERE id = 'quiet'"
            )
            return await asyncio.wait_for(parked, 5)
        finally:
            await engine.close()

    record = asyncio.run(main())
    assert record is not None and record.state is State.SUCCEEDED


def test_a_notification_asked_for_while_one_is_on_its_way_goes_out_after_it(
    pg_url: str,
) -> None:
    """The notifier's promise: every `send` is followed by a NOTIFY that starts after
    it. (Its connection is gated here so that the second `send` lands mid-flight.)"""
    dsn = PostgresStore.from_url(pg_url).database.dsn
    channel = f"longops_test_{os.getpid()}"

    async def main() -> tuple[list[list[str]], list[str]]:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        listener = await asyncpg.connect(dsn)
        heard: list[str] = []
        await listener.add_listener(channel, lambda *args: heard.append(args[3]))
        gate = asyncio.Event()
        sent: list[list[str]] = []

        class GatedPool:
            async def execute(self, sql: str, channels: list[str], payloads: list[str]) -> str:
                sent.append(payloads)
                await gate.wait()
                return str(await pool.execute(sql, channels, payloads))

        try:
            notifier = _Notifier(GatedPool())
            notifier.send(channel, "first")
            await until(lambda: sent, what="the first send to start")
            notifier.send(channel, "second")
            notifier.send(channel, "second")  # the same notification: sent once
            gate.set()
            await notifier.flush()
            await until(lambda: len(heard) == 2, what="both notifications")
        finally:
            await listener.close()
            await pool.close()
        return sent, heard

    assert asyncio.run(main()) == ([["first"], ["second"]], ["first", "second"])


def test_waits_on_operations_this_process_created(pg_url: str) -> None:
    """Such a wait parks without reading the operation, but what it answers is always
    read or heard: the operation as it is, never as it was created."""

    async def main() -> None:
        async with engine_and_writer(pg_url) as (engine, writer):
            created = await engine.create("longops.sleep", {"seconds": 60}, tenant="t")
            [claimed] = await writer.claim(["longops.sleep"], "w", 30, 1, time.time())
            assert claimed.id == created.id
            now = await engine.wait(created.id, "t", timeout=0)
            assert now is not None and now.state is State.RUNNING
            timed_out = await engine.wait(created.id, "t", timeout=0.2)
            assert timed_out is not None and timed_out.state is State.RUNNING
            assert await engine.wait(created.id, "other tenant", timeout=0.2) is None
            parked = asyncio.create_task(engine.wait(created.id, "t", timeout=30))
            await asyncio.sleep(0.1)
            await writer.finish(created.id, 1, State.SUCCEEDED, time.time(), response={})
            done = await asyncio.wait_for(parked, 5)
            assert done == await writer.get(created.id)

    asyncio.run(main())

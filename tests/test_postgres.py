"""longops on PostgreSQL: the server, a worker in another process, and migrations."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from longops import Client
from longops.engine import NewOperation, State
from longops.engine.store import Change, open_store
from tests.support.postgres import fresh_schema
from tests.support.servers import Process, ThreadServer, run_longops, subprocess_env
from tests.support.waiting import until_sync


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


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


def test_feeds_carry_only_what_their_process_listens_for(pg_url: str) -> None:
    """Workers hear of new work, API servers of finishes: neither wakes for the other."""

    async def main() -> tuple[list[Change], list[Change]]:
        store, writer = open_store(pg_url), open_store(pg_url)
        await store.open()
        await writer.open()
        heard: dict[str, list[Change]] = {"work": [], "done": []}

        async def follow(name: str, **which: bool) -> None:
            async for change in store.changes(**which):
                heard[name].append(change)

        tasks = [
            asyncio.create_task(follow("work", work=True, done=False)),
            asyncio.create_task(follow("done", work=False, done=True)),
        ]
        try:
            await asyncio.sleep(0.2)  # both listening, each past its opening change
            new = NewOperation(id="op1", name="operations/op1", kind="k", request={})
            await writer.create(new, 1.0)
            [claimed] = await writer.claim(["k"], "w", 30, 1, 2.0)
            await writer.finish(claimed.id, 1, State.SUCCEEDED, 3.0)
            await asyncio.sleep(0.3)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            await writer.close()
        return heard["work"][1:], heard["done"][1:]

    work, done = asyncio.run(main())
    assert [(c.work, c.done_ids) for c in work] == [(True, frozenset())]
    assert [(c.work, c.done_ids) for c in done] == [(False, frozenset({"op1"}))]

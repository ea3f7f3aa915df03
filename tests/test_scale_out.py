"""Several API servers and workers, each a process of its own, on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from longops import Client
from longops.types import Operation
from tests.support.kinds import journal
from tests.support.postgres import execute, fresh_schema
from tests.support.servers import Process, free_port, wait_healthy, worker_args, worker_ready
from tests.support.waiting import until_sync


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The test's schema, with an application name that picks out its connections."""
    with fresh_schema() as url:
        schema = url.rsplit("schema=", 1)[1]
        yield f"{url}&application_name=lo_{schema[:40]}"


def application_name(pg_url: str) -> str:
    return pg_url.rsplit("application_name=", 1)[1]


def start_api(spawn: Callable[..., Process], pg_url: str) -> str:
    port = free_port()
    spawn(
        "serve", "--no-workers", "--port", str(port), "--database", pg_url,
        "--load", "tests.support.kinds", "--log-level", "warning",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return url


def start_workers(spawn: Callable[..., Process], pg_url: str, count: int) -> list[Process]:
    workers = [spawn(*worker_args(pg_url, "--workers", "8", "--lease", "5")) for _ in range(count)]
    for worker in workers:
        until_sync(worker_ready(worker), what="the workers to start", timeout=30)
    return workers


async def start_many(urls: list[str], count: int, request: dict[str, object]) -> list[Operation]:
    """`count` operations created through the servers in turn, 32 requests at a time."""
    clients = [Client(base_url=url) for url in urls]
    limit = asyncio.Semaphore(32)

    async def start(i: int) -> Operation:
        async with limit:
            return await clients[i % len(clients)].aio.operations.start("test.record", request)

    try:
        return await asyncio.gather(*(start(i) for i in range(count)))
    finally:
        for client in clients:
            await client.aio.aclose()


async def wait_all(url: str, operations: list[Operation]) -> list[Operation]:
    async with Client(base_url=url).aio as aio:
        limit = asyncio.Semaphore(64)

        async def wait(op: Operation) -> Operation:
            async with limit:
                return await aio.operations.wait(op, timeout=120)

        return await asyncio.gather(*(wait(op) for op in operations))


def test_two_servers_and_three_workers_run_each_operation_exactly_once(
    spawn: Callable[..., Process], pg_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "journal"
    urls = [start_api(spawn, pg_url) for _ in range(2)]
    workers = start_workers(spawn, pg_url, 3)

    created = asyncio.run(start_many(urls, 1000, {"journal": str(log)}))
    # Each operation is awaited on the server that did not create it.
    done = asyncio.run(wait_all(urls[1], created[0::2])) + asyncio.run(
        wait_all(urls[0], created[1::2])
    )

    assert len({op.name for op in created}) == 1000
    assert all(op.done and op.error is None for op in done)
    events = journal(log)
    runs = Counter((event, id) for event, id, _, _ in events)
    assert set(runs.values()) == {1} and len(runs) == 2000
    assert {attempt for _, _, attempt, _ in events} == {1}
    per_worker = Counter(pid for event, _, _, pid in events if event == "end")
    assert set(per_worker) <= {w.pid for w in workers} and len(per_worker) >= 2, per_worker


def test_a_wait_on_one_server_ends_when_a_worker_elsewhere_finishes(
    spawn: Callable[..., Process], pg_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "journal"
    first, second = start_api(spawn, pg_url), start_api(spawn, pg_url)
    start_workers(spawn, pg_url, 1)
    with Client(base_url=first) as a, Client(base_url=second) as b:
        op = a.operations.start("test.record", {"journal": str(log), "seconds": 1, "steps": 2})
        began = time.monotonic()
        done = b.operations.wait(op, timeout=30)
        waited = time.monotonic() - began
    assert done.done and done.error is None
    # Answered by the worker's notification, not by the wait's timeout.
    assert 0.5 < waited < 15


def terminate_backends(name: str) -> None:
    execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE application_name = '{name}' AND pid <> pg_backend_pid()"
    )


def test_terminated_connections_lose_nothing_acknowledged(
    spawn: Callable[..., Process], pg_url: str, tmp_path: Path
) -> None:
    """Every connection of the servers and workers is killed three times while operations
    are created, run and awaited; all of them reconnect and every acknowledged operation
    finishes, once."""
    log = tmp_path / "journal"
    urls = [start_api(spawn, pg_url) for _ in range(2)]
    start_workers(spawn, pg_url, 2)
    name = application_name(pg_url)
    with Client(base_url=urls[0]) as client:
        slow = client.operations.start("test.record", {"journal": str(log), "seconds": 2})
        waited: list[Operation] = []
        waiter = threading.Thread(
            target=lambda: waited.append(client.operations.wait(slow, timeout=60))
        )
        waiter.start()

        def kill_connections() -> None:
            for _ in range(3):
                time.sleep(0.4)
                terminate_backends(name)

        killer = threading.Thread(target=kill_connections)
        killer.start()
        created = asyncio.run(start_many(urls, 300, {"journal": str(log), "seconds": 0.01}))
        killer.join()
        waiter.join(60)

    assert waited and waited[0].done and waited[0].error is None
    done = asyncio.run(wait_all(urls[1], created))
    failed = [op.error for op in done if not op.done or op.error]
    assert not failed, failed[:3]
    ends = Counter(id for event, id, _, _ in journal(log) if event == "end")
    assert ends == Counter({op.name.rsplit("/", 1)[1]: 1 for op in [slow, *created]})

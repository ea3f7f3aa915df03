"""Real processes on one database (a SQLite file, PostgreSQL): crashes, shutdowns and
concurrent workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from longops import Client
from tests.support.kinds import journal
from tests.support.postgres import database
from tests.support.servers import (
    Process,
    ThreadServer,
    free_port,
    wait_healthy,
    worker_args,
    worker_ready,
)
from tests.support.waiting import until_sync


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def api_server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(workers=0)


@pytest.fixture
def client(api_server: ThreadServer) -> Iterator[Client]:
    with Client(base_url=api_server.url) as client:
        yield client


def test_worker_killed_mid_operation_is_recovered_by_another(
    api_server: ThreadServer, client: Client, spawn: Callable[..., Process], tmp_path: Path
) -> None:
    log = tmp_path / "journal"
    first = spawn(*worker_args(api_server.database_url, "--lease", "1"))
    until_sync(worker_ready(first), what="the first worker")
    op = client.operations.start("test.record", {"journal": str(log), "seconds": 2, "steps": 20})
    until_sync(lambda: journal(log), what="attempt 1 to start")
    first.kill()

    second = spawn(*worker_args(api_server.database_url, "--lease", "1"))
    done = client.operations.wait(op, timeout=60)

    assert done.done and done.error is None
    assert done.response == {
        "@type": "type.googleapis.com/longops.v1.OperationResponse",
        "attempt": 2,
        "pid": second.pid,
    }
    assert journal(log) == [
        ("start", op.name.split("/")[-1], 1, first.pid),
        ("start", op.name.split("/")[-1], 2, second.pid),
        ("end", op.name.split("/")[-1], 2, second.pid),
    ]


def test_two_workers_on_one_database_never_run_an_attempt_twice(
    api_server: ThreadServer, client: Client, spawn: Callable[..., Process], tmp_path: Path
) -> None:
    log = tmp_path / "journal"
    workers = [spawn(*worker_args(api_server.database_url, "--workers", "4")) for _ in range(2)]
    for worker in workers:
        until_sync(worker_ready(worker), what="workers")
    ops = [
        client.operations.start("test.record", {"journal": str(log), "seconds": 0.02})
        for _ in range(120)
    ]
    for op in ops:
        assert client.operations.wait(op, timeout=60).done

    events = journal(log)
    runs = Counter((event, id) for event, id, _, _ in events)
    ids = {op.name.split("/")[-1] for op in ops}
    assert {id for _, id in runs} == ids
    assert all(count == 1 for count in runs.values()), runs.most_common(3)
    assert {attempt for _, _, attempt, _ in events} == {1}
    assert {pid for _, _, _, pid in events} <= {w.pid for w in workers}


def test_sigterm_lets_the_running_operation_finish(
    api_server: ThreadServer, client: Client, spawn: Callable[..., Process], tmp_path: Path
) -> None:
    log = tmp_path / "journal"
    worker = spawn(*worker_args(api_server.database_url, "--shutdown-grace", "30"))
    until_sync(worker_ready(worker), what="the worker")
    op = client.operations.start("test.record", {"journal": str(log), "seconds": 1, "steps": 4})
    until_sync(lambda: journal(log), what="the attempt to start")
    assert worker.terminate(timeout=30) == 0
    done = client.operations.get(op)
    assert done.done and done.error is None
    assert [event for event, *_ in journal(log)] == ["start", "end"]


def test_sigterm_hands_back_an_attempt_only_once_its_thread_returned(
    api_server: ThreadServer, client: Client, spawn: Callable[..., Process], tmp_path: Path
) -> None:
    """A thread can't be interrupted: past the grace the attempt keeps its lease until
    the thread returns, so the worker waiting beside it never runs attempt 2 meanwhile."""
    log = tmp_path / "journal"
    first = spawn(*worker_args(api_server.database_url, "--shutdown-grace", "1"))
    until_sync(worker_ready(first), what="the first worker")
    op = client.operations.start("test.blocking", {"journal": str(log), "seconds": 3})
    until_sync(lambda: journal(log), what="attempt 1 to start")
    second = spawn(*worker_args(api_server.database_url))
    until_sync(worker_ready(second), what="the second worker")

    assert first.terminate(timeout=30) == 0
    done = client.operations.wait(op, timeout=60)

    assert done.done and done.error is None
    id = op.name.split("/")[-1]
    # Appends to one file, in the order they happened: attempt 1's thread ended first.
    assert journal(log) == [
        ("start", id, 1, first.pid),
        ("end", id, 1, first.pid),
        ("start", id, 2, second.pid),
        ("end", id, 2, second.pid),
    ]
    assert "Traceback" not in first.log.read_text()


def test_server_killed_loses_nothing_it_acknowledged(
    spawn: Callable[..., Process], database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "journal"

    def serve() -> tuple[Process, str]:
        port = free_port()
        process = spawn(
            "serve", "--port", str(port), "--database", database_url,
            "--load", "tests.support.kinds", "--lease", "1", "--workers", "16",
            "--log-level", "warning",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        return process, url

    server, url = serve()
    with Client(base_url=url) as client:
        slow = client.operations.start(
            "test.record", {"journal": str(log), "seconds": 2, "steps": 20}
        )
        # Fewer than the 16 worker slots, so the restarted server has room for attempt 2.
        quick = [client.operations.start("longops.sleep", {"seconds": 60}) for _ in range(10)]
        until_sync(lambda: journal(log), what="the slow operation to start")
    server.kill()

    server, url = serve()
    with Client(base_url=url) as client:
        names = {op.name for op in client.operations.list(kind="longops.sleep")}
        assert names == {op.name for op in quick}
        done = client.operations.wait(slow, timeout=60)
        assert done.done and done.error is None and done.response["attempt"] == 2  # type: ignore[index]

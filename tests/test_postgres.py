"""longops on PostgreSQL: the server, a worker in another process, and migrations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from longops import Client
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

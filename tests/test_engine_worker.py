"""The engine and worker runtime in one process (or two engines on one file)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from longops.engine import Engine, State, Worker
from longops.engine.engine import EngineConfig
from longops.engine.store import open_store
from longops.engine.worker import WorkerConfig
from longops.kinds.builtin import default_registry
from tests.support.waiting import until

FAST = {"retry_delay": 0.01, "maintenance_interval": 0.1, "poll_interval": 0.2}


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def make_engine(database_url: str, stack: AsyncExitStack) -> Callable[..., Awaitable[Engine]]:
    async def make(**config: float) -> Engine:
        registry = default_registry()
        registry.load("tests.support.kinds")
        engine = Engine(open_store(database_url), registry, EngineConfig(**config))
        await stack.enter_async_context(engine)
        return engine

    return make


def run_worker(engine: Engine, **config: float) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(engine, WorkerConfig(**{**FAST, **config}))
    return worker, asyncio.create_task(worker.run())


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, 30)


def journal_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def test_unexpected_errors_are_retried_then_succeed(make_engine) -> None:
    engine = await make_engine()
    worker, task = run_worker(engine)
    record = await engine.create("test.flaky", {"failures": 2})
    done = await engine.wait(record.id, "", 30)
    await stop(worker, task)
    assert done is not None and done.state is State.SUCCEEDED
    assert done.attempt == 3 and done.response == {"attempt": 3}


async def test_unexpected_errors_fail_after_max_attempts_without_leaking(make_engine) -> None:
    engine = await make_engine()
    worker, task = run_worker(engine)
    record = await engine.create("test.flaky", {"failures": 5})
    done = await engine.wait(record.id, "", 30)
    await stop(worker, task)
    assert done is not None and done.state is State.FAILED and done.attempt == 3
    assert done.error is not None and done.error["code"] == 13
    assert "secret" not in done.error["message"]


async def test_heartbeats_keep_a_long_operation_on_its_worker(make_engine, tmp_path) -> None:
    engine = await make_engine()
    worker, task = run_worker(engine, lease_seconds=1.0)
    journal = tmp_path / "journal"
    record = await engine.create(
        "test.record", {"journal": str(journal), "seconds": 2.5, "steps": 5}
    )
    done = await engine.wait(record.id, "", 30)
    await stop(worker, task)
    assert done is not None and done.state is State.SUCCEEDED and done.attempt == 1
    assert [line[0] for line in journal_lines(journal)] == ["start", "end"]


async def test_shutdown_waits_for_operations_within_grace(make_engine, tmp_path) -> None:
    engine = await make_engine()
    worker, task = run_worker(engine, shutdown_grace=30)
    journal = tmp_path / "journal"
    record = await engine.create("test.record", {"journal": str(journal), "seconds": 0.5})
    await until(lambda: journal_lines(journal), what="the attempt to start")
    await stop(worker, task)
    done = await engine.get(record.id, "")
    assert done is not None and done.state is State.SUCCEEDED


async def test_shutdown_releases_what_cannot_finish_in_time(make_engine, tmp_path) -> None:
    engine = await make_engine()
    worker, task = run_worker(engine, shutdown_grace=0.2)
    journal = tmp_path / "journal"
    record = await engine.create(
        "test.record", {"journal": str(journal), "seconds": 60, "steps": 600}
    )
    await until(lambda: journal_lines(journal), what="the attempt to start")
    await stop(worker, task)
    released = await engine.get(record.id, "")
    assert released is not None and released.state is State.PENDING and released.attempt == 1

    # The next worker takes it over as attempt 2; a release never burns an attempt.
    next_worker, next_task = run_worker(engine)
    await until(lambda: len(journal_lines(journal)) == 2, what="attempt 2 to start")
    running = await engine.get(record.id, "")
    assert running is not None and running.state is State.RUNNING and running.attempt == 2
    await engine.cancel(record.id, "")
    await stop(next_worker, next_task)


async def test_wait_completes_when_another_process_finishes(make_engine, tmp_path) -> None:
    """Two engines on one SQLite file stand in for an API server and a worker process."""
    api = await make_engine()
    workers_side = await make_engine()
    record = await api.create("test.record", {"journal": str(tmp_path / "j"), "seconds": 0.2})
    waiting = asyncio.create_task(api.wait(record.id, "", 30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    worker, task = run_worker(workers_side)
    done = await waiting
    await stop(worker, task)
    assert done is not None and done.state is State.SUCCEEDED


async def test_cancel_from_another_process_stops_the_handler(make_engine, tmp_path) -> None:
    api = await make_engine()
    workers_side = await make_engine()
    worker, task = run_worker(workers_side)
    journal = tmp_path / "journal"
    record = await api.create("test.record", {"journal": str(journal), "seconds": 60, "steps": 600})
    await until(lambda: journal_lines(journal), what="the attempt to start")
    await api.cancel(record.id, "")
    done = await api.wait(record.id, "", 30)
    await stop(worker, task)
    assert done is not None and done.state is State.CANCELLED
    assert done.error == {"code": 1, "message": "Operation cancelled by the caller."}
    assert [line[0] for line in journal_lines(journal)] == ["start"]


async def test_cpu_work_runs_in_a_process_pool(make_engine) -> None:
    engine = await make_engine()
    worker, task = run_worker(engine)
    record = await engine.create("test.cpu", {"n": 2000})
    done = await engine.wait(record.id, "", 60)
    await stop(worker, task)
    assert done is not None and done.response == {"primes": 303}


async def test_done_operations_are_purged_after_retention(make_engine) -> None:
    engine = await make_engine(retention_seconds=0.0)
    worker, task = run_worker(engine, purge_interval=0.1)
    record = await engine.create("longops.sleep", {})
    await engine.wait(record.id, "", 30)
    for _ in range(600):
        if await engine.get(record.id, "") is None:
            break
        await asyncio.sleep(0.05)
    await stop(worker, task)
    assert await engine.get(record.id, "") is None


async def test_unknown_kind_and_invalid_requests_store_nothing(make_engine) -> None:
    from longops.engine.engine import InvalidRequest, UnknownKind

    engine = await make_engine()
    with pytest.raises(UnknownKind):
        await engine.create("no.such.kind", {})
    with pytest.raises(InvalidRequest) as info:
        await engine.create("longops.sleep", {"seconds": -1})
    assert info.value.violations[0]["field"] == "seconds"
    assert await engine.list_operations("") == []


async def test_an_attempt_stopped_before_it_starts_frees_its_slot_and_lease(
    make_engine, tmp_path
) -> None:
    """An interrupt may land between the claim and the task's first step (a heartbeat
    racing the claim did this): the slot must come back, and the lease be handed on."""
    engine = await make_engine()
    worker = Worker(engine, WorkerConfig(**{**FAST, "concurrency": 1, "lease_seconds": 3.0}))
    start = worker._start

    def start_then_interrupt(record):  # type: ignore[no-untyped-def]
        start(record)
        if record.attempt == 1:
            worker._interrupt(record.id, "lease")

    worker._start = start_then_interrupt  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    journal = tmp_path / "journal"
    record = await engine.create("test.record", {"journal": str(journal)})
    done = await engine.wait(record.id, "", 30)
    await stop(worker, task)
    assert done is not None and done.state is State.SUCCEEDED and done.attempt == 2
    assert [line[0] for line in journal_lines(journal)] == ["start", "end"]
    assert not worker._running


@pytest.mark.parametrize("heed_stop", [True, False])
async def test_a_cancel_finishes_only_once_the_attempts_thread_returned(
    make_engine, tmp_path, heed_stop: bool
) -> None:
    """A thread polling `ctx.stop_requested` stops at once; one that doesn't keeps the
    operation running (and leased) until it returns: it is never done while its code runs."""
    engine = await make_engine()
    worker, task = run_worker(engine)
    journal = tmp_path / "journal"
    seconds = 60 if heed_stop else 1.5
    record = await engine.create(
        "test.blocking", {"journal": str(journal), "seconds": seconds, "heed_stop": heed_stop}
    )
    await until(lambda: journal_lines(journal), what="the attempt to start")
    await engine.cancel(record.id, "")
    done = await engine.wait(record.id, "", 30)
    assert done is not None and done.state is State.CANCELLED
    assert [line[0] for line in journal_lines(journal)] == ["start", "end"]
    await stop(worker, task)
